"""Fetch semantics: long poll by max_wait_ms and min_bytes, and the max_bytes limits."""

import struct
import threading
import time

from helpers import kcat
from kafka_wire import connect, read_response, request, string


def fetch_v4(topic, offset, max_wait_ms, min_bytes=1, max_bytes=1 << 20, partition_max_bytes=1 << 20):
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", 0, offset, partition_max_bytes)
    return request(1, 4, body)


def parse_fetch_v4(response):
    """(error, high watermark, records bytes) of the single partition."""
    at = 4 + 4  # correlation id, throttle
    at += 4  # topic count
    (name_len,) = struct.unpack_from(">h", response, at)
    at += 2 + name_len + 4  # name, partition count
    _index, error, high_watermark, _lso = struct.unpack_from(">ihqq", response, at)
    at += 4 + 2 + 8 + 8
    (aborted,) = struct.unpack_from(">i", response, at)
    at += 4 + max(aborted, 0) * 16
    (size,) = struct.unpack_from(">i", response, at)
    return error, high_watermark, response[at + 4: at + 4 + size]


def test_long_poll_waits_for_data_or_the_timeout(broker):
    kcat("-b", broker.bootstrap, "-P", "-t", "poll", input=b"first\n")
    with connect(broker.bootstrap) as sock:
        started = time.time()
        sock.sendall(fetch_v4("poll", 1, max_wait_ms=700))
        error, high_watermark, records = parse_fetch_v4(read_response(sock))
        waited = time.time() - started
    assert (error, high_watermark, records) == (0, 1, b"")
    assert 0.6 <= waited < 5, waited

    # Data arriving during the wait answers the fetch at once.
    def produce_later():
        time.sleep(0.3)
        kcat("-b", broker.bootstrap, "-P", "-t", "poll", input=b"second\n")

    producer = threading.Thread(target=produce_later)
    with connect(broker.bootstrap) as sock:
        started = time.time()
        producer.start()
        sock.sendall(fetch_v4("poll", 1, max_wait_ms=10_000))
        error, high_watermark, records = parse_fetch_v4(read_response(sock))
        waited = time.time() - started
    producer.join()
    assert error == 0 and high_watermark == 2 and b"second" in records
    assert waited < 5, waited


def test_max_bytes_limits_but_returns_a_first_batch(broker):
    for i in range(20):
        kcat("-b", broker.bootstrap, "-P", "-t", "limits", input=(b"%02d" % i) * 500 + b"\n")
    with connect(broker.bootstrap) as sock:
        sock.sendall(fetch_v4("limits", 0, max_wait_ms=0, partition_max_bytes=3000))
        _, _, records = parse_fetch_v4(read_response(sock))
        assert 1000 < len(records) <= 3000  # whole batches within the partition limit
        sock.sendall(fetch_v4("limits", 0, max_wait_ms=0, partition_max_bytes=10))
        _, _, records = parse_fetch_v4(read_response(sock))
        assert len(records) > 10  # one whole batch even past the limit
        sock.sendall(fetch_v4("limits", 0, max_wait_ms=0, max_bytes=100_000, partition_max_bytes=1 << 20))
        error, high_watermark, records = parse_fetch_v4(read_response(sock))
        assert high_watermark == 20 and len(records) > 19_000
    with connect(broker.bootstrap) as sock:
        sock.sendall(fetch_v4("limits", 21, max_wait_ms=0))
        error, _, _ = parse_fetch_v4(read_response(sock))
        assert error == 1  # OFFSET_OUT_OF_RANGE
