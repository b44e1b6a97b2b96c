# shellcheck shell=bash
# IPv6 in the namespace lab, sourced by scripts/lab (docs/lab.md, "IPv6").
#
# Every link gets an IPv6 /64 beside its IPv4 /24: link S is fd00:S::/64 (the router ::1, the
# other end ::2, the hosts' second DIP ::3), a backend link fd00:HS:A::/64 beside 10.HS.A.0/24.
# The client is fd00:1::2. Both MUXes serve two IPv6 VIPs, announced as /128s on the ipv6
# channel of their BGP session, which the router installs as ECMP routes with two paths:
#   web6     [2001:db8::10]:80/tcp  backends fd00:21::2 fd00:21::3 fd00:22::2 fd00:22::3: IPv6
#            outer headers (next header 41) from the MUX's fd00:S::2 to the agents' IPv6 DIPs
#   web6-v4  [2001:db8::11]:80/tcp  backends 10.0.21.2 10.0.21.3 10.0.22.2 10.0.22.3: IPv4
#            outer headers (protocol 41) around the client's IPv6 packets
# The agents map them to the backend namespaces' IPv6 addresses, where perf http-backend
# serves web6 on port 8080 and web6-v4 on 8081 (an agent tells services apart on the way out by
# backend address and port). The HTTP rounds check them as the IPv4 round: per backend,
# failures, the client's real address seen, keep-alive connections kept, DSR, latency.
#
# Functions only; scripts/lab calls them from up, http_rounds, print_routes and the DPDK
# address moves.

VIP6=2001:db8::10
VIP6_V4=2001:db8::11
# The router's BIRD imports only these (lab/bird-router.conf.in's @VIP6_PREFIXES@).
# shellcheck disable=SC2034
VIP6_PREFIXES="2001:db8::10/128, 2001:db8::11/128"
CLIENT6=fd00:1::2
# The IPv6 backends' ports in the backend namespaces: web6 and web6-v4.
V6_PORT=8080
V6_V4_PORT=8081

# link6 S: the /64 of link S without its host part ("fd00:S::").
link6() { echo "fd00:$1::"; }
# backend6 HOST A: the IPv6 address of the backend namespace of DIP suffix A on HOST.
backend6() { echo "fd00:$(host_link "$1"):$2::2"; }

# Addresses, routes and sysctls: run by up once every namespace and veth exists. nodad: an
# address is usable at once (duplicate address detection would hold it tentative for a second).
ipv6_links() {
    local m h a s ns bns hs
    ip -n "$NS_ROUTER" addr add "$(link6 1)1/64" dev client nodad
    ip -n "$NS_CLIENT" addr add "${CLIENT6}/64" dev eth0 nodad
    ip -n "$NS_CLIENT" -6 route add default via "$(link6 1)1"
    for m in "${MUXES[@]}"; do
        s=$(mux_link "$m")
        ns=$(ns_of "$m")
        ip -n "$NS_ROUTER" addr add "$(link6 "$s")1/64" dev "$m" nodad
        ip -n "$ns" addr add "$(link6 "$s")2/64" dev eth0 nodad
        # Never forward (an AF_PACKET MUX's kernel sees every VIP packet too): the default.
        sysctl_in "$ns" net.ipv6.conf.all.forwarding=0
        ip -n "$ns" -6 route add default via "$(link6 "$s")1"
    done
    for h in "${HOSTS[@]}"; do
        s=$(host_link "$h")
        ns=$(ns_of "$h")
        ip -n "$NS_ROUTER" addr add "$(link6 "$s")1/64" dev "$h" nodad
        ip -n "$ns" addr add "$(link6 "$s")2/64" dev eth0 nodad
        ip -n "$ns" addr add "$(link6 "$s")3/64" dev eth0 nodad
        # IPv6 forwarding is per namespace, not per input device: the agent's decapsulated
        # packets come in on its TUN device and go on to the backend namespaces.
        sysctl_in "$ns" net.ipv6.conf.all.forwarding=1
        ip -n "$ns" -6 route add default via "$(link6 "$s")1"
    done
    while read -r h a; do
        bns=$(backend_ns "$h" "$a")
        hs=$(host_link "$h")
        ip -n "$(ns_of "$h")" addr add "fd00:$hs:$a::1/64" dev "b$a" nodad
        ip -n "$bns" addr add "fd00:$hs:$a::2/64" dev eth0 nodad
        ip -n "$bns" -6 route add default via "fd00:$hs:$a::1"
    done < <(all_backends)
    # The router forwards and hashes IPv6 ECMP on the 5-tuple too. The client's
    # net.core.txrehash=0 (set by up) is per socket, whatever the family: a retransmitted
    # IPv6 segment keeps its socket hash, and so its auto flow label and its path (docs/lab.md).
    sysctl_in "$NS_ROUTER" net.ipv6.conf.all.forwarding=1
    sysctl_in "$NS_ROUTER" net.ipv6.fib_multipath_hash_policy=1
}

