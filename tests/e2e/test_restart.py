"""Everything acknowledged reads back after a graceful restart and after kill -9."""

import signal

import pytest

from confluent_kafka import Producer

from helpers import create_topic, consume_all, kcat


def produce(bootstrap, topic, count, start=0, acks="all"):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 2})
    acked = []
    for i in range(start, start + count):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2,
                         on_delivery=lambda err, msg: acked.append(msg.value()) if err is None else None)
    assert producer.flush(30) == 0
    return acked


def values(bootstrap, topic, expected):
    return sorted(int(m.value()[1:]) for m in consume_all(bootstrap, topic, [0, 1], expected))


def test_graceful_restart_keeps_everything(broker):
    create_topic(broker.bootstrap, "restart", 2)
    acked = produce(broker.bootstrap, "restart", 1000)
    assert len(acked) == 1000
    assert broker.stop(signal.SIGTERM) == 0
    assert (broker.data_dir / "restart-0" / "clean-shutdown").exists()
    broker.start()
    assert values(broker.bootstrap, "restart", 1000) == list(range(1000))
    # The log goes on at the right offsets.
    produce(broker.bootstrap, "restart", 10, start=1000)
    assert values(broker.bootstrap, "restart", 1010) == list(range(1010))


@pytest.mark.parametrize("fsync,acks", [("acks-all", "all"), ("acks-all", "1"), ("never", "1"), ("always", "1")])
def test_kill_9_keeps_every_acknowledged_message(make_broker, fsync, acks):
    broker = make_broker("--fsync", fsync)
    create_topic(broker.bootstrap, "crash", 2)
    total = 0
    for round_ in range(3):
        acked = produce(broker.bootstrap, "crash", 500, start=total, acks=acks)
        assert len(acked) == 500
        total += 500
        broker.kill9()
        assert not (broker.data_dir / "crash-0" / "clean-shutdown").exists()
        broker.start()
        assert values(broker.bootstrap, "crash", total) == list(range(total)), f"round {round_}"


def test_starts_on_an_empty_directory_and_sigint_stops_cleanly(make_broker, tmp_path):
    b = make_broker(data_dir=tmp_path / "fresh" / "nested")
    kcat("-b", b.bootstrap, "-P", "-t", "t", input=b"hello\n")
    assert b.stop(signal.SIGINT) == 0


def test_shutdown_does_not_wait_for_fsync_intervals(make_broker):
    import time

    b = make_broker("--fsync", "interval:5000")
    for topic in ("i1", "i2", "i3"):
        kcat("-b", b.bootstrap, "-P", "-t", topic, input=b"x\n")
    started = time.time()
    assert b.stop(signal.SIGTERM) == 0
    assert time.time() - started < 4, "SIGTERM waited for 5 s fsync intervals"
