#!/usr/bin/env bash
# Registrar benchmark (issue 14): SIPp registers USERS users with Digest (REGISTER, 401,
# REGISTER with the answer, 200: scripts/bench/register_auth.xml) at RATE registrations/s
# against target/release/trunkline, with the location store off (in memory) and on (redb file),
# and against Kamailio's registrar (usrloc in memory, scripts/bench/kamailio-registrar.cfg), in
# one run. Per mode: registrations attempted/successful/failed, the achieved rate, and
# trunkline's CPU per registration (utime+stime of the process over the run / attempted).
# Each registration is two REGISTER requests (the challenged one and the answered one).
#
# usage: scripts/bench-register.sh [--rate 1000] [--count 20000] [--users 10000]
#            [--modes memory,store,kamailio]
#
# Runs in a private network namespace (unshare -rn) when the machine allows it; bounded by
# --count and by SIPp's own timeout.
set -euo pipefail

rate=1000
count=20000
users=10000
modes="memory,store,kamailio"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --count) count=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench-register: unknown argument $1" >&2; exit 2 ;;
    esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
if [[ -z ${BENCH_IN_NETNS:-} ]] && unshare -rn true 2>/dev/null; then
    exec unshare -rn env BENCH_IN_NETNS=1 bash "$0" --rate "$rate" --count "$count" \
        --users "$users" --modes "$modes"
fi
[[ -n ${BENCH_IN_NETNS:-} ]] && ip link set lo up
bin="$repo/target/release/trunkline"
[[ -x $bin ]] || { echo "bench-register: build it first: cargo build --release" >&2; exit 1; }
out=$(mktemp -d /tmp/bench-register.XXXXXX)
hz=$(getconf CLK_TCK)

# SIPp reads the per-user credentials from the injection file's second field
{ echo SEQUENTIAL; for ((i = 1; i <= users; i++)); do
    printf 'u%05d;[authentication username=u%05d password=p%05d]\n' "$i" "$i" "$i"; done; } \
    >"$out/users.csv"
{
    echo "  users:"
    for ((i = 1; i <= users; i++)); do printf '    u%05d: { password: p%05d }\n' "$i" "$i"; done
} >"$out/users.yaml"

rows=()
# The load and its measure against a registrar already listening on 5070 (PIDs in $@).
measure() {  # mode pid...
    local mode=$1; shift
    local t0 t1 w0 w1
    t0=$(proc_ticks "$@")
    w0=$(date +%s.%N)
    timeout $((count / rate + 60)) sipp 127.0.0.1:5070 -sf "$repo/scripts/bench/register_auth.xml" \
        -inf "$out/users.csv" -i 127.0.0.1 -p 5090 -r "$rate" -m "$count" -l $((rate * 2)) \
        -nostdin -trace_stat -stf "$out/stats-$mode.csv" -fd 1 -timeout 120s \
        >"$out/sipp-$mode.log" 2>&1 || true
    w1=$(date +%s.%N)
    t1=$(proc_ticks "$@")
    local ok bad us wall
    ok=$(sipp_col "$out/stats-$mode.csv" SuccessfulCall\(C\))
    bad=$(sipp_col "$out/stats-$mode.csv" FailedCall\(C\))
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$count" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')
    wall=$(awk -v a="$w0" -v b="$w1" -v n="$ok" 'BEGIN{printf "%.0f", n / (b - a)}')
    rows+=("$mode $count $ok $bad $wall $us")
}

run_kamailio() {
    command -v kamailio >/dev/null || { echo "bench-register: kamailio missing (scripts/install-deps.sh)" >&2; return; }
    kamailio -f "$repo/scripts/bench/kamailio-registrar.cfg" -m 256 -M 16 -DD -E \
        >"$out/kamailio.log" 2>&1 &
    local main=$!
    wait_udp 5070
    sleep 0.5
    # every Kamailio process: the main one and its children
    local pids
    mapfile -t pids < <(pgrep -P "$main"; echo "$main")
    measure kamailio "${pids[@]}"
    kill "$main"; wait "$main" 2>/dev/null || true
}

run() {  # mode
    local mode=$1 store=""
    [[ $mode == kamailio ]] && { run_kamailio; return; }
    [[ $mode == store ]] && store="  store: $out/location.db"
    rm -f "$out/location.db"
    cat >"$out/trunkline.yaml" <<YAML
listen:
  - { transport: udp, address: 127.0.0.1:5070 }
media:
  address: 127.0.0.1
  ports: 40000-40999
trunks:
  uas: { address: 127.0.0.1:5080, transport: udp }
dialplan:
  - match: { to_user: '.*' }
    route: [uas]
registrar:
  domains: [127.0.0.1]
  algorithms: [MD5]
  keepalive: 0
$store
$(cat "$out/users.yaml")
YAML
    "$bin" run --config "$out/trunkline.yaml" >"$out/trunkline-$mode.log" 2>&1 &
    local pid=$!
    wait_udp 5070
    measure "$mode" "$pid"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
IFS=, read -r -a list <<<"$modes"
for m in "${list[@]}"; do run "$m"; done
echo
echo "users=$users rate=$rate registrations/s (x2 REGISTER requests) count=$count  (logs: $out)"
printf '%-8s %10s %10s %8s %14s %14s\n' mode attempted ok failed "achieved /s" "us CPU/reg"
for r in "${rows[@]}"; do
    read -r mode n ok bad wall us <<<"$r"
    printf '%-8s %10s %10s %8s %14s %14s\n' "$mode" "$n" "$ok" "$bad" "$wall" "$us"
done
