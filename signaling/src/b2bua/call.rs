//! One call, as the core holds it.

/// A call's number in the core: what [`CallEvent`](super::CallEvent)s and
/// [`CallRef::id`](super::CallRef) name (as its `u64`, [`CallId::raw`]). Handed out in
/// sequence, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallId(pub(super) u64);

impl CallId {
    /// The number the core's user sees.
    pub(super) fn raw(self) -> u64 {
        self.0
    }
}
