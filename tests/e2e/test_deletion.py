"""Deleted data never comes back: DeleteTopics interrupted by kill -9 at any point, and a data
directory whose topics.meta was lost, never let a re-created topic serve the old records."""

import random
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from helpers import consume_all, create_topic

PARTITIONS = 120


def fill(bootstrap, topic, tag):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for p in range(PARTITIONS):
        producer.produce(topic, value=f"{tag}-{p}".encode(), partition=p)
    assert producer.flush(60) == 0


def partition_dirs(data_dir, topic):
    return [d for d in data_dir.iterdir() if d.is_dir() and d.name.rsplit("-", 1)[0] == topic]


def test_kill_9_during_delete_topics_never_resurrects_deleted_records(make_broker):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = make_broker("--shards", "2")
    for attempt in range(3):
        create_topic(broker.bootstrap, "doomed", PARTITIONS)
        fill(broker.bootstrap, "doomed", f"old{attempt}")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.delete_topics(["doomed"], operation_timeout=30)
        time.sleep(rng.uniform(0.0, 0.25))
        broker.kill9()
        broker.restart()
        # Whatever the kill interrupted: no directory of the old topic is left to adopt.
        left = partition_dirs(broker.data_dir, "doomed")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept: its futures need it
        topics = admin.list_topics(timeout=10).topics
        if "doomed" in topics:
            # The kill came before the deletion was recorded: the topic is whole, as it was.
            assert len(left) == PARTITIONS, f"seed {seed}: a surviving topic lost directories"
            assert len(consume_all(broker.bootstrap, "doomed", range(PARTITIONS), PARTITIONS)) == PARTITIONS
            admin.delete_topics(["doomed"])["doomed"].result(30)
        else:
            assert left == [], f"seed {seed}: directories of a deleted topic survived a restart: {left[:3]}"
        # Re-created under the same name: empty.
        create_topic(broker.bootstrap, "doomed", PARTITIONS)
        assert consume_all(broker.bootstrap, "doomed", range(PARTITIONS), 1, timeout=3) == [], \
            f"seed {seed}: a re-created topic served deleted records"
        admin.delete_topics(["doomed"])["doomed"].result(30)
    assert not any(d.name.endswith("-delete") for d in broker.data_dir.iterdir())


def test_partition_directories_no_registry_names_are_never_adopted(make_broker):
    broker = make_broker()
    create_topic(broker.bootstrap, "precious", 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("precious", value=b"keep me", partition=0)
    assert producer.flush(30) == 0
    assert broker.stop() == 0
    (broker.data_dir / "topics.meta").unlink()  # lost
    broker.start()
    log = broker.read_log()
    assert "belongs to no topic in topics.meta" in log, log[-3000:]
    aside = [d for d in broker.data_dir.iterdir() if d.name.startswith("precious-") and d.name.endswith("-stray")]
    assert len(aside) == 2, "both directories kept, moved aside"
    # A produce auto-creates a new, empty topic of that name: the old records stay aside.
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("precious", value=b"new", partition=0)
    assert producer.flush(30) == 0
    got = consume_all(broker.bootstrap, "precious", [0], 2, timeout=5)
    assert [m.value() for m in got] == [b"new"]
