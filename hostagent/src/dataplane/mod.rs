//! The host agent's packet path: pure functions over byte buffers, no I/O.
//!
//! What this module owns: the two decisions the agent makes per packet.
//! - [`DataPath::decap`] (inbound): an IP-in-IP packet from a MUX (outer IPv4 or IPv6,
//!   protocol 4 or 41) → checks the tunnel source and DIP, strips the outer header, rewrites
//!   the inner destination VIP:port → backend_address:backend_port → [`Verdict::Deliver`].
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
//!   in tables built beforehand; every read is through a checked `mux_shared::wire` view or
//!   `get`; checksums are updated incrementally (RFC 1624), never re-summed, except the ICMP
//!   checksum of the rare ICMP error (see `rewrite`).
//! - The buffer is rewritten in place, and only after every check has passed: `Drop` and
//!   `Pass` leave it exactly as it came in (the fixtures assert this for every such case).
//!
//! Rejected alternatives: handing the backend the packet still encapsulated (it would need a
//! tunnel device and would see the VIP, not its own address — the issue wants unmodified
//! backends); letting the kernel's IPIP device decapsulate and nftables do the NAT (it accepts
//! tunnels from any source unless every rule is kept in step with the config, and conntrack
//! state would be per flow on the host — the issue asks for a stateless rewrite owned here).

mod counters;
mod decap;
mod rewrite;
mod services;
mod snat;
mod verdict;

pub use counters::{Counters, ServiceCounters};
pub use services::{ServiceSpec, ServiceTable, TableError};
pub use verdict::{DropReason, Verdict};

/// One instance of the packet path: the service table and the counters it moves.
///
/// Owned by one thread; a multi-threaded I/O layer gives each thread its own and sums
/// [`DataPath::counters`].
#[derive(Debug)]
pub struct DataPath {
    table: ServiceTable,
    counters: Counters,
}

impl DataPath {
    /// A data path over `table`, with zeroed counters (one per service).
    pub fn new(table: ServiceTable) -> Self {
        let counters = Counters::new(table.services().len());
        DataPath { table, counters }
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
