//! The TPACKET_V3 receive ring: a safe cursor over the blocks the kernel retires.
//!
//! The ring is `block_count` blocks of `block_size` bytes mapped from the socket. Each block
//! starts with a `tpacket_block_desc`; its `block_status` word is the hand-off: the kernel fills
//! a block while it reads `TP_STATUS_KERNEL`, then sets `TP_STATUS_USER` (after a write barrier)
//! and never touches the block again until user space writes `TP_STATUS_KERNEL` back. Blocks are
//! used strictly in order, so one index tells which block to look at next.
//!
//! Invariants:
//! - A borrow of frame bytes never outlives [`RxRing::pop_with`]'s callback, and a block is
//!   handed back only after the callback for its last frame returned.
//! - Every offset the kernel wrote is checked against the block size before use, so even a
//!   corrupted block cannot make us read outside the mapping; the rest of such a block is
//!   skipped and reported as [`Entry::Corrupt`].

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::Mapping;

/// Offset of `tpacket_hdr_v1` (and of its first field, `block_status`) in a block.
const BH1_OFFSET: usize = offset_of!(libc::tpacket_block_desc, hdr);
/// Bytes from a frame's header to the end of the `sockaddr_ll` that follows it.
const FRAME_HDR_LEN: usize = libc::TPACKET3_HDRLEN;
/// Offset of the `sockaddr_ll` after a frame's `tpacket3_hdr` (`TPACKET_ALIGN(sizeof hdr)`).
const SLL_OFFSET: usize = size_of::<libc::tpacket3_hdr>().next_multiple_of(libc::TPACKET_ALIGNMENT);

