//! `perf`: benchmark drivers for mux.
//!
//! Subcommands:
//! - `pipeline` — the in-process benchmark of the real worker loop (see [`perf::runner`]).
//! - `idle` — an idle `mux run`'s CPU and first-packet latency (see [`perf::idle`]).
//! - `table-fill` — the flow table filled to 50–99 % of its capacity (see [`perf::table_fill`]).
//! - `demo-capture` — writes the deterministic demo pcap (see [`perf::demo`]).
//! - `gen`, `sink`, `lab-summary` — the namespace lab's traffic generator, its validating sink
//!   and its verdict (see [`perf::traffic`]).
//! - `http-backend`, `http-load`, `http-summary`, `http-soak`, `chaos-summary` — real HTTP
//!   through the lab: the backend, the load and soak clients and the verdicts of the HTTP and
//!   chaos rounds (see [`perf::http`]).
//! - `hop-latency` — the extra latency of second-chance forwarded packets, from captures (see
//!   [`perf::hop_latency`]).
//! - `udp-backend` — the lab's UDP backend, answering each datagram with its name and the
//!   request's `seq` (see [`perf::http::udp`]).
//!
//! The criterion micro-benchmarks (`parse`, `flow_table`, `maglev`) live in `perf/benches/`
//! and run with `cargo bench -p perf`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use perf::runner::{self, Settings};
use perf::scenario::{MAX_FLOWS, Scenario};
use perf::traffic::{self, Prefix, Service};

