//! The baseline: the cheapest forwarder the I/O path allows.
//!
//! [`MacSwapForwarder`] receives a burst from any [`Port`], checks each frame holds an Ethernet
//! header, swaps its destination and source MAC addresses and transmits it; frames too short
//! for an Ethernet header are freed. It is the floor every forwarder over the same port pays
//! (receive, touch the frame, transmit), measured in the same run as the pipeline so the ratio
//! and the difference isolate the pipeline's own work: parse, VIP match, flow table, Maglev,
//! encapsulation.
//!
//! It is deliberately written like the worker loop (pre-sized burst vectors, one `recv`, one
//! `send`, one `free` per burst) so that the difference is not the loop structure.

use mux_ports::{PacketBuf, Port};

/// Length of an Ethernet header without VLAN tag.
const ETH_HEADER_LEN: usize = 14;

/// A MAC-swapping forwarder over a port.
#[derive(Debug)]
pub struct MacSwapForwarder<P: Port> {
    /// The port it polls.
    pub port: P,
    /// Frames transmitted so far.
    pub forwarded: u64,
    /// Frames freed because they were shorter than an Ethernet header.
    pub dropped: u64,
    burst_size: usize,
    rx: Vec<P::Buf>,
    tx: Vec<P::Buf>,
    drop: Vec<P::Buf>,
}

impl<P: Port> MacSwapForwarder<P> {
    /// A forwarder polling `port` in bursts of `burst_size` (at least 1).
    pub fn new(port: P, burst_size: usize) -> Self {
        let burst_size = burst_size.max(1);
        MacSwapForwarder {
            port,
            forwarded: 0,
            dropped: 0,
            burst_size,
            rx: Vec::with_capacity(burst_size),
            tx: Vec::with_capacity(burst_size),
            drop: Vec::with_capacity(burst_size),
        }
    }

    /// Receives one burst, swaps the MACs of every frame that has an Ethernet header and
    /// transmits them; frees the others. Returns the number of frames received (0: idle).
    #[inline]
    pub fn poll(&mut self) -> usize {
        let n = self.port.recv(&mut self.rx, self.burst_size);
        for mut buf in self.rx.drain(..) {
            let frame = buf.data_mut();
            if frame.len() < ETH_HEADER_LEN {
                self.drop.push(buf);
                continue;
            }
            let (dst, rest) = frame.split_at_mut(6);
            dst.swap_with_slice(&mut rest[..6]);
            self.tx.push(buf);
        }
        if !self.tx.is_empty() {
            self.forwarded += self.port.send(&mut self.tx) as u64;
        }
        if !self.drop.is_empty() {
            self.dropped += self.drop.len() as u64;
            self.port.free(&mut self.drop);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_ports::mem::{Capture, MemPort};

    #[test]
    fn swaps_macs_and_frees_runts() {
        let mut frame = vec![1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0x08, 0x00];
        frame.extend_from_slice(&[0xaa; 46]);
        let mut port = MemPort::new(8, Capture::Keep);
        port.inject(frame.clone());
        port.inject(vec![0; 13]);
        let mut fwd = MacSwapForwarder::new(port, 32);
        assert_eq!(fwd.poll(), 2);
        assert_eq!(fwd.forwarded, 1);
        assert_eq!(fwd.dropped, 1);
        let sent = fwd.port.take_transmitted();
        let mut expected = frame;
        expected[..6].copy_from_slice(&[2; 6]);
        expected[6..12].copy_from_slice(&[1; 6]);
        assert_eq!(sent, vec![expected]);
        assert_eq!(fwd.port.freed_count, 1);
        assert_eq!(fwd.poll(), 0, "queue drained");
    }
}
