"""Just enough of Kafka's wire format to send hand-made (and deliberately broken) requests."""

import socket
import struct
import time


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(value):
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def record_batch(values, timestamp=None, producer_id=-1, producer_epoch=-1, base_sequence=-1):
    """A valid uncompressed v2 batch holding `values` (bytes each), optionally an idempotent
    producer's."""
    timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    records = b""
    for delta, value in enumerate(values):
        body = b"\x00" + varint(0) + varint(delta) + varint(-1) + varint(len(value)) + value + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, timestamp, timestamp, producer_id, producer_epoch,
                            base_sequence, len(values)) + records
    crc = crc32c(after_crc)
    after_length = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def request(api_key, version, body, correlation_id=7, client_id="e2e"):
    """A classic (non-flexible) request frame."""
    payload = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def produce_v7(topic, partition, records, acks=-1):
    body = struct.pack(">h", -1) + struct.pack(">hi", acks, 5000)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">ii", partition, len(records)) + records
    return request(0, 7, body)


def connect(bootstrap, timeout=10):
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def read_response(sock):
    """The response body after the size prefix, or None if the broker closed the connection."""
    header = _read_exact(sock, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">i", header)
    return _read_exact(sock, size)


def _read_exact(sock, n):
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def produce_v7_error(response):
    """The first partition's error code and base offset from a Produce v7 response body."""
    at = 4  # correlation id
    (topics,) = struct.unpack_from(">i", response, at)
    at += 4
    (name_len,) = struct.unpack_from(">h", response, at)
    at += 2 + name_len
    (partitions,) = struct.unpack_from(">i", response, at)
    at += 4
    _index, error, base_offset = struct.unpack_from(">ihq", response, at)
    assert topics == 1 and partitions == 1
    return error, base_offset


def init_producer_id(sock):
    """InitProducerId v1 without a transactional id: (error, producer id, epoch)."""
    sock.sendall(request(22, 1, struct.pack(">hi", -1, 60000)))
    response = read_response(sock)
    _correlation, _throttle, error, producer_id, epoch = struct.unpack_from(">iihqh", response)
    return error, producer_id, epoch
