"""`ringtail tune`: check mode reports every setting and changes nothing; --apply writes the
recommended values (here into a fake /proc and /sys, through the hidden --root)."""

import json
import subprocess
from pathlib import Path

from conftest import BINARY

SETTINGS = [
    "cpu frequency governor", "transparent huge pages", "vm.swappiness", "vm.dirty_background_ratio",
    "vm.dirty_ratio", "fs.pipe-max-size", "open files (ulimit -n)", "locked memory for io_uring",
    "kernel.io_uring_disabled", "clock source",
]
WATCHED = ["/proc/sys/vm/swappiness", "/proc/sys/vm/dirty_ratio", "/proc/sys/vm/dirty_background_ratio",
           "/proc/sys/fs/pipe-max-size", "/sys/kernel/mm/transparent_hugepage/enabled"]


def tune(*args):
    return subprocess.run([str(BINARY), "tune", *args], capture_output=True, timeout=30)


def snapshot():
    return {p: Path(p).read_text() for p in WATCHED if Path(p).exists()}


def test_check_mode_reports_everything_and_changes_nothing():
    before = snapshot()
    result = tune("--cores", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for setting in SETTINGS:
        assert setting in out, setting
    assert "why:" in out and "settings differ from the recommendation" in out
    assert snapshot() == before

    result = tune("--json", "--cores", "0")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    names = [f["setting"] for f in report["findings"]]
    assert names[: len(SETTINGS)] == SETTINGS
    for f in report["findings"]:
        assert f["status"] in ("ok", "change", "unknown") and f["why"], f
        assert f["applied"] is None
        if f["status"] == "change":
            assert f["fix"], f
    swappiness = next(f for f in report["findings"] if f["setting"] == "vm.swappiness")
    assert swappiness["found"] == Path("/proc/sys/vm/swappiness").read_text().strip()
    assert snapshot() == before


def test_bad_cores_exit_2():
    result = tune("--cores", "3-1")
    assert result.returncode == 2 and b"cores" in result.stderr


def test_apply_writes_the_recommendations(tmp_path):
    def put(path, text):
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    put("proc/sys/vm/swappiness", "60\n")
    put("proc/sys/vm/dirty_background_ratio", "10\n")
    put("proc/sys/vm/dirty_ratio", "20\n")
    put("proc/sys/fs/pipe-max-size", "65536\n")
    put("proc/sys/kernel/io_uring_disabled", "1\n")
    put("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n")
    result = tune("--root", str(tmp_path), "--json")
    assert result.returncode == 0
    assert (tmp_path / "proc/sys/vm/swappiness").read_text() == "60\n", "check mode wrote"
    result = tune("--root", str(tmp_path), "--apply")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert (tmp_path / "proc/sys/vm/swappiness").read_text() == "1"
    assert (tmp_path / "proc/sys/vm/dirty_background_ratio").read_text() == "5"
    assert (tmp_path / "proc/sys/vm/dirty_ratio").read_text() == "80"
    assert (tmp_path / "proc/sys/fs/pipe-max-size").read_text() == "1048576"
    assert (tmp_path / "proc/sys/kernel/io_uring_disabled").read_text() == "0"
    assert (tmp_path / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == "madvise"
    assert b"set to 1" in result.stdout
