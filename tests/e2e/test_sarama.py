"""Go's sarama (Debian's golang-github-shopify-sarama-dev 1.22, config.Version = V2_2_0_0)
against the real broker: metadata, cluster admin, sync and async producers, a partition
consumer, a consumer group of two with committed offsets and resume, and the offset manager's
clean close. Built offline in GOPATH mode from Debian's Go packages."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "sarama" / "main.go"
GOPATH = "/usr/share/gocode"


@pytest.fixture(scope="module")
def sarama_check(tmp_path_factory):
    go = shutil.which("go")
    assert go, "Go is missing: scripts/test-all.sh installs golang-go and golang-github-shopify-sarama-dev"
    assert Path(GOPATH, "src/github.com/Shopify/sarama").is_dir(), "golang-github-shopify-sarama-dev is missing"
    out = tmp_path_factory.mktemp("sarama") / "sarama-check"
    env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOFLAGS="",
               GOCACHE=str(out.parent / "cache"), CGO_ENABLED="0")
    build = subprocess.run([go, "build", "-o", str(out), str(SOURCE)], env=env, capture_output=True,
                           timeout=600)
    assert build.returncode == 0, build.stderr.decode()
    return out


def test_sarama_speaks_to_ringtail(sarama_check, make_broker):
    broker = make_broker("--shards", "2")
    run = subprocess.run([str(sarama_check), broker.bootstrap, "sarama-topic"], capture_output=True, timeout=300)
    output = run.stdout.decode() + run.stderr.decode()
    assert run.returncode == 0 and "PASS" in run.stdout.decode(), output
    log = broker.read_log()
    assert "cannot encode" not in log and "closing connection" not in log, log[-4000:]
