"""Small helpers shared by the end-to-end tests."""

import subprocess
import time

from confluent_kafka import Consumer, TopicPartition


def kcat(*args, input=None, timeout=30):
    """Runs Debian's kcat (librdkafka 2.0.2); returns stdout, raising on failure."""
    result = subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
    return result.stdout


def consume_all(bootstrap, topic, partitions, expected, start=0, timeout=20):
    """Reads partitions from `start` with confluent-kafka until `expected` messages arrive."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < expected and time.time() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert not message.error(), message.error()
            got.append(message)
    finally:
        consumer.close()
    return got


def create_topic(bootstrap, name, partitions, **config):
    """Creates a topic with confluent-kafka's admin client (kept alive until the result)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)])[name].result(10)
