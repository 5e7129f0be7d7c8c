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


def test_kcat_group_consumer_commits_and_resumes(make_broker, tmp_path):
    """librdkafka 2.0.2's group consumer: reads everything, commits, and a second run of the
    same group reads only what came after."""
    config = tmp_path / "groups.toml"
    config.write_text('"group.initial.rebalance.delay.ms" = 200\n')
    b = make_broker("--config", str(config))
    kcat("-b", b.bootstrap, "-P", "-t", "kg", input=b"".join(b"m%d\n" % i for i in range(20)))
    out = kcat("-b", b.bootstrap, "-G", "kcat-group", "-o", "beginning", "-e", "-X", "enable.auto.commit=true",
               "-X", "auto.commit.interval.ms=100", "kg", timeout=60)
    assert out.decode().split() == [f"m{i}" for i in range(20)]
    kcat("-b", b.bootstrap, "-P", "-t", "kg", input=b"late1\nlate2\n")
    # No -o this time: in -G mode kcat would apply it over the committed offsets.
    out = kcat("-b", b.bootstrap, "-G", "kcat-group", "-e", "kg", timeout=60)
    assert out.decode().split() == ["late1", "late2"], "resumed from the committed offset"
