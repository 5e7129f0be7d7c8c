"""Fixtures for end-to-end tests: the real `ringtail` binary on a free loopback port."""

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("RINGTAIL_BIN", ROOT / "target" / "debug" / "ringtail"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One broker process over a data directory that outlives restarts."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.extra_args = list(extra_args)
        # Each broker serves its metrics on a port of its own (the default, 9644, is shared).
        self.metrics_port = None
        if "--metrics-listen" not in self.extra_args:
            self.metrics_port = free_port()
            self.extra_args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        self.proc = None
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=20):
        assert self.proc is None
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BINARY), "--data-dir", str(self.data_dir), "--listen", self.bootstrap, *self.extra_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        served = 0
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.read_log()}")
            # Several answered requests in a row: right after a kill -9, the killed process's
            # listener can linger in the port's SO_REUSEPORT group for a few milliseconds (its
            # io_uring is torn down asynchronously) and reset the connections it gets.
            served = served + 1 if self._answers_api_versions() else 0
            if served == 8:
                return self
            if not served:
                time.sleep(0.05)
        raise RuntimeError("broker did not start serving")

    def _answers_api_versions(self):
        request = struct.pack(">hhih", 18, 0, 1, 2) + b"up"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(struct.pack(">i", len(request)) + request)
                return len(sock.recv(4)) == 4
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the broker with `sig`; returns its exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        self.proc = None
        return code

    def metrics(self):
        """The text of GET /metrics."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return r.read().decode()

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.port = self.port  # same port: clients reconnect
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data").start()
    yield b
    if b.alive():
        code = b.stop()
        assert code == 0, f"broker exited with {code} on SIGTERM:\n{b.read_log()[-4000:]}"
    assert "panicked" not in b.read_log(), b.read_log()[-4000:]


@pytest.fixture
def make_broker(tmp_path):
    """Brokers with extra flags; each is stopped at the end of the test."""
    made = []

    def make(*args, data_dir=None):
        b = Broker(data_dir or tmp_path / f"data{len(made)}", args).start()
        made.append(b)
        return b

    yield make
    for b in made:
        if b.alive():
            b.stop()
        assert "panicked" not in b.read_log(), b.read_log()[-4000:]
