//! The previous Maglev tables of each VIP: the second chance's memory.
//!
//! # What it owns
//!
//! For every VIP (by address, port and protocol), the table of the generation now in force
//! and the tables of the generations before it that differ from it, newest first, each with
//! the moments it took over and was replaced. `compile` reads it to give each VIP of a new snapshot its
//! [`PreviousTable`](crate::dataplane::snapshot::PreviousTable)s (by backend id, with the flow-clock second their window ends) and returns
//! the successor, which the caller keeps once the snapshot is published (a refused reload
//! leaves the history as it was). Optionally it survives restarts in a small JSON file
//! (`[dataplane] second_chance_state`).
//!
//! # Rules
//!
//! - A *generation* is every snapshot the control plane publishes: a reload, and also a
//!   health-driven republish. A backend failing or recovering changes the table exactly as an
//!   operator removing or adding it does, and connections that started while the table was
//!   different live on the backends it picked: after a failed backend recovers, the flows
//!   that started on other backends while it was out hash to it again, and only the previous
//!   table knows where they went. A republish that leaves the table as it was (a new next-hop
//!   MAC, a failure of another VIP's backend) records nothing.
//! - Only tables that differ from the current one are kept: "differ" is slot by slot, by
//!   backend address (two tables built from different weights can be identical; two built
//!   from the same backends always are, Maglev being deterministic). A table equal to the new
//!   current one is dropped (a backend back from a blip restores the table it had); of equal
//!   previous tables only the newest is kept.
//! - Window: a table names alternatives until `second_chance_window_seconds` after it was
//!   replaced (0: tables are not kept at all); at most [`MAX_PREVIOUS_TABLES`] per VIP, the
//!   newest. A VIP that leaves the configuration leaves the history.
//! - **Order of asking: the newest *settled* table first** ([`VipHistory::by_preference`]):
//!   previous tables that stood at least [`SETTLED_MS`] come first, newer before older, then
//!   the transient ones, newer before older. The data plane names the first previous pick that
//!   differs from the current one, and a flow gets one alternative, so the order decides which
//!   connections a series of changes can save. A connection lives where the table in force
//!   *when it started* sent it. With changes A → B → C a few hundred milliseconds apart (a
//!   deployment applying three edits, a health flap), asking the newest (B) first would name
//!   B's pick for a flow whose slot moved at both steps, although nearly every such connection
//!   started under A, and lose it: B and C's first moments are too short to have gathered
//!   connections, so they are skipped. Among settled tables the newest wins: a connection that
//!   is alive now started under it or earlier, and one that started earlier and survived the
//!   newest settled table's arrival with a different pick is one Maglev moved twice (rare: each
//!   change moves only the changed backends' share). An earlier rule, "the table in force
//!   longest", lost exactly the common case when changes come tens of seconds apart: the
//!   table before the last settled one, up for a minute, outranked the one up for twenty
//!   seconds that every connection of the last twenty seconds started under (the lab's
//!   second-chance round broke 19 connections of 1000 that way, `halve-restart`, 2026-12-05).
//!   A table found in force when the history began (the MUX started without a file) has been in
//!   force for an unknown, long time: it is settled.
//!
//! # Restarts
//!
//! A MUX that starts without history sends no alternative for changes that happened before it
//! started: a restarted MUX would then only save the flows whose backends changed while it
//! ran, and the flows it carried before the restart (which ECMP brings straight back to it,
//! without entries) would break if a backend changed shortly before. GLB and Beamer accept
//! that; we keep the history in a file instead, because a restart right after a change is
//! exactly when it matters (a MUX restarted to apply a change, or restarted by a crash a
//! minute after one). The file holds what built each table — table size, and each backend's
//! address and weight — not the 65 537 slots: Maglev rebuilds the same table from them on any
//! MUX (its determinism is an invariant with golden vectors), so the file is small (tens of
//! bytes per backend) and *portable*: a MUX joining the ECMP group may start from a peer's
//! file. It is written after every publish (atomically: a temporary file, then a rename) and
//! read at start; tables whose window has ended by then are dropped, and the table the file
//! records as current becomes a previous one if the new configuration's table differs —
//! replaced when the MUX stopped taking new flows: a clean stop writes the file once more,
//! with that moment, after withdrawing its routes ([`TableHistory::mark_stopped`]); after a
//! crash, at the restart. Without that, the downtime counted as time in force: a MUX stopped
//! half a second after a change it had not yet applied (a reload overtaken by the stop)
//! restarted believing the table it stopped with had stood for seconds, asked it first as
//! settled, and named its picks as alternatives for flows that had started under the one
//! before (the lab's `halve-restart-x3`, 2026-12-06: 2 connections and 2 UDP flows). An unreadable or malformed file is logged and ignored: the
//! MUX starts without history rather than not at all.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use mux_packet::flow_key::canonical_addr;
use mux_packet::maglev::{self, MaglevBackend, MaglevTable};

