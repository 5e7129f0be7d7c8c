"""The process: flags and config errors, core pinning, shards."""

import os
import subprocess
from pathlib import Path

from conftest import BINARY
from helpers import create_topic, kcat


def run(*args, timeout=10):
    if "--metrics-listen" not in args:
        args = (*args, "--metrics-listen", "off")
    return subprocess.run([str(BINARY), *args], capture_output=True, timeout=timeout)


def test_bad_flags_and_config_exit_with_2_and_a_message(tmp_path):
    for args, needle in [
        (["--fsync", "sometimes"], b"fsync"),
        (["--listen", "nowhere"], b"listen"),
        (["--cores", "0-"], b"cores"),
        (["--shards", "0"], b"shards"),
        (["--metrics-listen", "localhost"], b"metrics-listen"),
        (["--no-such-flag"], b"no-such-flag"),
    ]:
        result = run("--data-dir", str(tmp_path / "d"), *args)
        assert result.returncode == 2, (args, result)
        assert needle in result.stderr, (args, result.stderr)
    bad = tmp_path / "bad.toml"
    bad.write_text('"num.partitions" = 0\n')
    result = run("--config", str(bad), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2 and b"num.partitions" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    result = run("--config", str(unknown))
    assert result.returncode == 2 and b"colour" in result.stderr


def test_config_file_sets_topic_defaults(make_broker, tmp_path):
    config = tmp_path / "ringtail.toml"
    config.write_text('"num.partitions" = 3\nfsync = "always"\n')
    b = make_broker("--config", str(config))
    kcat("-b", b.bootstrap, "-P", "-t", "three", input=b"x\n")
    assert 'topic "three" with 3 partitions' in kcat("-b", b.bootstrap, "-L").decode()


def shard_affinity(pid):
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if name.startswith("shard-"):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out[name] = line.split()[1]
    return out


def test_shards_are_pinned_to_the_requested_cores(make_broker):
    b = make_broker("--cores", "1,0")
    assert shard_affinity(b.proc.pid) == {"shard-0": "1", "shard-1": "0"}
    b2 = make_broker("--shards", "1", "--cores", "1")
    assert shard_affinity(b2.proc.pid) == {"shard-0": "1"}


def io_worker_affinity(pid):
    """Cpus_allowed_list of each io-wq worker thread (named iou-wrk-<ring owner's tid>)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("iou-wrk-"):
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("Cpus_allowed_list:"):
                        out.add(line.split()[1])
        except FileNotFoundError:
            pass  # an idle worker exited
    return out


def test_io_workers_run_on_their_pinned_shards_core(make_broker):
    from confluent_kafka import Producer

    def workers_under_load(b):
        producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 1})
        seen = set()
        for _ in range(10):
            for i in range(2000):
                producer.produce("busy", value=b"x" * 200)
            producer.flush(20)
            seen |= io_worker_affinity(b.proc.pid)
        return seen

    pinned = make_broker("--shards", "1", "--cores", "1")
    assert workers_under_load(pinned) == {"1"}
    # Unpinned shards: the workers may run anywhere.
    anywhere = make_broker("--shards", "1")
    assert workers_under_load(anywhere) == {f"0-{os.cpu_count() - 1}"} if os.cpu_count() > 1 else {"0"}
    # Left to the kernel: since Linux 6.2 a pinned thread's workers keep its affinity, before
    # it they may run on any CPU; either way within the process's CPUs, and the broker works.
    default = make_broker("--shards", "1", "--cores", "1", "--pin-io-workers", "false")
    seen = workers_under_load(default)
    assert seen and seen <= {"1", f"0-{os.cpu_count() - 1}"}, seen


def test_partitions_spread_over_shards_and_all_serve(make_broker):
    b = make_broker("--shards", "2")
    kcat("-b", b.bootstrap, "-P", "-t", "spread", input=b"x\n")  # auto-created with 1 partition
    create_topic(b.bootstrap, "four", 4)
    for p in range(4):
        kcat("-b", b.bootstrap, "-P", "-t", "four", "-p", str(p), input=b"p%d\n" % p)
    for p in range(4):
        assert kcat("-b", b.bootstrap, "-C", "-t", "four", "-p", str(p), "-e").strip() == b"p%d" % p
    meta = (b.data_dir / "topics.meta").read_text()
    four = [line for line in meta.splitlines() if line.startswith("four ")][0]
    assert sorted(four.split()[2].split(",")) == ["0", "0", "1", "1"]


def test_start_failures_are_reported_clearly(make_broker, tmp_path):
    b = make_broker()
    # The port is taken by a plain listener (without SO_REUSEPORT, so it cannot be shared).
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("--data-dir", str(tmp_path / "d1"), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1 and b"cannot listen on" in result.stderr, result.stderr
    # So is a metrics port already taken, naming the flag to change.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("--data-dir", str(tmp_path / "d2"), "--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{port}")
    assert result.returncode == 1 and b"cannot serve metrics on" in result.stderr, result.stderr
    assert b"--metrics-listen" in result.stderr
    # A damaged topic registry stops the start instead of losing the topics.
    b.stop()
    meta = b.data_dir / "topics.meta"
    kcat_data = meta.read_text() if meta.exists() else "ringtail-topics 1\ncrc32 00000000\n"
    meta.write_text(kcat_data.replace("ringtail-topics", "ringtail-topicz"))
    result = run("--data-dir", str(b.data_dir), "--listen", "127.0.0.1:0")
    assert result.returncode == 1 and b"topics.meta is damaged" in result.stderr, result.stderr


def test_a_shard_that_fails_to_start_stops_the_broker_at_once(make_broker):
    """Damaged flushed data in a partition of the last shard: the whole broker exits 1 with the
    reason, promptly, instead of serving half alive until SIGTERM."""
    b = make_broker("--shards", "2")
    create_topic(b.bootstrap, "halves", 2)
    for p in range(2):
        kcat("-b", b.bootstrap, "-P", "-t", "halves", "-p", str(p), input=b"".join(b"r%d\n" % i for i in range(50)))
    meta = (b.data_dir / "topics.meta").read_text()
    owners = [line for line in meta.splitlines() if line.startswith("halves ")][0].split()[2].split(",")
    on_last_shard = owners.index("1")
    assert b.stop() == 0
    log = sorted((b.data_dir / f"halves-{on_last_shard}").glob("*.log"))[0]
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 7])  # flushed data cut short: the partition cannot open
    result = run("--data-dir", str(b.data_dir), "--listen", "127.0.0.1:0", "--shards", "2", timeout=15)
    assert result.returncode == 1, result.stderr.decode()
    assert f"halves-{on_last_shard}".encode() in result.stderr and b"stopping the broker" in result.stderr
