#!/usr/bin/env bash
# Install the external programs the test suite and benchmarks drive.
#
#   scripts/install-deps.sh           sipp (Debian: sip-tester), tshark, promtool (prometheus),
#                                     kamailio with its TLS module (interop peer for TLS and ng),
#                                     osmo-mgw (a real MGCP media gateway), baresip (a real phone),
#                                     ip (iproute2: the IPv6 tests add the relay's address to lo)
#                                     postgresql (the CDR sink's database, tests/cdr_postgres.rs)
#                                     libspandsp2 (an independent G.722, tests/codec_interop.rs)
#                                     rtpengine (an independent SRTP peer, tests/rtpengine_peer.rs;
#                                     and the comparison stack of the benchmarks)
#                                     redis-server (the cluster's shared store, tests/cluster_redis.rs)
#                                     libopus-dev + pkg-config (the build's `opus` feature: Opus
#                                     transcoding through libopus, tests/baresip_codecs.rs)
#   scripts/install-deps.sh --bench   the same (kept for the benchmark scripts)
#
# Idempotent: when every needed binary is already on PATH, no apt call is made at all,
# so local runs are fast. Otherwise (as root, or through sudo) `apt-get update` runs once
# and `apt-get install -y` the missing packages. Fails loudly if anything is still missing.
set -euo pipefail

bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install-deps.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# binary -> Debian package
# promtool checks the /metrics exposition (tests/ops_metrics.rs), systemd-analyze the unit in
# deploy/ (tests/ops_deploy.rs).
# Kamailio (tests/tls_sip.rs, tests/kamailio_ng.rs) is a real peer: OpenSSL TLS on both hops,
# and its rtpengine module driving trunkline's ng port. A path stands for a file a package ships.
# dnsmasq (dnsmasq-base: the binary, no system service) serves the trunk names of tests/dns_trunks.rs.
kam_modules=/usr/lib/x86_64-linux-gnu/kamailio/modules
declare -a want=("sipp:sip-tester" "tshark:tshark" "promtool:prometheus" "systemd-analyze:systemd"
    "kamailio:kamailio" "$kam_modules/rtpengine.so:kamailio" "$kam_modules/tls.so:kamailio-tls-modules"
    "osmo-mgw:osmo-mgw" "baresip:baresip" "dnsmasq:dnsmasq-base" "ip:iproute2" "pg_ctlcluster:postgresql"
    "/usr/lib/x86_64-linux-gnu/libspandsp.so.2:libspandsp2" "rtpengine:rtpengine-daemon"
    "/usr/include/opus/opus.h:libopus-dev" "pkg-config:pkg-config" "redis-server:redis-server")
if [[ $bench -eq 1 ]]; then
    :  # rtpengine (the comparison stack) is a test peer now too (tests/rtpengine_peer.rs)
fi

have() {
    if [[ $1 == /* ]]; then
        [[ -e $1 ]]
        return
    fi
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] || [[ -x "/usr/bin/$1" ]]
}

missing_pkgs=()
had_kamailio=0
have kamailio && had_kamailio=1
had_mgw=0
have osmo-mgw && had_mgw=1
had_pg=0
have pg_ctlcluster && had_pg=1
for pair in "${want[@]}"; do
    bin=${pair%:*}
    pkg=${pair##*:}
    if ! have "$bin"; then
        [[ " ${missing_pkgs[*]} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
    fi
done
if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
    echo "install-deps: all present (${want[*]%%:*})"
    exit 0
fi

echo "install-deps: installing ${missing_pkgs[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install-deps: need root (or sudo) to install: ${missing_pkgs[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# tshark (wireshark-common) asks whether non-root users may capture; answer it up front.
echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | "${SUDO[@]}" debconf-set-selections 2>/dev/null || true

"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing_pkgs[@]}"; then
    echo "install-deps: apt-get install failed for: ${missing_pkgs[*]}" >&2
    exit 1
fi

# Debian's postinst may start the system service; the tests run their own instances in private
# network namespaces, so a service we just installed is not wanted running.
if [[ $had_kamailio -eq 0 ]]; then
    "${SUDO[@]}" sh -c 'command -v service >/dev/null && service kamailio stop' >/dev/null 2>&1 || true
fi
if [[ $had_pg -eq 0 ]]; then
    # tests/common/postgres.rs runs a private cluster (initdb) per test.
    "${SUDO[@]}" sh -c 'command -v service >/dev/null && service postgresql stop' >/dev/null 2>&1 || true
fi
if [[ $had_mgw -eq 0 ]]; then
    "${SUDO[@]}" sh -c 'command -v service >/dev/null && service osmo-mgw stop' >/dev/null 2>&1 || true
fi

still=()
for pair in "${want[@]}"; do
    bin=${pair%:*}
    have "$bin" || still+=("$bin")
done
if [[ ${#still[@]} -ne 0 ]]; then
    echo "install-deps: still missing after install: ${still[*]}" >&2
    exit 1
fi
echo "install-deps: done"
