//! Digit maps (RFC 3435 section 2.1.5): the dialling plan a gateway uses to collect digits on
//! a line before it notifies the call agent, and the call agent uses to check what it got.
//!
//! ```text
//! DigitMap = DigitString  / "(" DigitStringList ")"
//! DigitStringList = DigitString 0*( "|" DigitString )
//! DigitString = 1*(DigitStringElement)
//! DigitStringElement = DigitPosition ["."]
//! DigitPosition = DigitMapLetter / DigitMapRange
//! DigitMapLetter = DIGIT / "#" / "*" / "A" / "B" / "C" / "D" / "T"
//! DigitMapRange = "x" / "[" 1*DigitLetter "]"
//! DigitLetter ::= *((DIGIT "-" DIGIT) / DigitMapLetter)
//! ```
//!
//! RFC 3435 section 2.1.5: "The letter 'x' [matches] any digit ('0' to '9')"; "the period
//! ('.') [matches] an arbitrary number, including zero, of occurrences of the preceding
//! construct"; "the timer (T) ... the letter 'T' [indicates] a timer". The gateway appends a
//! `T` to the collected string when the inter-digit timer fires, then matches again; "If the
//! result is under-qualified (partially matches at least one entry in the digit map), [wait];
//! if the result matches, or if the result is over-qualified (i.e., no further digits could
//! possibly produce a match), send the current digit string to the Call Agent."
//!
//! Sans-IO: no clock here. [`DigitMap::check`] answers for a string; the caller runs the timer.

use std::fmt;

/// A symbol a position can match: a digit, `#`, `*`, `A`-`D`, or `T` (the timer).
type Symbol = u8;

/// One position of a pattern: the set of symbols it matches, and whether it repeats (`.`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    /// Bit per symbol index ([`index`]).
    set: u32,
    repeat: bool,
}

fn index(c: Symbol) -> Option<u32> {
    Some(match c.to_ascii_uppercase() {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'#' => 10,
        b'*' => 11,
        b'A'..=b'D' => 12 + u32::from(c.to_ascii_uppercase() - b'A'),
        b'T' => 16,
        _ => return None,
    })
}

const DIGITS: u32 = 0x3ff;

/// A parsed digit map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitMap {
    patterns: Vec<Vec<Position>>,
    text: String,
}

/// What a collected string is against the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Matches a pattern and no longer string could match another: report now.
    Full,
    /// Matches a pattern, but more digits could still match a longer one (e.g. `1` of
    /// `(1|1xx)`): the gateway waits for the timer.
    FullButLonger,
    /// A prefix of at least one pattern: wait for more.
    Partial,
    /// Over-qualified: no continuation can ever match (report; the call agent plays reorder).
    None,
}

/// A digit map that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitMapError {
    pub reason: &'static str,
    pub at: usize,
}

impl fmt::Display for DigitMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digit map: {} at character {}", self.reason, self.at + 1)
    }
}

impl std::error::Error for DigitMapError {}

/// Longest digit map accepted (characters) and most patterns: a map is configuration or a
/// gateway's parameter, never worth more.
const MAX_LEN: usize = 2048;
const MAX_PATTERNS: usize = 128;

impl DigitMap {
    /// Parse `(0T|00T|[1-7]xxx|...)` or a single pattern without parentheses.
    pub fn parse(s: &str) -> Result<DigitMap, DigitMapError> {
        let e = |reason, at| Err(DigitMapError { reason, at });
        if s.len() > MAX_LEN {
            return e("longer than 2048 characters", MAX_LEN);
        }
        let b = s.trim().as_bytes();
        let inner = match (b.first(), b.last()) {
            (Some(b'('), Some(b')')) if b.len() >= 2 => &b[1..b.len() - 1],
            (Some(b'('), _) => return e("`(` without `)`", b.len()),
            _ => b,
        };
        let offset = usize::from(inner.len() != b.len());
        let mut patterns = Vec::new();
        let mut start = 0;
        for part in inner.split(|&c| c == b'|') {
            if patterns.len() == MAX_PATTERNS {
                return e("more than 128 patterns", start + offset);
            }
            patterns.push(parse_pattern(part, start + offset)?);
            start += part.len() + 1;
        }
        Ok(DigitMap {
            patterns,
            text: s.trim().to_string(),
        })
    }

    /// The map as written (to send as the `D:` parameter of an RQNT).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How the collected string `dialled` (digits, `#`, `*`, `A`-`D`, a final `T` when the
    /// timer fired) stands against the map. Any other character: [`Match::None`].
    pub fn check(&self, dialled: &str) -> Match {
        let mut syms = Vec::with_capacity(dialled.len());
        for c in dialled.bytes() {
            match index(c) {
                Some(i) => syms.push(i),
                None => return Match::None,
            }
        }
        let mut full = false;
        let mut longer = false;
        for p in &self.patterns {
            let (f, l) = run(p, &syms);
            full |= f;
            longer |= l;
        }
        match (full, longer) {
            (true, false) => Match::Full,
            (true, true) => Match::FullButLonger,
            (false, true) => Match::Partial,
            (false, false) => Match::None,
        }
    }
}

