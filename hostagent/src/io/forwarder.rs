//! The agent's packet loop: tunnel sockets → decapsulate → TUN, and TUN → rewrite → client.
//!
//! One thread owns the [`DataPath`], the TUN device, the raw receivers and the sender. It
//! waits in `poll(2)` on all of them (100 ms at most, so it sees a stop or a new service
//! table promptly), then drains up to [`BATCH`] packets from each ready descriptor:
//! - from a raw receiver: [`DataPath::decap`]; `Deliver` → written into the TUN device, so the
//!   host's kernel delivers it to the backend (a local process or a namespace behind the host)
//!   exactly as if it had arrived from the client; `Forward` (second chance) → the new outer
//!   header and the untouched inner packet sent to the alternative's agent with one gathered
//!   send on the marked raw socket (so the agent's own capture rules never see it);
//! - from the TUN device (what the capture rules routed there: a backend's replies and ICMP
//!   errors): [`DataPath::snat`]; `Send` → sent toward the client from the VIP; `Pass` → sent
//!   on unchanged (the kernel routed it to us, so dropping it would lose it; the mark keeps
//!   it from being captured again).
//!
//! A new service table (reload) arrives on a channel and is adopted between batches, keeping
//! the counters and the connections ([`DataPath::replace_table`]): no packet is lost to a
//! reload. The counters are published to the control plane every [`PUBLISH_EVERY`].
//!
//! Between batches the loop also sets the data path's clock (whole seconds since the
//! forwarder started) and runs one step of the connection sweep: a slice of
//! `buckets / SWEEP_STEPS` buckets per iteration (at most `MAX_SWEEP_BUCKETS`), whose expired
//! entries are cleared and whose live ones are copied into a snapshot buffer; while a pass is
//! in progress an idle loop polls every 10 ms, so a pass of the default table ends within
//! 0.1 s and one of the largest within about 1.3 s. A pass starts at most every [`SAVE_EVERY`];
//! the finished snapshot goes to the state writer thread (`state_file`), which writes the file
//! off this thread and hands the buffer back — two buffers in all, so a slow disk makes the
//! loop skip a pass, never queue or block. At stop, one last full pass is sent before the
//! loop returns.
//!
//! Per packet this does two system calls (receive, send) and no allocation: the agent carries
//! one host's share of the traffic of its own backends, not a MUX's line rate.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use super::raw::{RECV_BUF_LEN, RawReceiver, RawSender};
use super::state_file::{Snapshot, StateLink};
use super::tun::Tun;
use crate::control::state::IoCountersSnapshot as IoCounters;
use crate::dataplane::{ConnRecord, DataPath, ServiceTable, Verdict};
use mux_ports::sys::poll_readable;

/// Packets drained from one descriptor before the others get a turn.
pub const BATCH: usize = 64;
/// How long `poll` waits before the loop looks at the stop flag and the table channel.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the counters are published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How often a pass of the connection sweep starts (and so how often the state file is
/// written).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// A pass takes at least this many loop iterations: each visits `buckets / SWEEP_STEPS`
/// buckets (at most [`MAX_SWEEP_BUCKETS`]).
const SWEEP_STEPS: usize = 8;
/// The most buckets one iteration sweeps (1 MiB of buckets, some 100–200 µs): a large table
/// takes more iterations rather than longer ones, so a burst never waits long behind it.
const MAX_SWEEP_BUCKETS: usize = 16_384;
/// How long `poll` waits while a pass is in progress: an idle loop wakes often enough to
/// finish a pass of the largest table (128 steps) in about 1.3 s.
const SWEEP_POLL_TIMEOUT: Duration = Duration::from_millis(10);

/// The connection sweep and the state file's snapshots.
#[derive(Debug)]
struct Sweep {
    link: Option<StateLink>,
    /// The snapshot being filled by the pass in progress (`None`: no pass running).
    filling: Option<Vec<ConnRecord>>,
    /// A buffer ready for the next pass.
    spare: Option<Vec<ConnRecord>>,
    /// Buffers handed out in all (two at most).
    buffers: usize,
    cursor: usize,
    step: usize,
    last_start: Option<Instant>,
}

impl Sweep {
    /// A free buffer, if one is here or back from the writer (two exist at most).
    fn buffer(&mut self) -> Option<Vec<ConnRecord>> {
        if let Some(b) = self.spare.take() {
            return Some(b);
        }
        if let Some(b) = self.link.as_ref().and_then(|l| l.spares.try_recv().ok()) {
            return Some(b);
        }
        (self.buffers < 2).then(|| {
            self.buffers += 1;
            Vec::new()
        })
    }

    /// Hands a finished snapshot to the writer; keeps the buffer if it cannot take it.
    fn send(&mut self, records: Vec<ConnRecord>) {
        let Some(link) = &self.link else {
            self.spare = Some(records);
            return;
        };
        let snapshot = Snapshot {
            records,
            taken: SystemTime::now(),
        };
        match link.snapshots.try_send(snapshot) {
            Ok(()) => {}
            Err(TrySendError::Full(s)) | Err(TrySendError::Disconnected(s)) => {
                let mut records = s.records;
                records.clear();
                self.spare = Some(records);
            }
        }
    }
}

