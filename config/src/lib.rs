//! trunkline configuration: YAML in, a validated and typed [`Config`] out, with the dial plan
//! compiled for fast matching ([`Dialplan`]).
//!
//! A `Config` is an immutable value: the server holds it in an `Arc` and a reload builds a new
//! one and swaps the `Arc`, so calls in progress keep the configuration they started with.
//! Build the new one off the serving threads ([`load_file`] reads the file, parses, validates
//! and compiles); the swap itself is a pointer store. For a plan with very many patterns outside
//! the fast subset, call [`Dialplan::compile_pending`] before the swap so that no lookup pays
//! for compiling a regex.
//!
//! Every error, syntax or semantic, is reported as `FILE:LINE:COLUMN: message` (1-based), the
//! line and column being those of the offending YAML node (see [`ConfigError`]).
//!
//! The YAML shape:
//! ```yaml
//! listen:                      # SIP listeners (IPv6 as [::]:5060 or [2001:db8::5]:5060)
//!   - { transport: udp, address: 127.0.0.1:5060 }
//!   - { transport: tcp, address: 127.0.0.1:5060 }
//!   # - { transport: udp, address: '[::1]:5060' }
//!   # - { transport: tls, address: 127.0.0.1:5061, cert: cert.pem, key: key.pem }
//! media:
//!   address: 127.0.0.1         # address written into rewritten SDP
//!   address_v6: 2001:db8::5    # optional: the relay's IPv6 address, for legs on IPv6 (dual stack)
//!   ports: 20000-29999         # relay port range (even first port, odd last port)
//!   backend: auto              # auto | io_uring | epoll
//!   ng_listen: 127.0.0.1:2223  # optional: rtpengine-compatible ng control port
//!   ng_allow: [192.0.2.10/32]  # optional: ng clients besides loopback (required off loopback)
//!   ng_max_streams: 2500       # optional: port pairs ng calls may hold (default half the range)
//!   timeout: 60                # optional: media timeout seconds (default 60)
//!   workers: 0                 # optional: relay worker threads (0/absent: cores - 1, at least 1)
//!   io_uring_batch_us: 0       # optional: io_uring completion batching delay under load (0 = off, the default)
//!   strict_source: false       # optional: media only from the SDP's address (no NAT learning)
//!   kernel_forwarding: auto    # optional: auto | on | off: settled RTP flows forwarded in the kernel (eBPF)
//! metrics:
//!   listen: 127.0.0.1:9464     # optional: Prometheus /metrics (and admin endpoints)
//!   allow: [192.0.2.0/24]      # sources allowed (required for a non-loopback listen)
//!   reload_token: long-random-secret  # POST /reload needs it off loopback (else 403)
//! shutdown:
//!   drain: 30                  # optional: seconds SIGTERM waits for calls before BYE (default 30)
//! sip:                         # optional call setup timers (seconds; reloadable)
//!   no_answer_timeout: 4       # no response at all from a trunk: try the next (1-32, default 4)
//!   ringing_timeout: 181       # ringing without an answer: CANCEL, try the next (default 181)
//!   session_expires: 1800      # session timers (RFC 4028) on every leg; 0 = off (default 1800)
//!   min_se: 90                 # shortest Session-Expires accepted (422 below; default 90)
//! registrar:                   # optional: REGISTER for these domains, Digest-authenticated
//!   domains: [example.com]
//!   users: { alice: { password: s3cret } }
//!   keepalive: 30              # optional: OPTIONS to UDP-registered phones (NAT), 0 = off
//!   authenticate_calls: true   # optional: calls from non-trunks to other domains need credentials (407)
//! limits:                      # optional: overload and abuse protection (see [`Limits`])
//!   source_rate: 50            # requests/s per source IP (default: no limit); trunks exempt
//!   source_burst: 100          # bucket size (default 2 x source_rate)
//!   max_calls: 5000            # calls in progress before new INVITEs get 503 (default: none)
//!   overload_queue: 2000       # queued messages that mean overload (default 2000)
//!   retry_after: 5             # Retry-After seconds on overload/limit 503s (default 5)
//!   user_agent_block: [friendly-scanner, sipvicious]  # default: DEFAULT_USER_AGENT_BLOCK
//!   tcp: { max_connections: 10000, max_per_source: 64, handshake_timeout: 5,
//!          idle_timeout: 120, partial_message_timeout: 10 }   # TCP/TLS listeners (defaults)
//! dns: { servers: [192.0.2.53:53], timeout_ms: 2000 }   # optional; default: /etc/resolv.conf
//! trunks:
//!   pbx:     { address: 127.0.0.1:5080, transport: udp }
//!   # address: ip:port, host:port (A/AAAA) or host (NAPTR -> SRV -> A/AAAA, RFC 3263),
//!   # resolved at run time in the background; see [`TrunkAddress`]
//!   carrier: { address: sip.carrier.example, transport: udp, max_calls: 100, max_cps: 10,
//!              auth: { username: acme, password: s3cret },   # answer its 401/407 (optional realm)
//!              register: { expires: 3600 },                   # register with it (user/domain/contact_user)
//!              probe: { interval: 30, down_after: 3, up_after: 2 },   # OPTIONS health probes
//!              redirect: relay,    # its 3xx to a call: relay (default) | follow | reject
//!              100rel: supported,  # RFC 3262 on leg B: supported (default) | required | off
//!              dtmf: rfc4733 }     # digits: rfc4733 events (default) | info (SIP INFO; needs codecs:)
//! dialplan:                    # first match wins
//!   - match: { to_user: '^\+?1(\d{10})$' }
//!     rewrite: { to_user: '+1$1' }
//!     route: [carrier]         # several trunks = failover order
//!   - match: { to_user: '^911$' }
//!     reject: { code: 403, reason: Forbidden }
//!   - match: { to_user: '^moved$' }
//!     redirect: { contacts: ['sip:moved@192.0.2.1'], code: 302 }
//!   - match: { to_user: '.*' }
//!     route: [pbx]
//! ```
//!
//! Dial-plan rules: `match` keys are `to_user`, `from_user`, `request_uri` (regexes in the
//! `regex` crate's syntax, searched unanchored unless the pattern says `^`/`$`) and
//! `source_trunk` (a trunk name) and `source_ip` (an address or CIDR block such as
//! `192.0.2.0/24`; an IPv4-mapped IPv6 source matches as IPv4), `pai_user` (the user of the
//! first P-Asserted-Identity that crossed: a trusted trunk's, or the one trunkline asserts for
//! an authenticated user; a `tel:` URI's number) and `diversion_user` (the first Diversion's
//! user; a rule on a header the request lacks does not match); all keys given must match; no
//! `match` (or `match: {}`) matches everything. Exactly one action per rule: `route` (trunk
//! names, failover order), `redirect` (`contacts`, literal URIs, and `code`, 3xx, default 302),
//! `reject` (`code` 4xx-6xx and `reason`, default the RFC 3261 §21 phrase) or `locate: true` (the
//! rewritten `to_user` looked up in the location service of the first served domain). Rewrites
//! (`rewrite: { to_user, from_user, from_display, request_uri }`) are templates where `$N` / `${N}` /
//! `${name}` insert a capture group and `$$` a literal `$`:
//! - `rewrite.to_user` uses the captures of `match.to_user`;
//! - `rewrite.from_user` and `rewrite.from_display` (leg B's From display name; empty: none)
//!   use the captures of `match.from_user` if the rule has one, else those of
//!   `match.pai_user`, else those of `match.to_user`;
//! - `rewrite.request_uri` uses the captures of `match.request_uri` if the rule has one, else
//!   those of `match.to_user`.
//!
//! A reference to a group the pattern does not have is a load error.
//!
//! Load speed: a 100k-rule plan (7 MB of YAML) loads in ~45-50 ms on 2 cores (criterion
//! `dialplan_build_100k/from_yaml`): yaml_serde alone would take ~0.4-0.6 s to read it, so in
//! documents over 64 KiB a `dialplan:` section written in the plain one-rule-per-item flow
//! style is read by a strict dedicated reader (`fastyaml`) that steps aside for anything
//! unusual, cut into one chunk per core, each chunk read and compiled on its own thread. Patterns
//! are matched by a prefix index and a small matcher for common regex shapes (`pattern`), so a
//! lookup costs well under a microsecond whichever of the 100k rules matches.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod abuse;
mod admin;
mod capture;
mod carrier;
mod cdr;
mod cluster;
mod families;
mod headers;
mod limits;
mod media;
mod registrar;
mod users;
pub use abuse::{AuthFailures, CoreCaps, TcpLimits};
pub use admin::{parse_token, Admin};
pub use capture::Capture;
pub use carrier::{TrunkAuth, TrunkProbe, TrunkRegister};
pub use cdr::{Cdr, CdrFormat, Rotate};
pub use cluster::{Cluster, Role};
pub use codecs::{Codec, Codecs};
pub use dns::{Dns, TrunkAddress};
use families::{family_checks, family_warnings, route_warnings};
pub use gateway::{Line, TrunkMgcp, DEFAULT_DIGIT_MAP};
pub use headers::{Identity, TrunkHeaders, PER_HOP};
use limits::{build_limits, RawLimits};
pub use limits::{Limits, DEFAULT_USER_AGENT_BLOCK, MAX_OVERLOAD_QUEUE};
use media::{build_media, RawMedia};
pub use media::{Media, TcpStreams};
use registrar::{build_registrar, RawRegistrar};
pub use registrar::{OfflineMessages, Registrar};
pub use session_timer::{SessionTimer, DEFAULT_SESSION_TIMER};
pub use srtp::SrtpPolicy;
pub use users::{DigestAlgorithm, RegistrarUser};
mod dialplan;
mod dns;
mod fastyaml;
mod gateway;
mod locate;
mod pattern;
mod rules;
use rules::{build_chunks, build_rules, RawRule};
mod codecs;
mod metrics;
mod session_timer;
mod srtp;
mod trunks;
pub use metrics::Metrics;
use metrics::{build_metrics, RawMetrics};
use trunks::RawTrunk;
pub use trunks::{Dtmf, Redirect, Refer, Rel100, Trunk, TrunkTls};

