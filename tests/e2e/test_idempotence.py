"""Idempotent producers: the clients' defaults work, a retried batch is stored once with its
original offset, and kill -9 during idempotent production leaves every acknowledged message in
the log exactly once, in order."""

import threading
import time

from confluent_kafka import Producer
from kafka import KafkaProducer

from helpers import consume_all, create_topic
from kafka_wire import connect, init_producer_id, produce_v7, produce_v7_error, read_response, record_batch

OUT_OF_ORDER_SEQUENCE_NUMBER = 45


def test_kafka_python_default_producer_is_idempotent_and_works(broker):
    create_topic(broker.bootstrap, "kp-idem", 3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)  # defaults: idempotent, acks=all
    assert producer.config["enable_idempotence"]
    for i in range(300):
        producer.send("kp-idem", key=b"k", value=b"%d" % i, partition=i % 3)
    producer.flush()
    producer.close()
    got = consume_all(broker.bootstrap, "kp-idem", range(3), 300)
    for partition in range(3):
        values = [int(m.value()) for m in got if m.partition() == partition]
        assert values == list(range(partition, 300, 3))


def test_confluent_idempotent_producer_works(broker):
    create_topic(broker.bootstrap, "ck-idem", 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(1000):
        producer.produce("ck-idem", value=b"%d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    got = consume_all(broker.bootstrap, "ck-idem", [0, 1], 1000)
    for partition in range(2):
        values = [int(m.value()) for m in got if m.partition() == partition]
        assert values == list(range(partition, 1000, 2))


def test_a_retried_batch_is_stored_once_with_its_original_offset(broker):
    with connect(broker.bootstrap) as sock:
        error, producer_id, epoch = init_producer_id(sock)
        assert error == 0 and producer_id >= 0 and epoch == 0
        first = record_batch([b"a", b"b"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0)
        second = record_batch([b"c"], producer_id=producer_id, producer_epoch=epoch, base_sequence=2)
        offsets = []
        for batch in [first, second, first, second]:  # the last two are retries after a "lost" response
            sock.sendall(produce_v7("dup", 0, batch))
            error, base = produce_v7_error(read_response(sock))
            assert error == 0
            offsets.append(base)
        assert offsets == [0, 2, 0, 2]
        # A gap in the sequence is refused.
        gap = record_batch([b"x"], producer_id=producer_id, producer_epoch=epoch, base_sequence=9)
        sock.sendall(produce_v7("dup", 0, gap))
        assert produce_v7_error(read_response(sock))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        # Every new producer gets its own id.
        assert init_producer_id(sock)[1] != producer_id
    values = [m.value() for m in consume_all(broker.bootstrap, "dup", [0], 3)]
    assert values == [b"a", b"b", b"c"]


def test_producer_ids_are_not_reused_after_a_restart(broker):
    with connect(broker.bootstrap) as sock:
        before = init_producer_id(sock)[1]
    broker.kill9()
    broker.start()
    with connect(broker.bootstrap) as sock:
        after = init_producer_id(sock)[1]
    assert after > before


def test_kill_9_during_idempotent_production_keeps_every_ack_exactly_once(broker):
    create_topic(broker.bootstrap, "exactly-once", 2)
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 120000,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 200,
    })
    acked = {0: [], 1: []}
    failed = []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked[msg.partition()].append(int(msg.value()))
        else:
            failed.append(err)

    def produce():
        i = 0
        while not stop.is_set():
            try:
                producer.produce("exactly-once", value=b"%d" % i, partition=i % 2, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001 if i % 50 == 0 else 0)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            broker.kill9()
            time.sleep(0.3)
            broker.start()
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join()
    assert producer.flush(60) == 0
    assert failed == [], failed[:3]
    total = sum(len(v) for v in acked.values())
    assert total > 1000, f"only {total} acknowledged"
    got = consume_all(broker.bootstrap, "exactly-once", [0, 1], total, timeout=60)
    for partition in range(2):
        stored = [int(m.value()) for m in got if m.partition() == partition]
        assert len(stored) == len(set(stored)), f"partition {partition} holds duplicates"
        assert stored == sorted(stored), f"partition {partition} is out of order"
        missing = set(acked[partition]) - set(stored)
        assert not missing, f"partition {partition} lost {len(missing)} acknowledged messages"
