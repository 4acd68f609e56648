//! User-space processing of a pair's packets beyond forwarding: the transcoder run on a
//! packet, and the frames it makes beyond one (queued, SRTP-protected, sent after the batch).

use super::*;

impl Core {
    /// Packets are queued for [`Core::drain_extra`].
    pub fn has_extra(&self) -> bool {
        !self.extra.is_empty()
    }

    /// Send the packets queued besides [`Core::on_packet`]'s answers (in order), with
    /// `send(fd, bytes, to)`; `false` from it counts a send error.
    pub fn drain_extra(&mut self, mut send: impl FnMut(RawFd, &[u8], SocketAddr) -> bool) {
        if self.extra.is_empty() {
            return;
        }
        for e in std::mem::take(&mut self.extra) {
            if send(e.fd, &e.data, e.dst) {
                self.local[ctr::PACKETS_OUT] += 1;
                self.local[ctr::BYTES_OUT] += e.data.len() as u64;
            } else {
                self.local[ctr::SEND_ERRORS] += 1;
            }
        }
    }

    /// Run the transcoder of leg `leg_i` on the RTP packet in `buf[..len]`: the one frame
    /// ready written back into `buf`, or several (a shorter ptime out) as their own buffers.
    #[inline(never)]
    pub(super) fn transcode(&mut self, leg_i: u32, buf: &mut [u8], len: usize) -> Transcoded {
        use media_core::transcode::Skip;
        let Some(tc) = self.legs.get_mut(leg_i).and_then(|l| l.tc.as_deref_mut()) else {
            return Transcoded::Nothing;
        };
        let spec = *tc.spec();
        let frames = ctr::TRANSCODE_FRAMES + spec.from.index() * ctr::CODECS + spec.to.index();
        let pushed = buf.get(..len).map(|p| tc.push(p));
        if matches!(pushed, Some(Err(Skip::Signalled))) {
            if let Some(digit) = tc.take_dtmf() {
                let Some(l) = self.legs.get(leg_i) else {
                    return Transcoded::Nothing;
                };
                let pair = l.pair;
                let port = if l.is_a { pair.a } else { pair.b };
                let _ = self.events.send(RelayEvent::Dtmf { pair, port, digit });
            }
            return Transcoded::Nothing;
        }
        let ready = match pushed {
            Some(Ok(n)) => n,
            Some(Err(Skip::Buffered)) => return Transcoded::Nothing,
            Some(Err(_)) | None => {
                self.local[ctr::DROP_TRANSCODE] += 1;
                return Transcoded::Nothing;
            }
        };
        let audio = |p: &[u8]| p.get(1).is_some_and(|b| b & 0x7f == spec.to_pt);
        // Behind frames already queued as extras, a single frame queues too: in order.
        if ready == 1 && self.extra.is_empty() {
            let Some(n) = tc.pop(buf) else {
                return Transcoded::Nothing;
            };
            if audio(&buf[..n]) {
                self.local[frames] += 1;
            }
            return Transcoded::One(n);
        }
        let mut out = Vec::with_capacity(ready);
        let mut b = [0u8; 2048];
        while let Some(n) = tc.pop(&mut b) {
            if audio(&b[..n]) {
                self.local[frames] += 1;
            }
            out.push(b[..n].to_vec());
        }
        Transcoded::Many(out)
    }

    /// Queue `frames` for the peer `peer_i` (SRTP-protected when it has keys) from socket
    /// slot `out` to `dst`, for [`Core::drain_extra`].
    pub(super) fn queue_extra(
        &mut self,
        peer_i: u32,
        out: u32,
        dst: SocketAddr,
        frames: Vec<Vec<u8>>,
    ) {
        let Some(fd) = self.socks.get(out).map(|s| s.fd) else {
            return;
        };
        let Some(peer) = self.legs.get_mut(peer_i) else {
            return;
        };
        for mut f in frames {
            peer.st.rtp_out += 1;
            peer.st.rtp_bytes_out += f.len() as u64;
            if let Some(tx) = peer.srtp.as_mut().and_then(|s| s.tx.as_mut()) {
                let n = f.len();
                f.resize(n + 16, 0);
                match tx.protect_rtp(&mut f, n) {
                    Ok(m) => {
                        f.truncate(m);
                        self.local[ctr::SRTP_PACKETS] += 1;
                    }
                    Err(_) => continue,
                }
            }
            self.extra.push(Extra { fd, dst, data: f });
        }
    }
}
