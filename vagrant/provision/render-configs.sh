#!/usr/bin/env bash
# The VM lab's daemon configs, rendered from the namespace lab's templates with the
# placeholders scripts/lab fills (its render(): @KEY@ -> value), plus only what a VM needs.
# The role scripts write them to /etc/mux-lab; scripts/check-vagrant renders them into a
# scratch directory and has BIRD (and the mux/hostagent binaries, when built) check them.
#
#   render-configs.sh router OUTDIR                          bird.conf
#   render-configs.sh mux NAME OUTDIR IO INTERFACE [DEVICE]  mux.toml, bird.conf, vips-empty.conf
#   render-configs.sh host NAME OUTDIR                       hostagent.toml
#
# For the MUX: IO dpdk or afxdp; INTERFACE fills [dataplane] interface (the TAP device mux0 for
# dpdk, the NIC's kernel name for afxdp); DEVICE is [dpdk] device (for dpdk). MUX_VAGRANT_HUGEPAGES (0: hugepages = false) and MUX_VAGRANT_DPDK_MEMORY_MB shape the
# [dpdk] section. MUX_LAB_STATE moves the BIRD socket and VIP include (default /run/mux-lab).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: render-configs.sh router OUTDIR | mux NAME OUTDIR IO INTERFACE [DEVICE] | host NAME OUTDIR"; }

# The VMs' BGP sessions run through the DPDK MUXes' TAP exception path: BFD between the BIRDs
# takes a dead or stopped MUX's session (and routes) down within half a second.
BFD="bfd on; error wait time 1, 5;"

render_router() {
    local out=$1
    render "$LAB_TEMPLATES/bird-router.conf.in" "$out/bird.conf" NS="VM router" VIP_PREFIXES="$VIP_PREFIXES" VIP6_PREFIXES="$VIP6_PREFIXES" BFD="$BFD"
}

render_mux() {
    local name=$1 out=$2 io=$3 iface=$4 device=${5:-}
    local s addr gateway
    s=$(link_of "$name")
    addr=10.0.$s.2
    gateway=10.0.$s.1
    case $io in
    dpdk) [ -n "$device" ] || die "io = dpdk needs a DEVICE" ;;
    afxdp) ;;
    *) die "IO must be dpdk or afxdp (not $io)" ;;
    esac
    render "$LAB_TEMPLATES/mux.toml.in" "$out/mux.toml.rendered" NAME="$name" NS="VM $name" \
        IO="$io" INTERFACE="$iface" ADDR="$addr" GATEWAY="$gateway" STATE="$LAB_STATE"
    # A template that names the interface itself (interface = "eth0", before @INTERFACE@) gets
    # the VM's; either way exactly one interface line must end up naming it.
    sed -i "s|^interface = \"eth0\"$|interface = \"$iface\"|" "$out/mux.toml.rendered"
    [ "$(grep -c "^interface = \"$iface\"$" "$out/mux.toml.rendered")" = 1 ] ||
        die "lab/mux.toml.in: no single 'interface = ...' line took $iface: update vagrant/provision/render-configs.sh"
    {
        echo "# Rendered by vagrant/provision/render-configs.sh from lab/mux.toml.in (the namespace"
        echo "# lab's template) for the VM; for io = \"dpdk\" the VM's own [dpdk] section follows."
        cat "$out/mux.toml.rendered"
        if [ "$io" = dpdk ]; then
            local hugepages=true
            [ "${MUX_VAGRANT_HUGEPAGES:-384}" -gt 0 ] || hugepages=false
            cat <<TOML

# The VM's DPDK port (not lab/mux-dpdk.toml.in's, which is sized for a veth vdev on 2 shared
# cores): $device is the lab NIC (MAC $(mac_of "$s" 2)), bound to vfio-pci by
# mux-lab-nic before every start; hugepages and a pool for a real NIC; the worker spins on
# its own vCPU. [dataplane] interface is the TAP device the MUX creates for the kernel, which
# gets $addr/24 from mux-lab-nic tap-up once it exists.
[dpdk]
device = "$device"
hugepages = $hugepages
memory_mb = ${MUX_VAGRANT_DPDK_MEMORY_MB:-512}
mbufs = 16384
mbuf_cache = 256
rx_descriptors = 1024
tx_descriptors = 1024
file_prefix = "$name"
eal_args = []
TOML
        fi
    } >"$out/mux.toml"
    rm -f "$out/mux.toml.rendered"
    cp "$LAB_TEMPLATES/vips-empty.conf" "$out/vips-empty.conf"
    render "$LAB_TEMPLATES/bird-mux.conf.in" "$out/bird.conf" NAME="$name" NS="VM $name" BFD="$BFD" \
        ADDR="$addr" ADDR6="fd00:$s::2" GATEWAY="$gateway" ASN="$(mux_asn "$name")" INCLUDE="$LAB_STATE/$name/vips.conf"
}

render_host() {
    local name=$1 out=$2
    render "$LAB_TEMPLATES/hostagent.toml.in" "$out/hostagent.toml" NAME="$name" NS="VM $name" S="$(link_of "$name")" \
        MUX_SOURCES="$(mux_sources)"
}

case ${1:-} in
router)
    [ $# = 2 ] || usage
    install -d "$2"
    render_router "$2"
    ;;
mux)
    [ $# = 5 ] || [ $# = 6 ] || usage
    install -d "$3"
    render_mux "$2" "$3" "$4" "$5" "${6:-}"
    ;;
host)
    [ $# = 3 ] || usage
    install -d "$3"
    render_host "$2" "$3"
    ;;
*) usage ;;
esac
