//! Dial-plan patterns: a regex (Rust `regex` crate syntax) compiled for speed.
//!
//! Most dial-plan regexes come in a handful of shapes: `^\+?1555\d{7}$`, `^(00|011)(\d+)$`,
//! `^[2-9]\d{2}[2-9]\d{6}$`. Those are recognised at load by a small parser ([`Fast::parse`])
//! and matched by a greedy backtracking matcher over bytes. The subset ("fast patterns"):
//! optional `^` at the start and `$` at the end; ASCII literals and escaped punctuation; `.`,
//! `\d` and ASCII classes (`[2-9]`, `[^0-9]`, `[+*#]`) with the greedy quantifiers `?`, `*`, `+`,
//! `{n}`, `{n,}`, `{n,m}`; groups `( )`, `(?: )`, `(?P<name> )`, `(?<name> )` without a
//! quantifier; and a group of purely literal alternatives (`(00|011)`), also unquantified.
//!
//! The matcher has the `regex` crate's leftmost-first semantics (the crate documents them as
//! those of a backtracking engine preferring the greedy branch and the earlier alternative),
//! so match and capture spans agree exactly; the tests check that on hand-picked and on
//! randomly generated patterns. Anything else, and any haystack that is not pure ASCII (where
//! `\d` and `.` have Unicode meaning) or longer than 256 bytes, or a search that runs past a
//! step budget, goes to a real `regex::Regex`, compiled on first use and kept (`OnceLock`), so
//! loading 100k rules never pays for 100k regex compilations. Every pattern is still
//! syntax-checked at load: fast ones by construction (the subset is valid regex syntax), the
//! others with `regex_syntax`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use regex::Regex;

/// Upper bound on backtracking steps of the fast matcher per search; beyond it the search is
/// redone by the `regex` crate (linear time), so a hostile Request-URI cannot make a lookup slow.
const STEP_BUDGET: u32 = 4096;
/// Longest pattern (in pieces) the fast matcher takes.
const MAX_PIECES: usize = 64;
/// Largest counted repetition the fast matcher takes.
const MAX_REPEAT: u32 = 1000;
/// Longest haystack the fast matcher takes (longer ones go to the linear-time `regex`).
const MAX_FAST_HAY: usize = 256;
const UNBOUNDED: u32 = u32::MAX;
/// Characters `.` matches in an ASCII haystack: everything but `\n`.
const DOT: u128 = !(1u128 << b'\n');
const DIGITS: u128 = ((1u128 << 10) - 1) << b'0';

/// One atom (a set of ASCII bytes) with a repetition count.
#[derive(Clone, Debug)]
struct Piece {
    set: u128,
    min: u32,
    max: u32,
    /// Some: this piece is a group of literal alternatives `(00|011)`, tried in order
    /// (leftmost-first), and `set`/`min`/`max` are unused. Boxed: most pieces have none, and a
    /// 100k-rule plan holds about a million pieces (32 bytes each this way, 48 with a `Vec`
    /// or a boxed slice, which are two words).
    #[allow(clippy::box_collection)]
    alts: Option<Box<Vec<Box<[u8]>>>>,
}

