"""Consumer groups with real clients: members split a topic with no partition owned twice,
leaving and killed members are replaced, joining members lose nothing, committed offsets
survive restarts and kill -9, and admin clients list and describe groups."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer

from helpers import create_topic


@pytest.fixture
def group_broker(make_broker, tmp_path):
    config = tmp_path / "groups.toml"
    config.write_text('"group.initial.rebalance.delay.ms" = 200\n')
    return make_broker("--config", str(config))


def produce(bootstrap, topic, count, partitions, start=0):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for i in range(start, start + count):
        producer.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert producer.flush(20) == 0


def consumer(bootstrap, group, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    config.update(extra)
    return Consumer(config)


def poll_until(consumers, seen, done, timeout=40):
    """Polls every consumer in turn, recording (consumer index, partition, value)."""
    deadline = time.time() + timeout
    while not done() and time.time() < deadline:
        for index, c in enumerate(consumers):
            message = c.poll(0.05)
            if message is not None and not message.error():
                seen.append((index, message.partition(), int(message.value())))
    return done()


def assignments(consumers):
    return [sorted(tp.partition for tp in c.assignment()) for c in consumers]


def settle(consumers, partitions, timeout=40):
    """Polls until the group's assignment covers every partition exactly once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.05)
        owned = [p for a in assignments(consumers) for p in a]
        if sorted(owned) == list(range(partitions)) and all(assignments(consumers)):
            return assignments(consumers)
    raise AssertionError(f"group did not settle: {assignments(consumers)}")


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_three_confluent_members_split_a_topic_and_every_message_arrives_once(group_broker, assignor):
    topic, group = f"split-{assignor}", f"splitters-{assignor}"
    create_topic(group_broker.bootstrap, topic, 6)
    members = [consumer(group_broker.bootstrap, group, **{"partition.assignment.strategy": assignor}) for _ in range(3)]
    for c in members:
        c.subscribe([topic])
    split = settle(members, 6)
    assert [len(a) for a in split] == [2, 2, 2]
    produce(group_broker.bootstrap, topic, 600, 6)
    seen = []
    assert poll_until(members, seen, lambda: len(seen) >= 600)
    assert sorted(v for _, _, v in seen) == list(range(600)), "every message exactly once"
    for index, partition, _ in seen:
        assert partition in split[index], "a message came from a partition its member does not own"
    for c in members:
        c.close()


def test_a_member_that_leaves_has_its_partitions_reassigned(group_broker):
    create_topic(group_broker.bootstrap, "leave", 4)
    a, b = consumer(group_broker.bootstrap, "leavers"), consumer(group_broker.bootstrap, "leavers")
    for c in (a, b):
        c.subscribe(["leave"])
    settle([a, b], 4)
    b.close()  # sends LeaveGroup
    started = time.time()
    assert settle([a], 4) == [[0, 1, 2, 3]]
    assert time.time() - started < 6, "a leave rebalances at once, without waiting for the session timeout"
    a.close()


KILLED_MEMBER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "killed", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"})
    c.subscribe(["killed"])
    while True:
        c.poll(0.1)
        if c.assignment():
            print("assigned", flush=True)
