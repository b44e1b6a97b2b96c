//! The worker loop: one per core, one RX queue each.
//!
//! A packet's path, start to end: [`Port::recv`] fills a burst → [`Pipeline::process_burst`]
//! rewrites each buffer and gives it a verdict → the buffers are split by verdict into the
//! transmit, kernel and free bursts (keeping their order) → [`Port::send`],
//! [`Port::to_kernel`], [`Port::free`].
//!
//! The burst vectors are allocated once, at their full capacity; the loop never allocates.
//! The snapshot is passed in per burst by the caller (the daemon loads it once per burst from
//! its `arc-swap` pointer; tests and replay pass a fixed one).

use mux_shared::port::Port;

use super::pipeline::{MAX_BURST, Pipeline};
use super::snapshot::Snapshot;
use super::verdict::Verdict;

/// A worker: a port and the pipeline state that goes with it.
#[derive(Debug)]
pub struct Worker<P: Port> {
    /// The packet port this worker polls.
    pub port: P,
    /// The pipeline (flow table and counters).
    pub pipeline: Pipeline,
    burst_size: usize,
    rx: Vec<P::Buf>,
    tx: Vec<P::Buf>,
    kernel: Vec<P::Buf>,
    dropped: Vec<P::Buf>,
    verdicts: Vec<Verdict>,
}

impl<P: Port> Worker<P> {
    /// A worker polling `port` in bursts of `burst_size` (clamped to 1..=[`MAX_BURST`]).
    pub fn new(port: P, pipeline: Pipeline, burst_size: usize) -> Self {
        let burst_size = burst_size.clamp(1, MAX_BURST);
        Worker {
            port,
            pipeline,
            burst_size,
            rx: Vec::with_capacity(burst_size),
            tx: Vec::with_capacity(burst_size),
            kernel: Vec::with_capacity(burst_size),
            dropped: Vec::with_capacity(burst_size),
            verdicts: vec![Verdict::ToKernel; burst_size],
        }
    }

    /// Receives and processes one burst. Returns the number of frames received (0: idle).
    #[inline]
    pub fn poll(&mut self, snap: &Snapshot, now: u32) -> usize {
        let n = self.port.recv(&mut self.rx, self.burst_size);
        if n == 0 {
            return 0;
        }
        self.pipeline
            .process_burst(snap, now, &mut self.rx, &mut self.verdicts[..n]);
        for (buf, verdict) in self.rx.drain(..).zip(self.verdicts.iter()) {
            match verdict {
                Verdict::Forward | Verdict::Reply => self.tx.push(buf),
                Verdict::ToKernel => self.kernel.push(buf),
                Verdict::Drop(_) => self.dropped.push(buf),
            }
        }
        if !self.tx.is_empty() {
            self.port.send(&mut self.tx);
        }
        if !self.kernel.is_empty() {
            self.port.to_kernel(&mut self.kernel);
        }
        if !self.dropped.is_empty() {
            self.port.free(&mut self.dropped);
        }
        n
    }

    /// The verdicts of the last burst (for tests and replay), in receive order.
    pub fn last_verdicts(&self, n: usize) -> &[Verdict] {
        &self.verdicts[..n.min(self.verdicts.len())]
    }
}
