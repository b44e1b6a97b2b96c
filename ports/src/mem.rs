//! The in-memory port: rings of frames in process memory.
//!
//! Used by the fixtures, `mux replay` and the benchmarks. Receiving copies a frame from the input
//! queue into a pooled buffer (as a NIC's DMA would); the pool is filled once at construction,
//! so a steady-state benchmark loop allocates nothing. Transmitted and kernel-bound frames are
//! either captured (tests, replay) or only counted (benchmarks), per [`Capture`].

use std::collections::VecDeque;

use super::heap_buf::HeapBuf;
use super::{PacketBuf, Port, PortStats};

/// Size of one pooled buffer: headroom plus a full 1500-byte-MTU frame with room to spare.
pub const BUF_SIZE: usize = 2048;

/// A buffer owned by the in-memory port.
pub type MemBuf = HeapBuf;

/// Loads `frame`, cut to the buffer's size if longer (the in-memory port is fed by trusted
/// code; a real NIC would not deliver such a frame at all).
fn load_truncating(buf: &mut MemBuf, frame: &[u8]) {
    let fits = frame.len().min(BUF_SIZE - crate::MIN_HEADROOM);
    buf.load(&frame[..fits], None);
}

/// What the port does with frames the worker sends or hands to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Keep a copy of every frame, in order (tests, replay).
    Keep,
    /// Only count them (benchmarks).
    CountOnly,
}

/// Where the input frames come from.
#[derive(Debug)]
enum Source {
    /// A queue consumed once.
    Queue(VecDeque<Vec<u8>>),
    /// A fixed set of frames replayed in a loop forever (benchmarks).
    Cycle { frames: Vec<Vec<u8>>, next: usize },
}

/// An in-memory port.
#[derive(Debug)]
pub struct MemPort {
    source: Source,
    pool: Vec<MemBuf>,
    capture: Capture,
    transmitted: Vec<Vec<u8>>,
    kernel: Vec<Vec<u8>>,
    /// Frames received so far.
    pub rx_count: u64,
    /// Frames sent so far.
    pub tx_count: u64,
    /// Frames handed to the kernel so far.
    pub kernel_count: u64,
    /// Buffers freed (dropped) so far.
    pub freed_count: u64,
    /// Bytes sent so far.
    pub tx_bytes: u64,
}

impl MemPort {
    /// A port that delivers each injected frame once, with `pool` buffers.
    pub fn new(pool: usize, capture: Capture) -> Self {
        MemPort {
            source: Source::Queue(VecDeque::new()),
            pool: (0..pool).map(|_| MemBuf::new(BUF_SIZE)).collect(),
            capture,
            transmitted: Vec::new(),
            kernel: Vec::new(),
            rx_count: 0,
            tx_count: 0,
            kernel_count: 0,
            freed_count: 0,
            tx_bytes: 0,
        }
    }

    /// A port that replays `frames` in a loop forever (for benchmarks).
    pub fn cycling(frames: Vec<Vec<u8>>, pool: usize, capture: Capture) -> Self {
        let mut port = MemPort::new(pool, capture);
        port.source = Source::Cycle { frames, next: 0 };
        port
    }

    /// Queues a frame for reception.
    pub fn inject(&mut self, frame: Vec<u8>) {
        match &mut self.source {
            Source::Queue(q) => q.push_back(frame),
            Source::Cycle { frames, .. } => frames.push(frame),
        }
    }

    /// Frames received so far that are still waiting (queue mode), or the cycle length.
    pub fn pending(&self) -> usize {
        match &self.source {
            Source::Queue(q) => q.len(),
            Source::Cycle { frames, .. } => frames.len(),
        }
    }

    /// Takes the captured transmitted frames.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.transmitted)
    }

    /// Takes the captured kernel-bound frames.
    pub fn take_to_kernel(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.kernel)
    }

    fn recycle(&mut self, burst: &mut Vec<MemBuf>, keep_in: Option<bool>) {
        for buf in burst.drain(..) {
            match (keep_in, self.capture) {
                (Some(true), Capture::Keep) => self.transmitted.push(buf.data().to_vec()),
                (Some(false), Capture::Keep) => self.kernel.push(buf.data().to_vec()),
                _ => {}
            }
            self.pool.push(buf);
        }
    }
}

impl Port for MemPort {
    type Buf = MemBuf;

    fn recv(&mut self, burst: &mut Vec<MemBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut buf) = self.pool.pop() else {
                break;
            };
            match &mut self.source {
                Source::Queue(q) => match q.pop_front() {
                    Some(frame) => load_truncating(&mut buf, &frame),
                    None => {
                        self.pool.push(buf);
                        break;
                    }
                },
                Source::Cycle { frames, next } => {
                    if frames.is_empty() {
                        self.pool.push(buf);
                        break;
                    }
                    load_truncating(&mut buf, &frames[*next]);
                    *next = if *next + 1 == frames.len() {
                        0
                    } else {
                        *next + 1
                    };
                }
            }
            burst.push(buf);
            n += 1;
        }
        self.rx_count += n as u64;
        n
    }

    fn send(&mut self, burst: &mut Vec<MemBuf>) -> usize {
        let n = burst.len();
        self.tx_count += n as u64;
        self.tx_bytes += burst.iter().map(|b| b.data().len() as u64).sum::<u64>();
        self.recycle(burst, Some(true));
        n
    }

    fn to_kernel(&mut self, burst: &mut Vec<MemBuf>) {
        self.kernel_count += burst.len() as u64;
        self.recycle(burst, Some(false));
    }

    fn free(&mut self, burst: &mut Vec<MemBuf>) {
        self.freed_count += burst.len() as u64;
        self.recycle(burst, None);
    }

    fn stats(&mut self) -> PortStats {
        PortStats {
            rx: self.rx_count,
            tx: self.tx_count,
            rx_dropped: 0,
            tx_dropped: 0,
            ..PortStats::default()
        }
    }

    /// Sleeps when nothing is queued (an idle daemon on the in-memory port must not spin).
    fn wait(&mut self, timeout: std::time::Duration) {
        if self.pending() == 0 {
            std::thread::sleep(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIN_HEADROOM;

    #[test]
    fn queue_delivers_each_frame_once_and_captures_in_order() {
        let mut port = MemPort::new(4, Capture::Keep);
        port.inject(vec![1, 2, 3]);
        port.inject(vec![4, 5]);
        let mut burst = Vec::with_capacity(8);
        assert_eq!(port.recv(&mut burst, 8), 2);
        assert_eq!(burst[0].data(), &[1, 2, 3]);
        assert_eq!(burst[0].headroom(), MIN_HEADROOM);
        assert_eq!(port.send(&mut burst), 2);
        assert!(burst.is_empty());
        assert_eq!(port.take_transmitted(), vec![vec![1, 2, 3], vec![4, 5]]);
        assert_eq!(port.recv(&mut burst, 8), 0);
    }

    #[test]
    fn cycling_port_wraps_and_reuses_its_pool() {
        let mut port = MemPort::cycling(vec![vec![7], vec![8]], 2, Capture::CountOnly);
        let mut burst = Vec::with_capacity(4);
        assert_eq!(port.recv(&mut burst, 4), 2, "limited by the pool");
        port.free(&mut burst);
        assert_eq!(port.recv(&mut burst, 1), 1);
        assert_eq!(burst[0].data(), &[7]);
        assert_eq!(port.freed_count, 2);
    }
}
