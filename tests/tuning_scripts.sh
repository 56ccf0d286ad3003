#!/usr/bin/env bash
# tests/tuning_scripts.sh — tests for tuning/check.sh and tuning/apply.sh.
#
# Runs both scripts against this machine's real /proc and /sys (read-only uses and
# dry runs only: this test never applies anything) and against fake /proc and /sys
# trees built in a temporary directory (TUNING_PROC / TUNING_SYS), so that each
# OK / WARN / n/a decision is exercised whatever the host looks like.
# Usage: tests/tuning_scripts.sh   (exit 0 when every assertion holds)
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
CHECK=$here/tuning/check.sh
APPLY=$here/tuning/apply.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
# expect_rc WANT GOT WHAT
expect_rc() { if [ "$2" = "$1" ]; then ok "$3 (exit $2)"; else bad "$3: exit $2, want $1"; fi; }
# expect_line FILE REGEX WHAT
expect_line() { if grep -Eq -- "$2" "$1"; then ok "$3"; else bad "$3: no line matching /$2/ in:"; sed 's/^/     | /' "$1"; fi; }
expect_no_line() { if grep -Eq -- "$2" "$1"; then bad "$3: unexpected line /$2/:"; grep -E -- "$2" "$1" | sed 's/^/     | /'; else ok "$3"; fi; }

warn_lines() { grep -c '^WARN ' "$1"; }
summary_warns() { sed -n 's/^summary: .* \([0-9][0-9]*\) WARN,.*/\1/p' "$1"; }

# sysctl values apply.sh would touch, read straight from /proc (not via the script).
real_sysctls() {
    for n in rmem_max wmem_max rmem_default wmem_default netdev_max_backlog; do
        printf '%s=%s\n' "$n" "$(cat "/proc/sys/net/core/$n" 2>/dev/null || echo absent)"
    done
}

# ---------------------------------------------------------------- check.sh, real host
out=$tmp/check.out
"$CHECK" >"$out" 2>&1
expect_rc 0 $? "check.sh on this host"
for name in kernel.io_uring_disabled 'RLIMIT_MEMLOCK' net.core.rmem_max net.core.wmem_max \
    net.core.rmem_default net.core.wmem_default net.core.netdev_max_backlog net.ipv4.udp_mem \
    'Udp.RcvbufErrors' 'Udp.InErrors' 'drops column of /proc/net/udp' 'irqbalance running' \
    'cpufreq scaling_governor' 'THP enabled' 'cmdline isolcpus=' 'cmdline nohz_full=' \
    'nf_conntrack count/max' net.core.busy_poll; do
    expect_line "$out" "^(OK|WARN|INFO|n/a) +$(printf '%s' "$name" | sed 's/[.()/]/\\&/g')" "check.sh reports $name"
done
expect_line "$out" '^summary: [0-9]+ OK, [0-9]+ WARN, [0-9]+ INFO, [0-9]+ n/a$' "check.sh prints a summary"
# Every line other than the title, header and summary is a report line.
if grep -Ev '^(OK|WARN|INFO|n/a) |^STATUS |^summary: |^ringsip kernel tuning check' "$out" >"$tmp/stray"; then
    bad "check.sh printed stray lines:"; sed 's/^/     | /' "$tmp/stray"
else
    ok "check.sh prints only report lines"
fi
w=$(warn_lines "$out")
if [ "$w" = "$(summary_warns "$out")" ]; then ok "summary WARN count matches WARN lines ($w)"; else bad "summary WARN count $(summary_warns "$out") != $w lines"; fi
"$CHECK" --strict >/dev/null 2>&1
rc=$?
if [ "$w" -gt 0 ]; then expect_rc 1 "$rc" "check.sh --strict with $w WARN"; else expect_rc 0 "$rc" "check.sh --strict with 0 WARN"; fi
"$CHECK" --bogus >/dev/null 2>&1
expect_rc 2 $? "check.sh rejects an unknown argument"

