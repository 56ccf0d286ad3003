#!/usr/bin/env bash
# Instructions per iteration of ringsip's per-message paths, counted by callgrind
# (deterministic, unlike wall-clock time on a shared machine).
#
# For each path: I(N) = instructions callgrind collects running `ringsip-instr PATH N`;
# per iteration = (I(1001) - I(1)) / 1000, which removes process start-up and set-up
# (script compile, table fill). Builds ringsip-instr in release first.
#
# Usage: bench/instructions.sh [PATH...]   (default: every path)
set -euo pipefail

cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind not found" >&2; exit 1; }

cargo build --release -q -p ringsip-bench --bin ringsip-instr
bin=target/release/ringsip-instr

paths=("$@")
if [ ${#paths[@]} -eq 0 ]; then
    paths=(parse-invite read-invite rsip-parse-invite script-default-route script-default-msg
           script-residential-msg txn-invite txn-non-invite)
fi

collected() { # PATH N -> instructions
    local out
    out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1) || {
        echo "instructions.sh: ringsip-instr $1 $2 failed:" >&2
        echo "$out" >&2
        exit 1
    }
    echo "$out" | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

printf '%-24s %14s %14s %12s\n' path 'I(1)' 'I(1001)' 'instr/iter'
for p in "${paths[@]}"; do
    one=$(collected "$p" 1)
    many=$(collected "$p" 1001)
    if [ -z "$one" ] || [ -z "$many" ]; then
        echo "instructions.sh: no 'Collected' line from callgrind for $p" >&2
        exit 1
    fi
    printf '%-24s %14d %14d %12d\n' "$p" "$one" "$many" $(( (many - one) / 1000 ))
done
