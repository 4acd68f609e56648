//! SRTP and SRTCP (RFC 3711, RFC 7714), sans-IO: one [`Context`] per direction of a leg,
//! protecting or unprotecting packets in place. Keys come from SDES (`a=crypto`, RFC 4568,
//! [`sdes`]); the ciphers and MACs are RustCrypto's (`aes`, `ctr`, `hmac`, `sha1`, `aes-gcm`):
//! nothing here is a hand-written cipher, only the packet transforms around them.
//!
//! Suites: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 (RFC 4568 §6.2), AEAD_AES_128_GCM,
//! AEAD_AES_256_GCM (RFC 7714 §14.2). Key derivation rate 0 and no MKI (lines asking for
//! either are refused at SDES parsing).

mod kdf;
pub mod negotiate;
pub mod sdes;
#[cfg(test)]
mod tests;

use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha1 = Hmac<Sha1>;

/// A protection profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    pub const ALL: [Suite; 4] = [
        Suite::AeadAes128Gcm,
        Suite::AeadAes256Gcm,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The SDES name (RFC 4568 §6.2, RFC 7714 §14.2).
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn from_name(s: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn key_len(self) -> usize {
        match self {
            Suite::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 12,
            _ => 14,
        }
    }

    /// Bytes a protected RTP packet is longer than the plain one.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            _ => 16,
        }
    }

    /// Bytes a protected RTCP packet is longer: the tag and E || SRTCP index. RFC 4568 §6.2.2:
    /// AES_CM_128_HMAC_SHA1_32 keeps an 80-bit tag for SRTCP.
    pub fn rtcp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 10 + 4,
            _ => 16 + 4,
        }
    }

    /// The most any packet grows (room a buffer must leave).
    pub const MAX_OVERHEAD: usize = 20;
}

/// Master key and salt of one direction (what one `a=crypto` line carries).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub suite: Suite,
    key: Vec<u8>,
    salt: Vec<u8>,
}

/// Keys are never printed.
impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MasterKey {
    /// `material` = key || salt, of exactly the suite's lengths.
    pub fn new(suite: Suite, material: &[u8]) -> Result<MasterKey, SrtpError> {
        if material.len() != suite.key_len() + suite.salt_len() {
            return Err(SrtpError::KeyLength);
        }
        let (k, s) = material.split_at(suite.key_len());
        Ok(MasterKey {
            suite,
            key: k.to_vec(),
            salt: s.to_vec(),
        })
    }

    /// key || salt (for `inline:`).
    pub fn material(&self) -> Vec<u8> {
        [self.key.as_slice(), self.salt.as_slice()].concat()
    }
}

/// Why a packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtpError {
    /// Shorter than its headers and tag, or a header that does not parse.
    Malformed,
    /// The authentication tag does not verify (forged or corrupted).
    Auth,
    /// Seen before, or older than the replay window (RFC 3711 §3.3.2).
    Replay,
    /// Not enough room behind the packet for the tag.
    NoRoom,
    /// Key material of the wrong length.
    KeyLength,
}

impl std::fmt::Display for SrtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrtpError::Malformed => "malformed packet",
            SrtpError::Auth => "authentication failed",
            SrtpError::Replay => "replayed packet",
            SrtpError::NoRoom => "no room for the tag",
            SrtpError::KeyLength => "wrong key length",
        })
    }
}

impl std::error::Error for SrtpError {}

enum Cipher {
    Cm { key: [u8; 16], auth: HmacSha1 },
    Gcm128(Box<Aes128Gcm>),
    Gcm256(Box<Aes256Gcm>),
}

struct Keys {
    cipher: Cipher,
    salt: [u8; 14],
}

impl Keys {
    fn derive(m: &MasterKey, labels: [u8; 3]) -> Keys {
        let s = m.suite;
        let enc = kdf::derive(&m.key, &m.salt, labels[0], s.key_len());
        let salt_v = kdf::derive(&m.key, &m.salt, labels[2], s.salt_len());
        let mut salt = [0u8; 14];
        salt[..salt_v.len()].copy_from_slice(&salt_v);
        let cipher = match s {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => {
                let a = kdf::derive(&m.key, &m.salt, labels[1], 20);
                let mut key = [0u8; 16];
                key.copy_from_slice(&enc);
                Cipher::Cm {
                    key,
                    // HMAC takes keys of any length
                    auth: <HmacSha1 as Mac>::new_from_slice(&a).expect("HMAC accepts any key"),
                }
            }
            Suite::AeadAes128Gcm => Cipher::Gcm128(Box::new(
                Aes128Gcm::new_from_slice(&enc).expect("16-byte key"),
            )),
            Suite::AeadAes256Gcm => Cipher::Gcm256(Box::new(
                Aes256Gcm::new_from_slice(&enc).expect("32-byte key"),
            )),
        };
        Keys { cipher, salt }
    }
}

