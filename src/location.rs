//! The location service's store (`registrar.store`): bindings kept in a redb file so a
//! restart (or a crash) does not make every phone unreachable until it registers again.
//!
//! * At start the file is read whole; bindings that expired while trunkline was down are
//!   dropped (and their records removed); the rest go back into the core
//!   ([`signaling::b2bua::B2bua::restore_location`]).
//! * While running, the core reports the AoRs whose bindings changed; the signaling thread
//!   only hands them over a channel. A writer thread of its own coalesces what is queued
//!   (one record per AoR, the last state wins) and commits it in one redb transaction with
//!   `Durability::Immediate` (fsync'd before the commit returns). Under load a commit covers
//!   everything queued while the previous one was syncing, so a `kill -9` loses only what was
//!   not yet committed: well under a second of REGISTERs. redb's commits are atomic
//!   (copy-on-write pages, a checksummed commit slot), so a crash never leaves a torn file.
//! * A file that cannot be opened or read as a store (truncated, overwritten, another
//!   program's) is moved aside to `<file>.corrupt-<unix time>` and trunkline starts with an
//!   empty store, logging it. A file held by another running trunkline is an error.
//!
//! Record: the AoR (`user@host`) -> its bindings, encoded by [`encode`]: times as Unix
//! milliseconds (an `Instant` means nothing to the next process). Messages held for offline
//! users live in the same file, a table of their own (`mail.rs`), written by the same commits.

// redb's own error type is large; these are start-up and writer-thread paths, not hot ones.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};
use signaling::b2bua::B2bua;
use signaling::mailbox::MailChange;
use signaling::registrar::Binding;
use signaling::{Peer, Transport};

mod mail;
pub use mail::StoredMessage;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
/// Format of a record (its first byte).
const VERSION: u8 = 1;

/// One AoR's bindings as stored: times in Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBinding {
    pub contact: String,
    pub target: String,
    pub source: Peer,
    pub expires_ms: u64,
    pub q: u16,
    pub call_id: String,
    pub cseq: u32,
    pub updated_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `at` on the wall clock, given that `now` is `wall`.
pub(crate) fn wall_of(at: Instant, now: Instant, wall: u64) -> u64 {
    if at >= now {
        wall.saturating_add(at.duration_since(now).as_millis() as u64)
    } else {
        wall.saturating_sub(now.duration_since(at).as_millis() as u64)
    }
}

/// Unix milliseconds `ms` as an `Instant`, given that `now` is `wall`.
pub(crate) fn instant_of(ms: u64, now: Instant, wall: u64) -> Instant {
    if ms >= wall {
        now + Duration::from_millis(ms - wall)
    } else {
        now.checked_sub(Duration::from_millis(wall - ms))
            .unwrap_or(now)
    }
}

impl StoredBinding {
    pub fn of(b: &Binding, now: Instant, wall: u64) -> StoredBinding {
        StoredBinding {
            contact: b.contact.clone(),
            target: b.target.clone(),
            source: b.source,
            expires_ms: wall_of(b.expires, now, wall),
            q: b.q,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            updated_ms: wall_of(b.updated, now, wall),
        }
    }

    pub fn binding(&self, now: Instant, wall: u64) -> Binding {
        Binding {
            contact: self.contact.clone(),
            target: self.target.clone(),
            source: self.source,
            expires: instant_of(self.expires_ms, now, wall),
            q: self.q,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            updated: instant_of(self.updated_ms, now, wall),
        }
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A record: version, count, then per binding its fields (strings length-prefixed).
pub fn encode(list: &[StoredBinding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + list.len() * 160);
    out.push(VERSION);
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for b in list {
        put_str(&mut out, &b.contact);
        put_str(&mut out, &b.target);
        out.push(match b.source.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
        });
        put_str(&mut out, &b.source.addr.to_string());
        out.extend_from_slice(&b.expires_ms.to_be_bytes());
        out.extend_from_slice(&b.q.to_be_bytes());
        put_str(&mut out, &b.call_id);
        out.extend_from_slice(&b.cseq.to_be_bytes());
        out.extend_from_slice(&b.updated_ms.to_be_bytes());
    }
    out
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// The bindings of a record, `None` when it is not one [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Option<Vec<StoredBinding>> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let n = r.u16()?;
    let mut out = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let contact = r.str()?;
        let target = r.str()?;
        let transport = match r.u8()? {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => return None,
        };
        let addr: SocketAddr = r.str()?.parse().ok()?;
        out.push(StoredBinding {
            contact,
            target,
            source: Peer { transport, addr },
            expires_ms: r.u64()?,
            q: r.u16()?,
            call_id: r.str()?,
            cseq: r.u32()?,
            updated_ms: r.u64()?,
        });
    }
    r.0.is_empty().then_some(out)
}