# ipv6_mux_config MUX: the rendered mux.toml gets [tunnel] source_v6 and the two IPv6 VIPs.
ipv6_mux_config() {
    local m=$1 file s b
    file=$STATE/$m/mux.toml
    s=$(mux_link "$m")
    sed -i "s|^source_v4 = \"10.0.$s.2\"\$|&\nsource_v6 = \"$(link6 "$s")2\"|" "$file"
    grep -q '^source_v6 = ' "$file" || die "$file: no [tunnel] source_v4 line to put source_v6 after"
    {
        printf '\n# IPv6 (scripts/lab.d/ipv6.sh): real HTTP over IPv6 through the host agents, with IPv6\n'
        printf '# outer headers to their IPv6 DIPs (web6) and with IPv4 outer headers (web6-v4).\n'
        printf '[[vip]]\nname = "web6"\naddress = "%s"\nport = 80\nprotocol = "tcp"\n' "$VIP6"
        for b in 21::2 21::3 22::2 22::3; do printf '\n  [[vip.backend]]\n  address = "fd00:%s"\n' "$b"; done
        printf '\n[[vip]]\nname = "web6-v4"\naddress = "%s"\nport = 80\nprotocol = "tcp"\n' "$VIP6_V4"
        for b in 21.2 21.3 22.2 22.3; do printf '\n  [[vip.backend]]\n  address = "10.0.%s"\n' "$b"; done
    } >>"$file"
}

# ipv6_agent_config HOST: the rendered hostagent.toml accepts the MUXes' IPv6 tunnel sources,
# forwards second-chance packets over IPv6 too, and serves the IPv6 VIPs.
ipv6_agent_config() {
    local h=$1 file s m a sources=""
    file=$STATE/$h/hostagent.toml
    s=$(host_link "$h")
    for m in "${MUXES[@]}"; do sources+=", \"$(link6 "$(mux_link "$m")")2\""; done
    sed -i -e "s|^\(mux_sources = \[.*\)\]\$|\1$sources]|" \
        -e "s|^source_v4 = \"10.0.$s.2\"\$|&\nsource_v6 = \"$(link6 "$s")2\"|" "$file"
    if ! grep -q '^source_v6 = ' "$file" || ! grep -q "^mux_sources = .*fd00:" "$file"; then
        die "$file: no mux_sources / source_v4 line to extend with IPv6"
    fi
    {
        printf '\n# IPv6 (scripts/lab.d/ipv6.sh): the other agents forward over IPv6 from these...\n'
        printf '[[tunnel.peer]]\naddress = "%s"\n\n[[tunnel.peer]]\naddress = "%s"\n' "$(link6 21)2" "$(link6 22)2"
        printf '\n# ...web6 through this host'"'"'s IPv6 DIPs, web6-v4 through its IPv4 DIPs; both to the\n'
        printf '# backend namespaces'"'"' IPv6 addresses (the backend gets the VIP'"'"'s family).\n'
        for a in "${DIP_SUFFIXES[@]}"; do
            printf '[[service]]\nvip = "%s"\nport = 80\nprotocol = "tcp"\ndip = "%s%s"\nbackend_address = "fd00:%s:%s::2"\nbackend_port = %s\n\n' \
                "$VIP6" "$(link6 "$s")" "$a" "$s" "$a" "$V6_PORT"
            printf '[[service]]\nvip = "%s"\nport = 80\nprotocol = "tcp"\ndip = "10.0.%s.%s"\nbackend_address = "fd00:%s:%s::2"\nbackend_port = %s\n\n' \
                "$VIP6_V4" "$s" "$a" "$s" "$a" "$V6_V4_PORT"
        done
    } >>"$file"
}

