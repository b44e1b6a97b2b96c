# shellcheck shell=bash
# shellcheck disable=SC2034 # the constants are for the scripts that source this file
# Shared by the VM lab's provisioning scripts (sourced, not run): the topology of the namespace
# lab (scripts/lab, docs/lab.md) and the helpers that render its templates and install units.
#
# The addressing is scripts/lab's, so a result from one lab reads the same in the other:
# link S is 10.0.S.0/24, the router is .1 and the other end .2; MACs are 02:00:0a:00:SS:HH
# (hex of the address's last two bytes). The Vagrantfile gives every lab NIC that MAC, and the
# scripts find interfaces by it: names differ between boxes and providers, MACs do not.

# The repository as the VMs see it (the Vagrantfile syncs the repository root here).
LAB_SRC=${MUX_LAB_SRC:-/vagrant}
LAB_TEMPLATES=$LAB_SRC/lab
# Rendered configuration (persistent) and the daemons' sockets and VIP include (per boot).
LAB_ETC=/etc/mux-lab
LAB_STATE=${MUX_LAB_STATE:-/run/mux-lab}
LAB_LIBEXEC=/usr/local/lib/mux-lab

VIP=192.0.2.10
VIP_PREFIXES="192.0.2.10/32"
# The namespace lab's IPv6 VIPs (scripts/lab.d/ipv6.sh): the router's BIRD template imports
# them on its ipv6 channels. The VMs have no IPv6 addresses and their MUXes no IPv6 VIPs, so
# nothing is announced on those channels here.
VIP6_PREFIXES="2001:db8::10/128, 2001:db8::11/128"
SRC_NET=198.51.100.0/24
CLIENT_ADDR=10.0.1.2
# Every lab link; each node routes the ones it is not on through its own link's router end.
LAB_LINKS=(1 11 12 21 22)
DIP_SUFFIXES=(2 3)

link_of() {
    case $1 in
    client) echo 1 ;;
    mux1) echo 11 ;;
    mux2) echo 12 ;;
    host1) echo 21 ;;
    host2) echo 22 ;;
    *) die "no lab link for node $1" ;;
    esac
}
mux_asn() {
    case $1 in
    mux1) echo 65101 ;;
    mux2) echo 65102 ;;
    *) die "$1 is not a MUX" ;;
    esac
}
# The MUXes' tunnel sources as a TOML list's items (hostagent.toml's mux_sources).
mux_sources() {
    local m out=""
    for m in mux1 mux2; do out+="\"10.0.$(link_of "$m").2\", "; done
    printf '%s' "${out%, }"
}
mac_of() { printf '02:00:0a:00:%02x:%02x' "$1" "$2"; }

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf 'provision: error: %s\n' "$*" >&2
    exit 1
}

need_root() { [ "$(id -u)" = 0 ] || die "run as root (Vagrant's shell provisioner does)"; }

# render TEMPLATE OUT KEY=VALUE...: @KEY@ becomes VALUE, the contract of scripts/lab's render();
# a placeholder left unfilled is an error, so a template that grows a placeholder fails loudly.
render() {
    local template=$1 out=$2
    shift 2
    [ -r "$template" ] || die "no template $template (is the repository synced to $LAB_SRC?)"
    local args=() kv
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$template" >"$out.tmp"
    if grep -q '@[A-Z_]*@' "$out.tmp"; then
        die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out.tmp" | head -1)"
    fi
    mv "$out.tmp" "$out"
}

