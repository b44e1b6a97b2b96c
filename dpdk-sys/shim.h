/*
 * Out-of-line wrappers for DPDK's static inline fast-path functions and thread-local values,
 * which bindgen cannot bind: one call per burst, not per packet.
 */
#ifndef MUX_DPDK_SHIM_H
#define MUX_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t mux_dpdk_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t mux_dpdk_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
int mux_dpdk_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **pkts, unsigned int n);
void mux_dpdk_free(struct rte_mbuf *m);
unsigned int mux_dpdk_lcore_id(void);
int mux_dpdk_errno(void);
uint16_t mux_dpdk_headroom(void);
/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP (macros bindgen cannot evaluate). */
uint64_t mux_dpdk_rss_hf_ip_tcp_udp(void);
/* sizeof and field offsets of struct rte_mbuf, to check the generated layout in tests. */
uint32_t mux_dpdk_mbuf_layout(uint32_t field);

#endif
