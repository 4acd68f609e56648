//! Bencode, the encoding of the ng protocol's dictionaries.
//!
//! Grammar (as defined for BitTorrent, BEP 3, and used by rtpengine's ng protocol):
//!
//! * integer: `i<decimal>e`, no leading zeros, no `-0`;
//! * byte string: `<length>:<bytes>`, length in decimal without leading zeros;
//! * list: `l<values>e`;
//! * dictionary: `d(<string key><value>)*e`.
//!
//! The decoder is strict about syntax (leading zeros, `-0`, non-string keys, duplicate keys and
//! trailing bytes are errors) and bounded: nesting is limited to [`MAX_DEPTH`], a string cannot be
//! longer than the input that is left, integers must fit an `i64`. It accepts dictionaries whose
//! keys are not sorted (some ng clients do not sort); the encoder always writes sorted keys.
//! It never panics, whatever the input.

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting of lists/dictionaries accepted.
pub const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Eof,
    /// A byte that cannot start or continue a value here, at this offset.
    Syntax(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The same key twice in one dictionary.
    DuplicateKey(usize),
    /// Bytes after the top-level value.
    Trailing(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Eof => f.write_str("bencode: unexpected end of input"),
            DecodeError::Syntax(p) => write!(f, "bencode: syntax error at offset {p}"),
            DecodeError::TooDeep => f.write_str("bencode: nested too deeply"),
            DecodeError::DuplicateKey(p) => write!(f, "bencode: duplicate key at offset {p}"),
            DecodeError::Trailing(p) => write!(f, "bencode: trailing data at offset {p}"),
        }
    }
}
impl std::error::Error for DecodeError {}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from (key, value) pairs.
    pub fn dict<'a>(items: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` if this is a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Bencode this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Bencode this value at the end of `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decode exactly one value that spans the whole of `input`.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(DecodeError::Trailing(d.pos));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.get(self.pos).copied().ok_or(DecodeError::Eof)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let v = self.integer(b'e')?;
                Ok(Value::Int(v))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.pos += 1;
                let mut list = Vec::new();
                while self.peek()? != b'e' {
                    list.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(list))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.pos += 1;
                let mut dict = BTreeMap::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::Syntax(at));
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    if dict.insert(k, v).is_some() {
                        return Err(DecodeError::DuplicateKey(at));
                    }
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            _ => Err(DecodeError::Syntax(self.pos)),
        }
    }

    /// Decimal digits (optionally negative) up to `end`, consumed with the terminator.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(DecodeError::Eof)?;
        let digits = rest.get(..len).ok_or(DecodeError::Eof)?;
        let (neg, mag) = match digits {
            [b'-', m @ ..] => (true, m),
            m => (false, m),
        };
        let ok = !mag.is_empty()
            && mag.len() <= 19
            && mag.iter().all(u8::is_ascii_digit)
            && !(mag.len() > 1 && mag.first() == Some(&b'0'))
            && !(neg && mag == b"0");
        if !ok {
            return Err(DecodeError::Syntax(start));
        }
        let text = std::str::from_utf8(digits).map_err(|_| DecodeError::Syntax(start))?;
        let v = text
            .parse::<i64>()
            .map_err(|_| DecodeError::Syntax(start))?;
        self.pos = start + len + 1;
        Ok(v)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        let n = self.integer(b':')?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Syntax(at))?;
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let b = self.input.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("n", Value::Int(-42)),
            ("flags", Value::List(vec![Value::str("a"), Value::Int(0)])),
            ("empty", Value::str("")),
        ]);
        let enc = v.encode();
        assert_eq!(
            enc,
            b"d7:command5:offer5:empty0:5:flagsl1:ai0ee1:ni-42ee".to_vec()
        );
        assert_eq!(decode(&enc), Ok(v));
    }

    #[test]
    fn accepts_unsorted_keys() {
        let v = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(2)));
        assert_eq!(v.get("b"), Some(&Value::Int(1)));
    }

    #[test]
    fn strict_errors() {
        for bad in [
            &b""[..],
            b"i",
            b"ie",
            b"i-0e",
            b"i01e",
            b"i1",
            b"i99999999999999999999e",
            b"01:a",
            b"2:a",
            b"-1:a",
            b"d",
            b"di1ei2ee",
            b"d1:ai1e1:ai2ee",
            b"l",
            b"le1",
            b"x",
            b"4:spam ",
            b"d1:a",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 1), "e".repeat(MAX_DEPTH + 1));
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
        let ok = format!("{}{}", "l".repeat(MAX_DEPTH), "e".repeat(MAX_DEPTH));
        assert!(decode(ok.as_bytes()).is_ok());
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(vec![])));
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seed = Value::dict([
            ("command", Value::str("offer")),
            ("sdp", Value::str("v=0\r\n")),
            ("replace", Value::List(vec![Value::str("origin")])),
            ("n", Value::Int(12345)),
        ])
        .encode();
        let alphabet = b"0123456789ilde:-xa";
        let mut decoded = 0;
        for round in 0..50_000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len)
                    .map(|_| {
                        let r = next();
                        if r % 4 == 0 {
                            r as u8
                        } else {
                            alphabet[(r % alphabet.len() as u64) as usize]
                        }
                    })
                    .collect()
            } else {
                let mut b = seed.clone();
                for _ in 0..(1 + next() % 3) {
                    let i = (next() % b.len() as u64) as usize;
                    match next() % 3 {
                        0 => b[i] = next() as u8,
                        1 => {
                            b.remove(i);
                        }
                        _ => b.insert(i, alphabet[(next() % alphabet.len() as u64) as usize]),
                    }
                }
                b
            };
            if let Ok(v) = decode(&buf) {
                decoded += 1;
                // Whatever decodes re-encodes to something that decodes to the same value.
                assert_eq!(decode(&v.encode()), Ok(v));
            }
        }
        assert!(decoded > 0);
    }
}
