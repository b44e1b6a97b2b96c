//! [`DpdkPort`]: one worker's RX/TX queue pair on the NIC, and its queue pair on the exception
//! device.
//!
//! Receive hands the worker single-segment mbufs straight from the NIC's ring (chained ones
//! cannot occur with the MTUs the config allows; should a driver produce one, it is freed and
//! counted). Transmit puts the worker's mbufs on the NIC's TX ring; what the ring refuses is
//! freed and counted, never waited for. Kernel-bound frames go out of the exception device;
//! [`Port::maintain`] moves what the kernel sent back (ARP replies, BGP, SSH) to the NIC.
//!
//! # Waiting when idle
//!
//! A poll-mode driver has no file descriptor to sleep on, so [`Port::wait`] sleeps a *ladder*:
//! the first wait after traffic sleeps [`FIRST_IDLE_SLEEP`], each further one twice as long, up
//! to the worker's bound (`[dataplane] idle_sleep_max_us`); a received frame resets it. A short
//! pause costs the next frame at most a short sleep; a long idle costs at most the bound, and
//! the core sleeps nearly all the time. The sleeps are `nanosleep`s, so each lasts at least the
//! thread's timer slack (50 µs by default) longer than asked.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use mux_dpdk_sys as sys;

use super::buf::DpdkBuf;
use super::runtime::DpdkRuntime;
use super::{DpdkError, eal};
use crate::{Port, PortStats};

/// Most mbufs moved per DPDK burst call (the pipeline's largest burst).
const RAW_BURST: usize = 256;
/// Frames moved from the kernel to the NIC per [`Port::maintain`].
const KERNEL_BURST: u16 = 32;
/// The first sleep of an idle worker (see the module docs).
pub const FIRST_IDLE_SLEEP: Duration = Duration::from_micros(50);

/// One worker's queues.
#[derive(Debug)]
pub struct DpdkPort {
    runtime: Arc<DpdkRuntime>,
    nic: u16,
    exception: Option<u16>,
    queue: u16,
    /// The next idle sleep of the ladder.
    idle_sleep: Duration,
    raw: Box<[*mut sys::rte_mbuf; RAW_BURST]>,
    stats: PortStats,
}

impl DpdkPort {
    /// Opens queue `queue` of `runtime`'s devices for the calling thread, which becomes a
    /// registered DPDK thread (with its own mempool cache).
    pub fn open(runtime: Arc<DpdkRuntime>, queue: u16) -> Result<DpdkPort, DpdkError> {
        if queue >= runtime.queues() {
            return Err(DpdkError::Config(format!(
                "queue {queue} does not exist: the devices have {} queue pairs",
                runtime.queues()
            )));
        }
        eal::register_thread()?;
        Ok(DpdkPort {
            nic: runtime.nic().port_id(),
            exception: runtime.exception().map(|d| d.port_id()),
            queue,
            idle_sleep: FIRST_IDLE_SLEEP,
            raw: Box::new([std::ptr::null_mut(); RAW_BURST]),
            stats: PortStats::default(),
            runtime,
        })
    }

    /// An mbuf from the runtime's pool holding a copy of `frame` after the standard headroom
    /// (generators and tests; the data path never allocates). `None` when the pool is empty or
    /// the frame does not fit.
    pub fn alloc_frame(&mut self, frame: &[u8]) -> Option<DpdkBuf> {
        let mut m: *mut sys::rte_mbuf = std::ptr::null_mut();
        // SAFETY: the pool outlives this port; m is a valid out-slot for one pointer.
        if unsafe { sys::mux_dpdk_alloc_bulk(self.runtime.pool(), &mut m, 1) } != 0 {
            return None;
        }
        // SAFETY: alloc_bulk returned a fresh, reset, single-segment mbuf (data_len 0, data_off
        // at the default headroom) owned by nobody else.
        let mut buf = unsafe { DpdkBuf::from_raw(NonNull::new(m)?) };
        if !crate::PacketBuf::set_len(&mut buf, frame.len()) {
            return None;
        }
        crate::PacketBuf::data_mut(&mut buf).copy_from_slice(frame);
        Some(buf)
    }

    /// The runtime this port belongs to.
    pub fn runtime(&self) -> &Arc<DpdkRuntime> {
        &self.runtime
    }

