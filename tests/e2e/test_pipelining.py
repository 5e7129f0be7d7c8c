"""Produce requests pipelined on one connection: the broker reads the next request while earlier
ones wait for their fdatasync, yet appends every batch in arrival order and answers every request
in order, across shards and mixed with other APIs."""

import struct

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_wire import connect, produce_v7, read_response, record_batch, request


def produce_frame(topic, partition, value, acks, correlation_id):
    frame = produce_v7(topic, partition, record_batch([value]), acks=acks)
    # Same frame with this request's correlation id (offset: size 4, key 2, version 2).
    return frame[:8] + struct.pack(">i", correlation_id) + frame[12:]


def test_pipelined_produce_keeps_arrival_order_and_answers_in_order(make_broker):
    broker = make_broker("--shards", "2")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("piped", num_partitions=4, replication_factor=1)])["piped"].result(30)
    sock = connect(broker.bootstrap, timeout=30)
    sent = []  # (correlation id, partition or None for ApiVersions)
    frames = b""
    for i in range(400):
        if i % 50 == 25:
            frames += request(18, 0, b"", correlation_id=i)  # ApiVersions v0 between produces
            sent.append((i, None))
            continue
        partition = i % 4
        acks = -1 if i % 3 else 1
        frames += produce_frame("piped", partition, f"{partition}:{i}".encode(), acks, i)
        sent.append((i, partition))
    sock.sendall(frames)  # all at once: the broker sees them pipelined

    next_offset = [0, 0, 0, 0]
    for correlation_id, partition in sent:
        response = read_response(sock)
        assert response is not None, f"connection closed before answer {correlation_id}"
        (got,) = struct.unpack_from(">i", response)
        assert got == correlation_id, "answers leave in request order"
        if partition is None:
            continue
        at = 4 + 4
        (name_len,) = struct.unpack_from(">h", response, at)
        at += 2 + name_len + 4
        index, error, base_offset = struct.unpack_from(">ihq", response, at)
        assert (index, error) == (partition, 0)
        assert base_offset == next_offset[partition], "batches appended in arrival order"
        next_offset[partition] += 1
    sock.close()

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "piped-check",
                         "enable.auto.commit": False})
    for partition in range(4):
        consumer.assign([TopicPartition("piped", partition, 0)])
        values = []
        while len(values) < next_offset[partition]:
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            values.append(message.value().decode())
        indexes = [int(v.split(":")[1]) for v in values]
        assert all(v.startswith(f"{partition}:") for v in values)
        assert indexes == sorted(indexes), f"partition {partition} holds its records in send order"
    consumer.close()


def test_nothing_after_a_refused_request_is_executed(broker):
    """A request the broker refuses closes the connection once the answers before it are sent;
    a produce pipelined behind it must not be appended (the client would retry it: a duplicate)."""
    frames = produce_frame("refusal", 0, b"before", 1, 1)
    frames += request(0, 1, b"", correlation_id=2)  # Produce v1: not served, refused
    frames += produce_frame("refusal", 0, b"after", 1, 3)
    sock = connect(broker.bootstrap)
    sock.sendall(frames)
    first = read_response(sock)
    assert struct.unpack_from(">i", first)[0] == 1
    assert read_response(sock) is None, "the refusal closes the connection"
    sock.close()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "refusal-check"})
    low, high = consumer.get_watermark_offsets(TopicPartition("refusal", 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, 1), "only the produce before the refusal was appended"


def test_pipelined_produce_to_a_topic_the_first_request_creates(make_broker):
    """The first request auto-creates the topic while the rest wait in the socket: every batch
    still lands in arrival order."""
    broker = make_broker("--shards", "2")
    sock = connect(broker.bootstrap, timeout=30)
    sock.sendall(b"".join(produce_frame("piped-auto", 0, b"%d" % i, -1, i) for i in range(200)))
    for i in range(200):
        response = read_response(sock)
        assert response is not None and struct.unpack_from(">i", response)[0] == i
        at = 8
        (name_len,) = struct.unpack_from(">h", response, at)
        index, error, base_offset = struct.unpack_from(">ihq", response, at + 2 + name_len + 4)
        assert (index, error, base_offset) == (0, 0, i)
    sock.close()
