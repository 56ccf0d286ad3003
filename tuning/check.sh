#!/usr/bin/env bash
# tuning/check.sh — READ-ONLY report of the kernel settings that matter to ringsip.
#
# Prints one line per setting: STATUS, name, current value, recommended value, note.
# STATUS is OK, WARN, INFO (shown for context, never counted) or n/a (file absent on
# this machine). Never writes anything, needs no root and no network; missing files
# read as "n/a". Exit 0 always, unless --strict: then exit 1 when any WARN was printed.
#
# The runbook behind each line is named in its note; see tuning/README.md.
#
# For tests, TUNING_PROC and TUNING_SYS replace /proc and /sys as the roots read.
set -u

PROC=${TUNING_PROC:-/proc}
SYS=${TUNING_SYS:-/sys}

# Recommended values; apply.sh uses the same numbers.
REC_RMEM_MAX=33554432
REC_WMEM_MAX=33554432
REC_RMEM_DEFAULT=4194304
REC_WMEM_DEFAULT=1048576
REC_NETDEV_MAX_BACKLOG=16384
REC_MEMLOCK_KB=65536

strict=0
for arg in "$@"; do
    case $arg in
        --strict) strict=1 ;;
        -h | --help)
            cat <<'EOF'
usage: tuning/check.sh [--strict]

Read-only. Prints each kernel setting ringsip cares about with its current value,
the recommended value and OK / WARN / INFO / n/a. Exit status is 0 unless --strict
is given and at least one line is WARN (then 1). Needs no root.
EOF
            exit 0
            ;;
        *)
            echo "check.sh: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

n_ok=0
n_warn=0
n_na=0
n_info=0

# report STATUS NAME CURRENT RECOMMENDED [NOTE]
report() {
    local status=$1 name=$2 cur=$3 rec=$4 note=${5:-}
    case $status in
        OK) n_ok=$((n_ok + 1)) ;;
        WARN) n_warn=$((n_warn + 1)) ;;
        n/a) n_na=$((n_na + 1)) ;;
        INFO) n_info=$((n_info + 1)) ;;
    esac
    printf '%-5s %-36s current=%-20s recommended=%-18s %s\n' \
        "$status" "$name" "$cur" "$rec" "$note"
}

# read_first FILE — first line of FILE, or nothing (status 1) when unreadable.
read_first() {
    local line
    [ -r "$1" ] || return 1
    IFS= read -r line <"$1" || [ -n "${line:-}" ] || return 1
    printf '%s' "$line"
}

is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# check_min_sysctl NAME MIN RUNBOOK — a /proc/sys integer that should be >= MIN.
check_min_sysctl() {
    local name=$1 min=$2 runbook=$3 path val
    path="$PROC/sys/$(printf '%s' "$name" | tr . /)"
    if ! val=$(read_first "$path"); then
        report n/a "$name" n/a ">=$min" "$runbook"
        return
    fi
    if is_uint "$val" && [ "$val" -ge "$min" ]; then
        report OK "$name" "$val" ">=$min" "$runbook"
    else
        report WARN "$name" "$val" ">=$min" "$runbook"
    fi
}

# value of FIELD on the "PREFIX:" header/value line pair of a /proc/net/snmp-style file.
snmp_field() {
    local file=$1 prefix=$2 field=$3
    [ -r "$file" ] || return 1
    awk -v p="$prefix:" -v f="$field" '
        $1 == p && !seen { for (i = 2; i <= NF; i++) col[$i] = i; seen = 1; next }
        $1 == p && seen  { if (f in col) { print $(col[f]); found = 1 } exit }
        END { exit found ? 0 : 1 }' "$file"
}

# value of KEY in a two-column "Key value" file such as /proc/net/snmp6.
kv_field() {
    [ -r "$1" ] || return 1
    awk -v k="$2" '$1 == k { print $2; found = 1; exit } END { exit found ? 0 : 1 }' "$1"
}

