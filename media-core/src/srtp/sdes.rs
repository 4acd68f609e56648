//! SDES key exchange (RFC 4568): the `a=crypto` attribute.
//!
//! RFC 4568 §9.1: `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`, key-params
//! `inline:<key||salt base64>[|<lifetime>][|<MKI>:<length>]`. trunkline takes one inline key per
//! line, no MKI, no session parameters (a line with any of them is skipped: RFC 4568 §6.1 lets
//! the answerer pick another line, and none left is a 488 for the caller).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{MasterKey, Suite};

/// One `a=crypto` line that trunkline can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub key: MasterKey,
}

/// Why a line is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoError {
    Syntax,
    UnknownSuite,
    KeyLength,
    /// Several keys, MKI, a lifetime below 2^31 packets or session parameters: not supported.
    Unsupported,
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptoError::Syntax => "a=crypto does not parse",
            CryptoError::UnknownSuite => "unknown crypto suite",
            CryptoError::KeyLength => "key of the wrong length for its suite",
            CryptoError::Unsupported => "MKI, key lifetime or session parameters not supported",
        })
    }
}

impl std::error::Error for CryptoError {}

/// Parses the value of an `a=crypto:` attribute (the text after `crypto:`).
pub fn parse(value: &str) -> Result<Crypto, CryptoError> {
    let mut it = value.split_ascii_whitespace();
    let tag: u32 = it
        .next()
        .filter(|t| t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or(CryptoError::Syntax)?;
    let suite = it.next().ok_or(CryptoError::Syntax)?;
    let params = it.next().ok_or(CryptoError::Syntax)?;
    if it.next().is_some() {
        return Err(CryptoError::Unsupported);
    }
    let suite = Suite::from_name(suite).ok_or(CryptoError::UnknownSuite)?;
    if params.contains(';') {
        return Err(CryptoError::Unsupported);
    }
    let inline = params.strip_prefix("inline:").ok_or(CryptoError::Syntax)?;
    let mut parts = inline.split('|');
    let b64 = parts.next().ok_or(CryptoError::Syntax)?;
    for p in parts {
        if p.contains(':') {
            return Err(CryptoError::Unsupported); // MKI
        }
        // lifetime: "2^n" or a decimal count; shorter than 2^31 packets would need re-keying
        let ok = match p.strip_prefix("2^") {
            Some(n) => n.parse::<u32>().is_ok_and(|n| (31..=64).contains(&n)),
            None => p.parse::<u64>().is_ok_and(|n| n >= 1 << 31),
        };
        if !ok {
            return Err(CryptoError::Unsupported);
        }
    }
    if b64.len() > 88 {
        return Err(CryptoError::KeyLength);
    }
    let material = STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .map_err(|_| CryptoError::Syntax)?;
    let key = MasterKey::new(suite, &material).map_err(|_| CryptoError::KeyLength)?;
    Ok(Crypto { tag, key })
}

/// The attribute value for `key` under `tag`: `1 AES_CM_128_HMAC_SHA1_80 inline:...`.
pub fn format(tag: u32, key: &MasterKey) -> String {
    format!(
        "{tag} {} inline:{}",
        key.suite.name(),
        STANDARD.encode(key.material())
    )
}
