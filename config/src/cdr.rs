//! `cdr:`: one call detail record per call, written when the call ends, to a file (JSON lines
//! or CSV, rotated by size) and/or a PostgreSQL table.
//!
//! ```yaml
//! cdr:
//!   file: /var/log/trunkline/cdr.jsonl   # its directory must exist
//!   format: jsonl                        # jsonl (default) | csv
//!   rotate: { size_mb: 100, keep: 10 }   # optional: cdr.jsonl.1 .. .keep, oldest dropped
//!   postgres: "host=127.0.0.1 dbname=trunkline user=trunkline"   # optional second sink
//!   queue: 10000                         # records held per sink while it is slow or down
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{key, sem, Sem};

/// How the file sink writes a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdrFormat {
    /// One JSON object per line.
    Jsonl,
    /// One comma-separated line per record, a header line at the top of every file.
    Csv,
}

/// `rotate:`: the file is renamed `FILE.1` (older ones shifted up to `FILE.keep`) once it
/// reaches `size_mb` MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotate {
    pub size_bytes: u64,
    pub keep: u32,
}

/// `cdr:`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Cdr {
    pub file: Option<PathBuf>,
    pub format: CdrFormat,
    pub rotate: Option<Rotate>,
    /// A tokio-postgres connection string (may hold a password: never printed).
    pub postgres: Option<String>,
    /// Records held per sink before new ones are dropped (counted).
    pub queue: usize,
}

impl fmt::Debug for Cdr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cdr")
            .field("file", &self.file)
            .field("format", &self.format)
            .field("rotate", &self.rotate)
            .field("postgres", &self.postgres.as_ref().map(|_| "<redacted>"))
            .field("queue", &self.queue)
            .finish()
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCdr {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    rotate: Option<RawRotate>,
    #[serde(default)]
    postgres: Option<String>,
    #[serde(default)]
    queue: Option<usize>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRotate {
    size_mb: u64,
    #[serde(default)]
    keep: Option<u32>,
}

pub(crate) fn build_cdr(raw: RawCdr) -> Result<Cdr, Sem> {
    let p = |k: &str| vec![key("cdr"), key(k)];
    let file = match raw.file.as_deref().map(str::trim) {
        Some("") => return Err(sem(p("file"), "file: the path of the CDR file")),
        Some(f) => Some(PathBuf::from(f)),
        None => None,
    };
    let format = match raw.format.as_deref().map(str::trim) {
        None | Some("jsonl") => CdrFormat::Jsonl,
        Some("csv") => CdrFormat::Csv,
        Some(other) => {
            return Err(sem(
                p("format"),
                format!("format: `{other}` is not jsonl or csv"),
            ))
        }
    };
    let rotate = match raw.rotate {
        None => None,
        Some(r) => {
            let keep = r.keep.unwrap_or(10);
            if r.size_mb == 0 || r.size_mb > 1 << 20 || keep == 0 || keep > 1000 {
                return Err(sem(
                    p("rotate"),
                    "rotate: size_mb 1-1048576 and keep 1-1000",
                ));
            }
            Some(Rotate {
                size_bytes: r.size_mb << 20,
                keep,
            })
        }
    };
    if rotate.is_some() && file.is_none() {
        return Err(sem(p("rotate"), "rotate: needs a file"));
    }
    let postgres = match raw.postgres.as_deref().map(str::trim) {
        Some("") => {
            return Err(sem(
                p("postgres"),
                "postgres: a connection string (host=... dbname=...)",
            ))
        }
        Some(s) => Some(s.to_string()),
        None => None,
    };
    if file.is_none() && postgres.is_none() {
        return Err(sem(
            vec![key("cdr")],
            "cdr: needs a file, a postgres connection string, or both",
        ));
    }
    let queue = raw.queue.unwrap_or(10_000);
    if !(1..=10_000_000).contains(&queue) {
        return Err(sem(p("queue"), "queue: 1-10000000 records"));
    }
    Ok(Cdr {
        file,
        format,
        rotate,
        postgres,
        queue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_yaml;

    fn yaml(cdr: &str) -> String {
        format!(
            "listen: [{{ transport: udp, address: 127.0.0.1:5060 }}]\n\
             media: {{ address: 127.0.0.1, ports: 20000-20099 }}\n\
             {cdr}\
             trunks:\n  pbx: {{ address: 127.0.0.1:5080 }}\n\
             dialplan:\n  - route: [pbx]\n"
        )
    }

    #[test]
    fn cdr_is_read_with_its_defaults_and_checked() {
        let c = from_yaml(&yaml("cdr: { file: /tmp/cdr.jsonl }\n"), "t.yaml").unwrap();
        let cdr = c.cdr.expect("cdr");
        assert_eq!(cdr.file, Some(PathBuf::from("/tmp/cdr.jsonl")));
        assert_eq!(
            (cdr.format, cdr.rotate, cdr.queue),
            (CdrFormat::Jsonl, None, 10_000)
        );
        let c = from_yaml(
            &yaml("cdr: { file: c.csv, format: csv, rotate: { size_mb: 2, keep: 3 }, postgres: 'host=x password=hunter2' }\n"),
            "t.yaml",
        )
        .unwrap();
        let cdr = c.cdr.expect("cdr");
        assert_eq!(cdr.format, CdrFormat::Csv);
        assert_eq!(
            cdr.rotate,
            Some(Rotate {
                size_bytes: 2 << 20,
                keep: 3
            })
        );
        assert!(!format!("{cdr:?}").contains("hunter2"));
        assert!(from_yaml(&yaml(""), "t.yaml").unwrap().cdr.is_none());
        for (bad, needle) in [
            ("cdr: { file: c, format: xml }\n", "format"),
            ("cdr: { file: c, rotate: { size_mb: 0 } }\n", "rotate"),
            (
                "cdr: { postgres: 'host=x', rotate: { size_mb: 1 } }\n",
                "needs a file",
            ),
            ("cdr: { format: csv }\n", "needs a file, a postgres"),
            ("cdr: { file: '' }\n", "file"),
            ("cdr: { file: c, queue: 0 }\n", "queue"),
            ("cdr: { file: c, path: d }\n", "unknown field"),
        ] {
            let e = from_yaml(&yaml(bad), "t.yaml").expect_err(bad);
            assert!(e.message.contains(needle), "{bad}: {e}");
            assert_eq!(e.line, 3, "{bad}: {e}");
        }
    }
}
