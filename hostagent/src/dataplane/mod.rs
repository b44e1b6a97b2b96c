//! The host agent's packet path: pure functions over byte buffers, no I/O.
//!
//! What this module owns: the two decisions the agent makes per packet, and the table of
//! connections they learn.
//! - [`DataPath::decap`] (inbound): an IP-in-IP packet from a MUX (outer IPv4 or IPv6,
//!   protocol 4 or 41) → checks the tunnel source and DIP, strips the outer header, rewrites
//!   the inner destination VIP:port → backend_address:backend_port → [`Verdict::Deliver`]. When
//!   the MUX named an alternative backend in the outer header (second chance,
//!   `docs/second-chance.md`) and the packet belongs to a connection this agent does not carry
//!   ([`ConnTable`]) and is not a SYN, the untouched inner packet gets a new outer header toward
//!   the alternative's agent instead → [`Verdict::Forward`]; never twice, never back.
//! - [`DataPath::snat`] (outbound): a backend's reply from backend_address:backend_port →
//!   rewrites the source to VIP:port → [`Verdict::Send`] toward the client, never through a
//!   MUX; ICMP errors about such flows are rewritten consistently (outer and quoted headers);
//!   anything else → [`Verdict::Pass`].
//!
//! Invariants:
//! - **No open relay**: nothing is decapsulated unless the outer source is a configured MUX
//!   source and the outer destination a configured DIP, and nothing is rewritten unless it
//!   matches a configured service exactly ([`ServiceTable`]).
//! - **Every drop has a reason and a counter** ([`DropReason`], [`Counters::drops`]); every
//!   verdict is counted.
//! - **Never blocks, never allocates, never panics** per packet: lookups hash fixed-size keys
//!   in tables built beforehand; every read is through a checked `mux_packet::wire` view or
//!   `get`; checksums are updated incrementally (RFC 1624), never re-summed, except the ICMP
//!   checksum of the rare ICMP error (see `rewrite`).
//! - The buffer is rewritten in place, and only after every check has passed: `Drop`, `Pass`
//!   and `Forward` leave it exactly as it came in (the fixtures assert this for every such
//!   case).
//! - **One hop at most**: a packet whose option says it was forwarded is always delivered;
//!   a forwarded packet always says so ([`second_chance`]); an alternative that is a local DIP
//!   is never forwarded to.
//! - The connection table learns from every packet delivered to a backend and every reply
//!   rewritten from one, and from nothing else (not from packets it forwards away).
//!
//! Rejected alternatives: handing the backend the packet still encapsulated (it would need a
//! tunnel device and would see the VIP, not its own address — the issue wants unmodified
//! backends); letting the kernel's IPIP device decapsulate and nftables do the NAT (it accepts
//! tunnels from any source unless every rule is kept in step with the config, and conntrack
//! state would be per flow on the host — the issue asks for a stateless rewrite owned here).

pub mod connections;
mod counters;
mod decap;
mod rewrite;
pub mod second_chance;
mod services;
mod snat;
mod verdict;

pub use connections::{ConnKey, ConnRecord, ConnState, ConnTable, Learned};
pub use counters::{ConnectionCounters, Counters, SecondChanceCounters, ServiceCounters};
pub use second_chance::{Alternative, ForwardHeader};
pub use services::{ServiceSpec, ServiceTable, TableError};
pub use verdict::{DropReason, Verdict};

/// The connection-table capacity of [`DataPath::new`] (tests, tools, fuzzing); the daemon
/// sizes its table from `[connections] capacity`.
pub const SMALL_CONNECTION_CAPACITY: usize = 4096;

/// One instance of the packet path: the service table, the connections it has seen, the
/// clock it ages them by, and the counters it moves.
///
/// Owned by one thread; a multi-threaded I/O layer gives each thread its own and sums
/// [`DataPath::counters`] (a connection's packets then must always reach the same thread).
#[derive(Debug)]
pub struct DataPath {
    table: ServiceTable,
    counters: Counters,
    connections: ConnTable,
    /// Live connections per service counted by the sweep pass in progress; published to
    /// `ServiceCounters::active_connections` when the pass completes.
    census: Box<[u64]>,
    /// Seconds of the caller's clock ([`DataPath::set_clock`]).
    now: u32,
}

