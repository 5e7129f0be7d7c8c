"""Prometheus metrics: every family moves under load, the text passes promtool, and a real
Prometheus scrapes the broker and answers a rate() of produced messages."""

import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import json

import pytest
from confluent_kafka import Consumer, Producer

import kafka_wire
from conftest import free_port
from helpers import create_topic

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, frozenset of (label, value))): value}"""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    """Sum of `name` over the samples whose labels include `labels`."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    assert found, f"no {name} with {labels}"
    return sum(found)


def produce(bootstrap, topic, count, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, value=b"v%06d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def test_families_move_under_load(make_broker):
    started = time.time()
    b = make_broker("--shards", "2")
    create_topic(b.bootstrap, "metered", 2)
    before = parse(b.metrics())
    assert value(before, "ringtail_shards") == 2
    assert value(before, "ringtail_scrape_shards_missing") == 0
    assert value(before, "ringtail_partition_log_end_offset", topic="metered") == 0

    produce(b.bootstrap, "metered", 1000, 2)
    consumer = Consumer({
        "bootstrap.servers": b.bootstrap, "group.id": "readers", "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe(["metered"])
    seen, deadline = 0, time.time() + 30
    while seen < 1000 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
    assert seen == 1000
    consumer.commit(asynchronous=False)
    # A request is counted once its response was sent, which may be just after the client
    # read it: wait for the last ones to be counted.
    apis = ("Fetch", "JoinGroup", "SyncGroup", "OffsetCommit", "Metadata", "ApiVersions")
    deadline = time.time() + 10
    while True:
        after = parse(b.metrics())
        counted = {dict(ls).get("api") for (n, ls) in after if n == "ringtail_api_requests_total"}
        if set(apis) <= counted or time.time() > deadline:
            break
        time.sleep(0.1)

    # Per partition: exact counts.
    for p in ("0", "1"):
        assert value(after, "ringtail_partition_messages_in_total", topic="metered", partition=p) == 500
        assert value(after, "ringtail_partition_log_end_offset", topic="metered", partition=p) == 500
        assert value(after, "ringtail_partition_high_watermark", topic="metered", partition=p) == 500
        assert value(after, "ringtail_partition_log_start_offset", topic="metered", partition=p) == 0
        assert value(after, "ringtail_partition_segments", topic="metered", partition=p) == 1
        assert value(after, "ringtail_partition_messages_out_total", topic="metered", partition=p) >= 500
        assert value(after, "ringtail_partition_offline", topic="metered", partition=p) == 0
    bytes_in = value(after, "ringtail_partition_bytes_in_total", topic="metered")
    assert bytes_in > 1000 * 7
    assert value(after, "ringtail_partition_bytes_out_total", topic="metered") >= bytes_in
    assert value(after, "ringtail_partition_size_bytes", topic="metered") >= bytes_in
    shards_of = {dict(ls)["shard"] for (n, ls) in after if n == "ringtail_partition_segments" and ("topic", "metered") in ls}
    assert shards_of == {"0", "1"}, "the two partitions live on the two shards"

    # Per shard: the runtime worked, jobs crossed shards, the consumer is connected.
    for name in ("ringtail_shard_busy_seconds_total", "ringtail_shard_io_submissions_total",
                 "ringtail_shard_io_completions_total", "ringtail_shard_parks_total"):
        for shard in ("0", "1"):
            assert value(after, name, shard=shard) > value(before, name, shard=shard), name
    assert value(after, "ringtail_shard_cross_shard_sent_total") > value(before, "ringtail_shard_cross_shard_sent_total")
    assert value(after, "ringtail_shard_cross_shard_received_total") >= value(after, "ringtail_shard_cross_shard_sent_total")
    assert value(after, "ringtail_shard_connections") >= 1
    assert value(after, "ringtail_shard_iowq_workers") >= 1
    assert 0 < value(after, "ringtail_shard_busy_seconds_total", shard="0") < time.time() - started

    # fdatasyncs (acks=all under the default policy) and their sizes.
    fsyncs = value(after, "ringtail_fsync_duration_seconds_count") - value(before, "ringtail_fsync_duration_seconds_count")
    assert fsyncs >= 1
    assert value(after, "ringtail_fsync_size_bytes_sum") >= bytes_in
    assert value(after, "ringtail_fsync_duration_seconds_bucket", le="+Inf") == value(after, "ringtail_fsync_duration_seconds_count")

    # Per API: requests and the latency histogram agree.
    produced = value(after, "ringtail_api_requests_total", api="Produce")
    assert produced >= 1
    assert value(after, "ringtail_api_request_duration_seconds_count", api="Produce") == produced
    assert value(after, "ringtail_api_request_duration_seconds_bucket", api="Produce", le="+Inf") == produced
    assert value(after, "ringtail_api_request_duration_seconds_bucket", api="Produce", le="10") <= produced
    for api in apis:
        assert value(after, "ringtail_api_requests_total", api=api) >= 1, api

    # The group: one stable member, its commits, no lag; then lag appears.
    assert value(after, "ringtail_group_members", group="readers") == 1
    assert value(after, "ringtail_group_state", group="readers", state="Stable") == 1
    assert value(after, "ringtail_group_committed_offset", group="readers", topic="metered") == 1000
    assert value(after, "ringtail_group_lag", group="readers", topic="metered") == 0
    produce(b.bootstrap, "metered", 10, 2)
    lagging = parse(b.metrics())
    assert value(lagging, "ringtail_group_lag", group="readers", topic="metered") == 10
    consumer.close()

    # Errors by API and code: a produce to a partition that does not exist.
    errors_before = parse(b.metrics())
    with kafka_wire.connect(b.bootstrap) as sock:
        sock.sendall(kafka_wire.produce_v7("metered", 7, kafka_wire.record_batch([b"x"])))
        error, _ = kafka_wire.produce_v7_error(kafka_wire.read_response(sock))
    assert error == 3  # UNKNOWN_TOPIC_OR_PARTITION
    key = ("ringtail_api_errors_total", frozenset({("api", "Produce"), ("code", "3")}))
    assert parse(b.metrics())[key] == errors_before.get(key, 0) + 1


def test_text_passes_promtool(make_broker):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is needed: scripts/test-all.sh installs it"
    b = make_broker()
    create_topic(b.bootstrap, "linted", 3)
    produce(b.bootstrap, "linted", 300, 3)
    text = b.metrics()
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_endpoint_answers_only_metrics(make_broker):
    b = make_broker()
    for path, code in (("/", 404), ("/nothing", 404)):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}{path}", timeout=5)
            raise AssertionError(path)
        except urllib.error.HTTPError as e:
            assert e.code == code
    request = urllib.request.Request(f"http://127.0.0.1:{b.metrics_port}/metrics", data=b"x", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("POST answered")
    except urllib.error.HTTPError as e:
        assert e.code == 405
    off = make_broker("--metrics-listen", "off")
    assert "metrics at" not in off.read_log()
    assert "metrics at http://127.0.0.1:%d/metrics" % b.metrics_port in b.read_log()


def test_prometheus_scrapes_and_answers_a_rate(make_broker, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is needed: scripts/test-all.sh installs it"
    b = make_broker()
    create_topic(b.bootstrap, "scraped", 2)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ringtail\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{b.metrics_port}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def query(expr):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=5) as r:
                answer = json.load(r)
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
        deadline, rate, up = time.time() + 60, 0.0, None
        while time.time() < deadline:
            for i in range(2000):
                producer.produce("scraped", value=b"m%d" % i, partition=i % 2)
            producer.flush(30)
            try:
                up = query('up{job="ringtail"}')
                result = query('sum(rate(ringtail_partition_messages_in_total{topic="scraped"}[10s]))')
            except OSError:
                time.sleep(0.5)  # Prometheus still starting
                continue
            if result and float(result[0]["value"][1]) > 0:
                rate = float(result[0]["value"][1])
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", f"target not up: {up}"
        assert rate > 0, (tmp_path / "prometheus.log").read_text()[-2000:]
        busy = query("rate(ringtail_shard_busy_seconds_total[10s])")
        assert busy and all(0 <= float(s["value"][1]) <= 1.05 for s in busy), busy
        p99 = query('histogram_quantile(0.99, sum by (le) (rate(ringtail_api_request_duration_seconds_bucket{api="Produce"}[10s])))')
        assert p99 and float(p99[0]["value"][1]) > 0, p99
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