    /// Puts `burst` (drained) on `port`'s TX queue; frees what the ring refused. Returns
    /// (sent, refused).
    fn transmit(&mut self, port: u16, burst: &mut Vec<DpdkBuf>) -> (u64, u64) {
        let (mut sent, mut refused) = (0u64, 0u64);
        while !burst.is_empty() {
            let n = burst.len().min(RAW_BURST);
            for (slot, buf) in self.raw.iter_mut().zip(burst.drain(..n)) {
                *slot = buf.into_raw();
            }
            // SAFETY: raw[..n] holds n valid mbufs this port owns; the queue exists and only
            // this thread uses it. tx_burst takes ownership of the first `done` of them.
            let done = usize::from(unsafe {
                sys::mux_dpdk_tx_burst(port, self.queue, self.raw.as_mut_ptr(), n as u16)
            });
            if done < n {
                // SAFETY: raw[done..n] are still ours; free_bulk returns them to their pool.
                unsafe {
                    sys::rte_pktmbuf_free_bulk(self.raw.as_mut_ptr().add(done), (n - done) as u32)
                };
            }
            sent += done as u64;
            refused += (n - done) as u64;
        }
        (sent, refused)
    }
}

impl Port for DpdkPort {
    type Buf = DpdkBuf;

    #[inline]
    fn recv(&mut self, burst: &mut Vec<DpdkBuf>, max: usize) -> usize {
        let want = max.min(RAW_BURST) as u16;
        // SAFETY: raw has room for `want` pointers; the queue exists and only this thread
        // polls it. The driver hands over ownership of the n mbufs it writes.
        let n = usize::from(unsafe {
            sys::mux_dpdk_rx_burst(self.nic, self.queue, self.raw.as_mut_ptr(), want)
        });
        let before = burst.len();
        for &m in &self.raw[..n] {
            // SAFETY: rx_burst wrote a valid, non-null mbuf pointer we now own.
            let segments = unsafe { (*m).nb_segs };
            if segments != 1 {
                // SAFETY: ours to free (all segments go back to the pool).
                unsafe { sys::mux_dpdk_free(m) };
                self.stats.rx_dropped += 1;
                continue;
            }
            // SAFETY: a valid single-segment mbuf owned by nothing else; non-null as above.
            burst.push(unsafe { DpdkBuf::from_raw(NonNull::new_unchecked(m)) });
        }
        let delivered = burst.len() - before;
        self.stats.rx += delivered as u64;
        if delivered > 0 {
            self.idle_sleep = FIRST_IDLE_SLEEP;
        }
        delivered
    }

    #[inline]
    fn send(&mut self, burst: &mut Vec<DpdkBuf>) -> usize {
        let (sent, refused) = self.transmit(self.nic, burst);
        self.stats.tx += sent;
        self.stats.tx_dropped += refused;
        sent as usize
    }

    fn to_kernel(&mut self, burst: &mut Vec<DpdkBuf>) {
        match self.exception {
            Some(port) => {
                let (sent, refused) = self.transmit(port, burst);
                self.stats.to_kernel += sent;
                self.stats.to_kernel_dropped += refused;
            }
            None => {
                self.stats.to_kernel_dropped += burst.len() as u64;
                burst.clear();
            }
        }
    }

    fn free(&mut self, burst: &mut Vec<DpdkBuf>) {
        // Each buffer's destructor returns its mbuf to the pool.
        burst.clear();
    }

    /// One step of the sleep ladder (see the module docs), at most `timeout`.
    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(self.idle_sleep.min(timeout));
        self.idle_sleep = (self.idle_sleep * 2).min(timeout.max(FIRST_IDLE_SLEEP));
    }

    fn stats(&mut self) -> PortStats {
        let mut stats = self.stats;
        // The device's counters are whole-device: queue 0 reports them, once.
        if self.queue == 0 {
            stats.nic = Some(self.runtime.nic_counters());
        }
        stats
    }

    fn maintain(&mut self) {
        let Some(exception) = self.exception else {
            return;
        };
        // SAFETY: raw has room for KERNEL_BURST pointers; the exception queue exists and only
        // this thread polls it; we own the n mbufs it hands over.
        let n = usize::from(unsafe {
            sys::mux_dpdk_rx_burst(exception, self.queue, self.raw.as_mut_ptr(), KERNEL_BURST)
        });
        if n == 0 {
            return;
        }
        // SAFETY: raw[..n] are valid mbufs we own; tx_burst takes the first `done`.
        let done = usize::from(unsafe {
            sys::mux_dpdk_tx_burst(self.nic, self.queue, self.raw.as_mut_ptr(), n as u16)
        });
        if done < n {
            // SAFETY: raw[done..n] are still ours.
            unsafe {
                sys::rte_pktmbuf_free_bulk(self.raw.as_mut_ptr().add(done), (n - done) as u32)
            };
        }
        self.stats.from_kernel += done as u64;
        self.stats.from_kernel_dropped += (n - done) as u64;
    }
}