pub use dialplan::{Action, Decision, Dialplan, RouteQuery};

use dialplan::{Cidr, Rule};
use locate::{key, Seg};

/// SIP transport of a listener or a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

/// Media relay I/O back end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
pub enum Backend {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "io_uring")]
    IoUring,
    #[serde(rename = "epoll")]
    Epoll,
}

/// Kernel (eBPF) forwarding of settled RTP flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
pub enum KernelForwarding {
    /// When the kernel allows it (root, Linux 6.6+, IPv4 media address), else user space.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Required: trunkline does not start without it.
    #[serde(rename = "on")]
    On,
    /// User space only.
    #[serde(rename = "off")]
    Off,
}

/// A SIP listener. An IPv6 listener takes IPv6 only (the shell sets `IPV6_V6ONLY`), so
/// `0.0.0.0:5060` and `[::]:5060` are two listeners side by side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub transport: TransportKind,
    pub address: SocketAddr,
    /// TLS certificate chain (PEM); required for `tls`, refused otherwise.
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM); required for `tls`, refused otherwise.
    pub key: Option<PathBuf>,
}

/// An address block (`192.0.2.0/24`, `2001:db8::/32`, or one address) of an allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet(Cidr);

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<IpNet, String> {
        s.parse().map(IpNet)
    }
}

