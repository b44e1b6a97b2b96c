//! VIP announcement: a MUX's routes live only as long as its data path.
//!
//! The MUX never speaks BGP itself; an existing BIRD 2 announces what the MUX writes into a file
//! BIRD includes ([`bird`]). The hard part is taking the routes away when the MUX *cannot* act:
//! killed with `kill -9`, stopped with `SIGSTOP`, a worker stuck in a loop, the XDP program or
//! the DPDK port gone. Each of these must withdraw the VIPs within a second (300 ms by default),
//! and a healthy MUX must get them back by itself.
//!
//! # The mechanism: an announcement guard with a dead man's switch
//!
//! `mux run` starts a small child process, the **announcement guard** (`mux announce-guard`,
//! [`guard`]), and is the only one who talks to it, over a pipe ([`link`], [`protocol`]):
//!
//! - `want 192.0.2.10 …` — the VIPs the control plane judges servable (empty while starting or
//!   draining);
//! - `alive` — sent every `liveness_timeout_ms / 6` by the MUX's liveness thread
//!   ([`super::liveness`]), and only while every worker has made progress within the last two
//!   thirds of the timeout and the data path is intact (XDP link attached, DPDK link up);
//! - `down REASON` — the liveness thread found a stuck worker or a lost data path.
//!
//! The guard announces the wanted set while heartbeats arrive and withdraws everything when none
//! arrived for `[bgp] liveness_timeout_ms`, when told `down`, or when the pipe closes (the MUX
//! exited or was killed: the kernel closes the pipe, so `kill -9` is seen at once). It lives in
//! its own process group, so a `SIGSTOP`, `SIGINT` or `SIGKILL` aimed at the MUX's group does
//! not reach it; it holds a lock on the include file so the guard of a restarted MUX waits for
//! an orphaned one to finish withdrawing. When heartbeats resume (after `SIGCONT`, or a worker
//! that got unstuck) it announces again. BIRD keeps its BGP session up throughout: a
//! withdrawal is one UPDATE, and a recovery needs no session re-establishment.
//!
//! If the guard itself dies, the MUX notices (its pipe breaks, or the child has exited) and
//! starts a new one; until then the last announcement stands, which is right for a MUX that is
//! alive. `speaker = "none"` starts no guard and only records what would be announced.
//!
//! # Alternatives rejected
//!
//! - **BFD answered by the worker, with `bfd on` on the router's BGP sessions.** It tests the
//!   real RX/TX path, but BIRD (2.0.12, `bgp_bfd_notify`) only tears a BGP session down on a
//!   BFD *Up → Down* transition; after `error wait time` it re-establishes the session whatever
//!   the BFD state, and the MUX namespace's BIRD, still running, re-announces the VIPs of a MUX
//!   that is still stopped. A stopped MUX would black-hole its flows again after the wait.
//!   (BFD between the BIRDs remains the right tool for a dead host or link; it is orthogonal.)
//! - **BIRD as the MUX's child with `PR_SET_PDEATHSIG`.** Covers death, not a stopped or hung
//!   process, and every recovery re-establishes a BGP session (seconds, plus the router's
//!   `error wait time`).
//! - **A watchdog thread inside the MUX.** Stops with the process it watches.

pub mod bird;
pub mod guard;
pub mod link;
pub mod protocol;

pub use bird::{AnnounceError, BirdSpeaker};
pub use link::GuardLink;
