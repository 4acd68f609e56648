#!/bin/sh
# Relay load run: relayload (trunkline relay) + rtpblast (shared/peers/kamailio-rtpengine).
# usage: relaybench.sh BACKEND CALLS [PPS] [SECONDS] [WORKERS]
# Needs: cargo build --release -p media-relay --example relayload; gcc -O2 -o /tmp/rtpblast rtpblast.c
set -e
B=${1:-io_uring}; N=${2:-500}; PPS=${3:-50}; S=${4:-10}; W=${5:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/examples/relayload
CALLS=/tmp/relaybench-calls-$B-$N.txt
$BIN --calls "$N" --backend "$B" --workers "$W" --seconds $((S + 2)) --out "$CALLS" \
     --port-min 61000 --port-max 65535 --base-a 10000 --base-b 12000 > /tmp/relaybench-$B.out 2>/tmp/relaybench-$B.err &
PID=$!
sleep 1.2
/tmp/rtpblast --pps "$PPS" --seconds "$S" < "$CALLS"
wait $PID
cat /tmp/relaybench-$B.err /tmp/relaybench-$B.out