# ---------------------------------------------------------------- check.sh, empty tree
mkdir -p "$tmp/empty/proc" "$tmp/empty/sys"
TUNING_PROC=$tmp/empty/proc TUNING_SYS=$tmp/empty/sys "$CHECK" >"$out" 2>&1
expect_rc 0 $? "check.sh with no /proc or /sys files"
expect_line "$out" '^n/a +net\.core\.rmem_max +current=n/a' "missing sysctl reads n/a"
expect_line "$out" '^n/a +kernel\.io_uring_disabled' "missing io_uring_disabled reads n/a"
expect_line "$out" '^n/a +THP enabled' "missing THP file reads n/a"
expect_line "$out" '^n/a +nf_conntrack count/max +current=not loaded' "conntrack not loaded reads n/a"
expect_line "$out" '^n/a +drops column of /proc/net/udp ' "missing /proc/net/udp reads n/a"
# Only the memlock line (read from the shell, not a file) may warn on an empty tree.
expect_no_line "$out" '^WARN +[^ R]' "empty tree gives no WARN besides RLIMIT_MEMLOCK"

# ---------------------------------------------------------------- check.sh, fake trees
# mkfake DIR — a tree with every file check.sh reads, values chosen per test below.
mkfake() {
    local d=$1
    mkdir -p "$d/proc/sys/kernel" "$d/proc/sys/net/core" "$d/proc/sys/net/ipv4" \
        "$d/proc/sys/net/netfilter" "$d/proc/net" "$d/sys/kernel/mm/transparent_hugepage" \
        "$d/sys/devices/system/cpu/cpu0/cpufreq" "$d/sys/devices/system/cpu/cpu1/cpufreq" \
        "$d/sys/devices/system/cpu/cpuidle" "$d/sys/devices/system/cpu/smt"
    echo 6.8.0-fake >"$d/proc/sys/kernel/osrelease"
    echo -1 >"$d/proc/sys/kernel/io_uring_group"
    echo '575799	767732	1151598' >"$d/proc/sys/net/ipv4/udp_mem"
    printf 'sockets: used 5\nUDP: inuse 3 mem 12\n' >"$d/proc/net/sockstat"
    echo 0 >"$d/proc/sys/net/core/rps_sock_flow_entries"
    echo intel_idle >"$d/sys/devices/system/cpu/cpuidle/current_driver"
    echo 1 >"$d/sys/devices/system/cpu/smt/active"
    echo 262144 >"$d/proc/sys/net/netfilter/nf_conntrack_max"
    printf 'Udp6InDatagrams 10\nUdp6RcvbufErrors 0\nUdp6InErrors 0\n' >"$d/proc/net/snmp6"
    echo 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=2-7 nohz_full=2-7' >"$d/proc/cmdline"
}
# set_good DIR / set_bad DIR — values check.sh must call OK / WARN.
set_good() {
    local d=$1
    echo 0 >"$d/proc/sys/kernel/io_uring_disabled"
    echo 67108864 >"$d/proc/sys/net/core/rmem_max"
    echo 33554432 >"$d/proc/sys/net/core/wmem_max"
    echo 4194304 >"$d/proc/sys/net/core/rmem_default"
    echo 1048576 >"$d/proc/sys/net/core/wmem_default"
    echo 32768 >"$d/proc/sys/net/core/netdev_max_backlog"
    echo 0 >"$d/proc/sys/net/core/busy_poll"
    echo 0 >"$d/proc/sys/net/core/busy_read"
    printf 'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 0 0 100 0 0 0 0 0\n' >"$d/proc/net/snmp"
    printf '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n 1: 00000000:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 0\n' >"$d/proc/net/udp"
    cp "$d/proc/net/udp" "$d/proc/net/udp6"
    printf '0000a000 00000000 00000000\n0000b000 00000000 00000002\n' >"$d/proc/net/softnet_stat"
    echo performance >"$d/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    echo performance >"$d/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"
    echo 'always [madvise] never' >"$d/sys/kernel/mm/transparent_hugepage/enabled"
    echo 'always defer [defer+madvise] madvise never' >"$d/sys/kernel/mm/transparent_hugepage/defrag"
    echo 1000 >"$d/proc/sys/net/netfilter/nf_conntrack_count"
}
set_bad() {
    local d=$1
    echo 2 >"$d/proc/sys/kernel/io_uring_disabled"
    echo 212992 >"$d/proc/sys/net/core/rmem_max"
    echo 212992 >"$d/proc/sys/net/core/wmem_max"
    echo 212992 >"$d/proc/sys/net/core/rmem_default"
    echo 212992 >"$d/proc/sys/net/core/wmem_default"
    echo 1000 >"$d/proc/sys/net/core/netdev_max_backlog"
    echo 50 >"$d/proc/sys/net/core/busy_poll"
    echo 0 >"$d/proc/sys/net/core/busy_read"
    printf 'Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 0 7 100 5 0 0 0 0\n' >"$d/proc/net/snmp"
    printf '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n 1: 00000000:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 40\n 2: 00000000:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 2 2 0000000000000000 2\n' >"$d/proc/net/udp"
    printf '0000a000 00000010 00000000\n0000b000 0000000a 00000002\n' >"$d/proc/net/softnet_stat"
    echo performance >"$d/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    echo powersave >"$d/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"
    echo '[always] madvise never' >"$d/sys/kernel/mm/transparent_hugepage/enabled"
    echo '[always] defer defer+madvise madvise never' >"$d/sys/kernel/mm/transparent_hugepage/defrag"
    echo 250000 >"$d/proc/sys/net/netfilter/nf_conntrack_count"
    mkdir -p "$d/proc/4242"
    echo irqbalance >"$d/proc/4242/comm"
}

