//! RFC 3711 §4.3: the AES-CM key derivation function (key derivation rate 0).
//!
//! "Let m and n be positive integers. A pseudo-random function family is a set of keyed
//! functions {PRF_n(k,x)} ... key_id = <label> || r. ... x = key_id XOR master_salt, where
//! key_id and master_salt are aligned so that their least significant bits agree
//! (right-alignment)." §4.3.3: "PRF_n(k_master,x) = AES_CM(k_master, x*2^16)" — the first n
//! bits of the AES counter-mode keystream with IV x*2^16. RFC 7714 §11 uses the same function
//! with its 96-bit salts and, for AES-256, a 256-bit key; verified erratum 4938 to RFC 7714 §11:
//! "the 96-bit master salt specified in this document must be multiplied by 2^16 to form the
//! 112-bit salt used as the master salt in those key derivation functions" (left-aligned, two
//! zero octets after it: what libsrtp and rtpengine do; `tests/rtpengine_peer.rs`).

use aes::cipher::{KeyIvInit, StreamCipher};

/// The `len` bytes of session key material labelled `label` (r = 0: key derivation rate 0).
pub(super) fn derive(master_key: &[u8], master_salt: &[u8], label: u8, len: usize) -> Vec<u8> {
    let mut x = [0u8; 14];
    // a 112-bit salt fills x; a 96-bit one is × 2^16 (RFC 7714 erratum 4938)
    let n = master_salt.len().min(14);
    x[..n].copy_from_slice(&master_salt[..n]);
    // key_id = label || r (48 bits of r = 0): the label is the 7th byte from the right
    x[7] ^= label;
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&x);
    let mut out = vec![0u8; len];
    if master_key.len() == 32 {
        ctr::Ctr128BE::<aes::Aes256>::new(master_key.into(), &iv.into()).apply_keystream(&mut out);
    } else {
        ctr::Ctr128BE::<aes::Aes128>::new(master_key.into(), &iv.into()).apply_keystream(&mut out);
    }
    out
}

#[cfg(test)]
mod erratum_tests {
    use super::derive;

    /// RFC 7714 erratum 4938: a 96-bit master salt is the 112-bit one × 2^16 — the same
    /// session keys as that salt with two zero octets after it, not before it.
    #[test]
    fn a_96_bit_salt_is_left_aligned() {
        let key = [0x11u8; 16];
        let salt12 = [0x5au8; 12];
        let mut salt14 = [0u8; 14];
        salt14[..12].copy_from_slice(&salt12);
        for label in 0..6 {
            assert_eq!(
                derive(&key, &salt12, label, 16),
                derive(&key, &salt14, label, 16)
            );
        }
        let mut right = [0u8; 14];
        right[2..].copy_from_slice(&salt12);
        assert_ne!(derive(&key, &salt12, 0, 16), derive(&key, &right, 0, 16));
    }
}