/// Benchmark drivers for the mux L4 load balancer.
#[derive(Debug, Parser)]
#[command(name = "perf", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the real worker loop on one core, per scenario.
    ///
    /// Pre-builds the frames of each scenario, then runs `Worker::poll` (parse, VIP match,
    /// flow table, Maglev, IP-in-IP encapsulation) over an in-memory port that replays them in
    /// a loop, on the calling thread. Prints packets, Mpps, ns/packet, the ratio to a baseline
    /// (a MAC-swapping forwarder over the same port, measured in the same run) and the
    /// pipeline counters that show the work was real.
    ///
    /// Scenarios (16 VIPs × 64 backends each):
    ///   baseline     MAC swap only: the floor of the I/O path (always runs, first)
    ///   established  60-byte IPv4 TCP ACKs of warmed flows: every packet a flow-table hit
    ///   new-flows    60-byte IPv4 TCP SYNs: every packet a miss, a Maglev pick and an insert
    ///   new-flows-logged  the same with a flow log ([flow_log] sample = 1): each new flow
    ///                also queues its record in the worker's ring (a thread empties it)
    ///   mixed        9 ACKs of established flows to 1 SYN of a new flow
    ///   ipv6         74-byte IPv6 TCP ACKs, IPv6 VIPs to IPv6 backends: hits
    ///   second-chance        60-byte TCP ACKs without entries after a backend change: every
    ///                        packet a miss that names an alternative (previous table, entry,
    ///                        option)
    ///   second-chance-flows  the same flows once their second-chance entries exist
    ///
    /// Build with `--release` (figures from a debug build mean nothing). For stable figures
    /// run on a quiet machine and pin the thread: `taskset -c 1 target/release/perf pipeline`.
    ///
    /// `--workers N` also runs each scenario on N workers at once, one per allowed CPU
    /// (pinned; do not narrow them with taskset), flows split over them by RSS, and prints the
    /// aggregate rate next to the single worker's, measured in the same run:
    /// `target/release/perf pipeline --workers 2 --scenario established`.
    #[command(verbatim_doc_comment)]
    Pipeline(PipelineArgs),
    /// Fill one flow table with random flows to 50/75/90/95/99 % of its capacity.
    ///
    /// At each level: the flows the step lost (evicted, or refused: table-full), the searches
    /// and moves the table made to find room, ns per insert (hash, prefetch, miss, insert, in
    /// bursts of 32) and ns per lookup of a live flow (hash, prefetch, hit). Newcomers come as
    /// SYNs established after their burst (no room: refused) and, on a second table, as
    /// established flows (no room: evicted). The table promises no loss up to 90 % and under
    /// 1 % up to 95 %: a run that breaks it warns and exits 1.
    ///
    ///   taskset -c 1 target/release/perf table-fill
    ///   taskset -c 1 target/release/perf table-fill --capacity 4194304
    #[command(verbatim_doc_comment)]
    TableFill(TableFillArgs),
    /// Measure an idle MUX: its CPU use, and the latency the first packet after idling pays.
    ///
    /// For each --io and --idle: builds a throw-away namespace with a veth pair, runs `mux run`
    /// on one end (one worker, one VIP), waits until a probe comes back encapsulated, measures
    /// the daemon's CPU over --seconds of silence (/proc/PID/stat utime+stime, and the worker
    /// thread's schedstat), then times --probes single SYNs sent after --gap-ms of silence
    /// each and as many sent back to back (RX -> MUX -> TX, seen from the peer end). Deletes
    /// the namespace. Needs root and `ip`.
    ///
    ///   cargo build --release -p mux -p perf
    ///   target/release/perf idle
    #[command(verbatim_doc_comment)]
    Idle(IdleArgs),
    /// Measure the worker loop on DPDK virtual devices against the I/O floor (feature `dpdk`).
    ///
    /// On one core, over net_null (RX allocates, TX frees) and net_ring (mbufs circulate in a
    /// loopback ring): first a MAC-swapping forwarder (the floor), then the real worker loop
    /// with warmed flows (scenario established), each for --seconds. Both see the same
    /// pre-built frames written into the received mbufs. Prints Mpps, ns/packet and the ratio.
    /// The EAL starts once per process: run with and without --hugepages separately
    /// (hugepages need `echo 512 > /proc/sys/vm/nr_hugepages`).
    ///
    ///   cargo run --release -p perf --features dpdk -- dpdk
    ///   cargo run --release -p perf --features dpdk -- dpdk --hugepages
    #[cfg(feature = "dpdk")]
    #[command(verbatim_doc_comment)]
    Dpdk(DpdkArgs),
    /// Write the deterministic demo capture for `configs/mux.demo.toml`.
    ///
    /// About 55 frames over 3.4 s: TCP connections to `web`, UDP to `dns`, IPv6 TCP to
    /// `web6`, fragments, an ICMP error about a flow, oversize packets with and without DF,
    /// non-VIP traffic and malformed frames. Check it with
    /// `mux replay --config configs/mux.demo.toml --input configs/demo.pcap --output out.pcap`.
    DemoCapture {
        /// Where to write the capture (created or truncated).
        #[arg(long, default_value = "configs/demo.pcap")]
        output: PathBuf,
    },
    /// Send N flows toward a VIP (or any address) on an interface, for a duration.
    ///
    /// Frames are built before sending and go out through an AF_PACKET socket, flows
    /// round-robin, by default --batch consecutive frames (several flows) per sendmmsg call. The flow list is reproducible from --seed; the report (JSON) lists it with
    /// the packets sent, the drops on transmit and the rate achieved. Needs CAP_NET_RAW.
    ///
    /// Example (the lab's client namespace):
    ///   perf gen --netns mlab-client --interface eth0 --src-mac 02:00:0a:00:01:02 \
    ///     --dst-mac 02:00:0a:00:01:01 --vip 192.0.2.10:80/tcp --flows 1000 --rate 20000 \
    ///     --duration 3 --syn-ack-mix --report gen.json
    #[command(verbatim_doc_comment)]
    Gen(GenArgs),
    /// Count and validate the IP-in-IP packets arriving on an interface, for a duration.
    ///
    /// Checks each encapsulated packet (outer checksum, outer length = inner + 20, inner packet
    /// untouched and addressed to a --vip) and records per inner flow which backend (outer
    /// destination) and which MUX (outer source) carried it. Plain IP packets are counted too
    /// (the baseline). Stops by itself after --duration and writes the report (JSON).
    Sink(SinkArgs),
    /// Serve HTTP as a lab backend: every answer names this backend and the client address it
    /// saw (`{"backend", "client", "local"}`); `/healthz` is 200, or 503 while --fail-file
    /// exists. Keep-alive; stops on SIGTERM/SIGINT or after --duration.
    HttpBackend {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The name answers carry (the lab uses the backend's DIP).
        #[arg(long)]
        name: String,
        /// While this file exists, /healthz answers 503.
        #[arg(long, value_name = "PATH")]
        fail_file: Option<PathBuf>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Serve UDP as a lab backend: every datagram `{"seq": N}` (or the bare decimal N) is
    /// answered by one datagram `{"backend": NAME, "client": "IP:PORT", "seq": N}`, `client`
    /// being the source address the backend saw; anything else is counted and not answered.
    /// Stops on SIGTERM/SIGINT or after --duration.
    ///
    ///   perf udp-backend --listen 10.0.21.2:53 --name 10.0.21.2
    ///   echo 5 | nc -u -w1 10.0.21.2 53      # {"backend":"10.0.21.2","client":"…","seq":5}
    #[command(verbatim_doc_comment)]
    UdpBackend {
        /// Address (IP:PORT) to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The name answers carry (the lab uses the backend's DIP).
        #[arg(long)]
        name: String,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Load a VIP with real HTTP: keep-alive connections, then one-request connections;
    /// prints responses per backend, failures, the client address backends saw, latency.
    HttpLoad {
        /// The VIP address and port.
        #[arg(long)]
        target: std::net::SocketAddr,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Requests per keep-alive connection.
        #[arg(long, default_value_t = 10)]
        requests_per_connection: usize,
        /// One-request connections (`Connection: close`).
        #[arg(long, default_value_t = 200)]
        new_connections: usize,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Timeout of each connect and each request, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Backends must report this client address.
        #[arg(long)]
        expect_client: Option<std::net::IpAddr>,
        /// Write the report as JSON here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Exit 1 when a request failed or a backend saw another client address.
        #[arg(long)]
        check: bool,
    },
    /// Hold keep-alive connections to a VIP through a fault, and keep opening new ones.
    ///
    /// Opens --connections keep-alive connections (64 connects in flight at most), sends one
    /// request on each, then writes --ready-file (its content: the unix ms time) and runs for
    /// --duration-s from then. Each connection sends `GET /` every --interval-ms; its first
    /// failure (timeout, reset, EOF, bad status, malformed body) marks it broken (with the time
    /// the failing request was sent, the reason and its last backend) and it is closed, never
    /// reopened. Meanwhile --new-per-second one-request connections are attempted. With
    /// --udp-flows, that many long-lived UDP flows (a socket each, like QUIC) are answered once
    /// during setup and then send `{"seq": N}` every --udp-interval-ms to the same end; a flow
    /// answered by another backend than its first, or by none for --udp-dead-ms, is broken
    /// (the report's `udp` object). All times in the report are unix ms, to compare with the
    /// lab script's `date +%s%3N`.
    ///
    /// Exits 0 when the run happened, whatever failed (failures are data); 1 when no
    /// connection nor UDP flow could be established (the report is still written) or a file
    /// could not be written.
    ///
    ///   perf http-soak --target 192.0.2.10:80 --connections 200 --interval-ms 100 \
    ///     --duration-s 14 --new-per-second 20 --ready-file ready --report soak.json \
    ///     --udp-target 192.0.2.10:53 --udp-flows 200
    #[command(verbatim_doc_comment)]
    HttpSoak(SoakArgs),
    /// Evaluate the chaos rounds of a lab results directory and print one table of them.
    ///
    /// Reads every RESULTS/NN-name/ holding a chaos.json (the fault, its times and the
    /// round's expectations, written by scripts/lab), with its soak.json (`perf http-soak`)
    /// and routes.log (the router's `ip monitor route` lines, each prefixed with its unix ms).
    /// Prints per round: failed requests, broken connections, failed new connections in the
    /// fault's window / outside it, slow new connects, the slowest request, when the VIP's
    /// route lost a path after the fault and got it back after the recovery, a drain's flows
    /// left; then each round's checks ([ ok ] / [FAIL] with the figures) and the total.
    #[command(verbatim_doc_comment)]
    ChaosSummary {
        /// The results directory.
        results: PathBuf,
        /// Exit 1 when any check failed.
        #[arg(long)]
        check: bool,
        /// Also write the figures and checks of every round as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// The VIP whose route events count in routes.log (other prefixes are ignored).
        #[arg(long, default_value = "192.0.2.10")]
        vip: std::net::IpAddr,
    },
    /// The extra latency of second-chance forwarded packets, read off packet captures.
    ///
    /// Reads Ethernet pcaps that see both transmissions of a forwarded packet (in the lab:
    /// the router's interfaces toward the hosts, captured outbound): the MUX's, carrying the
    /// alternative (`hops` 0), and the agent's forward (`forwarded` set). Matches the two by
    /// the inner packet and prints how many were forwarded and the time between the two
    /// transmissions (p50/p99/max): what the hop adds. `scripts/lab second-chance` runs it
    /// per case.
    ///
    ///   perf hop-latency router-to-host1.pcap router-to-host2.pcap --json hop.json
    #[command(verbatim_doc_comment)]
    HopLatency {
        /// The captures (pcap, Ethernet), merged in time order.
        #[arg(required = true)]
        captures: Vec<PathBuf>,
        /// Also write the figures as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// One phase of the lab's imbalance round: HEAVY downloads at once (each
    /// `GET /stream?bytes=B&rate=R`, from client ports the static Maglev table of the VIP in
    /// --config sends to --heavy-backend), plus --light-per-second new one-request
    /// connections, for --duration-s; reads each --agent's /v1/backends once a second. Writes
    /// the phase's report (JSON) to --report (perf/src/http/imbalance.rs).
    ///
    ///   perf http-imbalance --phase static --target 192.0.2.10:8000 --client 10.0.1.2 \
    ///     --config mux.toml --heavy-backend 10.0.21.2 --agent 10.0.21.2:9200 \
    ///     --agent 10.0.22.2:9200 --duration-s 80 --report imbalance.json
    #[command(verbatim_doc_comment)]
    HttpImbalance {
        /// The phase's name (static, load-aware).
        #[arg(long)]
        phase: String,
        /// The VIP and port.
        #[arg(long)]
        target: std::net::SocketAddr,
        /// This client's address (the source the MUX hashes).
        #[arg(long)]
        client: std::net::IpAddr,
        /// A MUX config holding the VIP: its static table picks the heavy ports.
        #[arg(long)]
        config: PathBuf,
        /// The backend the heavy ports hash to under the static table.
        #[arg(long)]
        heavy_backend: std::net::IpAddr,
        /// Client ports the heavy downloads may use, FIRST-LAST (below the ephemeral range).
        #[arg(long, default_value = "10000-32767")]
        heavy_ports: String,
        /// Heavy downloads at once.
        #[arg(long, default_value_t = 8)]
        heavy: usize,
        /// Bytes per heavy download.
        #[arg(long, default_value_t = 2_000_000)]
        heavy_bytes: u64,
        /// Pace of each heavy download, bytes per second.
        #[arg(long, default_value_t = 500_000)]
        heavy_rate: u64,
        /// New light connections per second.
        #[arg(long, default_value_t = 40.0)]
        light_per_second: f64,
        /// Seconds the phase sends.
        #[arg(long)]
        duration_s: f64,
        /// A host agent's admin endpoint (repeat).
        #[arg(long)]
        agent: Vec<std::net::SocketAddr>,
        /// Connect and read timeout, ms.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Where the report goes.
        #[arg(long)]
        report: PathBuf,
    },
    /// The imbalance round's summary: RESULTS/static and RESULTS/load-aware side by side
    /// (the agents' per-backend load averaged over the last --measure-s of each phase, its
    /// max/avg, Prometheus's recording rules, the MUXes' weights); writes
    /// RESULTS/timeline.svg and, with --json, the figures.
    ImbalanceSummary {
        /// The results directory.
        results: PathBuf,
        /// Seconds averaged at the end of each phase.
        #[arg(long, default_value_t = 60)]
        measure_s: u64,
        /// The MUX VIP names of the two phases.
        #[arg(long, default_value = "imb-static")]
        static_vip: String,
        /// See --static-vip.
        #[arg(long, default_value = "imb-aware")]
        aware_vip: String,
        /// Exit 1 when a check failed.
        #[arg(long)]
        check: bool,
        /// Also write the figures as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Evaluate the HTTP rounds of a lab results directory (scripts/lab's http and failover
    /// rounds) and print the checks.
    HttpSummary {
        /// The results directory.
        results: PathBuf,
        /// Exit 1 when any check failed.
        #[arg(long)]
        check: bool,
    },
    /// Print the verdict of a lab run from its results directory (see scripts/lab).
    ///
    /// Reads lab.json and the rounds' reports (generator, sinks, MUX status before/after)
    /// and prints per round: sent, delivered, loss, Mpps, packets per MUX and per backend,
    /// the round's checks; across rounds: same flow → same backend whichever MUX carried it,
    /// and the MUX path's rate as a ratio of plain Linux forwarding.
    LabSummary {
        /// The results directory.
        results: PathBuf,
        /// Exit 1 when any check failed.
        #[arg(long)]
        check: bool,
        /// Also write the evaluated outcome as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct GenArgs {
    /// Interface to send on.
    #[arg(long)]
    interface: String,
    /// Enter this network namespace (as made by `ip netns add`) first.
    #[arg(long)]
    netns: Option<String>,
    /// Source MAC of the frames (normally the sending interface's own).
    #[arg(long, value_parser = traffic::parse_mac)]
    src_mac: [u8; 6],
    /// Destination MAC (the next router).
    #[arg(long, value_parser = traffic::parse_mac)]
    dst_mac: [u8; 6],
    /// Client addresses are drawn from this prefix.
    #[arg(long, default_value = "198.51.100.0/24")]
    src_net: Prefix,
    /// Destination of every flow: ADDR:PORT/tcp or ADDR:PORT/udp.
    #[arg(long)]
    vip: Service,
    /// Number of distinct flows (source address and port varied).
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    /// Seed of the flow list (same seed, same flows).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Frame length in bytes, FCS excluded (60..=1514).
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// Packets per second; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Send UDP instead of the --vip's protocol (the port stays).
    #[arg(long)]
    udp: bool,
    /// TCP: the first packet of each flow is a SYN, the others ACKs (default: all ACKs).
    #[arg(long)]
    syn_ack_mix: bool,
    /// How frames reach the kernel: `batch` (consecutive packets, hence several flows, per
    /// `sendmmsg` call, --batch at a time) or `single` (one `send` per frame, the old way).
    #[arg(long, default_value = "batch", value_parser = ["batch", "single"])]
    tx: String,
    /// Frames per `sendmmsg` call with --tx batch (1..=64).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// The VIP (or any server) address and port.
    #[arg(long)]
    target: std::net::SocketAddr,
    /// Keep-alive connections to hold.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// Each keep-alive connection sends a request this often, in milliseconds (a request
    /// slower than that is followed right away by the next; missed slots are skipped).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Seconds to run from the moment every connection is set up (the ready file).
    #[arg(long, default_value_t = 14.0)]
    duration_s: f64,
    /// New one-request connections (`Connection: close`) attempted per second during the
    /// run, each on its own thread; 0 for none.
    #[arg(long, default_value_t = 20.0)]
    new_per_second: f64,
    /// Timeout of a whole request (sending it to the last byte of the answer), in ms.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Timeout of each connect, in ms (Linux retransmits a SYN after 1 s, then 2 s more).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout_ms: u64,
    /// Backends must report this client address (besides each connection's own port).
    #[arg(long)]
    expect_client: Option<std::net::IpAddr>,
    /// Written (atomically) with the unix ms time once every connect was attempted and each
    /// established connection answered one request: inject the fault after it appears.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Write the JSON report here (default: stdout, after the summary).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Where the UDP flows send (IP:PORT; a `perf udp-backend`, or the VIP's UDP service).
    #[arg(long, value_name = "IP:PORT")]
    udp_target: Option<std::net::SocketAddr>,
    /// Long-lived UDP flows, each its own socket (source port) for the whole run, set up
    /// with the connections (answered once before the ready file) and run to the same end;
    /// 0 for none. Needs --udp-target.
    #[arg(long, default_value_t = 0)]
    udp_flows: usize,
    /// Each UDP flow sends a datagram this often, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    udp_interval_ms: u64,
    /// A UDP flow answered by nobody for this long, in ms, is broken (`silent`); an answer
    /// from another backend than its first breaks it at once (`backend_changed`). A datagram
    /// not answered within --timeout-ms is lost (late if its answer comes after all).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    udp_dead_ms: u64,
}

#[derive(Debug, Args)]
struct SinkArgs {
    /// Interface to read.
    #[arg(long)]
    interface: String,
    /// Enter this network namespace (as made by `ip netns add`) first.
    #[arg(long)]
    netns: Option<String>,
    /// Seconds to listen.
    #[arg(long)]
    duration: f64,
    /// A VIP the inner packets may be addressed to (repeatable).
    #[arg(long = "vip", required = true)]
    vips: Vec<Service>,
    /// Create this (empty) file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[cfg(feature = "dpdk")]
#[derive(Debug, Args)]
struct DpdkArgs {
    /// Back the EAL with hugepages (default: --no-huge).
    #[arg(long)]
    hugepages: bool,
    /// Seconds per figure.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Distinct flows.
    #[arg(long, default_value_t = 4096)]
    flows: usize,
    /// Frames per burst (1..=256).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=256))]
    burst: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "dpdk")]
fn dpdk(args: DpdkArgs) -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; figures are meaningless (use --release)");
    }
    let settings = perf::dpdk::Settings {
        hugepages: args.hugepages,
        seconds: args.seconds,
        flows: args.flows,
        burst: args.burst as usize,
    };
    let (results, text) = match perf::dpdk::run(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("perf dpdk: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        print!("{text}");
    }
    let warnings: Vec<String> = results.iter().flat_map(perf::dpdk::check).collect();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Packets per timed run [default: 20000000, or 1000000 with --quick].
    #[arg(long, value_name = "N")]
    packets: Option<u64>,
    /// Distinct flows (frames) per scenario [default: 1000000, or 10000 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_FLOWS as u64))]
    flows: Option<u64>,
    /// Run only these scenarios (repeatable); the baseline always runs. Default: all.
    #[arg(long = "scenario", value_name = "NAME", value_enum)]
    scenarios: Vec<Scenario>,
    /// Small sizes for a CI smoke run of a few seconds (10 k flows, 1 M packets per run).
    #[arg(long)]
    quick: bool,
    /// Frames per receive burst (1..=256), as `[dataplane] burst_size`.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=256))]
    burst: u64,
    /// Timed runs per scenario; the median run is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Also run each scenario on this many workers at once, one per CPU (pinned), flows split
    /// by RSS, and print the aggregate next to the single worker's rate of the same run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// The mux binary [default: `mux` next to this perf].
    #[arg(long)]
    mux: Option<PathBuf>,
    /// I/O backends to measure (repeatable) [default: afxdp, afpacket].
    #[arg(long = "io", value_parser = ["afxdp", "afpacket"])]
    ios: Vec<String>,
    /// Idle modes to measure (repeatable) [default: adaptive, busy-poll].
    #[arg(long = "idle", value_parser = ["adaptive", "busy-poll"])]
    modes: Vec<String>,
    /// Seconds of silence over which the idle CPU is measured.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Probes per latency figure.
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// Milliseconds of silence before each idle probe.
    #[arg(long, default_value_t = 200)]
    gap_ms: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

fn idle(args: IdleArgs) -> ExitCode {
    let mux = match args.mux {
        Some(p) => p,
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("mux"),
            Err(e) => {
                eprintln!("perf idle: cannot find the mux binary ({e}): give --mux");
                return ExitCode::FAILURE;
            }
        },
    };
    let or = |v: Vec<String>, d: &[&str]| {
        if v.is_empty() {
            d.iter().map(|s| s.to_string()).collect()
        } else {
            v
        }
    };
    let settings = perf::idle::Settings {
        mux,
        ios: or(args.ios, &["afxdp", "afpacket"]),
        modes: or(args.modes, &["adaptive", "busy-poll"]),
        seconds: args.seconds.max(0.1),
        probes: args.probes.max(1),
        gap: std::time::Duration::from_millis(args.gap_ms),
    };
    match perf::idle::run(&settings, |line| eprintln!("{line}")) {
        Ok(runs) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&runs).unwrap_or_default()
                );
            } else {
                print!("{}", perf::idle::render(&settings, &runs));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perf idle: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Args)]
struct TableFillArgs {
    /// Table capacity in entries, as `[dataplane] flow_table_capacity`.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 28))]
    capacity: u64,
    /// Fill levels in percent of the capacity (comma-separated, increasing).
    #[arg(long, value_delimiter = ',', default_value = "50,75,90,95,99")]
    levels: Vec<f64>,
    /// Lookups timed at each level.
    #[arg(long, default_value_t = 1_000_000)]
    lookups: usize,
    /// Kinds of newcomer (repeatable); default both.
    #[arg(long = "newcomer", value_enum)]
    newcomers: Vec<perf::table_fill::Newcomer>,
    /// Seed of the flows and of the table's hash.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

fn table_fill(args: TableFillArgs) -> ExitCode {
    use perf::table_fill::{self, Newcomer};
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; figures are meaningless (use --release)");
    }
    let increasing = args.levels.windows(2).all(|w| w[0] < w[1]);
    if args.levels.is_empty()
        || !increasing
        || args.levels.iter().any(|l| !(*l > 0.0 && *l <= 100.0))
    {
        eprintln!("perf table-fill: --levels must be increasing percentages in (0, 100]");
        return ExitCode::FAILURE;
    }
    let settings = table_fill::Settings {
        capacity: args.capacity as usize,
        levels: args.levels,
        lookups: args.lookups.max(1),
        newcomers: if args.newcomers.is_empty() {
            vec![Newcomer::Syn, Newcomer::Established]
        } else {
            args.newcomers
        },
        seed: args.seed,
    };
    let fills = table_fill::run(&settings);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&fills).unwrap_or_default()
        );
    } else {
        print!("{}", table_fill::render(&settings, &fills));
    }
    if fills.iter().any(|f| !f.warnings.is_empty()) {
        eprintln!("the table lost flows below the levels it promises to hold: see the warnings");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn hop_latency(captures: &[PathBuf], json: Option<&std::path::Path>) -> ExitCode {
    let paths: Vec<&std::path::Path> = captures.iter().map(PathBuf::as_path).collect();
    match perf::hop_latency::measure(&paths) {
        Ok(report) => {
            println!("{}", report.line());
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report).expect("a report serializes");
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("perf hop-latency: error: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perf hop-latency: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Pipeline(args) => pipeline(args),
        Command::TableFill(args) => table_fill(args),
        Command::Idle(args) => idle(args),
        #[cfg(feature = "dpdk")]
        Command::Dpdk(args) => dpdk(args),
        Command::DemoCapture { output } => match perf::demo::write(&output) {
            Ok((frames, bytes)) => {
                println!("{}: {frames} frames, {bytes} bytes", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", output.display());
                ExitCode::FAILURE
            }
        },
        Command::Gen(args) => generate(args),
        Command::Sink(args) => sink(args),
        Command::LabSummary {
            results,
            check,
            json,
        } => lab_summary(&results, check, json.as_deref()),
        Command::HttpBackend {
            listen,
            name,
            fail_file,
            duration,
        } => http_backend(listen, name, fail_file, duration),
        Command::UdpBackend {
            listen,
            name,
            duration,
        } => udp_backend(listen, &name, duration),
        Command::HttpLoad {
            target,
            connections,
            requests_per_connection,
            new_connections,
            concurrency,
            timeout_ms,
            expect_client,
            report,
            check,
        } => {
            let spec = perf::http::load::LoadSpec {
                target,
                connections,
                requests_per_connection,
                new_connections,
                concurrency,
                timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
                expect_client,
            };
            let r = perf::http::load::run(&spec);
            print!("{}", perf::http::load::render(&r));
            if write_report(&r, report.as_deref()) != ExitCode::SUCCESS {
                return ExitCode::FAILURE;
            }
            let bad = r.ok != r.requests || r.client_mismatches > 0;
            if check && bad {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::HttpSoak(args) => http_soak(args),
        Command::ChaosSummary {
            results,
            check,
            json,
            vip,
        } => chaos_summary(&results, check, json.as_deref(), &vip.to_string()),
        Command::HopLatency { captures, json } => hop_latency(&captures, json.as_deref()),
        Command::HttpImbalance {
            phase,
            target,
            client,
            config,
            heavy_backend,
            heavy_ports,
            heavy,
            heavy_bytes,
            heavy_rate,
            light_per_second,
            duration_s,
            agent,
            timeout_ms,
            report,
        } => {
            let duration = match seconds(duration_s, "--duration-s") {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("perf http-imbalance: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let Some((first, last)) = heavy_ports
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .filter(|(a, b): &(u16, u16)| a <= b)
            else {
                eprintln!("perf http-imbalance: --heavy-ports FIRST-LAST, e.g. 10000-32767");
                return ExitCode::FAILURE;
            };
            let spec = perf::http::imbalance::ImbalanceSpec {
                phase,
                target,
                client,
                config,
                heavy_backend,
                heavy_ports: (first, last),
                heavy,
                heavy_bytes,
                heavy_rate,
                light_per_second,
                duration,
                agents: agent,
                timeout: std::time::Duration::from_millis(timeout_ms),
            };
            match perf::http::imbalance::run(&spec) {
                Ok(r) => write_report(&r, Some(&report)),
                Err(e) => {
                    eprintln!("perf http-imbalance: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ImbalanceSummary {
            results,
            measure_s,
            static_vip,
            aware_vip,
            check,
            json,
        } => {
            let o = match perf::http::imbalance::summarize(
                &results,
                measure_s,
                [&static_vip, &aware_vip],
            ) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("perf imbalance-summary: {e}");
                    return ExitCode::FAILURE;
                }
            };
            print!("{}", perf::http::imbalance::render_text(&o));
            let svg = perf::http::timeline::render_imbalance(
                "Imbalance round: static Maglev, then load-aware weights",
                &o.phases,
            );
            let path = results.join("timeline.svg");
            if let Err(e) = std::fs::write(&path, svg) {
                eprintln!("perf imbalance-summary: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("  timeline: {}", path.display());
            if let Some(p) = json
                && write_report(&o, Some(&p)) != ExitCode::SUCCESS
            {
                return ExitCode::FAILURE;
            }
            if check && !o.all_passed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::HttpSummary { results, check } => match perf::http::summary::evaluate(&results) {
            Ok((text, passed)) => {
                print!("{text}");
                if check && !passed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("perf http-summary: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn http_soak(args: SoakArgs) -> ExitCode {
    use std::time::Duration;
    let duration = match seconds(args.duration_s, "--duration-s") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("perf http-soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !(args.new_per_second.is_finite() && (0.0..=10_000.0).contains(&args.new_per_second)) {
        eprintln!("perf http-soak: --new-per-second must be between 0 and 10000");
        return ExitCode::FAILURE;
    }
    if args.udp_flows > 0 && args.udp_target.is_none() {
        eprintln!("perf http-soak: --udp-flows needs --udp-target");
        return ExitCode::FAILURE;
    }
    let udp = args
        .udp_target
        .map(|target| perf::http::udp::UdpSpec {
            target,
            flows: args.udp_flows,
            interval: Duration::from_millis(args.udp_interval_ms),
            dead: Duration::from_millis(args.udp_dead_ms),
        })
        .filter(|u| u.flows > 0);
    let spec = perf::http::soak::SoakSpec {
        target: args.target,
        connections: args.connections,
        interval: Duration::from_millis(args.interval_ms),
        duration,
        new_per_second: args.new_per_second,
        timeout: Duration::from_millis(args.timeout_ms),
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        expect_client: args.expect_client,
        udp,
    };
    let mut ready_failed = false;
    let report = perf::http::soak::run(&spec, |t| {
        if let Some(path) = &args.ready_file {
            // Written beside and renamed, so a reader never sees an empty file.
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            let written =
                std::fs::write(&tmp, format!("{t}\n")).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                eprintln!("perf http-soak: cannot write {}: {e}", path.display());
                ready_failed = true;
            }
        }
    });
    print!("{}", perf::http::soak::render(&report));
    if write_report(&report, args.report.as_deref()) != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    if report.established == 0 && report.udp.established == 0 {
        eprintln!(
            "perf http-soak: no connection to {} could be established{}",
            args.target,
            args.udp_target
                .map_or(String::new(), |u| format!(", no UDP flow to {u} answered"))
        );
        return ExitCode::FAILURE;
    }
    if ready_failed {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn chaos_summary(
    results: &std::path::Path,
    check: bool,
    json: Option<&std::path::Path>,
    vip: &str,
) -> ExitCode {
    let outcome = match perf::http::chaos::evaluate(results, vip) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("perf chaos-summary: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", perf::http::chaos::render(&outcome));
    if let Some(path) = json
        && write_report(&outcome, Some(path)) != ExitCode::SUCCESS
    {
        return ExitCode::FAILURE;
    }
    if check && !outcome.all_passed() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn http_backend(
    listen: std::net::SocketAddr,
    name: String,
    fail_file: Option<PathBuf>,
    duration: Option<f64>,
) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("perf http-backend: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("perf http-backend: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(secs) = duration {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.0)));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let stats = Arc::new(perf::http::backend::ServerStats::default());
    match perf::http::backend::serve(listener, name, fail_file, stop, Arc::clone(&stats)) {
        Ok(()) => {
            eprintln!(
                "perf http-backend: {} connections, {} requests",
                stats.connections.load(Ordering::Relaxed),
                stats.requests.load(Ordering::Relaxed)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perf http-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn udp_backend(listen: std::net::SocketAddr, name: &str, duration: Option<f64>) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let socket = match std::net::UdpSocket::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("perf udp-backend: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("perf udp-backend: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(secs) = duration {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.0)));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let stats = perf::http::udp::UdpServerStats::default();
    match perf::http::udp::serve(socket, name, &stop, &stats) {
        Ok(()) => {
            eprintln!(
                "perf udp-backend: {} datagrams, {} answered, {} malformed",
                stats.received.load(Ordering::Relaxed),
                stats.answered.load(Ordering::Relaxed),
                stats.malformed.load(Ordering::Relaxed)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perf udp-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(s: f64, what: &str) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{what} {s}: give a positive number of seconds"))
}

fn write_report<T: serde::Serialize>(report: &T, path: Option<&std::path::Path>) -> ExitCode {
    let text = match serde_json::to_string_pretty(report) {
        Ok(t) => t + "\n",
        Err(e) => {
            eprintln!("cannot serialise the report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match path {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display())),
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: GenArgs) -> ExitCode {
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("perf gen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tx = match traffic::generator::TxMode::new(&args.tx, args.batch) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("perf gen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut destination = args.vip;
    if args.udp {
        destination.protocol = traffic::PROTO_UDP;
    }
    let settings = traffic::generator::GenSettings {
        interface: args.interface,
        netns: args.netns,
        src_mac: args.src_mac,
        dst_mac: args.dst_mac,
        src_net: args.src_net,
        destination,
        flows: args.flows,
        seed: args.seed,
        size: args.size,
        rate: args.rate,
        duration,
        syn_ack_mix: args.syn_ack_mix,
        tx,
    };
    match traffic::generator::run(&settings, |line| eprintln!("{line}")) {
        Ok(report) => {
            eprintln!(
                "gen: sent {} frames in {:.2} s ({:.3} Mpps), {} dropped on send, tx {} ({} calls)",
                report.sent,
                report.elapsed_seconds,
                report.pps / 1e6,
                report.dropped_on_send,
                report.tx,
                report.send_calls
            );
            write_report(&report, args.report.as_deref())
        }
        Err(e) => {
            eprintln!("perf gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sink(args: SinkArgs) -> ExitCode {
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("perf sink: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = traffic::sink::SinkSettings {
        interface: args.interface,
        netns: args.netns,
        duration,
        vips: args.vips,
        ready_file: args.ready_file,
    };
    match traffic::sink::run(&settings, |line| eprintln!("{line}")) {
        Ok(report) => {
            eprintln!(
                "sink {}: {} frames, {} encapsulated ({} invalid), {} plain, {} flows",
                report.interface,
                report.frames,
                report.encapsulated,
                report.invalid,
                report.plain,
                report.flows.len()
            );
            write_report(&report, args.report.as_deref())
        }
        Err(e) => {
            eprintln!("perf sink: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lab_summary(results: &std::path::Path, check: bool, json: Option<&std::path::Path>) -> ExitCode {
    let run = match traffic::summary::load(results) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("perf lab-summary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = traffic::summary::evaluate(&run);
    print!("{}", traffic::summary::render(&outcome));
    if let Some(path) = json
        && write_report(&outcome, Some(path)) != ExitCode::SUCCESS
    {
        return ExitCode::FAILURE;
    }
    if check && !outcome.passed() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn pipeline(args: PipelineArgs) -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; figures are meaningless (use --release)");
    }
    let (flows, packets) = if args.quick {
        (10_000, 1_000_000)
    } else {
        (1_000_000, 20_000_000)
    };
    let settings = Settings {
        flows: args.flows.map_or(flows, |f| f as usize),
        packets: args.packets.unwrap_or(packets),
        burst: args.burst as usize,
        runs: args.runs as usize,
        scenarios: if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios
        },
        workers: args.workers as usize,
    };
    let report = runner::run(&settings, |name| {
        eprintln!("running {name}...");
    });
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        runner::render(&report)
    };
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    if report.results.iter().any(|r| {
        !r.warnings.is_empty() || r.parallel.as_ref().is_some_and(|p| !p.warnings.is_empty())
    }) {
        eprintln!("some scenarios did not do the work they claim: see the warnings");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