mkfake "$tmp/good"
set_good "$tmp/good"
mkfake "$tmp/bad"
set_bad "$tmp/bad"
before=$(cd "$tmp" && find good bad -type f -exec md5sum {} + | sort)

# The good tree: memlock comes from the shell; raise it where permitted so that the
# whole run can be OK, else judge every other line.
TUNING_PROC=$tmp/good/proc TUNING_SYS=$tmp/good/sys "$CHECK" >"$out" 2>&1
expect_rc 0 $? "check.sh on a well-tuned fake tree"
expect_no_line "$out" '^WARN +[^ R]' "well-tuned tree: no WARN besides RLIMIT_MEMLOCK"
expect_line "$out" '^OK +net\.core\.rmem_max +current=67108864 ' "rmem_max above the recommendation is OK"
expect_line "$out" '^OK +cpufreq scaling_governor +current=performance ' "all-performance governor is OK"
expect_line "$out" '^OK +THP defrag +current=defer\+madvise ' "THP defrag defer+madvise is OK"
expect_line "$out" '^OK +net\.ipv4\.udp_mem .*UDP uses 12 pages' "udp_mem compared with sockstat"
expect_line "$out" '^OK +nf_conntrack count/max +current=1000/262144 ' "conntrack well below max is OK"
expect_line "$out" '^INFO +cmdline isolcpus= +current=2-7 ' "isolcpus read from cmdline"
expect_line "$out" '^INFO +softnet_stat time_squeeze +current=2 ' "softnet time_squeeze parsed as hex"
if (ulimit -l unlimited 2>/dev/null); then
    (ulimit -l unlimited && TUNING_PROC=$tmp/good/proc TUNING_SYS=$tmp/good/sys "$CHECK" --strict >"$out" 2>&1)
    expect_rc 0 $? "check.sh --strict on a well-tuned tree with memlock unlimited"
    expect_line "$out" '^summary: [0-9]+ OK, 0 WARN' "well-tuned tree: 0 WARN"
else
    echo "note: cannot raise RLIMIT_MEMLOCK here; strict run on the good tree judged per line only"
fi