""")


def test_a_killed_member_is_replaced_within_the_session_timeout(group_broker):
    create_topic(group_broker.bootstrap, "killed", 4)
    survivor = consumer(group_broker.bootstrap, "killed")
    survivor.subscribe(["killed"])
    victim = subprocess.Popen([sys.executable, "-c", KILLED_MEMBER, group_broker.bootstrap], stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(assignments([survivor])[0]) != 2:
            survivor.poll(0.1)
        assert len(assignments([survivor])[0]) == 2, "the two members share the topic"
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        assert settle([survivor], 4, timeout=30) == [[0, 1, 2, 3]]
        assert time.time() - killed_at < 6 + 4, "reassigned within the session timeout (plus a rebalance)"
    finally:
        victim.kill()
        victim.wait()
        survivor.close()


def test_a_joining_member_triggers_a_rebalance_that_loses_nothing(group_broker):
    create_topic(group_broker.bootstrap, "join", 4)
    produce(group_broker.bootstrap, "join", 400, 4)
    first = consumer(group_broker.bootstrap, "joiners")
    first.subscribe(["join"])
    seen = []
    assert poll_until([first], seen, lambda: len(seen) >= 200)
    first.commit(asynchronous=False)
    second = consumer(group_broker.bootstrap, "joiners")
    second.subscribe(["join"])
    settle([first, second], 4)
    produce(group_broker.bootstrap, "join", 400, 4, start=400)
    assert poll_until([first, second], seen, lambda: set(range(800)) <= {v for _, _, v in seen})
    for c in (first, second):
        c.close()


@pytest.mark.parametrize("stop", ["graceful", "kill9"])
def test_committed_offsets_resume_the_group_after_a_restart(group_broker, stop):
    create_topic(group_broker.bootstrap, "resume", 2)
    produce(group_broker.bootstrap, "resume", 100, 2)
    c = consumer(group_broker.bootstrap, "resumers")
    c.subscribe(["resume"])
    seen = []
    assert poll_until([c], seen, lambda: len(seen) >= 60)
    committed = c.commit(asynchronous=False)
    positions = {tp.partition: tp.offset for tp in committed}
    c.close()
    if stop == "graceful":
        assert group_broker.stop() == 0
    else:
        group_broker.kill9()
    group_broker.start()
    c = consumer(group_broker.bootstrap, "resumers")
    fetched = c.committed([TopicPartition("resume", 0), TopicPartition("resume", 1)], timeout=20)
    assert {tp.partition: tp.offset for tp in fetched} == positions
    c.subscribe(["resume"])
    rest = []
    assert poll_until([c], rest, lambda: len(rest) >= 100 - sum(positions.values()))
    # Resumed exactly at the committed offsets: every later message once, nothing before them.
    for partition, position in positions.items():
        offsets_after = sorted(v // 2 for _, p, v in rest if p == partition)
        assert offsets_after == list(range(position, 50))
    c.close()


def test_kafka_python_group_and_admin_list_and_describe(group_broker):
    create_topic(group_broker.bootstrap, "kp-group", 2)
    produce(group_broker.bootstrap, "kp-group", 50, 2)
    # One thread per consumer with a long poll, as kafka-python applications run: kafka-python
    # 3.0.12 starts a new JoinGroup if a join completes between two short polls, so a single
    # thread alternating short polls would rebalance forever (against any broker).
    members = [KafkaConsumer("kp-group", bootstrap_servers=group_broker.bootstrap, group_id="kp-readers",
                             auto_offset_reset="earliest") for _ in range(2)]
    values = []
    deadline = time.time() + 40

    def read(member):
        while len(values) < 50 and time.time() < deadline:
            for records in member.poll(timeout_ms=10_000).values():
                values.extend(int(r.value) for r in records)

    threads = [threading.Thread(target=read, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(values) == list(range(50))
    for m in members:
        m.commit()
    admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap)
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed["kp-readers"]["protocol_type"] == "consumer"
    assert listed["kp-readers"]["group_state"] == "Stable"
    described = admin.describe_groups(["kp-readers"])["kp-readers"]
    assert described["error"] is None
    assert described["group_state"] == "Stable"
    assert described["protocol_type"] == "consumer"
    assert len(described["members"]) == 2
    assigned = sorted(p for m in described["members"]
                      for topic in m["member_assignment"]["assigned_partitions"] for p in topic["partitions"])
    assert assigned == [0, 1], "each partition is owned by exactly one member"
    offsets = admin.list_group_offsets({"kp-readers": None})["kp-readers"]
    assert sum(o.offset for o in offsets.values()) == 50
    for m in members:
        m.close()
    admin.delete_groups(["kp-readers"])
    assert "kp-readers" not in {g["group_id"] for g in admin.list_groups()}
    admin.close()


def test_offsets_of_a_deleted_topic_are_cleaned_up(group_broker):
    from confluent_kafka.admin import AdminClient

    create_topic(group_broker.bootstrap, "gone", 1)
    produce(group_broker.bootstrap, "gone", 10, 1)
    c = consumer(group_broker.bootstrap, "cleaners")
    c.assign([TopicPartition("gone", 0, 0)])
    c.commit(offsets=[TopicPartition("gone", 0, 10)], asynchronous=False)
    assert c.committed([TopicPartition("gone", 0)], timeout=10)[0].offset == 10
    admin = AdminClient({"bootstrap.servers": group_broker.bootstrap})
    admin.delete_topics(["gone"])["gone"].result(10)
    create_topic(group_broker.bootstrap, "gone", 1)
    assert c.committed([TopicPartition("gone", 0)], timeout=10)[0].offset < 0, "the old topic's offset is gone"
    c.close()


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(group_broker):
    create_topic(group_broker.bootstrap, "static", 4)
    revoked = []

    def static(instance):
        c = consumer(group_broker.bootstrap, "statics", **{"group.instance.id": instance, "session.timeout.ms": 10000})
        c.subscribe(["static"], on_revoke=lambda c, parts: revoked.append((instance, [p.partition for p in parts])))
        return c

    a, b = static("a"), static("b")
    first = settle([a, b], 4)
    revoked.clear()
    a.close()  # a static member leaves no LeaveGroup behind: its place waits for it
    a = static("a")
    again = settle([a, b], 4, timeout=30)
    assert again == first, "the restarted member owns what it owned before"
    for _ in range(20):
        b.poll(0.1)
    assert [r for r in revoked if r[0] == "b" and r[1]] == [], "the other member saw no rebalance"
    a.close()
    b.close()