# The IPv6 HTTP servers of every backend namespace: one per IPv6 VIP, named by the DIP the
# MUXes tunnel to (web6: fd00:HS::A; web6-v4: 10.0.HS.A).
ipv6_start_backends() {
    local h a hs
    while read -r h a; do
        hs=$(host_link "$h")
        mkdir -p "$STATE/$h"
        start_in "backend6-$h-$a" "$(backend_ns "$h" "$a")" "$STATE/$h/backend6-$a.log" \
            "$BIN/perf" http-backend --listen "[$(backend6 "$h" "$a")]:$V6_PORT" --name "$(link6 "$hs")$a"
        start_in "backend6v4-$h-$a" "$(backend_ns "$h" "$a")" "$STATE/$h/backend6v4-$a.log" \
            "$BIN/perf" http-backend --listen "[$(backend6 "$h" "$a")]:$V6_V4_PORT" --name "10.0.$hs.$a"
    done < <(all_backends)
}

# ipv6_path_count VIP: next hops of the router's kernel route to an IPv6 VIP.
ipv6_path_count() {
    local out
    out=$(ip -n "$NS_ROUTER" -6 route show "$1/128" 2>/dev/null)
    if grep -q nexthop <<<"$out"; then
        grep -c nexthop <<<"$out"
    elif grep -q ' via ' <<<"$out"; then
        echo 1
    else
        echo 0
    fi
}
ipv6_has_paths() { [ "$(ipv6_path_count "$1")" = "$2" ]; }

# Run by up once the IPv4 VIP has its two paths: the router resolves the hosts' IPv6 DIPs (so
# the first tunnelled packets do not wait for neighbour discovery), then must have a 2-path
# route to each IPv6 VIP.
ipv6_wait_routes() {
    local h a v m
    for h in "${HOSTS[@]}"; do
        for a in "${DIP_SUFFIXES[@]}"; do
            ip netns exec "$NS_ROUTER" bash -c "echo > /dev/udp/$(link6 "$(host_link "$h")")$a/9" 2>/dev/null || true
        done
    done
    for v in "$VIP6" "$VIP6_V4"; do
        if ! wait_for 20 "2 paths" ipv6_has_paths "$v" 2; then
            log "router's route to $v: $(ip -n "$NS_ROUTER" -6 route show "$v/128" | tr '\n' ' ')"
            birdc -s "$STATE/router/bird.ctl" show route "$v/128" all 2>&1 | sed 's/^/    /' >&2 || true
            for m in "${MUXES[@]}"; do
                log "$m announces: $(grep route "$STATE/$m/vips.conf" 2>/dev/null | tr -s ' ' | tr '\n' ' ')"
            done
            die "the router has no 2-nexthop route to $v after 20 s (the BGP sessions' ipv6 channels)"
        fi
    done
    log "== IPv6: $VIP6 and $VIP6_V4 via mux1 and mux2"
}

# MUX_LAB_IO=dpdk: the MUX's IPv6 address moves with its IPv4 one (dpdk_take_address,
# dpdk_return_address), so the router's neighbour discovery reaches it through the TAP.
ipv6_dpdk_take() {
    local m=$1 s
    s=$(mux_link "$m")
    ip -n "$(ns_of "$m")" addr add "$(link6 "$s")2/64" dev "$DPDK_TAP" nodad
    ipv6_dpdk_default "$m" "$DPDK_TAP"
}
ipv6_dpdk_default() {
    local m=$1 s
    s=$(mux_link "$m")
    ip -n "$(ns_of "$m")" -6 route replace default via "$(link6 "$s")1" dev "$2"
}
ipv6_dpdk_return() {
    local m=$1 s
    s=$(mux_link "$m")
    ip -n "$(ns_of "$m")" addr replace "$(link6 "$s")2/64" dev eth0 nodad
    ipv6_dpdk_default "$m" eth0
}

