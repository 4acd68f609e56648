//! Call detail records (`cdr:`): the core's [`CallRecord`] of a call that ended, turned into
//! wall-clock time and completed with what the shell knows (source trunk, codecs, the relay's
//! final per-leg media stats), then handed to the sinks' writer threads through bounded
//! queues. Nothing here blocks the core task: a full queue drops the record (counted), a sink
//! that fails counts and logs once.
//!
//! A record waits for its media stats: the relay closes a call's port pairs on its worker
//! threads and reports their final counters shortly after ([`Cdrs::on_closed`]); a record
//! whose stats do not come within [`STATS_WAIT`] is written without them.

mod file;
mod postgres;
mod row;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media_relay::relay::ClosedPairStats;
use signaling::b2bua::CallRecord;

use crate::metrics::Metrics;
pub use row::{CdrRow, LegMedia};

/// How long a record waits for its call's closed-pair stats from the relay.
pub const STATS_WAIT: Duration = Duration::from_secs(2);
/// How often the core loop takes the relay's closed-pair stats while records wait (the
/// relay's workers apply closes within 20 ms).
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// How often records waiting too long are looked for.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// Why the CDR sinks cannot start.
#[derive(Debug)]
pub enum CdrError {
    /// The file's directory does not exist (or is no directory).
    NoDirectory(std::path::PathBuf),
    /// The file cannot be opened for appending.
    Open(std::path::PathBuf, std::io::Error),
    /// A writer thread could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for CdrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CdrError::NoDirectory(p) => {
                write!(f, "cdr.file {}: its directory does not exist", p.display())
            }
            CdrError::Open(p, e) => write!(f, "cdr.file {}: {e}", p.display()),
            CdrError::Thread(e) => write!(f, "cdr: writer thread: {e}"),
        }
    }
}

impl std::error::Error for CdrError {}

/// `cdr.file` resolved against the configuration file's directory.
pub fn file_path(cfg: &config::Cdr, cfg_path: Option<&Path>) -> Option<std::path::PathBuf> {
    cfg.file
        .as_ref()
        .map(|f| crate::tls::resolve_path(cfg_path, f))
}

/// What `trunkline check` and start verify: the CDR file's directory exists.
pub fn check(cfg: &config::Config, cfg_path: Option<&Path>) -> Result<(), CdrError> {
    let Some(c) = &cfg.cdr else { return Ok(()) };
    if let Some(p) = file_path(c, cfg_path) {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(CdrError::NoDirectory(p));
        }
    }
    Ok(())
}

/// One sink's queue, as the core task sees it.
struct Sink {
    name: &'static str,
    tx: crossbeam_channel::Sender<Arc<CdrRow>>,
    dropped: prometheus::IntCounter,
    writer: std::thread::JoinHandle<()>,
}

/// A record waiting for its media stats.
struct Pending {
    row: CdrRow,
    /// Pairs (by their `a` port) whose stats have not come yet.
    waiting: Vec<u16>,
    since: Instant,
}

/// The CDR side of the core task.
pub struct Cdrs {
    sinks: Vec<Sink>,
    /// Calls whose record came and whose media is not released yet (the next call to
    /// [`Cdrs::released`] takes it).
    staged: Option<CdrRow>,
    /// Records waiting for closed-pair stats, by call; and pair `a` port -> call.
    pending: HashMap<u64, Pending>,
    by_pair: HashMap<u16, u64>,
    /// Codec (first payload of the first audio m-line) each leg's SDP named, by call.
    codecs: HashMap<u64, [Option<String>; 2]>,
    next_expire: Option<Instant>,
}

impl Cdrs {
    /// Starts the sinks `cfg` names (their writer threads). The file is opened now: an
    /// unusable path is an error at start.
    pub fn start(
        cfg: &config::Cdr,
        cfg_path: Option<&Path>,
        metrics: &Arc<Metrics>,
    ) -> Result<Cdrs, CdrError> {
        let mut sinks = Vec::new();
        if let Some(path) = file_path(cfg, cfg_path) {
            let (tx, writer) =
                file::start(path, cfg.format, cfg.rotate, cfg.queue, metrics.clone())?;
            sinks.push(Sink {
                name: "file",
                tx,
                writer,
                dropped: metrics.cdr_dropped.with_label_values(&["file"]),
            });
        }
        if let Some(conn) = &cfg.postgres {
            let (tx, writer) = postgres::start(conn.clone(), cfg.queue, metrics.clone())?;
            sinks.push(Sink {
                name: "postgres",
                tx,
                writer,
                dropped: metrics.cdr_dropped.with_label_values(&["postgres"]),
            });
        }
        Ok(Cdrs {
            sinks,
            staged: None,
            pending: HashMap::new(),
            by_pair: HashMap::new(),
            codecs: HashMap::new(),
            next_expire: None,
        })
    }