TUNING_PROC=$tmp/bad/proc TUNING_SYS=$tmp/bad/sys "$CHECK" >"$out" 2>&1
expect_rc 0 $? "check.sh without --strict exits 0 despite WARNs"
expect_line "$out" '^WARN +kernel\.io_uring_disabled +current=2 ' "io_uring_disabled=2 warns"
expect_line "$out" '^WARN +net\.core\.rmem_max +current=212992 ' "small rmem_max warns"
expect_line "$out" '^WARN +net\.core\.netdev_max_backlog +current=1000 ' "small netdev_max_backlog warns"
expect_line "$out" '^WARN +Udp\.RcvbufErrors \(/proc/net/snmp\) +current=5 ' "RcvbufErrors read from the Udp: line, not Ip:"
expect_line "$out" '^WARN +Udp\.InErrors \(/proc/net/snmp\) +current=7 ' "InErrors read by column name"
expect_line "$out" '^OK +Udp6RcvbufErrors .*current=0 ' "snmp6 zero counter is OK"
expect_line "$out" '^WARN +drops column of /proc/net/udp +current=42 ' "per-socket drops summed"
expect_line "$out" '^n/a +drops column of /proc/net/udp6 ' "absent udp6 table reads n/a"
expect_line "$out" '^WARN +softnet_stat dropped \(all CPUs\) +current=26 ' "softnet drops summed from hex"
expect_line "$out" '^WARN +irqbalance running +current=yes\(pid 4242\)' "irqbalance found by /proc/*/comm"
expect_line "$out" '^WARN +cpufreq scaling_governor +current=performance,powersave ' "mixed governors warn"
expect_line "$out" '^WARN +THP enabled +current=always ' "THP always warns"
expect_line "$out" '^WARN +nf_conntrack count/max +current=250000/262144 ' "conntrack near full warns"
expect_line "$out" '^WARN +net\.core\.busy_poll +current=50 ' "busy_poll without isolated CPUs warns"
w=$(warn_lines "$out")
if [ "$w" = "$(summary_warns "$out")" ]; then ok "bad tree: summary counts $w WARN"; else bad "bad tree: summary $(summary_warns "$out") != $w"; fi
TUNING_PROC=$tmp/bad/proc TUNING_SYS=$tmp/bad/sys "$CHECK" --strict >/dev/null 2>&1
expect_rc 1 $? "check.sh --strict with WARNs"

# isolated CPUs make irqbalance and busy polling acceptable.
echo 2-7 >"$tmp/bad/sys/devices/system/cpu/isolated"
TUNING_PROC=$tmp/bad/proc TUNING_SYS=$tmp/bad/sys "$CHECK" >"$out" 2>&1
expect_line "$out" '^OK +irqbalance running .*skips isolated CPUs 2-7' "irqbalance OK when CPUs are isolated"
expect_line "$out" '^OK +net\.core\.busy_poll +current=50 ' "busy_poll OK when CPUs are isolated"
rm "$tmp/bad/sys/devices/system/cpu/isolated"

after=$(cd "$tmp" && find good bad -type f -exec md5sum {} + | sort)
if [ "$before" = "$after" ]; then ok "check.sh wrote nothing to the trees it read"; else bad "check.sh changed files it read"; fi

# ---------------------------------------------------------------- apply.sh
sys_before=$(real_sysctls)

"$APPLY" >"$out" 2>&1
expect_rc 2 $? "apply.sh without --yes refuses"
expect_line "$out" 'nothing changed' "apply.sh without --yes says nothing changed"
if [ "$(real_sysctls)" = "$sys_before" ]; then ok "apply.sh without --yes left the sysctls alone"; else bad "apply.sh without --yes changed sysctls"; fi

