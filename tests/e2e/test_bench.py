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


def test_paced_runs_say_whether_they_kept_their_schedule(broker, tmp_path):
    out = tmp_path / "kept.json"
    r = bench("produce", "--brokers", broker.bootstrap, "--topic", "paced", "--partitions", "2",
              "--rate", "20000", "--duration", "2", "--batch-records", "100", "--acks", "-1", "--json", str(out))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    schedule = json.loads(out.read_text())["settings"]["schedule"]
    assert schedule["kept"] is True and schedule["asked_msgs_per_sec"] == 20000
    assert schedule["achieved_msgs_per_sec"] >= 19000
    assert b"kept" in r.stdout

    # Far beyond what one connection can send: the run must say it fell behind, not report the
    # latencies of its own backlog as the broker's.
    out = tmp_path / "behind.json"
    r = bench("produce", "--brokers", broker.bootstrap, "--topic", "paced", "--rate", "40000000",
              "--duration", "2", "--batch-records", "1000", "--acks", "1", "--json", str(out))
    assert r.returncode == 1, r.stdout.decode() + r.stderr.decode()
    assert b"FELL BEHIND" in r.stdout
    schedule = json.loads(out.read_text())["settings"]["schedule"]
    assert schedule["kept"] is False and schedule["achieved_msgs_per_sec"] < 40000000


def test_a_schedule_one_connection_cannot_pace_is_refused(broker):
    r = bench("produce", "--brokers", broker.bootstrap, "--topic", "t", "--rate", "1e9",
              "--duration", "1", "--batch-records", "1")
    assert r.returncode == 2
    assert b"requests/s per connection" in r.stderr and b"--connections" in r.stderr


def test_check_gates_acks_all_latency(broker):
    ok = bench("check", "--brokers", broker.bootstrap, "--topic", "lat-ok", "--messages", "20000",
               "--produce-target", "1", "--consume-target", "1", "--acks-all-p99-max-ms", "60000",
               "--acks-all-rate", "20000", "--acks-all-seconds", "2")
    assert ok.returncode == 0 and b"PASS" in ok.stdout, ok.stdout.decode() + ok.stderr.decode()
    assert b"acks=all p99 at 20000 msg/s" in ok.stdout
    fail = bench("check", "--brokers", broker.bootstrap, "--topic", "lat-fail", "--messages", "20000",
                 "--produce-target", "1", "--consume-target", "1", "--acks-all-p99-max-ms", "0.001",
                 "--acks-all-rate", "20000", "--acks-all-seconds", "2")
    assert fail.returncode == 1 and b"FAIL" in fail.stdout and b"too slow" in fail.stdout


def test_sweep_runs_a_small_matrix_and_recommends(tmp_path):
    import xml.etree.ElementTree as ET

    out, svg = tmp_path / "sweep.json", tmp_path / "sweep.svg"
    r = bench("sweep", "--broker-bin", str(BINARY), "--shards", "1,2", "--pinned", "no,yes", "--runs", "2",
              "--core-set", "1", "--core-set", "1,0", "--io-workers", "pinned,unpinned",
              "--duration", "1", "--batch-records", "200", "--json", str(out), "--svg", str(svg), timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    layouts = report["layouts"]
    # The default (2 shards unpinned here) first, then every other layout of the matrix once.
    assert layouts[0]["default"] and layouts[0]["flags"] == "--fsync never"
    assert sorted(l["flags"] for l in layouts[1:]) == sorted([
        "--shards 1 --fsync never",
        "--shards 1 --cores 1 --fsync never",
        "--shards 1 --cores 1 --pin-io-workers false --fsync never",
        "--shards 2 --cores 1,0 --fsync never",
        "--shards 2 --cores 1,0 --pin-io-workers false --fsync never",
    ])
    for layout in layouts:
        assert len(layout["runs"]) == 2 and all(run["msgs_per_sec"] > 0 and run["p99_us"] > 0 for run in layout["runs"])
    # The io-wq workers' CPUs as the kernel set them: a shard pinned to core 1 with its workers
    # pinned keeps them there.
    pinned_one = next(l for l in layouts if l["flags"] == "--shards 1 --cores 1 --fsync never")
    assert pinned_one["cores"] == [1] and pinned_one["pin_io_workers"]
    assert {c for run in pinned_one["runs"] for c in run["io_worker_cpus"]} <= {"1"}
    best = max(layouts, key=lambda l: l["median_msgs_per_sec"])
    assert report["recommendation"]["flags"] == best["flags"]
    table = r.stdout.decode()
    assert "recommendation:" in table and "msgs/s median" in table
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}rect")) == 1 + len(layouts)
    # Bad matrices are refused with a message.
    r = bench("sweep", "--broker-bin", str(BINARY), "--shards", "64")
    assert r.returncode == 2 and b"cores" in r.stderr
    r = bench("sweep", "--broker-bin", str(BINARY), "--core-set", "0,0")
    assert r.returncode == 2 and b"--core-set" in r.stderr
