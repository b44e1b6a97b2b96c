#!/usr/bin/env bash
# A MUX VM of the mux VM lab (mux1, mux2): the namespace lab's MUX and BIRD configs
# (lab/mux.toml.in, lab/bird-mux.conf.in, rendered with scripts/lab's placeholders), with the
# data path on the VM's dedicated lab NIC; management (vagrant ssh) stays on the first NIC.
#   mux.sh NAME      (common.sh ran first)
#
#   MUX_VAGRANT_IO=dpdk (default)  io = "dpdk": the NIC is bound to vfio-pci and the MUX owns
#                                  it; the kernel gets the TAP interface mux0 (ARP, BGP, the
#                                  health polls), which receives the link's address once the
#                                  MUX has created it (mux-lab-nic tap-up).
#   MUX_VAGRANT_IO=afxdp           io = "afxdp" on the same NIC, left to its kernel driver and
#                                  holding the address itself, as in the namespace lab.
#   MUX_VAGRANT_MUX_DEVICE         [dpdk] device instead of the NIC's PCI address: another PCI
#                                  address, or a vdev ("net_af_xdp0,iface=eth1").
#   MUX_VAGRANT_HUGEPAGES          2 MB pages to reserve (default 384; 0: [dpdk] hugepages =
#                                  false, the EAL runs with --no-huge)
#   MUX_VAGRANT_DPDK_MEMORY_MB     [dpdk] memory_mb (default 512)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=${1:?usage: mux.sh NAME}
IO=${MUX_VAGRANT_IO:-dpdk}
HUGEPAGES=${MUX_VAGRANT_HUGEPAGES:-384}
TAP=mux0
need_root

S=$(link_of "$NAME")
ADDR=10.0.$S.2
GATEWAY=10.0.$S.1
MAC=$(mac_of "$S" 2)
ASN=$(mux_asn "$NAME")
case $IO in dpdk | afxdp) ;; *) die "MUX_VAGRANT_IO must be dpdk or afxdp (not $IO)" ;; esac

# The MUX never forwards in its kernel (with afxdp the kernel sees the NIC's non-VIP frames).
write_sysctl mux net.ipv4.ip_forward=0

# --- the data NIC ----------------------------------------------------------------------------