"$APPLY" --dry-run --yes --persist --persist-file "$tmp/90-ringsip.conf" >"$out" 2>&1
expect_rc 0 $? "apply.sh --dry-run --yes on this host"
expect_line "$out" '^(\+ sysctl -w|keep) net\.core\.rmem_max' "dry run shows rmem_max as a command or a keep"
expect_line "$out" 'dry run: nothing changed' "dry run says so"
if [ "$(real_sysctls)" = "$sys_before" ]; then ok "dry run left the real sysctls unchanged"; else bad "dry run changed sysctls"; fi
if [ -e "$tmp/90-ringsip.conf" ]; then bad "dry run wrote the persist file"; else ok "dry run did not write the persist file"; fi

# Against the bad tree every sysctl is below the recommendation: each must be printed.
TUNING_PROC=$tmp/bad/proc TUNING_SYS=$tmp/bad/sys "$APPLY" --dry-run --yes --persist \
    --persist-file "$tmp/90-ringsip.conf" --governor --thp >"$out" 2>&1
expect_rc 0 $? "apply.sh --dry-run --yes on the bad tree"
for kv in net.core.rmem_max=33554432 net.core.wmem_max=33554432 net.core.rmem_default=4194304 \
    net.core.wmem_default=1048576 net.core.netdev_max_backlog=16384; do
    expect_line "$out" "^\+ sysctl -w $(printf '%s' "$kv" | sed 's/\./\\./g')\$" "dry run prints sysctl -w $kv"
done
expect_line "$out" '^\+ echo performance > .*/cpu1/cpufreq/scaling_governor$' "dry run prints the governor write for cpu1"
expect_no_line "$out" 'cpu0/cpufreq/scaling_governor$' "cpu0, already performance, is left alone"
expect_line "$out" '^\+ echo madvise > .*/transparent_hugepage/enabled$' "dry run prints THP enabled=madvise"
expect_line "$out" '^ +\| net\.core\.rmem_max = 33554432$' "dry run shows the persist file content"
expect_line "$out" '^ +sysctl -w net\.core\.rmem_max=212992$' "dry run prints the rollback command"
after=$(cd "$tmp" && find good bad -type f -exec md5sum {} + | sort)
if [ "$before" = "$after" ]; then ok "dry run wrote nothing to the fake tree"; else bad "dry run changed the fake tree"; fi

# Values already above the recommendation are kept, and persisted as they are.
TUNING_PROC=$tmp/good/proc TUNING_SYS=$tmp/good/sys "$APPLY" --dry-run --persist \
    --persist-file "$tmp/90-ringsip.conf" >"$out" 2>&1
expect_line "$out" '^keep net\.core\.rmem_max = 67108864' "higher rmem_max is kept"
expect_no_line "$out" '^\+ sysctl' "a well-tuned tree needs no sysctl -w"
expect_line "$out" '^ +\| net\.core\.rmem_max = 67108864$' "persist file keeps the higher value"

"$APPLY" --bogus >/dev/null 2>&1
expect_rc 2 $? "apply.sh rejects an unknown argument"

# --yes as an unprivileged user must refuse before changing anything.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    # A copy in a directory nobody can reach, whatever the checkout's permissions.
    cp "$APPLY" "$tmp/apply-copy.sh"
    chmod 755 "$tmp" "$tmp/apply-copy.sh"
    setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/apply-copy.sh" --yes >"$out" 2>&1
    expect_rc 1 $? "apply.sh --yes as nobody refuses"
    expect_line "$out" 'needs root' "apply.sh --yes as nobody says it needs root"
elif [ "$(id -u)" != 0 ]; then
    "$APPLY" --yes >"$out" 2>&1
    expect_rc 1 $? "apply.sh --yes without root refuses"
fi
if [ "$(real_sysctls)" = "$sys_before" ]; then ok "sysctls unchanged at the end"; else bad "sysctls changed during the test"; fi

# ---------------------------------------------------------------- shellcheck
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck "$CHECK" "$APPLY" "$0"; then ok "shellcheck clean"; else bad "shellcheck findings"; fi
else
    echo "note: shellcheck not installed; skipped"
fi

echo "tuning_scripts: $pass passed, $fail failed"
[ "$fail" = 0 ]
