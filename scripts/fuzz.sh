#!/usr/bin/env bash
# Runs the fuzz targets for SECONDS each (default 60), on the stable toolchain (no sanitizer:
# cargo fuzz -s none; libFuzzer still catches panics, hangs and allocations past the limits).
#   scripts/fuzz.sh [SECONDS]
# Seeds: the captured client frames for the request decoder; segment files written by a short
# engine run for the recovery scanner. A crash leaves its input in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q
mkdir -p corpus/request_decoder corpus/recovery_scanner
cp ../server/tests/fixtures/kafka-requests/*.bin corpus/request_decoder/
if [ -z "$(ls corpus/recovery_scanner)" ]; then
  # Seed segments: the engine's own tests write and keep small logs when asked to.
  (cd .. && RINGTAIL_KEEP_SEGMENTS="$PWD/fuzz/corpus/recovery_scanner" cargo test -q -p ringtail-engine --test client_batches >/dev/null)
fi
for target in request_decoder recovery_scanner; do
  echo "== $target (${seconds}s)"
  cargo fuzz run -s none "$target" "corpus/$target" -- -max_total_time="$seconds" \
    -malloc_limit_mb=512 -rss_limit_mb=2048 -max_len=65536 2>&1 | grep -E "^Done|DONE|panicked|ERROR|crash" || true
done
