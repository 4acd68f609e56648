//! `trunkline check --config FILE`: exit 0 on a valid file; non-zero with
//! `FILE:LINE:COLUMN: message` on stderr otherwise (README, "Configuration").

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_check")
        .join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn check(path: &Path) -> Output {
    Command::new(common::trunkline_bin())
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run trunkline check")
}

const GOOD: &str = "\
listen:
  - { transport: udp, address: 127.0.0.1:5060 }
  - { transport: tcp, address: 127.0.0.1:5060 }
media:
  address: 127.0.0.1
  ports: 20000-29999
  backend: auto
trunks:
  pbx:     { address: 127.0.0.1:5080, transport: udp }
  carrier: { address: 127.0.0.1:5090, transport: udp }
dialplan:
  - match: { to_user: '^\\+?1(\\d{10})$' }
    rewrite: { to_user: '+1$1' }
    route: [carrier, pbx]
  - match: { to_user: '.*' }
    route: [pbx]
";

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in text")
}

/// Parses `FILE:LINE:COL:` at the start of some stderr line naming `file`.
fn located_line(stderr: &str, file: &Path) -> Option<usize> {
    let prefix = format!("{}:", file.display());
    stderr.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(&prefix)?;
        let mut it = rest.splitn(3, ':');
        let line = it.next()?.trim().parse().ok()?;
        let _col: usize = it.next()?.trim().parse().ok()?;
        Some(line)
    })
}

#[test]
fn check_accepts_a_valid_file() {
    let d = dir("good");
    let f = d.join("good.yaml");
    std::fs::write(&f, GOOD).expect("write");
    let out = check(&f);
    assert!(
        out.status.success(),
        "check refused a valid file: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_line_of_missing_bracket() {
    let d = dir("bracket");
    let f = d.join("bracket.yaml");
    let bad = GOOD.replace("route: [carrier, pbx]", "route: [carrier, pbx");
    std::fs::write(&f, &bad).expect("write");
    let out = check(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted an unclosed '['");
    let want = line_of(&bad, "route: [carrier, pbx");
    let got = located_line(&stderr, &f);
    assert_eq!(
        got,
        Some(want),
        "stderr should start with {}:{want}:COL: ...; got:\n{stderr}",
        f.display()
    );
}

#[test]
fn check_refuses_route_to_undefined_trunk() {
    let d = dir("undefined");
    let f = d.join("undefined.yaml");
    let bad = GOOD.replace("route: [pbx]", "route: [nowhere]");
    std::fs::write(&f, &bad).expect("write");
    let out = check(&f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "check accepted a route to an undefined trunk"
    );
    assert!(
        stderr.contains("nowhere"),
        "stderr does not name the trunk:\n{stderr}"
    );
    let want = line_of(&bad, "route: [nowhere]");
    assert_eq!(
        located_line(&stderr, &f),
        Some(want),
        "stderr should point at {}:{want}; got:\n{stderr}",
        f.display()
    );
}

#[test]
fn check_refuses_missing_file() {
    let f = dir("missing").join("does-not-exist.yaml");
    let out = check(&f);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does-not-exist.yaml"),
        "stderr does not name the file:\n{stderr}"
    );
}

/// Every example configuration shipped in examples/ passes `check`.
#[test]
fn shipped_examples_pass_check() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&ex).expect("examples/ exists") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let out = check(&p);
            assert!(
                out.status.success(),
                "{} fails check:\n{}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n > 0, "no example configuration found in {}", ex.display());
    // The examples the operations issue promises (walking skeleton, carrier <-> PBX, with TLS).
    for name in ["b2bua.yaml", "carrier-pbx.yaml", "carrier-pbx-tls.yaml"] {
        assert!(ex.join(name).is_file(), "examples/{name} is missing");
    }
}

/// The configuration reference in README.md is a file `trunkline check` accepts (with the TLS
/// file names pointed at the example certificates), so the documentation cannot drift from what
/// the binary takes.
#[test]
fn readme_configuration_reference_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme
        .find("## Configuration")
        .expect("README has a Configuration section");
    let rest = &readme[start..];
    let open = rest.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let close = rest[open..].find("```").expect("end of yaml block") + open;
    let tls = root.join("examples/tls");
    let yaml = rest[open..close]
        .replace(
            "cert: cert.pem, key: key.pem",
            &format!(
                "cert: {}, key: {}",
                tls.join("trunkline.crt").display(),
                tls.join("trunkline.key").display()
            ),
        )
        .replace(
            "ca: carrier-ca.pem",
            &format!("ca: {}", tls.join("example-ca.pem").display()),
        );
    assert_ne!(yaml, rest[open..close], "TLS file names substituted");
    // The CDR file's and the location store's directories must exist: the test's own.
    let d = dir("readme");
    let store = d.join("location.db");
    let yaml = yaml
        .replace(
            "file: /var/log/trunkline/cdr.jsonl",
            &format!("file: {}", d.join("cdr.jsonl").display()),
        )
        .replace(
            "store: /var/lib/trunkline/location.db",
            &format!("store: {}", store.display()),
        );
    let p = d.join("readme.yaml");
    std::fs::write(&p, yaml).expect("write");
    let out = check(&p);
    assert!(
        out.status.success(),
        "README's configuration is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `registrar.store` must be in a directory that exists (the file itself is created at start).
#[test]
fn a_store_in_a_missing_directory_is_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = std::fs::read_to_string(root.join("examples/b2bua.yaml")).expect("example");
    let d = dir("store");
    let yaml = |store: &str| {
        format!(
            "{base}registrar:\n  domains: [x.example]\n  store: {store}\n  users: {{ a: {{ password: p }} }}\n"
        )
    };
    let p = d.join("missing.yaml");
    let missing = d.join("no-such-dir").join("location.db");
    std::fs::write(&p, yaml(&missing.display().to_string())).expect("write");
    let out = check(&p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("registrar.store") && err.contains("does not exist"),
        "{err}"
    );
    let p = d.join("ok.yaml");
    std::fs::write(&p, yaml(&d.join("location.db").display().to_string())).expect("write");
    let out = check(&p);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("location.db").exists(), "check creates no store");
}