/// Where a store file that cannot be used is moved.
fn aside_name(path: &Path, wall_ms: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", wall_ms / 1000));
    PathBuf::from(name)
}

/// What the file held at start.
pub struct Loaded {
    /// AoR -> live bindings.
    pub aors: Vec<(String, Vec<StoredBinding>)>,
    /// Bindings dropped as expired.
    pub expired: usize,
    /// Records that could not be decoded (removed).
    pub unreadable: usize,
    /// AoR -> messages held for it, oldest first.
    pub messages: Vec<(String, Vec<StoredMessage>)>,
    /// Held messages dropped as expired.
    pub expired_messages: usize,
}

/// One commit's worth of changes: each AoR's bindings replaced (`None`: removed), and held
/// messages put and deleted in order.
#[derive(Default)]
struct Commit {
    bindings: Vec<(String, Option<Vec<u8>>)>,
    mail: Vec<MailWrite>,
}

enum MailWrite {
    Put(String, u64, Vec<u8>),
    Delete(String, u64),
}

/// Read every record; drop (and remove) expired bindings and messages and unreadable records.
fn load(db: &Database, wall: u64) -> Result<Loaded, redb::Error> {
    let mut loaded = Loaded {
        aors: Vec::new(),
        expired: 0,
        unreadable: 0,
        messages: Vec::new(),
        expired_messages: 0,
    };
    let mut rewrite = Commit::default();
    {
        let r = db.begin_read()?;
        let t = r.open_table(TABLE)?;
        for item in t.iter()? {
            let (k, v) = item?;
            let aor = k.value().to_string();
            let Some(list) = decode(v.value()) else {
                loaded.unreadable += 1;
                rewrite.bindings.push((aor, None));
                continue;
            };
            let n = list.len();
            let live: Vec<StoredBinding> =
                list.into_iter().filter(|b| b.expires_ms > wall).collect();
            loaded.expired += n - live.len();
            if live.len() != n {
                let v = (!live.is_empty()).then(|| encode(&live));
                rewrite.bindings.push((aor.clone(), v));
            }
            if !live.is_empty() {
                loaded.aors.push((aor, live));
            }
        }
        let t = r.open_table(mail::TABLE)?;
        for item in t.iter()? {
            let (k, v) = item?;
            let (aor, id) = k.value();
            let aor = aor.to_string();
            match mail::decode(id, v.value()) {
                None => {
                    loaded.unreadable += 1;
                    rewrite.mail.push(MailWrite::Delete(aor, id));
                }
                Some(m) if m.expires_ms <= wall => {
                    loaded.expired_messages += 1;
                    rewrite.mail.push(MailWrite::Delete(aor, id));
                }
                Some(m) => match loaded.messages.last_mut() {
                    Some((a, list)) if *a == aor => list.push(m),
                    _ => loaded.messages.push((aor, vec![m])),
                },
            }
        }
    }
    if !rewrite.bindings.is_empty() || !rewrite.mail.is_empty() {
        write(db, rewrite)?;
    }
    Ok(loaded)
}