use crate::dataplane::snapshot::{MAX_PREVIOUS_TABLES, VipKey};

/// What a Maglev table was built from: enough to rebuild it bit for bit on any MUX.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableInputs {
    /// The table size `M`.
    pub table_size: u32,
    /// The backends with slots, in the order the table's indices refer to.
    pub backends: Vec<TableMember>,
}

/// One backend with slots in a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMember {
    /// Its address (the DIP).
    pub address: IpAddr,
    /// Its Maglev weight.
    pub weight: u32,
}

/// One generation's table of one VIP.
#[derive(Clone)]
pub struct Generation {
    /// What built it.
    pub inputs: TableInputs,
    /// The table; its slots index `inputs.backends`.
    pub maglev: MaglevTable,
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("backends", &self.inputs.backends.len())
            .field("maglev", &self.maglev)
            .finish()
    }
}

impl Generation {
    /// Builds the table of `inputs`.
    pub fn build(inputs: TableInputs) -> Result<Generation, maglev::MaglevError> {
        let ids: Vec<[u8; 16]> = inputs
            .backends
            .iter()
            .map(|b| canonical_addr(b.address))
            .collect();
        let members: Vec<MaglevBackend<'_>> = ids
            .iter()
            .zip(&inputs.backends)
            .map(|(id, b)| MaglevBackend {
                id: id.as_slice(),
                weight: b.weight,
            })
            .collect();
        let maglev = maglev::build(&members, inputs.table_size)?;
        Ok(Generation { inputs, maglev })
    }

    /// True when both tables send every slot to the same backend address.
    pub fn same_picks(&self, other: &Generation) -> bool {
        if self.inputs == other.inputs {
            return true;
        }
        let (a, b) = (self.maglev.slots(), other.maglev.slots());
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                self.inputs.backends[usize::from(*x)].address
                    == other.inputs.backends[usize::from(*y)].address
            })
    }
}

/// A table that was replaced, and when.
#[derive(Clone, Debug)]
pub struct Replaced {
    /// The table.
    pub generation: Generation,
    /// When it stopped being current, in Unix milliseconds.
    pub replaced_unix_ms: u64,
    /// When it became current, in Unix milliseconds; 0 when unknown (it was in force when the
    /// history began).
    pub since_unix_ms: u64,
}

impl Replaced {
    /// How long it was in force, in milliseconds (from the epoch when that is unknown, so such a
    /// table counts as the longest).
    pub fn in_force_ms(&self) -> u64 {
        self.replaced_unix_ms.saturating_sub(self.since_unix_ms)
    }
}

/// One VIP's tables.
#[derive(Clone, Debug, Default)]
pub struct VipHistory {
    /// The table in force; `None` while no backend takes new flows.
    pub current: Option<Generation>,
    /// When `current` took over, in Unix milliseconds; 0 when unknown (it was in force when
    /// the history began).
    pub current_since_unix_ms: u64,
    /// Earlier tables that differ from `current`, newest first.
    pub previous: Vec<Replaced>,
}