ipv6_print_routes() {
    local v
    for v in "$VIP6" "$VIP6_V4"; do
        birdc -s "$STATE/router/bird.ctl" show route "$v/128" 2>/dev/null | sed -n '2,$p' | sed 's/^/  bird: /'
        ip -n "$NS_ROUTER" -6 route show "$v/128" | sed 's/^/  kernel: /'
    done
}

# DSR counters for an IPv6 VIP, as dsr_on/dsr_off count them for the IPv4 one: packets from
# the VIP by the interface they leave the router on, requests to it by MUX link.
ipv6_dsr_on() {
    local vip=$1
    ip netns exec "$NS_ROUTER" nft -f - <<NFT
table ip6 mux_lab_dsr6 {
    chain forward_count {
        type filter hook forward priority 0; policy accept;
        ip6 saddr $vip oifname "mux1" counter comment "replies_via_mux1"
        ip6 saddr $vip oifname "mux2" counter comment "replies_via_mux2"
        ip6 saddr $vip oifname "client" counter comment "replies_via_client"
        ip6 daddr $vip tcp dport 80 oifname "mux1" counter comment "requests_via_mux1"
        ip6 daddr $vip tcp dport 80 oifname "mux2" counter comment "requests_via_mux2"
    }
}
NFT
}
ipv6_dsr_off() {
    ip netns exec "$NS_ROUTER" nft -j list table ip6 mux_lab_dsr6 |
        jq '[.nftables[] | select(.rule) | .rule | {(.comment): (.expr[] | select(.counter) | .counter.packets)}] | add' >"$1"
    ip netns exec "$NS_ROUTER" nft delete table ip6 mux_lab_dsr6
}

