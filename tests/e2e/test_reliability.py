"""What an unlucky operator meets: a full disk is logged with its OS error, a stop does not wait
for a consumer that stopped reading, leftovers of failed snapshot writes are cleaned, retention
runs at start, and refused requests name the client."""

import os
import struct
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import create_topic
from kafka_wire import connect, produce_v7, produce_v7_error, read_response, record_batch, request, string


def test_a_full_disk_takes_the_partition_offline_and_says_why(make_broker, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        broker = make_broker("--fsync", "never", data_dir=mount / "data")
        sock = connect(broker.bootstrap)
        codes = []
        for _ in range(40):
            sock.sendall(produce_v7("fill", 0, record_batch([b"x" * 200_000]), acks=1))
            error, _ = produce_v7_error(read_response(sock))
            codes.append(error)
            if error:
                break
        assert codes[-1] == 56, f"KAFKA_STORAGE_ERROR once the disk is full: {codes}"
        sock.close()
        log = broker.read_log()
        assert "partition offline" in log and "No space left on device" in log, log[-3000:]
        assert "fill-0" in log
        broker.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_partition_offline_after_a_full_disk_serves_again_once_space_is_freed(make_broker, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        ballast = mount / "ballast"
        ballast.write_bytes(b"\0" * (3 << 20))
        config = tmp_path / "retry.toml"
        config.write_text('"offline-partition-retry-ms" = 200\n')
        broker = make_broker("--config", str(config), "--shards", "1", data_dir=mount / "data")
        create_topic(broker.bootstrap, "refill", 1)
        sock = connect(broker.bootstrap)
        acked = {}
        for i in range(60):
            sock.sendall(produce_v7("refill", 0, record_batch([bytes([i]) * 200_000])))
            error, base = produce_v7_error(read_response(sock))
            if error:
                break
            acked[base] = bytes([i]) * 200_000
        assert error == 56 and acked, f"KAFKA_STORAGE_ERROR once the disk is full, after {len(acked)}"
        ballast.unlink()
        deadline = time.monotonic() + 10
        while True:
            sock.sendall(produce_v7("refill", 0, record_batch([b"after"])))
            error, base = produce_v7_error(read_response(sock))
            if error == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert error == 0, "space freed: the partition serves again without a restart"
        assert base >= max(acked) + 1
        sock.close()
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "refill-check",
                             "enable.auto.commit": False, "fetch.max.bytes": 1 << 20})
        consumer.assign([TopicPartition("refill", 0, 0)])
        seen = {}
        deadline = time.monotonic() + 20
        while base not in seen and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and not message.error():
                seen[message.offset()] = message.value()
        consumer.close()
        for offset, value in acked.items():
            assert seen.get(offset) == value, f"acknowledged offset {offset} lost or changed"
        assert seen.get(base) == b"after"
        log = broker.read_log()
        assert "partition offline" in log and "back online" in log, log[-3000:]
        broker.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_stop_does_not_wait_for_a_consumer_that_stopped_reading(make_broker):
    broker = make_broker("--fsync", "never")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    for i in range(30_000):
        producer.produce("big", value=os.urandom(1000), partition=0)
    assert producer.flush(60) == 0
    sock = connect(broker.bootstrap)
    # Fetch v4 of everything (30 MB), then never read the answer.
    body = struct.pack(">iiii", -1, 100, 1, 64 << 20) + b"\x00"
    body += struct.pack(">i", 1) + string("big") + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 64 << 20)
    sock.sendall(request(1, 4, body))
    time.sleep(1)
    started = time.time()
    assert broker.stop() == 0
    assert time.time() - started < 5, "the stop waited for a peer that does not read"
    sock.close()


def test_leftover_snapshot_temporaries_are_removed_at_start(make_broker):
    broker = make_broker()
    create_topic(broker.bootstrap, "snap", 1)
    assert broker.stop() == 0
    leftover = broker.data_dir / "snap-0" / "00000000000000000042.snapshot.tmp"
    leftover.write_bytes(b"half written")
    broker.start()
    assert not leftover.exists()