/// One transaction: each AoR's record replaced or removed, messages put and deleted.
fn write(db: &Database, c: Commit) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table(TABLE)?;
        for (aor, v) in &c.bindings {
            match v {
                Some(v) => {
                    t.insert(aor.as_str(), v.as_slice())?;
                }
                None => {
                    t.remove(aor.as_str())?;
                }
            }
        }
        let mut t = w.open_table(mail::TABLE)?;
        for m in &c.mail {
            match m {
                MailWrite::Put(aor, id, v) => {
                    t.insert((aor.as_str(), *id), v.as_slice())?;
                }
                MailWrite::Delete(aor, id) => {
                    t.remove((aor.as_str(), *id))?;
                }
            }
        }
    }
    w.commit()?;
    Ok(())
}

/// Open (or create) the store and read it, with its table. redb 2 asserts (panics) on some
/// truncated files instead of returning an error: that is caught here and taken as the
/// corruption it is.
fn open_and_load(path: &Path, wall: u64) -> Result<(Database, Loaded), redb::Error> {
    let p = path.to_path_buf();
    match std::panic::catch_unwind(move || open_and_load_inner(&p, wall)) {
        Ok(r) => r,
        Err(_) => Err(redb::Error::Corrupted(
            "the file is shorter than its header says (truncated)".into(),
        )),
    }
}

fn open_and_load_inner(path: &Path, wall: u64) -> Result<(Database, Loaded), redb::Error> {
    let db = Database::create(path)?;
    // The tables exist from the first open on (a read of a new file then finds them).
    write(&db, Commit::default())?;
    let loaded = load(&db, wall)?;
    Ok((db, loaded))
}

/// Open the store at `path`: what it held, and the database. A file that is not a usable
/// store is moved aside and a new one created; a file another process holds is an error.
pub fn open(path: &Path) -> Result<(Database, Loaded), String> {
    let wall = unix_ms(SystemTime::now());
    match open_and_load(path, wall) {
        Ok(x) => Ok(x),
        Err(redb::Error::DatabaseAlreadyOpen) => Err(format!(
            "registrar.store {}: in use by another process",
            path.display()
        )),
        Err(e) if path.is_file() => {
            let aside = aside_name(path, wall);
            std::fs::rename(path, &aside).map_err(|re| {
                format!(
                    "registrar.store {}: unusable ({e}) and cannot be moved aside: {re}",
                    path.display()
                )
            })?;
            tracing::error!(
                store = %path.display(),
                moved_to = %aside.display(),
                error = %e,
                "registrar.store is corrupt or not a store: moved aside, starting with no bindings"
            );
            open_and_load(path, wall)
                .map_err(|e| format!("registrar.store {}: {e}", path.display()))
        }
        Err(e) => Err(format!("registrar.store {}: {e}", path.display())),
    }
}

/// Batches the writer may be behind by (one per pass of the core task's loop that changed
/// bindings) before changes are dropped: a disk that stops answering costs bounded memory.
const MAX_QUEUED_BATCHES: usize = 100_000;

/// AoRs and their bindings now, and the held messages' changes, as the core reported them.
struct Batch {
    bindings: Vec<(String, Vec<StoredBinding>)>,
    mail: Vec<MailWrite>,
}

/// The running store: the channel to its writer thread.
pub struct LocationStore {
    tx: Option<crossbeam_channel::Sender<Batch>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Batches dropped because the writer was [`MAX_QUEUED_BATCHES`] behind.
    dropped: std::cell::Cell<u64>,
}

