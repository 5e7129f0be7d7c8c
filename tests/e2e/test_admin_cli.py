"""`ringtail admin` against a real broker: every topic, group and cluster command, as tables and
as JSON, checked against what confluent-kafka sees; errors exit 1 with one clear line.
(`shards` and `partition move` are tested in test_partition_move.py.)"""

import json
import subprocess
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource

from conftest import BINARY


def admin(broker, *args):
    return subprocess.run(
        [str(BINARY), "admin", "--bootstrap-server", broker.bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(broker, *args):
    r = admin(broker, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def as_json(broker, *args):
    return json.loads(ok(broker, *args, "--json"))


def test_topic_commands(broker):
    out = ok(broker, "topic", "create", "cli-a", "--partitions", "3", "--config", "retention.ms=60000")
    assert "created topic cli-a: 3 partitions" in out
    as_json(broker, "topic", "create", "cli-b")  # the broker's num.partitions
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = client.list_topics(timeout=10).topics
    assert len(topics["cli-a"].partitions) == 3 and "cli-b" in topics

    listed = {t["topic"]: t for t in as_json(broker, "topic", "list")["topics"]}
    assert listed["cli-a"]["partitions"] == 3 and not listed["cli-a"]["internal"]
    assert listed["__consumer_offsets"]["internal"]
    table = ok(broker, "topic", "list")
    assert table.splitlines()[0].split() == ["topic", "partitions", "internal"]
    assert any(line.split()[:2] == ["cli-a", "3"] for line in table.splitlines())

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        producer.produce("cli-a", value=b"v", partition=i % 3)
    assert producer.flush(20) == 0
    described = as_json(broker, "topic", "describe", "cli-a")["topics"][0]
    assert described["configs"] == {"retention.ms": "60000"}
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    for p in described["partitions"]:
        assert (p["leader"], p["replicas"], p["isr"]) == (0, [0], [0])
        assert (p["log_start_offset"], p["log_end_offset"]) == (0, 10)
    table = ok(broker, "topic", "describe", "cli-a")
    assert "configs: retention.ms=60000" in table
    assert "log end" in table

    out = ok(broker, "topic", "alter-config", "cli-a", "--set", "segment.ms=3600000", "--delete", "retention.ms")
    assert "segment.ms=3600000" in out
    seen = list(client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "cli-a")]).values())[0].result(10)
    assert seen["segment.ms"].value == "3600000"
    assert seen["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert seen["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    assert as_json(broker, "topic", "delete", "cli-a", "cli-b")["deleted"] == ["cli-a", "cli-b"]
    deadline = time.time() + 10
    while "cli-a" in client.list_topics(timeout=10).topics and time.time() < deadline:
        time.sleep(0.1)
    assert "cli-a" not in client.list_topics(timeout=10).topics


def test_group_commands(broker):
    ok(broker, "topic", "create", "cli-g", "--partitions", "2")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        producer.produce("cli-g", value=b"v", partition=i % 2)
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "cli-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["cli-g"])
    got = 0
    deadline = time.time() + 20
    while got < 20 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got += 1
    assert got == 20
    consumer.commit(asynchronous=False)
    for i in range(5):  # lag: 5 more on partition 0
        producer.produce("cli-g", value=b"late", partition=0)
    assert producer.flush(20) == 0

    groups = {g["group"]: g for g in as_json(broker, "group", "list")["groups"]}
    assert groups["cli-group"]["state"] == "Stable" and groups["cli-group"]["coordinator"] == 0
    described = as_json(broker, "group", "describe", "cli-group")
    assert described["state"] == "Stable" and described["protocol_type"] == "consumer"
    assert len(described["members"]) == 1
    assert sorted(described["members"][0]["partitions"]) == ["cli-g-0", "cli-g-1"]
    assert "cli-g-0,cli-g-1" in ok(broker, "group", "describe", "cli-group")

    lag = as_json(broker, "group", "lag", "cli-group")
    by_partition = {p["partition"]: p for p in lag["partitions"]}
    assert by_partition[0]["committed_offset"] == 10 and by_partition[0]["log_end_offset"] == 15
    assert by_partition[0]["lag"] == 5 and by_partition[1]["lag"] == 0
    assert lag["total_lag"] == 5
    assert "total lag 5" in ok(broker, "group", "lag", "cli-group")

    # A group with members cannot be deleted (NON_EMPTY_GROUP); once empty it can.
    r = admin(broker, "group", "delete", "cli-group")
    assert r.returncode == 1 and "NON_EMPTY_GROUP" in r.stderr, r.stderr
    consumer.close()
    assert as_json(broker, "group", "delete", "cli-group")["deleted"] == ["cli-group"]
    assert "no committed offsets" in ok(broker, "group", "lag", "cli-group")


def test_cluster_status_of_a_single_broker(broker):
    ok(broker, "topic", "create", "cli-c", "--partitions", "4")
    status = as_json(broker, "cluster", "status")
    assert status["controller"] == 0
    assert [(b["id"], b["port"], b["controller"]) for b in status["brokers"]] == [(0, broker.port, True)]
    assert status["brokers"][0]["leader_partitions"] == status["partitions"] >= 4
    assert status["leaderless_partitions"] == []
    assert "controller 0" in ok(broker, "cluster", "status")


def test_errors_exit_1_with_one_clear_line(broker):
    cases = [
        (["topic", "describe", "cli-none"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "create", "cli-y", "--config", "flush.ms=1"], "INVALID_CONFIG"),
        (["topic", "create", "cli-x"], "TOPIC_ALREADY_EXISTS"),
        (["topic", "create", "cli-x", "--config", "nonsense"], "expected KEY=VALUE"),
        (["topic", "delete", "cli-none"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "alter-config", "cli-none", "--set", "retention.ms=5"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (["topic", "alter-config", "cli-none"], "nothing to change"),
        (["group", "describe", "cli-none"], "GROUP_ID_NOT_FOUND"),
        (["group", "delete", "cli-none"], "GROUP_ID_NOT_FOUND"),
    ]
    ok(broker, "topic", "create", "cli-x")
    for args, expected in cases:
        r = admin(broker, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert expected in r.stderr and r.stderr.startswith("ringtail admin: "), (args, r.stderr)
        assert "panicked" not in r.stderr
    r = subprocess.run([str(BINARY), "admin", "--bootstrap-server", "127.0.0.1:1", "topic", "list"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot reach 127.0.0.1:1" in r.stderr, r.stderr
    # A reader that stops early ends the command quietly, without a panic.
    ok(broker, "topic", "create", "cli-many", "--partitions", "200")
    r = subprocess.run(f"{BINARY} admin --bootstrap-server {broker.bootstrap} topic describe cli-many | head -1",
                       shell=True, capture_output=True, text=True, timeout=30)
    assert r.stdout.startswith("topic cli-many") and "panicked" not in r.stderr, r.stderr