fn parse_pattern(b: &[u8], at: usize) -> Result<Vec<Position>, DigitMapError> {
    let e = |reason, i: usize| Err(DigitMapError { reason, at: at + i });
    let mut out: Vec<Position> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let set = match c {
            b'.' => {
                match out.last_mut() {
                    Some(p) if !p.repeat => p.repeat = true,
                    _ => return e("`.` must follow a position", i),
                }
                i += 1;
                continue;
            }
            b'x' | b'X' => DIGITS,
            b'[' => {
                let Some(len) = b[i + 1..].iter().position(|&c| c == b']') else {
                    return e("`[` without `]`", i);
                };
                let set = parse_range(&b[i + 1..i + 1 + len], at + i + 1)?;
                i += len + 1;
                set
            }
            _ => match index(c) {
                Some(n) => 1 << n,
                None => return e("not a digit map letter", i),
            },
        };
        out.push(Position { set, repeat: false });
        i += 1;
    }
    if out.is_empty() {
        return e("empty pattern", 0);
    }
    Ok(out)
}

fn parse_range(b: &[u8], at: usize) -> Result<u32, DigitMapError> {
    let e = |reason, i: usize| Err(DigitMapError { reason, at: at + i });
    let mut set = 0u32;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if b.get(i + 1) == Some(&b'-') {
            let Some(&hi) = b.get(i + 2) else {
                return e("range without an end", i);
            };
            if !c.is_ascii_digit() || !hi.is_ascii_digit() || hi < c {
                return e("a range is DIGIT-DIGIT, low to high", i);
            }
            for d in c..=hi {
                set |= 1 << (d - b'0');
            }
            i += 3;
            continue;
        }
        match (c, index(c)) {
            (b'x' | b'X', _) => set |= DIGITS,
            (_, Some(n)) => set |= 1 << n,
            _ => return e("not a digit map letter", i),
        }
        i += 1;
    }
    if set == 0 {
        return e("empty range", 0);
    }
    Ok(set)
}

/// Run one pattern over `syms` (an NFA over positions, at most pattern-length states):
/// (the whole string matches, some longer string could match).
fn run(p: &[Position], syms: &[u32]) -> (bool, bool) {
    // states[k]: the first k positions are consumed (a repeated position stays current).
    let n = p.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    close(p, &mut cur);
    for &s in syms {
        let mut next = vec![false; n + 1];
        for k in 0..n {
            if cur[k] && p[k].set & (1 << s) != 0 {
                if p[k].repeat {
                    next[k] = true;
                } else {
                    next[k + 1] = true;
                }
            }
        }
        close(p, &mut next);
        if !next.iter().any(|&b| b) {
            return (false, false);
        }
        cur = next;
    }
    let full = cur[n];
    // Could consume more: some live state before the end (a repeated position included).
    let longer = (0..n).any(|k| cur[k]);
    (full, longer)
}

/// A repeated position may match zero times: skip over it.
fn close(p: &[Position], states: &mut [bool]) {
    for k in 0..p.len() {
        if states[k] && p[k].repeat {
            states[k + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_MAP: &str = "(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)";

    #[test]
    fn the_rfc_example_map() {
        let m = DigitMap::parse(ISSUE_MAP).unwrap();
        assert_eq!(m.check("1001"), Match::Full);
        assert_eq!(m.check("100"), Match::Partial);
        assert_eq!(m.check("1"), Match::Partial);
        assert_eq!(m.check("10011"), Match::None);
        assert_eq!(m.check("0"), Match::Partial);
        assert_eq!(m.check("0T"), Match::Full);
        assert_eq!(m.check("00T"), Match::Full);
        assert_eq!(m.check("*69"), Match::Full);
        assert_eq!(m.check("912125551234"), Match::Full);
        assert_eq!(m.check("9011"), Match::Partial);
        assert_eq!(m.check("90114412345678"), Match::Partial);
        assert_eq!(m.check("90114412345678T"), Match::Full);
        assert_eq!(m.check("55T"), Match::None);
        assert_eq!(m.check("T"), Match::None);
        assert_eq!(m.check(""), Match::Partial);
        assert_eq!(m.check("1a1!"), Match::None);
        assert_eq!(m.as_str(), ISSUE_MAP);
    }

    #[test]
    fn a_match_that_could_grow_waits() {
        let m = DigitMap::parse("(1|1xx)").unwrap();
        assert_eq!(m.check("1"), Match::FullButLonger);
        assert_eq!(m.check("12"), Match::Partial);
        assert_eq!(m.check("123"), Match::Full);
        let m = DigitMap::parse("x.").unwrap();
        assert_eq!(m.check(""), Match::FullButLonger);
        assert_eq!(m.check("123"), Match::FullButLonger);
        let m = DigitMap::parse("[2-4#A]x.T").unwrap();
        assert_eq!(m.check("#T"), Match::Full);
        assert_eq!(m.check("a5T"), Match::Full);
        assert_eq!(m.check("5"), Match::None);
    }

    #[test]
    fn bad_maps_are_refused_with_where() {
        for (bad, reason) in [
            ("(12|", "`(` without `)`"),
            ("(12||3)", "empty pattern"),
            ("1[23", "`[` without `]`"),
            ("[9-1]", "a range is DIGIT-DIGIT, low to high"),
            (".1", "`.` must follow a position"),
            ("1..", "`.` must follow a position"),
            ("12e", "not a digit map letter"),
            ("[]", "empty range"),
        ] {
            let e = DigitMap::parse(bad).unwrap_err();
            assert_eq!(e.reason, reason, "{bad}");
        }
        assert!(DigitMap::parse(&"1|".repeat(200)).is_err());
        assert!(DigitMap::parse(&"x".repeat(3000)).is_err());
    }
}
