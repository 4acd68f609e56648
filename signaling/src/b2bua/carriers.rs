//! The B2BUA's requests of its own to its trunks: registration with a carrier and OPTIONS
//! health probes (the state machines are `crate::carrier`'s; this module sends what they build
//! through the transaction layer and brings them the answers). Which trunks register or are
//! probed comes from [`Policy::carriers`], asked on every timer round; a new `Arc` (a reload, a
//! changed DNS answer) is reconciled trunk by trunk.

use super::*;
use crate::carrier::{options_request, Local, Probe, Registration, Step};

/// A trunk trunkline registers with or probes.
#[derive(Clone, PartialEq, Eq)]
pub struct CarrierTrunk {
    pub name: String,
    /// Where its REGISTERs and probes go.
    pub peer: Peer,
    /// `host[:port]` for the probes' Request-URI (the trunk's name or address).
    pub host: String,
    pub register: Option<crate::carrier::RegisterSettings>,
    pub probe: Option<crate::carrier::ProbeSettings>,
}

/// What a carrier transaction is for.
pub(super) enum CarrierTx {
    Register(String),
    Probe(String, u64),
}

/// The carrier machines.
#[derive(Default)]
pub(super) struct Carriers {
    /// The set last reconciled (pointer compared with the policy's).
    set: Option<Arc<Vec<CarrierTrunk>>>,
    regs: HashMap<String, (Registration, Peer)>,
    probes: HashMap<String, (Probe, CarrierTrunk)>,
}

impl Carriers {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let r = self.regs.values().filter_map(|(r, _)| r.poll_timeout());
        let p = self.probes.values().map(|(p, _)| p.poll_timeout());
        r.chain(p).min()
    }

    /// Registered with `trunk` now.
    pub(super) fn registered(&self, trunk: &str, now: Instant) -> bool {
        self.regs.get(trunk).is_some_and(|(r, _)| r.registered(now))
    }
}

impl B2bua {
    /// An un-REGISTER of [`B2bua::unregister_carriers`] still waits for its answer (a graceful
    /// shutdown waits for them, briefly).
    pub fn carriers_unregistering(&self) -> bool {
        self.carriers.regs.values().any(|(r, _)| r.unregistering())
    }

    /// Whether trunkline is registered with `trunk` now (`register:` trunks).
    pub fn carrier_registered(&self, trunk: &str, now: Instant) -> bool {
        self.carriers.registered(trunk, now)
    }

    /// Ask the policy for its carrier trunks now (at start, after a reload or a changed DNS
    /// answer) and send what is due; later rounds run from [`B2bua::handle_timeout`].
    pub fn sync_carriers(&mut self, now: Instant, policy: &mut dyn Policy) {
        self.drive_carriers(now, policy);
        self.pump(now, policy);
    }

    /// Send what the carrier machines have due.
    pub(super) fn drive_carriers(&mut self, now: Instant, policy: &mut dyn Policy) {
        self.reconcile_carriers(now, policy);
        if self.carriers.regs.is_empty() && self.carriers.probes.is_empty() {
            return;
        }
        let names: Vec<String> = self.carriers.regs.keys().cloned().collect();
        for name in names {
            let Some((_, peer)) = self.carriers.regs.get(&name) else {
                continue;
            };
            let peer = *peer;
            let via = self.via_for(peer);
            let host = local_addr_text(&self.cfg, peer.transport, is_v6(&peer));
            let local = Local {
                via,
                contact_host: &host,
                transport_param: transport_param(peer.transport),
            };
            let Some((reg, _)) = self.carriers.regs.get_mut(&name) else {
                continue;
            };
            if let Some(req) = reg.poll_request(now, local) {
                let tx = self.tx.send_request(req, peer, now);
                self.owners
                    .insert(tx, TxOwner::Carrier(CarrierTx::Register(name)));
            }
        }
        self.drive_probes(now, policy);
    }

    fn drive_probes(&mut self, now: Instant, policy: &mut dyn Policy) {
        let names: Vec<String> = self.carriers.probes.keys().cloned().collect();
        for name in names {
            let Some((p, trunk)) = self.carriers.probes.get(&name) else {
                continue;
            };
            if p.poll_timeout() > now {
                continue;
            }
            let peer = trunk.peer;
            let mut uri = cat(&["sip:", &trunk.host]);
            if let Some(t) = transport_param(peer.transport) {
                uri.push_str(";transport=");
                uri.push_str(t);
            }
            let via = self.via_for(peer);
            let tag = self.new_tag();
            let from = cat(&["<sip:probe@", self.our_host(peer), ">;tag=", &tag]);
            let call_id = self.new_call_id();
            let Some((p, _)) = self.carriers.probes.get_mut(&name) else {
                continue;
            };
            let Some((serial, req, change)) =
                p.poll_request(now, || options_request(uri, via, from, call_id))
            else {
                continue;
            };
            let tx = self.tx.send_request(req, peer, now);
            self.owners
                .insert(tx, TxOwner::Carrier(CarrierTx::Probe(name.clone(), serial)));
            if let Some(up) = change {
                policy.event(CallEvent::TrunkProbe { trunk: name, up }, now);
            }
        }
    }

