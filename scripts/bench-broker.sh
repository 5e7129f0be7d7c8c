#!/usr/bin/env bash
# Broker throughput and latency with ringtail-bench, beside this machine's limits, in one run.
#   scripts/bench-broker.sh [OUT_DIR] [RUNS]
# OUT_DIR receives every JSON summary and a results.tsv (default: a temp dir); RUNS per
# configuration (default 3). Broker and generator share the machine, as in the issue's bar.
# Measures: loopback TCP bandwidth (iperf3), the limits of ../shared/tools/limits (if present),
# then for each broker configuration (shards, pinning, fsync) produce with acks=1, consume,
# and produce latency at a fixed 250,000 messages/s with the configuration's own acks (before
# 2026-12-02 the paced runs always used acks=1: their acks-all rows measured acks=1 latency).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-$(mktemp -d)}; runs=${2:-3}
mkdir -p "$out"
messages=${MESSAGES:-5000000}
data=${DATA_DIR:-$root/target/bench-data}

command -v iperf3 >/dev/null || { apt-get install -y -qq iperf3 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null); }
cargo build --release -q -p ringtail-server -p ringtail-bench
broker=$root/target/release/ringtail
bench=$root/target/release/ringtail-bench

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD)  kernel: $(uname -r)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, fs $(df -T "$root/target" | awk 'NR==2 {print $2}')"

echo "== loopback TCP (iperf3, 5 s, one stream)"
iperf3 -s -D -1 -p 5299 >/dev/null
sleep 0.5
iperf=$(iperf3 -c 127.0.0.1 -p 5299 -t 5 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e9, 2))')
echo "iperf3 loopback: $iperf GB/s"
echo -e "iperf3_loopback_GBps\t$iperf" > "$out/results.tsv"

if [ -x ../shared/tools/limits/run.sh ] || [ -f ../shared/tools/limits/run.sh ]; then
  echo "== machine limits (shared/tools/limits/run.sh, 3 runs each)"
  mkdir -p "$root/target/limits"
  bash ../shared/tools/limits/run.sh "$root/target/limits" 3 | tee "$out/limits.txt"
fi

port=19400
run_config() {  # name, produce acks, broker flags...
  local name=$1 acks=$2; shift 2
  for run in $(seq "$runs"); do
    rm -rf "$data"; mkdir -p "$data"
    # Every run starts from the same state: earlier runs' dirty pages written back and dropped.
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    "$broker" --data-dir "$data" --listen 127.0.0.1:$port --log-level warn "$@" 2>"$out/$name-broker-$run.log" &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
    "$bench" produce --brokers 127.0.0.1:$port --topic bench --partitions 4 --connections 2 \
      --messages "$messages" --acks "$acks" --json "$out/$name-produce-$run.json" >/dev/null 2>&1
    "$bench" consume --brokers 127.0.0.1:$port --topic bench --connections 2 \
      --messages "$messages" --json "$out/$name-consume-$run.json" >/dev/null 2>&1
    "$bench" produce --brokers 127.0.0.1:$port --topic paced --partitions 4 --connections 2 \
      --duration 10 --rate 250000 --batch-records 100 --acks "$acks" --json "$out/$name-paced-$run.json" >/dev/null 2>&1
    kill -TERM $pid; wait $pid || true
  done
  python3 - "$out" "$name" "$runs" <<'EOF' | tee -a "$out/results.tsv"
import json, sys
out, name, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(kind):
    return [json.load(open(f"{out}/{name}-{kind}-{r}.json")) for r in range(1, runs + 1)]
def med(xs):
    xs = sorted(xs); return xs[len(xs) // 2]
p, c, l = load("produce"), load("consume"), load("paced")
pm = [x["msgs_per_sec"] for x in p]; cm = [x["msgs_per_sec"] for x in c]
p99 = [x["latency_us"]["p99"] for x in l]; p999 = [x["latency_us"]["p999"] for x in l]
print(f"{name}\tproduce_msgs_s\t{med(pm):.0f}\t{min(pm):.0f}-{max(pm):.0f}\tconsume_msgs_s\t{med(cm):.0f}\t{min(cm):.0f}-{max(cm):.0f}"
      f"\tpaced250k_p99_us\t{med(p99)}\t{min(p99)}-{max(p99)}\tp999_us\t{med(p999)}")
EOF
}

echo "== broker configurations ($runs runs each, $messages messages of 200 B, 4 partitions, 2 connections; paced: 250,000 msg/s, 100-record batches, the configuration's acks)"
run_config shards2-pinned-never-acks1 1 --shards 2 --cores 0,1 --fsync never
run_config shards2-pinned-acksall-acksall -1 --shards 2 --cores 0,1 --fsync acks-all
run_config shards2-unpinned-never-acks1 1 --shards 2 --fsync never
run_config shards1-pinned-never-acks1 1 --shards 1 --cores 0 --fsync never
echo "== check (original targets)"
rm -rf "$data"; mkdir -p "$data"
"$broker" --data-dir "$data" --listen 127.0.0.1:$port --log-level warn 2>/dev/null &
pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
"$bench" check --brokers 127.0.0.1:$port | tail -3 | tee "$out/check.txt"
kill -TERM $pid; wait $pid || true
rm -rf "$data"
echo "results in $out"
