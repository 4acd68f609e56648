#!/usr/bin/env bash
# The I/O line (ARCHITECTURE.md, "Crate boundaries"): the sans-IO crates must not depend on an
# async runtime, an event loop, io_uring, libc or socket helpers, and must forbid unsafe code.
# (signaling, config, mgcp, codecs, media-core, mgcp-bridge.) Fails (exit 1) listing every crossing. Called by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# package name (as cargo knows it) : source directory
CORE=(signaling:signaling trunkline-config:config mgcp:mgcp codecs:codecs media-core:media-core mgcp-bridge:mgcp-bridge)
FORBIDDEN='tokio|mio|io-uring|libc|socket2'

fail=0
for entry in "${CORE[@]}"; do
    pkg=${entry%%:*}
    dir=${entry#*:}
    tree=$(cargo tree -p "$pkg" -e normal --prefix none --offline 2>/dev/null ||
        cargo tree -p "$pkg" -e normal --prefix none)
    bad=$(printf '%s\n' "$tree" | awk '{print $1}' | grep -Ex "$FORBIDDEN" | sort -u || true)
    if [[ -n $bad ]]; then
        echo "check-boundaries: $pkg depends on: $(echo "$bad" | tr '\n' ' ')" >&2
        cargo tree -p "$pkg" -e normal -i "$(echo "$bad" | head -1)" >&2 || true
        fail=1
    fi
    if ! grep -q '^#!\[forbid(unsafe_code)\]' "$dir/src/lib.rs"; then
        echo "check-boundaries: $dir/src/lib.rs lacks #![forbid(unsafe_code)]" >&2
        fail=1
    fi
done

if [[ $fail -ne 0 ]]; then
    echo "check-boundaries: FAILED (a sans-IO crate crossed the I/O line)" >&2
    exit 1
fi
echo "check-boundaries: ok (${#CORE[@]} sans-IO crates: no $FORBIDDEN, unsafe forbidden)"
