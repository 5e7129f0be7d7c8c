"""aiokafka 0.14 (asyncio): an idempotent producer with acks=all and headers, then a group
consumer that reads everything, commits, and is not served the same messages again."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(bootstrap, topic, count):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, value=b"%d" % i, key=b"k%d" % i, headers=[("n", b"%d" % i)])
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap, topic, group, want, timeout_s):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(seen) < want and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(records)
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
def group_broker(make_broker, tmp_path):
    config = tmp_path / "groups.toml"
    config.write_text('"group.initial.rebalance.delay.ms" = 200\n')
    return make_broker("--config", str(config))


def test_aiokafka_idempotent_produce_and_group_consume(group_broker):
    async def scenario():
        await produce(group_broker.bootstrap, "aio", 200)
        seen = await consume(group_broker.bootstrap, "aio", "aio-group", 200, 30)
        assert sorted(int(r.value) for r in seen) == list(range(200))
        assert all(dict(r.headers)["n"] == r.value for r in seen)
        again = await consume(group_broker.bootstrap, "aio", "aio-group", 1, 3)
        assert again == [], "committed offsets were honoured"

    asyncio.run(scenario())
