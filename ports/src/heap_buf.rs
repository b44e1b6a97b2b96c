//! A heap buffer with headroom: the buffer type of ports that copy frames (in-memory, AF_PACKET).
//!
//! Ports that own their frames in place (AF_XDP's UMEM, DPDK's mbufs) have their own buffer
//! types; ports that copy each received frame into memory of their own share this one.

use super::{MIN_HEADROOM, PacketBuf};

/// One frame behind at least [`MIN_HEADROOM`] bytes of headroom, in a fixed heap allocation.
#[derive(Debug)]
pub struct HeapBuf {
    storage: Box<[u8]>,
    start: usize,
    len: usize,
}

impl HeapBuf {
    /// An empty buffer of `size` bytes in all (headroom included).
    pub fn new(size: usize) -> Self {
        HeapBuf {
            storage: vec![0u8; size].into_boxed_slice(),
            start: MIN_HEADROOM,
            len: 0,
        }
    }

    /// Loads `frame` after the standard headroom, re-inserting a stripped 802.1Q tag
    /// `(tpid, tci)` after the MAC addresses when given (AF_PACKET hands tags out of band).
    /// Returns `false`, leaving the buffer's contents unspecified, when it does not fit.
    pub fn load(&mut self, frame: &[u8], vlan: Option<(u16, u16)>) -> bool {
        let s = MIN_HEADROOM;
        match vlan {
            Some((tpid, tci)) if frame.len() >= 12 => {
                let len = frame.len() + 4;
                if s + len > self.storage.len() {
                    return false;
                }
                self.storage[s..s + 12].copy_from_slice(&frame[..12]);
                self.storage[s + 12..s + 14].copy_from_slice(&tpid.to_be_bytes());
                self.storage[s + 14..s + 16].copy_from_slice(&tci.to_be_bytes());
                self.storage[s + 16..s + len].copy_from_slice(&frame[12..]);
                self.len = len;
            }
            _ => {
                if s + frame.len() > self.storage.len() {
                    return false;
                }
                self.storage[s..s + frame.len()].copy_from_slice(frame);
                self.len = frame.len();
            }
        }
        self.start = s;
        true
    }
}

impl PacketBuf for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        self.storage.len() - self.start - self.len
    }
    #[inline]
    fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        self.len += n;
        true
    }
    #[inline]
    fn pull_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start += n;
        self.len -= n;
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.storage.len() {
            return false;
        }
        self.len = len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_front_respect_headroom() {
        let mut buf = HeapBuf::new(2048);
        assert!(buf.load(&[9; 10], None));
        assert!(buf.push_front(40));
        assert_eq!(buf.data().len(), 50);
        assert!(!buf.push_front(MIN_HEADROOM));
        buf.pull_front(40);
        assert_eq!(buf.data(), &[9; 10]);
        assert!(buf.set_len(4));
        assert_eq!(buf.data().len(), 4);
        assert!(!buf.set_len(2048));
    }
}
