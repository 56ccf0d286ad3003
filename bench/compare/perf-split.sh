#!/usr/bin/env bash
# perf-split.sh — where a proxy's CPU goes per call: its own code vs the kernel, sampled by
# `perf record -e cpu-clock` on the proxy's CPU (everything that runs there, idle included).
#
# The proxy (stateful-rr configuration of this directory) runs pinned to CPU 0, ringsip-load
# (UAC + UAS) to CPU 1, at a fixed call rate. After a warm-up, perf samples CPU 0 for
# --seconds; the samples of the proxy's processes are split into user space (the proxy's
# binary, its modules, libc) and the kernel ([kernel.kallsyms]: UDP send and receive,
# io_uring/epoll, wake-ups, page faults). A share of the samples is that share of each
# second, which holds RATE calls: share / RATE is CPU µs per call. /proc/PID/stat's utime/stime split is not used:
# it is tick-sampled and attributes whole ticks, which misleads for a process that sleeps
# between packets.
#
# Usage: perf-split.sh --proxy ringsip|kamailio [--rate CPS] [--warm S] [--seconds S]
#        Binaries: RINGSIP_BIN (target/release/ringsip), RINGSIP_LOAD_BIN
#        (target/release/ringsip-load), KAMAILIO_BIN (kamailio). Needs perf (as root, or
#        kernel.perf_event_paranoid <= 0). Ports 5060 (proxy) and 5070 (UAS).
# Exit 0 on success, 1 if the run had failed calls, 2 on usage/set-up error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
proxy=""; rate=1000; warm=6; seconds=5

die() { echo "perf-split: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--proxy) proxy=${2:?}; shift 2 ;;
	--rate) rate=${2:?}; shift 2 ;;
	--warm) warm=${2:?}; shift 2 ;;
	--seconds) seconds=${2:?}; shift 2 ;;
	-h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1" ;;
	esac
done
for n in "$rate" "$warm" "$seconds"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive integer, got '$n'"
done
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
load=${RINGSIP_LOAD_BIN:-$repo/target/release/ringsip-load}
[ -x "$load" ] || die "ringsip-load not found: $load (cargo build --release -p ringsip-bench)"

work=$(mktemp -d -t perf-split.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

case "$proxy" in
kamailio)
	bin=${KAMAILIO_BIN:-kamailio}
	command -v "$bin" >/dev/null || die "kamailio not found: $bin"
	comm=kamailio
	taskset -c 0 "$bin" -f "$here/kamailio/stateful-rr.cfg" -DD -E -m 1024 -M 32 -x tlsf \
		-w "$work" -A PORT=5060 >"$work/proxy.log" 2>&1 &
	pid=$! ;;
ringsip)
	bin=${RINGSIP_BIN:-$repo/target/release/ringsip}
	[ -x "$bin" ] || die "ringsip not found: $bin (cargo build --release)"
	comm=ringsip-0
	taskset -c 0 "$bin" -f "$here/ringsip/stateful-rr.cfg" --cpus 0 >"$work/proxy.log" 2>&1 &
	pid=$! ;;
*) die "--proxy must be ringsip or kamailio" ;;
esac
for _ in $(seq 100); do
	grep -q ":13C4 " /proc/net/udp && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/proxy.log" >&2; die "the proxy exited at start"; }
	sleep 0.1
done
grep -q ":13C4 " /proc/net/udp || die "the proxy did not bind port 5060"
sleep 1

duration=$((warm + seconds + 2))
taskset -c 1 "$load" run --target 127.0.0.1:5060 --scenario call --rate "$rate" \
	--duration "$duration" --uas 127.0.0.1:5070 --local-ip 127.0.0.1 --cpus 1 --quiet \
	--json "$work/load.json" >"$work/load.log" 2>&1 &
gen=$!
sleep "$warm"
perf record -q -e cpu-clock -F 4999 -C 0 -o "$work/perf.data" -- sleep "$seconds" \
	>"$work/perf.log" 2>&1 || { cat "$work/perf.log" >&2; die "perf record failed"; }
wait "$gen" || die "ringsip-load failed: $(cat "$work/load.log")"

failed=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['calls_failed'])" "$work/load.json")
# Samples per (command, shared object); the proxy's are those of its command name.
perf report -i "$work/perf.data" --no-children --sort comm,dso -F overhead,comm,dso \
	--stdio 2>/dev/null | grep -E '^ +[0-9.]+%' >"$work/split.txt" || true
python3 - "$work/split.txt" "$comm" "$rate" "$proxy" "$failed" <<'EOF'
import sys
path, comm, rate, proxy, failed = sys.argv[1:]
user = kernel = idle = other = 0.0
for line in open(path):
    f = line.split()
    pct, who, dso = float(f[0].rstrip('%')), f[1], " ".join(f[2:])
    if who == comm:
        if dso == "[kernel.kallsyms]":
            kernel += pct
        else:
            user += pct
    elif who == "swapper":
        idle += pct
    else:
        other += pct
# A share of the CPU's samples is that share of each second; a second holds `rate` calls.
per = lambda pct: pct / 100 * 1e6 / float(rate)
print(f"perf-split: proxy={proxy} rate={rate} "
      f"user_us_per_call={per(user):.0f} kernel_us_per_call={per(kernel):.0f} "
      f"total_us_per_call={per(user + kernel):.0f} cpu0_idle={idle:.1f}% cpu0_other={other:.1f}% "
      f"failed_calls={failed}")
EOF
[ "$failed" = 0 ] || exit 1