echo "ringsip kernel tuning check (read-only) — kernel $(read_first "$PROC/sys/kernel/osrelease" || echo unknown), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs online"
printf '%-5s %-36s %-28s %-30s %s\n' STATUS SETTING CURRENT RECOMMENDED RUNBOOK

# --- io_uring availability (io-uring-limits.md) ---------------------------------
if val=$(read_first "$PROC/sys/kernel/io_uring_disabled"); then
    case $val in
        0) report OK kernel.io_uring_disabled "$val" 0 "io-uring-limits.md" ;;
        1)
            grp=$(read_first "$PROC/sys/kernel/io_uring_group" || echo n/a)
            report WARN kernel.io_uring_disabled "$val" 0 \
                "io-uring-limits.md: only root/CAP_SYS_ADMIN or gid $grp may use io_uring; others get the epoll fallback"
            ;;
        *) report WARN kernel.io_uring_disabled "$val" 0 "io-uring-limits.md: io_uring off for all; ringsip runs on epoll" ;;
    esac
else
    report n/a kernel.io_uring_disabled n/a 0 "io-uring-limits.md: knob absent (kernel < 6.6): io_uring enabled unless seccomp blocks it"
fi
if val=$(read_first "$PROC/sys/kernel/io_uring_group"); then
    report INFO kernel.io_uring_group "$val" "-1 or ringsip's gid" "io-uring-limits.md: matters only when io_uring_disabled=1"
else
    report n/a kernel.io_uring_group n/a "-1 or ringsip's gid" "io-uring-limits.md"
fi

# RLIMIT_MEMLOCK of this shell: the service's own limit (systemd LimitMEMLOCK=) may differ.
memlock=$(ulimit -l 2>/dev/null || echo n/a)
case $memlock in
    unlimited) report OK "RLIMIT_MEMLOCK (ulimit -l, KiB)" unlimited ">=$REC_MEMLOCK_KB" "io-uring-limits.md: this shell's limit; check the service's too" ;;
    n/a) report n/a "RLIMIT_MEMLOCK (ulimit -l, KiB)" n/a ">=$REC_MEMLOCK_KB" "io-uring-limits.md" ;;
    *)
        if is_uint "$memlock" && [ "$memlock" -ge "$REC_MEMLOCK_KB" ]; then
            report OK "RLIMIT_MEMLOCK (ulimit -l, KiB)" "$memlock" ">=$REC_MEMLOCK_KB" "io-uring-limits.md: this shell's limit; check the service's too"
        else
            report WARN "RLIMIT_MEMLOCK (ulimit -l, KiB)" "$memlock" ">=$REC_MEMLOCK_KB" "io-uring-limits.md: this shell's limit; check the service's too"
        fi
        ;;
esac

# --- socket buffers and backlog (socket-buffers.md) -------------------------------
check_min_sysctl net.core.rmem_max "$REC_RMEM_MAX" socket-buffers.md
check_min_sysctl net.core.wmem_max "$REC_WMEM_MAX" socket-buffers.md
check_min_sysctl net.core.rmem_default "$REC_RMEM_DEFAULT" socket-buffers.md
check_min_sysctl net.core.wmem_default "$REC_WMEM_DEFAULT" socket-buffers.md
check_min_sysctl net.core.netdev_max_backlog "$REC_NETDEV_MAX_BACKLOG" "socket-buffers.md, rss-rps.md"

