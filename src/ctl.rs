//! `trunkline ctl`: the admin API from a shell. Finds the API and its token in the
//! configuration file (`metrics.listen`, `admin.token_file` or `metrics.reload_token`) or takes
//! them as flags; prints tables for people and, with `--json`, the API's JSON for scripts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub const HELP: &str = "\
USAGE:
    trunkline ctl [--config FILE | --api HOST:PORT] [--token TOKEN] [--json] COMMAND

COMMANDS:
    calls                  calls in progress
    call ID                one call
    hangup ID              end a call (BYE on both legs)
    registrations [USER]   registered contacts
    unregister USER@HOST   remove an AoR's registrations
    trunks                 trunks: up, registered, calls, limits
    reload                 reload the configuration file
    drain                  refuse new calls (503), let the others end

The API address comes from --api, else the configuration's metrics.listen; the token from
--token, else $TRUNKLINE_TOKEN, else the configuration's admin.token_file / metrics.reload_token.
";

/// A failure of `ctl`, said plainly.
#[derive(Debug)]
pub struct CtlError(pub String);

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Options {
    config: Option<PathBuf>,
    api: Option<SocketAddr>,
    token: Option<String>,
    json: bool,
    words: Vec<String>,
}

fn options(args: &[String]) -> Result<Options, CtlError> {
    let mut o = Options {
        config: None,
        api: None,
        token: std::env::var("TRUNKLINE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        json: false,
        words: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| CtlError(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(value("--config")?)),
            "--api" => {
                let v = value("--api")?;
                o.api = Some(
                    v.parse()
                        .map_err(|_| CtlError(format!("--api {v}: give HOST:PORT as an IP")))?,
                );
            }
            "--token" => o.token = Some(value("--token")?),
            "--json" => o.json = true,
            "-h" | "--help" => return Err(CtlError(HELP.to_string())),
            w => o.words.push(w.to_string()),
        }
    }
    Ok(o)
}

/// Where the API is and its token, from the options and the configuration file.
fn endpoint(o: &Options) -> Result<(SocketAddr, Option<String>), CtlError> {
    let cfg = match &o.config {
        Some(p) => Some(config::load_file(p).map_err(|e| CtlError(e.to_string()))?),
        None if o.api.is_none() => Some(config::default_config()),
        None => None,
    };
    let api = match (o.api, cfg.as_ref().and_then(|c| c.metrics.as_ref())) {
        (Some(a), _) => a,
        (None, Some(m)) => {
            let mut a = m.listen;
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a
        }
        (None, None) => {
            return Err(CtlError(
                "no admin API: the configuration has no metrics.listen (or give --api)".into(),
            ))
        }
    };
    let token = match (&o.token, cfg.as_ref()) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(c)) => match &c.admin {
            Some(a) => {
                let text = std::fs::read_to_string(&a.token_file).map_err(|e| {
                    CtlError(format!("admin.token_file {}: {e}", a.token_file.display()))
                })?;
                Some(config::parse_token(&text).map_err(CtlError)?)
            }
            None => c.metrics.as_ref().and_then(|m| m.reload_token.clone()),
        },
        (None, None) => None,
    };
    Ok((api, token))
}

