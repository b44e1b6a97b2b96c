//! Opening the packet ports: one worker thread per queue, each opening its own port.
//!
//! Each worker opens its port on its own thread (so a pinned CPU applies to the port's setup),
//! reports the outcome on a channel, and then runs its loop until told to stop. AF_XDP
//! sockets are registered in the XDP program's XSKMAP as their workers report them, before
//! any traffic is steered to them. If any port fails to open, every started worker is stopped
//! and the daemon refuses to start.

use std::hash::{BuildHasher, Hasher};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{IoKind, MuxConfig};
use mux_ports::Port;
use mux_ports::afpacket::{AfPacketConfig, AfPacketPort};
use mux_ports::afxdp::{AfXdpConfig, AfXdpPort, XdpProgram};
use mux_ports::mem::{Capture, MemPort};

#[cfg(feature = "dpdk")]
use crate::control::dpdk_io;
use crate::control::state::DaemonState;
use crate::dataplane::flow_log::FlowLogSink;
use crate::dataplane::pipeline::Pipeline;
use crate::dataplane::worker::{IdlePolicy, Worker};

use super::DaemonError;

/// How long start-up waits for the workers to open their ports.
const WORKER_START_WAIT: Duration = Duration::from_secs(10);

/// What a worker thread reports once its port is open (or failed to open).
type Opened = Result<(usize, Option<RawFd>), String>;

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Stops every worker and waits for it to finish its last burst.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.handles {
            let _ = w.join();
        }
    }
}

/// Starts one worker per `[dataplane] workers`, waits until each has opened its port, and
/// registers AF_XDP sockets with `xdp`. `flow_logs` holds one sink per worker, in worker order,
/// with `[flow_log]`, and is empty without it.
pub fn start_workers(
    cfg: &MuxConfig,
    state: &Arc<DaemonState>,
    flow_logs: Vec<FlowLogSink>,
    xdp: Option<&mut XdpProgram>,
    #[cfg(feature = "dpdk")] dpdk: Option<&Arc<mux_ports::dpdk::DpdkRuntime>>,
) -> Result<Workers, DaemonError> {
    let dp = cfg.dataplane();
    let io = dp.io();
    let stop = Arc::new(AtomicBool::new(false));
    let (opened_tx, opened_rx) = mpsc::channel::<Opened>();
    let mut handles = Vec::new();
    let seed_source = std::collections::hash_map::RandomState::new();
    let cpus = dp.cpus();
    let mut flow_logs = flow_logs.into_iter();
    for index in 0..dp.workers() {
        let seed = {
            let mut h = seed_source.build_hasher();
            h.write_usize(index);
            h.finish()
        };
        let ctx = WorkerCtx {
            index,
            cpu: cpus.as_ref().and_then(|c| c.get(index).copied()),
            flow_capacity: dp.flow_table_capacity(),
            burst: dp.burst_size(),
            idle: IdlePolicy::from_config(dp),
            seed,
            state: Arc::clone(state),
            stop: Arc::clone(&stop),
            opened: opened_tx.clone(),
            flow_log: flow_logs.next(),
        };
        let iface = dp.interface().unwrap_or_default().to_string();
        let handle = match io {
            IoKind::Afpacket => {
                let group = (std::process::id() & 0xffff) as u16;
                spawn_worker(ctx, move || {
                    let config = AfPacketConfig {
                        fanout_group: Some(group),
                        ..AfPacketConfig::default()
                    };
                    AfPacketPort::open(&iface, &config)
                        .map(|p| (p, None))
                        .map_err(|e| e.to_string())
                })
            }
            IoKind::Afxdp => spawn_worker(ctx, move || {
                let port = AfXdpPort::open(&iface, index as u32, &AfXdpConfig::default())
                    .map_err(|e| e.to_string())?;
                let fd = port.fd();
                Ok((port, Some(fd)))
            }),
            #[cfg(feature = "dpdk")]
            IoKind::Dpdk => {
                let runtime = Arc::clone(dpdk.expect("started before the workers for io = dpdk"));
                spawn_worker(ctx, move || {
                    dpdk_io::open_port(runtime, index).map(|p| (p, None))
                })
            }
            #[cfg(not(feature = "dpdk"))]
            IoKind::Dpdk => unreachable!("refused before the workers without the dpdk feature"),
            IoKind::Mem => spawn_worker(ctx, || Ok((MemPort::new(64, Capture::CountOnly), None))),
        };
        handles.push(handle.map_err(|e| DaemonError::Worker { index, source: e })?);
    }
    drop(opened_tx);
    let workers = Workers { handles, stop };
    match await_ports(&opened_rx, workers.handles.len(), xdp) {
        Ok(()) => Ok(workers),
        Err(e) => {
            workers.stop();
            Err(e)
        }
    }
}

/// Waits for every worker's report; AF_XDP sockets join the XSKMAP before traffic is steered.
fn await_ports(
    opened: &mpsc::Receiver<Opened>,
    count: usize,
    mut xdp: Option<&mut XdpProgram>,
) -> Result<(), DaemonError> {
    let deadline = Instant::now() + WORKER_START_WAIT;
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = opened
            .recv_timeout(left)
            .map_err(|_| "a worker did not open its port in time".to_string())
            .and_then(|r| r);
        match report {
            Ok((queue, Some(fd))) => {
                if let Some(program) = xdp.as_deref_mut() {
                    program.register_socket(queue as u32, fd).map_err(|e| {
                        DaemonError::XskRegister {
                            queue,
                            message: e.to_string(),
                        }
                    })?;
                }
            }
            Ok(_) => {}
            Err(message) => return Err(DaemonError::PortOpen(message)),
        }
    }
    Ok(())
}

/// What a worker thread needs.
struct WorkerCtx {
    index: usize,
    cpu: Option<usize>,
    flow_capacity: usize,
    burst: usize,
    idle: IdlePolicy,
    seed: u64,
    state: Arc<DaemonState>,
    stop: Arc<AtomicBool>,
    opened: mpsc::Sender<Opened>,
    flow_log: Option<FlowLogSink>,
}

/// Starts a worker thread that opens its port with `open` and runs until stopped.
fn spawn_worker<P, F>(ctx: WorkerCtx, open: F) -> std::io::Result<JoinHandle<()>>
where
    P: Port,
    F: FnOnce() -> Result<(P, Option<RawFd>), String> + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("mux-worker-{}", ctx.index))
        .spawn(move || {
            if let Some(cpu) = ctx.cpu
                && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
            {
                tracing::warn!(
                    worker = ctx.index,
                    cpu,
                    "could not pin the worker to its CPU"
                );
            }
            let (port, fd) = match open() {
                Ok(opened) => opened,
                Err(e) => {
                    let _ = ctx.opened.send(Err(format!("worker {}: {e}", ctx.index)));
                    return;
                }
            };
            let mut pipeline = Pipeline::new(ctx.flow_capacity, ctx.seed);
            if let Some(sink) = ctx.flow_log {
                pipeline = pipeline.with_flow_log(sink);
            }
            let mut worker = Worker::new(port, pipeline, ctx.burst).with_idle(ctx.idle);
            let _ = ctx.opened.send(Ok((ctx.index, fd)));
            worker.run(
                &ctx.state.snapshot,
                &ctx.state.workers[ctx.index],
                &ctx.stop,
                ctx.state.started,
            );
        })
}