/// An IPv4-mapped IPv6 address as IPv4, others unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Graceful shutdown (`shutdown:`): on SIGTERM new calls are refused with 503 and calls in
/// progress get `drain` to end by themselves; the rest are then sent BYE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// How long SIGTERM waits for calls to end (default 30 s; 0 = BYE at once).
    pub drain: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            drain: Duration::from_secs(30),
        }
    }
}

/// Call setup timers (`sip:`), applied to new calls, reloadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sip {
    /// A trunk that sends no response at all for this long is given up and the next target
    /// tried (default 4 s; Timer B would take 32 s).
    pub no_answer_timeout: Duration,
    /// A trunk that rings (sent a provisional response) without a final answer for this long
    /// is CANCELled and the next target tried (default 181 s: RFC 3261 §16.6 Timer C, "greater
    /// than 3 minutes").
    pub ringing_timeout: Duration,
    /// Session timers (RFC 4028) on legs whose trunk says nothing (callers that are no trunk,
    /// registered phones); `None`: off. Default [`DEFAULT_SESSION_TIMER`].
    pub session_timer: Option<SessionTimer>,
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            no_answer_timeout: Duration::from_secs(4),
            ringing_timeout: Duration::from_secs(181),
            session_timer: Some(DEFAULT_SESSION_TIMER),
        }
    }
}

