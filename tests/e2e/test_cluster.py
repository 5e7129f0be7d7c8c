"""Three real ringtail processes on loopback forming a cluster (docs/cluster.md): a Raft
controller quorum on openraft, brokers that register, heartbeat and are fenced when they go
silent. Driven by confluent-kafka and Debian's kcat."""

import json
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port


def start_cluster(tmp_path, n=3, brokers_only=0):
    """`n` voters (combined mode), then `brokers_only` brokers that are not voters."""
    timing = tmp_path / "cluster.toml"
    timing.write_text('"broker.session.timeout.ms" = 3000\n"broker.heartbeat.interval.ms" = 500\n')
    voters = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in range(1, n + 1))
    brokers = {}
    for i in range(1, n + brokers_only + 1):
        args = ["--node-id", str(i), "--controller-quorum-voters", voters, "--shards", "1",
                "--config", str(timing)]
        if i > n:
            args += ["--controller-listen", f"127.0.0.1:{free_port()}"]
        brokers[i] = Broker(tmp_path / f"node-{i}" / "data", args)
    for b in brokers.values():  # all at once: each waits for a quorum to register
        b.start()
    return brokers


def cluster_view(bootstrap):
    """(broker ids, controller id) from Metadata, as confluent-kafka sees them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    metadata = admin.list_topics(timeout=5)
    return set(metadata.brokers), metadata.controller_id


def wait_for(bootstrap, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = cluster_view(bootstrap)
            if predicate(*seen):
                return seen
        except Exception as e:  # noqa: BLE001 - a broker coming up answers nothing for a moment
            seen = e
        time.sleep(0.2)
    raise AssertionError(f"cluster did not settle: last seen {seen}")


@pytest.fixture
def cluster(tmp_path):
    brokers = start_cluster(tmp_path)
    yield brokers
    for b in brokers.values():
        if b.alive():
            code = b.stop()
            assert code == 0, f"exit {code} on SIGTERM:\n{b.read_log()[-4000:]}"
        assert "panicked" not in b.read_log(), b.read_log()[-4000:]


def test_three_brokers_form_a_cluster_and_every_one_lists_them_all(cluster):
    for b in cluster.values():
        ids, controller = wait_for(b.bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    views = {cluster_view(b.bootstrap)[1] for b in cluster.values()}
    assert len(views) == 1, f"every broker names the same controller: {views}"
    listed = json.loads(subprocess.run(
        ["kcat", "-b", cluster[1].bootstrap, "-L", "-J"], capture_output=True, text=True,
        timeout=30, check=True).stdout)
    assert sorted(b["id"] for b in listed["brokers"]) == [1, 2, 3], listed["brokers"]
    ports = {b["name"].rsplit(":", 1)[1] for b in listed["brokers"]}
    assert ports == {str(b.port) for b in cluster.values()}, "each broker's advertised listener"


def test_killing_the_controller_elects_another_and_the_dead_broker_is_fenced_then_rejoins(cluster):
    _, controller = wait_for(cluster[1].bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    survivor = next(b for i, b in cluster.items() if i != controller)
    cluster[controller].kill9()
    killed_at = time.monotonic()
    ids, new_controller = wait_for(
        survivor.bootstrap, lambda ids, c: c not in (-1, controller) and controller not in ids)
    took = time.monotonic() - killed_at
    assert ids == {1, 2, 3} - {controller}, "the dead broker is fenced and no longer listed"
    assert took < 15, f"new controller and fencing took {took:.1f} s"
    from confluent_kafka.admin import NewTopic
    survivor_admin = AdminClient({"bootstrap.servers": survivor.bootstrap})
    survivor_admin.create_topics([NewTopic("after-failover", 4, 1)])["after-failover"].result(timeout=15)
    leaders = {p.leader for p in survivor_admin.list_topics("after-failover", timeout=5)
               .topics["after-failover"].partitions.values()}
    assert leaders == ids, f"topic creation works again, on the live brokers only: {leaders}"
    cluster[controller].start()
    ids, _ = wait_for(survivor.bootstrap, lambda ids, c: ids == {1, 2, 3})
    log = cluster[controller].read_log()
    assert log.count("registered with the controller quorum") == 2, "registered again after the restart"


def test_a_topic_spreads_over_the_brokers_and_everything_produced_through_any_comes_back(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    for b in cluster.values():
        wait_for(b.bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    admin = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    admin.create_topics([NewTopic("spread", 12, 1)])["spread"].result(timeout=15)
    for b in cluster.values():  # every broker applied it and tells the same story
        deadline = time.monotonic() + 10
        while True:
            topic = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics("spread", timeout=5).topics["spread"]
            if len(topic.partitions) == 12 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        leaders = sorted(p.leader for p in topic.partitions.values())
        assert leaders == [1] * 4 + [2] * 4 + [3] * 4, f"broker {b.port}: leaders {leaders}"
    # A produce sent to a broker that does not lead the partition is sent away.
    from kafka_wire import connect, produce_v7, produce_v7_error, read_response, record_batch
    metadata = admin.list_topics("spread", timeout=5).topics["spread"]
    led_by_1 = next(p for p, m in metadata.partitions.items() if m.leader == 1)
    sock = connect(cluster[2].bootstrap)
    sock.sendall(produce_v7("spread", led_by_1, record_batch([b"misrouted"])))
    assert produce_v7_error(read_response(sock))[0] == 6, "NOT_LEADER_OR_FOLLOWER"
    sock.close()
    # Through one bootstrap broker, every partition on every broker.
    producer = Producer({"bootstrap.servers": cluster[2].bootstrap, "acks": "all", "linger.ms": 5})
    sent = {p: [] for p in range(12)}
    for i in range(1200):
        value = f"m{i}".encode()
        producer.produce("spread", value=value, partition=i % 12)
        sent[i % 12].append(value)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": cluster[3].bootstrap, "group.id": "reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("spread", p, 0) for p in range(12)])
    got = {p: [] for p in range(12)}
    deadline = time.monotonic() + 30
    while sum(map(len, got.values())) < 1200 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got[message.partition()].append(message.value())
    consumer.close()
    assert got == sent, "every message back, in order per partition"
    listed = json.loads(subprocess.run(["kcat", "-b", cluster[3].bootstrap, "-L", "-J", "-t", "spread"],
                                       capture_output=True, text=True, timeout=30, check=True).stdout)
    assert sorted(p["leader"] for p in listed["topics"][0]["partitions"]) == leaders


def test_a_consumer_group_of_three_spans_the_brokers_and_commits(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    wait_for(cluster[1].bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    admin = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    admin.create_topics([NewTopic("work", 6, 1)])["work"].result(timeout=15)
    producer = Producer({"bootstrap.servers": cluster[1].bootstrap, "acks": "all"})
    for i in range(600):
        producer.produce("work", value=f"w{i}".encode(), partition=i % 6)
    assert producer.flush(30) == 0
    members = [Consumer({"bootstrap.servers": b.bootstrap, "group.id": "workers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 10000}) for b in cluster.values()]
    for m in members:
        m.subscribe(["work"])
    seen = {}
    deadline = time.monotonic() + 60
    while len(seen) < 600 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            message = m.poll(0.2)
            if message is not None and not message.error():
                seen[message.value()] = i
                m.commit(message=message, asynchronous=False)
    assert len(seen) == 600, f"{len(seen)} of 600 consumed"
    assert len(set(seen.values())) == 3, "all three members got partitions"
    committed = members[0].committed([TopicPartition("work", p) for p in range(6)], timeout=10)
    assert sum(tp.offset for tp in committed) == 600, committed
    for m in members:
        m.close()


def test_a_topic_deleted_through_any_broker_is_gone_from_all_and_comes_back_empty(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    wait_for(cluster[1].bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    admin = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    admin.create_topics([NewTopic("doomed", 3, 1)])["doomed"].result(timeout=15)
    producer = Producer({"bootstrap.servers": cluster[1].bootstrap, "acks": "all"})
    for p in range(3):
        producer.produce("doomed", value=b"old", partition=p)
    assert producer.flush(30) == 0
    other = AdminClient({"bootstrap.servers": cluster[3].bootstrap})  # kept: its futures need it
    other.delete_topics(["doomed"])["doomed"].result(timeout=15)
    for b in cluster.values():
        deadline = time.monotonic() + 10
        while "doomed" in AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5).topics:
            assert time.monotonic() < deadline, f"broker {b.port} still lists the deleted topic"
            time.sleep(0.2)
    admin.create_topics([NewTopic("doomed", 3, 1)])["doomed"].result(timeout=15)
    consumer = Consumer({"bootstrap.servers": cluster[2].bootstrap, "group.id": "check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("doomed", p, 0) for p in range(3)])
    old = [m for m in (consumer.poll(0.5) for _ in range(8)) if m is not None and not m.error()]
    consumer.close()
    assert old == [], "the re-created topic starts empty on every broker"


def test_a_broker_that_is_not_a_voter_joins_as_a_learner_and_leads_partitions(tmp_path):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    brokers = start_cluster(tmp_path, n=3, brokers_only=1)
    try:
        for b in brokers.values():
            wait_for(b.bootstrap, lambda ids, c: ids == {1, 2, 3, 4} and c in (1, 2, 3))
        admin = AdminClient({"bootstrap.servers": brokers[4].bootstrap})
        admin.create_topics([NewTopic("four", 8, 1)])["four"].result(timeout=15)
        topic = admin.list_topics("four", timeout=5).topics["four"]
        leaders = sorted(p.leader for p in topic.partitions.values())
        assert leaders == [1, 1, 2, 2, 3, 3, 4, 4], leaders
        producer = Producer({"bootstrap.servers": brokers[1].bootstrap, "acks": "all"})
        for i in range(80):
            producer.produce("four", value=f"v{i}".encode(), partition=i % 8)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": brokers[4].bootstrap, "group.id": "four",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("four", p, 0) for p in range(8)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 80 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                got.append(message.value())
        consumer.close()
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(80))
        assert "following the metadata log as a learner" in brokers[4].read_log()
    finally:
        for b in brokers.values():
            if b.alive():
                b.stop()
            assert "panicked" not in b.read_log(), b.read_log()[-4000:]


def test_kafka_python_auto_creates_through_one_broker_and_reads_through_another(cluster):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTopicPartition

    for b in cluster.values():
        wait_for(b.bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    producer = KafkaProducer(bootstrap_servers=cluster[3].bootstrap, acks="all")
    for i in range(50):
        producer.send("auto", f"a{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=cluster[1].bootstrap, consumer_timeout_ms=10000,
                             enable_auto_commit=False)
    consumer.assign([KTopicPartition("auto", 0)])
    consumer.seek_to_beginning()
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [f"a{i}".encode() for i in range(50)], "auto-created once, read back in order"


def test_producer_ids_are_unique_across_brokers_and_restarts(cluster):
    from kafka_wire import connect, init_producer_id

    for b in cluster.values():
        wait_for(b.bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)

    def ids_from(broker, n=3):
        sock = connect(broker.bootstrap)
        try:
            got = []
            for _ in range(n):
                error, producer_id, _ = init_producer_id(sock)
                assert error == 0, error
                got.append(producer_id)
            return got
        finally:
            sock.close()

    first = [pid for b in cluster.values() for pid in ids_from(b)]
    assert len(set(first)) == len(first), f"one id twice across brokers: {first}"
    cluster[2].stop()
    cluster[2].start()
    wait_for(cluster[2].bootstrap, lambda ids, c: ids == {1, 2, 3})
    again = ids_from(cluster[2])
    assert not set(again) & set(first), "a restarted broker never hands out an id again"


def test_a_config_altered_through_one_broker_applies_on_every_broker(cluster):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

    wait_for(cluster[1].bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    admin = AdminClient({"bootstrap.servers": cluster[1].bootstrap})
    admin.create_topics([NewTopic("tuned", 3, 1)])["tuned"].result(timeout=15)
    other = AdminClient({"bootstrap.servers": cluster[2].bootstrap})
    entry = ConfigEntry("segment.bytes", "4096", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "tuned", incremental_configs=[entry])
    list(other.incremental_alter_configs([resource]).values())[0].result(15)
    for b in cluster.values():
        deadline = time.monotonic() + 10
        while True:
            client = AdminClient({"bootstrap.servers": b.bootstrap})  # kept: its futures need it
            described = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "tuned")])
            if list(described.values())[0].result(10)["segment.bytes"].value == "4096":
                break
            assert time.monotonic() < deadline, f"broker {b.port} does not show the new config"
            time.sleep(0.2)
    # Every partition, wherever it lives, now rolls its segments at 4 KiB.
    producer = Producer({"bootstrap.servers": cluster[3].bootstrap, "linger.ms": 0,
                         "batch.num.messages": 1})
    for i in range(300):
        producer.produce("tuned", value=b"x" * 200, partition=i % 3)
    assert producer.flush(30) == 0
    for p in range(3):
        dirs = [b.data_dir / f"tuned-{p}" for b in cluster.values() if (b.data_dir / f"tuned-{p}").is_dir()]
        assert len(dirs) == 1, dirs
        assert len(list(dirs[0].glob("*.log"))) >= 5, (p, sorted(dirs[0].iterdir()))


def test_ringtail_admin_sees_the_whole_cluster(cluster):
    from confluent_kafka import Consumer, Producer

    from conftest import BINARY

    def admin(b, *args):
        r = subprocess.run([str(BINARY), "admin", "--bootstrap-server", b.bootstrap, *args, "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return json.loads(r.stdout)

    wait_for(cluster[1].bootstrap, lambda ids, c: ids == {1, 2, 3} and c in ids)
    admin(cluster[1], "topic", "create", "cli-spread", "--partitions", "6")
    status = admin(cluster[3], "cluster", "status")
    assert [b["id"] for b in status["brokers"]] == [1, 2, 3]
    assert sum(b["controller"] for b in status["brokers"]) == 1
    assert status["controller"] in (1, 2, 3)
    assert sum(b["leader_partitions"] for b in status["brokers"]) == status["partitions"]
    topic = admin(cluster[2], "topic", "describe", "cli-spread")["topics"][0]
    leaders = [p["leader"] for p in topic["partitions"]]
    assert sorted(set(leaders)) == [1, 2, 3], leaders
    # Offsets come from each partition's own leader.
    producer = Producer({"bootstrap.servers": cluster[1].bootstrap})
    for i in range(60):
        producer.produce("cli-spread", value=b"v", partition=i % 6)
    assert producer.flush(30) == 0
    topic = admin(cluster[3], "topic", "describe", "cli-spread")["topics"][0]
    assert [p["log_end_offset"] for p in topic["partitions"]] == [10] * 6
    # A group, wherever its coordinator is, is listed and its lag read through any broker.
    consumer = Consumer({"bootstrap.servers": cluster[2].bootstrap, "group.id": "cli-cluster",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["cli-spread"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 60 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got += 1
    assert got == 60
    consumer.commit(asynchronous=False)
    groups = {g["group"]: g for g in admin(cluster[1], "group", "list")["groups"]}
    assert groups["cli-cluster"]["coordinator"] in (1, 2, 3)
    lag = admin(cluster[3], "group", "lag", "cli-cluster")
    assert len(lag["partitions"]) == 6 and lag["total_lag"] == 0
    described = admin(cluster[1], "group", "describe", "cli-cluster")
    assert described["coordinator"] == groups["cli-cluster"]["coordinator"]
    assert len(described["members"][0]["partitions"]) == 6
    consumer.close()
