//! The connection table on disk: how a restarted agent still knows the connections it carried.
//!
//! What this module owns: the state file's format, writing it atomically off the packet path,
//! and reading it back at start.
//!
//! **The restart rule** (`docs/hostagent.md`, "Restarts"). The forwarder copies the table's
//! live entries out a slice per burst (`DataPath::sweep_connections`), a full pass about every
//! second, and hands the copy to the writer thread ([`StateWriter`]), which writes it to
//! `<state_file>.tmp` and renames it over `state_file`: a reader sees the old file or the new
//! one, never half of one. At a clean exit the forwarder makes one last full copy and the
//! writer writes it before the process ends. At start, [`load`] reads the file and the daemon
//! puts back every entry with time left ([`crate::dataplane::DataPath::restore_connections`]),
//! each with the remaining time it had at the save minus the time since. The agent also
//! re-learns a connection from its backend's next reply. What this cannot save: a connection
//! opened within the last second before a crash whose backend has not sent anything since
//! (its first reply re-teaches it — until then a packet of it that carries an alternative is
//! forwarded away); and a file lost with its disk.
//!
//! No `fsync`: the file must survive the agent's crash, which the page cache does; it need not
//! survive the host's, after which the connections are gone anyway.
//!
//! **Format** (big-endian): the magic `MUXHACN1`, the Unix time of the copy in seconds (u64),
//! the record count (u32), then that many 42-byte records — client address (16, IPv4-mapped
//! for IPv4), backend address (16), client port (2), backend port (2), protocol (1), state
//! (1: `ConnState` as a byte), seconds left at the copy (4). A file of another length, magic
//! or with an unknown state is refused whole (logged; the agent starts with an empty table and
//! re-learns from replies).
//!
//! Rejected alternatives: JSON (four times the size, written every second); a memory-mapped
//! table shared with a sidecar (the data path would pay for sharing); writing from the
//! forwarder thread (a slow disk would stall packets).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::control::state::StateFileStats;
use crate::dataplane::{ConnKey, ConnRecord, ConnState};

/// The file's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"MUXHACN1";
/// Bytes before the first record.
pub const HEADER_LEN: usize = 8 + 8 + 4;
/// Bytes per record.
pub const RECORD_LEN: usize = 42;

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It could not be read (a missing file is not an error: see [`load`]).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Its contents are not a state file of this version.
    #[error(
        "{path} is not a connection state file of this version ({reason}); it is ignored and \
         the agent re-learns its connections from the backends' replies"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What [`load`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The entries with time left now, their `remaining_secs` counted from now.
    pub records: Vec<ConnRecord>,
    /// Entries that had expired since the file was written.
    pub expired: usize,
}

/// One copy of the table, for the writer.
#[derive(Debug)]
pub struct Snapshot {
    /// The live entries, `remaining_secs` counted from `taken`.
    pub records: Vec<ConnRecord>,
    /// When the copy was taken.
    pub taken: SystemTime,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The file's bytes for `records` copied at `taken`.
pub fn encode(records: &[ConnRecord], taken: SystemTime, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LEN + records.len() * RECORD_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&unix_secs(taken).to_be_bytes());
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for r in records.iter().take(count as usize) {
        out.extend_from_slice(&r.key.client);
        out.extend_from_slice(&r.key.backend);
        out.extend_from_slice(&r.key.client_port.to_be_bytes());
        out.extend_from_slice(&r.key.backend_port.to_be_bytes());
        out.push(r.key.protocol);
        out.push(r.state as u8);
        out.extend_from_slice(&r.remaining_secs.to_be_bytes());
    }
}

