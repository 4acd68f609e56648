//! SIP over TLS: certificates, keys and trust for the TLS listeners and for outbound TLS to
//! trunks (RFC 3261 §26.2.1: "TLS ... MUST be supported" by proxies and registrars, §18 for the
//! stream framing, which is the same as TCP's once the handshake is done; RFC 5630 for `sips:`).
//!
//! - Listeners present a certificate chain and key read from PEM files (through
//!   `rustls-pki-types`). [`CertStore`] is the rustls certificate resolver: it hands the current
//!   key to each new handshake, and [`watch`] reloads the files when they change (mtime or size),
//!   keeping the old certificate when the new files do not load.
//! - Outbound TLS verifies the peer's certificate against a trunk's CA file, or the system
//!   roots, for the trunk's `server_name` or, without one, its IP address (RFC 5922 §7.2 asks
//!   for a domain name match; trunks configured by address get the IP SAN check). `verify: false`
//!   turns verification off for that trunk, with a warning in the log.
//!
//! Relative file names are taken relative to the configuration file's directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Most inbound handshakes in progress at once per listener; a new one beyond it closes the
/// oldest (a flood of stalled handshakes cannot pile up tasks and sockets, nor keep out a
/// client that completes its handshake).
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The crypto provider every TLS configuration here uses (*ring*).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `p` as written when absolute, else relative to the directory of the configuration file
/// `config` (or to the working directory without one).
pub fn resolve_path(config: Option<&Path>, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config.and_then(|c| c.parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Reads a certificate chain (PEM `CERTIFICATE` sections, leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("certificate file {}: {}", path.display(), pem_err(&e)))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file {}: {}", path.display(), pem_err(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {}: no PEM CERTIFICATE section found",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads a private key (PEM PKCS#8, PKCS#1 RSA or SEC1 EC) and checks that it belongs to the
/// leaf certificate of `cert`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = load_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "key file {}: no PEM private key (PKCS#8, RSA or EC) found",
            key.display()
        ),
        e => format!("key file {}: {}", key.display(), pem_err(&e)),
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "key file {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        ),
        e => format!("{} / {}: {e}", cert.display(), key.display()),
    })
}

fn pem_err(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        e => format!("{e:?}"),
    }
}

/// What identifies a file version for change detection: modification time, size and inode
/// (a file renamed into place is a new inode even within the mtime granularity). Symbolic
/// links are followed, so certbot-style `live/` links see the file they point to.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A listener's certificate and key, swapped in place when the files change. Each new
/// handshake gets the key current at that moment; established connections keep theirs.
pub struct CertStore {
    pub cert: PathBuf,
    pub key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    state: Mutex<Stamps>,
}

struct Stamps {
    /// The file versions the current key was loaded from (or last tried).
    loaded: (Stamp, Stamp),
    /// What the previous poll saw: a change is acted on once it has held still for one poll,
    /// so a certificate and key written one after the other are read as a pair.
    seen: (Stamp, Stamp),
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// What a poll of the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    /// Changed, waiting one more poll for the files to settle.
    Settling,
    Reloaded,
    /// The new files do not load; the previous certificate stays in use.
    Failed(String),
}

impl CertStore {
    /// Loads `cert` and `key` (already resolved paths).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<CertStore>, String> {
        let st = (stamp(&cert), stamp(&key));
        let ck = load_certified_key(&cert, &key)?;
        Ok(Arc::new(CertStore {
            cert,
            key,
            current: RwLock::new(Arc::new(ck)),
            state: Mutex::new(Stamps {
                loaded: st,
                seen: st,
            }),
        }))
    }

    /// The certificate chain in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Polls the files and reloads them once a change has settled.
    pub fn refresh(&self) -> Refresh {
        let now = (stamp(&self.cert), stamp(&self.key));
        let Ok(mut st) = self.state.lock() else {
            return Refresh::Unchanged;
        };
        if now == st.loaded {
            st.seen = now;
            return Refresh::Unchanged;
        }
        if now != st.seen {
            st.seen = now;
            return Refresh::Settling;
        }
        st.loaded = now;
        drop(st);
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(ck),
                    Err(p) => *p.into_inner() = Arc::new(ck),
                }
                Refresh::Reloaded
            }
            Err(e) => Refresh::Failed(e),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server side of a TLS listener (TLS 1.2 and 1.3, no client certificates).
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, String> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(Arc::new(cfg))
}

/// Polls every listener's files once a second for the life of the process, logging each
/// reload and each failed one.
pub async fn watch(stores: Vec<Arc<CertStore>>) {
    if stores.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for s in &stores {
            match s.refresh() {
                Refresh::Reloaded => {
                    tracing::info!(cert = %s.cert.display(), "tls certificate reloaded")
                }
                Refresh::Failed(e) => tracing::error!(
                    cert = %s.cert.display(),
                    "tls certificate reload failed, keeping the previous one: {e}"
                ),
                Refresh::Unchanged | Refresh::Settling => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound

/// How to open TLS to one destination.
pub struct ClientTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A root store from a CA file (PEM, one or more certificates).
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle),
/// read once per process.
fn system_roots() -> RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("tls: system trust store: {e}");
            }
            let mut roots = RootCertStore::empty();
            let (ok, bad) = roots.add_parsable_certificates(found.certs);
            tracing::info!(ok, bad, "tls: system trust store loaded");
            roots
        })
        .clone()
}

