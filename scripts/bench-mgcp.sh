#!/usr/bin/env bash
# MGCP call agent load: mgcp-gw-sim (tools/mgcp-gw-sim.rs, --load) with N phone lines against
# target/release/trunkline as their call agent, on loopback. Every armed line goes off-hook
# at once (NTFY L/hd), gets dial tone (RQNT), goes on-hook (NTFY L/hu) and is armed again
# (RQNT), over and over. Prints the MGCP transactions completed per second (as the simulator
# counts them: commands it answered + NTFYs answered) and trunkline's CPU over the run
# (utime+stime of its process), so transactions per CPU-second.
#
# usage: scripts/bench-mgcp.sh [--lines 256] [--seconds 10]
# Bounded: the simulator stops after 1 + seconds s; trunkline is stopped then.
set -euo pipefail

lines=256
seconds=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --lines) lines=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench-mgcp: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
cd "$repo"
cargo build --release --quiet --bin trunkline --example mgcp-gw-sim
work=$(mktemp -d)
trap 'kill $tl 2>/dev/null || true; rm -rf "$work"' EXIT

{
    echo "listen: [{ transport: udp, address: 127.0.0.1:5070 }]"
    echo "media: { address: 127.0.0.1, ports: 30000-30999 }"
    echo "mgcp: { listen: 127.0.0.1:2727 }"
    echo "gateways:"
    echo "  gw1:"
    echo "    address: 127.0.0.1:2427"
    echo "    endpoints: 'aaln/*@gw1'"
    echo "    audit_interval: 3600"
    echo "    lines:"
    for i in $(seq 1 "$lines"); do printf "      '+1555%06d': aaln/%d\n" "$i" "$i"; done
    echo "trunks: { pbx: { address: 127.0.0.1:5080 } }"
    echo "dialplan: [{ route: [pbx] }]"
} >"$work/t.yaml"

sim=./target/release/examples/mgcp-gw-sim
RUST_LOG=warn ./target/release/trunkline run --config "$work/t.yaml" >"$work/tl.log" 2>&1 &
tl=$!
wait_udp 2727
c0=$(proc_ticks "$tl")
t0=$(date +%s.%N)
result=$(timeout $((seconds + 10)) "$sim" --listen 127.0.0.1:2427 --agent 127.0.0.1:2727 \
    --domain gw1 --lines "$lines" --load "$seconds" | grep '^load ')
t1=$(date +%s.%N)
c1=$(proc_ticks "$tl")
hz=$(getconf CLK_TCK)
echo "lines=$lines $result"
awk -v c="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v r="$result" 'BEGIN {
    split(r, a, "transactions="); split(a[2], b, " "); n = b[1]
    cpu = c / hz; wall = t1 - t0
    printf "trunkline CPU %.2f s over %.2f s wall (%.0f %% of one core, warm-up included); %.0f transactions per CPU-second\n", cpu, wall, 100 * cpu / wall, n / cpu * (wall - 1) / wall
}'