/// The records in `bytes` (a whole file) with their time left at `now`.
pub fn decode(bytes: &[u8], now: SystemTime) -> Result<Loaded, &'static str> {
    let header = bytes.get(..HEADER_LEN).ok_or("shorter than its header")?;
    if &header[..8] != MAGIC {
        return Err("wrong magic");
    }
    let taken = u64::from_be_bytes(header[8..16].try_into().map_err(|_| "header")?);
    let count = u32::from_be_bytes(header[16..20].try_into().map_err(|_| "header")?) as usize;
    let body = &bytes[HEADER_LEN..];
    if Some(body.len()) != count.checked_mul(RECORD_LEN) {
        return Err("its length does not match its record count");
    }
    // A clock that went back counts as no time passed.
    let elapsed = unix_secs(now).saturating_sub(taken);
    let mut loaded = Loaded::default();
    for r in body.chunks_exact(RECORD_LEN) {
        let mut key = ConnKey::default();
        key.client.copy_from_slice(&r[0..16]);
        key.backend.copy_from_slice(&r[16..32]);
        key.client_port = u16::from_be_bytes([r[32], r[33]]);
        key.backend_port = u16::from_be_bytes([r[34], r[35]]);
        key.protocol = r[36];
        let state = ConnState::from_byte(r[37]).ok_or("a record has an unknown state")?;
        let remaining = u64::from(u32::from_be_bytes([r[38], r[39], r[40], r[41]]));
        match remaining.checked_sub(elapsed).filter(|&left| left > 0) {
            Some(left) => loaded.records.push(ConnRecord {
                key,
                state,
                remaining_secs: left as u32,
            }),
            None => loaded.expired += 1,
        }
    }
    Ok(loaded)
}

/// Reads the state file at `path`: its entries with time left at `now`. A missing file is an
/// empty table (a first start).
pub fn load(path: &Path, now: SystemTime) -> Result<Loaded, StateFileError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&bytes, now).map_err(|reason| StateFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// Writes `bytes` to `path` atomically: to `<path>.tmp`, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, path)
}

/// The thread that writes the forwarder's snapshots.
#[derive(Debug)]
pub struct StateWriter {
    thread: JoinHandle<()>,
}

/// The forwarder's end of the writer: where it sends snapshots and gets buffers back.
#[derive(Debug)]
pub struct StateLink {
    /// Snapshots to write (bounded: one waiting at most; the forwarder skips a pass rather
    /// than queue more).
    pub snapshots: SyncSender<Snapshot>,
    /// Emptied record buffers coming back, so the forwarder reuses them (two in all).
    pub spares: Receiver<Vec<ConnRecord>>,
}

impl StateWriter {
    /// Starts the writer for `path`, recording its work in `stats`; the link goes to the
    /// forwarder.
    pub fn start(
        path: PathBuf,
        stats: Arc<StateFileStats>,
    ) -> io::Result<(StateWriter, StateLink)> {
        let (snapshots, incoming) = mpsc::sync_channel::<Snapshot>(1);
        let (give_back, spares): (Sender<Vec<ConnRecord>>, _) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hostagent-state".into())
            .spawn(move || write_loop(&path, &incoming, &give_back, &stats))?;
        Ok((StateWriter { thread }, StateLink { snapshots, spares }))
    }

