"""Moving a partition between shards (cores) while an idempotent acks=all producer and a consumer
group keep running: no error reaches the clients, and every record is there exactly once."""

import json
import threading
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, Producer

from helpers import create_topic


def move(b, topic, partition, to_shard):
    url = (f"http://127.0.0.1:{b.metrics_port}/v1/partitions/move"
           f"?topic={topic}&partition={partition}&to_shard={to_shard}")
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=150) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def owner(b, topic, partition):
    meta = (b.data_dir / "topics.meta").read_text()
    line = [l for l in meta.splitlines() if l.startswith(topic + " ")][0]
    return int(line.split()[2].split(",")[partition])


def test_move_under_load_loses_and_duplicates_nothing(make_broker):
    b = make_broker("--shards", "2")
    create_topic(b.bootstrap, "moving", 2)
    total = 30000
    delivered, failed = [], []
    producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 60000})

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or msg.value())

    def produce():
        for i in range(total):
            while True:
                try:
                    producer.produce("moving", value=b"%06d" % i, partition=i % 2, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 30 == 0:
                producer.poll(0)
                time.sleep(0.01)  # about 3,000 records/s for 10 s: the moves land in the middle
        producer.flush(60)
        produced_until.append(time.time())

    seen, consumer_errors, produced_until = [], [], []
    stop = threading.Event()

    def consume():
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "movers", "auto.offset.reset": "earliest",
                      "enable.auto.commit": True, "auto.commit.interval.ms": 500})
        c.subscribe(["moving"])
        while not stop.is_set() or len(seen) < total:
            msg = c.poll(0.2)
            if msg is None:
                if stop.is_set() and time.time() > stop.deadline:
                    break
                continue
            if msg.error():
                consumer_errors.append(msg.error())
                continue
            seen.append(msg.value())
        c.close()

    producing = threading.Thread(target=produce)
    consuming = threading.Thread(target=consume)
    producing.start()
    consuming.start()
    time.sleep(2)
    start_owner = owner(b, "moving", 0)
    other = 1 - start_owner
    status, answer = move(b, "moving", 0, other)
    assert status == 200, answer
    assert answer == {"topic": "moving", "partition": 0, "from_shard": start_owner, "to_shard": other}
    assert owner(b, "moving", 0) == other
    time.sleep(1)
    status, answer = move(b, "moving", 1, start_owner if owner(b, "moving", 1) != start_owner else other)
    assert status == 200, answer
    status, answer = move(b, "moving", 0, start_owner)
    assert status == 200 and answer["to_shard"] == start_owner, answer
    moves_done = time.time()
    producing.join(120)
    assert produced_until and produced_until[0] > moves_done, "the moves ran while records were produced"
    stop.deadline = time.time() + 30
    stop.set()
    consuming.join(60)

    assert not failed, failed[:5]
    assert len(delivered) == total
    assert not consumer_errors, consumer_errors[:5]
    assert len(seen) == total and len(set(seen)) == total, (len(seen), len(set(seen)))
    # The metrics name the owner; the log holds every record once, also after a restart.
    text = b.metrics()
    assert f'ringtail_partition_log_end_offset{{topic="moving",partition="0",shard="{start_owner}"}} {total // 2}' in text
    assert b.stop() == 0
    b.start()
    assert owner(b, "moving", 0) == start_owner
    reader = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "after", "auto.offset.reset": "earliest"})
    reader.subscribe(["moving"])
    again, deadline = [], time.time() + 30
    while len(again) < total and time.time() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and not msg.error():
            again.append(msg.value())
    reader.close()
    assert sorted(again) == sorted(b"%06d" % i for i in range(total))


