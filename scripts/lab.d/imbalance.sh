# shellcheck shell=bash
# The imbalance round (scripts/lab imbalance; docs/lab.md), sourced by scripts/lab: on a lab
# that is up, a few heavy downloads whose flows static Maglev sends to one backend plus many
# light connections, once through a static VIP and once through a VIP with [vip.load_aware];
# the agents' per-backend load, max/avg side by side, the MUXes' weights, and Prometheus (run
# for this round only, in the router namespace, with deploy/prometheus/rules.yml) asked for
# its recording rules' figures. The lab's configs are put back at the end.

# Two VIPs on the lab's address: the phases do not share a VIP, so the load-aware one starts
# from factors 1 and Prometheus keeps one series per phase (its rules group by port).
IMB_PORT_STATIC=8000
IMB_PORT_AWARE=8001
# The backend ports behind them (one more perf http-backend per backend namespace each: the
# agent tells services apart by backend address and port).
IMB_BACKEND_STATIC=8082
IMB_BACKEND_AWARE=8083
IMB_HEAVY_BACKEND=10.0.21.2
IMB_MEASURE=${MUX_LAB_IMBALANCE_SECONDS:-60}
IMB_WARMUP=${MUX_LAB_IMBALANCE_WARMUP:-20}
IMB_HEAVY=${MUX_LAB_IMBALANCE_HEAVY:-8}
IMB_LIGHT=${MUX_LAB_IMBALANCE_LIGHT:-40}
IMB_INTERVAL=${MUX_LAB_IMBALANCE_INTERVAL:-2}
IMB_PROM=127.0.0.1:9090
# Prometheus's figures at the end of each phase (the shipped recording rules).
IMB_RULES="hostagent:vip_bytes:max_over_avg hostagent:vip_bytes_in:max_over_avg hostagent:vip_active_connections:max_over_avg"

imb_mux_vips() {
    # The round's two VIPs over the four backends, appended to a MUX's config.
    local name port b
    for v in "imb-static $IMB_PORT_STATIC" "imb-aware $IMB_PORT_AWARE"; do
        read -r name port <<<"$v"
        printf '\n# The imbalance round (scripts/lab.d/imbalance.sh).\n[[vip]]\nname = "%s"\naddress = "%s"\nport = %s\nprotocol = "tcp"\n' \
            "$name" "$VIP" "$port"
        if [ "$name" = imb-aware ]; then
            printf '\n  [vip.load_aware]\n  signal = "bytes"\n  interval_seconds = %s\n' "$IMB_INTERVAL"
        fi
        for b in 10.0.21.2 10.0.21.3 10.0.22.2 10.0.22.3; do
            printf '\n  [[vip.backend]]\n  address = "%s"\n' "$b"
        done
    done
}

imb_agent_services() {
    # The round's services on host H (each DIP's 8000 and 8001), appended to its agent's config.
    local h=$1 s a port backend
    s=$(host_link "$h")
    printf '\n# The imbalance round (scripts/lab.d/imbalance.sh).\n'
    for a in "${DIP_SUFFIXES[@]}"; do
        for v in "$IMB_PORT_STATIC $IMB_BACKEND_STATIC" "$IMB_PORT_AWARE $IMB_BACKEND_AWARE"; do
            read -r port backend <<<"$v"
            printf '[[service]]\nvip = "%s"\nport = %s\nprotocol = "tcp"\ndip = "10.0.%s.%s"\nbackend_address = "10.%s.%s.2"\nbackend_port = %s\n\n' \
                "$VIP" "$port" "$s" "$a" "$s" "$a" "$backend"
        done
    done
}

imb_prometheus_config() {
    local m h
    cat <<EOF
# The imbalance round's Prometheus (scripts/lab.d/imbalance.sh), in $NS_ROUTER.
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $ROOT/deploy/prometheus/rules.yml
scrape_configs:
  - job_name: mux
    static_configs:
EOF
    for m in "${MUXES[@]}"; do
        printf '      - targets: ["10.0.%s.2:9100"]\n        labels: {instance: "%s"}\n' "$(mux_link "$m")" "$m"
    done
    printf '  - job_name: hostagent\n    static_configs:\n'
    for h in "${HOSTS[@]}"; do
        printf '      - targets: ["10.0.%s.2:9200"]\n        labels: {instance: "%s"}\n' "$(host_link "$h")" "$h"
    done
}

