"""KafkaJS 2.2.4 (Node.js), a client with its own protocol code: admin, produce with keys,
headers and acks=all, a two-member consumer group reading everything once, committed offsets
honoured (`kafkajs/roundtrip.js`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "kafkajs"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_kafkajs_round_trip(make_broker, tmp_path):
    assert (HERE / "node_modules" / "kafkajs").exists(), "scripts/test-all.sh installs kafkajs"
    config = tmp_path / "groups.toml"
    config.write_text('"group.initial.rebalance.delay.ms" = 200\n')
    broker = make_broker("--config", str(config))
    result = subprocess.run(["node", str(HERE / "roundtrip.js"), broker.bootstrap], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.startswith(b"ok: 300 messages")