def test_bad_moves_are_refused_clearly(make_broker):
    b = make_broker("--shards", "2")
    create_topic(b.bootstrap, "fixed", 1)
    assert move(b, "nothing", 0, 1)[0] == 404
    status, answer = move(b, "fixed", 5, 1)
    assert status == 404 and "no partition 5" in answer["error"]
    status, answer = move(b, "fixed", 0, 9)
    assert status == 400 and "shards 0-1" in answer["error"]
    status, answer = move(b, "__consumer_offsets", 0, 1)
    assert status == 400 and "internal" in answer["error"]
    request = urllib.request.Request(f"http://127.0.0.1:{b.metrics_port}/v1/partitions/move?topic=fixed",
                                     data=b"", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 400
    # Moving to where it is already is a no-op success.
    here = owner(b, "fixed", 0)
    assert move(b, "fixed", 0, here) == (200, {"topic": "fixed", "partition": 0, "from_shard": here, "to_shard": here})


def test_admin_cli_shards_and_move(make_broker):
    import subprocess
    from conftest import BINARY

    b = make_broker("--shards", "2")
    create_topic(b.bootstrap, "cli", 2)
    url = f"http://127.0.0.1:{b.metrics_port}"

    def admin(*args):
        return subprocess.run([str(BINARY), "admin", "--admin-url", url, *args], capture_output=True, timeout=120)

    r = admin("shards")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "busy seconds" in out and "cli" in out
    r = admin("shards", "--json")
    report = json.loads(r.stdout)
    assert [s["shard"] for s in report["shards"]] == [0, 1]
    placed = {p["partition"]: p["shard"] for p in report["partitions"] if p["topic"] == "cli"}
    assert set(placed) == {0, 1}
    to = 1 - placed[0]
    r = admin("partition", "move", "cli/0", "--to-shard", str(to))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"moved cli/0 from shard {placed[0]} to shard {to}"
    after = json.loads(admin("shards", "--json").stdout)
    assert {p["partition"]: p["shard"] for p in after["partitions"] if p["topic"] == "cli"}[0] == to
    for args, needle in [
        (("partition", "move", "cli/9", "--to-shard", "0"), b"no partition 9"),
        (("partition", "move", "cli", "--to-shard", "0"), b"TOPIC/PARTITION"),
        (("partition", "move", "cli/0", "--to-shard", "5"), b"shards 0-1"),
    ]:
        r = admin(*args)
        assert r.returncode == 1 and needle in r.stderr, (args, r.stderr)
    r = subprocess.run([str(BINARY), "admin", "--admin-url", "http://127.0.0.1:1", "shards"],
                       capture_output=True, timeout=30)
    assert r.returncode == 1 and b"cannot reach the admin API" in r.stderr


def test_bench_retries_through_moves_and_counts_exactly(make_broker, tmp_path):
    import subprocess
    from conftest import BINARY

    b = make_broker("--shards", "2")
    out = tmp_path / "bench.json"
    bench = subprocess.Popen([str(BINARY.parent / "ringtail-bench"), "produce", "--brokers", b.bootstrap, "--topic", "busy",
                              "--partitions", "2", "--connections", "2", "--duration", "6", "--batch-records", "500",
                              "--acks", "-1", "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    for i in range(4):
        status, answer = move(b, "busy", 0, 1 - owner(b, "busy", 0))
        assert status == 200, answer
        time.sleep(0.5)
    _, err = bench.communicate(timeout=120)
    assert bench.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.read_text())
    assert report["errors"] == 0 and report["retries"] > 0, report
    text = b.metrics()
    ends = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith('ringtail_partition_log_end_offset{topic="busy"')]
    assert len(ends) == 2 and sum(ends) == report["messages"], (ends, report["messages"])


def test_balancer_splits_two_hot_partitions(make_broker, tmp_path):
    """Two hot partitions on the shard that also holds the load's connections: the balancer
    (core.balance.interval.ms = 1500) moves one to the other shard, then leaves them."""
    import subprocess
    from conftest import BINARY
    from test_metrics import parse, value

    config = tmp_path / "balance.toml"
    config.write_text('"core.balance.interval.ms" = 1500\n')
    b = make_broker("--shards", "2", "--config", str(config))
    create_topic(b.bootstrap, "hot", 2)
    out = tmp_path / "bench.json"
    bench = subprocess.Popen([str(BINARY.parent / "ringtail-bench"), "produce", "--brokers", b.bootstrap, "--topic", "hot",
                              "--partitions", "2", "--connections", "2", "--duration", "14", "--batch-records", "1000",
                              "--acks", "1", "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    samples = parse(b.metrics())
    busiest = max((0, 1), key=lambda s: value(samples, "ringtail_shard_connections", shard=str(s)))
    for p in (0, 1):
        if owner(b, "hot", p) != busiest:
            assert move(b, "hot", p, busiest)[0] == 200
    deadline = time.time() + 10
    while time.time() < deadline and owner(b, "hot", 0) == owner(b, "hot", 1):
        time.sleep(0.2)
    assert owner(b, "hot", 0) != owner(b, "hot", 1), b.read_log()[-3000:]
    split = (owner(b, "hot", 0), owner(b, "hot", 1))
    time.sleep(4.5)  # three more intervals: no flapping back
    assert (owner(b, "hot", 0), owner(b, "hot", 1)) == split
    _, err = bench.communicate(timeout=120)
    assert bench.returncode == 0, err.decode()[-2000:]
    moved = [l for l in b.read_log().splitlines() if "core balance: moved" in l]
    assert 1 <= len(moved) <= 2, moved
    report = json.loads(out.read_text())
    ends = [float(line.rsplit(" ", 1)[1]) for line in b.metrics().splitlines()
            if line.startswith('ringtail_partition_log_end_offset{topic="hot"')]
    assert sum(ends) == report["messages"]
