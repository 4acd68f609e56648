//! The admin HTTP endpoint on `metrics.listen`: `GET /metrics`, `GET /health`, `POST /reload`,
//! and the admin API's requests handed to the core task; bounded in waiting connections and
//! in time.

use super::*;

/// Requests the admin endpoint hands to the core task.
pub enum AdminRequest {
    /// Refresh gauges that mirror core state, then answer.
    Refresh(tokio::sync::oneshot::Sender<()>),
    /// Reload the configuration file; answer with the outcome.
    Reload(tokio::sync::oneshot::Sender<Result<u64, String>>),
    /// An admin API request (`crate::admin`): answered with an HTTP status and a JSON value.
    Query(
        crate::admin::Query,
        tokio::sync::oneshot::Sender<(&'static str, serde_json::Value)>,
    ),
}

/// The admin token in use (`admin.token_file`'s, else `metrics.reload_token`), shared with the
/// HTTP task and replaced on reload.
pub type AdminToken = Arc<std::sync::RwLock<Option<String>>>;

/// Admin connections waiting for their request head at most; beyond it the oldest waiting one
/// is closed (an idle connection flood cannot keep `/health` from an operator's probe).
pub const ADMIN_MAX_WAITING: usize = 64;
/// How long a connection may take to send its request head.
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing an answer may take.
const ADMIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections waiting for their request head, oldest first, each with its eviction signal.
#[derive(Default)]
struct Waiting {
    next: u64,
    conns: BTreeMap<u64, tokio::sync::oneshot::Sender<()>>,
}

/// What one request head says that matters here.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Head<'a> {
    method: &'a str,
    path: &'a str,
    origin: bool,
    cross_site: bool,
    bearer: Option<&'a str>,
}

pub(super) fn parse_head(head: &str) -> Head<'_> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let mut h = Head {
        method: parts.next().unwrap_or(""),
        path: parts.next().unwrap_or(""),
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("origin") {
            h.origin = true;
        } else if name.eq_ignore_ascii_case("sec-fetch-site") {
            h.cross_site |= value.eq_ignore_ascii_case("cross-site");
        } else if name.eq_ignore_ascii_case("authorization") {
            h.bearer = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
        }
    }
    h
}

/// Compares without an early exit on the first difference (the token's length is not secret).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `POST /reload` with `h` may go ahead (the admin API's rule, `crate::admin::allowed`,
/// with `token` the admin token in use): `Err((status, reason label))` if not.
pub(super) fn reload_allowed(
    h: &Head<'_>,
    settings: &config::Metrics,
    token: Option<&str>,
) -> Result<(), (&'static str, &'static str)> {
    crate::admin::allowed(
        h.origin || h.cross_site,
        h.bearer,
        token,
        settings.listen.ip().is_loopback(),
    )
    .map_err(|(status, why)| match why {
        "admin_disabled" => (status, "reload_disabled"),
        other => (status, other),
    })
}

/// Serve `GET /metrics`, `GET /health` and `POST /reload` on `listener`, to the sources
/// `settings` allows.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    admin: mpsc::Sender<AdminRequest>,
    settings: config::Metrics,
    token: AdminToken,
) {
    let settings = Arc::new(settings);
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let mut backoff = crate::transport::AcceptBackoff::new("admin", metrics.clone());
    loop {
        let (mut s, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.ok();
        if !settings.allows(from.ip()) {
            // Closed unanswered: nothing tells a scanner what listens here.
            metrics
                .admin_refused
                .with_label_values(&["not_allowed"])
                .inc();
            continue;
        }
        let (cancel_tx, mut cancel_rx) = tokio::sync::oneshot::channel();
        let id = {
            let Ok(mut w) = waiting.lock() else { continue };
            if w.conns.len() >= ADMIN_MAX_WAITING {
                if let Some((_, oldest)) = w.conns.pop_first() {
                    let _ = oldest.send(());
                }
            }
            let id = w.next;
            w.next += 1;
            w.conns.insert(id, cancel_tx);
            id
        };
        let metrics = metrics.clone();
        let admin = admin.clone();
        let settings = settings.clone();
        let waiting = waiting.clone();
        let token = token.read().ok().and_then(|t| t.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded in size and time); bodies are ignored.
            let read = async {
                loop {
                    match s.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                        return true;
                    }
                }
            };
            let got = tokio::select! {
                r = tokio::time::timeout(ADMIN_READ_TIMEOUT, read) => match r {
                    Ok(got) => got,
                    Err(_) => {
                        metrics.admin_refused.with_label_values(&["timeout"]).inc();
                        false
                    }
                },
                _ = &mut cancel_rx => {
                    metrics.admin_refused.with_label_values(&["evicted"]).inc();
                    false
                }
            };
            if let Ok(mut w) = waiting.lock() {
                w.conns.remove(&id);
            }
            if !got {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let h = parse_head(&head);
            let (status, ctype, body): (&str, &str, Vec<u8>) = match (h.method, h.path) {
                ("GET", "/metrics") => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if admin.send(AdminRequest::Refresh(tx)).await.is_ok() {
                        let _ = rx.await;
                    }
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(),
                    )
                }
                ("GET", "/health") => ("200 OK", "text/plain", b"ok\n".to_vec()),
                ("POST", "/reload") => match reload_allowed(&h, &settings, token.as_deref()) {
                    Err((status, why)) => {
                        metrics.admin_refused.with_label_values(&[why]).inc();
                        (
                            status,
                            "text/plain",
                            format!("reload refused: {why}\n").into_bytes(),
                        )
                    }
                    Ok(()) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let res = if admin.send(AdminRequest::Reload(tx)).await.is_ok() {
                            rx.await.unwrap_or_else(|_| Err("core stopped".into()))
                        } else {
                            Err("core stopped".into())
                        };
                        match res {
                            Ok(gen) => (
                                "200 OK",
                                "text/plain",
                                format!("reloaded: generation {gen}\n").into_bytes(),
                            ),
                            Err(e) => (
                                "422 Unprocessable Entity",
                                "text/plain",
                                format!("reload failed: {e}\n").into_bytes(),
                            ),
                        }
                    }
                },
                (m, p) => match crate::admin::parse(m, p) {
                    None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
                    Some(q) => match crate::admin::allowed(
                        h.origin || h.cross_site,
                        h.bearer,
                        token.as_deref(),
                        settings.listen.ip().is_loopback(),
                    ) {
                        Err((status, why)) => {
                            metrics.admin_refused.with_label_values(&[why]).inc();
                            (
                                status,
                                "application/json",
                                format!("{{\"error\":\"{why}\"}}\n").into_bytes(),
                            )
                        }
                        Ok(()) => {
                            let (status, body) = crate::admin::ask(&admin, q).await;
                            (status, "application/json", body)
                        }
                    },
                },
            };
            let extra = if status.starts_with("401") {
                "WWW-Authenticate: Bearer\r\n"
            } else {
                ""
            };
            let hdr = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = tokio::time::timeout(ADMIN_WRITE_TIMEOUT, async {
                let _ = s.write_all(hdr.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            })
            .await;
        });
    }
}

/// Bind the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
