#!/usr/bin/env bash
# Media benchmark as issue 3 describes it: the same RTP load through rtpengine and through the
# trunkline binary, both set up over the ng control protocol with ngcalls.py, measured with
# rtpblast (shared/peers/kamailio-rtpengine/), in one run; plus the naive C forwarder rtpfwd.c as
# the kernel floor. Per SUT: CPU per relayed packet (utime+stime of the relay process over the
# blast / packets sent), loss, p50/p99 added latency, and the ratio to rtpengine.
#
# usage: scripts/bench-media.sh [--calls 500] [--pps 50] [--seconds 10] \
#            [--sut direct,rtpengine,trunkline,trunkline-user,rtpfwd] [--backend auto] [--workers 0] [--repeat 1] [--pin]
#            [--batch-us N]   (trunkline's media.io_uring_batch_us; default: trunkline's own)
#            [--kernel auto|on|off]   (trunkline's media.kernel_forwarding; default auto)
#            [--load rtpblast|rtpload]
#            [--codec CALLER-CALLEE]   (transcoded calls, e.g. PCMU-PCMA or G722-PCMA)
#            [--srtp]   (SDES-SRTP on the caller's leg, plain RTP on the callee's)
#
# --srtp: every call is an SRTP <-> RTP bridge: set up with scripts/ngcalls-srtp.py (the caller
# offers RTP/SAVP with its key and transport-protocol RTP/AVP; the relay answers it with a key
# of its own), loaded with tools/srtpload.rs (`cargo build --release --example srtpload`; ticks
# of ~1 ms like rtpload, or each packet at its own time with SRTPLOAD_ARGS=--per-packet): the
# caller's side encrypts what it sends and authenticates and decrypts what it gets, the callee's
# side is plain; loss and latency are exact.
#
# --codec: every call is transcoded by the relay: set up with scripts/ngcalls-codec.py (the caller
# offers CALLER; rtpengine's codec flags mask it and transcode to CALLEE, which the callee is
# offered and answers), loaded with rtpload sending CALLER's payload type from the caller's side
# and CALLEE's from the callee's (the payload bytes are valid codes of every codec here). The
# relay re-encodes the payload, which rtpblast and rtpload read their send times from: the
# latency columns mean nothing then (loss stays exact).
# --load rtpload: our benches/rtpload.c instead of the shared rtpblast.c: the same load and
# report, but it sleeps between 1 ms send ticks instead of spinning, so the machine's busy time
# is real work (see the "machine" columns below). rtpblast (default) is the issue's tool.
#
# SUT `direct`: rtpblast sending straight to itself, no relay: the machine's cost of the load
# alone. Besides the relay process's own CPU, every row shows the whole machine's busy CPU per
# packet (all processes, kernel and softirq included, from /proc/stat) and, when `direct` ran,
# the part added by the relay ("added"): the honest figure for a kernel fast path, whose work
# is done in the senders' and softirq context rather than in the relay process.
#
# --pin: the relay under test on CPU 1, rtpblast on CPU 0 (taskset), as an operator would keep
# the load generator off the relay's core; without it the scheduler mixes them.
# 500 calls x 2 directions x 50 pps = 50,000 packets/s; --calls 1000 gives 100,000.
# rtpengine is started with the command line of the peers README (user space, 2 threads).
# trunkline runs `trunkline run` on a generated file with media.ng_listen. Runs in a private
# network namespace (unshare -rn) when allowed; every run is bounded by --seconds.
set -euo pipefail

calls=500
pps=50
seconds=10
suts="direct,rtpengine,trunkline,trunkline-user,rtpfwd"
backend=auto
workers=0
repeat=1
pin=0
batch=""
kernel=auto
load=rtpblast
codec=""
srtp=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --calls) calls=$2; shift 2 ;;
        --pps) pps=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --sut) suts=$2; shift 2 ;;
        --backend) backend=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --pin) pin=1; shift ;;
        --batch-us) batch=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        --load) load=$2; shift 2 ;;
        --codec) codec=$2; shift 2 ;;
        --srtp) srtp=1; shift ;;
        -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
        *) echo "bench-media: unknown argument $1" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
peers="$repo/../shared/peers/kamailio-rtpengine"
[[ -d $peers ]] || peers=/work/shared/peers/kamailio-rtpengine

# A private network namespace; as root without a user namespace (eBPF needs real privileges).
ns=(unshare -rn)
[[ $EUID -eq 0 ]] && ns=(unshare -n)
if [[ -z ${BENCH_IN_NETNS:-} ]] && "${ns[@]}" true 2>/dev/null; then
    exec "${ns[@]}" env BENCH_IN_NETNS=1 bash "$0" --calls "$calls" --pps "$pps" \
        --seconds "$seconds" --sut "$suts" --backend "$backend" --workers "$workers" \
        --repeat "$repeat" $([[ $pin -eq 1 ]] && echo --pin) \
        $([[ -n $batch ]] && echo "--batch-us $batch") --kernel "$kernel" --load "$load" \
        $([[ -n $codec ]] && echo "--codec $codec") $([[ $srtp -eq 1 ]] && echo --srtp)
