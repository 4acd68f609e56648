#!/usr/bin/env bash
# Signaling benchmark: SIPp UAC -> SUT -> SIPp UAS on loopback, for each SUT
#   kamailio     Kamailio stateful relay alone (shared/peers/kamailio-rtpengine/kamailio.cfg)
#   kamrtp       Kamailio + rtpengine (media anchored)
#   trunkline    target/release/trunkline (B2BUA; media anchored when its relay is wired)
#   trunkline-auth  trunkline to a callee that challenges every INVITE (407, scripts/bench/
#                uas_auth.xml), answered with the trunk's `auth:` credentials
#   trunkline-srv-auth  the same, the callee named by DNS: `address: uas.test` resolved through
#                NAPTR-less SRV (_sip._udp.uas.test -> host.uas.test:5080) served by dnsmasq
#   kamrtp-auth  Kamailio + rtpengine doing the same with its uac module (uac_auth() in a
#                failure_route)
#   trunkline-cdr  trunkline writing a CDR file (cdr: { file }) and a HEP capture of every
#                message (capture: { hep }) to a collector that drains it (a python3 UDP sink);
#                trunkline-cdrfile and trunkline-hep: each of the two alone
#   trunkline-cluster  trunkline as a node of a cluster (`cluster:`, redis-server on 6380; the
#                redis-server's CPU counted with trunkline's)
#   trunkline-notimer  trunkline with session timers off (`sip: { session_expires: 0 }`); the
#                plain `trunkline` runs them as configured by default (1800 s on both legs:
#                Session-Expires/Min-SE negotiated per leg, a timer armed per leg)
#   trunkline-sf  trunkline with the interop suite's scenarios (tests/sipp/uac_basic.xml,
#                uas_basic.xml: 180 then 200 with SDP), the baseline of
#   trunkline-100rel  the same call with 100rel on both legs (uac_reliable.xml,
#                uas_reliable_183.xml): the callee's 183 with SDP is reliable (leg B PRACKed
#                by trunkline), the caller gets trunkline's own reliable 183 and PRACKs it
# and prints, per SUT: calls attempted/successful/failed, wall time, and CPU per call = the
# utime+stime ticks (/proc/PID/stat fields 14 and 15) of every SUT process (the launched one and
# all its descendants), after minus before, divided by the calls attempted.
#
# usage: scripts/bench-calls.sh [--rate 1000] [--calls 8000] [--duration 500] \
#            [--sut kamailio,kamrtp,trunkline] [--out DIR] [--no-netns]
#
# Runs in a private network namespace (`unshare -rn`) when the machine allows it, so the fixed
# ports (UAC 5060, SUT 5070, UAS 5080, rtpengine ng 2223) collide with nothing and no packet
# leaves loopback. Bounded: each SUT run ends after calls/rate + duration + 30 s at most.
set -euo pipefail

rate=1000
calls=8000
duration=500
suts="kamailio,kamrtp,trunkline"
out=""
netns=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --sut) suts=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-netns) netns=0; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "bench-calls: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
peers="$repo/../shared/peers/kamailio-rtpengine"
[[ -d $peers ]] || peers=/work/shared/peers/kamailio-rtpengine

if [[ $netns -eq 1 && -z ${BENCH_IN_NETNS:-} ]]; then
    if unshare -rn true 2>/dev/null; then
        args=(--rate "$rate" --calls "$calls" --duration "$duration" --sut "$suts")
        [[ -n $out ]] && args+=(--out "$out")
        exec unshare -rn env BENCH_IN_NETNS=1 bash "$0" "${args[@]}"
    fi
    echo "bench-calls: unshare -rn refused; running on the host loopback" >&2
fi
if [[ -n ${BENCH_IN_NETNS:-} ]]; then
    ip link set lo up
fi

