#!/usr/bin/env bash
# acks=all latency and throughput of several broker builds side by side, beside the disk's own
# fdatasync floor, in one run:
#   scripts/bench-acks-all.sh OUT_DIR RUNS NAME=DIR [NAME=DIR ...]
# Each DIR holds a release `ringtail` binary; the load generator is the last DIR's
# `ringtail-bench` for all of them. Every round runs ../shared/tools/limits/fsync-latency.py on
# the data directory's file system, then each configuration with every build in turn (fresh data
# directory, page cache synced first). Results: OUT_DIR/results.tsv (one line per run), the JSON
# summaries and the broker logs (with their --stage-timing tables).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$1; runs=$2; shift 2
builds=("$@")
mkdir -p "$out"
data=${DATA_DIR:-$root/target/bench-acks-all-data}
bench=${builds[-1]#*=}/ringtail-bench
floor=../shared/tools/limits/fsync-latency.py
port=19600

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD)  kernel: $(uname -r)" | tee "$out/header.txt"
echo "machine: $(nproc) cores, fs $(df -T "$root/target" | awk 'NR==2 {print $2}')" | tee -a "$out/header.txt"
echo "builds: ${builds[*]}  bench: $bench" | tee -a "$out/header.txt"
printf 'run\tbuild\tconfig\tmsgs_per_s\tp50_us\tp99_us\tp999_us\tkept\tbroker_flags\tbench_args\n' > "$out/results.tsv"

# name | broker flags | bench arguments (all: 4 partitions, 200-byte values, one connection)
configs=(
  "paced-default|--fsync acks-all|--rate 250000 --duration 10 --batch-records 100 --acks -1"
  "paced-2pinned|--fsync acks-all --shards 2 --cores 0,1|--rate 250000 --duration 10 --batch-records 100 --acks -1"
  "paced-1shard|--fsync acks-all --shards 1|--rate 250000 --duration 10 --batch-records 100 --acks -1"
  "closed-acksall|--fsync acks-all|--duration 10 --batch-records 100 --acks -1"
  "closed-acksall-4x16|--fsync acks-all|--duration 10 --batch-records 100 --acks -1 --connections 4 --inflight 16"
  "paced-acks1-never|--fsync never|--rate 250000 --duration 10 --batch-records 100 --acks 1"
  "closed-acks1-never|--fsync never|--duration 10 --batch-records 1000 --acks 1"
)

run_one() {  # run build dir config-line
  local run=$1 build=$2 dir=$3 line=$4
  local name flags args
  IFS='|' read -r name flags args <<<"$line"
  rm -rf "$data"; mkdir -p "$data"; sync
  # shellcheck disable=SC2086
  "$dir/ringtail" --data-dir "$data" --listen 127.0.0.1:$port --log-level warn --stage-timing $flags \
    2>"$out/$name-$build-$run.broker.log" &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  # shellcheck disable=SC2086
  "$bench" produce --brokers 127.0.0.1:$port --topic t --partitions 4 $args \
    --json "$out/$name-$build-$run.json" >"$out/$name-$build-$run.out" 2>&1 || true
  kill -TERM $pid; wait $pid || true
  python3 - "$out/$name-$build-$run.json" "$run" "$build" "$name" "$flags" "$args" <<'EOF' | tee -a "$out/results.tsv"
import json, sys
path, run, build, name, flags, args = sys.argv[1:]
try:
    d = json.load(open(path))
except (OSError, ValueError):
    print(f"{run}\t{build}\t{name}\tFAILED\t\t\t\t\t{flags}\t{args}"); sys.exit()
l = d["latency_us"]; kept = d["settings"].get("schedule", {}).get("kept", "")
print(f"{run}\t{build}\t{name}\t{d['msgs_per_sec']:.0f}\t{l['p50']}\t{l['p99']}\t{l['p999']}\t{kept}\t{flags}\t{args}")
EOF
  port=$((port + 1))
}

for run in $(seq "$runs"); do
  echo "== round $run: the disk's floor ($floor $data 250000 4 10)"
  mkdir -p "$data"
  python3 "$floor" "$data" 250000 4 10 | tee -a "$out/floor.txt"
  for line in "${configs[@]}"; do
    for build in "${builds[@]}"; do
      run_one "$run" "${build%%=*}" "${build#*=}" "$line"
    done
  done
done
rm -rf "$data"
echo "results in $out"