impl DataPath {
    /// A data path over `table`, with zeroed counters (one per service) and an empty
    /// connection table of [`SMALL_CONNECTION_CAPACITY`].
    pub fn new(table: ServiceTable) -> Self {
        Self::with_connections(table, ConnTable::with_capacity(SMALL_CONNECTION_CAPACITY))
    }

    /// A data path over `table` that remembers connections in `connections` (sized by the
    /// daemon from `[connections] capacity`).
    pub fn with_connections(table: ServiceTable, connections: ConnTable) -> Self {
        let mut counters = Counters::new(table.services().len());
        counters.connections.capacity = connections.capacity() as u64;
        counters.connections.occupied = connections.occupied() as u64;
        DataPath {
            census: vec![0; table.services().len()].into_boxed_slice(),
            table,
            counters,
            connections,
            now: 0,
        }
    }

    /// Sets the clock connections age by, in whole seconds (monotonic; the forwarder sets it
    /// once per burst from the time it started).
    #[inline]
    pub fn set_clock(&mut self, now_secs: u32) {
        self.now = now_secs;
    }

    /// The clock, in seconds.
    pub fn clock(&self) -> u32 {
        self.now
    }

    /// The connections this data path has seen.
    pub fn connections(&self) -> &ConnTable {
        &self.connections
    }

    /// Whether a backend here carries `key` as an open connection now: second chance's
    /// question. A connection a FIN or RST ended ([`ConnState::TcpClosing`]) does not count,
    /// though the table keeps it for `tcp_closing` seconds: once the client has moved on,
    /// its port (the 4-tuple) may belong to a new connection the MUX's previous table sent to
    /// the alternative, and claiming its packets here would hand them to a socket in
    /// TIME_WAIT, which answers with bare ACKs, and the connection would hang. The price: the
    /// last packets of a connection that is closing here, arriving with an alternative (the
    /// MUX forgot it just after a change), go to the alternative, which resets them; the
    /// backend here then gives up its close by timeout.
    pub fn carries(&self, key: &ConnKey) -> bool {
        matches!(
            self.connections.state_of(key, self.now),
            Some(s) if s != ConnState::TcpClosing
        )
    }

    /// Whether a backend here claims `key` (service `index`) for a packet whose option says
    /// `horizon` (`Alternative::claim_horizon`): [`Self::carries`], except that a UDP flow
    /// last seen more than `horizon` seconds ago is not claimed, and forgotten. UDP has no
    /// SYN: that memory may be of an older flow on the same 5-tuple (a client reusing its
    /// port), while the flow now speaking started after the MUX's table that named the
    /// alternative arrived, and lives there. Forgotten, so the flow's later packets (which
    /// carry no horizon) are not claimed either. TCP needs no horizon: its SYN and FIN say
    /// where connections begin and end.
    pub fn claims(&mut self, key: &ConnKey, horizon: Option<u32>, index: usize) -> bool {
        let Some((state, expires)) = self.connections.entry_of(key, self.now) else {
            return false;
        };
        match (state, horizon) {
            (ConnState::TcpClosing, _) => false,
            (ConnState::Udp, Some(horizon)) => {
                let timeout = state.timeout(self.table.timeouts(index));
                let last_seen = expires.saturating_sub(timeout);
                if last_seen.saturating_add(horizon) >= self.now {
                    return true;
                }
                self.connections.forget(key);
                self.counters.connections.before_horizon += 1;
                false
            }
            _ => true,
        }
    }

