/* See shim.h. Compiled by build.rs with libdpdk's own cflags. */
#include <stddef.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "shim.h"

uint16_t mux_dpdk_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t mux_dpdk_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

int mux_dpdk_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **pkts, unsigned int n)
{
    return rte_pktmbuf_alloc_bulk(pool, pkts, n);
}

void mux_dpdk_free(struct rte_mbuf *m)
{
    rte_pktmbuf_free(m);
}

unsigned int mux_dpdk_lcore_id(void)
{
    return rte_lcore_id();
}

int mux_dpdk_errno(void)
{
    return rte_errno;
}

uint16_t mux_dpdk_headroom(void)
{
    return RTE_PKTMBUF_HEADROOM;
}

uint64_t mux_dpdk_rss_hf_ip_tcp_udp(void)
{
    return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}

uint32_t mux_dpdk_mbuf_layout(uint32_t field)
{
    switch (field) {
    case 0: return sizeof(struct rte_mbuf);
    case 1: return offsetof(struct rte_mbuf, buf_addr);
    case 2: return offsetof(struct rte_mbuf, data_off);
    case 3: return offsetof(struct rte_mbuf, nb_segs);
    case 4: return offsetof(struct rte_mbuf, pkt_len);
    case 5: return offsetof(struct rte_mbuf, data_len);
    case 6: return offsetof(struct rte_mbuf, buf_len);
    case 7: return offsetof(struct rte_mbuf, next);
    default: return 0;
    }
}
