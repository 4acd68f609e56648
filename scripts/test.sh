#!/usr/bin/env bash
# THE test command: installs the external peers (SIPp, tshark), then runs every test of the
# workspace. The end-to-end tests under tests/ start the trunkline binary and drive it with SIPp
# over loopback, so `sipp` must be installed: a missing peer is a test failure, never a skip.
#
#   scripts/test.sh            release build (load tests see realistic timings)
#   TEST_PROFILE=debug scripts/test.sh
#   scripts/test.sh -- <extra args for the test binaries>
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

profile_args=(--release)
if [[ ${TEST_PROFILE:-release} == debug ]]; then
    profile_args=()
fi

start=$(date +%s)
cargo test --workspace "${profile_args[@]}" "$@"
echo "test.sh: cargo test finished in $(( $(date +%s) - start )) s"
