#!/usr/bin/env bash
# Generator: the Linux kernel's pktgen (/proc/net/pktgen), UDP only. Runs on the client VM as
# root after lib/gen-common.sh (perf/pktgen/run sends both; see there for the PG_* settings).
#
# One pktgen device per thread, "IFACE@T" on kernel thread kpktgend_T, each configured with
# pgset commands (written to its /proc/net/pktgen file, answered in its "Result:" line):
#   count 0              send until stopped (the duration is ours, not a packet count)
#   clone_skb N          re-send each skb N times before building a new one (0: every packet
#                        is new, so every packet gets fresh random fields)
#   pkt_size N           frame length without FCS
#   ratep N | delay 0    packets per second of this thread, or flat out
#   burst N              xmit_more bursts (only with N > 1)
#   dst_mac, dst_min/dst_max                 the router's MAC, the VIP
#   src_min/src_max + flag IPSRC_RND         random source in the profile's src_net
#   udp_src_min/max + flag UDPSRC_RND        random source port
#   udp_dst_min/max                          the VIP's port
#   flag QUEUE_MAP_CPU   with several threads: each thread sends on its CPU's TX queue
# then `start` on pgctrl (it blocks while sending), `stop` after PG_DURATION seconds, and the
# counts from each device's "pkts-sofar" and "Result: OK: USEC(...)" lines.
set -euo pipefail
GEN_NAME=pktgen
if [ -z "${GEN_COMMON:-}" ]; then
    # shellcheck source=../lib/gen-common.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../lib/gen-common.sh"
fi

require_settings PG_DST PG_DST_PORT PG_SRC_MIN PG_SRC_MAX PG_SPORT_MIN PG_SPORT_MAX PG_SIZE \
    PG_RATE PG_DURATION PG_THREADS
[ "${PG_PROTOCOL:-udp}" = udp ] || die "pktgen sends UDP only (protocol ${PG_PROTOCOL}): use --generator trafgen or perf"
need_root

PGDIR=${PG_PKTGEN_DIR:-/proc/net/pktgen}
if ! dry && [ ! -d "$PGDIR" ]; then
    modprobe pktgen 2>/dev/null || true
    [ -d "$PGDIR" ] || die "no $PGDIR: this kernel has no pktgen (CONFIG_NET_PKTGEN; 'modprobe pktgen' failed). Debian's kernel ships it as a module; in a kernel without it use --generator testpmd, trafgen or perf"
fi

IFACE=$(lab_iface)
DST_MAC=$(gateway_mac "$IFACE")
THREADS=$PG_THREADS
if ! dry && [ ! -e "$PGDIR/kpktgend_$((THREADS - 1))" ]; then
    die "$THREADS threads asked, but pktgen has $(find "$PGDIR" -maxdepth 1 -name 'kpktgend_*' | wc -l) (one per CPU)"
fi

# pgset FILE COMMAND: one pktgen command; pktgen reports how it went in FILE's "Result:" line
# (pgctrl has none).
pgset() {
    local file=$1 cmd=$2
    if dry; then
        printf 'pgset %-12s %s\n' "$file" "$cmd"
        return
    fi
    printf '%s\n' "$cmd" >"$PGDIR/$file" || die "writing '$cmd' to $PGDIR/$file failed"
    if [ "$file" != pgctrl ] && ! grep -q '^Result: OK' "$PGDIR/$file"; then
        die "pktgen refused '$cmd' on $file: $(grep '^Result:' "$PGDIR/$file" || echo 'no result')"
    fi
}

# Stop and detach whatever we configured, also when interrupted: a flat-out pktgen left
# running floods the lab until the next reboot.
cleanup() {
    dry && return
    printf 'stop\n' >"$PGDIR/pgctrl" 2>/dev/null || true
    local t
    for ((t = 0; t < THREADS; t++)); do
        printf 'rem_device_all\n' >"$PGDIR/kpktgend_$t" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pgset pgctrl reset
for ((t = 0; t < THREADS; t++)); do
    dev="$IFACE@$t"
    pgset "kpktgend_$t" rem_device_all
    pgset "kpktgend_$t" "add_device $dev"
    pgset "$dev" "count 0"
    pgset "$dev" "clone_skb ${PG_CLONE_SKB:-0}"
    pgset "$dev" "pkt_size $PG_SIZE"
    if [ "$PG_RATE" -gt 0 ]; then
        # The profile's rate is for all threads together.
        per_thread=$(((PG_RATE + THREADS - 1) / THREADS))
        pgset "$dev" "ratep $per_thread"
    else
        pgset "$dev" "delay 0"
    fi
    [ "${PG_BURST:-1}" -le 1 ] || pgset "$dev" "burst $PG_BURST"
    pgset "$dev" "dst_mac $DST_MAC"
    pgset "$dev" "dst_min $PG_DST"
    pgset "$dev" "dst_max $PG_DST"
    pgset "$dev" "src_min $PG_SRC_MIN"
    pgset "$dev" "src_max $PG_SRC_MAX"
    pgset "$dev" "flag IPSRC_RND"
    pgset "$dev" "udp_src_min $PG_SPORT_MIN"
    pgset "$dev" "udp_src_max $PG_SPORT_MAX"
    pgset "$dev" "flag UDPSRC_RND"
    pgset "$dev" "udp_dst_min $PG_DST_PORT"
    pgset "$dev" "udp_dst_max $PG_DST_PORT"
    [ "$THREADS" = 1 ] || pgset "$dev" "flag QUEUE_MAP_CPU"
done

if dry; then
    pgset pgctrl start
    printf '(%s s later) ' "$PG_DURATION"
    pgset pgctrl stop
    result 0 "$PG_DURATION" 0
    exit 0
fi

say "sending from $IFACE to $DST_MAC ($PG_DST:$PG_DST_PORT) for $PG_DURATION s, $THREADS thread(s)"
t0=$(now_ns)
# `start` returns only when every thread has stopped: in the background, stopped by us.
(printf 'start\n' >"$PGDIR/pgctrl") &
starter=$!
sleep "$PG_DURATION"
printf 'stop\n' >"$PGDIR/pgctrl"
wait "$starter" || true
t1=$(now_ns)

sent=0 errors=0 usec=0
for ((t = 0; t < THREADS; t++)); do
    file="$PGDIR/$IFACE@$t"
    # "     pkts-sofar: 1234  errors: 0" and "Result: OK: 10000123(c...+d...) usec, 1234 (60byte,0frags)"
    n=$(awk '/pkts-sofar:/ { print $2; exit }' "$file")
    e=$(awk '/pkts-sofar:/ { print $4; exit }' "$file")
    u=$(sed -n 's/^Result: OK: \([0-9][0-9]*\)(.*/\1/p' "$file")
    [ -n "$n" ] || die "no pkts-sofar in $file: $(grep '^Result:' "$file" || true)"
    sent=$((sent + n))
    errors=$((errors + ${e:-0}))
    [ -z "$u" ] || [ "$u" -le "$usec" ] || usec=$u
done
# pktgen's own sending time when it reported one, else the wall clock around start/stop.
if [ "$usec" -gt 0 ]; then
    seconds=$(awk -v u="$usec" 'BEGIN { printf "%.6f", u / 1e6 }')
else
    seconds=$(seconds_between "$t0" "$t1")
fi
say "sent $sent packets in $seconds s ($errors errors)"
result "$sent" "$seconds" "$errors"