/// Accepts any server certificate: `verify: false` on a trunk. Handshake signatures are still
/// checked (against whatever certificate was presented), so this only gives up authentication.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client side for one trunk.
pub fn trunk_target(t: &config::Trunk, cfg_path: Option<&Path>) -> Result<ClientTarget, String> {
    let tls = t.tls.clone().unwrap_or_default();
    let name = match &tls.server_name {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| format!("trunk {}: server_name `{n}`: {e}", t.name))?,
        // A trunk named by DNS is checked against its name (RFC 5922 §4: the domain the
        // URI names), one given as ip:port against its IP address.
        None => match (&t.address, t.address.socket()) {
            (_, Some(a)) => ServerName::IpAddress(a.ip().into()),
            (a, None) => {
                let host = a.name().unwrap_or_default().to_string();
                ServerName::try_from(host.clone())
                    .map_err(|e| format!("trunk {}: name `{host}`: {e}", t.name))?
            }
        },
    };
    let config = if !tls.verify {
        tracing::warn!(
            trunk = %t.name,
            "tls: certificate verification is OFF for this trunk (verify: false); \
             anyone on the path can impersonate it"
        );
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let roots = match &tls.ca {
            Some(ca) => load_roots(&resolve_path(cfg_path, ca))
                .map_err(|e| format!("trunk {}: {e}", t.name))?,
            None => system_roots(),
        };
        client_config(roots)?
    };
    Ok(ClientTarget {
        config: Arc::new(config),
        name,
    })
}

/// Outbound TLS settings by destination: the trunks' own, and the system roots with the IP as
/// server name for any other address (a `sips:` Contact that is not a trunk). Rebuilt when the
/// configuration is swapped.
pub struct Clients {
    cfg_path: Option<PathBuf>,
    state: RwLock<ClientsState>,
    /// Which named trunk an address belongs to.
    dns: RwLock<Option<Arc<crate::dns::DnsTable>>>,
}

#[derive(Default)]
struct ClientsState {
    config: Option<Arc<config::Config>>,
    trunks: HashMap<SocketAddr, Result<Arc<ClientTarget>, String>>,
    /// Trunks named by DNS, by trunk name.
    named: HashMap<String, Result<Arc<ClientTarget>, String>>,
    default: Option<Arc<ClientConfig>>,
}

impl Clients {
    pub fn new(cfg_path: Option<PathBuf>) -> Arc<Clients> {
        Arc::new(Clients {
            cfg_path,
            state: RwLock::new(ClientsState::default()),
            dns: RwLock::new(None),
        })
    }

    /// Where the addresses of named trunks are found.
    pub fn set_dns(&self, table: Arc<crate::dns::DnsTable>) {
        if let Ok(mut d) = self.dns.write() {
            *d = Some(table);
        }
    }

    /// Takes the trunks of `cfg` if it is not the configuration already in use (cheap when
    /// unchanged: a pointer comparison).
    pub fn update(&self, cfg: &Arc<config::Config>) {
        if let Ok(st) = self.state.read() {
            if st.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg)) {
                return;
            }
        }
        let mut trunks = HashMap::new();
        let mut named = HashMap::new();
        for t in cfg.trunks.values() {
            if t.transport != config::TransportKind::Tls {
                continue;
            }
            let target = trunk_target(t, self.cfg_path.as_deref()).map(Arc::new);
            if let Err(e) = &target {
                tracing::error!("tls: {e}; calls to this trunk will fail");
            }
            match t.address.socket() {
                Some(a) => trunks.insert(a, target),
                None => named.insert(t.name.clone(), target),
            };
        }
        if let Ok(mut st) = self.state.write() {
            st.config = Some(cfg.clone());
            st.trunks = trunks;
            st.named = named;
        }
    }

    /// How to reach `addr` over TLS.
    pub fn target(&self, addr: SocketAddr) -> Result<Arc<ClientTarget>, String> {
        if let Ok(st) = self.state.read() {
            if let Some(t) = st.trunks.get(&addr) {
                return t.clone();
            }
            let owner = self
                .dns
                .read()
                .ok()
                .and_then(|d| d.as_ref().and_then(|d| d.owner(addr)));
            if let Some(t) = owner.and_then(|n| st.named.get(&n)) {
                return t.clone();
            }
            if let Some(d) = &st.default {
                return Ok(Arc::new(ClientTarget {
                    config: d.clone(),
                    name: ServerName::IpAddress(addr.ip().into()),
                }));
            }
        }
        let d = Arc::new(client_config(system_roots())?);
        if let Ok(mut st) = self.state.write() {
            st.default = Some(d.clone());
        }
        Ok(Arc::new(ClientTarget {
            config: d,
            name: ServerName::IpAddress(addr.ip().into()),
        }))
    }
}

