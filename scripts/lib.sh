# Shared by the load scripts (bench-calls.sh, bench-media.sh, soak.sh, flood.sh): source it.
# Every function is bounded in time.

# wait_bound PROTO PORT: until something is bound to PROTO (udp, tcp) PORT in this namespace
# (5 s at most).
wait_bound() {
    local hex i
    hex=$(printf ':%04X ' "$2")
    for i in $(seq 1 100); do
        grep -q "$hex" "/proc/net/$1" && return 0
        sleep 0.05
    done
    echo "$(basename "$0"): nothing listens on $1 $2" >&2
    return 1
}

# wait_udp PORT, wait_tcp PORT: wait_bound for that protocol.
wait_udp() { wait_bound udp "$1"; }
wait_tcp() { wait_bound tcp "$1"; }

# proc_ticks PID...: the sum of utime+stime clock ticks of the given processes.
proc_ticks() {
    local sum=0 p rest
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        rest=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${rest##*) }
        # after ')': field 3 is state, so utime (14) and stime (15) are the 12th and 13th here
        read -r -a f <<<"$rest"
        sum=$(( sum + f[11] + f[12] ))
    done
    echo "$sum"
}

# rss_kb PID: resident set size in kB (0 when gone).
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sipp_col FILE COLUMN: a column of the last line of a SIPp -trace_stat CSV.
sipp_col() {
    awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i} END{print $c+0}' "$1"
}

# bench_yaml: the load scripts' trunkline configuration on stdout: UDP on 127.0.0.1:5070,
# media anchored, every call to the UAS trunk on 127.0.0.1:5080. Extra top-level YAML in $1.
bench_yaml() {
    cat <<YAML
listen:
  - { transport: udp, address: 127.0.0.1:5070 }
media:
  address: 127.0.0.1
  ports: 40000-59999
trunks:
  uas: { address: 127.0.0.1:5080, transport: udp }
dialplan:
  - match: { to_user: '.*' }
    route: [uas]
YAML
    [[ -n ${1:-} ]] && printf '%s\n' "$1"
    return 0
}