fi
[[ -n ${BENCH_IN_NETNS:-} ]] && ip link set lo up

out=$(mktemp -d /tmp/bench-media.XXXXXX)
hz=$(getconf CLK_TCK)
for tool in rtpblast rtpfwd; do
    if [[ ! -x $out/$tool ]]; then
        gcc -O2 -o "$out/$tool" "$peers/$tool.c"
    fi
done
gcc -O2 -o "$out/rtpload" "$repo/benches/rtpload.c"
case "$load" in rtpblast|rtpload) ;; *) echo "bench-media: --load rtpblast|rtpload" >&2; exit 2 ;; esac
load_args=()
if [[ -n $codec ]]; then
    caller=${codec%-*}
    callee=${codec#*-}
    pt() { case "$1" in PCMU) echo 0 ;; PCMA) echo 8 ;; G722) echo 9 ;;
        *) echo "bench-media: --codec takes PCMU, PCMA or G722 on each side" >&2; exit 2 ;; esac; }
    load=rtpload
    load_args=(--pt-a "$(pt "$caller")" --pt-b "$(pt "$callee")")
fi

load_bin="$out/$load"
if [[ $srtp -eq 1 ]]; then
    [[ -n $codec ]] && { echo "bench-media: --srtp and --codec do not combine" >&2; exit 2; }
    load_bin="$repo/target/release/examples/srtpload"
    [[ -x $load_bin ]] || { echo "bench-media: build it first: cargo build --release --example srtpload" >&2; exit 1; }
    load=srtpload
    # shellcheck disable=SC2206
    load_args=(${SRTPLOAD_ARGS:-})
fi

# The calls of a relay with ng on 127.0.0.1:$1, into file $2.
setup_calls() {
    if [[ $srtp -eq 1 ]]; then
        python3 "$repo/scripts/ngcalls-srtp.py" --ng "127.0.0.1:$1" --calls "$calls" >"$2"
    elif [[ -n $codec ]]; then
        python3 "$repo/scripts/ngcalls-codec.py" --ng "127.0.0.1:$1" --calls "$calls" \
            --caller "$caller" --callee "$callee" >"$2"
    else
        python3 "$peers/ngcalls.py" --ng "127.0.0.1:$1" --calls "$calls" >"$2"
    fi
}