/// How long a table must have stood to be asked before the transient ones (see the module
/// docs): longer than the gaps of a deployment applying a few edits in a row or of a health
/// flap, shorter than the time it takes a table to gather long-lived connections.
pub const SETTLED_MS: u64 = 2_000;

impl VipHistory {
    /// The previous tables in the order the data plane asks them: the settled ones (in force
    /// at least [`SETTLED_MS`]) newer before older, then the transient ones newer before older
    /// (see the module docs).
    pub fn by_preference(&self) -> Vec<&Replaced> {
        let mut order: Vec<&Replaced> = self.previous.iter().collect();
        // Stable: `previous` is newest first, and each group keeps that order.
        order.sort_by_key(|r| r.in_force_ms() < SETTLED_MS);
        order
    }
}

/// Every VIP's tables. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct TableHistory {
    vips: HashMap<VipKey, VipHistory>,
    /// When the MUX that wrote this history stopped taking new flows (its routes withdrawn at
    /// a clean stop), in Unix milliseconds: read from the file, it ends the time in force of
    /// the tables it records as current. `None` in a history built while running, and in one
    /// read from a file a MUX did not stop cleanly (then the restart ends it).
    stopped_unix_ms: Option<u64>,
}

impl TableHistory {
    /// The VIP's tables, if it has any.
    pub fn get(&self, key: &VipKey) -> Option<&VipHistory> {
        self.vips.get(key)
    }

    /// Records `vip` for the successor being built.
    pub fn insert(&mut self, key: VipKey, vip: VipHistory) {
        self.vips.insert(key, vip);
    }

    /// Number of VIPs recorded.
    pub fn len(&self) -> usize {
        self.vips.len()
    }

    /// True when no VIP is recorded.
    pub fn is_empty(&self) -> bool {
        self.vips.is_empty()
    }

    /// Records that the MUX stopped taking new flows at `at_unix_ms` (a clean stop, once its
    /// routes are withdrawn); [`save`] writes it, and the next start's first [`Self::succeed`]
    /// ends the current tables' time in force there instead of at the restart.
    pub fn mark_stopped(&mut self, at_unix_ms: u64) {
        self.stopped_unix_ms = Some(at_unix_ms);
    }