# iface_by_mac MAC: the kernel interface with this MAC, empty when there is none (a NIC bound
# to vfio-pci has no kernel interface).
iface_by_mac() {
    local want=${1,,} dev
    for dev in /sys/class/net/*; do
        [ -r "$dev/address" ] || continue
        if [ "$(cat "$dev/address")" = "$want" ] && [ ! -e "$dev/master" ]; then
            basename "$dev"
            return 0
        fi
    done
}

# pci_of_iface IFACE: the PCI address (0000:00:08.0) behind a kernel interface.
pci_of_iface() {
    local dev
    dev=$(readlink -f "/sys/class/net/$1/device") || return 1
    case $(basename "$dev") in
    [0-9a-f][0-9a-f][0-9a-f][0-9a-f]:*) basename "$dev" ;;
    # virtio-net sits on a virtio bus device whose parent is the PCI function.
    virtio*) basename "$(dirname "$dev")" ;;
    *) return 1 ;;
    esac
}

# install_file SOURCE DEST MODE: copies a file from the synced repository.
install_file() { install -D -m "$3" "$1" "$2"; }

# write_unit NAME: the unit file read from stdin, installed and enabled (not started).
write_unit() {
    local name=$1
    cat >"/etc/systemd/system/$name"
    systemctl daemon-reload
    systemctl enable "$name" >/dev/null 2>&1
}

# restart_unit NAME: (re)starts a unit, printing its journal when it fails.
restart_unit() {
    if ! systemctl restart "$1"; then
        journalctl -u "$1" -n 30 --no-pager >&2 || true
        die "$1 failed to start (journalctl -u $1)"
    fi
}

# The links file read by mux-lab-links at every boot (vagrant/provision/bin/mux-lab-links):
# one directive per line.
links_begin() {
    install -d "$LAB_ETC"
    printf '# Written by vagrant/provision; applied at boot by mux-lab-links.service.\n' >"$LAB_ETC/links.conf"
}
links_add() { printf '%s\n' "$*" >>"$LAB_ETC/links.conf"; }
# links_routes_via LINK GATEWAY: routes to every other lab link, and what else is named, via
# GATEWAY. Specific /24s, never a default route: the default stays on the management NIC, so
# apt and `vagrant ssh` keep working and no lab traffic leaks out through it.
links_routes_via() {
    local own=$1 gateway=$2 s
    shift 2
    for s in "${LAB_LINKS[@]}"; do
        [ "$s" = "$own" ] || links_add "route 10.0.$s.0/24 via $gateway"
    done
    for net in "$@"; do links_add "route $net via $gateway"; done
}

# install_links: the boot-time unit that applies links.conf, run once now.
install_links() {
    install_file "$LAB_SRC/vagrant/provision/bin/mux-lab-links" "$LAB_LIBEXEC/mux-lab-links" 0755
    write_unit mux-lab-links.service <<UNIT
[Unit]
Description=mux VM lab: addresses and routes of the lab links ($LAB_ETC/links.conf)
After=network.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$LAB_LIBEXEC/mux-lab-links $LAB_ETC/links.conf

[Install]
WantedBy=multi-user.target
UNIT
    restart_unit mux-lab-links.service
}

# write_sysctl NAME KEY=VALUE...: a sysctl.d file, applied now and at every boot.
write_sysctl() {
    local file=/etc/sysctl.d/60-mux-lab-$1.conf kv
    shift
    printf '# Written by vagrant/provision (mux VM lab).\n' >"$file"
    for kv in "$@"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}" >>"$file"; done
    sysctl -q -p "$file" >/dev/null
}

# install_bird NAME CONF: BIRD 2 under a unit of the lab's own, control socket at
# $LAB_STATE/NAME/bird.ctl (where lab/mux.toml.in's bird_socket points), so the distribution's
# bird.service (another config, another socket) is disabled.
install_bird() {
    local name=$1 conf=$2
    bird -p -c "$conf" || die "BIRD refuses $conf"
    systemctl disable --now bird.service >/dev/null 2>&1 || true
    local seed=""
    if [ -e "$LAB_ETC/vips-empty.conf" ]; then
        # The MUX rewrites the include when it announces; at boot it starts empty (as in the
        # namespace lab), since $LAB_STATE is a tmpfs.
        seed="ExecStartPre=/bin/sh -c 'test -e $LAB_STATE/$name/vips.conf || cp $LAB_ETC/vips-empty.conf $LAB_STATE/$name/vips.conf'"
    fi
    write_unit mux-lab-bird.service <<UNIT
[Unit]
Description=mux VM lab: BIRD 2 of $name
After=mux-lab-links.service
Wants=mux-lab-links.service

[Service]
ExecStartPre=/usr/bin/install -d -m 0755 $LAB_STATE/$name
$seed
ExecStartPre=/usr/sbin/bird -p -c $conf
ExecStart=/usr/sbin/bird -f -c $conf -s $LAB_STATE/$name/bird.ctl
ExecReload=/usr/sbin/birdc -s $LAB_STATE/$name/bird.ctl configure
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
    restart_unit mux-lab-bird.service
}

# reserve_hugepages PAGES: 2 MB pages now and at every boot (DPDK's memory).
reserve_hugepages() {
    local pages=$1
    [ "$pages" -gt 0 ] || return 0
    write_sysctl hugepages "vm.nr_hugepages=$pages"
    local got
    got=$(cat /proc/sys/vm/nr_hugepages)
    if [ "$got" -lt "$pages" ]; then
        log "only $got of $pages hugepages could be reserved (memory fragmented or too small: raise the VM's memory)"
    fi
}