# udp_mem (pages: min pressure max) against the UDP memory in use (sockstat, pages).
if udp_mem=$(read_first "$PROC/sys/net/ipv4/udp_mem"); then
    # shellcheck disable=SC2086 # split the three numbers on purpose
    set -- $udp_mem
    pressure=${2:-}
    used=$(awk '$1 == "UDP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' \
        "$PROC/net/sockstat" 2>/dev/null)
    cur="$(printf '%s' "$udp_mem" | tr -s ' \t' '/')"
    if is_uint "${used:-}" && is_uint "$pressure"; then
        if [ "$used" -lt "$pressure" ]; then
            report OK net.ipv4.udp_mem "$cur" "in-use<pressure" "socket-buffers.md: UDP uses $used pages"
        else
            report WARN net.ipv4.udp_mem "$cur" "in-use<pressure" "socket-buffers.md: UDP uses $used pages, at/over pressure"
        fi
    else
        report INFO net.ipv4.udp_mem "$cur" "kernel default" "socket-buffers.md: UDP pages in use unknown"
    fi
else
    report n/a net.ipv4.udp_mem n/a "kernel default" socket-buffers.md
fi

# --- UDP drop counters (since boot) -----------------------------------------------
for field in RcvbufErrors InErrors SndbufErrors MemErrors; do
    if val=$(snmp_field "$PROC/net/snmp" Udp "$field"); then
        if [ "$val" = 0 ]; then
            report OK "Udp.$field (/proc/net/snmp)" "$val" 0 "socket-buffers.md: since boot"
        else
            report WARN "Udp.$field (/proc/net/snmp)" "$val" 0 "socket-buffers.md: since boot; watch whether it grows under load"
        fi
    else
        report n/a "Udp.$field (/proc/net/snmp)" n/a 0 socket-buffers.md
    fi
done
for field in Udp6RcvbufErrors Udp6InErrors; do
    if val=$(kv_field "$PROC/net/snmp6" "$field"); then
        if [ "$val" = 0 ]; then
            report OK "$field (/proc/net/snmp6)" "$val" 0 "socket-buffers.md: since boot"
        else
            report WARN "$field (/proc/net/snmp6)" "$val" 0 "socket-buffers.md: since boot; watch whether it grows under load"
        fi
    else
        report n/a "$field (/proc/net/snmp6)" n/a 0 socket-buffers.md
    fi
done
# Per-socket drops: last column of /proc/net/udp and /proc/net/udp6 (this netns only).
for tbl in udp udp6; do
    if [ -r "$PROC/net/$tbl" ]; then
        drops=$(awk 'NR > 1 && $NF ~ /^[0-9]+$/ { s += $NF } END { print s + 0 }' "$PROC/net/$tbl")
        if [ "$drops" = 0 ]; then
            report OK "drops column of /proc/net/$tbl" "$drops" 0 "socket-buffers.md: sum over open sockets"
        else
            report WARN "drops column of /proc/net/$tbl" "$drops" 0 "socket-buffers.md: sum over open sockets"
        fi
    else
        report n/a "drops column of /proc/net/$tbl" n/a 0 socket-buffers.md
    fi
done
# Per-CPU backlog drops and budget squeezes (/proc/net/softnet_stat, hex columns 2 and 3).
if [ -r "$PROC/net/softnet_stat" ]; then
    read -r sn_drop sn_squeeze < <(awk '
        function hex(s,   i, c, v) { v = 0; s = tolower(s)
            for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)); v = v * 16 + c - 1 }
            return v }
        { d += hex($2); q += hex($3) } END { printf "%d %d\n", d, q }' "$PROC/net/softnet_stat")
    if [ "${sn_drop:-0}" = 0 ]; then
        report OK "softnet_stat dropped (all CPUs)" "${sn_drop:-0}" 0 "socket-buffers.md: backlog full -> raise netdev_max_backlog"
    else
        report WARN "softnet_stat dropped (all CPUs)" "$sn_drop" 0 "socket-buffers.md: backlog full -> raise netdev_max_backlog"
    fi
    report INFO "softnet_stat time_squeeze" "${sn_squeeze:-0}" "low, not growing" "rss-rps.md: NAPI budget ran out (net.core.netdev_budget)"
else
    report n/a "softnet_stat dropped (all CPUs)" n/a 0 socket-buffers.md
