//! Trunks (`trunks:`) and MGCP gateways (`gateways:`, a trunk written as its own section),
//! validated into one map: the two share one namespace.

use super::*;

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
