"""Bad input gets the Kafka error code a Kafka broker returns, or a closed connection, and never
a crash, a hang or harm to other clients."""

import os
import struct
from pathlib import Path

import pytest

from helpers import kcat
from kafka_wire import connect, produce_v7, produce_v7_error, read_response, record_batch, request, string

FIXTURES = Path(__file__).resolve().parents[2] / "server" / "tests" / "fixtures" / "kafka-requests"

CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35


def still_serves(broker):
    kcat("-b", broker.bootstrap, "-P", "-t", "alive", input=b"ping\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", "alive", "-o", "-1", "-e")
    assert out.strip() == b"ping"
    assert broker.alive()


def closed_by_broker(sock):
    sock.settimeout(10)
    return read_response(sock) is None


@pytest.mark.parametrize("size", [200 * 1024 * 1024, 0x7FFFFFFF, -1, -100])
def test_frame_sizes_out_of_range_close_the_connection(broker, size):
    with connect(broker.bootstrap) as sock:
        sock.sendall(struct.pack(">i", size) + b"\x00" * 16)
        assert closed_by_broker(sock)
    still_serves(broker)


def test_unknown_api_key_closes_the_connection(broker):
    with connect(broker.bootstrap) as sock:
        sock.sendall(request(999, 0, b""))
        assert closed_by_broker(sock)
    still_serves(broker)


def test_unsupported_version_of_a_known_api_closes_the_connection(broker):
    with connect(broker.bootstrap) as sock:
        sock.sendall(request(3, 99, b"\x00\x00\x00\x00"))
        assert closed_by_broker(sock)
    still_serves(broker)


def test_api_versions_with_an_unsupported_version_answers_unsupported_version(broker):
    with connect(broker.bootstrap) as sock:
        sock.sendall(request(18, 99, b""))
        response = read_response(sock)
    correlation_id, error = struct.unpack_from(">ih", response)
    assert correlation_id == 7
    assert error == UNSUPPORTED_VERSION
    # The v0 body still lists what is supported, so the client can retry.
    (count,) = struct.unpack_from(">i", response, 6)
    keys = {struct.unpack_from(">hhh", response, 10 + 6 * i)[0] for i in range(count)}
    assert {0, 1, 3, 18} <= keys


def test_huge_counts_in_a_tiny_frame_close_the_connection(broker):
    with connect(broker.bootstrap) as sock:
        sock.sendall(request(3, 1, struct.pack(">i", 0x7FFFFFF0)))  # Metadata v1, 2^31 topics
        assert closed_by_broker(sock)
    with connect(broker.bootstrap) as sock:
        body = struct.pack(">hhi", -1, 1, 5000) + struct.pack(">i", 1) + string("t") + struct.pack(">i", 0x7FFFFFFF)
        sock.sendall(request(0, 7, body))
        assert closed_by_broker(sock)
    still_serves(broker)


def test_truncated_body_closes_the_connection(broker):
    frame = produce_v7("trunc", 0, record_batch([b"x"]))
    body = frame[4:-30]
    with connect(broker.bootstrap) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        assert closed_by_broker(sock)
    still_serves(broker)


def test_invalid_topic_name_gets_invalid_topic_exception(broker):
    with connect(broker.bootstrap) as sock:
        sock.sendall(produce_v7("bad/name", 0, record_batch([b"x"])))
        error, _ = produce_v7_error(read_response(sock))
    assert error == INVALID_TOPIC_EXCEPTION
    with connect(broker.bootstrap) as sock:
        sock.sendall(request(3, 1, struct.pack(">i", 1) + string("a" * 250)))
        response = read_response(sock)
    assert b"a" * 250 in response
    # Metadata v1: correlation id, brokers..., topics: the topic's error code comes right before its name.
    at = response.index(b"a" * 250)
    assert struct.unpack_from(">hh", response, at - 4) == (INVALID_TOPIC_EXCEPTION, 250)
    still_serves(broker)


def test_corrupt_batch_gets_corrupt_message_and_nothing_is_stored(broker):
    batch = bytearray(record_batch([b"hello", b"world"]))
    batch[-3] ^= 0xFF
    with connect(broker.bootstrap) as sock:
        sock.sendall(produce_v7("corrupt", 0, bytes(batch)))
        error, _ = produce_v7_error(read_response(sock))
        assert error == CORRUPT_MESSAGE
        # The connection stays usable: a good batch on it is stored at offset 0.
        sock.sendall(produce_v7("corrupt", 0, record_batch([b"good"])))
        error, base = produce_v7_error(read_response(sock))
        assert (error, base) == (0, 0)
    assert kcat("-b", broker.bootstrap, "-C", "-t", "corrupt", "-e").strip() == b"good"


def test_oversized_batch_gets_message_too_large(broker):
    batch = record_batch([b"x" * 600_000, b"y" * 600_000])
    with connect(broker.bootstrap) as sock:
        sock.sendall(produce_v7("big", 0, batch))
        error, _ = produce_v7_error(read_response(sock))
    assert error == MESSAGE_TOO_LARGE
    still_serves(broker)


def test_captured_client_frames_are_answered(broker):
    """Produce frames captured from real clients: each is answered on a fresh connection."""
    for name in ["kafkajs2.2.4-Produce-v7-001.bin", "kafka-python3.0.12-Produce-v9-003.bin",
                 "librdkafka2.16-Produce-v10-007.bin", "aiokafka0.14.0-Produce-v7-001.bin"]:
        frame = (FIXTURES / name).read_bytes()
        with connect(broker.bootstrap) as sock:
            sock.sendall(frame)
            response = read_response(sock)
            assert response is not None, name
            assert struct.unpack_from(">i", response)[0] == struct.unpack_from(">i", frame, 8)[0]
    still_serves(broker)


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_half_sent_and_idle_connections_do_not_pin_memory(broker):
    before = rss_bytes(broker.proc.pid)
    sockets = []
    try:
        for _ in range(50):
            sock = connect(broker.bootstrap)
            # Announce a 90 MB request, then send only a few bytes of it.
            sock.sendall(struct.pack(">i", 90 * 1024 * 1024) + b"\x00\x03\x00\x01" + os.urandom(60))
            sockets.append(sock)
        for _ in range(50):
            sockets.append(connect(broker.bootstrap))  # idle
        still_serves(broker)
        grown = rss_bytes(broker.proc.pid) - before
        assert grown < 64 * 1024 * 1024, f"RSS grew by {grown} bytes"
    finally:
        for sock in sockets:
            sock.close()
    still_serves(broker)


@pytest.mark.parametrize("second,code", [("oversized", MESSAGE_TOO_LARGE), ("corrupt", CORRUPT_MESSAGE)])
def test_a_partitions_batches_are_appended_all_or_nothing(broker, second, code):
    good = record_batch([b"good"])
    if second == "oversized":
        bad = record_batch([b"x" * 600_000, b"y" * 600_000])
    else:
        bad = bytearray(record_batch([b"bad"]))
        bad[-2] ^= 0xFF
        bad = bytes(bad)
    topic = f"atomic-{second}"
    with connect(broker.bootstrap) as sock:
        sock.sendall(produce_v7(topic, 0, good + bad))
        assert produce_v7_error(read_response(sock))[0] == code
        sock.sendall(produce_v7(topic, 0, record_batch([b"after"])))
        error, base = produce_v7_error(read_response(sock))
    assert (error, base) == (0, 0), "the good batch of the refused request was not stored"