    /// Bring the machines in line with the policy's set: new trunks get machines, removed ones
    /// lose them, changed settings or addresses start over.
    fn reconcile_carriers(&mut self, now: Instant, policy: &mut dyn Policy) {
        let set = policy.carriers(now);
        let same = match (&set, &self.carriers.set) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let trunks: &[CarrierTrunk] = set.as_deref().map_or(&[], Vec::as_slice);
        self.carriers.regs.retain(|name, (r, peer)| {
            trunks.iter().any(|t| {
                t.name == *name && t.peer == *peer && t.register.as_ref() == Some(r.settings())
            })
        });
        self.carriers.probes.retain(|name, (p, old)| {
            trunks
                .iter()
                .any(|t| t.name == *name && t.peer == old.peer && t.probe == Some(p.settings()))
        });
        for t in trunks {
            if let Some(settings) = &t.register {
                if !self.carriers.regs.contains_key(&t.name) {
                    let call_id = self.new_call_id();
                    let tag = self.new_tag();
                    let reg = Registration::new(settings.clone(), call_id, tag, now);
                    self.carriers.regs.insert(t.name.clone(), (reg, t.peer));
                }
            }
            if let Some(settings) = t.probe {
                if !self.carriers.probes.contains_key(&t.name) {
                    let probe = Probe::new(settings, now);
                    self.carriers
                        .probes
                        .insert(t.name.clone(), (probe, t.clone()));
                }
            }
        }
        self.carriers.set = set;
    }

    pub(super) fn on_carrier_response(
        &mut self,
        tx: TxId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if resp.status < 200 {
            return;
        }
        let Some(TxOwner::Carrier(c)) = self.owners.remove(&tx) else {
            return;
        };
        match c {
            CarrierTx::Probe(name, serial) => {
                //= rfc3261#section-11.2
                //# The response to an OPTIONS is constructed using the standard rules for a
                //# SIP response as discussed in Section 8.2.6.
                // Any final answer, even 404 or 405, shows the trunk alive.
                let change = self
                    .carriers
                    .probes
                    .get_mut(&name)
                    .and_then(|(p, _)| p.on_answer(serial));
                if let Some(up) = change {
                    policy.event(CallEvent::TrunkProbe { trunk: name, up }, now);
                }
            }
            CarrierTx::Register(name) => self.on_register_response(name, resp, now, policy),
        }
    }

    fn on_register_response(
        &mut self,
        name: String,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some((_, peer)) = self.carriers.regs.get(&name) else {
            return;
        };
        let peer = *peer;
        let via = self.via_for(peer);
        let cnonce = self.new_tag();
        let Some((reg, _)) = self.carriers.regs.get_mut(&name) else {
            return;
        };
        match reg.on_response(resp, now, via, &cnonce) {
            Step::Send(req) => {
                let tx = self.tx.send_request(req, peer, now);
                self.owners
                    .insert(tx, TxOwner::Carrier(CarrierTx::Register(name)));
            }
            Step::Done(event) => {
                policy.event(CallEvent::TrunkRegistration { trunk: name, event }, now)
            }
            Step::Ignore => {}
        }
    }

    pub(super) fn on_carrier_failure(
        &mut self,
        c: CarrierTx,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        match c {
            CarrierTx::Probe(name, serial) => {
                let change = self
                    .carriers
                    .probes
                    .get_mut(&name)
                    .and_then(|(p, _)| p.on_failure(serial));
                if let Some(up) = change {
                    policy.event(CallEvent::TrunkProbe { trunk: name, up }, now);
                }
            }
            CarrierTx::Register(name) => {
                if let Some((reg, _)) = self.carriers.regs.get_mut(&name) {
                    let event = reg.on_failure(now);
                    policy.event(CallEvent::TrunkRegistration { trunk: name, event }, now);
                }
            }
        }
    }

    /// Graceful shutdown: un-REGISTER (`Expires: 0`) every registered trunk; the registrations
    /// stop. Returns how many were sent.
    pub fn unregister_carriers(&mut self, now: Instant, policy: &mut dyn Policy) -> usize {
        let names: Vec<String> = self.carriers.regs.keys().cloned().collect();
        let mut sent = 0;
        for name in names {
            let Some((_, peer)) = self.carriers.regs.get(&name) else {
                continue;
            };
            let peer = *peer;
            let via = self.via_for(peer);
            let host = local_addr_text(&self.cfg, peer.transport, is_v6(&peer));
            let local = Local {
                via,
                contact_host: &host,
                transport_param: transport_param(peer.transport),
            };
            let Some((reg, _)) = self.carriers.regs.get_mut(&name) else {
                continue;
            };
            if let Some(req) = reg.unregister(now, local) {
                let tx = self.tx.send_request(req, peer, now);
                self.owners
                    .insert(tx, TxOwner::Carrier(CarrierTx::Register(name)));
                sent += 1;
            }
        }
        self.pump(now, policy);
        sent
    }
}

fn transport_param(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => None,
        Transport::Tcp => Some("tcp"),
        Transport::Tls => Some("tls"),
    }
}