    /// What the VIP `key` has once `current` takes over at `at_unix_ms`, with tables kept for
    /// `window` (see the module docs for the rules).
    pub fn succeed(
        &self,
        key: &VipKey,
        current: Option<Generation>,
        at_unix_ms: u64,
        window: Duration,
    ) -> VipHistory {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let current_since_unix_ms = match self.vips.get(key) {
            // The history begins here: the table was in force for an unknown time.
            None => 0,
            Some(old) => match (&old.current, &current) {
                (Some(before), Some(now)) if before.same_picks(now) => old.current_since_unix_ms,
                _ => at_unix_ms,
            },
        };
        let mut previous: Vec<Replaced> = Vec::new();
        if window_ms > 0
            && let Some(old) = self.vips.get(key)
        {
            // A history read from a cleanly stopped MUX: its current table stopped taking new
            // flows there when the MUX withdrew, not at this restart. Counting the downtime
            // would make a table that stood a few hundred milliseconds before the stop look
            // settled, and asked first.
            let replaced_unix_ms = self.stopped_unix_ms.map_or(at_unix_ms, |stopped| {
                stopped.clamp(old.current_since_unix_ms.min(at_unix_ms), at_unix_ms)
            });
            let replaced = match (&old.current, &current) {
                (Some(before), Some(now)) if before.same_picks(now) => None,
                (Some(before), _) => Some(Replaced {
                    generation: before.clone(),
                    replaced_unix_ms,
                    since_unix_ms: old.current_since_unix_ms,
                }),
                (None, _) => None,
            };
            for r in replaced.into_iter().chain(old.previous.iter().cloned()) {
                let live = r.replaced_unix_ms.saturating_add(window_ms) > at_unix_ms;
                let superseded = current
                    .as_ref()
                    .is_some_and(|c| c.same_picks(&r.generation))
                    || previous
                        .iter()
                        .any(|p| p.generation.same_picks(&r.generation));
                if live && !superseded && previous.len() < MAX_PREVIOUS_TABLES {
                    previous.push(r);
                }
            }
        }
        VipHistory {
            current,
            current_since_unix_ms,
            previous,
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---- the file ---------------------------------------------------------------------------------

/// Version of the file format this build writes and reads.
pub const FILE_FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    format: u32,
    written_unix_ms: u64,
    /// Present when the MUX wrote the file as it stopped cleanly: when it stopped taking new
    /// flows. (Builds before it refuse such a file and start without history.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopped_unix_ms: Option<u64>,
    vips: Vec<VipRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VipRecord {
    address: IpAddr,
    port: u16,
    /// IP protocol number (6 or 17).
    protocol: u8,
    current: Option<TableInputs>,
    /// Absent in files of earlier builds: unknown.
    #[serde(default)]
    current_since_unix_ms: u64,
    previous: Vec<ReplacedRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplacedRecord {
    replaced_unix_ms: u64,
    /// Absent in files of earlier builds: unknown.
    #[serde(default)]
    since_unix_ms: u64,
    table: TableInputs,
}

/// Why the history file could not be read or written. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum HistoryFileError {
    /// The file could not be read.
    #[error("{path}: cannot read the second-chance history: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a history this build understands.
    #[error(
        "{path}: not a second-chance history file ({message}); remove it to start without \
         history"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The file (or its temporary sibling) could not be written.
    #[error(
        "{path}: cannot write the second-chance history: {source}; check [dataplane] \
         second_chance_state and that its directory exists and is writable"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// What [`load`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The history.
    pub history: TableHistory,
    /// Tables in the file that Maglev refused to rebuild (an edited file), skipped.
    pub skipped: usize,
}

/// Reads the history written by [`save`]. A missing file is an empty history.
pub fn load(path: &Path) -> Result<Loaded, HistoryFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                history: TableHistory::default(),
                skipped: 0,
            });
        }
        Err(source) => {
            return Err(HistoryFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    from_json(&text).map_err(|message| HistoryFileError::Malformed {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses the file's text.
fn from_json(text: &str) -> Result<Loaded, String> {
    let file: HistoryFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.format != FILE_FORMAT {
        return Err(format!(
            "format {} (this MUX reads format {FILE_FORMAT})",
            file.format
        ));
    }
    let mut history = TableHistory {
        stopped_unix_ms: file.stopped_unix_ms,
        ..TableHistory::default()
    };
    let mut skipped = 0;
    let mut build = |inputs: TableInputs| match Generation::build(inputs) {
        Ok(g) => Some(g),
        Err(_) => {
            skipped += 1;
            None
        }
    };
    for v in file.vips {
        let key = VipKey {
            addr: canonical_addr(v.address),
            port: v.port,
            protocol: v.protocol,
        };
        let current = v.current.and_then(&mut build);
        let previous = v
            .previous
            .into_iter()
            .filter_map(|r| {
                build(r.table).map(|generation| Replaced {
                    generation,
                    replaced_unix_ms: r.replaced_unix_ms,
                    since_unix_ms: r.since_unix_ms,
                })
            })
            .take(MAX_PREVIOUS_TABLES)
            .collect();
        history.insert(
            key,
            VipHistory {
                current,
                current_since_unix_ms: v.current_since_unix_ms,
                previous,
            },
        );
    }
    Ok(Loaded { history, skipped })
}

/// The file's text for `history`, VIPs in (address, port, protocol) order.
fn to_json(history: &TableHistory, now: SystemTime) -> String {
    let mut keys: Vec<&VipKey> = history.vips.keys().collect();
    keys.sort_by_key(|k| (k.addr, k.port, k.protocol));
    let vips = keys
        .into_iter()
        .map(|k| {
            let v = &history.vips[k];
            VipRecord {
                address: mux_packet::flow_key::unmap(k.addr),
                port: k.port,
                protocol: k.protocol,
                current: v.current.as_ref().map(|g| g.inputs.clone()),
                current_since_unix_ms: v.current_since_unix_ms,
                previous: v
                    .previous
                    .iter()
                    .map(|r| ReplacedRecord {
                        replaced_unix_ms: r.replaced_unix_ms,
                        since_unix_ms: r.since_unix_ms,
                        table: r.generation.inputs.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let file = HistoryFile {
        format: FILE_FORMAT,
        written_unix_ms: unix_ms(now),
        stopped_unix_ms: history.stopped_unix_ms,
        vips,
    };
    serde_json::to_string_pretty(&file).expect("the history serializes")
}

/// Writes `history` to `path` atomically: a temporary file beside it, synced, then renamed.
pub fn save(path: &Path, history: &TableHistory, now: SystemTime) -> Result<(), HistoryFileError> {
    let text = to_json(history, now);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = std::fs::File::create(p)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| HistoryFileError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> VipKey {
        VipKey {
            addr: canonical_addr("192.0.2.10".parse().unwrap()),
            port: 80,
            protocol: 6,
        }
    }

    fn generation(backends: &[(&str, u32)]) -> Generation {
        Generation::build(TableInputs {
            table_size: 1009,
            backends: backends
                .iter()
                .map(|(a, w)| TableMember {
                    address: a.parse().unwrap(),
                    weight: *w,
                })
                .collect(),
        })
        .unwrap()
    }

    const W: Duration = Duration::from_secs(120);

    /// Applies `tables` at the given Unix ms, one after the other, from an empty history.
    fn through(tables: &[(u64, Generation)], window: Duration) -> TableHistory {
        let mut h = TableHistory::default();
        for (at, g) in tables {
            let next = h.succeed(&key(), Some(g.clone()), *at, window);
            h.insert(key(), next);
        }
        h
    }

    fn previous_at(h: &TableHistory) -> Vec<u64> {
        h.get(&key())
            .unwrap()
            .previous
            .iter()
            .map(|r| r.replaced_unix_ms)
            .collect()
    }

    #[test]
    fn order_and_weight_scale_do_not_make_a_new_generation() {
        let a = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1)]);
        let b = generation(&[("10.1.0.2", 7), ("10.1.0.1", 7)]);
        assert_ne!(a.inputs, b.inputs);
        assert!(a.same_picks(&b));
        let h = through(&[(0, a), (1000, b)], W);
        assert!(previous_at(&h).is_empty());
    }

    #[test]
    fn a_changed_table_is_kept_newest_first_for_the_window() {
        let a = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1)]);
        let b = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)]);
        let c = generation(&[("10.1.0.1", 1), ("10.1.0.3", 1)]);
        let h = through(&[(0, a.clone()), (1000, b.clone()), (2000, c.clone())], W);
        assert_eq!(previous_at(&h), [2000, 1000]);
        let v = h.get(&key()).unwrap();
        assert!(v.previous[0].generation.same_picks(&b));
        assert!(v.previous[1].generation.same_picks(&a));
        // The window ends 120 s after each replacement: at 121 s only `b` remains.
        let next = h.succeed(&key(), Some(c.clone()), 121_000, W);
        assert_eq!(next.previous.len(), 1);
        assert_eq!(next.previous[0].replaced_unix_ms, 2000);
        // Window 0: nothing is kept.
        let h0 = through(&[(0, a), (1000, b), (2000, c)], Duration::ZERO);
        assert!(previous_at(&h0).is_empty());
    }

    #[test]
    fn returning_to_a_table_drops_it_and_duplicates_keep_the_newest() {
        let a = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1)]);
        let b = generation(&[("10.1.0.1", 1)]);
        // A backend fails (b) and recovers (a): only b is a previous table.
        let h = through(&[(0, a.clone()), (1000, b.clone()), (3000, a.clone())], W);
        assert_eq!(previous_at(&h), [3000]);
        // It flaps again: still one copy of b, replaced most recently.
        let h = through(
            &[
                (0, a.clone()),
                (1000, b.clone()),
                (3000, a.clone()),
                (4000, b.clone()),
                (5000, a.clone()),
            ],
            W,
        );
        assert_eq!(previous_at(&h), [5000]);
    }

    #[test]
    fn the_newest_settled_table_is_asked_first() {
        let a = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1)]);
        let b = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)]);
        let c = generation(&[("10.1.0.1", 1), ("10.1.0.3", 2)]);
        let d = generation(&[("10.1.0.1", 2), ("10.1.0.3", 2), ("10.1.0.4", 1)]);
        // `a` found in force at the start (unknown since: the longest), then three changes
        // 300 ms apart.
        let h = through(
            &[
                (0, a.clone()),
                (60_000, b.clone()),
                (60_300, c.clone()),
                (60_600, d),
            ],
            W,
        );
        let v = h.get(&key()).unwrap();
        assert_eq!(
            previous_at(&h),
            [60_600, 60_300, 60_000],
            "kept newest first"
        );
        assert_eq!(v.current_since_unix_ms, 60_600);
        assert_eq!(v.previous[0].since_unix_ms, 60_300);
        assert_eq!(
            v.previous[2].since_unix_ms, 0,
            "in force when the history began"
        );
        let order: Vec<u64> = v
            .by_preference()
            .iter()
            .map(|r| r.replaced_unix_ms)
            .collect();
        assert_eq!(
            order,
            [60_000, 60_600, 60_300],
            "a (settled) first, then the transient ones newer first"
        );

        // Changes tens of seconds apart: the newest settled table first, although an older
        // one stood longer (the case the earlier "longest in force" rule lost).
        let h = through(
            &[
                (0, a.clone()),
                (60_000, b.clone()),
                (80_000, c.clone()),
                (80_400, a.clone()),
            ],
            W,
        );
        let order: Vec<u64> = h
            .get(&key())
            .unwrap()
            .by_preference()
            .iter()
            .map(|r| r.replaced_unix_ms)
            .collect();
        assert_eq!(
            order,
            [80_000, 80_400],
            "b (20 s) before c (0.4 s); a is current again, so not a previous table"
        );
        let h = through(
            &[
                (10_000, a.clone()),
                (70_000, b.clone()),
                (71_000, c.clone()),
            ],
            W,
        );
        let order: Vec<u64> = h
            .get(&key())
            .unwrap()
            .by_preference()
            .iter()
            .map(|r| r.replaced_unix_ms)
            .collect();
        assert_eq!(
            order,
            [70_000, 71_000],
            "a (60 s) settled first, b (1 s) transient after"
        );

        // A table that stays in force across republishes keeps its start.
        let mut h = through(&[(0, a.clone()), (1000, b.clone())], W);
        let next = h.succeed(&key(), Some(b.clone()), 5000, W);
        assert_eq!(next.current_since_unix_ms, 1000);
        h.insert(key(), next);
        let next = h.succeed(&key(), Some(c), 9000, W);
        assert_eq!(next.previous[0].since_unix_ms, 1000);
        assert_eq!(next.previous[0].in_force_ms(), 8000);
    }

    #[test]
    fn at_most_four_previous_tables() {
        let tables: Vec<(u64, Generation)> = (1..=7u64)
            .map(|i| {
                let addrs: Vec<String> = (1..=i).map(|b| format!("10.1.0.{b}")).collect();
                let backends: Vec<(&str, u32)> = addrs.iter().map(|a| (a.as_str(), 1)).collect();
                (i * 1000, generation(&backends))
            })
            .collect();
        let h = through(&tables, W);
        assert_eq!(previous_at(&h), [7000, 6000, 5000, 4000]);
    }

    #[test]
    fn no_table_is_not_a_generation_but_the_one_before_it_is_kept() {
        let a = generation(&[("10.1.0.1", 1)]);
        let b = generation(&[("10.1.0.2", 1)]);
        let mut h = TableHistory::default();
        for (at, g) in [(0, Some(a.clone())), (1000, None), (2000, Some(b))] {
            let next = h.succeed(&key(), g, at, W);
            h.insert(key(), next);
        }
        assert_eq!(previous_at(&h), [1000]);
        assert!(h.get(&key()).unwrap().previous[0].generation.same_picks(&a));
    }

    #[test]
    fn the_file_round_trips_and_rebuilds_identical_tables() {
        let a = generation(&[("10.1.0.1", 100), ("fd00:1::2", 50)]);
        let b = generation(&[("10.1.0.1", 100)]);
        let h = through(&[(0, a.clone()), (1000, b.clone())], W);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let text = to_json(&h, now);
        let back = from_json(&text).unwrap();
        assert_eq!(back.skipped, 0);
        let v = back.history.get(&key()).unwrap();
        assert_eq!(v.current.as_ref().unwrap().maglev, b.maglev);
        assert_eq!(v.previous[0].generation.maglev, a.maglev);
        assert_eq!(v.previous[0].replaced_unix_ms, 1000);
        assert_eq!(v.previous[0].since_unix_ms, 0);
        assert_eq!(v.current_since_unix_ms, 1000);
        assert!(text.contains("\"address\": \"fd00:1::2\""));

        let dir = std::env::temp_dir().join(format!("mux-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("second-chance.json");
        assert!(load(&path).unwrap().history.is_empty(), "missing: empty");
        save(&path, &h, now).unwrap();
        assert_eq!(load(&path).unwrap().history.len(), 1);
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            load(&path),
            Err(HistoryFileError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_clean_stop_ends_the_current_tables_time_in_force_at_the_stop_not_the_restart() {
        let a = generation(&[("10.1.0.1", 1), ("10.1.0.2", 2)]);
        let b = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)]);
        let c = generation(&[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 2)]);
        // `a` stood a minute; `b` took over at 60 s; the MUX stopped at 60.6 s, before it
        // applied `c`, and restarts with `c` at 63 s.
        let mut h = through(&[(0, a.clone()), (60_000, b.clone())], W);
        let restart = |h: &TableHistory| {
            let back = from_json(&to_json(h, SystemTime::UNIX_EPOCH))
                .unwrap()
                .history;
            let v = back.succeed(&key(), Some(c.clone()), 63_000, W);
            v.by_preference()
                .iter()
                .map(|r| (r.since_unix_ms, r.replaced_unix_ms))
                .collect::<Vec<_>>()
        };
        // A crash (no stop recorded): `b` counts as in force until the restart, 3 s: settled,
        // and asked before `a`.
        assert_eq!(restart(&h), [(60_000, 63_000), (0, 60_000)]);
        h.mark_stopped(60_600);
        assert!(to_json(&h, SystemTime::UNIX_EPOCH).contains("\"stopped_unix_ms\": 60600"));
        // A clean stop: `b` stood 0.6 s, transient; `a` is asked first.
        assert_eq!(restart(&h), [(0, 60_000), (60_000, 60_600)]);
        // The marker is the file's: the successor a running MUX builds has none.
        let mut next = TableHistory::default();
        next.insert(key(), h.succeed(&key(), Some(c.clone()), 63_000, W));
        assert!(!to_json(&next, SystemTime::UNIX_EPOCH).contains("stopped_unix_ms"));
    }

    #[test]
    fn an_edited_table_that_does_not_build_is_skipped() {
        let text = r#"{"format": 1, "written_unix_ms": 0, "vips": [{"address": "192.0.2.10",
            "port": 80, "protocol": 6, "current": {"table_size": 1000, "backends":
            [{"address": "10.1.0.1", "weight": 1}]}, "previous": []}]}"#;
        let loaded = from_json(text).unwrap();
        assert_eq!(loaded.skipped, 1);
        assert!(loaded.history.get(&key()).unwrap().current.is_none());
        assert!(from_json(&text.replace("\"format\": 1", "\"format\": 9")).is_err());
    }
}