/// RFC 3711 §3.3.2: "a replay list ... SHOULD be at least 64" packets.
#[derive(Default)]
struct ReplayWindow {
    top: Option<u64>,
    bits: u64,
}

impl ReplayWindow {
    fn check(&self, idx: u64) -> Result<(), SrtpError> {
        match self.top {
            None => Ok(()),
            Some(top) if idx > top => Ok(()),
            Some(top) if top - idx >= 64 => Err(SrtpError::Replay),
            Some(top) if self.bits & (1 << (top - idx)) != 0 => Err(SrtpError::Replay),
            Some(_) => Ok(()),
        }
    }

    fn mark(&mut self, idx: u64) {
        match self.top {
            Some(top) if idx <= top => self.bits |= 1 << (top - idx),
            Some(top) => {
                let shift = idx - top;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.top = Some(idx);
            }
            None => {
                self.top = Some(idx);
                self.bits = 1;
            }
        }
    }
}

/// One direction of one SSRC-agnostic leg: the sender's or the receiver's state for RTP and
/// RTCP under one master key. (RFC 3711 keeps a context per SSRC; a leg of a call carries one
/// source at a time, and a new SSRC restarts the rollover tracking.)
pub struct Context {
    suite: Suite,
    rtp: Keys,
    rtcp: Keys,
    ssrc: Option<u32>,
    /// Rollover counter and highest sequence number (RFC 3711 §3.3.1's ROC and s_l).
    roc: u32,
    s_l: Option<u16>,
    rtp_window: ReplayWindow,
    rtcp_index: u32,
    rtcp_window: ReplayWindow,
}

fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(p[0] & 0x0f);
    let mut n = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let ext = p.get(n + 2..n + 4)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (n <= p.len()).then_some(n)
}

impl Context {
    pub fn new(key: &MasterKey) -> Context {
        Context {
            suite: key.suite,
            // RFC 3711 §4.3.1 labels: 0x00-0x02 SRTP, 0x03-0x05 SRTCP (encryption, auth, salt)
            rtp: Keys::derive(key, [0, 1, 2]),
            rtcp: Keys::derive(key, [3, 4, 5]),
            ssrc: None,
            roc: 0,
            s_l: None,
            rtp_window: ReplayWindow::default(),
            rtcp_index: 0,
            rtcp_window: ReplayWindow::default(),
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    fn follow_ssrc(&mut self, ssrc: u32) {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.roc = 0;
            self.s_l = None;
            self.rtp_window = ReplayWindow::default();
        }
    }

    /// RFC 3711 §3.3.1: the receiver's guess of the packet's ROC from s_l.
    fn guess_roc(&self, seq: u16) -> u32 {
        let Some(s_l) = self.s_l else {
            return self.roc;
        };
        if s_l < 32768 {
            if seq > s_l && seq - s_l > 32768 {
                self.roc.wrapping_sub(1)
            } else {
                self.roc
            }
        } else if s_l - 32768 > seq {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        }
    }

    /// Encrypts and authenticates the RTP packet in `buf[..len]`; returns its new length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let h = rtp_header_len(buf.get(..len).ok_or(SrtpError::Malformed)?)
            .ok_or(SrtpError::Malformed)?;
        let out = len + self.suite.rtp_overhead();
        if buf.len() < out {
            return Err(SrtpError::NoRoom);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        self.follow_ssrc(ssrc);
        // The sender's index (RFC 3711 §3.3.1): ROC steps when the sequence number wraps; a
        // late packet from before the wrap keeps the previous ROC.
        let roc = match self.s_l {
            None => {
                self.s_l = Some(seq);
                self.roc
            }
            Some(s_l) if seq < s_l && s_l - seq > 32768 => {
                self.roc = self.roc.wrapping_add(1);
                self.s_l = Some(seq);
                self.roc
            }
            Some(s_l) if seq > s_l && seq - s_l > 32768 => self.roc.wrapping_sub(1),
            Some(s_l) => {
                if seq > s_l {
                    self.s_l = Some(seq);
                }
                self.roc
            }
        };
        match &self.rtp.cipher {
            Cipher::Cm { key, auth } => {
                let iv = cm_iv(
                    &self.rtp.salt,
                    ssrc,
                    (u64::from(roc) << 16) | u64::from(seq),
                );
                Aes128Ctr::new(key.into(), &iv.into()).apply_keystream(&mut buf[h..len]);
                let mut mac = auth.clone();
                mac.update(&buf[..len]);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                buf[len..out].copy_from_slice(&tag[..out - len]);
            }
            Cipher::Gcm128(_) | Cipher::Gcm256(_) => {
                let nonce = gcm_rtp_iv(&self.rtp.salt, ssrc, roc, seq);
                let (head, rest) = buf.split_at_mut(h);
                let tag = gcm_seal(&self.rtp.cipher, &nonce, head, &mut rest[..len - h])?;
                buf[len..out].copy_from_slice(&tag);
            }
        }
        Ok(out)
    }

    /// Verifies and decrypts the SRTP packet in `buf[..len]`; returns the plain length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_overhead();
        let p = buf.get(..len).ok_or(SrtpError::Malformed)?;
        if len < 12 + tag_len {
            return Err(SrtpError::Malformed);
        }
        let body = len - tag_len;
        let h = rtp_header_len(&p[..body]).ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if self.ssrc != Some(ssrc) {
            // a new source: its rollover state starts over (checked before it is adopted)
            let mut fresh = ReplayWindow::default();
            std::mem::swap(&mut fresh, &mut self.rtp_window);
            let (roc, s_l) = (self.roc, self.s_l);
            self.roc = 0;
            self.s_l = None;
            let r = self.unprotect_rtp_known(buf, len, h, seq, ssrc);
            if r.is_err() {
                self.rtp_window = fresh;
                self.roc = roc;
                self.s_l = s_l;
            } else {
                self.ssrc = Some(ssrc);
            }
            return r;
        }
        self.unprotect_rtp_known(buf, len, h, seq, ssrc)
    }

