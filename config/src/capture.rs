//! `capture:`: a copy of every SIP message trunkline sends and receives, to a Homer/HEP
//! collector (HEP version 3, UDP).
//!
//! ```yaml
//! capture:
//!   hep: 127.0.0.1:9060      # the collector (heplify-server, Homer)
//!   id: 2001                 # capture agent id (default 2001)
//!   password: myHep          # optional: the collector's authentication key
//!   quality_interval: 10     # seconds between per-call media quality reports (0: only the
//!                            # final report when a call's media ends); default 10
//! ```

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::{key, parse_socket, sem, Sem};

/// `capture:`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Capture {
    pub hep: SocketAddr,
    pub id: u32,
    pub password: Option<String>,
    /// Seconds between per-call quality reports (0: only the final one).
    pub quality_interval: u32,
}

/// The password is never printed.
impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("hep", &self.hep)
            .field("id", &self.id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("quality_interval", &self.quality_interval)
            .finish()
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapture {
    hep: String,
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    quality_interval: Option<u32>,
}

pub(crate) fn build_capture(raw: RawCapture) -> Result<Capture, Sem> {
    let p = |k: &str| vec![key("capture"), key(k)];
    let hep = parse_socket(&raw.hep).map_err(|m| sem(p("hep"), m))?;
    if let Some(pw) = &raw.password {
        if pw.is_empty() || pw.len() > 255 || pw.chars().any(char::is_control) {
            return Err(sem(
                p("password"),
                "password: 1-255 characters, no control characters",
            ));
        }
    }
    let quality_interval = raw.quality_interval.unwrap_or(10);
    if quality_interval > 3600 {
        return Err(sem(
            p("quality_interval"),
            "quality_interval: 0 (final report only) to 3600 seconds",
        ));
    }
    Ok(Capture {
        hep,
        id: raw.id.unwrap_or(2001),
        password: raw.password,
        quality_interval,
    })
}

#[cfg(test)]
mod tests {
    use crate::from_yaml;

    fn yaml(capture: &str) -> String {
        format!(
            "listen: [{{ transport: udp, address: 127.0.0.1:5060 }}]\n\
             media: {{ address: 127.0.0.1, ports: 20000-20099 }}\n\
             {capture}\
             trunks:\n  pbx: {{ address: 127.0.0.1:5080 }}\n\
             dialplan:\n  - route: [pbx]\n"
        )
    }

    #[test]
    fn capture_is_read_with_its_defaults_and_checked() {
        let c = from_yaml(&yaml("capture: { hep: 127.0.0.1:9060 }\n"), "t.yaml").unwrap();
        let cap = c.capture.expect("capture");
        assert_eq!(cap.hep, "127.0.0.1:9060".parse().unwrap());
        assert_eq!((cap.id, cap.password), (2001, None));
        assert_eq!(cap.quality_interval, 10);
        let c = from_yaml(
            &yaml(
                "capture: { hep: '[::1]:9060', id: 7, password: hunter2, quality_interval: 0 }\n",
            ),
            "t.yaml",
        )
        .unwrap();
        let cap = c.capture.expect("capture");
        assert_eq!((cap.id, cap.quality_interval), (7, 0));
        assert!(!format!("{cap:?}").contains("hunter2"));
        assert!(from_yaml(&yaml(""), "t.yaml").unwrap().capture.is_none());
        for (bad, needle) in [
            ("capture: { hep: localhost }\n", "hep"),
            (
                "capture: { hep: 127.0.0.1:9060, password: '' }\n",
                "password",
            ),
            (
                "capture: { hep: 127.0.0.1:9060, port: 1 }\n",
                "unknown field",
            ),
            (
                "capture: { hep: 127.0.0.1:9060, quality_interval: 86400 }\n",
                "quality_interval",
            ),
        ] {
            let e = from_yaml(&yaml(bad), "t.yaml").expect_err(bad);
            assert!(e.message.contains(needle), "{bad}: {e}");
            assert_eq!(e.line, 3, "{bad}: {e}");
        }
    }
}