/// A validated configuration. Immutable; share it as `Arc<Config>`.
#[derive(Debug)]
pub struct Config {
    pub listen: Vec<Listen>,
    pub media: Media,
    pub metrics: Option<Metrics>,
    pub shutdown: Shutdown,
    pub sip: Sip,
    pub registrar: Option<Registrar>,
    /// Nodes sharing state through Redis (`cluster:`); `None`: this node alone.
    pub cluster: Option<Cluster>,
    pub limits: Limits,
    pub trunks: BTreeMap<String, Trunk>,
    pub dialplan: Dialplan,
    /// HEP capture of every SIP message (`capture:`); changes need a restart.
    pub capture: Option<Capture>,
    /// Call detail records (`cdr:`); changes need a restart.
    pub cdr: Option<Cdr>,
    /// The admin API's token file (`admin:`).
    pub admin: Option<Admin>,
    /// How trunk names are resolved (`dns:`); changes need a restart.
    pub dns: Dns,
    /// The MGCP call agent's own port (`mgcp: { listen }`, where gateways send RSIP and
    /// NTFY); None: an ephemeral port on 0.0.0.0. Changes need a restart.
    pub mgcp_listen: Option<SocketAddr>,
    /// The file it came from, or `"<embedded default>"`.
    pub source: String,
    /// Valid but probably unintended settings (see [`ConfigWarning`]).
    pub warnings: Vec<ConfigWarning>,
}

/// Something valid but probably unintended (`trunkline check` prints it, exit status 0),
/// displayed as `FILE:LINE:COLUMN: warning: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    path: Vec<Seg>,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: warning: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// A configuration error, displayed as `FILE:LINE:COLUMN: message` (line and column 1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// The embedded default: loopback only.
pub const DEFAULT_YAML: &str = r#"# trunkline embedded default configuration: loopback only.
listen:
  - { transport: udp, address: 127.0.0.1:5060 }
  - { transport: tcp, address: 127.0.0.1:5060 }
media:
  address: 127.0.0.1
  ports: 20000-29999
  backend: auto
metrics:
  listen: 127.0.0.1:9464
trunks:
  pbx: { address: 127.0.0.1:5080, transport: udp }
dialplan:
  - match: { to_user: '.*' }
    route: [pbx]
"#;

/// Origin name used for [`DEFAULT_YAML`].
pub const DEFAULT_ORIGIN: &str = "<embedded default>";

/// The embedded default configuration.
pub fn default_config() -> Config {
    match from_yaml(DEFAULT_YAML, DEFAULT_ORIGIN) {
        Ok(c) => c,
        // DEFAULT_YAML is a constant checked by the tests.
        Err(e) => panic!("embedded default configuration is invalid: {e}"),
    }
}

/// Read and validate a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: origin.clone(),
        line: 1,
        column: 1,
        message: format!("cannot read: {e}"),
    })?;
    from_yaml(&src, &origin)
}

/// Parse and validate YAML text; `origin` names it in errors (a file name).
pub fn from_yaml(src: &str, origin: &str) -> Result<Config, ConfigError> {
    let built = match build_fast(src) {
        Some(b) => b,
        None => {
            let raw = parse_raw(src, origin, false)?;
            build(raw)
        }
    };
    let mut cfg = built.map_err(|s| {
        let (line, column) = locate::locate(src, &s.path).unwrap_or((1, 1));
        ConfigError {
            file: origin.to_string(),
            line,
            column,
            message: match path_text(&s.path) {
                p if p.is_empty() => s.message,
                p => format!("{p}: {}", s.message),
            },
        }
    })?;
    cfg.source = origin.to_string();
    for w in &mut cfg.warnings {
        w.file = origin.to_string();
        (w.line, w.column) = locate::locate(src, &w.path).unwrap_or((1, 1));
    }
    Ok(cfg)
}