    /// Waits for the writer to write what it was sent; returns once the link is gone (the
    /// forwarder drops it after its last snapshot).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn write_loop(
    path: &Path,
    incoming: &Receiver<Snapshot>,
    give_back: &Sender<Vec<ConnRecord>>,
    stats: &StateFileStats,
) {
    let mut bytes = Vec::new();
    let mut failing = false;
    while let Ok(mut snapshot) = incoming.recv() {
        encode(&snapshot.records, snapshot.taken, &mut bytes);
        match write_atomically(path, &bytes) {
            Ok(()) => {
                stats.writes.fetch_add(1, Ordering::Relaxed);
                stats
                    .last_entries
                    .store(snapshot.records.len() as u64, Ordering::Relaxed);
                let ms = snapshot
                    .taken
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis();
                stats
                    .last_write_unix_ms
                    .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
                if failing {
                    tracing::info!(path = %path.display(), "connection state file written again");
                    failing = false;
                }
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                stats.set_last_error(format!("{}: {e}", path.display()));
                if !failing {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the connection state file; a restart will re-learn connections from replies only");
                    failing = true;
                }
            }
        }
        snapshot.records.clear();
        let _ = give_back.send(snapshot.records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(port: u16, state: ConnState, remaining_secs: u32) -> ConnRecord {
        ConnRecord {
            key: ConnKey::new(
                "198.51.100.7".parse().unwrap(),
                port,
                "fd00:21::2".parse().unwrap(),
                8080,
                if state == ConnState::Udp { 17 } else { 6 },
            ),
            state,
            remaining_secs,
        }
    }

    #[test]
    fn a_file_round_trips_and_time_passes_while_it_rests() {
        let records = vec![
            record(1, ConnState::TcpEstablished, 7000),
            record(2, ConnState::Udp, 20),
            record(3, ConnState::TcpClosing, 5),
        ];
        let taken = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut bytes = Vec::new();
        encode(&records, taken, &mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN + 3 * RECORD_LEN);
        assert_eq!(&bytes[..8], MAGIC);
        let same = decode(&bytes, taken).unwrap();
        assert_eq!(same.records, records);
        let later = decode(&bytes, taken + Duration::from_secs(10)).unwrap();
        assert_eq!(later.expired, 1, "the closing one had 5 s left");
        assert_eq!(later.records.len(), 2);
        assert_eq!(later.records[0].remaining_secs, 6990);
        assert_eq!(later.records[1].remaining_secs, 10);
        // A clock that went back does not lengthen anything.
        let earlier = decode(&bytes, taken - Duration::from_secs(100)).unwrap();
        assert_eq!(earlier.records, records);
    }

    #[test]
    fn a_damaged_file_is_refused_whole() {
        let mut bytes = Vec::new();
        encode(
            &[record(1, ConnState::TcpSyn, 3)],
            SystemTime::now(),
            &mut bytes,
        );
        let now = SystemTime::now();
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], now),
            Err("its length does not match its record count")
        );
        assert_eq!(decode(&bytes[..5], now), Err("shorter than its header"));
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert_eq!(decode(&wrong, now), Err("wrong magic"));
        let mut state = bytes.clone();
        state[HEADER_LEN + 37] = 9;
        assert_eq!(decode(&state, now), Err("a record has an unknown state"));
    }

    #[test]
    fn written_atomically_and_loaded_back() {
        let dir = std::env::temp_dir().join(format!("hostagent-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.connections");
        assert_eq!(
            load(&path, SystemTime::now()).unwrap(),
            Loaded::default(),
            "missing = empty"
        );
        let records = vec![record(9, ConnState::TcpEstablished, 100)];
        let stats = Arc::new(StateFileStats::default());
        let (writer, link) = StateWriter::start(path.clone(), Arc::clone(&stats)).unwrap();
        link.snapshots
            .send(Snapshot {
                records: records.clone(),
                taken: SystemTime::now(),
            })
            .unwrap();
        let spare = link.spares.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            spare.is_empty() && spare.capacity() >= 1,
            "the buffer comes back for reuse"
        );
        drop(link);
        writer.join();
        assert_eq!(stats.writes.load(Ordering::Relaxed), 1);
        assert_eq!(stats.last_entries.load(Ordering::Relaxed), 1);
        let loaded = load(&path, SystemTime::now()).unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.records[0].key, records[0].key);
        assert!(
            !dir.join("t.connections.tmp").exists(),
            "renamed, not left behind"
        );
        // A directory that cannot hold the file: counted, not fatal.
        let stats = Arc::new(StateFileStats::default());
        let (writer, link) = StateWriter::start(dir.join("missing/t"), Arc::clone(&stats)).unwrap();
        link.snapshots
            .send(Snapshot {
                records,
                taken: SystemTime::now(),
            })
            .unwrap();
        drop(link);
        writer.join();
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 1);
        assert!(stats.last_error().is_some_and(|e| e.contains("missing/t")));
        let _ = fs::remove_dir_all(&dir);
    }
}