for bin in sipp; do
    command -v "$bin" >/dev/null || { echo "bench-calls: $bin missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done

out=${out:-$(mktemp -d /tmp/bench-calls.XXXXXX)}
mkdir -p "$out"
hz=$(getconf CLK_TCK)
limit=$(( calls / rate + duration / 1000 + 30 ))

pids_started=()
cleanup() {
    local p
    for p in "${pids_started[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# The pid and every descendant of it.
tree() {
    local root=$1 all=("$1") changed=1 f pid ppid rest
    declare -A seen=([$1]=1)
    while [[ $changed -eq 1 ]]; do
        changed=0
        for f in /proc/[0-9]*/stat; do
            read -r pid rest < "$f" 2>/dev/null || continue
            # field 4 (ppid) follows "(comm) S"; comm may contain spaces, so cut after ')'.
            rest=${rest##*) }
            ppid=$(cut -d' ' -f2 <<<"$rest")
            if [[ -n ${seen[$ppid]:-} && -z ${seen[$pid]:-} ]]; then
                seen[$pid]=1; all+=("$pid"); changed=1
            fi
        done
    done
    echo "${all[@]}"
}

start_uas() {  # name [scenario file]
    local sc=(-sn uas)
    [[ -n ${2:-} ]] && sc=(-sf "$2")
    sipp "${sc[@]}" -i 127.0.0.1 -p 5080 -nostdin -timeout "$((limit + 10))s" \
        -trace_stat -stf "$out/$1.uas.csv" -fd 1 >"$out/$1.uas.log" 2>&1 &
    pids_started+=($!)
    uas_pid=$!
    wait_udp 5080
}

# The SIPp scenario pair of a SUT: built-in uac/uas unless the name asks for the suite's.
uac_scenario() {  # name
    case "$1" in
        *-sf) echo "-sf $repo/tests/sipp/uac_basic.xml" ;;
        *-100rel) echo "-sf $repo/tests/sipp/uac_reliable.xml" ;;
        *) echo "-sn uac" ;;
    esac
}

run_uac() {  # name
    # shellcheck disable=SC2046
    sipp $(uac_scenario "$1") 127.0.0.1:5070 -i 127.0.0.1 -p 5060 -r "$rate" -m "$calls" -d "$duration" \
        -nostdin -timeout "${limit}s" -timeout_error -trace_stat -stf "$out/$1.uac.csv" -fd 1 \
        -trace_err -error_file "$out/$1.uac.errors.log" >"$out/$1.uac.log" 2>&1 || true
}

start_kamailio() {  # name with_rtpengine [auth]
    local cfg="$out/$1.kamailio.cfg"
    sed -e "s#/tmp/kamailio-anchor_ctl#$out/$1.kamailio_ctl#" "$peers/kamailio.cfg" >"$cfg"
    if [[ ${3:-} == auth ]]; then
        # The uac module answers the callee's 407 (the anchor's configuration plus a
        # failure_route, as a Kamailio operator would add it).
        sed -i -e 's#^loadmodule "ctl.so"#loadmodule "ctl.so"\nloadmodule "uac.so"\nmodparam("uac", "credential", "acme:carrier.test:s3cret")#' \
            -e 's#^    if (!t_relay()) { sl_reply_error(); }#    if (is_method("INVITE")) { t_on_failure("AUTH"); }\n    if (!t_relay()) { sl_reply_error(); }#' "$cfg"
        cat >>"$cfg" <<'EOF2'
failure_route[AUTH] {
    if (t_is_canceled()) { exit; }
    if (t_check_status("401|407")) {
        if (uac_auth()) { t_relay(); }
        exit;
    }
}
EOF2
    fi
    local def=()
    [[ $2 -eq 1 ]] && def=(-A WITH_RTPENGINE)
    kamailio "${def[@]}" -f "$cfg" -m 1024 -DD -E -P "$out/$1.kamailio.pid" \
        >"$out/$1.kamailio.log" 2>&1 &
    pids_started+=($!)
    sut_pid=$!
    wait_udp 5070
}

start_rtpengine() {
    rtpengine --config-file=none --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 \
        --port-min=20000 --port-max=39999 --foreground --log-stderr --log-level=3 --table=-1 \
        --num-threads=2 --delete-delay=0 >"$out/rtpengine.log" 2>&1 &
    pids_started+=($!)
    rtp_pid=$!
    wait_udp 2223
}