/// One HTTP/1.1 request; (status code, body).
fn request(
    api: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<(u16, String), CtlError> {
    let t = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&api, t).map_err(|e| {
        CtlError(format!(
            "cannot reach trunkline's admin API at {api}: {e} (is trunkline running, with metrics.listen there?)"
        ))
    })?;
    let _ = s.set_read_timeout(Some(t));
    let _ = s.set_write_timeout(Some(t));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| CtlError(format!("sending to {api}: {e}")))?;
    let mut buf = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| CtlError(format!("reading from {api}: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CtlError(format!("{api} did not answer HTTP")))?;
    Ok((code, body.to_string()))
}

/// Run `trunkline ctl ARGS`; what to print on success.
pub fn run(args: &[String]) -> Result<String, CtlError> {
    let o = options(args)?;
    let words: Vec<&str> = o.words.iter().map(String::as_str).collect();
    let (method, path) = match words.as_slice() {
        ["calls"] => ("GET", "/calls".to_string()),
        ["call", id] => ("GET", format!("/calls/{}", number(id)?)),
        ["hangup", id] => ("DELETE", format!("/calls/{}", number(id)?)),
        ["registrations"] => ("GET", "/registrations".to_string()),
        ["registrations", user] => ("GET", format!("/registrations?user={}", encode(user))),
        ["unregister", aor] => ("DELETE", format!("/registrations/{}", encode(aor))),
        ["trunks"] => ("GET", "/trunks".to_string()),
        ["reload"] => ("POST", "/reload".to_string()),
        ["drain"] => ("POST", "/drain".to_string()),
        [] => return Err(CtlError(format!("a command is missing\n\n{HELP}"))),
        _ => {
            return Err(CtlError(format!(
                "unknown command `{}`\n\n{HELP}",
                words.join(" ")
            )))
        }
    };
    let (api, token) = endpoint(&o)?;
    let (code, body) = request(api, token.as_deref(), method, &path)?;
    match code {
        200 => {}
        401 => {
            return Err(CtlError(format!(
            "the admin API at {api} refused the token (401): give --token or set admin.token_file"
        )))
        }
        403 => {
            return Err(CtlError(format!(
                "the admin API at {api} is closed to this request (403): {}",
                body.trim()
            )))
        }
        c => return Err(CtlError(format!("{method} {path}: {c}: {}", body.trim()))),
    }
    if o.json || words[0] == "reload" {
        return Ok(body);
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| CtlError(format!("the API's answer: {e}")))?;
    Ok(render(words[0], &v))
}

fn number(s: &str) -> Result<u64, CtlError> {
    s.parse()
        .map_err(|_| CtlError(format!("`{s}` is not a call id (a number)")))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Columns of `rows` (arrays of cells) padded to their widths.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// `key` of the first media stream's leg A and leg B, as `a/b` (`-` where unknown).
fn both(call: &Value, key: &str) -> String {
    let leg = |i: usize| cell(&call["media"][0]["legs"][i][key]);
    format!("{}/{}", leg(0), leg(1))
}

fn render(cmd: &str, v: &Value) -> String {
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let calls = |calls: Vec<Value>| {
        table(
            &[
                "ID",
                "STATE",
                "TRUNK",
                "AGE s",
                "LEG A",
                "LEG A PEER",
                "LEG B PEER",
                "RTP IN A/B",
                "MOS A/B",
            ],
            calls
                .iter()
                .map(|c| {
                    vec![
                        cell(&c["id"]),
                        cell(&c["state"]),
                        cell(&c["trunk"]),
                        cell(&c["age_s"]),
                        cell(&c["legs"]["a"]["call_id"]),
                        cell(&c["legs"]["a"]["peer"]),
                        cell(&c["legs"]["b"]["peer"]),
                        both(c, "rtp_packets_in"),
                        both(c, "mos"),
                    ]
                })
                .collect(),
        )
    };
    match cmd {
        "calls" => calls(list("calls")),
        "call" => calls(vec![v.clone()]),
        "hangup" => format!("call {} ended\n", cell(&v["ended"])),
        "registrations" => table(
            &["AOR", "CONTACT", "SOURCE", "EXPIRES s", "Q"],
            list("registrations")
                .iter()
                .map(|r| {
                    ["aor", "contact", "source", "expires_s", "q"]
                        .iter()
                        .map(|k| cell(&r[*k]))
                        .collect()
                })
                .collect(),
        ),
        "unregister" => format!("{} binding(s) removed\n", cell(&v["removed"])),
        "trunks" => table(
            &[
                "TRUNK",
                "ADDRESS",
                "TRANSPORT",
                "UP",
                "REGISTERED",
                "CALLS",
                "MAX CALLS",
                "MAX CPS",
            ],
            list("trunks")
                .iter()
                .map(|t| {
                    [
                        "name",
                        "address",
                        "transport",
                        "up",
                        "registered",
                        "active_calls",
                        "max_calls",
                        "max_cps",
                    ]
                    .iter()
                    .map(|k| cell(&t[*k]))
                    .collect()
                })
                .collect(),
        ),
        "drain" => "draining: new calls get 503\n".into(),
        _ => format!("{v}\n"),
    }
}
