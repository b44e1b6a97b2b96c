#!/usr/bin/env bash
# The client VM of the mux VM lab: the traffic generators of perf/pktgen/run, sending from the
# lab NIC (10.0.1.2, set by mux-lab-links) toward the router:
#   - the kernel's pktgen (module pktgen, /proc/net/pktgen), loaded now and at every boot;
#   - dpdk-testpmd (package dpdk) in txonly mode, over a vdev on the lab NIC (no binding, so
#     the NIC keeps its kernel address); hugepages reserved for it (MUX_VAGRANT_CLIENT_HUGEPAGES,
#     default 256 pages of 2 MB; 0 runs it with --no-huge);
#   - trafgen (package netsniff-ng) for TCP SYN floods, and perf gen (the namespace lab's
#     generator) for TCP flows.
#   client.sh NAME    (NAME is "client"; common.sh ran first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=${1:-client}
HUGEPAGES=${MUX_VAGRANT_CLIENT_HUGEPAGES:-256}
need_root

if modprobe pktgen 2>/dev/null && [ -d /proc/net/pktgen ]; then
    echo pktgen >/etc/modules-load.d/mux-lab-pktgen.conf
    log "$NAME: pktgen loaded ($(find /proc/net/pktgen -maxdepth 1 -name 'kpktgend_*' | wc -l) threads)"
else
    # Not fatal: testpmd, trafgen and perf gen still work; perf/pktgen/run says the same.
    log "$NAME: this kernel has no pktgen module (CONFIG_NET_PKTGEN): the pktgen profiles will not run; use --generator testpmd"
fi

reserve_hugepages "$HUGEPAGES"

for tool in dpdk-testpmd trafgen perf; do
    command -v "$tool" >/dev/null || die "$tool is missing (common.sh installs it)"
done
log "$NAME: generators ready (perf/pktgen/run --list on the Vagrant host)"