fi

# --- IRQ placement (irq-affinity.md) ----------------------------------------------
irqb_pid=
for comm in "$PROC"/[0-9]*/comm; do
    [ -r "$comm" ] || continue
    if [ "$(read_first "$comm" || true)" = irqbalance ]; then
        irqb_pid=${comm#"$PROC"/}
        irqb_pid=${irqb_pid%/comm}
        break
    fi
done
isolated=$(read_first "$SYS/devices/system/cpu/isolated" || true)
if [ -z "$irqb_pid" ]; then
    report OK "irqbalance running" no "no, or banned CPUs" "irq-affinity.md"
else
    banned=
    for f in /etc/default/irqbalance /etc/sysconfig/irqbalance; do
        if [ -r "$f" ] && grep -Eq '^[[:space:]]*IRQBALANCE_BANNED_(CPUS|CPULIST)=["'\'']?[0-9a-fA-F]' "$f"; then
            banned=$f
        fi
    done
    if [ -n "$banned" ]; then
        report OK "irqbalance running" "yes(pid $irqb_pid)" "no, or banned CPUs" "irq-affinity.md: banned CPUs set in $banned"
    elif [ -n "$isolated" ]; then
        report OK "irqbalance running" "yes(pid $irqb_pid)" "no, or banned CPUs" "irq-affinity.md: irqbalance skips isolated CPUs $isolated"
    else
        report WARN "irqbalance running" "yes(pid $irqb_pid)" "no, or banned CPUs" "irq-affinity.md: it will move NIC IRQs off the shard cores"
    fi
fi

# --- CPU (cpu-isolation.md) ---------------------------------------------------------
govs=
gov_bad=0
for g in "$SYS"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -r "$g" ] || continue
    v=$(read_first "$g" || echo '?')
    case " $govs " in *" $v "*) ;; *) govs="${govs:+$govs }$v" ;; esac
    [ "$v" = performance ] || gov_bad=1
done
if [ -z "$govs" ]; then
    report n/a "cpufreq scaling_governor" n/a performance "cpu-isolation.md: no cpufreq (VM or driver absent)"
elif [ "$gov_bad" = 0 ]; then
    report OK "cpufreq scaling_governor" "$govs" performance cpu-isolation.md
else
    report WARN "cpufreq scaling_governor" "$(printf '%s' "$govs" | tr ' ' ,)" performance cpu-isolation.md
fi
if idle=$(read_first "$SYS/devices/system/cpu/cpuidle/current_driver"); then
    report INFO "cpuidle driver" "$idle" "deep C-states limited" "cpu-isolation.md: see C-states section"
else
    report n/a "cpuidle driver" n/a "deep C-states limited" cpu-isolation.md
fi
if smt=$(read_first "$SYS/devices/system/cpu/smt/active"); then
    report INFO "SMT active" "$smt" "shards on distinct cores" "cpu-isolation.md: SMT section"
else
    report n/a "SMT active" n/a "shards on distinct cores" cpu-isolation.md
fi

cmdline=$(read_first "$PROC/cmdline" || true)
for param in isolcpus nohz_full rcu_nocbs irqaffinity; do
    # irqaffinity= names the housekeeping CPUs (where IRQs may go), the others the shard CPUs.
    rec="shard CPUs (optional)"
    [ "$param" = irqaffinity ] && rec="housekeeping CPUs (optional)"
    found=
    for word in $cmdline; do
        case $word in "$param="*) found=${word#*=} ;; esac
    done
    if [ -z "$cmdline" ]; then
        report n/a "cmdline $param=" n/a "$rec" cpu-isolation.md
    elif [ -n "$found" ]; then
        report INFO "cmdline $param=" "$found" "$rec" cpu-isolation.md
    else
        report INFO "cmdline $param=" unset "$rec" "cpu-isolation.md: a deployment choice, not required"
    fi
done

# --- memory (hugepages.md) ----------------------------------------------------------
# The selected mode is the bracketed word: "always [madvise] never".
thp_mode() { read_first "$1" | sed -n 's/.*\[\([^]]*\)\].*/\1/p'; }
thp=$(thp_mode "$SYS/kernel/mm/transparent_hugepage/enabled" || true)
case $thp in
    '') report n/a "THP enabled" n/a madvise hugepages.md ;;
    always) report WARN "THP enabled" "$thp" madvise "hugepages.md: khugepaged/compaction work on the shard cores" ;;
    *) report OK "THP enabled" "$thp" madvise hugepages.md ;;
