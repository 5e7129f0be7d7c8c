"""confluent-kafka (librdkafka 2.x) and kafka-python 3: admin, produce with every acks setting,
keys and headers, per-partition order, consuming from earliest, latest and an offset."""

import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition as KTopicPartition
from kafka.admin import NewTopic as KNewTopic

from helpers import create_topic, consume_all


def test_confluent_admin_create_list_describe_delete(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic("admin-a", num_partitions=3, replication_factor=1, config={"retention.ms": "60000"})])
    futures["admin-a"].result(10)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics["admin-a"].partitions) == 3
    # Creating it again is refused with TOPIC_ALREADY_EXISTS.
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic("admin-a", num_partitions=1, replication_factor=1)])["admin-a"].result(10)
    assert err.value.args[0].name() == "TOPIC_ALREADY_EXISTS"
    # An impossible replication factor on one broker.
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic("admin-b", num_partitions=1, replication_factor=3)])["admin-b"].result(10)
    assert err.value.args[0].name() == "INVALID_REPLICATION_FACTOR"
    configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "admin-a")])
    described = list(configs.values())[0].result(10)
    assert described["retention.ms"].value == "60000"
    assert described["cleanup.policy"].value == "delete"
    admin.delete_topics(["admin-a"])["admin-a"].result(10)
    deadline = time.time() + 10
    while "admin-a" in admin.list_topics(timeout=10).topics and time.time() < deadline:
        time.sleep(0.1)
    assert "admin-a" not in admin.list_topics(timeout=10).topics


def test_kafka_python_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([KNewTopic("kp-admin", 2, 1)])
    assert "kp-admin" in admin.list_topics()
    cluster = admin.describe_cluster()
    assert cluster["brokers"][0]["port"] == broker.port
    admin.delete_topics(["kp-admin"])
    assert "kp-admin" not in admin.list_topics()
    admin.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_confluent_produce_every_acks_setting_with_keys_and_headers(broker, acks):
    topic = f"acks-{acks}"
    create_topic(broker.bootstrap, topic, 3)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 5})
    delivered = []
    for i in range(300):
        producer.produce(
            topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("n", str(i).encode())], partition=i % 3,
            on_delivery=lambda err, msg: delivered.append(err),
        )
    assert producer.flush(20) == 0
    assert delivered == [None] * 300
    got = consume_all(broker.bootstrap, topic, range(3), 300)
    assert len(got) == 300
    for message in got:
        i = int(message.value()[1:])
        assert message.key() == b"k%d" % i
        assert message.headers() == [("n", str(i).encode())]
        assert message.partition() == i % 3
    # Per-partition order: offsets and values increase together.
    for partition in range(3):
        values = [int(m.value()[1:]) for m in got if m.partition() == partition]
        assert values == sorted(values) and len(values) == 100
        offsets = [m.offset() for m in got if m.partition() == partition]
        assert offsets == list(range(100))


def test_kafka_python_produce_and_consume_earliest_latest_and_offset(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
    for i in range(100):
        producer.send("kp-read", key=b"k%d" % i, value=b"v%d" % i, partition=0)
    producer.flush()
    producer.close()
    earliest = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    earliest.assign([KTopicPartition("kp-read", 0)])
    assert [m.value for m in earliest] == [b"v%d" % i for i in range(100)]
    earliest.close()
    at = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=3000)
    partition = KTopicPartition("kp-read", 0)
    at.assign([partition])
    at.seek(partition, 90)
    assert [m.offset for m in at] == list(range(90, 100))
    at.close()
    latest = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="latest", consumer_timeout_ms=1500)
    latest.assign([partition])
    assert latest.position(partition) == 100
    assert list(latest) == []
    latest.close()


def test_offsets_for_times(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        producer.produce("by-time", value=b"x", timestamp=base + i * 1000, partition=0)
        producer.flush(10)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    partition = KTopicPartition("by-time", 0)
    found = consumer.offsets_for_times({partition: base + 4500})
    assert found[partition].offset == 5
    assert consumer.beginning_offsets([partition])[partition] == 0
    assert consumer.end_offsets([partition])[partition] == 10
    consumer.close()
