#!/usr/bin/env bash
# A host VM of the mux VM lab (host1, host2): two DIPs on the lab NIC (10.0.S.2 and 10.0.S.3,
# set by mux-lab-links), one backend namespace behind each running an unmodified HTTP server
# (perf http-backend), and the host agent with the namespace lab's config
# (lab/hostagent.toml.in, rendered with scripts/lab's placeholders), under systemd as
# docs/hostagent-deploy.md describes.
#   host.sh NAME      (common.sh ran first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=${1:?usage: host.sh NAME}
need_root
S=$(link_of "$NAME")

# Forwarding: the backends sit behind the host. No ICMP rate limit, as in the namespace lab
# (the synthetic traffic makes the agent's host answer many errors).
write_sysctl host net.ipv4.ip_forward=1 net.ipv4.icmp_msgs_per_sec=0

log "$NAME: backend namespaces for DIPs ${DIP_SUFFIXES[*]/#/10.0.$S.}"
install_file "$LAB_SRC/vagrant/provision/bin/mux-lab-backends" "$LAB_LIBEXEC/mux-lab-backends" 0755
write_unit mux-lab-backends.service <<UNIT
[Unit]
Description=mux VM lab: backend namespaces behind $NAME
After=mux-lab-links.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$LAB_LIBEXEC/mux-lab-backends $S ${DIP_SUFFIXES[*]}

[Install]
WantedBy=multi-user.target
UNIT
restart_unit mux-lab-backends.service

for a in "${DIP_SUFFIXES[@]}"; do
    # touch $LAB_STATE/fail-$a: the backend answers /healthz with 503 (a failover by hand).
    write_unit "mux-lab-backend-$a.service" <<UNIT
[Unit]
Description=mux VM lab: HTTP backend of DIP 10.0.$S.$a (namespace mux-lab-b$a)
After=mux-lab-backends.service
Requires=mux-lab-backends.service

[Service]
ExecStart=/usr/bin/ip netns exec mux-lab-b$a /usr/local/bin/perf http-backend --listen 10.$S.$a.2:8080 --name 10.0.$S.$a --fail-file $LAB_STATE/fail-$a
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
UNIT
    restart_unit "mux-lab-backend-$a.service"
done

log "$NAME: host agent from lab/hostagent.toml.in"
"$(dirname "${BASH_SOURCE[0]}")/render-configs.sh" host "$NAME" "$LAB_ETC"
hostagent check-config "$LAB_ETC/hostagent.toml" >/dev/null || {
    hostagent check-config "$LAB_ETC/hostagent.toml" || true
    die "$LAB_ETC/hostagent.toml is refused"
}
write_unit mux-lab-hostagent.service <<UNIT
[Unit]
Description=mux VM lab: host agent of $NAME
After=mux-lab-links.service mux-lab-backends.service network-online.target
Wants=network-online.target

[Service]
ExecStartPre=/usr/local/bin/hostagent check-config $LAB_ETC/hostagent.toml
ExecStart=/usr/local/bin/hostagent run --config $LAB_ETC/hostagent.toml
ExecReload=/bin/kill -HUP \$MAINPID
Restart=always
RestartSec=1
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW

[Install]
WantedBy=multi-user.target
UNIT
restart_unit mux-lab-hostagent.service

log "$NAME: up (curl -s 10.0.$S.2:9200/v1/status; systemctl status mux-lab-hostagent)"
