# shellcheck shell=bash
# The summary of one run of perf/pktgen/run, from the files it keeps in its results directory:
#   run.conf                 the profile as run (key = value, after command-line overrides)
#   gen.out                  the generator's last line: result sent=N seconds=S errors=E
#   before-NODE.prom, after-NODE.prom   /metrics of mux1, mux2 (127.0.0.1:9100 on the MUX)
#                            and host1, host2 (the agent's :9200)
#   before-router.txt, after-router.txt  the router's lab links: ADDR IFACE rx tx rx_drop tx_drop
# Sourced by perf/pktgen/run; `run --report DIR` re-reads a kept directory.
#
# Metric names are the daemons' own (mux/src/control/metrics.rs,
# hostagent/src/control/metrics.rs):
#   mux_rx_packets_total, mux_packets_total{outcome="forwarded"|"to_kernel"|...} (one outcome
#   per received frame), mux_dropped_packets_total{reason},
#   mux_port_dropped_packets_total{worker,direction="rx"|"tx"}, mux_ready, and with io = "dpdk"
#   mux_nic_dropped_packets_total{reason="imissed"|"ierrors"|"rx_nombuf"|"oerrors"};
#   hostagent_inbound_packets_total, hostagent_delivered_packets_total,
#   hostagent_dropped_packets_total{reason}.

REPORT_MUXES=(mux1 mux2)
REPORT_HOSTS=(host1 host2)

