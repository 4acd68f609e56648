//! The PostgreSQL sink (`cdr.postgres`, tokio-postgres): a thread with its own runtime takes
//! records off the bounded queue in batches of up to [`BATCH`] and inserts each batch with one
//! statement. The table is created if missing. While the database is unreachable or refuses,
//! the batch is held and retried (with a back-off) and new records wait in the queue; what
//! the full queue refuses is dropped and counted by the core task. A batch is inserted
//! idempotently (leg B's Call-ID is unique), so a retry after a lost answer duplicates nothing.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{CdrError, CdrRow};
use crate::metrics::Metrics;

/// Records per INSERT.
pub const BATCH: usize = 500;
/// Connecting, and one INSERT, may take this long before the attempt counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off between failed attempts: doubling up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS trunkline_cdr (
    id bigserial PRIMARY KEY,
    call bigint NOT NULL,
    call_id text NOT NULL,
    b_call_id text NOT NULL UNIQUE,
    start_time timestamptz NOT NULL,
    ringing_time timestamptz,
    answer_time timestamptz,
    end_time timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    billable_ms bigint NOT NULL,
    billsec bigint NOT NULL,
    caller text NOT NULL,
    callee text NOT NULL,
    caller_out text NOT NULL,
    callee_out text NOT NULL,
    source_trunk text,
    dest_trunk text,
    attempts jsonb NOT NULL,
    final_code integer NOT NULL,
    hangup text NOT NULL,
    srtp boolean NOT NULL,
    transcoding boolean NOT NULL,
    a_media jsonb NOT NULL,
    b_media jsonb NOT NULL
)";

/// One INSERT for a JSON array of records ($1).
const INSERT: &str = "INSERT INTO trunkline_cdr (call, call_id, b_call_id, start_time,
    ringing_time, answer_time, end_time, duration_ms, billable_ms, billsec, caller, callee,
    caller_out, callee_out, source_trunk, dest_trunk, attempts, final_code, hangup, srtp,
    transcoding, a_media, b_media)
  SELECT (r->>'call')::bigint, r->>'call_id', r->>'b_call_id', (r->>'start')::timestamptz,
    (r->>'ringing')::timestamptz, (r->>'answer')::timestamptz, (r->>'end')::timestamptz,
    (r->>'duration_ms')::bigint, (r->>'billable_ms')::bigint, (r->>'billsec')::bigint,
    r->>'caller', r->>'callee', r->>'caller_out', r->>'callee_out', r->>'source_trunk',
    r->>'dest_trunk', r->'attempts', (r->>'final_code')::integer, r->>'hangup',
    (r->>'srtp')::boolean, (r->>'transcoding')::boolean, r->'a', r->'b'
  FROM jsonb_array_elements($1::text::jsonb) AS r
  ON CONFLICT (b_call_id) DO NOTHING";

/// Starts the sink's thread; it connects in the background (an unreachable database at start
/// is an outage like any other).
pub fn start(
    conn: String,
    queue: usize,
    metrics: Arc<Metrics>,
) -> Result<(Sender<Arc<CdrRow>>, std::thread::JoinHandle<()>), CdrError> {
    let (tx, rx) = crossbeam_channel::bounded(queue);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CdrError::Thread)?;
    let mut sink = Pg {
        conn,
        client: None,
        failing: false,
        written: metrics
            .cdr_records
            .with_label_values(&["postgres", "written"]),
        errors: metrics
            .cdr_records
            .with_label_values(&["postgres", "error"]),
        pending: metrics.cdr_pending.with_label_values(&["postgres"]),
    };
    let h = std::thread::Builder::new()
        .name("cdr-postgres".into())
        .spawn(move || rt.block_on(sink.run(rx)))
        .map_err(CdrError::Thread)?;
    Ok((tx, h))
}

/// Why an attempt failed.
enum Failure {
    Db(tokio_postgres::Error),
    TimedOut,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Db(e) => write!(f, "{e}"),
            Failure::TimedOut => write!(f, "no answer within {ATTEMPT_TIMEOUT:?}"),
        }
    }
}

struct Pg {
    conn: String,
    client: Option<tokio_postgres::Client>,
    failing: bool,
    written: prometheus::IntCounter,
    /// Failed attempts (per record of the batch tried).
    errors: prometheus::IntCounter,
    /// Records held: the batch being tried and the queue.
    pending: prometheus::IntGauge,
}

impl Pg {
    async fn run(&mut self, rx: Receiver<Arc<CdrRow>>) {
        let mut batch: Vec<Arc<CdrRow>> = Vec::with_capacity(BATCH);
        let mut backoff = BACKOFF_MIN;
        let mut closed = false;
        // The table exists from the start (a failure here is retried with the first batch).
        if let Err(e) = self.connect().await {
            self.failing = true;
            tracing::error!(error = %e, "cdr postgres: cannot connect; records will be held and retried");
        }
        loop {
            if batch.is_empty() {
                if closed {
                    return;
                }
                // The runtime has nothing else to drive while no batch is out: block here.
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(r) => batch.push(r),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            self.pending.set((batch.len() + rx.len()) as i64);
            match self.insert(&batch).await {
                Ok(()) => {
                    self.written.inc_by(batch.len() as u64);
                    batch.clear();
                    backoff = BACKOFF_MIN;
                    self.pending.set(rx.len() as i64);
                    if self.failing {
                        self.failing = false;
                        tracing::info!("cdr postgres: writing again");
                    }
                }
                Err(e) => {
                    self.errors.inc_by(batch.len() as u64);
                    self.client = None;
                    if !self.failing {
                        self.failing = true;
                        tracing::error!(error = %e, held = batch.len() + rx.len(), "cdr postgres: cannot write; records are held and retried (logged once per outage)");
                    }
                    if closed {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// A live connection in `self.client` (the schema made sure of on each new one).
    async fn connect(&mut self) -> Result<(), Failure> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        let connecting = tokio_postgres::connect(&self.conn, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(ATTEMPT_TIMEOUT, connecting)
            .await
            .map_err(|_| Failure::TimedOut)?
            .map_err(Failure::Db)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        tokio::time::timeout(ATTEMPT_TIMEOUT, client.batch_execute(SCHEMA))
            .await
            .map_err(|_| Failure::TimedOut)?
            .map_err(Failure::Db)?;
        self.client = Some(client);
        Ok(())
    }

    async fn insert(&mut self, batch: &[Arc<CdrRow>]) -> Result<(), Failure> {
        let rows: Vec<&CdrRow> = batch.iter().map(|r| &**r).collect();
        let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
        self.connect().await?;
        let Some(client) = &self.client else {
            return Err(Failure::TimedOut);
        };
        tokio::time::timeout(ATTEMPT_TIMEOUT, client.execute(INSERT, &[&json]))
            .await
            .map_err(|_| Failure::TimedOut)?
            .map_err(Failure::Db)?;
        Ok(())
    }
}
