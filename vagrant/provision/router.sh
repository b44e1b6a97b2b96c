#!/usr/bin/env bash
# The router VM of the mux VM lab: IPv4 forwarding between the five lab links and BIRD 2 with
# the namespace lab's config (lab/bird-router.conf.in, rendered as scripts/lab does): eBGP to
# each MUX with import filters that accept only the VIP prefixes, and one ECMP route in the
# kernel (`merge paths on`) hashed per flow on the 5-tuple.
#   router.sh NAME     (NAME is "router"; common.sh ran first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=${1:-router}
need_root

log "$NAME: forwarding, ECMP hashing on the 5-tuple, no reverse-path filter"
# rp_filter 0: the client's sources (198.51.100.0/24, testpmd's 192.0.N.x) are not on its link;
# systemd's 50-default.conf would otherwise make it loose (2) on every interface.
write_sysctl router \
    net.ipv4.ip_forward=1 \
    net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0

log "$NAME: BIRD from lab/bird-router.conf.in"
"$(dirname "${BASH_SOURCE[0]}")/render-configs.sh" router "$LAB_ETC"
install_bird "$NAME" "$LAB_ETC/bird.conf"

log "$NAME: ready; the VIP route appears once both MUXes announce (birdc -s $LAB_STATE/$NAME/bird.ctl show protocols)"
