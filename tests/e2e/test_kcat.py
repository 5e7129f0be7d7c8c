"""Debian's kcat (librdkafka 2.0.2): metadata, produce and consume."""

from helpers import kcat


def test_metadata_lists_broker_and_topics(broker):
    kcat("-b", broker.bootstrap, "-P", "-t", "kcat-meta", input=b"x\n")
    out = kcat("-b", broker.bootstrap, "-L").decode()
    assert f"broker 0 at {broker.bootstrap}" in out
    assert 'topic "kcat-meta" with 1 partitions' in out


def test_produce_and_consume_with_keys(broker):
    lines = b"".join(b"key%d:value-%d\n" % (i, i) for i in range(200))
    kcat("-b", broker.bootstrap, "-P", "-t", "kcat-topic", "-K", ":", input=lines)
    out = kcat("-b", broker.bootstrap, "-C", "-t", "kcat-topic", "-o", "beginning", "-e", "-f", "%k=%s@%o\n")
    records = out.decode().splitlines()
    assert records == [f"key{i}=value-{i}@{i}" for i in range(200)]


def test_consume_from_an_offset_and_the_end(broker):
    kcat("-b", broker.bootstrap, "-P", "-t", "kcat-offsets", input=b"".join(b"m%d\n" % i for i in range(50)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", "kcat-offsets", "-o", "45", "-e")
    assert out.decode().split() == [f"m{i}" for i in range(45, 50)]
    out = kcat("-b", broker.bootstrap, "-C", "-t", "kcat-offsets", "-o", "-3", "-e")
    assert out.decode().split() == ["m47", "m48", "m49"]
    out = kcat("-b", broker.bootstrap, "-C", "-t", "kcat-offsets", "-o", "end", "-e")
    assert out == b""