/// One frame in the ring, borrowed for the duration of a [`RxRing::pop_with`] callback.
#[derive(Debug)]
pub(super) struct RingFrame<'a> {
    /// The captured bytes from the Ethernet header on (without the stripped VLAN tag).
    pub data: &'a [u8],
    /// The frame's length on the wire (larger than `data` if the ring truncated it).
    pub wire_len: u32,
    /// The 802.1Q/802.1ad tag the kernel stripped into metadata: `(tpid, tci)`.
    pub vlan: Option<(u16, u16)>,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OUTGOING`, …).
    pub pkttype: u8,
}

/// What the ring yields.
#[derive(Debug)]
pub(super) enum Entry<'a> {
    /// A frame.
    Frame(RingFrame<'a>),
    /// A frame header with impossible offsets; the rest of its block was skipped.
    Corrupt,
}

/// Where the reader is inside the open block.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    remaining: u32,
    offset: usize,
}

/// A TPACKET_V3 receive ring.
#[derive(Debug)]
pub(super) struct RxRing {
    map: Mapping,
    block_size: usize,
    block_count: usize,
    /// The block being read, or the next one to look at.
    block: usize,
    open: Option<Cursor>,
}

impl RxRing {
    /// Wraps a mapping of `block_count` blocks of `block_size` bytes.
    pub(super) fn new(map: Mapping, block_size: usize, block_count: usize) -> Self {
        assert!(block_size * block_count <= map.len() && block_size >= FRAME_HDR_LEN + BH1_OFFSET);
        RxRing {
            map,
            block_size,
            block_count,
            block: 0,
            open: None,
        }
    }

    fn block_ptr(&self, block: usize) -> *mut u8 {
        debug_assert!(block < self.block_count);
        // SAFETY: `block < block_count`, so the offset stays inside the mapping (checked in
        // `new`).
        unsafe { self.map.ptr().as_ptr().add(block * self.block_size) }
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: `block_status` is a 4-byte-aligned u32 inside the mapping (blocks are
        // page-aligned); the kernel accesses it with its own barriers, and we only ever access
        // it atomically. The reference lives no longer than `&self`, hence than the mapping.
        unsafe { AtomicU32::from_ptr(self.block_ptr(block).add(BH1_OFFSET).cast::<u32>()) }
    }

    /// Whether a frame can be read without asking the kernel.
    pub(super) fn ready(&self) -> bool {
        self.open.is_some()
            || self.status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Hands the current block back to the kernel and moves to the next one.
    fn release(&mut self) {
        self.status(self.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.open = None;
        self.block = if self.block + 1 == self.block_count {
            0
        } else {
            self.block + 1
        };
    }

    /// Opens the next retired block, skipping empty ones. Returns `false` if none is retired.
    fn open_block(&mut self) -> bool {
        for _ in 0..self.block_count {
            if self.status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                return false;
            }
            // SAFETY: the block is ours (status USER, read with Acquire); the header lies inside
            // it (`block_size` > BH1_OFFSET + size of the header, checked in `new`).
            let bh: libc::tpacket_hdr_v1 = unsafe {
                std::ptr::read_unaligned(self.block_ptr(self.block).add(BH1_OFFSET).cast())
            };
            if bh.num_pkts == 0 {
                self.release();
                continue;
            }
            self.open = Some(Cursor {
                remaining: bh.num_pkts,
                offset: bh.offset_to_first_pkt as usize,
            });
            return true;
        }
        false
    }

    /// Reads the frame at `offset` in the open block, checking every offset.
    fn frame_at(&self, offset: usize) -> Option<(RingFrame<'_>, u32)> {
        if offset < BH1_OFFSET || offset.checked_add(FRAME_HDR_LEN)? > self.block_size {
            return None;
        }
        let base = self.block_ptr(self.block);
        // SAFETY: the header (and the `sockaddr_ll` after it) lies inside the block (checked
        // above), which we own while it is USER.
        let (hdr, pkttype) = unsafe {
            let p = base.add(offset);
            let hdr: libc::tpacket3_hdr = std::ptr::read_unaligned(p.cast());
            let sll: libc::sockaddr_ll = std::ptr::read_unaligned(p.add(SLL_OFFSET).cast());
            (hdr, sll.sll_pkttype)
        };
        let start = offset.checked_add(usize::from(hdr.tp_mac))?;
        let len = hdr.tp_snaplen as usize;
        if start.checked_add(len)? > self.block_size {
            return None;
        }
        // SAFETY: `start..start + len` lies inside the block (checked above), which the kernel
        // does not write until we release it; the slice's lifetime is tied to `&self`.
        let data = unsafe { std::slice::from_raw_parts(base.add(start), len) };
        let vlan = (hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if hdr.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.hv1.tp_vlan_tpid
            } else {
                libc::ETH_P_8021Q as u16
            };
            (tpid, hdr.hv1.tp_vlan_tci as u16)
        });
        let frame = RingFrame {
            data,
            wire_len: hdr.tp_len,
            vlan,
            pkttype,
        };
        Some((frame, hdr.tp_next_offset))
    }

    /// Calls `f` with the next entry, if one is ready, and returns its result. Hands a block
    /// back to the kernel as soon as its last frame has been seen.
    pub(super) fn pop_with<R>(&mut self, f: impl for<'a> FnOnce(Entry<'a>) -> R) -> Option<R> {
        if self.open.is_none() && !self.open_block() {
            return None;
        }
        let cursor = self.open?;
        let (result, next) = match self.frame_at(cursor.offset) {
            Some((frame, next)) => (f(Entry::Frame(frame)), Some(next)),
            None => (f(Entry::Corrupt), None),
        };
        match next {
            Some(next) if cursor.remaining > 1 && next != 0 => {
                self.open = Some(Cursor {
                    remaining: cursor.remaining - 1,
                    offset: cursor.offset.saturating_add(next as usize),
                });
            }
            // The block's last frame, a corrupt entry, or more frames announced without a link
            // to them (an inconsistent block): either way the block is done.
            _ => self.release(),
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 4096;
    const HDR: usize = 48; // where the kernel puts the first frame (after the block header)

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    }

    /// Writes a block header as the kernel does when it retires a block.
    fn block(b: &mut [u8], base: usize, num_pkts: u32, first: u32) {
        put32(b, base + BH1_OFFSET, libc::TP_STATUS_USER);
        put32(b, base + BH1_OFFSET + 4, num_pkts);
        put32(b, base + BH1_OFFSET + 8, first);
    }

    /// Writes a frame header at `at` (block-relative offsets are the caller's business).
    fn frame(
        b: &mut [u8],
        at: usize,
        data: &[u8],
        next: u32,
        status: u32,
        vlan: (u16, u16),
        pkttype: u8,
    ) {
        let mac = 80usize;
        put32(b, at + offset_of!(libc::tpacket3_hdr, tp_next_offset), next);
        put32(
            b,
            at + offset_of!(libc::tpacket3_hdr, tp_snaplen),
            data.len() as u32,
        );
        put32(
            b,
            at + offset_of!(libc::tpacket3_hdr, tp_len),
            data.len() as u32,
        );
        put32(b, at + offset_of!(libc::tpacket3_hdr, tp_status), status);
        put16(b, at + offset_of!(libc::tpacket3_hdr, tp_mac), mac as u16);
        let hv1 = at + offset_of!(libc::tpacket3_hdr, hv1);
        put32(
            b,
            hv1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci),
            u32::from(vlan.1),
        );
        put16(
            b,
            hv1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid),
            vlan.0,
        );
        b[at + SLL_OFFSET + offset_of!(libc::sockaddr_ll, sll_pkttype)] = pkttype;
        b[at + mac..at + mac + data.len()].copy_from_slice(data);
    }

    /// What one `pop_with` saw: `Some((data, vlan, pkttype))` for a frame, `None` for corrupt.
    type Seen = Option<(Vec<u8>, Option<(u16, u16)>, u8)>;

    fn pop(ring: &mut RxRing) -> Option<Seen> {
        ring.pop_with(|e| match e {
            Entry::Frame(f) => Some((f.data.to_vec(), f.vlan, f.pkttype)),
            Entry::Corrupt => None,
        })
    }

    #[test]
    fn walks_retired_blocks_in_order_and_hands_them_back() {
        let mut map = Mapping::anonymous(3 * BLOCK);
        let b = map.bytes_mut();
        let vlan_status =
            libc::TP_STATUS_USER | libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
        // Block 0: two frames, the first with an 802.1ad tag, the second outgoing.
        block(b, 0, 2, HDR as u32);
        frame(
            b,
            HDR,
            &[1; 20],
            128,
            vlan_status,
            (0x88a8, 42),
            libc::PACKET_HOST,
        );
        frame(
            b,
            HDR + 128,
            &[2; 10],
            0,
            libc::TP_STATUS_USER,
            (0, 0),
            libc::PACKET_OUTGOING,
        );
        // Block 1: retired but empty (skipped). Block 2: a frame whose data runs past the block.
        block(b, BLOCK, 0, HDR as u32);
        block(b, 2 * BLOCK, 1, HDR as u32);
        frame(
            b,
            2 * BLOCK + HDR,
            &[3; 10],
            0,
            libc::TP_STATUS_USER,
            (0, 0),
            0,
        );
        put32(
            b,
            2 * BLOCK + HDR + offset_of!(libc::tpacket3_hdr, tp_snaplen),
            5000,
        );

        let mut ring = RxRing::new(map, BLOCK, 3);
        assert!(ring.ready());
        assert_eq!(
            pop(&mut ring),
            Some(Some((vec![1; 20], Some((0x88a8, 42)), libc::PACKET_HOST)))
        );
        assert_eq!(
            ring.status(0).load(Ordering::Relaxed),
            libc::TP_STATUS_USER,
            "block 0 still ours"
        );
        assert_eq!(
            pop(&mut ring),
            Some(Some((vec![2; 10], None, libc::PACKET_OUTGOING)))
        );
        assert_eq!(
            ring.status(0).load(Ordering::Relaxed),
            libc::TP_STATUS_KERNEL,
            "block 0 returned"
        );
        assert_eq!(
            pop(&mut ring),
            Some(None),
            "block 2's frame is out of bounds"
        );
        assert_eq!(
            ring.status(1).load(Ordering::Relaxed),
            libc::TP_STATUS_KERNEL,
            "empty block returned"
        );
        assert_eq!(
            ring.status(2).load(Ordering::Relaxed),
            libc::TP_STATUS_KERNEL,
            "corrupt block returned"
        );
        assert!(!ring.ready());
        assert_eq!(pop(&mut ring), None);
    }

    #[test]
    fn a_first_frame_offset_past_the_block_is_corrupt() {
        let mut map = Mapping::anonymous(BLOCK);
        block(map.bytes_mut(), 0, 3, (BLOCK - 10) as u32);
        let mut ring = RxRing::new(map, BLOCK, 1);
        assert_eq!(pop(&mut ring), Some(None));
        assert_eq!(pop(&mut ring), None, "the rest of the block was skipped");
    }
}
