#!/usr/bin/env bash
# tuning/apply.sh — EXPLICIT apply of the sysctl settings recommended for ringsip.
#
# Does nothing without --yes. Prints every change before making it. Only raises a
# value that is below the recommendation; never lowers one an operator already raised.
# Writes with `sysctl -w`; with --persist also writes /etc/sysctl.d/90-ringsip.conf so
# the values survive a reboot. --dry-run prints the commands (and the file) and changes
# nothing. Optional, separately requested: --governor (cpufreq "performance" on every
# CPU) and --thp (THP enabled=madvise, defrag=defer+madvise where they are "always"),
# both sysfs writes that do not survive a reboot (see cpu-isolation.md, hugepages.md).
#
# Never touches the network (no interface, IRQ, queue or firewall change: those are in
# the runbooks, done by hand), never reboots, never loads modules.
#
# For tests, TUNING_PROC and TUNING_SYS replace /proc and /sys as the roots read
# (and, for --governor/--thp, written).
set -u

PROC=${TUNING_PROC:-/proc}
SYS=${TUNING_SYS:-/sys}
PERSIST_FILE=/etc/sysctl.d/90-ringsip.conf

# name value — keep in step with check.sh and socket-buffers.md.
SETTINGS="
net.core.rmem_max 33554432
net.core.wmem_max 33554432
net.core.rmem_default 4194304
net.core.wmem_default 1048576
net.core.netdev_max_backlog 16384
"

usage() {
    cat <<'EOF'
usage: tuning/apply.sh [--yes] [--dry-run] [--persist [--persist-file PATH]] [--governor] [--thp]

  --yes            actually apply (without it nothing is changed and the plan is printed)
  --dry-run        print the commands that would run and change nothing (even with --yes)
  --persist        also write the sysctls to /etc/sysctl.d/90-ringsip.conf
  --persist-file P write the persistent file to P instead
  --governor       set every CPU's cpufreq governor to "performance" (sysfs, not persistent)
  --thp            where THP enabled/defrag is "always": enabled=madvise, defrag=defer+madvise

sysctls applied when below the recommendation (never lowered):
EOF
    printf '%s\n' "$SETTINGS" | sed '/^$/d; s/^/  /'
    echo
    echo "Exit: 0 applied / dry run, 1 an apply step failed or not root, 2 usage or --yes missing."
}

yes=0
dry=0
persist=0
governor=0
thp=0
while [ $# -gt 0 ]; do
    case $1 in
        --yes) yes=1 ;;
        --dry-run) dry=1 ;;
        --persist) persist=1 ;;
        --persist-file)
            [ $# -ge 2 ] || { echo "apply.sh: --persist-file needs a path" >&2; exit 2; }
            PERSIST_FILE=$2
            persist=1
            shift
            ;;
        --governor) governor=1 ;;
        --thp) thp=1 ;;
        -h | --help) usage; exit 0 ;;
        *)
            echo "apply.sh: unknown argument: $1 (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

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

if [ "$dry" = 1 ]; then
    mode='dry-run'
elif [ "$yes" = 1 ]; then
    mode=apply
else
    mode=plan
fi

if [ "$mode" = apply ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "apply.sh: applying needs root (sysctl -w); nothing was changed. Use --dry-run to preview." >&2
        exit 1
    fi
    if ! command -v sysctl >/dev/null 2>&1; then
        echo "apply.sh: the sysctl command is missing (package procps); nothing was changed." >&2
        exit 1
    fi
fi

echo "ringsip tuning apply — mode: $mode"
failed=0
persist_lines=
rollback=

# run CMD... — print, then run unless not applying.
run() {
    echo "+ $*"
    if [ "$mode" = apply ]; then
        if ! "$@"; then
            echo "apply.sh: FAILED: $*" >&2
            failed=1
        fi
    fi
}

# write_sysfs VALUE FILE — print, then write unless not applying.
write_sysfs() {
    echo "+ echo $1 > $2"
    if [ "$mode" = apply ]; then
        if ! printf '%s\n' "$1" >"$2"; then
            echo "apply.sh: FAILED: echo $1 > $2" >&2
            failed=1
        fi
    fi
}

while read -r name want; do
    [ -n "$name" ] || continue
    path="$PROC/sys/$(printf '%s' "$name" | tr . /)"
    if ! cur=$(read_first "$path"); then
        echo "skip $name: $path absent on this kernel"
        continue
    fi
    if is_uint "$cur" && [ "$cur" -ge "$want" ]; then
        echo "keep $name = $cur (already >= $want)"
        # Persist what runs now, so a reboot does not lower a value raised by hand.
        persist_lines="${persist_lines}${name} = ${cur}
"
        continue
    fi
    persist_lines="${persist_lines}${name} = ${want}
"
    echo "change $name: $cur -> $want"
    rollback="${rollback}sysctl -w $name=$cur
"
    run sysctl -w "$name=$want"
done <<EOF
$SETTINGS
EOF

if [ "$persist" = 1 ]; then
    echo "persist: $PERSIST_FILE"
    content="# Written by ringsip tuning/apply.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ).
# See tuning/socket-buffers.md. To roll back: delete this file, then set the old values
# with 'sysctl -w' (deleting it alone changes nothing until the next boot).
${persist_lines}"
    printf '%s' "$content" | sed 's/^/    | /'
    if [ "$mode" = apply ]; then
        if ! printf '%s' "$content" >"$PERSIST_FILE"; then
            echo "apply.sh: FAILED: writing $PERSIST_FILE" >&2
            failed=1
        fi
    fi
fi

if [ "$governor" = 1 ]; then
    found=0
    for g in "$SYS"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        [ -e "$g" ] || continue
        found=1
        cur=$(read_first "$g" || echo '?')
        if [ "$cur" = performance ]; then
            echo "keep $g = performance"
        else
            echo "change $g: $cur -> performance"
            rollback="${rollback}echo $cur > $g
"
            write_sysfs performance "$g"
        fi
    done
    [ "$found" = 1 ] || echo "skip governor: no cpufreq on this machine"
fi

if [ "$thp" = 1 ]; then
    for pair in "enabled madvise" "defrag defer+madvise"; do
        knob=${pair% *}
        want=${pair#* }
        f="$SYS/kernel/mm/transparent_hugepage/$knob"
        if [ ! -e "$f" ]; then
            echo "skip THP $knob: $f absent"
            continue
        fi
        cur=$(read_first "$f" | sed -n 's/.*\[\([^]]*\)\].*/\1/p')
        # Only "always" is changed; the other modes are already what check.sh accepts.
        if [ "$cur" != always ]; then
            echo "keep THP $knob = ${cur:-?}"
        else
            echo "change THP $knob: ${cur:-?} -> $want"
            rollback="${rollback}echo $cur > $f
"
            write_sysfs "$want" "$f"
        fi
    done
fi

if [ -n "$rollback" ]; then
    echo "rollback (the values before this run):"
    printf '%s' "$rollback" | sed 's/^/    /'
fi

case $mode in
    plan)
        echo "nothing changed: this was the plan. Re-run with --yes to apply, or --dry-run --yes to see the exact commands."
        exit 2
        ;;
    dry-run)
        echo "dry run: nothing changed."
        exit 0
        ;;
esac
if [ "$failed" = 1 ]; then
    echo "some steps failed (see above); re-run tuning/check.sh to see the current state." >&2
    exit 1
fi
echo "done. Verify with tuning/check.sh."
exit 0
