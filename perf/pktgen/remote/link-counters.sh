#!/usr/bin/env bash
# The router's lab links, one line each: ADDR IFACE rx_packets tx_packets rx_dropped tx_dropped
# (the interface counters of every interface with a 10.0.x.y address). perf/pktgen/run sends
# this over ssh to the router before and after a run (`bash -s`); lib/report.sh reads the
# lines by the router's address on the link (10.0.1.1 toward the client, 10.0.11.1 and
# 10.0.12.1 toward the MUXes, 10.0.21.1 and 10.0.22.1 toward the hosts).
set -euo pipefail

ip -o -4 addr show | awk '{ split($4, p, "/"); print p[1], $2 }' | while read -r addr dev; do
    case $addr in 10.0.*) ;; *) continue ;; esac
    stats=/sys/class/net/$dev/statistics
    echo "$addr $dev $(cat "$stats/rx_packets") $(cat "$stats/tx_packets") $(cat "$stats/rx_dropped") $(cat "$stats/tx_dropped")"
done
