//! IPv4/IPv6 consistency of listeners and trunks (errors), and the warnings a configuration
//! gets for routes and families that cannot work.

use super::*;

pub(crate) fn family_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// A UDP trunk of a family no listener has cannot be reached: UDP goes out from a listener's
/// socket, and one of the other family cannot send to it. (A TCP or TLS trunk can: trunkline
/// connects from an ephemeral port; [`family_warnings`] warns that its Via and Contact name the
/// other family. An MGCP gateway is reached from the bridge's own IPv4 socket.)
pub(crate) fn family_checks(
    listen: &[Listen],
    trunks: &BTreeMap<String, Trunk>,
) -> Result<(), Sem> {
    for t in trunks.values() {
        // a trunk named by DNS: its family is known only at run time (the resolver uses only
        // addresses of families it has listeners for)
        let Some(addr) = t.address.socket() else {
            continue;
        };
        let v6 = addr.is_ipv6();
        let p = vec![key("trunks"), key(&t.name), key("address")];
        if t.mgcp.is_some() {
            if v6 {
                return Err(sem(p, "an `mgcp` gateway is reached over IPv4"));
            }
            continue;
        }
        let udp = |l: &&Listen| l.transport == TransportKind::Udp;
        if t.transport == TransportKind::Udp
            && !listen.iter().filter(udp).any(|l| l.address.is_ipv6() == v6)
        {
            let example = if v6 { "'[::]:5060'" } else { "0.0.0.0:5060" };
            return Err(sem(
                p,
                format!(
                    "udp trunk `{}` is on {} ({}) but no udp listener is: add one such as \
                     {{ transport: udp, address: {example} }}",
                    t.name,
                    family_name(v6),
                    t.address,
                ),
            ));
        }
    }
    Ok(())
}

/// Legs of a family the relay has no address of get the other family's address in their SDP,
/// which a single-stack peer cannot reach: a trunk or a listener of that family without
/// `media.address`/`media.address_v6` of it is warned about.
pub(crate) fn family_warnings(
    listen: &[Listen],
    media: &Media,
    trunks: &BTreeMap<String, Trunk>,
) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    let warn = |message: String, path: Vec<Seg>| ConfigWarning {
        file: String::new(),
        line: 1,
        column: 1,
        message,
        path,
    };
    let hint = |v6: bool| {
        if v6 {
            "media.address_v6"
        } else {
            "media.address (IPv4, with the IPv6 one as media.address_v6)"
        }
    };
    for t in trunks.values().filter(|t| t.mgcp.is_none()) {
        let Some(addr) = t.address.socket() else {
            continue;
        };
        let v6 = addr.is_ipv6();
        if !listen.iter().any(|l| l.address.is_ipv6() == v6) {
            out.push(warn(
                format!(
                    "trunk `{}` is on {} but no listener is: the Via and Contact it gets name \
                     an {} address, which it may not reach",
                    t.name,
                    family_name(v6),
                    family_name(!v6)
                ),
                vec![key("trunks"), key(&t.name), key("address")],
            ));
        }
        if media.address_of_family(v6).is_none() {
            out.push(warn(
                format!(
                    "trunk `{}` is on {} but the relay has no {} address: its SDP names {}; \
                     set {}",
                    t.name,
                    family_name(v6),
                    family_name(v6),
                    media.address,
                    hint(v6)
                ),
                vec![key("trunks"), key(&t.name), key("address")],
            ));
        }
    }
    for (i, l) in listen.iter().enumerate() {
        let v6 = l.address.is_ipv6();
        if media.address_of_family(v6).is_none() {
            out.push(warn(
                format!(
                    "listener {} is {} but the relay has no {} address: callers on it get SDP \
                     naming {}; set {}",
                    l.address,
                    family_name(v6),
                    family_name(v6),
                    media.address,
                    hint(v6)
                ),
                vec![key("listen"), Seg::Index(i), key("address")],
            ));
            break;
        }
    }
    out
}

/// Warnings at most per configuration (one per distinct route list).
pub(crate) const MAX_WARNINGS: usize = 20;

/// Routes that fail over from a TLS trunk to a plaintext one: a call that was to be carried
/// encrypted would go out in clear when the TLS trunk fails (its certificate, say). One
/// warning per distinct route list, at the first rule that uses it.
pub(crate) fn route_warnings(
    rules: &[Rule],
    trunks: &BTreeMap<String, Trunk>,
) -> Vec<ConfigWarning> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Action::Route(route) = &r.action else {
            continue;
        };
        if !seen.insert(std::sync::Arc::as_ptr(route) as *const () as usize) {
            continue;
        }
        let secure = |n: &String| {
            trunks
                .get(n)
                .is_some_and(|t| t.transport == TransportKind::Tls && t.mgcp.is_none())
        };
        let Some(first_tls) = route.iter().position(secure) else {
            continue;
        };
        let Some(plain) = route[first_tls + 1..].iter().find(|n| !secure(n)) else {
            continue;
        };
        let how = match trunks.get(plain) {
            Some(t) if t.mgcp.is_some() => "an MGCP gateway (udp)".to_string(),
            Some(t) => format!("{:?}", t.transport).to_lowercase(),
            None => "plaintext".to_string(),
        };
        out.push(ConfigWarning {
            file: String::new(),
            line: 1,
            column: 1,
            message: format!(
                "dialplan[{i}].route: fails over from TLS trunk `{}` to plaintext trunk \
                 `{plain}` ({how}): when `{}` fails (its certificate, say), calls go out \
                 unencrypted",
                route[first_tls], route[first_tls]
            ),
            path: vec![key("dialplan"), Seg::Index(i), key("route")],
        });
        if out.len() >= MAX_WARNINGS {
            break;
        }
    }
    out
}
