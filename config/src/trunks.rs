//! Trunks (`trunks:`) and MGCP gateways (`gateways:`, a trunk written as its own section),
//! validated into one map: the two share one namespace.

use super::*;

/// A peer (carrier, PBX) calls are routed to and accepted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    /// An address, or a name resolved at run time (RFC 3263; see [`TrunkAddress`]).
    pub address: TrunkAddress,
    pub transport: TransportKind,
    /// Most concurrent calls to/from this trunk (None: no limit; validated > 0).
    pub max_calls: Option<u32>,
    /// Most new calls per second to/from this trunk (None: no limit; validated > 0).
    pub max_cps: Option<u32>,
    /// Outbound TLS settings (`transport: tls` only; refused otherwise).
    pub tls: Option<TrunkTls>,
    /// An MGCP media gateway rather than a SIP peer (`mgcp:`): `address` is its MGCP port and
    /// trunkline, as call agent, creates a connection on `endpoint` for each call (RFC 3435).
    /// Set at start (changes need a restart).
    pub mgcp: Option<TrunkMgcp>,
    /// Credentials for the trunk's Digest challenges (`auth:`).
    pub auth: Option<TrunkAuth>,
    /// trunkline registers with the trunk (`register:`).
    pub register: Option<TrunkRegister>,
    /// OPTIONS health probing (`probe:`); absent: off.
    pub probe: Option<TrunkProbe>,
    /// SRTP on this trunk's legs (`srtp:`); absent: see [`SrtpPolicy`]'s defaults.
    pub srtp: Option<SrtpPolicy>,
    /// Codecs that may be offered to this trunk, in order (`codecs:`; see [`Codecs`]).
    pub codecs: Option<Codecs>,
    /// What a 3xx answer from this trunk to a call does (`redirect:`).
    pub redirect: Redirect,
    /// Reliable provisional responses (RFC 3262) offered to this trunk (`100rel:`).
    pub rel100: Rel100,
    /// Session timers on this trunk's legs (`session_expires`, `min_se`; else `sip:`'s).
    pub session_timer: Option<SessionTimer>,
    /// A `transport: udp` trunk that also listens on TCP at its address: leg B INVITEs over
    /// 1300 bytes go over TCP (RFC 3261 §18.1.1; `tcp_fallback: true`, default false).
    pub tcp_fallback: bool,
    /// What a REFER from this trunk does (`refer:`).
    pub refer: Refer,
    /// Whether its identity headers are believed (`identity:`, RFC 3325).
    pub identity: Identity,
    /// What is sent to it beyond each leg's own headers (`headers:`).
    pub headers: TrunkHeaders,
    /// How it signals DTMF (`dtmf:`).
    pub dtmf: Dtmf,
}

