#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian/Ubuntu with Rust installed:
# installs what the tests need (kcat, Go and sarama, Prometheus from Debian; pytest, confluent-kafka, kafka-python and
# aiokafka in a venv; KafkaJS from npm when Node.js is present), builds, runs the Rust tests,
# then the end-to-end tests against the real binary.
# Exit status is the suite's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${RINGTAIL_VENV:-$root/target/e2e-venv}

echo "== ringtail tests: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git') on $(uname -r)"

# Debian packages: kcat (librdkafka 2.0.2), and Go with sarama 1.22 for the sarama test (built
# offline in GOPATH mode from /usr/share/gocode).
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Shopify/sarama ] || missing+=(golang-github-shopify-sarama-dev)
# Prometheus and promtool, for the metrics tests (a real scrape, and the exposition's lint).
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import confluent_kafka, kafka, aiokafka' 2>/dev/null; then
  echo "== installing Python clients into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi

if command -v npm >/dev/null 2>&1 && [ ! -d tests/e2e/kafkajs/node_modules/kafkajs ]; then
  echo "== installing KafkaJS (npm)"
  (cd tests/e2e/kafkajs && npm install --silent --no-audit --no-fund)
fi

echo "== cargo build"
cargo build --workspace --all-targets -q
echo "== cargo test"
cargo test --workspace -q
echo "== end-to-end tests (real ringtail binary, kcat $(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*'), confluent-kafka, kafka-python)"
RINGTAIL_BIN="$root/target/debug/ringtail" "$venv/bin/pytest" -q -p no:cacheprovider tests/e2e
