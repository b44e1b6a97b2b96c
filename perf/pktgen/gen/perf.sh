#!/usr/bin/env bash
# Generator: `perf gen`, the namespace lab's own generator (perf/src/traffic/generator.rs), for
# TCP flows: PG_FLOWS flows from src_net, each opening with a SYN and continuing with ACKs
# (--syn-ack-mix), sent round-robin, paced or flat out; or UDP. The same generator and seed
# as scripts/lab's rounds, so VM and namespace figures compare. Runs on the client VM as root
# after lib/gen-common.sh (perf/pktgen/run sends both). One sending thread.
#
# Sent and sending time come from its JSON report (fields sent, elapsed_seconds,
# dropped_on_send), read with jq.
set -euo pipefail
GEN_NAME=perf-gen
if [ -z "${GEN_COMMON:-}" ]; then
    # shellcheck source=../lib/gen-common.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../lib/gen-common.sh"
fi

require_settings PG_PROTOCOL PG_DST PG_DST_PORT PG_SRC_NET PG_SIZE PG_RATE PG_DURATION PG_FLOWS
need_root
# /usr/local/bin/perf is the project's; Debian's linux-perf would be /usr/bin/perf.
PERF=${PG_PERF:-/usr/local/bin/perf}
dry || [ -x "$PERF" ] || die "no $PERF (vagrant/provision/common.sh installs it on the client)"
dry || command -v jq >/dev/null || die "no jq (lab/packages.txt)"

IFACE=$(lab_iface)
SRC_MAC=$(iface_mac "$IFACE")
DST_MAC=$(gateway_mac "$IFACE")

args=(gen --interface "$IFACE" --src-mac "$SRC_MAC" --dst-mac "$DST_MAC" --src-net "$PG_SRC_NET"
    --flows "$PG_FLOWS" --seed 7 --size "$PG_SIZE" --rate "$PG_RATE" --duration "$PG_DURATION")
case $PG_PROTOCOL in
tcp) args+=(--vip "$PG_DST:$PG_DST_PORT/tcp" --syn-ack-mix) ;;
udp) args+=(--vip "$PG_DST:$PG_DST_PORT/udp") ;;
*) die "perf gen here sends tcp or udp, not $PG_PROTOCOL" ;;
esac
[ "${PG_THREADS:-1}" = 1 ] || say "perf gen has one sending thread (threads ${PG_THREADS} ignored)"

if dry; then
    echo "$PERF ${args[*]} --report REPORT"
    result 0 "$PG_DURATION" 0
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PERF" "${args[@]}" --report "$work/gen.json" || die "perf gen failed"
read -r sent seconds dropped < <(jq -r '"\(.sent) \(.elapsed_seconds) \(.dropped_on_send)"' "$work/gen.json")
result "$sent" "$seconds" "$dropped"