/// A trunk's `dtmf:`: how it signals DTMF digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtmf {
    /// RFC 4733 telephone-events in the media (default; when only one leg has them, the relay
    /// interworks them with in-band tones).
    #[default]
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay`): it is offered no telephone-event; the other leg's
    /// events become INFO to it and its INFO become events for the other leg. Needs `codecs:`.
    Info,
}

/// A trunk's `refer:`: a REFER (call transfer, RFC 3515) it sends in a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refer {
    /// Relayed to the other side, Refer-To and Referred-By naming trunkline only (default).
    #[default]
    Relay,
    /// Declined 603.
    Reject,
    /// Carried out by trunkline: a REFER from the trunk's side of a call (its leg B) is
    /// accepted, its Refer-To routed and called, and connected to the other party.
    Handle,
}

/// A trunk's `100rel:`: what leg B's INVITE to it says of reliable provisional responses
/// (RFC 3262). Whatever it says, a reliable provisional the trunk sends is PRACKed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rel100 {
    /// `Supported: 100rel` (default).
    #[default]
    Supported,
    /// `Require: 100rel`: the trunk must send its provisionals reliably.
    Required,
    /// Neither.
    Off,
}

/// A trunk's `redirect:`: what a 3xx it answers a call with does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redirect {
    /// The caller gets the 3xx with its Contacts (default).
    #[default]
    Relay,
    /// Each Contact (best q first, at most 5 a call) is routed by the dial plan on its user
    /// part, or by the location service for a served user, as the call's next targets;
    /// never to the Contact's host as such.
    Follow,
    /// The 3xx counts as a failed target: the route's next one is tried.
    Reject,
}

/// How trunkline opens TLS to a trunk (`tls:` of a `transport: tls` trunk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkTls {
    /// CA certificates (PEM) the trunk's certificate must chain to; None: the system roots.
    pub ca: Option<PathBuf>,
    /// Verify the trunk's certificate (default true). `false` is for tests and labs only.
    pub verify: bool,
    /// The name sent as SNI and matched against the certificate; None: the trunk's IP address.
    pub server_name: Option<String>,
}

impl Default for TrunkTls {
    fn default() -> Self {
        TrunkTls {
            ca: None,
            verify: true,
            server_name: None,
        }
    }
}

/// The trunks of `trunks:` and `gateways:`; `sip_timer`: the session timer of `sip:`, what a
/// trunk without its own gets.
pub(crate) fn build_trunks(
    raw_trunks: Vec<(String, RawTrunk)>,
    raw_gateways: Vec<(String, gateway::RawGateway)>,
    sip_timer: Option<SessionTimer>,
) -> Result<BTreeMap<String, Trunk>, Sem> {
    let mut trunks = BTreeMap::new();
    let gateways = raw_gateways.into_iter().map(|(name, g)| {
        let (address, max_calls, max_cps, mgcp) = g.split();
        let t = RawTrunk {
            address,
            max_calls,
            max_cps,
            mgcp: Some(mgcp),
            ..RawTrunk::default()
        };
        ("gateways", name, t)
    });
    let sections: Vec<(&str, String, RawTrunk)> = raw_trunks
        .into_iter()
        .map(|(n, t)| ("trunks", n, t))
        .chain(gateways)
        .collect();
    for (section, name, t) in sections {
        let p = |k: &str| vec![key(section), key(&name), key(k)];
        if trunks.contains_key(&name) {
            return Err(sem(
                vec![key(section), Seg::KeyItself(name.clone())],
                format!("`{name}` is already a trunk: gateways and trunks share one namespace"),
            ));
        }
        let session_timer =
            session_timer::build_session_timer(t.session_expires, t.min_se, sip_timer, p)?;
        let headers = t
            .headers
            .map(|h| headers::build_headers(h, || p("headers")))
            .transpose()?
            .unwrap_or_default();
        let tcp_fallback = t.tcp_fallback.unwrap_or(false);
        if tcp_fallback && t.transport.is_some_and(|k| k != TransportKind::Udp) {
            return Err(sem(
                p("tcp_fallback"),
                "tcp_fallback is for a `transport: udp` trunk (over TCP or TLS every size goes as it is)",
            ));
        }
        if !valid_name(&name) {
            return Err(sem(
                vec![key("trunks"), Seg::KeyItself(name.clone())],
                format!("trunk name `{name}`: use letters, digits, `-`, `_` and `.`"),
            ));
        }
        let address = dns::trunk_address(&t.address).map_err(|m| sem(p("address"), m))?;
        if t.max_calls == Some(0) {
            return Err(sem(
                p("max_calls"),
                "max_calls must be > 0 (leave it out for no limit)",
            ));
        }
        if t.max_cps == Some(0) {
            return Err(sem(
                p("max_cps"),
                "max_cps must be > 0 (leave it out for no limit)",
            ));
        }
        let transport = t.transport.unwrap_or(TransportKind::Udp);
        let tls = match t.tls {
            None => None,
            Some(_) if transport != TransportKind::Tls => {
                return Err(sem(p("tls"), "`tls` is only for `transport: tls` trunks"));
            }
            Some(x) => {
                if let Some(n) = &x.server_name {
                    if n.is_empty() || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
                        return Err(sem(
                            vec![key("trunks"), key(&name), key("tls"), key("server_name")],
                            format!("server_name `{n}` is not a host name"),
                        ));
                    }
                }
                Some(TrunkTls {
                    ca: x.ca.map(PathBuf::from),
                    verify: x.verify.unwrap_or(true),
                    server_name: x.server_name,
                })
            }
        };
        let mgcp = match t.mgcp {
            None => None,
            Some(_) if transport != TransportKind::Udp => {
                return Err(sem(p("mgcp"), "an `mgcp` gateway is reached over udp"));
            }
            Some(_) if address.socket().is_none() => {
                return Err(sem(
                    p("address"),
                    "an `mgcp` gateway's address is IP:port (names are for SIP trunks)",
                ));
            }
            Some(m) => Some(gateway::build_mgcp(m, |k| {
                if section == "gateways" {
                    vec![key(section), key(&name), key(k)]
                } else {
                    vec![key(section), key(&name), key("mgcp"), key(k)]
                }
            })?),
        };
        let carrier_keys = carrier::RawCarrierKeys {
            auth: t.auth,
            register: t.register,
            probe: t.probe,
        };
        let carrier = carrier::build_carrier(&name, &t.address, carrier_keys)?;
        if mgcp.is_some() && (carrier.auth.is_some() || carrier.register.is_some()) {
            return Err(sem(
                p("mgcp"),
                "an `mgcp` gateway takes no SIP `auth` or `register`",
            ));
        }
        let dtmf = t.dtmf.unwrap_or_default();
        if dtmf == Dtmf::Info && t.codecs.is_none() {
            return Err(sem(
                p("dtmf"),
                "dtmf: info needs the trunk's `codecs:` (the relay turns its INFO into the \
                 other leg's telephone-events)",
            ));
        }
        trunks.insert(
            name.clone(),
            Trunk {
                name,
                address,
                transport,
                max_calls: t.max_calls,
                max_cps: t.max_cps,
                tls,
                mgcp,
                auth: carrier.auth,
                register: carrier.register,
                probe: carrier.probe,
                srtp: t.srtp,
                codecs: t.codecs,
                redirect: t.redirect.unwrap_or_default(),
                rel100: t.rel100.unwrap_or_default(),
                session_timer,
                tcp_fallback,
                refer: t.refer.unwrap_or_default(),
                identity: t.identity.unwrap_or_default(),
                headers,
                dtmf,
            },
        );
    }

    Ok(trunks)
}

#[derive(Deserialize, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunk {
    address: String,
    #[serde(default)]
    transport: Option<TransportKind>,
    #[serde(default)]
    max_calls: Option<u32>,
    #[serde(default)]
    max_cps: Option<u32>,
    #[serde(default)]
    tls: Option<RawTrunkTls>,
    #[serde(default)]
    mgcp: Option<gateway::RawTrunkMgcp>,
    #[serde(default)]
    auth: Option<carrier::RawTrunkAuth>,
    #[serde(default)]
    register: Option<carrier::RawTrunkRegister>,
    #[serde(default)]
    probe: Option<carrier::RawTrunkProbe>,
    #[serde(default)]
    srtp: Option<SrtpPolicy>,
    #[serde(default)]
    codecs: Option<Codecs>,
    redirect: Option<Redirect>,
    #[serde(default, rename = "100rel")]
    rel100: Option<Rel100>,
    #[serde(default)]
    session_expires: Option<u32>,
    #[serde(default)]
    min_se: Option<u32>,
    #[serde(default)]
    tcp_fallback: Option<bool>,
    #[serde(default)]
    refer: Option<Refer>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    headers: Option<headers::RawHeaders>,
    #[serde(default)]
    dtmf: Option<Dtmf>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkTls {
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    verify: Option<bool>,
    #[serde(default)]
    server_name: Option<String>,
}
