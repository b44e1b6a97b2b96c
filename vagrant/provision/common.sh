#!/usr/bin/env bash
# First provisioning step of every VM of the mux VM lab (Vagrantfile):
#   common.sh ROLE NAME      ROLE router | mux | host | client; NAME router, mux1, host2...
#
# 1. Debian packages: the namespace lab's (lab/packages.txt) plus what the role needs (DPDK on
#    the MUXes and the client, trafgen on the client).
# 2. The project's binaries the role runs, installed to /usr/local/bin:
#      MUX_VAGRANT_BINARIES=auto (default)  the prebuilt ones in /vagrant/target/release when
#                                           they run here (and, for io = "dpdk", link DPDK);
#                                           otherwise built in this VM
#      MUX_VAGRANT_BINARIES=prebuilt        only the prebuilt ones; fail when unusable
#      MUX_VAGRANT_BINARIES=build           always build in this VM (rustup + cargo, needs
#                                           the internet and ~10 min per VM)
# 3. The links file and the unit that applies it at every boot (addresses by MAC, routes).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROLE=${1:?usage: common.sh ROLE NAME}
NAME=${2:?usage: common.sh ROLE NAME}
IO=${MUX_VAGRANT_IO:-dpdk}
BINARIES=${MUX_VAGRANT_BINARIES:-auto}
TOOLCHAIN=${MUX_VAGRANT_RUST_TOOLCHAIN:-1.95}
need_root

# --- packages --------------------------------------------------------------------------------

packages() {
    grep -v '^#' "$LAB_TEMPLATES/packages.txt"
    # ethtool/iproute2 are in the list; tcpdump helps when a link misbehaves; ping resolves
    # the router's MAC (mux-lab-nic, the generators).
    printf '%s\n' tcpdump iputils-ping
    case $ROLE in
    # `dpdk` has the runtime libraries, dpdk-devbind.py (which reads lspci) and dpdk-testpmd.
    mux) if [ "$IO" = dpdk ]; then printf '%s\n' dpdk pciutils; fi ;;
    client) printf '%s\n' dpdk pciutils netsniff-ng ;;
    esac
    # Kernel modules for pktgen (client) and vfio-pci (MUX) ship with the running kernel's
    # package; Debian boxes have them, minimal cloud kernels may not.
    echo kmod
}

install_packages() {
    local wanted=() missing=() pkg
    mapfile -t wanted < <(packages | sort -u)
    for pkg in "${wanted[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- binaries --------------------------------------------------------------------------------

binaries_of_role() {
    case $ROLE in
    router) ;;
    mux) echo mux ;;
    # perf: the backends (perf http-backend) and, on the client, perf gen / http-load.
    host) printf '%s\n' hostagent perf ;;
    client) echo perf ;;
    esac
}

PREBUILT=$LAB_SRC/target/release

# prebuilt_usable BIN: it exists, every library resolves here (a binary built against a newer
# glibc shows "not found"), and a MUX that must drive DPDK links it.
prebuilt_usable() {
    local bin=$PREBUILT/$1
    [ -x "$bin" ] || return 1
    ldd "$bin" 2>&1 | grep -q 'not found' && return 1
    if [ "$1" = mux ] && [ "$IO" = dpdk ]; then
        ldd "$bin" | grep -q 'librte_' || return 1
    fi
    return 0
}

build_in_vm() {
    local pkgs=("$@") build_deps=(build-essential pkg-config curl ca-certificates)
    local features=()
    if [[ " ${pkgs[*]} " == *" mux "* ]] && [ "$IO" = dpdk ]; then
        # The DPDK port is a cargo feature; its -sys crate needs bindgen (clang) and DPDK's
        # headers (docs/architecture.md, PLATFORM: Debian's DPDK 22.11).
        build_deps+=(dpdk-dev libdpdk-dev clang libclang-dev)
        features=(--features "${MUX_VAGRANT_CARGO_FEATURES:-mux/dpdk}")
    fi
    log "building ${pkgs[*]} in this VM (toolchain $TOOLCHAIN${features:+, ${features[*]}})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${build_deps[@]}" >/dev/null
    export CARGO_HOME=/opt/mux-lab/cargo RUSTUP_HOME=/opt/mux-lab/rustup
    if [ ! -x "$CARGO_HOME/bin/cargo" ]; then
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y -q --no-modify-path --profile minimal --default-toolchain "$TOOLCHAIN"
    fi
    local args=() p
    for p in "${pkgs[@]}"; do args+=(-p "$p"); done
    # The target directory stays outside the synced folder: the host's target/ is not ours
    # to write, and an rsync'ed folder would lose it on the next sync anyway.
    (cd "$LAB_SRC" && CARGO_TARGET_DIR=/opt/mux-lab/target \
        "$CARGO_HOME/bin/cargo" build --release --locked "${args[@]}" "${features[@]}")
    for p in "${pkgs[@]}"; do install -m 0755 "/opt/mux-lab/target/release/$p" "/usr/local/bin/$p"; done
}