# ipv6_retransmit_paths DIR VIP: does a retransmitting IPv6 client keep its ECMP path? For a
# moment the router drops the SYN-ACKs toward the client, and RETRANSMIT_CONNECTIONS new
# connections to [VIP]:80 each send their SYN again (about every second, for 2.5 s); an nft
# set per MUX link records each SYN's client port and flow label. retransmits.json says how
# many SYNs went toward each MUX and how many connections changed MUX or label: perf
# http-summary requires at least two SYNs per connection and no change (the client's
# net.core.txrehash=0 keeps the socket hash, which both the router's L4 hash and the auto flow
# label come from; docs/lab.md).
RETRANSMIT_CONNECTIONS=12
ipv6_retransmit_paths() {
    local dir=$1 vip=$2 i pids=()
    ip netns exec "$NS_ROUTER" nft -f - <<NFT
table ip6 mux_lab_syn6 {
    set via_mux1 { typeof tcp sport . ip6 flowlabel; flags dynamic; size 4096; }
    set via_mux2 { typeof tcp sport . ip6 flowlabel; flags dynamic; size 4096; }
    chain forward_syn {
        type filter hook forward priority -10; policy accept;
        ip6 daddr $vip tcp dport 80 tcp flags & (syn|ack) == syn oifname "mux1" counter add @via_mux1 { tcp sport . ip6 flowlabel } comment "syns_mux1"
        ip6 daddr $vip tcp dport 80 tcp flags & (syn|ack) == syn oifname "mux2" counter add @via_mux2 { tcp sport . ip6 flowlabel } comment "syns_mux2"
        ip6 saddr $vip tcp sport 80 tcp flags & (syn|ack) == (syn|ack) oifname "client" counter drop
    }
}
NFT
    for i in $(seq "$RETRANSMIT_CONNECTIONS"); do
        ip netns exec "$NS_CLIENT" curl -s -o /dev/null --connect-timeout 2.5 "http://[$vip]/" &
        pids+=($!)
    done
    # curl fails (no answer): that is the point.
    for i in "${pids[@]}"; do wait "$i" || true; done
    ip netns exec "$NS_ROUTER" nft -j list table ip6 mux_lab_syn6 |
        jq --arg vip "$vip" --argjson n "$RETRANSMIT_CONNECTIONS" '
            [.nftables[] | select(.set) | .set | .name[4:] as $m | .elem[]?.concat | {port: .[0], label: .[1], mux: $m}] as $syn
            | ($syn | group_by(.port)) as $by
            | {vip: $vip, connections: $n,
               syns: ([.nftables[] | select(.rule) | .rule | select((.comment // "") | startswith("syns_"))
                       | {(.comment[5:]): (.expr[] | select(.counter) | .counter.packets)}] | add),
               changed_mux: [$by[] | select([.[].mux] | unique | length > 1)] | length,
               changed_label: [$by[] | select([.[].label] | unique | length > 1)] | length}' >"$dir/retransmits.json"
    ip netns exec "$NS_ROUTER" nft delete table ip6 mux_lab_syn6
    # The backends still hold those connections half-open and resend their SYN-ACKs (after
    # 1, 3, 7 s...); the client, whose curl gave up, answers each with a reset through a MUX.
    # Wait for them to end here: a reset arriving later lands in the next round's sinks as
    # an encapsulated packet to a VIP they do not expect (`not_a_vip`, one per connection).
    wait_for 30 "no half-open connection on a backend" ipv6_no_half_open ||
        log "   (some backends still hold half-open connections from the retransmit check)"
}

# True when no backend namespace has a connection in SYN-RECV.
ipv6_no_half_open() {
    local h a
    while read -r h a; do
        [ -z "$(ip netns exec "$(backend_ns "$h" "$a")" ss -Htn state syn-recv 2>/dev/null)" ] || return 1
    done < <(all_backends)
}

# ipv6_http_round NAME VIP SPEC_JSON LOAD_ARGS...: http_round's IPv6 twin, from the client's
# fd00:1::2 to [VIP]:80; the same reports, so perf http-summary checks it the same way.
ipv6_http_round() {
    local name=$1 vip=$2 spec=$3 m h dir
    shift 3
    ROUND_N=$((ROUND_N + 1))
    dir=$RESULTS/$(printf '%02d' $ROUND_N)-$name
    mkdir -p "$dir"
    echo "$spec" >"$dir/http-round.json"
    # Before the round's counters: the half-open connections it leaves are gone by the load.
    if [ "$name" = http6 ]; then ipv6_retransmit_paths "$dir" "$vip"; fi
    for m in "${MUXES[@]}"; do status_to "$m" "$dir/status-$m-before.json"; done
    for h in "${HOSTS[@]}"; do agent_status_to "$h" "$dir/agent-$h-before.json"; done
    ipv6_dsr_on "$vip"
    ip netns exec "$NS_CLIENT" "$BIN/perf" http-load --target "[$vip]:80" --expect-client "$CLIENT6" \
        --report "$dir/http-load.json" "$@" >"$dir/http-load.txt" 2>"$dir/http-load.log" ||
        die "perf http-load failed: $(tail -n 3 "$dir/http-load.log")"
    ipv6_dsr_off "$dir/dsr.json"
    # As in http_round: the MUXes and agents publish their counters every 100 ms.
    sleep 0.3
    for m in "${MUXES[@]}"; do status_to "$m" "$dir/status-$m-after.json"; done
    for h in "${HOSTS[@]}"; do agent_status_to "$h" "$dir/agent-$h-after.json"; done
    log "   $name: $(grep -m1 -i 'responses' "$dir/http-load.txt" || true)"
}

ipv6_http_rounds() {
    log "== real HTTP over IPv6 through [$VIP6]:80 (IPv6 outer) and [$VIP6_V4]:80 (IPv4 outer), from $CLIENT6"
    ipv6_http_round http6 "$VIP6" '{"name": "http6", "title": "IPv6 VIP [2001:db8::10]:80, IPv6 outer headers to the IPv6 DIPs: 50 keep-alive connections x 10 requests, then 300 new connections", "expect_backends": 4, "strict": true}' \
        --connections 50 --requests-per-connection 10 --new-connections 300 --concurrency 16
    ipv6_http_round http6-v4 "$VIP6_V4" '{"name": "http6-v4", "title": "IPv6 VIP [2001:db8::11]:80, IPv4 outer headers to the IPv4 DIPs: 50 keep-alive connections x 10 requests, then 300 new connections", "expect_backends": 4, "strict": true}' \
        --connections 50 --requests-per-connection 10 --new-connections 300 --concurrency 16
}
