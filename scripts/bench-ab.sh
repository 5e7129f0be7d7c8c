#!/usr/bin/env bash
# Side-by-side A/B of two ringtail binaries with the same ringtail-bench run, interleaved.
#   scripts/bench-ab.sh BINARY_A BINARY_B [ROUNDS] [-- extra ringtail-bench produce flags]
# Each round starts A on a fresh data directory, produces MESSAGES (default 5,000,000) with
# acks=1 over 4 partitions and 2 connections, stops it, then does the same with B.
# Prints msgs/s per run and the median ratio B/A. Needs root for drop_caches (else skipped).
# With CONSUME=1 each run then consumes every message back (2 connections, from the earliest
# offset) and the consume rate and broker CPU per message are compared too.
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
  local consumed="0 0"
  if [ "${CONSUME:-0}" = 1 ]; then
    "$bench" consume --brokers 127.0.0.1:$port --topic ab --connections 2 --messages "$messages" \
      --json "$data/consume.json" >/dev/null 2>&1
    local after; after=$(awk '{print $14 + $15}' /proc/$pid/stat)
    consumed=$(python3 -c 'import json,sys,os; r=json.load(open(sys.argv[1])); hz=os.sysconf("SC_CLK_TCK"); print(round(r["msgs_per_sec"]), round((int(sys.argv[3]) - int(sys.argv[2])) / hz / (r["messages"] / 1e6) * 1000, 1))' "$data/consume.json" "$ticks" "$after")
  fi
  kill -TERM $pid; wait $pid || true
  echo "$(python3 -c 'import json,sys,os; r=json.load(open(sys.argv[1])); hz=os.sysconf("SC_CLK_TCK"); print(round(r["msgs_per_sec"]), round(int(sys.argv[2]) / hz / (r["messages"] / 1e6) * 1000, 1))' "$data/out.json" "$ticks") $consumed"
}
ratios=(); cpu_ratios=(); c_ratios=(); c_cpu_ratios=()
printf '%-6s %12s %12s %7s %11s %11s %7s' round A_msgs_s B_msgs_s B/A A_cpu_ms/M B_cpu_ms/M B/A
[ "${CONSUME:-0}" = 1 ] && printf ' | %12s %12s %7s %11s %11s %7s' A_cons_s B_cons_s B/A A_cpu_ms/M B_cpu_ms/M B/A
echo
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.3f", (y > 0 ? x / y : 0) }'; }
for r in $(seq "$rounds"); do
  # Alternate which goes first, so neither always inherits the other's leftovers.
  if [ $((r % 2)) -eq 1 ]; then read -r ra ca qa qca < <(run "$a" "$@"); read -r rb cb qb qcb < <(run "$b" "$@")
  else read -r rb cb qb qcb < <(run "$b" "$@"); read -r ra ca qa qca < <(run "$a" "$@"); fi
  ratios+=("$(ratio "$rb" "$ra")"); cpu_ratios+=("$(ratio "$cb" "$ca")")
  printf '%-6s %12s %12s %7s %11s %11s %7s' "$r" "$ra" "$rb" "${ratios[-1]}" "$ca" "$cb" "${cpu_ratios[-1]}"
  if [ "${CONSUME:-0}" = 1 ]; then
    c_ratios+=("$(ratio "$qb" "$qa")"); c_cpu_ratios+=("$(ratio "$qcb" "$qca")")
    printf ' | %12s %12s %7s %11s %11s %7s' "$qa" "$qb" "${c_ratios[-1]}" "$qca" "$qcb" "${c_cpu_ratios[-1]}"
  fi
  echo
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median B/A produce throughput: $(median "${ratios[@]}")   broker CPU per message: $(median "${cpu_ratios[@]}")"
if [ "${CONSUME:-0}" = 1 ]; then
  echo "median B/A consume throughput: $(median "${c_ratios[@]}")   broker CPU per message: $(median "${c_cpu_ratios[@]}")"
fi
rm -rf "$data"
