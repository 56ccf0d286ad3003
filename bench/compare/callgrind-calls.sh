#!/usr/bin/env bash
# callgrind-calls.sh — instructions per call of a proxy, from valgrind's callgrind.
#
# Runs the proxy under `valgrind --tool=callgrind` twice, once for N calls and once for
# 2N calls (sipp, bench/sipp/sipp-smoke.sh, at a low rate), and prints
#     (instructions of the 2N run - instructions of the N run) / N
# summed over every process of the proxy (Kamailio forks; callgrind follows forks and
# writes one file per process). The difference removes start-up and shutdown. The count
# does not depend on the machine's load, which is why it complements CPU time on a
# shared VM (docs/PERFORMANCE.md). It includes what the proxy's timer processes execute
# while the calls run; at low call rates they are idle (measured: 0 CPU over 10 idle s).
#
# Usage: callgrind-calls.sh --proxy kamailio|ringsip --scenario stateless|stateful-rr|async-db
#                           [--calls N] [--rate CPS] [--port P] [--keep DIR]
#        Binaries: KAMAILIO_BIN (default kamailio; KAMAILIO_MEM = its -x, default tlsf), RINGSIP_BIN (default
#        target/release/ringsip).
#        async-db: the script's route table is created in MariaDB (127.0.0.1:3306, root,
#        database test; client MYSQL_BIN, default mysql) under a unique name and dropped at
#        the end. The count is the proxy's own side of a query (its client code, the
#        suspension and the resume route); what the DB server executes is not in it.
# Defaults: --calls 1000 --rate 50 --port 5090 (UAS 5091, UAC 5092). Exit 0 on success,
# 1 if a sipp run had failed calls, 2 on usage/set-up error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
proxy=""; scenario=""; calls=1000; rate=50; port=5090; keep=""

die() { echo "callgrind-calls: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--proxy) proxy=${2:?}; shift 2 ;;
	--scenario) scenario=${2:?}; shift 2 ;;
	--calls) calls=${2:?}; shift 2 ;;
	--rate) rate=${2:?}; shift 2 ;;
	--port) port=${2:?}; shift 2 ;;
	--keep) keep=${2:?}; shift 2 ;;
	-h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1" ;;
	esac
done
case "$scenario" in stateless|stateful-rr|async-db) ;; *) die "--scenario must be stateless, stateful-rr or async-db" ;; esac
for n in "$calls" "$rate" "$port"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive integer, got '$n'"
done
command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"

if [ -n "$keep" ]; then
	mkdir -p "$keep"; work=$(cd "$keep" && pwd)
else
	work=$(mktemp -d -t callgrind-calls.XXXXXX); trap 'rm -rf "$work"' EXIT
fi

proxy_argv() {
	case "$proxy" in
	kamailio)
		local bin=${KAMAILIO_BIN:-kamailio}
		command -v "$bin" >/dev/null || die "kamailio not found: $bin"
		local subst=""
		[ -z "$table" ] || subst=" --substdef=!DB_TABLE!$table!"
		echo "$bin -f $here/kamailio/$scenario.cfg -DD -E -m 64 -M 8 -x ${KAMAILIO_MEM:-tlsf} -A PORT=$port$subst" ;;
	ringsip)
		local bin=${RINGSIP_BIN:-$repo/target/release/ringsip}
		[ -x "$bin" ] || die "ringsip not found: $bin (cargo build --release, or set RINGSIP_BIN)"
		sed -e "s/socket=udp:127.0.0.1:5060/socket=udp:127.0.0.1:$port/" \
			-e "s/ringsip_bench_route/${table:-ringsip_bench_route}/" \
			"$here/ringsip/$scenario.cfg" >"$work/ringsip-$scenario.cfg"
		echo "$bin -f $work/ringsip-$scenario.cfg --cpus 0" ;;
	*) die "--proxy must be kamailio or ringsip" ;;
	esac
}

# async-db: the table the script queries (sipp's R-URI user is "service"; the UAS is on
# port+1), dropped on exit.
table=""
if [ "$scenario" = async-db ]; then
	mysql_bin=${MYSQL_BIN:-mysql}
	command -v "$mysql_bin" >/dev/null || die "$mysql_bin not found (MariaDB client)"
	table="ringsip_cg_route_$$_$(date +%s)"
	sql() { "$mysql_bin" -h 127.0.0.1 -P 3306 -u root test -e "$1"; }
	sql "CREATE TABLE $table (username VARCHAR(64) PRIMARY KEY, dst VARCHAR(255) NOT NULL);
	     INSERT INTO $table VALUES ('service', 'sip:127.0.0.1:$((port + 1))');" ||
		die "could not create the route table in MariaDB (127.0.0.1:3306, database test)"
	cleanup_table() { sql "DROP TABLE IF EXISTS $table;" || true; }
	if [ -n "$keep" ]; then
		trap cleanup_table EXIT
	else
		trap 'cleanup_table; rm -rf "$work"' EXIT
	fi
fi

# `$1` and all its descendants, one pid per word.
tree_pids() {
	local kid
	echo "$1"
	for kid in $(pgrep -P "$1" || true); do
		tree_pids "$kid"
	done
}

# One run: the proxy under callgrind, N calls through it, then SIGTERM; prints total Ir.
run_once() {
	local n=$1 dir="$work/run-$1" pid port_hex
	mkdir -p "$dir"
	port_hex=$(printf '%04X' "$port")
	# shellcheck disable=SC2046 # word splitting of the proxy's argv is intended
	valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" \
		$(proxy_argv) >"$dir/proxy.log" 2>&1 &
	pid=$!
	for _ in $(seq 600); do  # valgrind starts slowly: up to 60 s
		grep -q ":$port_hex " /proc/net/udp && break
		kill -0 "$pid" 2>/dev/null || { cat "$dir/proxy.log" >&2; die "the proxy exited at start"; }
		sleep 0.1
	done
	grep -q ":$port_hex " /proc/net/udp || { kill "$pid"; die "the proxy did not bind port $port"; }
	sleep 3  # workers forked and initialised
	local rc=0
	"$repo/bench/sipp/sipp-smoke.sh" --proxy "127.0.0.1:$port" --calls "$n" --rate "$rate" \
		--uas-port $((port + 1)) --uac-port $((port + 2)) >&2 || rc=$?
	# Kamailio's -DD creator can exit on SIGTERM while its main process and workers go
	# on: signal every process of the tree, noted before, and wait for all of them.
	local members
	members=$(tree_pids "$pid")
	# shellcheck disable=SC2086 # a list of pids
	kill -TERM $members 2>/dev/null || true
	local alive m
	for _ in $(seq 300); do  # at most 30 s: callgrind writes its files at exit
		alive=0
		for m in $members; do
			if kill -0 "$m" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" -eq 1 ] || break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $members 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	[ "$rc" -eq 0 ] || { echo "callgrind-calls: sipp run of $n calls failed" >&2; exit 1; }
	# The "summary:" line of each file is that process's total of the first event (Ir).
	awk '/^summary:/ { s += $2 } END { printf "%d\n", s }' "$dir"/callgrind.out.*
}

ir1=$(run_once "$calls")
ir2=$(run_once $((calls * 2)))
per_call=$(( (ir2 - ir1) / calls ))
echo "callgrind-calls: proxy=$proxy scenario=$scenario calls=$calls/$((calls * 2)) rate=$rate Ir=$ir1/$ir2 instructions_per_call=$per_call"