start_trunkline() {  # [auth]
    local bin="${TRUNKLINE_BIN:-$repo/target/release/trunkline}"
    [[ -x $bin ]] || { echo "bench-calls: build it first: cargo build --release" >&2; return 1; }
    bench_yaml >"$out/trunkline.yaml"
    if [[ ${1:-} == cdr || ${1:-} == cdrfile ]]; then
        printf 'cdr: { file: %s }\n' "$out/cdr.jsonl" >>"$out/trunkline.yaml"
    fi
    if [[ ${1:-} == cdr || ${1:-} == hep ]]; then
        printf 'capture: { hep: 127.0.0.1:9060 }\n' >>"$out/trunkline.yaml"
        python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 9060))
while True:
    s.recv(65536)' &
        pids_started+=($!)
    fi
    if [[ ${1:-} == cluster ]]; then
        # issue 16: a node of a two-node cluster (its peer need not run: no call of this load
        # is for a user registered elsewhere); redis-server on 6380, its CPU counted too
        command -v redis-server >/dev/null || { echo "bench-calls: redis-server missing (scripts/install-deps.sh)" >&2; return 1; }
        redis-server --port 6380 --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
        pids_started+=($!)
        extra_pid=$!
        wait_tcp 6380
        printf 'cluster: { redis: "redis://127.0.0.1:6380/0", node: a, peers: { b: 127.0.0.2:5070 } }\n' >>"$out/trunkline.yaml"
    fi
    if [[ ${1:-} == notimer ]]; then
        printf 'sip: { session_expires: 0 }\n' >>"$out/trunkline.yaml"
    fi
    if [[ ${1:-} == auth || ${1:-} == srv-auth ]]; then
        sed -i 's#^  uas: { address: 127.0.0.1:5080, transport: udp }#  uas: { address: 127.0.0.1:5080, transport: udp, auth: { username: acme, password: s3cret } }#' \
            "$out/trunkline.yaml"
        grep -q 'auth:' "$out/trunkline.yaml" || { echo "bench-calls: no auth in trunkline.yaml" >&2; return 1; }
    fi
    if [[ ${1:-} == srv-auth ]]; then
        command -v dnsmasq >/dev/null || [[ -x /usr/sbin/dnsmasq ]] \
            || { echo "bench-calls: dnsmasq missing (scripts/install-deps.sh)" >&2; return 1; }
        /usr/sbin/dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
            --bind-interfaces --listen-address=127.0.0.1 --port=5353 --pid-file= \
            --local=/test/ --local-ttl=30 --log-facility=- \
            --srv-host=_sip._udp.uas.test,host.uas.test,5080,1,0 \
            --host-record=host.uas.test,127.0.0.1 >"$out/dnsmasq.log" 2>&1 &
        pids_started+=($!)
        wait_udp 5353
        sed -i 's#^  uas: { address: 127.0.0.1:5080,#  uas: { address: uas.test,#' "$out/trunkline.yaml"
        printf 'dns: { servers: [127.0.0.1:5353] }\n' >>"$out/trunkline.yaml"
        grep -q 'address: uas.test' "$out/trunkline.yaml" || { echo "bench-calls: no SRV trunk in trunkline.yaml" >&2; return 1; }
    fi
    # BENCH_WRAP: a command to run trunkline under (a profiler: `perf record -g -o F --`).
    # shellcheck disable=SC2086
    RUST_LOG=${RUST_LOG:-warn} ${BENCH_WRAP:-} "$bin" run --config "$out/trunkline.yaml" >"$out/trunkline.log" 2>&1 &
    pids_started+=($!)
    sut_pid=$!
    wait_udp 5070
}

stop() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