NIC_ENV=$LAB_ETC/mux-nic.env
# nic_env KEY: a value recorded by an earlier provisioning (the file is %q-quoted shell).
nic_env() {
    [ -r "$NIC_ENV" ] || return 0
    # shellcheck source=/dev/null
    (. "$NIC_ENV" && eval "echo \"\${$1:-}\"")
}
IFACE=$(iface_by_mac "$MAC")
PCI=""
VDEV_IFACE=""
DEVICE=${MUX_VAGRANT_MUX_DEVICE:-}
if [ "$IO" = dpdk ]; then
    if [ -z "$DEVICE" ]; then
        if [ -n "$IFACE" ]; then
            PCI=$(pci_of_iface "$IFACE") || die "$IFACE (MAC $MAC) is not a PCI device; set MUX_VAGRANT_MUX_DEVICE"
        else
            # Provisioned before: the NIC is bound to vfio-pci and has no kernel interface.
            PCI=$(nic_env PCI) || true
        fi
        [ -n "$PCI" ] || die "no NIC with MAC $MAC (the Vagrantfile's lab NIC for link $S)"
        DEVICE=$PCI
    elif [[ $DEVICE =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
        PCI=$DEVICE
    elif [[ $DEVICE =~ iface=([^,]+) ]]; then
        VDEV_IFACE=${BASH_REMATCH[1]}
    fi
    CONFIG_IFACE=$TAP
else
    if [ -z "$IFACE" ]; then
        # Switching from io = "dpdk": the NIC is still bound to vfio-pci (the old unit binds it
        # at every boot). Give it back to its kernel driver.
        old_pci=$(nic_env PCI) || true
        if [ -n "$old_pci" ] && [ -e "/sys/bus/pci/devices/$old_pci" ]; then
            log "$NAME: returning $old_pci from vfio-pci to its kernel driver"
            systemctl stop mux-lab-mux.service 2>/dev/null || true
            dpdk-devbind.py -u "$old_pci" 2>/dev/null || true
            echo "$old_pci" >/sys/bus/pci/drivers_probe
            for _ in $(seq 1 50); do
                IFACE=$(iface_by_mac "$MAC")
                [ -z "$IFACE" ] || break
                sleep 0.2
            done
        fi
    fi
    [ -n "$IFACE" ] || die "no kernel interface with MAC $MAC (the Vagrantfile's lab NIC for link $S)"
    CONFIG_IFACE=$IFACE
    # mux-lab-links puts the address on it (common.sh wrote the link for io = afxdp).
    systemctl restart mux-lab-links.service
fi

ROUTES=""
for s in "${LAB_LINKS[@]}"; do [ "$s" = "$S" ] || ROUTES+="10.0.$s.0/24 "; done
install -d "$LAB_ETC"
{
    echo "# Written by vagrant/provision/mux.sh; read by $LAB_LIBEXEC/mux-lab-nic."
    printf 'IO=%q\nMAC=%q\nADDR=%q\nGATEWAY=%q\nDEVICE=%q\nPCI=%q\nVDEV_IFACE=%q\nTAP=%q\nHUGEPAGES=%q\nROUTES=%q\n' \
        "$IO" "$MAC" "$ADDR/24" "$GATEWAY" "$DEVICE" "$PCI" "$VDEV_IFACE" "$TAP" "$HUGEPAGES" "${ROUTES% }"
} >"$NIC_ENV"
install_file "$LAB_SRC/vagrant/provision/bin/mux-lab-nic" "$LAB_LIBEXEC/mux-lab-nic" 0755
if [ "$IO" = dpdk ]; then
    reserve_hugepages "$HUGEPAGES"
    # vfio-pci at every boot, before the unit binds the NIC.
    echo vfio-pci >/etc/modules-load.d/mux-lab.conf
fi

# --- configs from the namespace lab's templates ----------------------------------------------

log "$NAME: mux.toml and bird.conf from lab/mux.toml.in and lab/bird-mux.conf.in (io $IO, interface $CONFIG_IFACE, AS $ASN)"
"$(dirname "${BASH_SOURCE[0]}")/render-configs.sh" mux "$NAME" "$LAB_ETC" "$IO" "$CONFIG_IFACE" "$DEVICE"
# BIRD parses its include when it starts: the empty one until the MUX writes it.
install -d "$LAB_STATE/$NAME"
[ -e "$LAB_STATE/$NAME/vips.conf" ] || cp "$LAB_ETC/vips-empty.conf" "$LAB_STATE/$NAME/vips.conf"
install_bird "$NAME" "$LAB_ETC/bird.conf"

if ! mux check-config "$LAB_ETC/mux.toml" >/dev/null; then
    mux check-config "$LAB_ETC/mux.toml" || true
    [ "$IO" = dpdk ] && log "for io = dpdk the mux binary needs the dpdk feature (cargo build --release -p mux --features mux/dpdk), or use MUX_VAGRANT_IO=afxdp"
    die "$LAB_ETC/mux.toml is refused"
fi

# --- the MUX under systemd -------------------------------------------------------------------

post=""
[ "$IO" = dpdk ] && post="ExecStartPost=$LAB_LIBEXEC/mux-lab-nic tap-up"
write_unit mux-lab-mux.service <<UNIT
[Unit]
Description=mux VM lab: the MUX $NAME (io $IO)
After=mux-lab-links.service mux-lab-bird.service
Wants=mux-lab-bird.service

[Service]
ExecStartPre=$LAB_LIBEXEC/mux-lab-nic prepare
ExecStartPre=/usr/local/bin/mux check-config $LAB_ETC/mux.toml
ExecStart=/usr/local/bin/mux run --config $LAB_ETC/mux.toml
$post
ExecReload=/bin/kill -HUP \$MAINPID
# SIGTERM: withdraw the VIPs, drain for [lifecycle] drain_seconds, exit.
TimeoutStopSec=30
Restart=on-failure
RestartSec=2
# DPDK and AF_XDP pin their packet memory.
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
UNIT
restart_unit mux-lab-mux.service

log "$NAME: up (systemctl status mux-lab-mux; curl -s 127.0.0.1:9100/v1/status)"
