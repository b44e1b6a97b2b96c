//! The agent's packet loop: tunnel sockets → decapsulate → TUN, and TUN → rewrite → client.
//!
//! One thread owns the [`DataPath`], the TUN device, the raw receivers and the sender. It
//! waits in `poll(2)` on all of them (100 ms at most, so it sees a stop or a new service
//! table promptly), then drains up to [`BATCH`] packets from each ready descriptor:
//! - from a raw receiver: [`DataPath::decap`]; `Deliver` → written into the TUN device, so the
//!   host's kernel delivers it to the backend (a local process or a namespace behind the host)
//!   exactly as if it had arrived from the client;
//! - from the TUN device (what the capture rules routed there: a backend's replies and ICMP
//!   errors): [`DataPath::snat`]; `Send` → sent toward the client from the VIP; `Pass` → sent
//!   on unchanged (the kernel routed it to us, so dropping it would lose it; the mark keeps
//!   it from being captured again).
//!
//! A new service table (reload) arrives on a channel and is adopted between batches, keeping
//! the counters ([`DataPath::replace_table`]): no packet is lost to a reload. The counters are
//! published to the control plane every [`PUBLISH_EVERY`].
//!
//! Per packet this does two system calls (receive, send) and no allocation: the agent carries
//! one host's share of the traffic of its own backends, not a MUX's line rate.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::raw::{RawReceiver, RawSender};
use super::sys::poll_readable;
use super::tun::Tun;
use crate::control::state::IoCountersSnapshot as IoCounters;
use crate::dataplane::{DataPath, ServiceTable, Verdict};

/// Packets drained from one descriptor before the others get a turn.
pub const BATCH: usize = 64;
/// How long `poll` waits before the loop looks at the stop flag and the table channel.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the counters are published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Largest IP packet plus room for a rebuilt IPv6 header.
const BUF_LEN: usize = 65_536 + 64;

/// Everything the loop owns.
#[derive(Debug)]
pub struct Forwarder {
    tun: Tun,
    receivers: Vec<RawReceiver>,
    sender: RawSender,
    datapath: DataPath,
    io: IoCounters,
    buf: Vec<u8>,
}

impl Forwarder {
    /// A forwarder over open devices.
    pub fn new(
        tun: Tun,
        receivers: Vec<RawReceiver>,
        sender: RawSender,
        table: ServiceTable,
    ) -> Self {
        Forwarder {
            tun,
            receivers,
            sender,
            datapath: DataPath::new(table),
            io: IoCounters::default(),
            buf: vec![0; BUF_LEN],
        }
    }

    /// Opens the four tunnel receivers (IPv4 and IPv6 outer, protocols 4 and 41); a family
    /// the host does not have is skipped with a warning.
    pub fn open_receivers() -> io::Result<Vec<RawReceiver>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for protocol in [4u8, 41] {
                match RawReceiver::open(v6, protocol) {
                    Ok(r) => out.push(r),
                    Err(e) if v6 => {
                        tracing::warn!(error = %e, protocol, "no IPv6 tunnel socket; IPv6 outer headers are not received");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Runs until `stop` is set. Adopts tables from `tables`; hands the counters to
    /// `publish` every [`PUBLISH_EVERY`] and once more before returning.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        tables: &Receiver<ServiceTable>,
        mut publish: impl FnMut(&DataPath, &IoCounters),
    ) {
        let mut fds: Vec<_> = self.receivers.iter().map(RawReceiver::raw_fd).collect();
        fds.push(self.tun.raw_fd());
        let tun_index = fds.len() - 1;
        let mut ready = Vec::with_capacity(fds.len());
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            while let Ok(table) = tables.try_recv() {
                self.datapath.replace_table(table);
            }
            if let Err(e) = poll_readable(&fds, POLL_TIMEOUT, &mut ready) {
                tracing::error!(error = %e, "poll failed");
                std::thread::sleep(POLL_TIMEOUT);
                continue;
            }
            for (i, &is_ready) in ready.iter().enumerate() {
                if !is_ready {
                    continue;
                }
                if i == tun_index {
                    self.drain_tun();
                } else {
                    self.drain_tunnel(i);
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                publish(&self.datapath, &self.io);
                last_publish = Instant::now();
            }
        }
        publish(&self.datapath, &self.io);
    }

    /// Inbound: up to [`BATCH`] tunnel packets from receiver `i`.
    fn drain_tunnel(&mut self, i: usize) {
        for _ in 0..BATCH {
            let n = match self.receivers[i].recv(&mut self.buf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    self.io.rx_errors += 1;
                    tracing::debug!(error = %e, "tunnel receive failed");
                    return;
                }
            };
            self.io.rx_packets += 1;
            if let Verdict::Deliver { offset, len } = self.datapath.decap(&mut self.buf[..n]) {
                match self.tun.write(&self.buf[offset..offset + len]) {
                    Ok(()) => self.io.tun_tx += 1,
                    Err(e) => {
                        self.io.tun_tx_errors += 1;
                        tracing::debug!(error = %e, "TUN write failed");
                    }
                }
            }
        }
    }

    /// Outbound: up to [`BATCH`] captured packets from the TUN device.
    fn drain_tun(&mut self) {
        for _ in 0..BATCH {
            let n = match self.tun.read(&mut self.buf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    self.io.tun_rx_errors += 1;
                    tracing::debug!(error = %e, "TUN read failed");
                    return;
                }
            };
            self.io.tun_rx += 1;
            let out = match self.datapath.snat(&mut self.buf[..n]) {
                Verdict::Send { len } => len,
                Verdict::Pass => n,
                Verdict::Drop(_) | Verdict::Deliver { .. } => continue,
            };
            match self.sender.send(&self.buf[..out]) {
                Ok(()) => self.io.tx_packets += 1,
                Err(e) => {
                    self.io.tx_errors += 1;
                    tracing::debug!(error = %e, "send toward the client failed");
                }
            }
        }
    }
}
