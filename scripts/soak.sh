#!/usr/bin/env bash
# Soak: many calls with media anchored through target/release/trunkline, RSS watched.
#   SIPp UAC (built-in uac, SDP) -> trunkline 127.0.0.1:5070 -> SIPp UAS (built-in uas)
# Samples trunkline's VmRSS every 5 s into $out/rss.csv and prints: calls ok/failed, RSS after
# the first --mark calls (at mark/rate seconds) and at the end, and their ratio. Issue 8 asks
# for 1,000,000 calls at 1000 calls/s with RSS at the end within 10 % of RSS after 100,000.
#
# usage: scripts/soak.sh [--rate 1000] [--calls 1000000] [--mark 100000] [--duration 500]
#                        [--ports 40000-59999] [--out DIR]
#
# Not part of the test suite (it runs for calls/rate seconds). Runs in a private network
# namespace (`unshare -rn`) when allowed, so nothing leaves loopback; bounded in calls and time.
set -euo pipefail

rate=1000
calls=1000000
mark=100000
duration=500
ports=40000-59999
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --mark) mark=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --ports) ports=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
if [[ -z ${SOAK_IN_NETNS:-} ]] && unshare -rn true 2>/dev/null; then
    exec unshare -rn env SOAK_IN_NETNS=1 bash "$0" --rate "$rate" --calls "$calls" \
        --mark "$mark" --duration "$duration" --ports "$ports" ${out:+--out "$out"}
fi
[[ -n ${SOAK_IN_NETNS:-} ]] && ip link set lo up
command -v sipp >/dev/null || { echo "soak: sipp missing (scripts/install-deps.sh)" >&2; exit 1; }
bin="$repo/target/release/trunkline"
[[ -x $bin ]] || { echo "soak: build it first: cargo build --release" >&2; exit 1; }

out=${out:-$(mktemp -d /tmp/soak.XXXXXX)}
mkdir -p "$out"
limit=$(( calls / rate + duration / 1000 + 60 ))
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT


bench_yaml | sed "s/ports: 40000-59999/ports: $ports/" >"$out/trunkline.yaml"
RUST_LOG=${RUST_LOG:-warn} "$bin" run --config "$out/trunkline.yaml" >"$out/trunkline.log" 2>&1 &
tl=$!
pids+=("$tl")
wait_udp 5070
sipp -sn uas -i 127.0.0.1 -p 5080 -nostdin -timeout "$((limit + 10))s" -fd 1 \
    >"$out/uas.log" 2>&1 &
pids+=($!)
wait_udp 5080

start=$(date +%s)
sipp -sn uac 127.0.0.1:5070 -i 127.0.0.1 -p 5060 -r "$rate" -m "$calls" -d "$duration" \
    -nostdin -timeout "${limit}s" -timeout_error -trace_stat -stf "$out/uac.csv" -fd 5 \
    -trace_err -error_file "$out/uac.errors.log" >"$out/uac.log" 2>&1 &
uac=$!
pids+=("$uac")
echo "seconds,rss_kb" >"$out/rss.csv"
mark_at=$(( mark / rate ))
rss_mark=""
while kill -0 "$uac" 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    r=$(rss_kb "$tl")
    echo "$now,$r" >>"$out/rss.csv"
    if [[ -z $rss_mark && $now -ge $mark_at ]]; then rss_mark=$r; fi
    [[ $now -gt $limit ]] && { kill "$uac" 2>/dev/null || true; break; }
    sleep 5
done
wait "$uac" 2>/dev/null || true
rss_end=$(rss_kb "$tl")
ok=$(sipp_col "$out/uac.csv" 'SuccessfulCall(C)')
failed=$(sipp_col "$out/uac.csv" 'FailedCall(C)')
kill -0 "$tl" 2>/dev/null && alive=yes || alive=no
echo "soak: $calls calls at $rate/s: ok $ok, failed $failed; trunkline alive: $alive"
echo "soak: RSS after $mark calls ${rss_mark:-?} kB, at the end $rss_end kB" \
    "(ratio $(awk -v a="$rss_end" -v b="${rss_mark:-0}" 'BEGIN{if(b>0) printf "%.3f", a/b; else print "?"}'))"
echo "soak: samples in $out/rss.csv"
