#!/usr/bin/env bash
# Side-by-side A/B of two ringtail binaries with the same ringtail-bench run, interleaved.
#   scripts/bench-ab.sh BINARY_A BINARY_B [ROUNDS] [-- extra ringtail-bench produce flags]
# Each round starts A on a fresh data directory, produces MESSAGES (default 5,000,000) with
# acks=1 over 4 partitions and 2 connections, stops it, then does the same with B.
# Prints msgs/s per run and the median ratio B/A. Needs root for drop_caches (else skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1; b=$2; rounds=${3:-3}; shift $(( $# >= 3 ? 3 : $# )); [ "${1:-}" = "--" ] && shift
messages=${MESSAGES:-5000000}; port=19500; data=$(mktemp -d)
bench=target/release/ringtail-bench
run() {  # binary [bench flags] -> msgs/s
  local binary=$1; shift
  rm -rf "$data/d"
  # Start every run from the same state: earlier runs' dirty pages written back and dropped.
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  "$binary" --data-dir "$data/d" --listen 127.0.0.1:$port --log-level warn --shards 2 --cores 0,1 --fsync never &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
  "$bench" produce --brokers 127.0.0.1:$port --topic ab --partitions 4 --connections 2 --messages "$messages" \
    --acks 1 --json "$data/out.json" "$@" >/dev/null 2>&1
  # Broker CPU (user + system, all threads) spent on the run: steadier than wall-clock rate when
  # the generator shares the cores.
  local ticks; ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
  kill -TERM $pid; wait $pid || true
  python3 -c 'import json,sys,os; r=json.load(open(sys.argv[1])); hz=os.sysconf("SC_CLK_TCK"); print(round(r["msgs_per_sec"]), round(int(sys.argv[2]) / hz / (r["messages"] / 1e6) * 1000, 1))' "$data/out.json" "$ticks"
}
ratios=(); cpu_ratios=()
printf '%-6s %12s %12s %8s %14s %14s %8s\n' round A_msgs_s B_msgs_s B/A A_cpu_ms/M B_cpu_ms/M B/A
for r in $(seq "$rounds"); do
  # Alternate which goes first, so neither always inherits the other's leftovers.
  if [ $((r % 2)) -eq 1 ]; then read -r ra ca < <(run "$a" "$@"); read -r rb cb < <(run "$b" "$@")
  else read -r rb cb < <(run "$b" "$@"); read -r ra ca < <(run "$a" "$@"); fi
  ratio=$(awk -v x="$rb" -v y="$ra" 'BEGIN { printf "%.3f", x / y }')
  cpu_ratio=$(awk -v x="$cb" -v y="$ca" 'BEGIN { printf "%.3f", x / y }')
  ratios+=("$ratio"); cpu_ratios+=("$cpu_ratio")
  printf '%-6s %12s %12s %8s %14s %14s %8s\n' "$r" "$ra" "$rb" "$ratio" "$ca" "$cb" "$cpu_ratio"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median B/A throughput: $(median "${ratios[@]}")   median B/A broker CPU per message: $(median "${cpu_ratios[@]}")"
rm -rf "$data"