impl LocationStore {
    /// Start the writer thread on `db`.
    pub fn start(db: Database) -> Result<LocationStore, String> {
        let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED_BATCHES);
        let writer = std::thread::Builder::new()
            .name("location-store".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| format!("registrar.store writer thread: {e}"))?;
        Ok(LocationStore {
            tx: Some(tx),
            writer: Some(writer),
            dropped: std::cell::Cell::new(0),
        })
    }

    /// Hand the core's changes to the writer (nothing is written on this thread).
    pub fn save(&self, changes: Vec<(String, Vec<Binding>)>, mail: Vec<MailChange>, now: Instant) {
        if changes.is_empty() && mail.is_empty() {
            return;
        }
        let wall = unix_ms(SystemTime::now());
        let bindings = changes
            .into_iter()
            .map(|(aor, list)| {
                let stored = list
                    .iter()
                    .map(|b| StoredBinding::of(b, now, wall))
                    .collect();
                (aor, stored)
            })
            .collect();
        let mail = mail
            .into_iter()
            .map(|c| match c {
                MailChange::Put(aor, h) => {
                    let v = mail::encode(&StoredMessage::of(&h, now, wall));
                    MailWrite::Put(aor, h.id, v)
                }
                MailChange::Delete(aor, id) => MailWrite::Delete(aor, id),
            })
            .collect();
        if let Some(tx) = &self.tx {
            if tx.try_send(Batch { bindings, mail }).is_err() {
                let n = self.dropped.get() + 1;
                self.dropped.set(n);
                if n % 1000 == 1 {
                    tracing::warn!(
                        dropped = n,
                        "registrar.store: writer behind, changes dropped"
                    );
                }
            }
        }
    }

    /// Write what is queued and stop the writer.
    pub fn close(mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread: wait for changes, take everything queued behind them, one commit.
fn writer(db: Database, rx: crossbeam_channel::Receiver<Batch>) {
    let mut failures = 0u64;
    while let Ok(first) = rx.recv() {
        let mut latest: std::collections::HashMap<String, Vec<StoredBinding>> =
            first.bindings.into_iter().collect();
        let mut mail = first.mail;
        while let Ok(more) = rx.try_recv() {
            latest.extend(more.bindings);
            mail.extend(more.mail);
        }
        let bindings = latest
            .into_iter()
            .map(|(aor, list)| {
                let v = (!list.is_empty()).then(|| encode(&list));
                (aor, v)
            })
            .collect();
        if let Err(e) = write(&db, Commit { bindings, mail }) {
            failures += 1;
            // One line per 100 failures: a full disk must not flood the log.
            if failures % 100 == 1 {
                tracing::warn!(error = %e, failures, "registrar.store: write failed");
            }
        }
    }
}

/// `registrar.store`, resolved against the configuration file's directory.
pub fn store_path(cfg: &config::Config, cfg_path: Option<&Path>) -> Option<PathBuf> {
    let p = cfg.registrar.as_ref()?.store.as_ref()?;
    Some(crate::tls::resolve_path(cfg_path, p))
}

/// `trunkline check`: the store's directory must exist.
pub fn check(cfg: &config::Config, cfg_path: Option<&Path>) -> Result<(), String> {
    let Some(p) = store_path(cfg, cfg_path) else {
        return Ok(());
    };
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "registrar.store {}: directory {} does not exist",
            p.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Open the configured store, give the core what it held, and start its writer.
pub fn start(
    cfg: &config::Config,
    cfg_path: Option<&Path>,
    core: &mut B2bua,
    now: Instant,
) -> Result<Option<LocationStore>, String> {
    let Some(path) = store_path(cfg, cfg_path) else {
        return Ok(None);
    };
    let started = Instant::now();
    let (db, loaded) = open(&path)?;
    let wall = unix_ms(SystemTime::now());
    let mut bindings = 0;
    for (aor, list) in loaded.aors {
        bindings += list.len();
        let list = list.iter().map(|b| b.binding(now, wall)).collect();
        core.restore_location(aor, list, now);
    }
    // Messages kept by the last run go out as their users are (or become) registered; they
    // were accepted, so they are kept even if `offline_messages` is off now.
    let limits = cfg
        .registrar
        .as_ref()
        .and_then(|r| r.offline_messages.as_ref())
        .map(crate::policy::mailbox_limits)
        .unwrap_or_default();
    let mut messages = 0;
    for (aor, list) in loaded.messages {
        messages += list.len();
        let held = list.into_iter().map(|m| m.held(now, wall)).collect();
        core.restore_messages(aor, held, &limits, now);
    }
    core.persist_locations(now);
    tracing::info!(
        store = %path.display(),
        bindings,
        messages,
        expired_messages = loaded.expired_messages,
        expired = loaded.expired,
        unreadable = loaded.unreadable,
        ms = started.elapsed().as_millis() as u64,
        "registrar.store loaded"
    );
    LocationStore::start(db).map(Some)
}

#[cfg(test)]
mod tests;
