//! RFC 3263 target selection and RFC 2782 SRV ordering, as pure functions over records
//! (the lookups themselves are `super`'s): what to ask for next, and in which order the
//! answers are tried.

use config::TransportKind;

/// A NAPTR record as far as SIP uses it (RFC 3403 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The NAPTR service field of a transport (RFC 3263 §4.1: "SIP+D2U", "SIP+D2T", "SIPS+D2T").
pub fn naptr_service(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "SIP+D2U",
        TransportKind::Tcp => "SIP+D2T",
        TransportKind::Tls => "SIPS+D2T",
    }
}

/// RFC 3263 §4.1: "If no NAPTR records are found, the client constructs SRV queries for those
/// transport protocols it supports, and does a query for each. Queries are done using the
/// service identifier "_sip" for SIP URIs and "_sips" for SIPS URIs."
pub fn srv_name(host: &str, t: TransportKind) -> String {
    match t {
        TransportKind::Udp => format!("_sip._udp.{host}"),
        TransportKind::Tcp => format!("_sip._tcp.{host}"),
        TransportKind::Tls => format!("_sips._tcp.{host}"),
    }
}

/// RFC 3263 §4.2: "If the TARGET was not a numeric IP address, but a port is present in the
/// URI, the client performs an A or AAAA record lookup ... If no port is present ... the
/// default port number of 5060 [is used] for UDP, TCP and SCTP, and 5061 for TLS."
pub fn default_port(t: TransportKind) -> u16 {
    match t {
        TransportKind::Tls => 5061,
        _ => 5060,
    }
}

/// The SRV names the NAPTR records point to for this transport, in the order to try them.
///
/// RFC 3263 §4.1: "The resource record will contain an empty regular expression and a
/// replacement value, which is the SRV record for that particular transport protocol. ...
/// the client MUST discard any service fields that identify a resolution service whose value
/// is not "D2X" ... [it] SHOULD ... use the records in the order given by the order and
/// preference fields." RFC 3403 §4.1: flag "S" means the next lookup is for SRV records.
pub fn srv_names_from_naptr(mut records: Vec<Naptr>, t: TransportKind) -> Vec<String> {
    records.sort_by_key(|r| (r.order, r.preference));
    let want = naptr_service(t);
    let mut out: Vec<String> = Vec::new();
    for r in records {
        if !r.flags.eq_ignore_ascii_case("s") || !r.services.eq_ignore_ascii_case(want) {
            continue;
        }
        let name = r.replacement.trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// SRV records in the order to try them, `pick(n)` returning a uniform number in `0..=n`.
///
/// RFC 2782: "A client MUST attempt to contact the target host with the lowest-numbered
/// priority it can reach; target hosts with the same priority SHOULD be tried in an order
/// defined by the weight field. ... To select a target to be contacted next, arrange all SRV
/// RRs (that have not been ordered yet) in any order, except that all those with weight 0 are
/// placed at the beginning of the list. Compute the sum of the weights of those RRs, and with
/// each RR associate the running sum in the selected order. Then choose a uniform random
/// number between 0 and the sum computed (inclusive), and select the RR whose running sum
/// value is the first in the selected order which is greater than or equal to the random
/// number selected." A target of "." means the service is decidedly not available.
pub fn order_srv(mut records: Vec<Srv>, mut pick: impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let prio = records[i].priority;
        let end = records[i..]
            .iter()
            .position(|r| r.priority != prio)
            .map_or(records.len(), |n| i + n);
        let mut group: Vec<Srv> = records[i..end].to_vec();
        while !group.is_empty() {
            let sum: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let n = pick(sum).min(sum);
            let mut run = 0u32;
            let at = group
                .iter()
                .position(|r| {
                    run += u32::from(r.weight);
                    run >= n
                })
                .unwrap_or(0);
            out.push(group.remove(at));
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn naptr_filters_by_transport_and_orders() {
        let n = |order, preference, services: &str, r: &str| Naptr {
            order,
            preference,
            flags: "s".into(),
            services: services.into(),
            replacement: r.into(),
        };
        let recs = vec![
            n(20, 10, "SIP+D2U", "_sip._udp.b.example."),
            n(10, 20, "SIP+D2U", "_sip._udp.a.example."),
            n(10, 10, "SIP+D2T", "_sip._tcp.a.example."),
            n(5, 10, "SIPS+D2T", "_sips._tcp.a.example."),
            Naptr {
                flags: "u".into(),
                ..n(1, 1, "SIP+D2U", "x.example.")
            },
        ];
        assert_eq!(
            srv_names_from_naptr(recs.clone(), TransportKind::Udp),
            ["_sip._udp.a.example", "_sip._udp.b.example"]
        );
        assert_eq!(
            srv_names_from_naptr(recs, TransportKind::Tls),
            ["_sips._tcp.a.example"]
        );
    }

    #[test]
    fn srv_priority_first_then_weight() {
        // pick always 0: the first of each round (weight 0 entries first)
        let got = order_srv(
            vec![
                srv(2, 0, "c"),
                srv(1, 10, "b"),
                srv(1, 0, "a"),
                srv(3, 1, "."),
            ],
            |_| 0,
        );
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // pick the maximum: the last running sum in the group wins each round
        let got = order_srv(vec![srv(1, 10, "x"), srv(1, 30, "y")], |n| n);
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["y", "x"]);
    }

    #[test]
    fn srv_weights_are_proportional() {
        // a deterministic uniform sweep over 0..=sum: weight 3 is first 3 times in 4
        let mut first_heavy = 0;
        for k in 0..=40u32 {
            let got = order_srv(vec![srv(1, 10, "light"), srv(1, 30, "heavy")], |n| {
                k * n / 40
            });
            if got[0].target == "heavy" {
                first_heavy += 1;
            }
        }
        assert!((28..=32).contains(&first_heavy), "{first_heavy} of 41");
    }
}