impl Piece {
    fn alts(&self) -> &[Box<[u8]>] {
        self.alts.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// A pattern in the fast subset.
#[derive(Clone, Debug)]
pub(crate) struct Fast {
    anchored_start: bool,
    anchored_end: bool,
    pieces: Vec<Piece>,
    /// Capture group `i + 1` spans pieces `groups[i].0 .. groups[i].1`.
    groups: Vec<(usize, usize)>,
    /// Named groups `(name, group number)`.
    names: Vec<(String, usize)>,
}

/// Capture spans of one match: `spans[0]` is the whole match, `spans[i]` group `i`.
pub(crate) type Spans = Vec<Option<(usize, usize)>>;

enum FastResult {
    Match,
    NoMatch,
    GaveUp,
}

fn bit(b: u8) -> u128 {
    if b < 128 {
        1u128 << b
    } else {
        0
    }
}

/// Can `\c` be written in a regex meaning the literal `c`? (Mirrors regex-syntax: ASCII
/// punctuation except `<` and `>`.)
fn escapable(c: u8) -> bool {
    c.is_ascii_punctuation() && c != b'<' && c != b'>'
}

impl Fast {
    /// Recognise `src` as a fast pattern, or `None` if it uses anything outside the subset.
    pub(crate) fn parse(src: &str) -> Option<Fast> {
        let b = src.as_bytes();
        if !src.is_ascii() {
            return None;
        }
        let mut i = 0;
        let mut f = Fast {
            anchored_start: false,
            anchored_end: false,
            pieces: Vec::new(),
            groups: Vec::new(),
            names: Vec::new(),
        };
        if b.first() == Some(&b'^') {
            f.anchored_start = true;
            i = 1;
        }
        let mut end = b.len();
        if end > i
            && b[end - 1] == b'$'
            && !(end >= 2 && b[end - 2] == b'\\' && !escaped_backslash(b, end - 2))
        {
            f.anchored_end = true;
            end -= 1;
        }
        let mut open: Vec<Option<usize>> = Vec::new(); // indexes into f.groups; None: (?:
        while i < end {
            let c = b[i];
            let set = match c {
                b'(' => {
                    // `(`, `(?:`, `(?P<name>` or `(?<name>`; other `(?` forms (flags) are out
                    let (capture, name, body) = match b.get(i + 1) {
                        Some(b'?') => match (b.get(i + 2), b.get(i + 3)) {
                            (Some(b':'), _) => (false, None, i + 3),
                            (Some(b'P'), Some(b'<')) => {
                                let (n, next) = group_name(b, i + 4)?;
                                (true, Some(n), next)
                            }
                            (Some(b'<'), _) => {
                                let (n, next) = group_name(b, i + 3)?;
                                (true, Some(n), next)
                            }
                            _ => return None,
                        },
                        _ => (true, None, i + 1),
                    };
                    let slot = if capture {
                        f.groups.push((f.pieces.len(), usize::MAX));
                        let number = f.groups.len();
                        if let Some(n) = name {
                            if f.names.iter().any(|(x, _)| *x == n) {
                                return None;
                            }
                            f.names.push((n, number));
                        }
                        Some(number - 1)
                    } else {
                        None
                    };
                    // a group of literal alternatives becomes one piece
                    if let Some((alts, close)) = literal_alternation(b, body, end)? {
                        f.pieces.push(Piece {
                            set: 0,
                            min: 1,
                            max: 1,
                            alts: Some(Box::new(alts)),
                        });
                        if let Some(g) = slot.and_then(|g| f.groups.get_mut(g)) {
                            g.1 = f.pieces.len();
                        }
                        i = close + 1;
                        if i < end && matches!(b[i], b'?' | b'*' | b'+' | b'{') {
                            return None;
                        }
                        if f.pieces.len() > MAX_PIECES {
                            return None;
                        }
                        continue;
                    }
                    open.push(slot);
                    i = body;
                    continue;
                }
                b')' => {
                    let g = open.pop()?;
                    if let Some(slot) = g.and_then(|g| f.groups.get_mut(g)) {
                        slot.1 = f.pieces.len();
                    }
                    i += 1;
                    // a quantified group is outside the subset
                    if i < end && matches!(b[i], b'?' | b'*' | b'+' | b'{') {
                        return None;
                    }
                    continue;
                }
                b'\\' => {
                    let n = *b.get(i + 1)?;
                    if i + 1 >= end {
                        return None;
                    }
                    i += 2;
                    if n == b'd' {
                        DIGITS
                    } else if escapable(n) {
                        bit(n)
                    } else {
                        return None;
                    }
                }
                b'[' => {
                    let (set, next) = parse_class(b, i, end)?;
                    i = next;
                    set
                }
                b'.' => {
                    i += 1;
                    DOT
                }
                b'^' | b'$' | b'|' | b'*' | b'+' | b'?' | b'{' | b'}' | b']' => return None,
                _ => {
                    i += 1;
                    bit(c)
                }
            };
            let (min, max, next) = parse_quant(b, i, end)?;
            i = next;
            f.pieces.push(Piece {
                set,
                min,
                max,
                alts: None,
            });
            if f.pieces.len() > MAX_PIECES {
                return None;
            }
        }
        if !open.is_empty() {
            return None;
        }
        Some(f)
    }

    /// Number of capture groups (not counting group 0).
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Literal strings one of which every match must start with, when the pattern is anchored
    /// at the start and begins with literals (`^\+?1555` gives `+1555` and `1555`). Empty when
    /// there is no such set (unanchored, or starting with a class/repetition).
    pub(crate) fn prefixes(&self, limit: usize) -> Vec<String> {
        if !self.anchored_start {
            return Vec::new();
        }
        // capacity for the whole literal run up front: no regrowth while pushing
        let room = self.pieces.len() + 8;
        let grown = |s: &String| {
            let mut t = String::with_capacity(s.len() + room);
            t.push_str(s);
            t
        };
        let mut out = vec![String::with_capacity(room)];
        for p in &self.pieces {
            if !p.alts().is_empty() {
                if out.len() * p.alts().len() > limit {
                    break;
                }
                out = out
                    .iter()
                    .flat_map(|s| {
                        p.alts().iter().map(move |a| {
                            let mut s = grown(s);
                            s.extend(a.iter().map(|&c| c as char));
                            s
                        })
                    })
                    .collect();
                continue;
            }
            if p.set.count_ones() != 1 || p.max > 1 {
                break;
            }
            let c = p.set.trailing_zeros() as u8 as char;
            if p.min == 1 {
                for s in &mut out {
                    s.push(c);
                }
            } else {
                // optional: both with and without
                if out.len() * 2 > limit {
                    break;
                }
                let with: Vec<String> = out
                    .iter()
                    .map(|s| {
                        let mut s = grown(s);
                        s.push(c);
                        s
                    })
                    .collect();
                out.extend(with);
            }
        }
        if out.iter().any(|s| s.is_empty()) {
            return Vec::new();
        }
        if out.len() > 1 {
            out.sort();
            out.dedup();
        }
        out
    }

    /// Search `hay` (ASCII) leftmost-first; fill `spans`.
    fn search(&self, hay: &[u8], spans: &mut Spans) -> FastResult {
        let mut bounds = [0usize; MAX_PIECES + 2];
        let mut budget = STEP_BUDGET;
        let last_start = if self.anchored_start { 0 } else { hay.len() };
        // An unanchored search can only start where the first piece matches (when it must).
        let first = self
            .pieces
            .first()
            .filter(|p| p.min > 0 && p.alts().is_empty())
            .map(|p| p.set);
        for start in 0..=last_start {
            if let Some(set) = first {
                if hay.get(start).is_none_or(|&c| bit(c) & set == 0) {
                    continue;
                }
            }
            match self.at(hay, 0, start, &mut bounds, &mut budget) {
                Some(true) => {
                    spans.clear();
                    let n = self.pieces.len();
                    let at = |k: usize| bounds.get(k).copied().unwrap_or(0);
                    spans.push(Some((at(0), at(n))));
                    for &(s, e) in &self.groups {
                        spans.push(Some((at(s), at(e))));
                    }
                    return FastResult::Match;
                }
                Some(false) => {}
                None => return FastResult::GaveUp,
            }
        }
        FastResult::NoMatch
    }

    /// Try to match pieces `pi..` at `pos`; `None` when the step budget ran out.
    fn at(
        &self,
        hay: &[u8],
        pi: usize,
        pos: usize,
        bounds: &mut [usize],
        budget: &mut u32,
    ) -> Option<bool> {
        *budget = budget.checked_sub(1)?;
        if let Some(slot) = bounds.get_mut(pi) {
            *slot = pos;
        }
        let Some(p) = self.pieces.get(pi) else {
            return Some(!self.anchored_end || pos == hay.len());
        };
        let rest = hay.get(pos..).unwrap_or(&[]);
        if !p.alts().is_empty() {
            for a in p.alts() {
                if rest.starts_with(a) && self.at(hay, pi + 1, pos + a.len(), bounds, budget)? {
                    return Some(true);
                }
            }
            return Some(false);
        }
        let cap = if p.max == UNBOUNDED {
            rest.len()
        } else {
            (p.max as usize).min(rest.len())
        };
        let mut n = 0;
        while n < cap && rest.get(n).is_some_and(|&c| bit(c) & p.set != 0) {
            n += 1;
        }
        if n < p.min as usize {
            return Some(false);
        }
        for k in (p.min as usize..=n).rev() {
            if self.at(hay, pi + 1, pos + k, bounds, budget)? {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// A group name at `i` (`[A-Za-z_][A-Za-z0-9_]*` then `>`); returns it and the index after `>`.
fn group_name(b: &[u8], i: usize) -> Option<(String, usize)> {
    let len = b.get(i..)?.iter().position(|&c| c == b'>')?;
    let name = b.get(i..i + len)?;
    let first = *name.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_')
        || !name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return None;
    }
    Some((String::from_utf8(name.to_vec()).ok()?, i + len + 1))
}

/// A group body at `i` made only of literal branches separated by `|`, closed by `)`:
/// `Some(Some((branches, index of ')')))`. `Some(None)` when the body is something else (a
/// normal group), `None` when it has `|` but is not purely literal (outside the subset).
#[allow(clippy::type_complexity)]
fn literal_alternation(b: &[u8], i: usize, end: usize) -> Option<Option<(Vec<Box<[u8]>>, usize)>> {
    let mut branches = Vec::new();
    let mut cur = Vec::new();
    let mut j = i;
    let mut saw_bar = false;
    while j < end {
        match b[j] {
            b')' => {
                if !saw_bar {
                    return Some(None);
                }
                branches.push(cur.into_boxed_slice());
                return Some(Some((branches, j)));
            }
            b'|' => {
                saw_bar = true;
                branches.push(std::mem::take(&mut cur).into_boxed_slice());
            }
            b'\\' => match b.get(j + 1) {
                Some(&n) if j + 1 < end && escapable(n) => {
                    cur.push(n);
                    j += 1;
                }
                _ => return if saw_bar { None } else { Some(None) },
            },
            b'(' | b'[' | b'.' | b'*' | b'+' | b'?' | b'{' | b'}' | b']' | b'^' | b'$' => {
                return if saw_bar || has_bar_before_close(b, j, end) {
                    None
                } else {
                    Some(None)
                };
            }
            c => cur.push(c),
        }
        j += 1;
    }
    if saw_bar {
        None
    } else {
        Some(None)
    }
}

/// Does a `|` occur (outside nested groups/classes, roughly) before this group closes? Used
/// only to refuse, so a conservative `true` is safe.
fn has_bar_before_close(b: &[u8], i: usize, end: usize) -> bool {
    b.get(i..end).is_some_and(|r| r.contains(&b'|'))
}

/// Is the backslash at `i` itself escaped (preceded by an odd number of backslashes)?
fn escaped_backslash(b: &[u8], i: usize) -> bool {
    let mut n = 0;
    let mut j = i;
    while j > 0 && b[j - 1] == b'\\' {
        n += 1;
        j -= 1;
    }
    n % 2 == 1
}

/// `[...]` with ASCII letters/digits, ranges between them, `\d` and escaped punctuation,
/// optionally negated with a leading `^`. Returns the set and the index after `]`.
fn parse_class(b: &[u8], start: usize, end: usize) -> Option<(u128, usize)> {
    let mut i = start + 1;
    let mut negate = false;
    if b.get(i) == Some(&b'^') {
        negate = true;
        i += 1;
    }
    let mut set = 0u128;
    let mut first = true;
    loop {
        if i >= end {
            return None;
        }
        let c = b[i];
        match c {
            b']' if !first => {
                i += 1;
                break;
            }
            b'\\' => {
                let n = *b.get(i + 1)?;
                if n == b'd' {
                    set |= DIGITS;
                } else if escapable(n) {
                    set |= bit(n);
                } else {
                    return None;
                }
                i += 2;
            }
            c if c.is_ascii_alphanumeric() => {
                if b.get(i + 1) == Some(&b'-')
                    && b.get(i + 2).is_some_and(|d| d.is_ascii_alphanumeric())
                {
                    let hi = b[i + 2];
                    if hi < c {
                        return None;
                    }
                    for x in c..=hi {
                        set |= bit(x);
                    }
                    i += 3;
                } else {
                    set |= bit(c);
                    i += 1;
                }
            }
            b'+' | b'*' | b'#' | b'.' | b'_' | b'@' | b':' | b';' | b',' | b'/' | b'=' | b'%'
            | b'!' | b'?' | b'$' | b'(' | b')' | b'{' | b'}' | b'|' => {
                set |= bit(c);
                i += 1;
            }
            _ => return None,
        }
        first = false;
    }
    if negate {
        set = !set;
    }
    if set == 0 {
        return None;
    }
    Some((set, i))
}

/// Optional quantifier at `i`: `?`, `*`, `+`, `{n}`, `{n,}`, `{n,m}` (greedy only).
fn parse_quant(b: &[u8], i: usize, end: usize) -> Option<(u32, u32, usize)> {
    let (min, max, next) = match b.get(i).filter(|_| i < end) {
        Some(b'?') => (0, 1, i + 1),
        Some(b'*') => (0, UNBOUNDED, i + 1),
        Some(b'+') => (1, UNBOUNDED, i + 1),
        Some(b'{') => {
            let close = i + b.get(i..end)?.iter().position(|&c| c == b'}')?;
            let inner = std::str::from_utf8(b.get(i + 1..close)?).ok()?;
            let (min, max) = match inner.split_once(',') {
                None => {
                    let n = parse_count(inner)?;
                    (n, n)
                }
                Some((lo, "")) => (parse_count(lo)?, UNBOUNDED),
                Some((lo, hi)) => (parse_count(lo)?, parse_count(hi)?),
            };
            if max < min {
                return None;
            }
            (min, max, close + 1)
        }
        _ => return Some((1, 1, i)),
    };
    // lazy `??`, `*?`, or a stacked quantifier: outside the subset
    if next < end && matches!(b.get(next), Some(b'?' | b'*' | b'+' | b'{')) {
        return None;
    }
    Some((min, max, next))
}

fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n <= MAX_REPEAT)
}

/// A compiled dial-plan pattern (one `match` key of one rule).
#[derive(Debug)]
pub(crate) struct Pattern {
    src: Box<str>,
    fast: Option<Fast>,
    /// Number of capture groups (not counting group 0).
    ngroups: usize,
    /// Named capture groups `(name, number)`, for `${name}` in rewrites (empty for fast ones).
    names: Vec<(String, usize)>,
    /// Anchored-start literal prefixes (see [`Fast::prefixes`]); empty = none known.
    prefixes: Vec<String>,
    re: OnceLock<Option<Regex>>,
}

/// A syntax error in a pattern, with a byte offset into the pattern when known.
#[derive(Debug)]
pub(crate) struct PatternError {
    pub message: String,
    pub offset: Option<usize>,
    /// The pattern text.
    pub pattern: String,
}

impl Pattern {
    /// Validate and compile `src`. `eager` builds the `regex::Regex` now for patterns outside
    /// the fast subset (reporting size-limit errors at load); otherwise it is built on first use.
    #[cfg(test)]
    pub(crate) fn new(src: &str, eager: bool) -> Result<Pattern, PatternError> {
        Pattern::from_string(src.to_string(), eager)
    }

    /// [`Pattern::new`] taking ownership of the text (no copy for the 100k-rule case).
    pub(crate) fn from_string(src: String, eager: bool) -> Result<Pattern, PatternError> {
        if let Some(fast) = Fast::parse(&src) {
            let prefixes = fast.prefixes(16);
            return Ok(Pattern {
                src: src.into_boxed_str(),
                ngroups: fast.group_count(),
                names: fast.names.clone(),
                fast: Some(fast),
                prefixes,
                re: OnceLock::new(),
            });
        }
        let hir = regex_syntax::Parser::new().parse(&src).map_err(|e| {
            let (message, offset) = match &e {
                regex_syntax::Error::Parse(p) => {
                    (p.kind().to_string(), Some(p.span().start.offset))
                }
                regex_syntax::Error::Translate(t) => {
                    (t.kind().to_string(), Some(t.span().start.offset))
                }
                _ => (e.to_string(), None),
            };
            PatternError {
                message,
                offset,
                pattern: src.clone(),
            }
        })?;
        let mut names = Vec::new();
        collect_names(&hir, &mut names);
        let prefixes = hir_prefixes(&hir);
        let p = Pattern {
            src: src.into_boxed_str(),
            fast: None,
            ngroups: hir.properties().explicit_captures_len(),
            names,
            prefixes,
            re: OnceLock::new(),
        };
        if eager {
            match Regex::new(&p.src) {
                Ok(re) => {
                    let _ = p.re.set(Some(re));
                }
                Err(e) => {
                    return Err(PatternError {
                        message: e.to_string(),
                        offset: None,
                        pattern: p.src.to_string(),
                    })
                }
            }
        }
        Ok(p)
    }

    pub(crate) fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    pub(crate) fn group_count(&self) -> usize {
        self.ngroups
    }

    pub(crate) fn group_by_name(&self, name: &str) -> Option<usize> {
        self.names.iter().find(|(n, _)| n == name).map(|&(_, g)| g)
    }

    pub(crate) fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Build the `regex::Regex` now if this pattern needs one for ordinary input (it is outside
    /// the fast subset) and does not have it yet. Returns true if it compiled one.
    pub(crate) fn warm(&self) -> bool {
        if self.fast.is_some() || self.re.get().is_some() {
            return false;
        }
        self.regex();
        true
    }

    fn regex(&self) -> Option<&Regex> {
        self.re.get_or_init(|| Regex::new(&self.src).ok()).as_ref()
    }

    /// Search `hay`; on a match fill `spans` (group 0 = whole match) and return true.
    ///
    /// `cache_budget`: how many more fast patterns may keep a compiled fallback `Regex` (they
    /// need one only for non-ASCII, over-long or pathological input, which comes from the
    /// network: without a cap, requests aimed at every prefix could make all 100k rules
    /// compile and keep a regex). Past the budget the fallback is compiled, used and dropped.
    pub(crate) fn captures(
        &self,
        hay: &str,
        spans: &mut Spans,
        cache_budget: &AtomicUsize,
    ) -> bool {
        if let Some(f) = &self.fast {
            if hay.len() <= MAX_FAST_HAY && hay.is_ascii() {
                match f.search(hay.as_bytes(), spans) {
                    FastResult::Match => return true,
                    FastResult::NoMatch => return false,
                    FastResult::GaveUp => {}
                }
            }
        }
        let one_off;
        let re = match self.re.get() {
            Some(r) => r.as_ref(),
            None if self.fast.is_none() || take(cache_budget) => self.regex(),
            None => {
                one_off = Regex::new(&self.src).ok();
                one_off.as_ref()
            }
        };
        let Some(re) = re else {
            return false;
        };
        let mut locs = re.capture_locations();
        if re.captures_read(&mut locs, hay).is_none() {
            return false;
        }
        spans.clear();
        for i in 0..locs.len() {
            spans.push(locs.get(i));
        }
        true
    }

    /// Does `hay` match (no captures needed)?
    #[allow(dead_code)]
    pub(crate) fn is_match(&self, hay: &str) -> bool {
        let mut s = Vec::new();
        self.captures(hay, &mut s, &AtomicUsize::new(usize::MAX))
    }
}

/// Take one unit of `budget` if any is left.
fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

fn collect_names(h: &regex_syntax::hir::Hir, names: &mut Vec<(String, usize)>) {
    use regex_syntax::hir::HirKind;
    match h.kind() {
        HirKind::Capture(c) => {
            if let Some(n) = &c.name {
                names.push((n.to_string(), c.index as usize));
            }
            collect_names(&c.sub, names);
        }
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            v.iter().for_each(|x| collect_names(x, names))
        }
        HirKind::Repetition(r) => collect_names(&r.sub, names),
        _ => {}
    }
}

/// Required literal prefixes of a general regex: only when it is anchored at the start and
/// regex-syntax's prefix extraction gives a finite set of non-empty literals.
fn hir_prefixes(h: &regex_syntax::hir::Hir) -> Vec<String> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    use regex_syntax::hir::Look;
    if !h.properties().look_set_prefix().contains(Look::Start) {
        return Vec::new();
    }
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(64);
    let seq = ex.extract(h);
    let Some(lits) = seq.literals() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(lits.len());
    for l in lits {
        match std::str::from_utf8(l.as_bytes()) {
            Ok(s) if !s.is_empty() => out.push(s.to_string()),
            _ => return Vec::new(),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One part of a rewrite template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Group(usize),
}

/// A rewrite template: literal text with `$N`, `${N}`, `${name}` and `$$` (a literal `$`).
///
/// Unlike `regex::Captures::expand`, `$N` takes digits only (so `$1a` is group 1 then `a`),
/// a reference to a group that does not exist is a load-time error, and any other `$` is an error.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `src`; group references are resolved against `pat` (None: no pattern, so the
    /// template must be literal). Errors carry a byte offset into `src`.
    pub(crate) fn parse(src: &str, pat: Option<&Pattern>) -> Result<Template, (String, usize)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let b = src.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let Some(off) = src[i..].find('$') else {
                lit.push_str(&src[i..]);
                break;
            };
            lit.push_str(&src[i..i + off]);
            let at = i + off;
            let rest = &src[at + 1..];
            let (group, consumed): (Result<usize, String>, usize) = if rest.starts_with('$') {
                lit.push('$');
                i = at + 2;
                continue;
            } else if let Some(inner) = rest.strip_prefix('{') {
                let Some(close) = inner.find('}') else {
                    return Err(("unclosed `${` in rewrite".into(), at));
                };
                let name = &inner[..close];
                let g = if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
                    name.parse::<usize>()
                        .map_err(|_| format!("bad group number `{name}`"))
                } else {
                    match pat.and_then(|p| p.group_by_name(name)) {
                        Some(g) => Ok(g),
                        None => Err(format!("rewrite refers to capture group `{name}` that the match pattern does not have")),
                    }
                };
                (g, close + 3)
            } else {
                let n = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return Err((
                        "`$` in a rewrite must be followed by a group number, `{name}` or `$`"
                            .into(),
                        at,
                    ));
                }
                (
                    rest[..n]
                        .parse::<usize>()
                        .map_err(|_| "bad group number".to_string()),
                    n + 1,
                )
            };
            let g = group.map_err(|m| (m, at))?;
            let have = pat.map(|p| p.group_count());
            match have {
                None => {
                    return Err((
                        format!("rewrite uses `${g}` but the rule has no pattern to capture from"),
                        at,
                    ))
                }
                Some(n) if g > n => {
                    return Err((
                        format!(
                            "rewrite uses group {g} but the match pattern has {n} capture group(s)"
                        ),
                        at,
                    ))
                }
                _ => {}
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Group(g));
            i = at + consumed;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Expand with `hay`'s captures `spans` (an unmatched group expands to nothing).
    pub(crate) fn expand(&self, hay: &str, spans: &Spans) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Group(g) => {
                    if let Some(Some((s, e))) = spans.get(*g) {
                        out.push_str(hay.get(*s..*e).unwrap_or(""));
                    }
                }
            }
        }
        out
    }
}
