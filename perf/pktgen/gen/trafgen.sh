#!/usr/bin/env bash
# Generator: trafgen (netsniff-ng) for what the kernel's pktgen cannot build: TCP SYNs from
# random sources (protocol tcp-syn, a SYN flood), or UDP. Runs on the client VM as root after
# lib/gen-common.sh (perf/pktgen/run sends both).
#
# The packet is one trafgen config template whose fields trafgen re-randomises per packet
# (drnd): the source address's last byte (so src_net must be a /24 or longer), the source
# port, the TCP sequence number and the IP ID; checksums are recomputed. `--rate Npps` paces
# (one CPU then: trafgen's pacing is per process); no rate sends flat out on PG_THREADS CPUs.
# It runs for PG_DURATION seconds under `timeout -s INT`, after which trafgen prints
# "N packets outgoing" and "S sec, U usec on CPUk" per CPU.
set -euo pipefail
GEN_NAME=trafgen
if [ -z "${GEN_COMMON:-}" ]; then
    # shellcheck source=../lib/gen-common.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../lib/gen-common.sh"
fi

require_settings PG_PROTOCOL PG_DST PG_DST_PORT PG_SRC_MIN PG_SRC_MAX PG_SPORT_MIN PG_SPORT_MAX \
    PG_SIZE PG_RATE PG_DURATION PG_THREADS
need_root
dry || command -v trafgen >/dev/null || die "no trafgen (apt-get install netsniff-ng)"
[ "${PG_SRC_MIN%.*}" = "${PG_SRC_MAX%.*}" ] || die "trafgen varies the last byte of the source only: $PG_SRC_MIN..$PG_SRC_MAX spans more than a /24"

IFACE=$(lab_iface)
SRC_MAC=$(iface_mac "$IFACE")
DST_MAC=$(gateway_mac "$IFACE")

case $PG_PROTOCOL in
tcp-syn)
    l4_len=20
    l4="tcp(sp=drnd($PG_SPORT_MIN, $PG_SPORT_MAX), dp=$PG_DST_PORT, seq=drnd(), syn, win=64240)"
    ;;
udp)
    l4_len=8
    l4="udp(sp=drnd($PG_SPORT_MIN, $PG_SPORT_MAX), dp=$PG_DST_PORT)"
    ;;
*) die "trafgen here sends tcp-syn or udp, not $PG_PROTOCOL" ;;
esac
pad=$((PG_SIZE - 14 - 20 - l4_len))
[ "$pad" -ge 0 ] || die "frame size $PG_SIZE is smaller than the headers ($((14 + 20 + l4_len)) bytes)"

config() {
    echo "{"
    echo "  eth(da=$DST_MAC, sa=$SRC_MAC),"
    echo "  ipv4(sa=${PG_SRC_MIN%.*}.0, sa[3]=drnd(${PG_SRC_MIN##*.}, ${PG_SRC_MAX##*.}), da=$PG_DST, ttl=64, df, id=drnd()),"
    echo "  $l4,"
    [ "$pad" = 0 ] || echo "  fill(0x00, $pad),"
    echo "}"
}

args=(--out "$IFACE")
if [ "$PG_RATE" -gt 0 ]; then
    args+=(--cpus 1 --rate "${PG_RATE}pps")
else
    args+=(--cpus "$PG_THREADS")
fi

if dry; then
    config
    echo "timeout --signal=INT $PG_DURATION trafgen --in CONFIG ${args[*]}"
    result 0 "$PG_DURATION" 0
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config >"$work/packet.cfg"
say "sending ${PG_PROTOCOL} from $IFACE to $DST_MAC ($PG_DST:$PG_DST_PORT) for $PG_DURATION s"
rc=0
timeout --signal=INT "$PG_DURATION" trafgen --in "$work/packet.cfg" "${args[@]}" >"$work/out" 2>&1 || rc=$?
# 124: timeout ended it, the normal way.
if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
    cat "$work/out" >&2
    die "trafgen failed (exit $rc)"
fi
# Its summary lines start with a carriage return (they overwrite the progress line).
tr -d '\r' <"$work/out" >"$work/summary"
sent=$(awk '/packets outgoing/ { print $1; exit }' "$work/summary")
seconds=$(awk '/usec on CPU/ { t = $1 + $3 / 1e6; if (t > m) m = t } END { printf "%.6f", m }' "$work/summary")
[ -n "$sent" ] || {
    cat "$work/out" >&2
    die "no 'packets outgoing' in trafgen's output"
}
say "sent $sent packets in $seconds s"
result "$sent" "$seconds" 0