    /// One step of the connection sweep (see [`ConnTable::sweep_step`]): clears up to
    /// `max_buckets` buckets' expired entries (counted) and copies their live ones into `out`.
    /// Returns `true` when the step finished a pass over the table. Between bursts only.
    pub fn sweep_connections(
        &mut self,
        cursor: &mut usize,
        max_buckets: usize,
        out: Option<&mut Vec<ConnRecord>>,
    ) -> bool {
        let (table, census) = (&self.table, &mut self.census);
        let (expired, done) =
            self.connections
                .sweep_step_visiting(cursor, max_buckets, self.now, out, |key| {
                    let backend = key.backend_ip();
                    if let Some((i, _)) = table.outbound(backend, key.backend_port, key.protocol)
                        && let Some(n) = census.get_mut(i)
                    {
                        *n += 1;
                    }
                });
        self.counters.connections.expiries += expired as u64;
        self.counters.connections.occupied = self.connections.occupied() as u64;
        if done {
            for (s, n) in self
                .counters
                .services
                .iter_mut()
                .zip(self.census.iter_mut())
            {
                s.active_connections = std::mem::take(n);
            }
        }
        done
    }

    /// Puts saved connections back (at start, before any packet): each gets its remaining
    /// time from the current clock. Returns how many were entered.
    pub fn restore_connections<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a ConnRecord>,
    ) -> usize {
        let mut restored = 0;
        for record in records {
            if matches!(
                self.connections.restore(record, self.now),
                Learned::Inserted { .. }
            ) {
                restored += 1;
            }
        }
        self.counters.connections.restored += restored as u64;
        self.counters.connections.occupied = self.connections.occupied() as u64;
        restored
    }

    /// Forgets every connection (a fuzz run that must not depend on the previous one).
    pub fn clear_connections(&mut self) {
        self.connections.clear();
        self.counters.connections.occupied = 0;
    }

    /// Records a packet of connection `key` delivered to (or replied from) service `index`.
    #[inline]
    fn learn(&mut self, key: &ConnKey, tcp_flags: u8, index: usize) {
        let timeouts = self.table.timeouts(index);
        let c = &mut self.counters.connections;
        match self.connections.learn(key, tcp_flags, timeouts, self.now) {
            Learned::Refreshed => return,
            Learned::Inserted { expired } => {
                c.inserts += 1;
                c.expiries += u64::from(expired);
            }
            Learned::Displaced => {
                c.inserts += 1;
                c.displaced += 1;
            }
            Learned::Full => {
                c.table_full += 1;
                return;
            }
        }
        c.occupied = self.connections.occupied() as u64;
        self.counters.service(index, |s| s.new_connections += 1);
    }

    /// Adopts a new service table (a reload) and keeps every counter: the global ones as they
    /// are, and each service's under the same service in the new table; services that are
    /// gone take their counts with them, new ones start at zero. Runs between packets, off
    /// the per-packet path (it allocates the new per-service vector).
    pub fn replace_table(&mut self, table: ServiceTable) {
        let mut services = vec![ServiceCounters::default(); table.services().len()];
        for (new, spec) in services.iter_mut().zip(table.services()) {
            if let Some(old) = self
                .table
                .services()
                .iter()
                .position(|s| s == spec)
                .and_then(|i| self.counters.services.get(i))
            {
                *new = *old;
            }
        }
        self.counters.services = services.into_boxed_slice();
        // A pass in progress counts against the old indices: start its census afresh (the
        // next complete pass is exact again).
        self.census = vec![0; table.services().len()].into_boxed_slice();
        self.table = table;
    }

    /// The service table.
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Inbound: decapsulates the IP packet in `buf` (no link-layer header) from a MUX and
    /// rewrites its inner packet to the backend. On [`Verdict::Deliver`] the inner packet is
    /// `buf[offset..offset + len]`.
    pub fn decap(&mut self, buf: &mut [u8]) -> Verdict {
        self.counters.inbound += 1;
        match self.try_decap(buf) {
            Ok(verdict) => verdict,
            Err(reason) => {
                self.counters.drop(reason);
                Verdict::Drop(reason)
            }
        }
    }

    /// Outbound: rewrites a backend's reply (IP packet in `buf`, no link-layer header) to come
    /// from the VIP. [`Verdict::Send`] sends `buf[..len]`; [`Verdict::Pass`] means "not ours,
    /// untouched".
    pub fn snat(&mut self, buf: &mut [u8]) -> Verdict {
        self.counters.outbound += 1;
        match self.try_snat(buf) {
            Ok(verdict) => verdict,
            Err(reason) => {
                self.counters.drop(reason);
                Verdict::Drop(reason)
            }
        }
    }
}