# prom_get PATH [curl args]: Prometheus's HTTP API, from the router namespace.
prom_get() {
    local path=$1
    shift
    ip netns exec "$NS_ROUTER" curl -sf -m 5 "$@" "http://$IMB_PROM$path"
}

imb_prometheus_targets_up() {
    [ "$(prom_get /api/v1/query --get --data-urlencode 'query=count(up == 1)' | jq -r '.data.result[0].value[1] // 0')" = \
        $((${#MUXES[@]} + ${#HOSTS[@]})) ]
}

imb_prometheus_start() {
    local dir=$STATE/prometheus
    mkdir -p "$dir/data"
    imb_prometheus_config >"$dir/prometheus.yml"
    promtool check config "$dir/prometheus.yml" >/dev/null 2>&1 ||
        die "promtool refuses $dir/prometheus.yml: $(promtool check config "$dir/prometheus.yml" 2>&1 | tail -n 3)"
    start_in prometheus "$NS_ROUTER" "$dir/prometheus.log" \
        prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --storage.tsdb.retention.time=1h --web.listen-address="$IMB_PROM"
    wait_for 30 "prometheus ready" prom_get /-/ready ||
        die "Prometheus is not ready after 30 s: $(tail -n 5 "$dir/prometheus.log")"
    wait_for 30 "targets up" imb_prometheus_targets_up ||
        die "Prometheus does not scrape every MUX and agent after 30 s: $(prom_get /api/v1/targets | jq -c '[.data.activeTargets[] | {instance: .labels.instance, health, lastError}]')"
}

imb_stop() {
    # imb_stop NAME: stops a process the round started (its recorded PID).
    local pid
    pid=$(pid_of "$1")
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 10 "$1 exit" bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/pids/$1.pid"
}

# Puts the lab's configs back, reloads, stops what the round started. Runs on any exit.
imb_cleanup() {
    local m h a
    imb_stop prometheus
    rm -rf "$STATE/prometheus"
    for m in "${MUXES[@]}"; do
        if [ -f "$STATE/$m/mux.toml.pre-imbalance" ]; then
            mv "$STATE/$m/mux.toml.pre-imbalance" "$STATE/$m/mux.toml"
            alive "$m" && kill -HUP "$(pid_of "$m")"
        fi
    done
    for h in "${HOSTS[@]}"; do
        if [ -f "$STATE/$h/hostagent.toml.pre-imbalance" ]; then
            mv "$STATE/$h/hostagent.toml.pre-imbalance" "$STATE/$h/hostagent.toml"
            alive "agent-$h" && kill -HUP "$(pid_of "agent-$h")"
        fi
        for a in "${DIP_SUFFIXES[@]}"; do
            imb_stop "imb-backend-$h-$a-$IMB_BACKEND_STATIC"
            imb_stop "imb-backend-$h-$a-$IMB_BACKEND_AWARE"
        done
    done
}

imb_vips_ready() {
    # Every MUX serves both VIPs with their four backends healthy.
    local m
    for m in "${MUXES[@]}"; do
        [ "$(ip netns exec "$(ns_of "$m")" curl -sf -m 1 http://127.0.0.1:9100/v1/status |
            jq '[.health.backends[]? | select((.vip == "imb-static" or .vip == "imb-aware") and .applied == "ok")] | length')" = 8 ] ||
            return 1
    done
}

imb_setup() {
    local m h a port
    for h in "${HOSTS[@]}"; do
        for a in "${DIP_SUFFIXES[@]}"; do
            for port in $IMB_BACKEND_STATIC $IMB_BACKEND_AWARE; do
                start_in "imb-backend-$h-$a-$port" "$(backend_ns "$h" "$a")" "$STATE/$h/imb-backend-$a-$port.log" \
                    "$BIN/perf" http-backend --listen "$(backend_addr "$h" "$a"):$port" --name "10.0.$(host_link "$h").$a"
            done
        done
        cp "$STATE/$h/hostagent.toml" "$STATE/$h/hostagent.toml.pre-imbalance"
        imb_agent_services "$h" >>"$STATE/$h/hostagent.toml"
        "$BIN/hostagent" check-config "$STATE/$h/hostagent.toml" >/dev/null ||
            die "$STATE/$h/hostagent.toml is refused: $("$BIN/hostagent" check-config "$STATE/$h/hostagent.toml" 2>&1)"
        kill -HUP "$(pid_of "agent-$h")"
    done
    for m in "${MUXES[@]}"; do
        cp "$STATE/$m/mux.toml" "$STATE/$m/mux.toml.pre-imbalance"
        imb_mux_vips >>"$STATE/$m/mux.toml"
        "$BIN/mux" check-config "$STATE/$m/mux.toml" >/dev/null ||
            die "$STATE/$m/mux.toml is refused: $("$BIN/mux" check-config "$STATE/$m/mux.toml" 2>&1)"
        kill -HUP "$(pid_of "$m")"
    done
    wait_for 20 "VIPs ready" imb_vips_ready ||
        die "the MUXes do not show imb-static and imb-aware with 4 healthy backends each after 20 s"
}

# imb_phase NAME PORT: one phase of load, then the MUXes' status and Prometheus's figures.
imb_phase() {
    local name=$1 port=$2 dir=$RESULTS/$1 m rule end
    mkdir -p "$dir"
    log "   $name: $IMB_HEAVY heavy downloads at once from ports static Maglev sends to $IMB_HEAVY_BACKEND, $IMB_LIGHT light connections/s, to $VIP:$port for $((IMB_WARMUP + IMB_MEASURE)) s"
    ip netns exec "$NS_CLIENT" "$BIN/perf" http-imbalance --phase "$name" --target "$VIP:$port" \
        --client 10.0.1.2 --config "$STATE/mux1/mux.toml" --heavy-backend "$IMB_HEAVY_BACKEND" \
        --heavy "$IMB_HEAVY" --light-per-second "$IMB_LIGHT" --duration-s $((IMB_WARMUP + IMB_MEASURE)) \
        --agent 10.0.21.2:9200 --agent 10.0.22.2:9200 --report "$dir/imbalance.json" \
        2>"$dir/http-imbalance.log" || die "perf http-imbalance failed: $(tail -n 3 "$dir/http-imbalance.log")"
    for m in "${MUXES[@]}"; do status_to "$m" "$dir/status-$m.json"; done
    # The rules as they were evaluated 2 s before the load stopped (rate over the last minute
    # of the phase); wait until Prometheus has evaluated past that moment.
    end=$(jq -r '.ended_unix_ms' "$dir/imbalance.json")
    sleep 5
    for rule in $IMB_RULES; do
        prom_get /api/v1/query --get --data-urlencode "query=$rule" \
            --data-urlencode "time=$(awk -v e="$end" 'BEGIN { printf "%.3f", e / 1000 - 2 }')" >"$dir/prom-$rule.json" ||
            log "   Prometheus did not answer $rule"
    done
}

imbalance_only() {
    begin_results
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        die "the imbalance round needs Prometheus: apt-get install -y --no-install-recommends prometheus (lab/packages.txt)"
    fi
    local m
    for m in "${MUXES[@]}"; do alive "$m" || die "$m is not running: scripts/lab up"; done
    trap imb_cleanup EXIT
    log "== imbalance round: VIPs $VIP:$IMB_PORT_STATIC (static) and :$IMB_PORT_AWARE ([vip.load_aware] signal = \"bytes\", interval ${IMB_INTERVAL} s) added by SIGHUP; Prometheus in $NS_ROUTER"
    imb_setup
    imb_prometheus_start
    imb_phase static "$IMB_PORT_STATIC"
    imb_phase load-aware "$IMB_PORT_AWARE"
    imb_cleanup
    trap - EXIT
    echo
    local rc=0
    "$BIN/perf" imbalance-summary "$RESULTS" --measure-s "$IMB_MEASURE" --check \
        --json "$RESULTS/imbalance-summary.json" >"$RESULTS/imbalance-summary.txt" || rc=$?
    cat "$RESULTS/imbalance-summary.txt"
    echo
    echo "Reports: $RESULTS"
    return $rc
}
