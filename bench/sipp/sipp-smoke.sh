#!/usr/bin/env bash
# sipp-smoke.sh — place N calls with sipp through a SIP proxy and fail unless every call
# succeeded.
#
# A sipp UAS (uas.xml, next to this script) listens on LOCAL_IP:UAS_PORT; a sipp UAC
# (uac.xml) sends every message to the proxy (-rsa) with the UAS as Request-URI, keeps
# the Record-Route set and sends ACK and BYE along it. The run passes when:
#   - the UAC exits 0 (sipp: 0 = all calls succeeded, 1 = at least one call failed),
#   - the UAS exits 0 after answering all N calls,
#   - the UAC's -trace_stat file reports SuccessfulCall == N and FailedCall == 0.
#
# Usage: sipp-smoke.sh [--proxy IP:PORT] [--calls N] [--rate CPS] [--local-ip IP]
#                      [--uas-port P] [--uac-port P] [--keep DIR]
# Defaults: --proxy 127.0.0.1:5060 --calls 200 --rate 100 --local-ip 127.0.0.1
#           --uas-port 5070 --uac-port 5080. --keep DIR keeps sipp's logs in DIR.
# Exit: 0 all calls succeeded; 1 some call failed; 2 usage or setup error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
proxy=127.0.0.1:5060
calls=200
rate=100
local_ip=127.0.0.1
uas_port=5070
uac_port=5080
keep=""

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "sipp-smoke: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--proxy) proxy=${2:?}; shift 2 ;;
	--calls) calls=${2:?}; shift 2 ;;
	--rate) rate=${2:?}; shift 2 ;;
	--local-ip) local_ip=${2:?}; shift 2 ;;
	--uas-port) uas_port=${2:?}; shift 2 ;;
	--uac-port) uac_port=${2:?}; shift 2 ;;
	--keep) keep=${2:?}; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

for n in "$calls" "$rate" "$uas_port" "$uac_port"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive integer, got '$n'"
done
[[ "$proxy" =~ ^[0-9.]+:[0-9]+$ ]] || die "--proxy must be IPv4:PORT, got '$proxy'"
command -v sipp >/dev/null || die "sipp not found in PATH (Debian package: sip-tester)"
if [ ! -r "$here/uac.xml" ] || [ ! -r "$here/uas.xml" ]; then
	die "uac.xml/uas.xml missing in $here"
fi

if [ -n "$keep" ]; then
	mkdir -p "$keep" || die "cannot create $keep"
	work=$(cd "$keep" && pwd)
else
	work=$(mktemp -d -t sipp-smoke.XXXXXX)
	trap 'rm -rf "$work"' EXIT
fi

# Every wait below is bounded: the UAC gets the time its calls need at RATE plus 45 s
# (sipp gives up on an unanswered INVITE after 64*T1 = 32 s).
uac_limit=$(( calls / rate + 45 ))
uas_limit=$(( uac_limit + 10 ))

cd "$work"
timeout --signal=TERM --kill-after=5 "$uas_limit" \
	sipp -sf "$here/uas.xml" -i "$local_ip" -p "$uas_port" -m "$calls" \
	-nostdin -trace_err >uas.out 2>&1 &
uas_pid=$!

# Wait (at most 5 s) for the UAS to bind its UDP port.
port_hex=$(printf '%04X' "$uas_port")
for _ in $(seq 50); do
	grep -q ":$port_hex " /proc/net/udp && break
	kill -0 "$uas_pid" 2>/dev/null || break
	sleep 0.1
done
if ! kill -0 "$uas_pid" 2>/dev/null; then
	cat uas.out >&2
	die "the sipp UAS did not start on $local_ip:$uas_port"
fi

set +e
timeout --signal=TERM --kill-after=5 "$uac_limit" \
	sipp -sf "$here/uac.xml" "$local_ip:$uas_port" -i "$local_ip" -p "$uac_port" \
	-rsa "$proxy" -m "$calls" -r "$rate" -d 0 -nostdin -trace_stat -trace_err \
	>uac.out 2>&1
uac_rc=$?
wait "$uas_pid"
uas_rc=$?
set -e

# One UAC ran in this directory, so there is at most one statistics file.
stat=""
for f in uac_*_.csv; do
	[ -e "$f" ] && stat=$f
done
ok=""; failed=""
if [ -n "$stat" ]; then
	read -r ok failed < <(awk -F';' '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END { split(last, v, ";"); print v[col["SuccessfulCall(C)"]], v[col["FailedCall(C)"]] }' "$stat")
fi

echo "sipp-smoke: proxy=$proxy calls=$calls rate=$rate successful=${ok:-?} failed=${failed:-?} uac_exit=$uac_rc uas_exit=$uas_rc"
if [ "$uac_rc" -eq 0 ] && [ "$uas_rc" -eq 0 ] && [ "${ok:-}" = "$calls" ] && [ "${failed:-}" = "0" ]; then
	exit 0
fi
echo "sipp-smoke: FAILED (logs: $work/uac.out, $work/uas.out, errors in $work/*_errors.log)" >&2
[ -n "$keep" ] || trap - EXIT
exit 1