/// A big document whose `dialplan:` section has the plain generated shape: the rest is read by
/// yaml_serde, and the rules are read and compiled in chunks on one thread per core. `None`
/// when the document is small or anything is outside that shape (then yaml_serde reads it all,
/// so the result, errors included, is always what the plain path gives).
fn build_fast(src: &str) -> Option<Result<Config, Sem>> {
    if src.len() < FAST_SECTION_MIN_BYTES {
        return None;
    }
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let sec = fastyaml::split_sections(src, threads)?;
    let raw = yaml_serde::from_str::<RawConfig>(&sec.header).ok()?;
    build_with(raw, Some(&sec.chunks)).transpose()
}
/// Documents at least this big get their `dialplan:` section read by [`fastyaml`] when it has
/// the plain generated shape (hand-written configs always go through yaml_serde alone).
const FAST_SECTION_MIN_BYTES: usize = 64 * 1024;

/// YAML text -> serde types. With `fast`, a big dial plan in the common shape is read by
/// [`fastyaml`] and the rest by yaml_serde; any doubt, and any error, goes the plain way.
fn parse_raw(src: &str, origin: &str, fast: bool) -> Result<RawConfig, ConfigError> {
    if fast {
        if let Some((header, rules)) = fastyaml::split_dialplan(src) {
            if let Ok(mut raw) = yaml_serde::from_str::<RawConfig>(&header) {
                raw.dialplan = rules;
                return Ok(raw);
            }
        }
    }
    yaml_serde::from_str(src).map_err(|e| syntax_error(&e, src, origin))
}

/// Only the YAML -> serde-types step of [`from_yaml`] (no validation, no compilation): for
/// benches that separate parse time from build time. Returns the number of dial-plan rules.
#[doc(hidden)]
pub fn parse_only(src: &str) -> Result<usize, ConfigError> {
    let raw = parse_raw(src, "<parse_only>", src.len() >= FAST_SECTION_MIN_BYTES)?;
    Ok(raw.dialplan.len())
}

