#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian/Ubuntu with Rust installed.
# Installs what the tests need, then runs them. Exit status is the suite's.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ringtail tests: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') on $(uname -r)"
cargo build --workspace --all-targets -q
cargo test --workspace -q 2>&1 | tee /tmp/ringtail-test.log
