//! The MUX's side of the announcement guard: start it, feed it, restart it if it dies.
//!
//! Only the liveness thread ([`crate::control::liveness`]) holds a [`GuardLink`]. Writes go
//! straight into the guard's stdin pipe (a line every few tens of milliseconds; the guard reads
//! continuously, and a pipe holds minutes of heartbeats should it stall). Replies are read by a
//! thread per guard into a channel, so checking them never blocks.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::bird::BirdSpeaker;
use super::protocol::{FromGuard, ToGuard};

/// The hidden subcommand `mux run` starts the guard with.
pub const SUBCOMMAND: &str = "announce-guard";

/// A running guard and the pipe to it.
#[derive(Debug)]
pub struct GuardLink {
    exe: PathBuf,
    speaker: BirdSpeaker,
    timeout: Duration,
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<FromGuard>,
    /// The last `want` sent, re-sent to a restarted guard.
    want: Option<BTreeSet<IpAddr>>,
    restarts: u64,
}

impl GuardLink {
    /// Starts a guard for `speaker` with this liveness `timeout`, running this same binary.
    pub fn start(speaker: BirdSpeaker, timeout: Duration) -> std::io::Result<GuardLink> {
        let exe = std::env::current_exe()?;
        let (child, stdin, replies) = spawn(&exe, &speaker, timeout)?;
        Ok(GuardLink {
            exe,
            speaker,
            timeout,
            child,
            stdin,
            replies,
            want: None,
            restarts: 0,
        })
    }

    /// Sends one message. A guard that has died is restarted (and told the last `want`
    /// again) before the message is sent to the new one.
    pub fn send(&mut self, msg: &ToGuard) -> std::io::Result<()> {
        if let ToGuard::Want(v) = msg {
            self.want = Some(v.clone());
        }
        if self.write(msg).is_ok() {
            return Ok(());
        }
        self.restart()?;
        self.write(msg)
    }

    /// Restarts the guard if it has exited. Returns whether it did.
    pub fn check(&mut self) -> std::io::Result<bool> {
        match self.child.try_wait()? {
            None => Ok(false),
            Some(status) => {
                tracing::warn!(%status, "the announcement guard exited; starting a new one");
                self.restart()?;
                Ok(true)
            }
        }
    }

    /// The replies received since the last call.
    pub fn replies(&mut self) -> Vec<FromGuard> {
        self.replies.try_iter().collect()
    }

    /// How many times the guard was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the pipe (the guard withdraws and exits) and waits up to `wait` for it to exit.
    /// Returns whether it exited in time.
    pub fn close(self, wait: Duration) -> bool {
        let GuardLink {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let deadline = Instant::now() + wait;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return false,
            }
        }
    }

    fn write(&mut self, msg: &ToGuard) -> std::io::Result<()> {
        self.stdin.write_all(msg.to_line().as_bytes())?;
        self.stdin.flush()
    }

    fn restart(&mut self) -> std::io::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, stdin, replies) = spawn(&self.exe, &self.speaker, self.timeout)?;
        self.child = child;
        self.stdin = stdin;
        self.replies = replies;
        self.restarts += 1;
        if let Some(want) = self.want.clone() {
            self.write(&ToGuard::Want(want))?;
        }
        Ok(())
    }
}

type Spawned = (Child, ChildStdin, mpsc::Receiver<FromGuard>);

fn spawn(exe: &PathBuf, speaker: &BirdSpeaker, timeout: Duration) -> std::io::Result<Spawned> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg("--bird-socket")
        .arg(&speaker.socket)
        .arg("--bird-include")
        .arg(&speaker.include)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: a signal aimed at the MUX's group (Ctrl-C, `kill -STOP
        // -PGID`) must not reach the process that withdraws the MUX's routes.
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("guard-replies".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match FromGuard::parse(&line) {
                    Ok(msg) => {
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a line from the guard"),
                }
            }
        })?;
    Ok((child, stdin, rx))
}
