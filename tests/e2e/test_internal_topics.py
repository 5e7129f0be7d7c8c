"""`__consumer_offsets` as Kafka serves it to lag monitors: an internal, read-only topic whose
records are Kafka's own OffsetCommit and GroupMetadata records; the reserved internal names;
and transactional producers refused at once with a fatal error."""

import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from kafka_wire import connect, produce_v7, produce_v7_error, read_response, record_batch

PARTITIONS = 16


def java_hash(text):
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group):
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % PARTITIONS


def read_string(data, at):
    (n,) = struct.unpack_from(">h", data, at)
    if n < 0:
        return None, at + 2
    return data[at + 2:at + 2 + n].decode(), at + 2 + n


def decode(key, value):
    """(kind, fields) of a `__consumer_offsets` record, by Kafka's schemas."""
    (version,) = struct.unpack_from(">h", key)
    if version in (0, 1):
        group, at = read_string(key, 2)
        topic, at = read_string(key, at)
        (partition,) = struct.unpack_from(">i", key, at)
        if value is None:
            return "offset-tombstone", (group, topic, partition)
        (value_version,) = struct.unpack_from(">h", value)
        assert value_version == 3, f"offset value version {value_version}"
        offset, leader_epoch = struct.unpack_from(">qi", value, 2)
        (metadata_len,) = struct.unpack_from(">h", value, 14)
        assert metadata_len >= 0, "metadata is a non-nullable string in Kafka's schema"
        metadata, at = read_string(value, 14)
        (commit_ts,) = struct.unpack_from(">q", value, at)
        assert at + 8 == len(value)
        return "offset", (group, topic, partition, offset, metadata, commit_ts)
    assert version == 2, f"key version {version}"
    group, _ = read_string(key, 2)
    (value_version,) = struct.unpack_from(">h", value)
    assert value_version == 3
    protocol_type, at = read_string(value, 2)
    (generation,) = struct.unpack_from(">i", value, at)
    protocol, at = read_string(value, at + 4)
    leader, at = read_string(value, at)
    (_state_ts, members) = struct.unpack_from(">qi", value, at)
    at += 12
    member_ids = []
    for _ in range(members):
        member_id, at = read_string(value, at)
        _instance, at = read_string(value, at)
        client_id, at = read_string(value, at)
        _host, at = read_string(value, at)
        at += 8  # rebalance and session timeouts
        for _ in range(2):  # subscription, assignment
            (n,) = struct.unpack_from(">i", value, at)
            at += 4 + n
        member_ids.append((member_id, client_id))
    assert at == len(value), "the whole GroupMetadataValue v3 was read"
    return "group", (group, protocol_type, generation, protocol, leader, member_ids)


def test_consumer_offsets_serves_kafkas_records(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("orders", num_partitions=2, replication_factor=1)])["orders"].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        producer.produce("orders", value=b"v%d" % i, partition=i % 2)
    producer.flush(30)

    group = "lag-watched"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": "watched",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["orders"])
    seen = 0
    deadline = time.time() + 60
    while seen < 10 and time.time() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            seen += 1
    assert seen == 10
    consumer.commit(asynchronous=False)

    # Metadata: listed, internal, 16 partitions.
    described = KafkaAdminClient(bootstrap_servers=broker.bootstrap).describe_topics(["__consumer_offsets"])
    assert described[0]["error_code"] == 0 and described[0]["is_internal"] is True
    assert len(described[0]["partitions"]) == PARTITIONS
    assert "__consumer_offsets" in admin.list_topics(timeout=10).topics

    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "monitor",
                       "enable.auto.commit": False})
    reader.assign([TopicPartition("__consumer_offsets", offsets_partition(group), 0)])
    offsets, groups = {}, []
    deadline = time.time() + 30
    while time.time() < deadline and not (len(offsets) == 2 and groups):
        message = reader.poll(1)
        if message is None or message.error() is not None:
            continue
        kind, fields = decode(message.key(), message.value())
        if kind == "offset" and fields[0] == group:
            offsets[(fields[1], fields[2])] = fields[3]
        elif kind == "group" and fields[0] == group:
            groups.append(fields)
    reader.close()
    assert offsets == {("orders", 0): 5, ("orders", 1): 5}, "the group's commits, as Kafka records them"
    protocol_type, generation, _protocol, leader, members = groups[-1][1:]
    assert protocol_type == "consumer" and generation >= 1
    assert [client for _, client in members] == ["watched"] and leader == members[0][0]
    consumer.close()


def test_internal_and_reserved_topics_are_refused(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as created:
        admin.create_topics([NewTopic("__consumer_offsets", 1, 1)])["__consumer_offsets"].result(30)
    assert created.value.args[0].name() == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaException) as reserved:
        admin.create_topics([NewTopic("__transaction_state", 1, 1)])["__transaction_state"].result(30)
    assert reserved.value.args[0].name() == "TOPIC_EXCEPTION"  # INVALID_TOPIC_EXCEPTION (17)
    with pytest.raises(KafkaException) as deleted:
        admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"].result(30)
    assert deleted.value.args[0].name() == "TOPIC_DELETION_DISABLED"
    assert "__consumer_offsets" in admin.list_topics(timeout=10).topics

    sock = connect(broker.bootstrap)
    sock.sendall(produce_v7("__consumer_offsets", 0, record_batch([b"forged"]), acks=1))
    error, _ = produce_v7_error(read_response(sock))
    assert error == 17, "INVALID_TOPIC_EXCEPTION: Cannot append to internal topic"
    sock.close()


def test_a_transactional_producer_fails_at_once_with_a_fatal_error(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-1"})
    started = time.time()
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(30)
    assert time.time() - started < 10, "refused at once, not after coordinator retries"
    error = refused.value.args[0]
    assert error.name() == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", error
    assert not error.retriable()