def test_retention_runs_at_start(make_broker):
    broker = make_broker("--fsync", "never")
    create_topic(broker.bootstrap, "short", 1, **{"segment.bytes": "1024", "retention.bytes": "4096"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(40):
        producer.produce("short", value=b"v" * 600, partition=0)
        producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    low, high = consumer.get_watermark_offsets(TopicPartition("short", 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, 40), "nothing deleted yet: the next retention pass is 30 s away"
    assert broker.stop() == 0
    broker.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
        low, high = consumer.get_watermark_offsets(TopicPartition("short", 0), timeout=10)
        consumer.close()
        if low > 0:
            break
        time.sleep(0.2)
    assert low > 0 and high == 40, "retention ran right after the restart"
    assert "segment deleted" in broker.read_log()


def test_an_unsupported_version_is_logged_with_client_api_and_version(broker):
    sock = connect(broker.bootstrap)
    sock.sendall(request(0, 1, b"", client_id="old-producer"))  # Produce v1: not served
    assert read_response(sock) is None
    sock.close()
    time.sleep(0.3)
    log = broker.read_log()
    line = [l for l in log.splitlines() if "closing connection" in l and "old-producer" in l]
    assert line and "WARN" in line[0] and "api_key=0" in line[0] and "api_version=1" in line[0], log[-2000:]


def test_running_out_of_descriptors_at_a_segment_roll_fails_the_request_but_not_the_partition(make_broker, tmp_path):
    config = tmp_path / "no-reserve.toml"
    config.write_text('"descriptor-reserve" = 0\n')  # without it, connections cannot take them all
    broker = make_broker("--config", str(config), "--shards", "1", "--fsync", "never")
    create_topic(broker.bootstrap, "rolls", 1, **{"segment.bytes": "1024"})
    sock = connect(broker.bootstrap)
    sock.sendall(produce_v7("rolls", 0, record_batch([b"a" * 800]), acks=1))
    assert produce_v7_error(read_response(sock))[0] == 0
    open_fds = len(os.listdir(f"/proc/{broker.proc.pid}/fd"))
    subprocess.run(["prlimit", f"--pid={broker.proc.pid}", f"--nofile={open_fds + 8}:"], check=True)
    flood = []
    try:
        for _ in range(40):  # take every descriptor left
            try:
                flood.append(connect(broker.bootstrap, timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        sock.sendall(produce_v7("rolls", 0, record_batch([b"b" * 800]), acks=1))  # needs a new segment
        assert produce_v7_error(read_response(sock))[0] == 56, "no descriptor for the new segment"
    finally:
        for s in flood:
            s.close()
    subprocess.run(["prlimit", f"--pid={broker.proc.pid}", "--nofile=4096:"], check=True)
    time.sleep(0.5)
    sock.sendall(produce_v7("rolls", 0, record_batch([b"c" * 800]), acks=1))
    error, offset = produce_v7_error(read_response(sock))
    assert error == 0 and offset == 1, "the partition still serves once descriptors are back"
    sock.close()
    assert "cannot roll" in broker.read_log() and "partition offline" not in broker.read_log()


def test_connections_never_take_the_descriptors_kept_for_partitions(make_broker):
    broker = make_broker("--shards", "1", "--fsync", "never")
    create_topic(broker.bootstrap, "reserved", 1, **{"segment.bytes": "1024"})
    sock = connect(broker.bootstrap)
    sock.sendall(produce_v7("reserved", 0, record_batch([b"a" * 800]), acks=1))
    assert produce_v7_error(read_response(sock))[0] == 0
    open_fds = len(os.listdir(f"/proc/{broker.proc.pid}/fd"))
    limit = open_fds + 120
    subprocess.run(["prlimit", f"--pid={broker.proc.pid}", f"--nofile={limit}:"], check=True)
    reserve = min(256, limit // 4)
    flood = []
    try:
        for _ in range(200):  # far more than the limit allows
            s = connect(broker.bootstrap, timeout=2)
            s.sendall(request(18, 0, b""))
            if read_response(s) is None:  # refused: closed at once
                s.close()
                break
            flood.append(s)
        assert flood, "connections below the reserve are served"
        assert len(flood) <= limit - reserve - open_fds + 2, f"{len(flood)} connections ate into the reserve"
        sock.sendall(produce_v7("reserved", 0, record_batch([b"b" * 800]), acks=1))  # needs a new segment
        error, offset = produce_v7_error(read_response(sock))
        assert (error, offset) == (0, 1), "the segment roll found a descriptor despite the flood"
    finally:
        for s in flood:
            s.close()
    sock.close()
    log = broker.read_log()
    assert "descriptors are kept for partitions" in log and "cannot roll" not in log, log[-3000:]


def test_connection_limits_and_idle_connections_close(make_broker, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text('"max.connections.per.ip" = 3\n"connections.max.idle.ms" = 700\n')
    broker = make_broker("--config", str(config))
    time.sleep(1)  # the start-up probes' connections have closed
    kept = [connect(broker.bootstrap) for _ in range(3)]
    for sock in kept:
        sock.sendall(request(18, 0, b""))
        assert read_response(sock) is not None, "within the limit: answered"
    extra = connect(broker.bootstrap)
    extra.sendall(request(18, 0, b""))
    assert read_response(extra) is None, "over max.connections.per.ip: closed at once"
    extra.close()
    assert "over max.connections.per.ip" in broker.read_log()
    time.sleep(1.5)  # past connections.max.idle.ms with nothing sent
    for sock in kept:
        sock.sendall(request(18, 0, b""))
        assert read_response(sock) is None, "idle past connections.max.idle.ms: closed"
        sock.close()
    fresh = connect(broker.bootstrap)
    fresh.sendall(request(18, 0, b""))
    assert read_response(fresh) is not None, "places are given back when connections close"
    fresh.close()


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_half_sent_requests_pin_at_most_queued_max_request_bytes(make_broker, tmp_path):
    config = tmp_path / "queued.toml"
    config.write_text('"queued.max.request.bytes" = 16777216\n')
    broker = make_broker("--config", str(config), "--shards", "1")
    before = rss_kib(broker.proc.pid)
    stalled = []
    body = os.urandom(5 << 20)
    for _ in range(10):
        sock = connect(broker.bootstrap)
        sock.setblocking(False)
        frame = struct.pack(">i", 10 << 20) + struct.pack(">hhi", 0, 7, 1) + string("e2e")
        try:
            sock.send(frame + body)  # half of a 10 MiB request, never finished
        except BlockingIOError:
            pass
        stalled.append(sock)
    time.sleep(2)
    grown_mib = (rss_kib(broker.proc.pid) - before) / 1024
    # Without the cap (-1) this grew 39 MiB: 10 x 5 MiB received into request buffers, less
    # what stayed in the sockets. With it, one 10 MiB frame is admitted, the others wait.
    assert grown_mib < 20, f"RSS grew {grown_mib:.0f} MiB"
    # Small requests still fit beside them.
    probe = connect(broker.bootstrap)
    probe.sendall(request(18, 0, b""))
    assert read_response(probe) is not None
    probe.close()
    for sock in stalled:
        sock.close()
