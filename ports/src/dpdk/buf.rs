//! An mbuf as a [`PacketBuf`]: the frame is the mbuf's single data segment.
//!
//! [`DpdkPort`](super::DpdkPort) hands out only single-segment mbufs (it frees and counts
//! chained ones at receive), so `data_len == pkt_len` always holds and every length change
//! below updates both. Dropping a `DpdkBuf` frees its mbuf; the port takes the mbuf back out of
//! the buffer (without freeing it) when it transmits.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use mux_dpdk_sys::rte_mbuf;

use crate::PacketBuf;

/// One received frame in an mbuf.
#[derive(Debug)]
pub struct DpdkBuf {
    mbuf: NonNull<rte_mbuf>,
}

impl DpdkBuf {
    /// Takes ownership of `mbuf`.
    ///
    /// # Safety
    /// `mbuf` must be a valid, single-segment mbuf that nothing else references (just received
    /// or allocated), with its data segment inside its buffer.
    pub(crate) unsafe fn from_raw(mbuf: NonNull<rte_mbuf>) -> Self {
        DpdkBuf { mbuf }
    }

    /// Gives the mbuf up without freeing it (to transmit it).
    pub(crate) fn into_raw(self) -> *mut rte_mbuf {
        ManuallyDrop::new(self).mbuf.as_ptr()
    }

    #[inline]
    fn m(&self) -> &rte_mbuf {
        // SAFETY: the mbuf is valid and owned by this buffer (from_raw's contract) for as long
        // as the buffer lives.
        unsafe { self.mbuf.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: as in m(); &mut self makes the access exclusive.
        unsafe { self.mbuf.as_mut() }
    }

    #[inline]
    fn set_lengths(&mut self, data_off: u16, len: u16) {
        let m = self.m_mut();
        m.data_off = data_off;
        m.data_len = len;
        m.pkt_len = u32::from(len);
    }
}

impl Drop for DpdkBuf {
    fn drop(&mut self) {
        // SAFETY: the buffer owns the mbuf (from_raw's contract) and gives it up exactly once,
        // here or in into_raw (which skips this destructor).
        unsafe { mux_dpdk_sys::mux_dpdk_free(self.mbuf.as_ptr()) }
    }
}

impl PacketBuf for DpdkBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data buffer
        // (from_raw's contract, kept by every method below), which this buffer owns.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        let (addr, off, len) = (m.buf_addr, m.data_off, m.data_len);
        // SAFETY: as in data(); &mut self makes the slice exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(
                addr.cast::<u8>().add(usize::from(off)),
                usize::from(len),
            )
        }
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.m().data_off)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.m();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    #[inline]
    fn push_front(&mut self, n: usize) -> bool {
        let m = self.m();
        let (off, len) = (usize::from(m.data_off), usize::from(m.data_len));
        if n > off {
            return false;
        }
        // Both fit in u16: off - n <= off, and len + n <= buf_len.
        self.set_lengths((off - n) as u16, (len + n) as u16);
        true
    }

    #[inline]
    fn pull_front(&mut self, n: usize) {
        let m = self.m();
        let (off, len) = (usize::from(m.data_off), usize::from(m.data_len));
        let n = n.min(len);
        self.set_lengths((off + n) as u16, (len - n) as u16);
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        let m = self.m();
        let off = usize::from(m.data_off);
        if off + len > usize::from(m.buf_len) {
            return false;
        }
        self.set_lengths(off as u16, len as u16);
        true
    }
}
