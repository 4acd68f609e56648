#!/usr/bin/env bash
# THE test command: installs the external peers (SIPp, tshark, promtool, Kamailio, osmo-mgw, baresip), then runs
# every test of the workspace. The end-to-end tests under tests/ start the trunkline binary and
# drive it with real peers over loopback, each in its own network namespace: a missing peer is a
# test failure, never a skip. All test binaries run even when one fails (--no-fail-fast), so one
# run reports every failure.
#
#   scripts/test.sh                       debug build (the default: fastest overall)
#   TEST_PROFILE=release scripts/test.sh  release build (realistic timings for the load tests)
#   scripts/test.sh -- <extra args for the test binaries>
#
# Measured on the 2-core machine, from a clean target directory, whole workspace:
#   debug:   build of all tests 154 s, test run ~100 s (300 calls at 50/s pass)
#   release: build of all tests 644 s (thin LTO), test run about the same
# so debug is the default; the SIPp load tests are loopback-bound, not CPU-bound, at 50 calls/s.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

profile_args=()
if [[ ${TEST_PROFILE:-debug} == release ]]; then
    profile_args=(--release)
fi

start=$(date +%s)
# --features opus: Opus transcoding through libopus (libopus-dev, installed above); a plain
# `cargo build` / `cargo run` needs no libopus.
cargo test --workspace --no-fail-fast --features opus "${profile_args[@]}" "$@"
echo "test.sh: cargo test finished in $(( $(date +%s) - start )) s"