    fn unprotect_rtp_known(
        &mut self,
        buf: &mut [u8],
        len: usize,
        h: usize,
        seq: u16,
        ssrc: u32,
    ) -> Result<usize, SrtpError> {
        let body = len - self.suite.rtp_overhead();
        let v = self.guess_roc(seq);
        let idx = (u64::from(v) << 16) | u64::from(seq);
        self.rtp_window.check(idx)?;
        match &self.rtp.cipher {
            Cipher::Cm { key, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..body]);
                mac.update(&v.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                if !bool::from(tag[..len - body].ct_eq(&buf[body..len])) {
                    return Err(SrtpError::Auth);
                }
                let iv = cm_iv(&self.rtp.salt, ssrc, idx);
                Aes128Ctr::new(key.into(), &iv.into()).apply_keystream(&mut buf[h..body]);
            }
            Cipher::Gcm128(_) | Cipher::Gcm256(_) => {
                let nonce = gcm_rtp_iv(&self.rtp.salt, ssrc, v, seq);
                let tag: [u8; 16] = buf[body..len]
                    .try_into()
                    .map_err(|_| SrtpError::Malformed)?;
                let (head, rest) = buf.split_at_mut(h);
                gcm_open(&self.rtp.cipher, &nonce, head, &mut rest[..body - h], &tag)?;
            }
        }
        // RFC 3711 §3.3.1: update ROC and s_l only after authentication.
        let top = self.rtp_window.top;
        self.rtp_window.mark(idx);
        if top.is_none_or(|t| idx > t) {
            self.roc = v;
            self.s_l = Some(seq);
        }
        Ok(body)
    }

    /// Encrypts and authenticates the RTCP compound packet in `buf[..len]` (RFC 3711 §3.4).
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 {
            return Err(SrtpError::Malformed);
        }
        let out = len + self.suite.rtcp_overhead();
        if buf.len() < out {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let index = self.rtcp_index & 0x7fff_ffff;
        self.rtcp_index = self.rtcp_index.wrapping_add(1) & 0x7fff_ffff;
        let e_index = (0x8000_0000 | index).to_be_bytes();
        match &self.rtcp.cipher {
            Cipher::Cm { key, auth } => {
                let iv = cm_iv(&self.rtcp.salt, ssrc, u64::from(index));
                Aes128Ctr::new(key.into(), &iv.into()).apply_keystream(&mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&e_index);
                let mut mac = auth.clone();
                mac.update(&buf[..len + 4]);
                let tag = mac.finalize().into_bytes();
                buf[len + 4..out].copy_from_slice(&tag[..10]);
            }
            Cipher::Gcm128(_) | Cipher::Gcm256(_) => {
                // RFC 7714 §9.1/9.2: AAD = the first 8 octets || E || SRTCP index; the
                // index follows the tag.
                let nonce = gcm_rtcp_iv(&self.rtcp.salt, ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = gcm_seal(&self.rtcp.cipher, &nonce, &aad, &mut buf[8..len])?;
                buf[len..len + 16].copy_from_slice(&tag);
                buf[len + 16..out].copy_from_slice(&e_index);
            }
        }
        Ok(out)
    }

    /// Verifies and decrypts the SRTCP packet in `buf[..len]`; returns the plain length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let over = self.suite.rtcp_overhead();
        if buf.len() < len || len < 8 + over {
            return Err(SrtpError::Malformed);
        }
        let body = len - over;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let (e_index, encrypted) = match &self.rtcp.cipher {
            Cipher::Cm { .. } => {
                let e =
                    u32::from_be_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]]);
                (e, e & 0x8000_0000 != 0)
            }
            _ => {
                let e =
                    u32::from_be_bytes([buf[len - 4], buf[len - 3], buf[len - 2], buf[len - 1]]);
                (e, e & 0x8000_0000 != 0)
            }
        };
        let index = e_index & 0x7fff_ffff;
        self.rtcp_window.check(u64::from(index))?;
        match &self.rtcp.cipher {
            Cipher::Cm { key, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..body + 4]);
                let tag = mac.finalize().into_bytes();
                if !bool::from(tag[..10].ct_eq(&buf[body + 4..len])) {
                    return Err(SrtpError::Auth);
                }
                if encrypted {
                    let iv = cm_iv(&self.rtcp.salt, ssrc, u64::from(index));
                    Aes128Ctr::new(key.into(), &iv.into()).apply_keystream(&mut buf[8..body]);
                }
            }
            Cipher::Gcm128(_) | Cipher::Gcm256(_) => {
                if !encrypted {
                    // RFC 7714 §9.3 unencrypted SRTCP is not offered by us: refuse it.
                    return Err(SrtpError::Auth);
                }
                let nonce = gcm_rtcp_iv(&self.rtcp.salt, ssrc, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index.to_be_bytes());
                let tag: [u8; 16] = buf[body..body + 16]
                    .try_into()
                    .map_err(|_| SrtpError::Malformed)?;
                gcm_open(&self.rtcp.cipher, &nonce, &aad, &mut buf[8..body], &tag)?;
            }
        }
        self.rtcp_window.mark(u64::from(index));
        Ok(body)
    }
}

/// RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16).
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
        *b ^= s;
    }
    iv
}

/// RFC 7714 §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
fn gcm_rtp_iv(salt: &[u8; 14], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(&salt[..12]) {
        *b ^= s;
    }
    iv
}

/// RFC 7714 §9.1: IV = (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt.
fn gcm_rtcp_iv(salt: &[u8; 14], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    for (b, s) in iv.iter_mut().zip(&salt[..12]) {
        *b ^= s;
    }
    iv
}

fn gcm_seal(
    c: &Cipher,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; 16], SrtpError> {
    let n = Nonce::from_slice(nonce);
    let tag = match c {
        Cipher::Gcm128(g) => g.encrypt_in_place_detached(n, aad, data),
        Cipher::Gcm256(g) => g.encrypt_in_place_detached(n, aad, data),
        Cipher::Cm { .. } => return Err(SrtpError::Malformed),
    }
    .map_err(|_| SrtpError::Malformed)?;
    Ok(tag.into())
}

fn gcm_open(
    c: &Cipher,
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; 16],
) -> Result<(), SrtpError> {
    let n = Nonce::from_slice(nonce);
    let t = Tag::from_slice(tag);
    match c {
        Cipher::Gcm128(g) => g.decrypt_in_place_detached(n, aad, data, t),
        Cipher::Gcm256(g) => g.decrypt_in_place_detached(n, aad, data, t),
        Cipher::Cm { .. } => return Err(SrtpError::Malformed),
    }
    .map_err(|_| SrtpError::Auth)
}
