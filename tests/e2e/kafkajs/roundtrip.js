// KafkaJS 2.2.4: admin create/list, produce with keys and headers (acks all), a consumer group
// of two members reading everything once with committed offsets, and a reader that resumes
// from them. Exits non-zero on any mismatch. Usage: node roundtrip.js HOST:PORT
const { Kafka, logLevel } = require('kafkajs');

const broker = process.argv[2];
const kafka = new Kafka({ clientId: 'ringtail-e2e', brokers: [broker], logLevel: logLevel.NOTHING });
const topic = 'kafkajs-topic';
const total = 300;

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

async function consumeAll(groupId, members, expected, timeoutMs) {
  const seen = [];
  const consumers = [];
  for (let i = 0; i < members; i++) {
    const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 5000 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push({ member: i, partition, value: message.value.toString(), header: message.headers.n.toString() });
      },
    });
    consumers.push(consumer);
  }
  const deadline = Date.now() + timeoutMs;
  while (seen.length < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.all(consumers.map((c) => c.disconnect()));
  return seen;
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) fail(`listTopics: ${topics}`);
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < total; i += 30) {
    const messages = [];
    for (let j = i; j < i + 30; j++) messages.push({ key: `k${j}`, value: `${j}`, partition: j % 3, headers: { n: `${j}` } });
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();

  const seen = await consumeAll('kafkajs-group', 2, total, 30000);
  const values = seen.map((m) => Number(m.value)).sort((a, b) => a - b);
  if (values.length !== total || values.some((v, i) => v !== i)) fail(`group read ${values.length} messages, not each of ${total} once`);
  for (const m of seen) {
    if (m.header !== m.value) fail(`header ${m.header} on message ${m.value}`);
    if (Number(m.value) % 3 !== m.partition) fail(`message ${m.value} on partition ${m.partition}`);
  }
  const owners = {};
  for (const m of seen) (owners[m.partition] = owners[m.partition] || new Set()).add(m.member);
  // Committed offsets: the same group starts where it stopped, and reads nothing again.
  const again = await consumeAll('kafkajs-group', 1, 1, 4000);
  if (again.length !== 0) fail(`the group re-read ${again.length} messages after committing`);
  console.log(`ok: ${total} messages, partitions by member ${JSON.stringify(Object.fromEntries(Object.entries(owners).map(([p, s]) => [p, [...s]])))}`);
  process.exit(0);
})().catch((err) => fail(err.stack || String(err)));
