#!/usr/bin/env bash
# Storage-engine append throughput beside dd on the same file system, in one run.
#   scripts/bench-engine.sh [DIR] [ROUNDS]
# DIR: file system under test (default: a temp dir); ROUNDS: interleaved rounds (default 3).
# Each round runs dd through the page cache, dd with conv=fdatasync, and the criterion append
# benchmark (fsync=never and acks-all), writing the same batch size. Prints every figure and the
# median ratios. Needs nothing but cargo and coreutils.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)}; rounds=${2:-3}
batch_bytes=209997      # one 1,000-record batch of 200-byte values, as the benchmark builds it
count=$(( (2 << 30) / batch_bytes ))   # 2 GiB per dd run

dd_once() {  # dd's own rate for one run, in MB/s
  local out; sync; out=$(dd if=/dev/zero of="$dir/dd.out" bs=$batch_bytes count=$count "$@" 2>&1 | tail -1)
  rm -f "$dir/dd.out"; sync
  awk -v line="$out" 'BEGIN {
    n = split(line, f, " "); rate = f[n-1]; unit = f[n];
    if (unit ~ /^GB/) rate *= 1000; else if (unit ~ /^kB/) rate /= 1000;
    printf "%.0f\n", rate }'
}
dd_mbps() {  # median of three dd runs: page-cache writes on this machine swing 2-5x run to run
  median "$(dd_once "$@")" "$(dd_once "$@")" "$(dd_once "$@")"
}

bench_mbps() {  # criterion's median throughput for one benchmark id, in MB/s
  awk -v id="$1" '
    $0 ~ "^" id "[[:space:]]*$" || $1 == id { found = 1 }
    found && /thrpt:/ {
      gsub(/\[|\]/, ""); for (i = 1; i <= NF; i++) if ($i == "thrpt:") { v = $(i+3); u = $(i+4) }
      m = 1; if (u ~ /^GiB/) m = 1073.741824; else if (u ~ /^MiB/) m = 1.048576; else if (u ~ /^KiB/) m = 0.001024;
      printf "%.0f\n", v * m; exit }' "$2"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mkdir -p "$dir"
cargo bench -p ringtail-engine --bench append --no-run -q 2>/dev/null
echo "machine: $(nproc) cores, kernel $(uname -r), fs $(df -T "$dir" | awk 'NR==2 {print $2}') on $(df "$dir" | awk 'NR==2 {print $1}')"
echo "commit: $(git rev-parse --short HEAD)"
printf '%-6s %12s %12s %12s %12s %8s %8s\n' round dd_cache dd_fdatasync never acks-all r_never r_acks
declare -a rn ra
for round in $(seq "$rounds"); do
  sync
  d1=$(dd_mbps); d2=$(dd_mbps conv=fdatasync)
  log=$(mktemp)
  RINGTAIL_BENCH_DIR="$dir" cargo bench -q -p ringtail-engine --bench append -- --noplot append/ > "$log" 2>&1
  b1=$(bench_mbps "append/fsync/never" "$log"); b2=$(bench_mbps "append/fsync/acks-all" "$log")
  r1=$(awk -v a="$b1" -v b="$d1" 'BEGIN { printf "%.2f", a / b }')
  r2=$(awk -v a="$b2" -v b="$d2" 'BEGIN { printf "%.2f", a / b }')
  rn+=("$r1"); ra+=("$r2")
  printf '%-6s %9s MB/s %9s MB/s %9s MB/s %9s MB/s %8s %8s\n' "$round" "$d1" "$d2" "$b1" "$b2" "$r1" "$r2"
  rm -f "$log"
done
echo "median ratio never/dd: $(median "${rn[@]}")   acks-all/dd-fdatasync: $(median "${ra[@]}")"
