//! A compact, self-delimiting record format for state one node hands another through a shared
//! store (the cluster's call replicas): a magic word, then fields as netstrings
//! (`<decimal length>:<bytes>,`). Binary-safe, no escaping, and a reader that refuses
//! anything malformed with a typed error instead of guessing (a record comes from a store
//! other programs can write).

use std::fmt;

/// Why a record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Not a record of this kind or version.
    Magic,
    /// Ends inside a field, or a field is not `<len>:<bytes>,`.
    Truncated,
    /// A field does not hold what it should (not UTF-8, not a number, a bad flag).
    Field(&'static str),
    /// Bytes after the last field.
    Trailing,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Magic => f.write_str("not a record of this version"),
            RecordError::Truncated => f.write_str("record truncated or malformed"),
            RecordError::Field(what) => write!(f, "record field {what} is invalid"),
            RecordError::Trailing => f.write_str("bytes after the record's last field"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Most bytes one field may claim (a record is a few hundred bytes; a length beyond this is
/// garbage, not a reason to allocate).
const MAX_FIELD: usize = 1 << 20;

/// Builds a record.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(magic: &[u8]) -> Writer {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(magic);
        Writer { buf }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b.len().to_string().as_bytes());
        self.buf.push(b':');
        self.buf.extend_from_slice(b);
        self.buf.push(b',');
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.str(&v.to_string())
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.bytes(if v { b"1" } else { b"0" })
    }

    /// An optional value: a flag field, then the value when present.
    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.str(s);
        }
        self
    }

    pub fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        self.bool(b.is_some());
        if let Some(b) = b {
            self.bytes(b);
        }
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a record field by field, in the order it was written.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], magic: &[u8]) -> Result<Reader<'a>, RecordError> {
        let rest = data.strip_prefix(magic).ok_or(RecordError::Magic)?;
        Ok(Reader { rest })
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let colon = self
            .rest
            .iter()
            .take(8)
            .position(|&b| b == b':')
            .ok_or(RecordError::Truncated)?;
        let digits = &self.rest[..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(RecordError::Truncated);
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .filter(|&n| n <= MAX_FIELD)
            .ok_or(RecordError::Truncated)?;
        let after = &self.rest[colon + 1..];
        if after.len() < len + 1 || after[len] != b',' {
            return Err(RecordError::Truncated);
        }
        self.rest = &after[len + 1..];
        Ok(&after[..len])
    }

    pub fn str(&mut self, what: &'static str) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| RecordError::Field(what))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        self.str(what)?
            .parse()
            .map_err(|_| RecordError::Field(what))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        u32::try_from(self.u64(what)?).map_err(|_| RecordError::Field(what))
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        u16::try_from(self.u64(what)?).map_err(|_| RecordError::Field(what))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, RecordError> {
        match self.bytes()? {
            b"1" => Ok(true),
            b"0" => Ok(false),
            _ => Err(RecordError::Field(what)),
        }
    }

    pub fn opt_str(&mut self, what: &'static str) -> Result<Option<&'a str>, RecordError> {
        if self.bool(what)? {
            self.str(what).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, RecordError> {
        if self.bool(what)? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Nothing may follow the last field.
    pub fn end(self) -> Result<(), RecordError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let data = Writer::new(b"T1")
            .str("a,b:c")
            .u64(u64::MAX)
            .bool(true)
            .opt_str(None)
            .opt_str(Some(""))
            .bytes(&[0, 255, b','])
            .finish();
        let mut r = Reader::new(&data, b"T1").unwrap();
        assert_eq!(r.str("s"), Ok("a,b:c"));
        assert_eq!(r.u64("n"), Ok(u64::MAX));
        assert_eq!(r.bool("b"), Ok(true));
        assert_eq!(r.opt_str("o"), Ok(None));
        assert_eq!(r.opt_str("o"), Ok(Some("")));
        assert_eq!(r.bytes(), Ok(&[0u8, 255, b','][..]));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn malformed_records_are_refused_without_panicking() {
        let good = Writer::new(b"T1").str("hello").u64(7).finish();
        assert_eq!(Reader::new(b"X1", b"T1").err(), Some(RecordError::Magic));
        // Every truncation of a good record fails cleanly.
        for n in 2..good.len() {
            let mut r = Reader::new(&good[..n], b"T1").unwrap();
            let res = r.str("s").and_then(|_| r.u64("n"));
            assert!(res.is_err(), "cut at {n}");
        }
        for bad in [
            &b"T1x:a,"[..],
            b"T199999999999:a,",
            b"T15:ab,",
            b"T12:abc",
            b"T1:a,",
        ] {
            assert!(Reader::new(bad, b"T1").unwrap().bytes().is_err());
        }
        let mut r = Reader::new(b"T12:\xff\xfe,", b"T1").unwrap();
        assert_eq!(r.str("s"), Err(RecordError::Field("s")));
        let mut r = Reader::new(b"T11:x,", b"T1").unwrap();
        assert_eq!(r.bool("b"), Err(RecordError::Field("b")));
        let mut r = Reader::new(b"T15:70000,", b"T1").unwrap();
        assert_eq!(r.u16("p"), Err(RecordError::Field("p")));
        let mut r = Reader::new(b"T11:1,x", b"T1").unwrap();
        r.bool("b").unwrap();
        assert_eq!(r.end(), Err(RecordError::Trailing));
    }
}