    /// SDP from leg `leg` (0: A, 1: B): an offer names the offerer's codec until the answer,
    /// whose first codec is both legs' (trunkline does not transcode).
    pub fn note_sdp(&mut self, call: u64, leg: usize, answer: bool, sdp: &[u8]) {
        let Some(c) = row::codec_of(sdp) else { return };
        let slots = self.codecs.entry(call).or_default();
        if answer {
            *slots = [Some(c.clone()), Some(c)];
        } else if let Some(slot) = slots.get_mut(leg) {
            slot.get_or_insert(c);
        }
    }

    /// The core reported `rec`; `source_trunk` is the trunk leg A came from.
    pub fn record(&mut self, rec: &CallRecord, source_trunk: Option<&str>) {
        if rec.refused {
            // Refused before it became a call: no media to wait for, no release to come.
            self.emit(CdrRow::new(rec, source_trunk, wall_clock()));
            return;
        }
        let codecs = self.codecs.remove(&rec.call).unwrap_or_default();
        let mut row = CdrRow::new(rec, source_trunk, wall_clock());
        row.a.codec = codecs[0].clone();
        row.b.codec = codecs[1].clone();
        // A record the core reports is followed by the release of that call's media.
        if let Some(old) = self.staged.replace(row) {
            self.emit(old);
        }
    }

    /// The call's media was released: `pairs` (with `srtp` when a stream was SAVP,
    /// `transcoding` when the relay transcoded one) are the relay pairs whose final stats the
    /// record waits for.
    pub fn released(
        &mut self,
        call: u64,
        pairs: &[u16],
        srtp: bool,
        transcoding: bool,
        now: Instant,
    ) {
        let Some(mut row) = self.staged.take_if(|r| r.call == call) else {
            return;
        };
        row.srtp = srtp;
        row.transcoding = transcoding;
        if pairs.is_empty() {
            self.emit(row);
            return;
        }
        for p in pairs {
            self.by_pair.insert(*p, call);
        }
        self.pending.insert(
            call,
            Pending {
                row,
                waiting: pairs.to_vec(),
                since: now,
            },
        );
    }

    /// Records are waiting for media stats.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty() || self.staged.is_some()
    }

    /// Final stats of a closed relay pair: the record of its call takes them (the first
    /// stream's, and the counters of every stream).
    pub fn on_closed(&mut self, c: &ClosedPairStats) {
        let Some(call) = self.by_pair.remove(&c.pair.a) else {
            return;
        };
        let Some(p) = self.pending.get_mut(&call) else {
            return;
        };
        p.row.a.add(&c.a);
        p.row.b.add(&c.b);
        p.waiting.retain(|x| *x != c.pair.a);
        if p.waiting.is_empty() {
            if let Some(p) = self.pending.remove(&call) {
                self.emit(p.row);
            }
        }
    }

    /// Writes the records whose stats did not come in time (and a staged one the core never
    /// released media for).
    pub fn expire(&mut self, now: Instant) {
        if let Some(r) = self.staged.take() {
            self.emit(r);
        }
        if self.next_expire.is_some_and(|t| now < t) {
            return;
        }
        self.next_expire = Some(now + EXPIRE_EVERY);
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= STATS_WAIT)
            .map(|(c, _)| *c)
            .collect();
        for call in late {
            if let Some(p) = self.pending.remove(&call) {
                for pair in &p.waiting {
                    self.by_pair.remove(pair);
                }
                self.emit(p.row);
            }
        }
    }

    /// Drops the codecs of calls the core no longer has (a call that never got a record).
    pub fn reconcile(&mut self, mut alive: impl FnMut(u64) -> bool) {
        self.codecs.retain(|c, _| alive(*c));
    }

    /// Closes the queues and waits (at most `wait`) for the writers to write what they hold.
    pub fn shutdown(mut self, wait: Duration) {
        self.expire(Instant::now() + STATS_WAIT);
        let until = Instant::now() + wait;
        for s in self.sinks.drain(..) {
            drop(s.tx);
            while !s.writer.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The grep-able call-end line and every sink's queue.
    fn emit(&mut self, row: CdrRow) {
        if tracing::enabled!(target: "trunkline::cdr", tracing::Level::INFO) {
            row.log_line();
        }
        let row = Arc::new(row);
        for s in &self.sinks {
            if s.tx.try_send(row.clone()).is_err() {
                s.dropped.inc();
                tracing::debug!(sink = s.name, "cdr queue full: record dropped");
            }
        }
    }
}

/// The call-end log line of `rec` when no CDR sink is configured.
pub fn log_call_end(rec: &CallRecord, source_trunk: Option<&str>) {
    if tracing::enabled!(target: "trunkline::cdr", tracing::Level::INFO) {
        CdrRow::new(rec, source_trunk, wall_clock()).log_line();
    }
}

/// The wall clock and the monotonic clock read together (to turn the core's `Instant`s into
/// wall-clock times).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    pub wall: SystemTime,
    pub mono: Instant,
}

impl WallClock {
    pub fn at(&self, t: Instant) -> SystemTime {
        match self.mono.checked_duration_since(t) {
            Some(ago) => self.wall - ago,
            None => self.wall + t.saturating_duration_since(self.mono),
        }
    }
}

fn wall_clock() -> WallClock {
    WallClock {
        wall: SystemTime::now(),
        mono: Instant::now(),
    }
}