# metric FILE NAME [LABEL...]: the sum of NAME's series whose labels contain every LABEL
# (e.g. 'outcome="forwarded"'); nothing when the file or the metric is missing.
metric() {
    local file=$1 name=$2
    shift 2
    [ -s "$file" ] || return 0
    awk -v name="$name" -v filters="$*" '
        /^#/ || NF < 2 { next }
        {
            series = $0; sub(/[ \t]+[^ \t]+$/, "", series)
            base = series; sub(/\{.*/, "", base)
            if (base != name) next
            n = split(filters, f, " ")
            for (i = 1; i <= n; i++) if (index(series, f[i]) == 0) next
            sum += $NF; found = 1
        }
        END { if (found) printf "%.0f\n", sum }' "$file"
}

# delta NODE NAME [LABEL...]: after minus before over the run; nothing when either is missing.
delta() {
    local node=$1
    shift
    local a b
    b=$(metric "$RESULTS/before-$node.prom" "$@")
    a=$(metric "$RESULTS/after-$node.prom" "$@")
    [ -n "$a" ] && [ -n "$b" ] && echo $((a - b))
    return 0
}

# link_delta ADDR COLUMN: a router link counter over the run (COLUMN 3 rx, 4 tx, 5 rx_drop,
# 6 tx_drop of the link whose router address is ADDR).
link_delta() {
    local addr=$1 col=$2 a b
    b=$(awk -v a="$addr" -v c="$col" '$1 == a { print $c }' "$RESULTS/before-router.txt" 2>/dev/null)
    a=$(awk -v a="$addr" -v c="$col" '$1 == a { print $c }' "$RESULTS/after-router.txt" 2>/dev/null)
    [ -n "$a" ] && [ -n "$b" ] && echo $((a - b))
    return 0
}

# sum VALUE...: the sum, or nothing when any value is missing (an unknown part makes the
# total unknown rather than small).
sum() {
    local total=0 v
    for v in "$@"; do
        [ -n "$v" ] || return 0
        total=$((total + v))
    done
    echo "$total"
}

# rate COUNT: per second of sending; "-" when unknown.
rate() { [ -n "$1" ] && awk -v n="$1" -v s="$GEN_SECONDS" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }' || echo -; }
pct() { [ -n "$1" ] && [ -n "$2" ] && [ "$2" != 0 ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", 100 * a / b }' || echo -; }
or_dash() { echo "${1:--}"; }
json_num() { echo "${1:-null}"; }
# json_pct VALUE: pct's output as JSON ("-", unknown, becomes null).
json_pct() { [ "$1" = - ] && echo null || echo "$1"; }

# gen_result KEY: a field of the generator's result line.
gen_result() { sed -n "s/^result .*\b$1=\([^ ]*\).*/\1/p" "$RESULTS/gen.out" | tail -n 1; }

# report: prints the table and writes summary.json; the exit status says whether the
# profile's max_loss_pct (if any) held.
report() {
    [ -s "$RESULTS/gen.out" ] || profile_die "$RESULTS has no gen.out: the generator did not finish"
    GEN_SENT=$(gen_result sent)
    GEN_SECONDS=$(gen_result seconds)
    local gen_errors
    gen_errors=$(gen_result errors)
    [[ -n $GEN_SENT && -n $GEN_SECONDS ]] || profile_die "$RESULTS/gen.out has no 'result sent=N seconds=S' line"

    local m h
    declare -A rx fwd kern drops port_rx port_tx nic_drops nic_missed
    declare -A inbound delivered agent_drops unknown_svc
    for m in "${REPORT_MUXES[@]}"; do
        rx[$m]=$(delta "$m" mux_rx_packets_total)
        fwd[$m]=$(delta "$m" mux_packets_total 'outcome="forwarded"')
        kern[$m]=$(delta "$m" mux_packets_total 'outcome="to_kernel"')
        drops[$m]=$(delta "$m" mux_dropped_packets_total)
        port_rx[$m]=$(delta "$m" mux_port_dropped_packets_total 'direction="rx"')
        port_tx[$m]=$(delta "$m" mux_port_dropped_packets_total 'direction="tx"')
        # Only DPDK ports read the NIC's own counters; other MUXes have no such series.
        nic_drops[$m]=$(delta "$m" mux_nic_dropped_packets_total)
        nic_missed[$m]=$(delta "$m" mux_nic_dropped_packets_total 'reason="imissed"')
    done
    for h in "${REPORT_HOSTS[@]}"; do
        inbound[$h]=$(delta "$h" hostagent_inbound_packets_total)
        delivered[$h]=$(delta "$h" hostagent_delivered_packets_total)
        agent_drops[$h]=$(delta "$h" hostagent_dropped_packets_total)
        unknown_svc[$h]=$(delta "$h" hostagent_dropped_packets_total 'reason="unknown_service"')
    done
    local mux_rx_total mux_fwd_total received router_in to_muxes to_hosts lost loss_pct
    mux_rx_total=$(sum "${rx[@]}")
    mux_fwd_total=$(sum "${fwd[@]}")
    received=$(sum "${inbound[@]}")
    router_in=$(link_delta 10.0.1.1 3)
    to_muxes=$(sum "$(link_delta 10.0.11.1 4)" "$(link_delta 10.0.12.1 4)")
    to_hosts=$(sum "$(link_delta 10.0.21.1 4)" "$(link_delta 10.0.22.1 4)")
    lost=""
    [ -n "$received" ] && lost=$((GEN_SENT - received))
    loss_pct=$(pct "$lost" "$GEN_SENT")

    local what="${PROFILE[frame_size]}-byte ${PROFILE[protocol]} frames to ${PROFILE[vip]}:${PROFILE[port]}"
    local pace="flat out"
    [ "${PROFILE[rate_pps]}" = 0 ] || pace="at ${PROFILE[rate_pps]} pps"
    printf '\nperf/pktgen · %s — %s\n' "$PROFILE_NAME" "${PROFILE[description]}"
    printf '  %s, %s, from %s · generator %s (%s thread%s) · %.2f s sending\n' "$what" "$pace" \
        "${PROFILE[src_net]}" "${PROFILE[generator]}" "${PROFILE[threads]}" \
        "$([ "${PROFILE[threads]}" = 1 ] || echo s)" "$GEN_SECONDS"
    printf '  results in %s\n\n' "$RESULTS"
    local row='  %-22s %12s %12s %9s  %s\n'
    # shellcheck disable=SC2059 # the format is the row layout above
    {
        printf "$row" "" packets pps share ""
        printf "$row" "sent (client)" "$GEN_SENT" "$(rate "$GEN_SENT")" "" "${gen_errors:+send errors $gen_errors}"
        printf "$row" "router in" "$(or_dash "$router_in")" "$(rate "$router_in")" "" ""
        printf "$row" "router to MUXes" "$(or_dash "$to_muxes")" "$(rate "$to_muxes")" "" ""
        for m in "${REPORT_MUXES[@]}"; do
            local share="-"
            [ -n "${rx[$m]}" ] && share="$(pct "${rx[$m]}" "$mux_rx_total") %"
            printf "$row" "  $m rx" "$(or_dash "${rx[$m]}")" "$(rate "${rx[$m]}")" "$share" \
                "forwarded $(or_dash "${fwd[$m]}")  to kernel $(or_dash "${kern[$m]}")  dropped $(or_dash "${drops[$m]}")  port drops rx $(or_dash "${port_rx[$m]}") tx $(or_dash "${port_tx[$m]}")${nic_drops[$m]:+  NIC drops ${nic_drops[$m]} (imissed ${nic_missed[$m]:-0})}"
        done
        printf "$row" "MUXes forwarded" "$(or_dash "$mux_fwd_total")" "$(rate "$mux_fwd_total")" "" ""
        printf "$row" "router to hosts" "$(or_dash "$to_hosts")" "$(rate "$to_hosts")" "" ""
        printf "$row" "received (agents)" "$(or_dash "$received")" "$(rate "$received")" "" ""
        for h in "${REPORT_HOSTS[@]}"; do
            local share="-"
            [ -n "${inbound[$h]}" ] && share="$(pct "${inbound[$h]}" "$received") %"
            printf "$row" "  $h inbound" "$(or_dash "${inbound[$h]}")" "$(rate "${inbound[$h]}")" "$share" \
                "delivered $(or_dash "${delivered[$h]}")  dropped $(or_dash "${agent_drops[$h]}") (unknown_service $(or_dash "${unknown_svc[$h]}"))"
        done
        printf "$row" "lost" "$(or_dash "$lost")" "" "$loss_pct %" "sent - received"
    }
    local missing=()
    for m in "${REPORT_MUXES[@]}" "${REPORT_HOSTS[@]}"; do
        [ -s "$RESULTS/before-$m.prom" ] && [ -s "$RESULTS/after-$m.prom" ] || missing+=("$m")
    done
    [ ${#missing[@]} -eq 0 ] || printf '\n  no metrics from %s: their rows show "-"\n' "${missing[*]}"

    write_summary_json
    local rc=0
    if [ -n "${PROFILE[max_loss_pct]}" ]; then
        if [ "$loss_pct" = - ]; then
            printf '\n  [FAIL] loss unknown (no agent metrics); the profile allows %s %%\n' "${PROFILE[max_loss_pct]}"
            rc=1
        elif awk -v l="$loss_pct" -v m="${PROFILE[max_loss_pct]}" 'BEGIN { exit !(l > m) }'; then
            printf '\n  [FAIL] lost %s %%, more than the profile allows (%s %%)\n' "$loss_pct" "${PROFILE[max_loss_pct]}"
            rc=1
        else
            printf '\n  [ ok ] lost %s %%, within the profile'"'"'s %s %%\n' "$loss_pct" "${PROFILE[max_loss_pct]}"
        fi
    fi
    return $rc
}

# summary.json: the same numbers (counts over the run, rates per second of sending; null
# where a node gave no metrics).
write_summary_json() {
    local m h first=1
    {
        printf '{\n  "profile": "%s",\n  "generator": "%s",\n  "protocol": "%s",\n' \
            "$PROFILE_NAME" "${PROFILE[generator]}" "${PROFILE[protocol]}"
        printf '  "destination": "%s:%s",\n  "frame_size": %s,\n  "rate_requested_pps": %s,\n  "threads": %s,\n' \
            "${PROFILE[vip]}" "${PROFILE[port]}" "${PROFILE[frame_size]}" "${PROFILE[rate_pps]}" "${PROFILE[threads]}"
        printf '  "seconds": %s,\n  "sent": %s,\n  "sent_pps": %s,\n' "$GEN_SECONDS" "$GEN_SENT" "$(rate "$GEN_SENT")"
        printf '  "router_in": %s,\n  "router_to_muxes": %s,\n  "router_to_hosts": %s,\n' \
            "$(json_num "$router_in")" "$(json_num "$to_muxes")" "$(json_num "$to_hosts")"
        printf '  "received": %s,\n  "received_pps": %s,\n  "lost": %s,\n  "loss_pct": %s,\n' \
            "$(json_num "$received")" "$(json_num "$([ -n "$received" ] && rate "$received")")" \
            "$(json_num "$lost")" "$(json_pct "$loss_pct")"
        printf '  "muxes": {'
        for m in "${REPORT_MUXES[@]}"; do
            [ $first = 1 ] || printf ','
            first=0
            printf '\n    "%s": {"rx": %s, "forwarded": %s, "to_kernel": %s, "dropped": %s, "port_rx_dropped": %s, "port_tx_dropped": %s, "nic_dropped": %s, "nic_imissed": %s, "share_pct": %s}' \
                "$m" "$(json_num "${rx[$m]}")" "$(json_num "${fwd[$m]}")" "$(json_num "${kern[$m]}")" \
                "$(json_num "${drops[$m]}")" "$(json_num "${port_rx[$m]}")" "$(json_num "${port_tx[$m]}")" \
                "$(json_num "${nic_drops[$m]}")" "$(json_num "${nic_missed[$m]}")" \
                "$(json_pct "$(pct "${rx[$m]}" "$mux_rx_total")")"
        done
        printf '\n  },\n  "agents": {'
        first=1
        for h in "${REPORT_HOSTS[@]}"; do
            [ $first = 1 ] || printf ','
            first=0
            printf '\n    "%s": {"inbound": %s, "delivered": %s, "dropped": %s, "unknown_service": %s, "share_pct": %s}' \
                "$h" "$(json_num "${inbound[$h]}")" "$(json_num "${delivered[$h]}")" \
                "$(json_num "${agent_drops[$h]}")" "$(json_num "${unknown_svc[$h]}")" \
                "$(json_pct "$(pct "${inbound[$h]}" "$received")")"
        done
        printf '\n  },\n  "max_loss_pct": %s\n}\n' "$(json_num "${PROFILE[max_loss_pct]}")"
    } >"$RESULTS/summary.json"
    [ -z "${JSON_OUT:-}" ] || cp "$RESULTS/summary.json" "$JSON_OUT"
}
