#!/usr/bin/env bash
# Generator: DPDK's dpdk-testpmd in txonly mode, UDP only, flat out (txonly cannot pace).
# Runs on the client VM as root after lib/gen-common.sh (perf/pktgen/run sends both).
#
# The port is a vdev on the lab NIC by default (net_af_packet0,iface=NIC): the NIC keeps its
# kernel driver and address, so nothing has to be rebound; PG_TESTPMD_DEVICE takes a PCI
# address (passed with -a; the NIC must be bound to vfio-pci) or another vdev spec (--vdev),
# e.g. net_af_xdp0,iface=eth1.
#
# txonly builds every frame from: --txpkts (frame length without FCS), --tx-ip=SRC,DST,
# --tx-udp=SPORT,DPORT and --eth-peer=0,MAC (the router). --txonly-multi-flow varies the
# source per packet; DPDK 22.11 (Debian 12) derives it from the destination: 192.0.N.x for
# VIP 192.0.2.10 (N over 256 values, x the lcore), not from --tx-ip's source, so these flows
# do not come from src_net. The router has rp_filter off and does not mind.
#
# testpmd without -i forwards until a byte arrives on stdin, then prints its statistics: we
# hold a FIFO open as its stdin, wait for "Press enter to exit" (forwarding has started), and
# write the newline PG_DURATION seconds later. Sent = the "Accumulated forward statistics"
# TX-packets; errors = TX-dropped (bursts the port did not take).
set -euo pipefail
GEN_NAME=testpmd
if [ -z "${GEN_COMMON:-}" ]; then
    # shellcheck source=../lib/gen-common.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../lib/gen-common.sh"
fi

require_settings PG_DST PG_DST_PORT PG_SRC_MIN PG_SRC_MAX PG_SPORT_MIN PG_SPORT_MAX PG_SIZE \
    PG_RATE PG_DURATION PG_THREADS
[ "${PG_PROTOCOL:-udp}" = udp ] || die "testpmd's txonly mode sends UDP only (protocol ${PG_PROTOCOL})"
[ "$PG_RATE" = 0 ] || die "testpmd's txonly mode cannot pace (rate $PG_RATE pps): use rate 0 or the pktgen generator"
need_root
dry || command -v dpdk-testpmd >/dev/null || die "no dpdk-testpmd (apt-get install dpdk)"

IFACE=$(lab_iface)
DST_MAC=$(gateway_mac "$IFACE")
THREADS=$PG_THREADS
# One main lcore for the command loop plus one forwarding lcore per thread.
if ! dry && [ "$(nproc)" -le "$THREADS" ]; then
    die "$THREADS forwarding thread(s) need $((THREADS + 1)) CPUs, this VM has $(nproc) (MUX_VAGRANT_CLIENT_CPUS)"
fi

device=${PG_TESTPMD_DEVICE:-net_af_packet0,iface=$IFACE,qpairs=$THREADS}
eal=(-l "0-$THREADS" --file-prefix mux-lab-testpmd)
if [[ $device =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
    eal+=(-a "$device")
else
    eal+=(--no-pci --vdev "$device")
fi
# Hugepages when the VM reserved enough (vagrant/provision/client.sh), else none (PLATFORM:
# --no-huge wants a small mbuf pool, which 16384 is).
free_pages=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)
if [ "${free_pages:-0}" -ge 128 ]; then
    eal+=(-m 256)
else
    eal+=(--no-huge -m 512)
fi
app=(--forward-mode=txonly --txpkts="$PG_SIZE" --tx-ip="$PG_SRC_MIN,$PG_DST"
    --tx-udp="$PG_SPORT_MIN,$PG_DST_PORT" --eth-peer="0,$DST_MAC"
    --nb-cores="$THREADS" --txq="$THREADS" --rxq="$THREADS" --burst=32 --txd=1024 --rxd=1024
    --total-num-mbufs=16384)
if [ "$PG_SRC_MIN" != "$PG_SRC_MAX" ] || [ "$PG_SPORT_MIN" != "$PG_SPORT_MAX" ]; then
    app+=(--txonly-multi-flow)
fi

if dry; then
    echo "dpdk-testpmd ${eal[*]} -- ${app[*]}"
    echo "(newline on its stdin after $PG_DURATION s)"
    result 0 "$PG_DURATION" 0
    exit 0
fi

work=$(mktemp -d)
fifo=$work/stdin
log=$work/testpmd.log
mkfifo "$fifo"
testpmd_pid=""
cleanup() {
    # Closing the FIFO ends testpmd (end of input) if it still runs.
    exec 3>&- 2>/dev/null || true
    [ -z "$testpmd_pid" ] || wait "$testpmd_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say "dpdk-testpmd ${eal[*]} -- ${app[*]}"
# Line-buffered: into a file, testpmd's stdout is block-buffered and "Press enter to exit"
# would only appear at the end.
stdbuf -oL -eL dpdk-testpmd "${eal[@]}" -- "${app[@]}" <"$fifo" >"$log" 2>&1 &
testpmd_pid=$!
exec 3>"$fifo"
for i in $(seq 1 300); do
    grep -q 'Press enter to exit' "$log" && break
    if ! kill -0 "$testpmd_pid" 2>/dev/null || [ "$i" = 300 ]; then
        tail -n 20 "$log" >&2
        die "testpmd did not start forwarding (log above)"
    fi
    sleep 0.2
done
t0=$(now_ns)
sleep "$PG_DURATION"
printf '\n' >&3
t1=$(now_ns)
exec 3>&-
wait "$testpmd_pid" || true
testpmd_pid=""

# "  TX-packets: 86381376       TX-dropped: 0             TX-total: 86381376"
read -r sent errors < <(awk '/Accumulated forward statistics/ { acc = 1 }
    acc && /TX-packets:/ { print $2, $4; exit }' "$log")
[ -n "${sent:-}" ] || {
    tail -n 20 "$log" >&2
    die "no accumulated TX statistics in testpmd's output (log above)"
}
seconds=$(seconds_between "$t0" "$t1")
say "sent $sent packets in $seconds s ($errors dropped by the port)"
result "$sent" "$seconds" "$errors"
