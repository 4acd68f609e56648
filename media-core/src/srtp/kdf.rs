//! RFC 3711 §4.3: the AES-CM key derivation function (key derivation rate 0).
//!
//! "Let m and n be positive integers. A pseudo-random function family is a set of keyed
//! functions {PRF_n(k,x)} ... key_id = <label> || r. ... x = key_id XOR master_salt, where
//! key_id and master_salt are aligned so that their least significant bits agree
//! (right-alignment)." §4.3.3: "PRF_n(k_master,x) = AES_CM(k_master, x*2^16)" — the first n
//! bits of the AES counter-mode keystream with IV x*2^16. RFC 7714 §11 uses the same function
//! with its 96-bit salts (right-aligned into the 112-bit x) and, for AES-256, a 256-bit key.

use aes::cipher::{KeyIvInit, StreamCipher};

/// The `len` bytes of session key material labelled `label` (r = 0: key derivation rate 0).
pub(super) fn derive(master_key: &[u8], master_salt: &[u8], label: u8, len: usize) -> Vec<u8> {
    let mut x = [0u8; 14];
    x[14 - master_salt.len()..].copy_from_slice(master_salt);
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