/// Everything the loop owns.
#[derive(Debug)]
pub struct Forwarder {
    tun: Tun,
    receivers: Vec<RawReceiver>,
    sender: RawSender,
    datapath: DataPath,
    io: IoCounters,
    buf: Vec<u8>,
    started: Instant,
    sweep: Sweep,
}

impl Forwarder {
    /// A forwarder over open devices and a data path (whose connection table may already hold
    /// the connections restored from the state file). Snapshots of the table go to `state`
    /// (`None`: the table is swept for expiries but not saved).
    pub fn new(
        tun: Tun,
        receivers: Vec<RawReceiver>,
        sender: RawSender,
        datapath: DataPath,
        state: Option<StateLink>,
    ) -> Self {
        let step = datapath
            .connections()
            .buckets()
            .div_ceil(SWEEP_STEPS)
            .clamp(1, MAX_SWEEP_BUCKETS);
        Forwarder {
            tun,
            receivers,
            sender,
            datapath,
            io: IoCounters::default(),
            buf: vec![0; RECV_BUF_LEN],
            started: Instant::now(),
            sweep: Sweep {
                link: state,
                filling: None,
                spare: None,
                buffers: 0,
                cursor: 0,
                step,
                last_start: None,
            },
        }
    }

    /// Sets the data path's clock: whole seconds since the forwarder was built.
    fn tick(&mut self) {
        let secs = self.started.elapsed().as_secs();
        self.datapath
            .set_clock(u32::try_from(secs).unwrap_or(u32::MAX));
    }

    /// One step of the connection sweep (see the module documentation).
    fn sweep_step(&mut self) {
        if self.sweep.filling.is_none() {
            let due = self
                .sweep
                .last_start
                .is_none_or(|t| t.elapsed() >= SAVE_EVERY);
            if !due {
                return;
            }
            let Some(buffer) = self.sweep.buffer() else {
                return; // both buffers are with the writer: skip this pass
            };
            self.sweep.filling = Some(buffer);
            self.sweep.cursor = 0;
            self.sweep.last_start = Some(Instant::now());
        }
        let done = self.datapath.sweep_connections(
            &mut self.sweep.cursor,
            self.sweep.step,
            self.sweep.filling.as_mut(),
        );
        if done && let Some(records) = self.sweep.filling.take() {
            self.sweep.send(records);
        }
    }

    /// At stop: one complete pass, sent to the writer (which writes it before the daemon
    /// exits), then the link is dropped so the writer ends.
    fn final_save(&mut self) {
        self.tick();
        let mut records = match self.sweep.filling.take() {
            Some(mut r) => {
                r.clear();
                r
            }
            None => self.sweep.buffer().unwrap_or_default(),
        };
        let mut cursor = 0;
        self.datapath
            .sweep_connections(&mut cursor, usize::MAX, Some(&mut records));
        if let Some(link) = self.sweep.link.take() {
            let snapshot = Snapshot {
                records,
                taken: SystemTime::now(),
            };
            // Blocking is fine now: no packet is waiting on this thread any more.
            let _ = link.snapshots.send(snapshot);
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
            self.tick();
            self.sweep_step();
            let timeout = if self.sweep.filling.is_some() {
                SWEEP_POLL_TIMEOUT
            } else {
                POLL_TIMEOUT
            };
            if let Err(e) = poll_readable(&fds, timeout, &mut ready) {
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
        self.final_save();
        publish(&self.datapath, &self.io);
    }

    /// Inbound: up to [`BATCH`] tunnel packets from receiver `i`.
    fn drain_tunnel(&mut self, i: usize) {
        for _ in 0..BATCH {
            let packet = match self.receivers[i].recv(&mut self.buf) {
                Ok(Some(range)) => range,
                Ok(None) => return,
                Err(e) => {
                    self.io.rx_errors += 1;
                    tracing::debug!(error = %e, "tunnel receive failed");
                    return;
                }
            };
            self.io.rx_packets += 1;
            let start = packet.start;
            let Some(buf) = self.buf.get_mut(packet) else {
                continue;
            };
            match self.datapath.decap(buf) {
                Verdict::Deliver { offset, len } => {
                    let inner = &self.buf[start + offset..start + offset + len];
                    match self.tun.write(inner) {
                        Ok(()) => self.io.tun_tx += 1,
                        Err(e) => {
                            self.io.tun_tx_errors += 1;
                            tracing::debug!(error = %e, "TUN write failed");
                        }
                    }
                }
                Verdict::Forward {
                    header,
                    offset,
                    len,
                } => {
                    let inner = &self.buf[start + offset..start + offset + len];
                    match self.sender.send_parts(header.as_bytes(), inner) {
                        Ok(()) => {
                            self.io.tx_packets += 1;
                            self.io.forwarded_tx += 1;
                        }
                        Err(e) => {
                            self.io.tx_errors += 1;
                            tracing::debug!(error = %e, "second-chance forward failed");
                        }
                    }
                }
                Verdict::Send { .. } | Verdict::Pass | Verdict::Drop(_) => {}
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
                Verdict::Drop(_) | Verdict::Deliver { .. } | Verdict::Forward { .. } => continue,
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