rows=()
bench_one() {  # name
    local name=$1 pids t0 t1 c0 c1 ok failed uas_ok
    rtp_pid=""
    extra_pid=""
    case "$name" in
        kamailio) command -v kamailio >/dev/null || { echo "skip $name: kamailio missing" >&2; return; }
                  start_kamailio "$name" 0 ;;
        kamrtp)   command -v kamailio >/dev/null && command -v rtpengine >/dev/null \
                      || { echo "skip $name: kamailio/rtpengine missing" >&2; return; }
                  start_rtpengine; start_kamailio "$name" 1 ;;
        kamrtp-auth) command -v kamailio >/dev/null && command -v rtpengine >/dev/null \
                      || { echo "skip $name: kamailio/rtpengine missing" >&2; return; }
                  start_rtpengine; start_kamailio "$name" 1 auth ;;
        trunkline) start_trunkline || return ;;
        trunkline-auth) start_trunkline auth || return ;;
        trunkline-srv-auth) start_trunkline srv-auth || return ;;
        trunkline-cdr) start_trunkline cdr || return ;;
        trunkline-cdrfile) start_trunkline cdrfile || return ;;
        trunkline-hep) start_trunkline hep || return ;;
        trunkline-notimer) start_trunkline notimer || return ;;
        trunkline-cluster) start_trunkline cluster || return ;;
        trunkline-sf|trunkline-100rel) start_trunkline || return ;;
        *) echo "bench-calls: unknown SUT $name" >&2; return ;;
    esac
    if [[ $name == *-auth ]]; then
        start_uas "$name" "$repo/scripts/bench/uas_auth.xml"
    elif [[ $name == *-sf ]]; then
        start_uas "$name" "$repo/tests/sipp/uas_basic.xml"
    elif [[ $name == *-100rel ]]; then
        start_uas "$name" "$repo/tests/sipp/uas_reliable_183.xml"
    else
        start_uas "$name"
    fi
    sleep 0.5
    pids=$(tree "$sut_pid")
    [[ -n $rtp_pid ]] && pids="$pids $(tree "$rtp_pid")"
    [[ -n ${extra_pid:-} ]] && pids="$pids $extra_pid"
    # shellcheck disable=SC2086
    c0=$(proc_ticks $pids)
    t0=$(date +%s.%N)
    echo "bench-calls: $name: $calls calls at $rate/s, ${duration} ms each ..." >&2
    run_uac "$name"
    t1=$(date +%s.%N)
    sleep 0.2
    # shellcheck disable=SC2086
    c1=$(proc_ticks $pids)
    ok=$(sipp_col "$out/$name.uac.csv" 'SuccessfulCall(C)')
    failed=$(sipp_col "$out/$name.uac.csv" 'FailedCall(C)')
    stop "$uas_pid" "$sut_pid" ${rtp_pid:+"$rtp_pid"}
    # calls that reached the far side (its successes lag by the built-in UAS's 4 s timewait)
    uas_ok=$(sipp_col "$out/$name.uas.csv" 'IncomingCall(C)' 2>/dev/null || echo "?")
    rows+=("$(awk -v n="$name" -v c="$calls" -v ok="$ok" -v f="$failed" -v u="$uas_ok" \
        -v t0="$t0" -v t1="$t1" -v d="$((c1 - c0))" -v hz="$hz" -v r="$rate" \
        'BEGIN{printf "| %-10s | %6d | %5d | %6d | %6d | %6s | %7.1f | %9.0f | %8.0f |",
               n, c, r, ok, f, u, t1-t0, d*1000/hz, d*1e6/hz/c}')")
}

IFS=',' read -r -a list <<<"$suts"
for s in "${list[@]}"; do
    bench_one "$s"
done

echo
echo "calls at ${rate}/s, ${duration} ms each; CPU = utime+stime of the SUT's processes (CLK_TCK=$hz)"
echo "| SUT        | calls  | rate  | ok     | failed | uas in | wall s  | CPU ms    | us/call  |"
echo "|------------|--------|-------|--------|--------|--------|---------|-----------|----------|"
printf '%s\n' "${rows[@]}"
echo "(logs and SIPp statistics in $out)"
