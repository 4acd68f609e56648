//! The file sink: a thread that appends records (JSON lines or CSV) and rotates the file by
//! size. A write that fails (full disk, file removed or made unwritable) counts the record as
//! an error, is logged once until a write succeeds again, and the file is reopened at most
//! once a second; the core task never waits on it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{CdrFormat, Rotate};
use crossbeam_channel::{Receiver, Sender};

use super::row::CSV_HEADER;
use super::{CdrError, CdrRow};
use crate::metrics::Metrics;

/// How often a file that could not be opened is tried again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Opens `path` now (an error at start) and starts the writer thread.
pub fn start(
    path: PathBuf,
    format: CdrFormat,
    rotate: Option<Rotate>,
    queue: usize,
    metrics: Arc<Metrics>,
) -> Result<(Sender<Arc<CdrRow>>, std::thread::JoinHandle<()>), CdrError> {
    let mut w = Writer {
        file: None,
        size: 0,
        path,
        format,
        rotate,
        failing: false,
        last_open: None,
        written: metrics.cdr_records.with_label_values(&["file", "written"]),
        errors: metrics.cdr_records.with_label_values(&["file", "error"]),
    };
    w.open().map_err(|e| CdrError::Open(w.path.clone(), e))?;
    let (tx, rx) = crossbeam_channel::bounded(queue);
    let h = std::thread::Builder::new()
        .name("cdr-file".into())
        .spawn(move || w.run(rx))
        .map_err(CdrError::Thread)?;
    Ok((tx, h))
}

struct Writer {
    file: Option<File>,
    size: u64,
    path: PathBuf,
    format: CdrFormat,
    rotate: Option<Rotate>,
    /// A write or open failed and has been logged; cleared by the next success.
    failing: bool,
    last_open: Option<Instant>,
    written: prometheus::IntCounter,
    errors: prometheus::IntCounter,
}

impl Writer {
    fn run(mut self, rx: Receiver<Arc<CdrRow>>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Ok(first) = rx.recv() {
            // Everything queued goes in one write.
            let mut n = 0u64;
            for row in std::iter::once(first).chain(rx.try_iter().take(4095)) {
                self.encode(&row, &mut buf);
                n += 1;
            }
            self.write(&buf, n);
            buf.clear();
        }
    }

    fn encode(&self, row: &CdrRow, buf: &mut Vec<u8>) {
        match self.format {
            CdrFormat::Jsonl => {
                if serde_json::to_writer(&mut *buf, row).is_ok() {
                    buf.push(b'\n');
                }
            }
            CdrFormat::Csv => buf.extend_from_slice(row.csv_line().as_bytes()),
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        self.last_open = Some(Instant::now());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        if self.size == 0 && self.format == CdrFormat::Csv {
            f.write_all(CSV_HEADER.as_bytes())?;
            self.size = CSV_HEADER.len() as u64;
        }
        self.file = Some(f);
        Ok(())
    }

    /// Writes `n` encoded records.
    fn write(&mut self, data: &[u8], n: u64) {
        if let Some(r) = self.rotate {
            if self.size > 0 && self.size + data.len() as u64 > r.size_bytes {
                self.rotate_files(r.keep);
            }
        }
        if self.file.is_none() && self.last_open.is_none_or(|t| t.elapsed() >= REOPEN_EVERY) {
            if let Err(e) = self.open() {
                self.fail(n, &e);
                return;
            }
        }
        let Some(f) = &mut self.file else {
            self.errors.inc_by(n);
            return;
        };
        match f.write_all(data) {
            Ok(()) => {
                self.size += data.len() as u64;
                self.written.inc_by(n);
                if self.failing {
                    self.failing = false;
                    tracing::info!(path = %self.path.display(), "cdr file writable again");
                }
            }
            Err(e) => {
                // Reopened on the next batch (the file may have been removed or replaced).
                self.file = None;
                self.fail(n, &e);
            }
        }
    }

    fn fail(&mut self, n: u64, e: &std::io::Error) {
        self.errors.inc_by(n);
        if !self.failing {
            self.failing = true;
            tracing::error!(path = %self.path.display(), error = %e, "cdr file: records cannot be written (counted in trunkline_cdr_records_total{{result=\"error\"}}; logged once)");
        }
    }

    /// FILE -> FILE.1 -> ... -> FILE.keep (the oldest is dropped); a new FILE is opened.
    fn rotate_files(&mut self, keep: u32) {
        self.file = None;
        let n = |i: u32| numbered(&self.path, i);
        let _ = std::fs::remove_file(n(keep));
        for i in (1..keep).rev() {
            let _ = std::fs::rename(n(i), n(i + 1));
        }
        let _ = std::fs::rename(&self.path, n(1));
        self.size = 0;
        if let Err(e) = self.open() {
            self.fail(0, &e);
        }
    }
}

fn numbered(p: &Path, i: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: PathBuf, rotate: Option<Rotate>, metrics: &Metrics) -> Writer {
        Writer {
            file: None,
            size: 0,
            path,
            format: CdrFormat::Csv,
            rotate,
            failing: false,
            last_open: None,
            written: metrics.cdr_records.with_label_values(&["file", "written"]),
            errors: metrics.cdr_records.with_label_values(&["file", "error"]),
        }
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("trunkline-cdr-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("cdr.csv");
        let m = Metrics::new();
        let rot = Rotate {
            size_bytes: CSV_HEADER.len() as u64 + 250,
            keep: 2,
        };
        let mut w = writer(path.clone(), Some(rot), &m);
        w.open().expect("open");
        // 100-byte records: two fit a file with its header; the third starts a new one.
        for i in 0..7u8 {
            let rec = format!("{:099}\n", i);
            w.write(rec.as_bytes(), 1);
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let cur = read(&path);
        assert!(cur.starts_with(CSV_HEADER), "every file has the header");
        assert_eq!(cur.lines().count(), 2, "header + record 6: {cur}");
        assert!(cur.ends_with(&format!("{:099}\n", 6)));
        let one = read(&numbered(&path, 1));
        assert_eq!(one.lines().count(), 3, "records 4, 5: {one}");
        assert!(read(&numbered(&path, 2)).contains(&format!("{:099}\n", 2)));
        assert!(!numbered(&path, 3).exists(), "keep: 2");
        assert_eq!(w.written.get(), 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_file_counts_every_record() {
        let m = Metrics::new();
        let mut w = writer(PathBuf::from("/dev/full"), None, &m);
        w.format = CdrFormat::Jsonl;
        w.open().expect("/dev/full opens");
        w.write(b"x\n", 3);
        w.write(b"y\n", 2);
        assert_eq!((w.written.get(), w.errors.get()), (0, 5));
        assert!(w.failing);
    }
}
