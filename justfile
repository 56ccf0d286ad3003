# ringsip — the recipes a developer uses. `just --list` shows them.
# (The README's two commands need nothing but cargo; these are conveniences.)

default:
    @just --list

# Run the proxy on its embedded default script (udp:127.0.0.1:5060), or on FILE.
run *args:
    cargo run --release --bin ringsip -- {{args}}

# Check a script: every error with file:line:col.
check file:
    cargo run --release --bin ringsip -- -c -f {{file}}

# Every test, as CI runs it: once per I/O backend.
test:
    cargo nextest run --workspace --no-fail-fast
    RINGSIP_BACKEND=epoll cargo nextest run --workspace --no-fail-fast

# The tests of one area, e.g. `just test-one proxy_calls`.
test-one name:
    cargo nextest run --test {{name}}

# fmt + clippy as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# criterion benches: parser, script, transactions, UDP loop.
bench:
    cargo bench -p ringsip-bench

# Instructions per iteration of the per-message paths (callgrind; deterministic).
bench-instructions *paths:
    bench/instructions.sh {{paths}}

# The load generator, e.g. `just load run --target 127.0.0.1:5060 --scenario call --uas 127.0.0.1:5070`;
# over TCP add `--transport tcp [--connections N]` (usage: bench/compare/README.md).
load *args:
    cargo run --release -p ringsip-bench --bin ringsip-load -- {{args}}

# ringsip vs Kamailio, alternating, medians and ratios (needs `apt-get install kamailio`).
compare *args:
    cargo build --release --bin ringsip -p ringsip-bench
    python3 bench/compare/compare.py {{args}}

# sipp UAC -> proxy -> sipp UAS (needs sipp: `apt-get install sip-tester`).
sipp-smoke proxy="127.0.0.1:5060" calls="300":
    bench/sipp/sipp-smoke.sh --proxy {{proxy}} --calls {{calls}} --rate 100

# Fuzz one target (parse_message, parse_uri, parse_edit_serialize) on stable.
fuzz target="parse_message" seconds="600":
    cd fuzz && ./seed.sh && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} --sanitizer none -- -max_total_time={{seconds}}

# Read-only kernel tuning check (see tuning/README.md).
tuning-check:
    tuning/check.sh
