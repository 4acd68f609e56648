//! What bounds the streams of one offer or answer: room for relay pairs, and what becomes of
//! streams no UDP relay port can carry.

/// What becomes of an m-line carried over TCP (MSRP, BFCP, TCP/RTP), which a UDP relay port
/// can never carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpStreams {
    /// Rejected with port 0 on its way through (the other streams are relayed); default: no
    /// address of one side reaches the other.
    #[default]
    Reject,
    /// Passed untouched: its port and connection address cross as they are (the peers connect
    /// to each other directly; the topology of that stream is not hidden).
    Pass,
}

/// What bounds one offer or answer: room for pairs (`(max, left)`), and TCP streams.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) room: Option<(usize, usize)>,
    pub(super) tcp: TcpStreams,
}