pids_started=()
cleanup() {
    local p
    for p in "${pids_started[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

relay_cpu=()
blast_cpu=()
if [[ $pin -eq 1 ]]; then
    relay_cpu=(taskset -c 1)
    blast_cpu=(taskset -c 0)
fi

busy() {  # busy jiffies of the whole machine: user nice system irq softirq steal
    local _c u n s i io irq sirq st
    read -r _c u n s i io irq sirq st _ </proc/stat
    echo $((u + n + s + irq + sirq + st))
}

rows=()
declare -A cpu_of sys_of
blast() {  # name pid callsfile  (pid 0: no relay process)
    local name=$1 pid=$2 file=$3 t0=0 t1=0 b0 b1 res us sys
    [[ $pid -ne 0 ]] && t0=$(proc_ticks "$pid")
    b0=$(busy)
    res=$("${blast_cpu[@]}" "$load_bin" --pps "$pps" --seconds "$seconds" "${load_args[@]}" <"$file")
    b1=$(busy)
    [[ $pid -ne 0 ]] && t1=$(proc_ticks "$pid")
    local sent lost p50 p99
    sent=$(grep -o 'sent=[0-9]*' <<<"$res" | cut -d= -f2)
    lost=$(grep -o 'loss_pct=[0-9.]*' <<<"$res" | cut -d= -f2)
    p50=$(grep -o 'lat_us_p50=[0-9]*' <<<"$res" | cut -d= -f2)
    p99=$(grep -o 'lat_us_p99=[0-9]*' <<<"$res" | cut -d= -f2)
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$sent" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}')
    sys=$(awk -v t=$((b1 - b0)) -v hz="$hz" -v n="$sent" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}')
    cpu_of[$name]=$us
    sys_of[$name]=$sys
    rows+=("$name $sent $us $sys $lost $p50 $p99")
    echo "bench-media: $name: $res cpu_per_packet_us=$us machine_per_packet_us=$sys (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

run_rtpengine() {
    command -v rtpengine >/dev/null || { echo "bench-media: rtpengine missing (scripts/install-deps.sh --bench)" >&2; return; }
    "${relay_cpu[@]}" rtpengine --config-file=none --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 \
        --port-min=20000 --port-max=39999 --foreground --log-stderr --log-level=3 --table=-1 \
        --num-threads=2 --delete-delay=0 >"$out/rtpengine.log" 2>&1 &
    local pid=$!
    pids_started+=("$pid")
    wait_udp 2223
    setup_calls 2223 "$out/calls-rtpengine.txt"
    blast rtpengine "$pid" "$out/calls-rtpengine.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_trunkline() {  # [kernel_forwarding]
    local kmode=${1:-$kernel}
    local bin="$repo/target/release/trunkline"
    [[ -x $bin ]] || { echo "bench-media: build it first: cargo build --release" >&2; return 1; }
    cat >"$out/trunkline.yaml" <<EOF
listen:
  - { transport: udp, address: 127.0.0.1:15060 }
media:
  address: 127.0.0.1
  ports: 20000-39999
  backend: $backend
  workers: $workers
  ng_listen: 127.0.0.1:12223
${batch:+  io_uring_batch_us: $batch}
  kernel_forwarding: $kmode
metrics:
  listen: 127.0.0.1:19464
trunks:
  pbx: { address: 127.0.0.1:15080, transport: udp }
dialplan:
  - match: {}
    route: [pbx]
EOF
    RUST_LOG=${RUST_LOG:-info} "${relay_cpu[@]}" "$bin" run --config "$out/trunkline.yaml" >"$out/trunkline.log" 2>&1 &
    local pid=$!
    pids_started+=("$pid")
    wait_udp 12223
    setup_calls 12223 "$out/calls-trunkline.txt"
    local be
    be=$(sed 's/\x1b\[[0-9;]*m//g' "$out/trunkline.log" | grep -o 'backend="[a-z_]*"' \
        | head -1 | cut -d'"' -f2 || true)
    be=${be:-$backend}
    if sed 's/\x1b\[[0-9;]*m//g' "$out/trunkline.log" | grep -q 'kernel_forwarding=ebpf'; then
        be="$be+ebpf"
    fi
    blast "trunkline-$be" "$pid" "$out/calls-trunkline.txt"
    if [[ $srtp -eq 1 ]]; then
        curl -s http://127.0.0.1:19464/metrics | grep -E '^trunkline_(srtp_packets|srtp_auth_failures)_total' \
            | sed 's/^/bench-media: trunkline: /' >&2 || true
    fi
    if [[ -n $codec ]]; then
        # the relay's own count: every packet was transcoded
        curl -s http://127.0.0.1:19464/metrics | grep '^trunkline_transcode_frames_total' \
            | grep -v ' 0$' | sed 's/^/bench-media: trunkline: /' >&2 || true
    fi
    if [[ $kmode != off ]]; then
        cpu_of[trunkline]=${cpu_of[trunkline-$be]}
        sys_of[trunkline]=${sys_of[trunkline-$be]}
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_rtpfwd() {
    python3 -c "
for i in range($calls): print(10000+2*i, 30000+4*i, 20000+2*i, 30002+4*i)" >"$out/calls-rtpfwd.txt"
    "${relay_cpu[@]}" "$out/rtpfwd" <"$out/calls-rtpfwd.txt" >"$out/rtpfwd.log" 2>&1 &
    local pid=$!
    pids_started+=("$pid")
    sleep 0.5
    blast rtpfwd "$pid" "$out/calls-rtpfwd.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_direct() {  # the load alone: each side sends straight to the other, no relay
    python3 -c "
for i in range($calls): print(10000+2*i, 20000+2*i, 20000+2*i, 10000+2*i)" >"$out/calls-direct.txt"
    blast direct 0 "$out/calls-direct.txt"
}

for ((r = 1; r <= repeat; r++)); do
    IFS=, read -r -a list <<<"$suts"
    for s in "${list[@]}"; do
        case "$s" in
            rtpengine) run_rtpengine ;;
            trunkline) run_trunkline ;;
            trunkline-user) run_trunkline off ;;
            rtpfwd) run_rtpfwd ;;
            direct) run_direct ;;
            *) echo "bench-media: unknown SUT $s" >&2; exit 2 ;;
        esac
    done
done

echo
echo "load=$load${codec:+ codec=$codec (transcoded; latency columns meaningless)} calls=$calls pps/leg=$pps seconds=$seconds pinned=$pin offered=$((calls * 2 * pps)) packets/s  (logs: $out)"
printf '%-26s %8s %10s %10s %10s %8s %9s %9s\n' SUT packets "proc us" "machine us" \
    "added us" "loss %" "p50 us" "p99 us"
base=${sys_of[direct]:-}
for r in "${rows[@]}"; do
    read -r name sent us sys lost p50 p99 <<<"$r"
    added=-
    [[ -n $base && $name != direct ]] && added=$(awk -v a="$sys" -v b="$base" 'BEGIN{printf "%.2f", a - b}')
    printf '%-26s %8s %10s %10s %10s %8s %9s %9s\n' "$name" "$sent" "$us" "$sys" "$added" "$lost" "$p50" "$p99"
done
echo "(proc: CPU of the relay process per packet; machine: all CPUs busy per packet; added: machine - direct)"
if [[ -n ${cpu_of[rtpengine]:-} && -n ${cpu_of[trunkline]:-} ]]; then
    awk -v a="${cpu_of[trunkline]}" -v b="${cpu_of[rtpengine]}" \
        'BEGIN{printf "trunkline / rtpengine, relay process CPU per packet (last run of each): %.2f\n", a / b}'
    if [[ -n $base ]]; then
        awk -v a="${sys_of[trunkline]}" -v b="${sys_of[rtpengine]}" -v d="$base" \
            'BEGIN{printf "trunkline / rtpengine, machine CPU added per packet (last run of each): %.2f\n", (a - d) / (b - d)}'
    fi
fi