/// Turn a yaml_serde error into a positioned ConfigError. For an unclosed flow collection the
/// place worth pointing at is where it was opened (libyaml reports where it gave up, often the
/// next line), which libyaml gives as the "while parsing a flow ... at line L column C" context.
fn syntax_error(e: &yaml_serde::Error, src: &str, origin: &str) -> ConfigError {
    let mut text = e.to_string();
    let (mut line, mut column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    // yaml_serde appends " at line L column C"; the prefix already says it.
    let suffix = format!(" at line {line} column {column}");
    if text.ends_with(&suffix) {
        text.truncate(text.len() - suffix.len());
    }
    text = text.replace(
        "struct RawConfig",
        "a mapping with `listen`, `media`, `trunks`, `dialplan`",
    );
    if let Some(ctx) = text.find("while parsing a flow") {
        if let Some((l, c)) = parse_line_col(&text[ctx..]) {
            line = l;
            column = c;
        }
    }
    if src.trim().is_empty() {
        return ConfigError {
            file: origin.to_string(),
            line: 1,
            column: 1,
            message: "empty configuration".into(),
        };
    }
    ConfigError {
        file: origin.to_string(),
        line,
        column,
        message: text,
    }
}

/// `dialplan[3].route[1]`, the way yaml_serde names paths in its own errors.
fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) | Seg::KeyItself(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// First "line L column C" in `s`.
fn parse_line_col(s: &str) -> Option<(usize, usize)> {
    let at = s.find("line ")?;
    let rest = &s[at + 5..];
    let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &rest[n.len()..];
    let rest = rest.strip_prefix(" column ")?;
    let c: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((n.parse().ok()?, c.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// The YAML shape, as serde types. deny_unknown_fields everywhere so typos are errors.

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Vec<RawListen>,
    media: RawMedia,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    shutdown: Option<RawShutdown>,
    #[serde(default)]
    sip: Option<RawSip>,
    #[serde(default)]
    registrar: Option<RawRegistrar>,
    #[serde(default)]
    cluster: Option<cluster::RawCluster>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    capture: Option<capture::RawCapture>,
    #[serde(default)]
    cdr: Option<cdr::RawCdr>,
    #[serde(default)]
    admin: Option<admin::RawAdmin>,
    #[serde(default)]
    dns: Option<dns::RawDns>,
    #[serde(default, deserialize_with = "unique_keys")]
    trunks: Vec<(String, RawTrunk)>,
    #[serde(default, deserialize_with = "unique_keys")]
    gateways: Vec<(String, gateway::RawGateway)>,
    #[serde(default)]
    mgcp: Option<gateway::RawMgcpAgent>,
    #[serde(default)]
    dialplan: Vec<RawRule>,
}

/// A mapping read in file order, where a repeated key is an error (raised while reading that
/// key, so it is positioned at the repeat). Plain serde maps silently keep the last one.
pub(crate) fn unique_keys<'de, D, V>(d: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
    use std::marker::PhantomData;

    struct KeySeed<'a>(&'a HashSet<String>);
    impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
        type Value = String;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for KeySeed<'_> {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            if self.0.contains(v) {
                Err(E::custom(format!("`{v}` is defined twice")))
            } else {
                Ok(v.to_string())
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            self.visit_str(&v.to_string())
        }
    }
    struct MapV<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapV<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of names")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            while let Some(k) = m.next_key_seed(KeySeed(&seen))? {
                let v = m.next_value::<V>()?;
                seen.insert(k.clone());
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(MapV(PhantomData))
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawListen {
    transport: TransportKind,
    address: String,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    #[serde(default)]
    drain: Option<u64>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawSip {
    #[serde(default)]
    no_answer_timeout: Option<u64>,
    #[serde(default)]
    ringing_timeout: Option<u64>,
    #[serde(default)]
    session_expires: Option<u32>,
    #[serde(default)]
    min_se: Option<u32>,
}

// Validation.

/// A semantic error at a path in the document; positioned later by [`locate::locate`].
struct Sem {
    path: Vec<Seg>,
    message: String,
}

fn sem(path: Vec<Seg>, message: impl Into<String>) -> Sem {
    Sem {
        path,
        message: message.into(),
    }
}

/// Non-fast patterns compiled eagerly at load (so even regex size-limit errors are reported
/// then); beyond this many they are syntax-checked at load and compiled on first use.
const EAGER_REGEX_LIMIT: usize = 1000;

fn build(raw: RawConfig) -> Result<Config, Sem> {
    // Without chunks the rules come from `raw`, so there is always a result.
    build_with(raw, None)?.ok_or_else(|| sem(vec![key("dialplan")], "internal: no rules"))
}

/// Validate and compile; the rules come from `raw.dialplan`, or, with `chunks`, are read from
/// those chunks of text (`Ok(None)`: a chunk is outside the fast shape).
fn build_with(
    raw: RawConfig,
    chunks: Option<&[fastyaml::Chunk<'_>]>,
) -> Result<Option<Config>, Sem> {
    let mut listen = Vec::with_capacity(raw.listen.len());
    let mut seen = HashSet::new();
    for (i, l) in raw.listen.into_iter().enumerate() {
        let p = |k: &str| vec![key("listen"), Seg::Index(i), key(k)];
        let address = parse_socket(&l.address).map_err(|m| sem(p("address"), m))?;
        if !seen.insert((l.transport, address)) {
            return Err(sem(
                p("address"),
                format!("duplicate listener {:?} {address}", l.transport),
            ));
        }
        match l.transport {
            TransportKind::Tls => {
                if l.cert.is_none() {
                    return Err(sem(
                        vec![key("listen"), Seg::Index(i)],
                        "a tls listener needs `cert`",
                    ));
                }
                if l.key.is_none() {
                    return Err(sem(
                        vec![key("listen"), Seg::Index(i)],
                        "a tls listener needs `key`",
                    ));
                }
            }
            _ => {
                if l.cert.is_some() {
                    return Err(sem(p("cert"), "`cert` is only for tls listeners"));
                }
                if l.key.is_some() {
                    return Err(sem(p("key"), "`key` is only for tls listeners"));
                }
            }
        }
        listen.push(Listen {
            transport: l.transport,
            address,
            cert: l.cert.map(PathBuf::from),
            key: l.key.map(PathBuf::from),
        });
    }
    if listen.is_empty() {
        return Err(sem(vec![key("listen")], "at least one listener is needed"));
    }

    let media = build_media(raw.media)?;
    let metrics = match raw.metrics {
        None => None,
        Some(m) => Some(build_metrics(m)?),
    };

    let shutdown = match raw.shutdown.and_then(|s| s.drain) {
        None => Shutdown::default(),
        // A day is far beyond any stop timeout a service manager would allow.
        Some(d) if d > 86_400 => {
            return Err(sem(
                vec![key("shutdown"), key("drain")],
                format!("shutdown.drain {d} s is more than a day"),
            ));
        }
        Some(d) => Shutdown {
            drain: Duration::from_secs(d),
        },
    };

    let mut sip = Sip::default();
    if let Some(s) = raw.sip {
        if let Some(t) = s.no_answer_timeout {
            if !(1..=32).contains(&t) {
                return Err(sem(
                    vec![key("sip"), key("no_answer_timeout")],
                    format!("sip.no_answer_timeout {t} s: use 1 to 32 (Timer B ends a silent attempt at 32 s)"),
                ));
            }
            sip.no_answer_timeout = Duration::from_secs(t);
        }
        if let Some(t) = s.ringing_timeout {
            if !(2..=3600).contains(&t) {
                return Err(sem(
                    vec![key("sip"), key("ringing_timeout")],
                    format!("sip.ringing_timeout {t} s: use 2 to 3600"),
                ));
            }
            sip.ringing_timeout = Duration::from_secs(t);
        }
        sip.session_timer = session_timer::build_session_timer(
            s.session_expires,
            s.min_se,
            Some(DEFAULT_SESSION_TIMER),
            |k| vec![key("sip"), key(k)],
        )?;
    }

    let registrar = match raw.registrar {
        None => None,
        Some(r) => Some(build_registrar(r)?),
    };
    let limits = build_limits(raw.limits)?;
    let cluster = raw.cluster.map(cluster::build_cluster).transpose()?;
    let capture = raw.capture.map(capture::build_capture).transpose()?;
    let cdr = raw.cdr.map(cdr::build_cdr).transpose()?;
    let admin = raw.admin.map(admin::build_admin).transpose()?;
    let dns = raw.dns.map(dns::build_dns).transpose()?.unwrap_or_default();

    let mgcp_listen = raw.mgcp.map(gateway::build_agent).transpose()?.flatten();
    let trunks = trunks::build_trunks(raw.trunks, raw.gateways, sip.session_timer)?;

    let rules = match chunks {
        None => build_rules(raw.dialplan, &trunks)?,
        Some(chunks) => match build_chunks(chunks, &trunks)? {
            Some(rules) => rules,
            None => return Ok(None),
        },
    };
    if registrar.is_none() {
        if let Some(i) = rules.iter().position(|r| r.action == Action::Locate) {
            return Err(sem(
                vec![key("dialplan"), Seg::Index(i), key("locate")],
                "`locate` looks the user up in the location service: it needs `registrar:`",
            ));
        }
    }
    family_checks(&listen, &trunks)?;
    let mut warnings = family_warnings(&listen, &media, &trunks);
    warnings.extend(route_warnings(&rules, &trunks));

    Ok(Some(Config {
        listen,
        media,
        metrics,
        shutdown,
        sip,
        registrar,
        cluster,
        limits,
        trunks,
        dialplan: Dialplan::new(rules),
        capture,
        dns,
        cdr,
        admin,
        mgcp_listen,
        source: String::new(),
        warnings,
    }))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn parse_socket(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP:port address (IPv6 as [::1]:5060)"))
}

/// No control characters (they would break SIP framing / header injection).
fn check_text(s: &str, path: impl FnOnce() -> Vec<Seg>, what: &str) -> Result<(), Sem> {
    if s.chars().any(|c| c.is_control()) {
        return Err(sem(
            path(),
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