esac
thpd=$(thp_mode "$SYS/kernel/mm/transparent_hugepage/defrag" || true)
case $thpd in
    '') report n/a "THP defrag" n/a "madvise|defer+madvise|defer|never" hugepages.md ;;
    always) report WARN "THP defrag" "$thpd" "madvise|defer+madvise|defer|never" "hugepages.md: direct compaction stalls in page faults" ;;
    *) report OK "THP defrag" "$thpd" "madvise|defer+madvise|defer|never" hugepages.md ;;
esac

# --- conntrack (conntrack.md) -------------------------------------------------------
if ct_max=$(read_first "$PROC/sys/net/netfilter/nf_conntrack_max"); then
    ct_count=$(read_first "$PROC/sys/net/netfilter/nf_conntrack_count" || echo n/a)
    if is_uint "$ct_count" && is_uint "$ct_max" && [ "$ct_max" -gt 0 ] &&
        [ $((ct_count * 100 / ct_max)) -ge 80 ]; then
        report WARN "nf_conntrack count/max" "$ct_count/$ct_max" "<80% or notrack" "conntrack.md: table nearly full -> 'table full, dropping packet'"
    else
        report OK "nf_conntrack count/max" "$ct_count/$ct_max" "<80% or notrack" "conntrack.md: better, notrack SIP ports in the raw table"
    fi
    if [ -d "$SYS/module/nf_conntrack_sip" ]; then
        helper=$(read_first "$PROC/sys/net/netfilter/nf_conntrack_helper" || echo 0)
        if [ "$helper" = 1 ]; then
            report WARN "nf_conntrack_sip helper" "auto(helper=1)" "not assigned" "conntrack.md: the SIP ALG rewrites SIP; set nf_conntrack_helper=0"
        else
            report INFO "nf_conntrack_sip helper" "present" "not assigned" "conntrack.md: only active if a CT --helper sip rule assigns it"
        fi
    fi
else
    report n/a "nf_conntrack count/max" "not loaded" "<80% or notrack" conntrack.md
fi

# --- busy polling (busy-poll.md) ----------------------------------------------------
for name in net.core.busy_poll net.core.busy_read; do
    if val=$(read_first "$PROC/sys/$(printf '%s' "$name" | tr . /)"); then
        if [ "$val" = 0 ]; then
            report OK "$name" "$val" "0 (50 if cores isolated)" busy-poll.md
        elif [ -n "$isolated" ]; then
            report OK "$name" "$val" "0 (50 if cores isolated)" "busy-poll.md: isolated CPUs $isolated"
        else
            report WARN "$name" "$val" "0 (50 if cores isolated)" "busy-poll.md: spinning on shared cores steals CPU"
        fi
    else
        report n/a "$name" n/a "0 (50 if cores isolated)" busy-poll.md
    fi
done
if val=$(read_first "$PROC/sys/net/core/rps_sock_flow_entries"); then
    report INFO net.core.rps_sock_flow_entries "$val" "0, or 32768 with RFS" rss-rps.md
fi

echo "summary: $n_ok OK, $n_warn WARN, $n_info INFO, $n_na n/a"
if [ "$strict" = 1 ] && [ "$n_warn" -gt 0 ]; then
    exit 1
fi
exit 0