/// Checks every TLS file the configuration names (listener certificates and keys, trunk CA
/// files): they exist, parse, and keys match their certificates. For `trunkline check` and
/// start-up.
pub fn check(cfg: &config::Config, cfg_path: Option<&Path>) -> Result<(), String> {
    for (i, l) in cfg.listen.iter().enumerate() {
        if l.transport != config::TransportKind::Tls {
            continue;
        }
        let (Some(cert), Some(key)) = (&l.cert, &l.key) else {
            return Err(format!("listen[{i}] tls {}: needs cert and key", l.address));
        };
        load_certified_key(&resolve_path(cfg_path, cert), &resolve_path(cfg_path, key))
            .map_err(|e| format!("listen[{i}] tls {}: {e}", l.address))?;
    }
    for t in cfg.trunks.values() {
        if t.transport != config::TransportKind::Tls {
            continue;
        }
        if let Some(ca) = t.tls.as_ref().and_then(|x| x.ca.as_ref()) {
            load_roots(&resolve_path(cfg_path, ca))
                .map_err(|e| format!("trunk {}: {e}", t.name))?;
        }
        if let Some(n) = t.tls.as_ref().and_then(|x| x.server_name.as_ref()) {
            ServerName::try_from(n.as_str())
                .map_err(|e| format!("trunk {}: server_name `{n}`: {e}", t.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(cn: &str) -> (String, String) {
        let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trunkline-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leaf_der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn resolve_path_is_relative_to_the_config_file() {
        let cfg = Path::new("/etc/trunkline/trunkline.yaml");
        assert_eq!(
            resolve_path(Some(cfg), Path::new("tls/c.pem")),
            Path::new("/etc/trunkline/tls/c.pem")
        );
        assert_eq!(
            resolve_path(Some(cfg), Path::new("/x/c.pem")),
            Path::new("/x/c.pem")
        );
        assert_eq!(
            resolve_path(Some(Path::new("t.yaml")), Path::new("c.pem")),
            Path::new("c.pem")
        );
        assert_eq!(resolve_path(None, Path::new("c.pem")), Path::new("c.pem"));
    }

    /// A change is loaded once it has held still for one poll; a broken change keeps the old
    /// key and is not retried until the files change again.
    #[test]
    fn cert_store_reloads_settled_changes_and_keeps_the_old_key_on_failure() {
        let d = dir("store");
        let (c, k) = (d.join("c.pem"), d.join("k.pem"));
        let (c1, k1) = leaf("one");
        std::fs::write(&c, &c1).unwrap();
        std::fs::write(&k, &k1).unwrap();
        let s = CertStore::load(c.clone(), k.clone()).unwrap();
        assert_eq!(s.current().cert[0].to_vec(), leaf_der(&c1));
        assert_eq!(s.refresh(), Refresh::Unchanged);

        let (c2, k2) = leaf("two-with-a-longer-name");
        std::fs::write(&k, &k2).unwrap();
        std::fs::write(&c, &c2).unwrap();
        assert_eq!(s.refresh(), Refresh::Settling);
        assert_eq!(s.current().cert[0].to_vec(), leaf_der(&c1));
        assert_eq!(s.refresh(), Refresh::Reloaded);
        assert_eq!(s.current().cert[0].to_vec(), leaf_der(&c2));
        assert_eq!(s.refresh(), Refresh::Unchanged);

        // The key of another certificate: refused, the current one stays.
        std::fs::write(&k, &k1).unwrap();
        assert_eq!(s.refresh(), Refresh::Settling);
        match s.refresh() {
            Refresh::Failed(e) => assert!(e.contains("does not belong"), "{e}"),
            r => panic!("expected a failure, got {r:?}"),
        }
        assert_eq!(s.current().cert[0].to_vec(), leaf_der(&c2));
        assert_eq!(
            s.refresh(),
            Refresh::Unchanged,
            "a failed version is not retried"
        );

        // A deleted file is a failure too, not a panic.
        std::fs::remove_file(&c).unwrap();
        assert_eq!(s.refresh(), Refresh::Settling);
        assert!(matches!(s.refresh(), Refresh::Failed(_)));
        assert_eq!(s.current().cert[0].to_vec(), leaf_der(&c2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn load_errors_name_the_file() {
        let d = dir("errors");
        let (c1, k1) = leaf("one");
        std::fs::write(d.join("c.pem"), &c1).unwrap();
        std::fs::write(d.join("k.pem"), &k1).unwrap();
        std::fs::write(d.join("junk.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        let e = load_certified_key(&d.join("missing.pem"), &d.join("k.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let e = load_certified_key(&d.join("junk.pem"), &d.join("k.pem")).unwrap_err();
        assert!(e.contains("junk.pem"), "{e}");
        let e = load_certified_key(&d.join("c.pem"), &d.join("c.pem")).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = load_roots(&d.join("k.pem")).unwrap_err();
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
        assert!(load_certified_key(&d.join("c.pem"), &d.join("k.pem")).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
