"""ringtail-bench against the real broker: every mode runs, counts what it should, writes the
JSON summary the issue names, and check exits 0 on PASS and 1 on FAIL."""

import json
import subprocess
from pathlib import Path

from conftest import BINARY

BENCH = BINARY.parent / "ringtail-bench"
KEYS = {"mode", "messages", "bytes", "seconds", "msgs_per_sec", "mb_per_sec", "latency_us", "settings"}


def bench(*args, timeout=120):
    return subprocess.run([str(BENCH), *args], capture_output=True, timeout=timeout)


def test_produce_consume_e2e_and_check(broker, tmp_path):
    out = tmp_path / "produce.json"
    r = bench("produce", "--brokers", broker.bootstrap, "--topic", "b", "--partitions", "3", "--connections", "2",
              "--messages", "150000", "--batch-records", "500", "--acks", "-1", "--json", str(out))
    assert r.returncode == 0, r.stderr.decode()
    produced = json.loads(out.read_text())
    assert KEYS <= produced.keys()
    assert produced["messages"] == 150000 and produced["mode"] == "produce"
    assert set(produced["latency_us"]) == {"p50", "p90", "p99", "p999", "max"}
    assert produced["latency_us"]["p50"] > 0

    out = tmp_path / "consume.json"
    r = bench("consume", "--brokers", broker.bootstrap, "--topic", "b", "--connections", "2", "--messages", "150000",
              "--verify", "--json", str(out))
    assert r.returncode == 0, r.stderr.decode()
    consumed = json.loads(out.read_text())
    assert consumed["messages"] == 150000, "every produced record counted once, every CRC checked"

    out = tmp_path / "e2e.json"
    r = bench("e2e", "--brokers", broker.bootstrap, "--topic", "lat", "--rate", "20000", "--duration", "2",
              "--json", str(out))
    assert r.returncode == 0, r.stderr.decode()
    e2e = json.loads(out.read_text())
    assert e2e["mode"] == "e2e" and 30000 <= e2e["messages"] <= 50000
    assert 0 < e2e["latency_us"]["p50"] < 1_000_000

    ok = bench("check", "--brokers", broker.bootstrap, "--topic", "chk", "--messages", "100000",
               "--produce-target", "1000", "--consume-target", "1000")
    assert ok.returncode == 0 and b"PASS" in ok.stdout, ok.stdout.decode() + ok.stderr.decode()
    fail = bench("check", "--brokers", broker.bootstrap, "--topic", "chk2", "--messages", "50000",
                 "--produce-target", "1e12", "--consume-target", "1")
    assert fail.returncode == 1 and b"FAIL" in fail.stdout


def test_bench_reports_an_unreachable_broker_clearly(tmp_path):
    r = bench("produce", "--brokers", "127.0.0.1:1", "--topic", "t", "--messages", "10")
    assert r.returncode == 2
    assert b"connection to 127.0.0.1:1 failed" in r.stderr
