//! Live reload of the configuration file (SIGHUP, `POST /reload`, the file changing).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::policy::LivePolicy;

/// Reloads the configuration file: parsed and validated whole on a blocking thread (a 100k-rule
/// plan takes tens of milliseconds to compile; the core loop keeps carrying calls meanwhile),
/// then swapped in on the core loop; an invalid file changes nothing. One load runs at a time:
/// triggers that arrive meanwhile (a save seen by the watch and a SIGHUP for the same edit)
/// start one more load when it is done, which reads the file as it is then.
pub(super) struct Reloader {
    path: Option<PathBuf>,
    mtime: Option<Stamp>,
    generation: u64,
    in_flight: bool,
    /// A trigger that came while a load was running, and who waits for the next result.
    again: Option<&'static str>,
    waiting: Vec<tokio::sync::oneshot::Sender<Result<u64, String>>>,
    done_tx: mpsc::UnboundedSender<Loaded>,
}

/// A finished load, back on the core loop.
pub(super) struct Loaded {
    why: &'static str,
    t0: Instant,
    result: Result<config::Config, String>,
    replies: Vec<tokio::sync::oneshot::Sender<Result<u64, String>>>,
}

impl Reloader {
    pub(super) fn new(path: Option<PathBuf>) -> (Reloader, mpsc::UnboundedReceiver<Loaded>) {
        let mtime = path.as_ref().and_then(|p| mtime(p));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let r = Reloader {
            path,
            mtime,
            generation: 1,
            in_flight: false,
            again: None,
            waiting: Vec::new(),
            done_tx,
        };
        (r, done_rx)
    }

    pub(super) fn changed(&mut self) -> bool {
        let Some(p) = &self.path else { return false };
        let m = mtime(p);
        if m.is_some() && m != self.mtime {
            self.mtime = m;
            return true;
        }
        false
    }

    /// Starts loading the file on a blocking thread (or after the load in flight); the outcome
    /// arrives as a [`Loaded`] for [`Reloader::apply`], and `reply` (POST /reload) gets it then.
    pub(super) fn start(
        &mut self,
        why: &'static str,
        reply: Option<tokio::sync::oneshot::Sender<Result<u64, String>>>,
    ) {
        let Some(p) = self.path.clone() else {
            if let Some(r) = reply {
                let _ = r.send(Err(
                    "running on the embedded default: no file to reload".into()
                ));
            }
            return;
        };
        self.waiting.extend(reply);
        if self.in_flight {
            self.again = Some(why);
            return;
        }
        self.in_flight = true;
        self.mtime = mtime(&p);
        let replies = std::mem::take(&mut self.waiting);
        let tx = self.done_tx.clone();
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || {
            let result = config::load_file(&p)
                .map_err(|e| e.to_string())
                // Certificates and CA files named by the new file must load too, or the
                // running configuration stays.
                .and_then(|cfg| crate::tls::check(&cfg, Some(&p)).map(|()| cfg));
            let _ = tx.send(Loaded {
                why,
                t0,
                result,
                replies,
            });
        });
    }

    /// Swaps in a finished load (on the core loop), or counts and logs its failure. Returns the
    /// configuration it replaced, for the caller to drop off the core loop (freeing a big plan
    /// takes milliseconds).
    pub(super) fn apply(
        &mut self,
        l: Loaded,
        policy: &mut LivePolicy,
        metrics: &Metrics,
    ) -> Option<Arc<config::Config>> {
        self.in_flight = false;
        let mut replaced = None;
        let out = match l.result {
            Ok(cfg) => {
                let old = &policy.config;
                if cfg.listen != old.listen {
                    tracing::warn!("reload: listener changes take effect after a restart");
                }
                if cfg.media != old.media {
                    tracing::warn!("reload: media changes take effect after a restart");
                }
                if cfg.limits.tcp != old.limits.tcp {
                    tracing::warn!("reload: limits.tcp changes take effect after a restart");
                }
                if cfg.metrics != old.metrics {
                    tracing::warn!("reload: metrics listener changes take effect after a restart");
                }
                for w in &cfg.warnings {
                    tracing::warn!("reload: {w}");
                }
                replaced = Some(std::mem::replace(&mut policy.config, Arc::new(cfg)));
                policy.config_changed();
                self.generation += 1;
                metrics.config_generation.set(self.generation as i64);
                metrics.config_reloads.with_label_values(&["success"]).inc();
                tracing::info!(
                    generation = self.generation,
                    trigger = l.why,
                    took_ms = l.t0.elapsed().as_secs_f64() * 1e3,
                    "configuration reloaded"
                );
                Ok(self.generation)
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!(
                    trigger = l.why,
                    "reload failed, keeping the running configuration: {e}"
                );
                Err(e)
            }
        };
        for r in l.replies {
            let _ = r.send(out.clone());
        }
        if let Some(why) = self.again.take() {
            self.start(why, None);
        }
        replaced
    }
}

/// What the file watch compares: modification time, size and inode. The mtime alone misses a
/// second save within one timestamp tick (1 s on ext3 and many network mounts, 2 s on FAT), and
/// a file replaced by rename or rewritten to another length is a change whatever its mtime.
type Stamp = (std::time::SystemTime, u64, u64);

fn mtime(p: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}
