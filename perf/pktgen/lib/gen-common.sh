# shellcheck shell=bash
# What every generator script (perf/pktgen/gen/*.sh) needs. perf/pktgen/run sends this file
# and then the generator's over ssh to the client VM (`bash -s`), so the VM runs the version
# on disk here, synced or not; by hand on the VM:
#   cat lib/gen-common.sh gen/pktgen.sh | sudo env PG_DURATION=5 ... bash -s
#
# Settings arrive as PG_* environment variables (perf/pktgen/run sets them from the profile):
#   PG_PROTOCOL udp|tcp-syn|tcp   PG_DST, PG_DST_PORT   PG_SRC_NET, PG_SRC_MIN, PG_SRC_MAX
#   PG_SPORT_MIN, PG_SPORT_MAX    PG_SIZE (frame bytes without FCS)   PG_RATE (pps, 0 flat out)
#   PG_DURATION (s)   PG_THREADS   PG_FLOWS   PG_CLONE_SKB   PG_BURST
#   PG_LAB_ADDR (the client's lab address, 10.0.1.2: its NIC is the one to send on)
#   PG_GATEWAY (the router, 10.0.1.1: its MAC is the frames' destination)
#   PG_IFACE, PG_DST_MAC          optional overrides of the two look-ups
#   PG_TESTPMD_DEVICE             optional: testpmd's port (PCI address or vdev)
#   PG_DRY_RUN=1                  print what would be sent or run, send nothing
# A generator ends by printing one line on stdout, which perf/pktgen/run reads:
#   result sent=PACKETS seconds=SENDING_TIME errors=SEND_FAILURES
# Everything else goes to stderr.

# shellcheck disable=SC2034 # read by the generator scripts: lib already loaded
GEN_COMMON=1
PG_DRY_RUN=${PG_DRY_RUN:-0}

say() { printf '%s: %s\n' "${GEN_NAME:-gen}" "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

dry() { [ "$PG_DRY_RUN" = 1 ]; }

require_settings() {
    local v missing=()
    for v in "$@"; do [ -n "${!v:-}" ] || missing+=("$v"); done
    [ ${#missing[@]} -eq 0 ] || die "missing settings: ${missing[*]} (perf/pktgen/run sets them)"
}

need_root() { dry || [ "$(id -u)" = 0 ] || die "run as root (perf/pktgen/run uses sudo)"; }

# lab_iface: the NIC holding the client's lab address.
lab_iface() {
    if [ -n "${PG_IFACE:-}" ]; then
        echo "$PG_IFACE"
    elif dry; then
        echo "LABNIC"
    else
        local dev
        dev=$(ip -o -4 addr show | awk -v a="${PG_LAB_ADDR:-10.0.1.2}" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }')
        [ -n "$dev" ] || die "no interface has ${PG_LAB_ADDR:-10.0.1.2} (is this the lab's client VM? systemctl status mux-lab-links)"
        echo "$dev"
    fi
}

# iface_mac IFACE: its own MAC (the frames' source).
iface_mac() {
    if dry; then echo "02:00:0a:00:01:02"; else cat "/sys/class/net/$1/address"; fi
}

# gateway_mac IFACE: the router's MAC on the link, resolved through the kernel (one ping fills
# the neighbour table), so a passed-through NIC with another MAC still works.
gateway_mac() {
    if [ -n "${PG_DST_MAC:-}" ]; then
        echo "$PG_DST_MAC"
        return
    fi
    if dry; then
        echo "02:00:0a:00:01:01"
        return
    fi
    local gw=${PG_GATEWAY:-10.0.1.1} mac
    ping -c 1 -W 2 -I "$1" "$gw" >/dev/null 2>&1 || true
    mac=$(ip neigh show "$gw" dev "$1" | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
    [ -n "$mac" ] || die "cannot resolve the router's MAC ($gw on $1): is the router up? (set PG_DST_MAC to skip)"
    echo "$mac"
}

# result SENT SECONDS ERRORS: the line perf/pktgen/run reads.
result() { printf 'result sent=%s seconds=%s errors=%s\n' "$1" "$2" "$3"; }

now_ns() { date +%s%N; }
# seconds_between NS0 NS1: elapsed seconds with microsecond precision.
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'; }