install_binaries() {
    local wanted=() unusable=() bin
    mapfile -t wanted < <(binaries_of_role)
    [ ${#wanted[@]} -gt 0 ] || return 0
    for bin in "${wanted[@]}"; do prebuilt_usable "$bin" || unusable+=("$bin"); done
    case $BINARIES in
    auto | prebuilt)
        if [ ${#unusable[@]} -eq 0 ]; then
            log "installing the prebuilt ${wanted[*]} from $PREBUILT"
            for bin in "${wanted[@]}"; do install -m 0755 "$PREBUILT/$bin" "/usr/local/bin/$bin"; done
            return 0
        fi
        if [ "$BINARIES" = prebuilt ]; then
            die "MUX_VAGRANT_BINARIES=prebuilt, but ${unusable[*]} in $PREBUILT is missing or cannot run here (ldd: a library not found; for io = dpdk the MUX must be built with --features mux/dpdk on a host with DPDK 22.11)"
        fi
        log "no usable prebuilt ${unusable[*]} in $PREBUILT: building here"
        build_in_vm "${wanted[@]}"
        ;;
    build) build_in_vm "${wanted[@]}" ;;
    *) die "MUX_VAGRANT_BINARIES must be auto, prebuilt or build (not $BINARIES)" ;;
    esac
}

# --- links -----------------------------------------------------------------------------------

# The links file of each role; the MUX's data NIC in DPDK mode is left out (it is bound to
# vfio-pci, its address goes on the TAP interface: vagrant/provision/mux.sh).
write_links() {
    links_begin
    local s
    case $ROLE in
    router)
        for s in "${LAB_LINKS[@]}"; do
            links_add "link $(mac_of "$s" 1) 10.0.$s.1/24"
            links_add "features $(mac_of "$s" 1) gro off"
        done
        links_add "route $SRC_NET via $CLIENT_ADDR"
        # Until BGP has installed the VIP route, traffic for the VIP network is dropped here
        # rather than sent out of the management NIC (the default route).
        links_add "blackhole 192.0.2.0/24"
        ;;
    mux)
        s=$(link_of "$NAME")
        if [ "$IO" != dpdk ]; then
            links_add "link $(mac_of "$s" 2) 10.0.$s.2/24"
            links_add "features $(mac_of "$s" 2) gro off"
            # The health feed polls the agents (10.0.2x.2:9200) from the MUX's kernel.
            links_routes_via "$s" "10.0.$s.1"
        fi
        ;;
    host)
        s=$(link_of "$NAME")
        local addrs="" a
        for a in "${DIP_SUFFIXES[@]}"; do addrs+=" 10.0.$s.$a/24"; done
        # shellcheck disable=SC2086 # one word per address
        links_add "link $(mac_of "$s" 2)" $addrs
        links_add "features $(mac_of "$s" 2) gro off"
        # Replies go straight to the clients (DSR) through the router, not the default route.
        links_routes_via "$s" "10.0.$s.1" "$SRC_NET"
        ;;
    client)
        s=$(link_of client)
        links_add "link $(mac_of "$s" 2) 10.0.$s.2/24"
        # As in the namespace lab: a locally sent TCP segment can leave with only the
        # pseudo-header sum for the NIC to finish (virtio passes it on like a veth); the MUX
        # forwards bytes, so the backend would see a bad checksum.
        links_add "features $(mac_of "$s" 2) tx off gro off"
        links_routes_via "$s" "10.0.$s.1" "192.0.2.0/24"
        ;;
    *) die "unknown role $ROLE (router, mux, host, client)" ;;
    esac
    install_links
}

log "$NAME: common provisioning (role $ROLE)"
install_packages
install_binaries
write_links
