//! One owner per client transaction, in one map (as quinn-proto's endpoint maps a connection
//! id to its connection): a response, a timeout or a transport error goes to exactly the
//! thing that sent the request, found by one lookup. The calls' transactions are also counted
//! per call, so "does this call still wait for a response?" is a lookup, not a scan (with many
//! calls ringing at once that scan ran on every call teardown).

use super::carriers::CarrierTx;
use super::offline::Delivery;
use super::pa::WatchId;
use super::presence::SubClient;
use super::{Abandoned, CallId, ClientPurpose, PendingMessage};
use crate::transaction::{IdMap, TxId};

/// What a client transaction is for.
pub(super) enum TxOwner {
    /// A call's own request: its leg B INVITE, a CANCEL, a BYE, or a request relayed from the
    /// other leg.
    Call(CallId, ClientPurpose),
    /// A relayed MESSAGE waiting for its final answer.
    Message(PendingMessage),
    /// A subscription's request (its initial SUBSCRIBE, or one relayed between its legs).
    Subscription(SubClient),
    /// A leg B INVITE its call moved on from (failover).
    Abandoned(Abandoned),
    /// A REGISTER to a carrier or an OPTIONS probe of a trunk.
    Carrier(CarrierTx),
    /// A held message delivered to its user (`offline.rs`).
    Delivery(Delivery),
    /// A NOTIFY of the presence agent to a watcher (`pa.rs`).
    Watch(WatchId),
}

/// Which handler a response goes to (read from the owner without keeping it borrowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    CallInvite(CallId),
    CallRelay(CallId),
    /// A session refresh of the call's (`refresh.rs`).
    CallRefresh(CallId),
    /// A transfer's INVITE or re-INVITE (`handoff.rs`).
    CallTransfer(CallId),
    /// CANCEL or BYE of the call.
    CallOther(CallId),
    Message,
    Subscription,
    Abandoned,
    Carrier,
    Delivery,
    Watch,
}

#[derive(Default)]
pub(super) struct Owners {
    map: IdMap<TxId, TxOwner>,
    per_call: IdMap<CallId, u32>,
    messages: usize,
    /// Calls whose last client transaction just went: the pump collects them if they are over
    /// (whichever handler removed the transaction, the call is not left behind).
    pub(super) drained: Vec<CallId>,
}

impl Owners {
    pub(super) fn insert(&mut self, tx: TxId, owner: TxOwner) {
        self.count(&owner, 1);
        if let Some(old) = self.map.insert(tx, owner) {
            self.count(&old, -1);
        }
    }

    pub(super) fn remove(&mut self, tx: &TxId) -> Option<TxOwner> {
        let owner = self.map.remove(tx)?;
        self.count(&owner, -1);
        Some(owner)
    }

    fn count(&mut self, owner: &TxOwner, d: i32) {
        match owner {
            TxOwner::Call(call, _) if d > 0 => *self.per_call.entry(*call).or_insert(0) += 1,
            TxOwner::Call(call, _) => {
                if let Some(n) = self.per_call.get_mut(call) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_call.remove(call);
                        self.drained.push(*call);
                    }
                }
            }
            TxOwner::Message(_) if d > 0 => self.messages += 1,
            TxOwner::Message(_) => self.messages -= 1,
            _ => {}
        }
    }

    pub(super) fn route(&self, tx: &TxId) -> Option<Route> {
        Some(match self.map.get(tx)? {
            TxOwner::Call(id, ClientPurpose::Invite) => Route::CallInvite(*id),
            TxOwner::Call(id, ClientPurpose::Relay { .. }) => Route::CallRelay(*id),
            TxOwner::Call(id, ClientPurpose::Refresh(_)) => Route::CallRefresh(*id),
            TxOwner::Call(id, ClientPurpose::TransferInvite | ClientPurpose::TransferReinvite) => {
                Route::CallTransfer(*id)
            }
            TxOwner::Call(id, _) => Route::CallOther(*id),
            TxOwner::Message(_) => Route::Message,
            TxOwner::Subscription(_) => Route::Subscription,
            TxOwner::Abandoned(_) => Route::Abandoned,
            TxOwner::Carrier(_) => Route::Carrier,
            TxOwner::Delivery(_) => Route::Delivery,
            TxOwner::Watch(_) => Route::Watch,
        })
    }

    /// A call's transaction: (call, purpose).
    pub(super) fn call(&self, tx: &TxId) -> Option<(CallId, &ClientPurpose)> {
        match self.map.get(tx)? {
            TxOwner::Call(id, p) => Some((*id, p)),
            _ => None,
        }
    }

    pub(super) fn abandoned_mut(&mut self, tx: &TxId) -> Option<&mut Abandoned> {
        match self.map.get_mut(tx)? {
            TxOwner::Abandoned(a) => Some(a),
            _ => None,
        }
    }

    pub(super) fn has_call(&self, call: CallId) -> bool {
        self.per_call.contains_key(&call)
    }

    /// MESSAGEs relayed and not answered yet.
    pub(super) fn messages(&self) -> usize {
        self.messages
    }

    /// Client transactions owned by anything.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
