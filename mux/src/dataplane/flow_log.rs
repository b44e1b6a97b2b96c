//! The data path's half of the flow logs: a fixed-size record per new flow, pushed into the
//! worker's own bounded ring.
//!
//! What a worker does for a flow log is bounded by the invariants of the data path: no lock,
//! no allocation, no syscall, no formatting. At each site where the pipeline creates a
//! flow-table entry (a new flow or a second-chance entry, `new_flows` counted) it asks the
//! snapshot's [`FlowSample`] whether this flow is sampled, and if so copies a [`FlowRecord`]
//! (about 100 bytes of plain data: burst time, 5-tuple, VIP id, backend and alternative
//! addresses, config generation) into its [`FlowLogSink`], a single-producer single-consumer
//! ring (`rtrb`) that only this worker writes and only the control plane's writer thread
//! (`control::flow_log`) reads. A full ring drops the record and counts it
//! (`flow_log_dropped`): the worker never waits for the writer, so a slow disk costs records,
//! never packets.
//!
//! Without `[flow_log]` the pipeline has no sink and a new flow pays one predictable branch.
//!
//! Sampling is by the flow's stable hash (`stable_hash::flow_hash`, the portable one Maglev
//! uses), compared with a threshold: one compare per new flow, no division, and the same flows
//! are sampled on every MUX, so a flow that moves between MUXes is logged on both or on none.
//!
//! Rejected: a `Mutex<Vec<_>>` or an `mpsc` channel shared by the workers (a lock or an
//! allocation per record, and contention between cores); formatting the JSON line on the
//! worker (a few hundred ns per record on the data path, and a variable-size record); logging
//! by wall-clock time read per record (a syscall-free burst time is already at hand: the
//! writer turns the flow clock into wall-clock time).

use mux_packet::flow_key::FlowKey;

/// Which new flows are logged: those whose stable hash is at most a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSample {
    threshold: u64,
}

impl FlowSample {
    /// One flow in `n` (`n` ≥ 1; 0 counts as 1): hashes up to `u64::MAX / n`, a share of
    /// 1/n of a uniform 64-bit hash.
    pub fn one_in(n: u32) -> FlowSample {
        FlowSample {
            threshold: u64::MAX / u64::from(n.max(1)),
        }
    }

    /// Whether the flow whose stable hash is `stable` is logged.
    #[inline(always)]
    pub fn picks(self, stable: u64) -> bool {
        stable <= self.threshold
    }
}

impl Default for FlowSample {
    /// Every flow.
    fn default() -> Self {
        FlowSample::one_in(1)
    }
}

/// One new flow, as the worker saw it: plain data, copied into the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// When: the burst's time on the flow clock, in microseconds since the daemon started.
    pub micros: u64,
    /// Generation of the snapshot that decided the flow.
    pub generation: u64,
    /// The client's 5-tuple (its destination is the VIP).
    pub key: FlowKey,
    /// The VIP's stable id.
    pub vip_id: u32,
    /// The backend the flow was sent to (16-byte form, IPv4-mapped for IPv4).
    pub backend: [u8; 16],
    /// For a second-chance entry: the alternative backend its packets name.
    pub alternative: Option<[u8; 16]>,
}

/// A worker's end of its flow-log ring.
#[derive(Debug)]
pub struct FlowLogSink {
    ring: rtrb::Producer<FlowRecord>,
}

/// The control plane's end of one worker's ring.
pub type FlowLogSource = rtrb::Consumer<FlowRecord>;

impl FlowLogSink {
    /// A ring of `depth` records (at least 1): the worker's sink and the writer's source.
    pub fn ring(depth: usize) -> (FlowLogSink, FlowLogSource) {
        let (ring, source) = rtrb::RingBuffer::new(depth.max(1));
        (FlowLogSink { ring }, source)
    }

    /// Queues `record`; false when the ring is full (the record is dropped).
    #[inline]
    pub fn push(&mut self, record: FlowRecord) -> bool {
        self.ring.push(record).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_n_samples_a_share_of_about_one_in_n_and_one_takes_all() {
        assert!(FlowSample::one_in(1).picks(u64::MAX));
        assert!(FlowSample::one_in(0).picks(u64::MAX), "0 counts as 1");
        assert!(!FlowSample::one_in(2).picks(u64::MAX));
        // Over well-spread hashes (the stable hash of distinct 5-tuples), the share is 1/n.
        for n in [2u32, 10, 100] {
            let sample = FlowSample::one_in(n);
            let picked = (0..100_000u32)
                .filter(|&i| {
                    let [a, b, c, d] = i.to_be_bytes();
                    let key =
                        FlowKey::v4([198, b, c, d], [192, 0, 2, 10], 40000 + u16::from(a), 80, 6);
                    sample.picks(mux_packet::stable_hash::flow_hash(&key))
                })
                .count();
            let expected = 100_000 / n as usize;
            let slack = expected / 10 + 30;
            assert!(
                picked.abs_diff(expected) < slack,
                "1 in {n}: {picked} of 100000"
            );
        }
    }

    #[test]
    fn sampling_is_the_same_for_the_same_flow() {
        let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 40000, 80, 6);
        let h = mux_packet::stable_hash::flow_hash(&key);
        let sample = FlowSample::one_in(7);
        assert_eq!(sample.picks(h), sample.picks(h));
        assert_eq!(sample, FlowSample::one_in(7));
    }

    #[test]
    fn a_full_ring_refuses_and_the_reader_sees_records_in_order() {
        let (mut sink, mut source) = FlowLogSink::ring(2);
        let record = |n: u64| FlowRecord {
            micros: n,
            generation: 1,
            key: FlowKey::default(),
            vip_id: 0,
            backend: [0; 16],
            alternative: None,
        };
        assert!(sink.push(record(1)));
        assert!(sink.push(record(2)));
        assert!(!sink.push(record(3)), "full");
        assert_eq!(source.pop().map(|r| r.micros), Ok(1));
        assert!(sink.push(record(4)));
        assert_eq!(source.pop().map(|r| r.micros), Ok(2));
        assert_eq!(source.pop().map(|r| r.micros), Ok(4));
        assert!(source.pop().is_err());
    }
}
