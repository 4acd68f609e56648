//! A fast reader for the common shape of a big `dialplan:` section.
//!
//! yaml_serde (libyaml-rs underneath) reads about 15 MB/s, so a 100k-rule plan (~7 MB) takes
//! ~0.5 s just to parse. Generated dial plans are written one rule per item, every value a
//! flow collection on the key's own line:
//!
//! ```yaml
//! dialplan:
//!   - match: { to_user: '^\+?1555(\d{7})$' }
//!     rewrite: { to_user: '+1555$1' }
//!     route: [carrier, backup]
//!   - match: { to_user: '^911$' }
//!     reject: { code: 403, reason: Forbidden }
//! ```
//!
//! This module reads exactly that shape, strictly: single-quoted scalars, plain scalars made
//! of `[A-Za-z0-9_.+-]` words (not starting with a digit, sign or dot, and not a YAML
//! null/bool), decimal status codes, no comments after values, no tabs, no CR, no anchors,
//! tags, aliases or double quotes, only the known keys, no duplicate keys. Anything else makes
//! it give up, and the whole document is read by yaml_serde as usual, so the result is always
//! what yaml_serde would have produced (the tests compare the two on every example and on
//! generated plans). The rest of the document is still read by yaml_serde, with the section's
//! lines blanked so line numbers stay right. Semantic errors found later are positioned by
//! [`crate::locate`], which re-reads the original text with yaml_serde.

use crate::rules::{RawMatch, RawRedirect, RawReject, RawRewrite, RawRule};

/// A `dialplan:` section in the fast shape, found but not read yet: the text yaml_serde should
/// read instead of the whole document, and the rules' text cut into chunks at rule boundaries
/// (each chunk can be read and compiled on its own thread).
pub(crate) struct Section<'a> {
    pub header: String,
    pub chunks: Vec<Chunk<'a>>,
}

/// Some rules of the section, as text. How many rules come before it is known only once
/// the chunks before it are read (they are read at the same time), so rule indices in errors
/// are relative to the chunk and shifted afterwards.
pub(crate) struct Chunk<'a> {
    /// About how many rules it holds (a capacity hint).
    pub rules: usize,
    pub text: &'a str,
    indent: usize,
}

/// Split `src` into the text yaml_serde should read (the dial plan replaced by
/// `dialplan: []` and blank lines) and the rules read here; `None` to use yaml_serde for all.
pub(crate) fn split_dialplan(src: &str) -> Option<(String, Vec<RawRule>)> {
    let sec = split_sections(src, 1)?;
    let mut rules = Vec::new();
    for c in &sec.chunks {
        rules.extend(parse_chunk(c)?);
    }
    Some((sec.header, rules))
}

/// Find the section and cut its rules into at most `parts` chunks of about the same size, at
/// rule boundaries. Only the layout is looked at here (a memchr pass over the line ends);
/// [`each_rule`] reads, and may still refuse, each chunk.
pub(crate) fn split_sections(src: &str, parts: usize) -> Option<Section<'_>> {
    let bytes = src.as_bytes();
    if memchr::memchr2(b'\r', b'\t', bytes).is_some() {
        return None;
    }
    // exactly one top-level `dialplan:` line, with nothing after the colon
    let mut start = None;
    for (i, _) in src.match_indices("dialplan:") {
        if i != 0 && bytes[i - 1] != b'\n' {
            continue;
        }
        let after = &src[i + "dialplan:".len()..];
        let after = after.split('\n').next().unwrap_or("");
        if start.is_some() || !after.trim().is_empty() {
            return None;
        }
        start = Some(i);
    }
    let start = start?;
    let key_line_end = start + src[start..].find('\n')? + 1;

    // The section ends at the next line that starts in column 0 with anything but `- `, `#`
    // or nothing; count its line ends on the way (the header keeps a blank line for each).
    let mut end = src.len();
    let mut section_lines = 0usize;
    let mut indent: Option<usize> = None;
    let mut line_start = key_line_end;
    let mut nl_iter = memchr::memchr_iter(b'\n', &bytes[key_line_end..]);
    loop {
        let line = &bytes[line_start..];
        match line.first() {
            None => break,
            Some(b'\n') | Some(b'#') => {}
            Some(b'-') if line.get(1) == Some(&b' ') => {
                indent.get_or_insert(0);
            }
            Some(b' ') => {
                if indent.is_none() {
                    let col = line.iter().take_while(|&&b| b == b' ').count();
                    match line.get(col) {
                        None | Some(b'\n') | Some(b'#') => {}
                        _ => indent = Some(col),
                    }
                }
            }
            Some(_) => {
                end = line_start;
                break;
            }
        }
        match nl_iter.next() {
            Some(off) => {
                section_lines += 1;
                line_start = key_line_end + off + 1;
            }
            None => break,
        }
    }
    let indent = indent?;
    if end <= key_line_end {
        return None;
    }

    // Cut points: from about `k/parts` of the way through, the next line that starts a rule
    // (`indent` spaces, then `- `).
    let section = &src[key_line_end..end];
    let is_rule_start = |at: usize| {
        section.as_bytes()[at..].starts_with(&RULE_PREFIX[RULE_PREFIX.len() - indent - 2..])
    };
    let mut cuts = vec![0usize];
    if indent + 2 <= RULE_PREFIX.len() {
        for k in 1..parts.max(1) {
            let mut at = k * section.len() / parts;
            at = match memchr::memchr(b'\n', &section.as_bytes()[at..]) {
                Some(o) => at + o + 1,
                None => break,
            };
            while at < section.len() && !is_rule_start(at) {
                at = match memchr::memchr(b'\n', &section.as_bytes()[at..]) {
                    Some(o) => at + o + 1,
                    None => section.len(),
                };
            }
            if at < section.len() && at > *cuts.last().unwrap_or(&0) {
                cuts.push(at);
            }
        }
    }
    cuts.push(section.len());
    let chunks = cuts
        .windows(2)
        .map(|w| Chunk {
            rules: (w[1] - w[0]) / 48,
            text: &section[w[0]..w[1]],
            indent,
        })
        .collect();

    let mut header = String::with_capacity(src.len() - (end - key_line_end));
    header.push_str(&src[..start]);
    header.push_str("dialplan: []\n");
    // keep line numbers: one empty line per line of the section
    header.extend(std::iter::repeat_n('\n', section_lines));
    header.push_str(&src[end..]);
    Some(Section { header, chunks })
}

/// Spaces and a dash: `RULE_PREFIX[len - indent - 2..]` is how a rule's line starts.
const RULE_PREFIX: &[u8] = b"                                - ";

/// Read the rules of one chunk; `None` when anything is outside the fast shape.
pub(crate) fn parse_chunk(c: &Chunk<'_>) -> Option<Vec<RawRule>> {
    let mut rules: Vec<RawRule> = Vec::with_capacity(c.text.len() / 48);
    match each_rule(c, |r| {
        rules.push(r);
        Ok::<(), ()>(())
    }) {
        Ok(true) => Some(rules),
        _ => None,
    }
}

/// Read the rules of one chunk and hand each to `f` as soon as it is complete (so a rule is
/// compiled while its text is still in cache, and the raw rules never pile up). `Ok(false)`
/// when anything is outside the fast shape (rules already handed over must then be dropped);
/// an error from `f` stops the reading.
pub(crate) fn each_rule<E>(
    c: &Chunk<'_>,
    mut f: impl FnMut(RawRule) -> Result<(), E>,
) -> Result<bool, E> {
    let d = c.indent;
    let mut cur: Option<RawRule> = None;
    for line in c.text.split_inclusive('\n') {
        let text = line.strip_suffix('\n').unwrap_or(line);
        let trimmed = text.trim_start_matches(' ');
        let col = text.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if text.bytes().any(|b| b < 0x20) {
            return Ok(false);
        }
        if col == d && trimmed.starts_with("- ") {
            if let Some(done) = cur.take() {
                f(done)?;
            }
            let mut rule = empty_rule();
            if key_value(&trimmed[2..], &mut rule).is_none() {
                return Ok(false);
            }
            cur = Some(rule);
        } else if col == d + 2 {
            let Some(rule) = cur.as_mut() else {
                return Ok(false);
            };
            if key_value(trimmed, rule).is_none() {
                return Ok(false);
            }
        } else {
            return Ok(false);
        }
    }
    match cur {
        Some(last) => {
            f(last)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn empty_rule() -> RawRule {
    RawRule {
        matches: None,
        rewrite: None,
        route: None,
        redirect: None,
        reject: None,
        locate: None,
    }
}

/// `key: <flow value>` for one of the rule's keys.
fn key_value(s: &str, rule: &mut RawRule) -> Option<()> {
    let (key, rest) = s.split_once(": ")?;
    let mut cur = Cursor {
        s: rest.as_bytes(),
        i: 0,
    };
    cur.spaces();
    match key {
        "match" if rule.matches.is_none() => rule.matches = Some(read_match(&mut cur)?),
        "rewrite" if rule.rewrite.is_none() => rule.rewrite = Some(read_rewrite(&mut cur)?),
        "route" if rule.route.is_none() => rule.route = Some(cur.seq()?),
        "redirect" if rule.redirect.is_none() => rule.redirect = Some(read_redirect(&mut cur)?),
        "reject" if rule.reject.is_none() => rule.reject = Some(read_reject(&mut cur)?),
        _ => return None,
    }
    cur.spaces();
    (cur.i == cur.s.len()).then_some(())
}

/// Set `slot` once (a duplicate key gives up).
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

fn read_match(c: &mut Cursor) -> Option<RawMatch> {
    let mut m = RawMatch::default();
    c.map(|k, c| match k {
        "to_user" => once(&mut m.to_user, c.scalar()?),
        "from_user" => once(&mut m.from_user, c.scalar()?),
        "request_uri" => once(&mut m.request_uri, c.scalar()?),
        "source_trunk" => once(&mut m.source_trunk, c.scalar()?),
        "source_ip" => once(&mut m.source_ip, c.scalar()?),
        "pai_user" => once(&mut m.pai_user, c.scalar()?),
        "diversion_user" => once(&mut m.diversion_user, c.scalar()?),
        _ => None,
    })?;
    Some(m)
}

fn read_rewrite(c: &mut Cursor) -> Option<RawRewrite> {
    let mut r = RawRewrite {
        to_user: None,
        from_user: None,
        request_uri: None,
        from_display: None,
    };
    c.map(|k, c| match k {
        "to_user" => once(&mut r.to_user, c.scalar()?),
        "from_user" => once(&mut r.from_user, c.scalar()?),
        "request_uri" => once(&mut r.request_uri, c.scalar()?),
        "from_display" => once(&mut r.from_display, c.scalar()?),
        _ => None,
    })?;
    Some(r)
}

fn read_redirect(c: &mut Cursor) -> Option<RawRedirect> {
    let (mut contacts, mut code) = (None, None);
    c.map(|k, c| match k {
        "contacts" => once(&mut contacts, c.seq()?),
        "code" => once(&mut code, c.code()?),
        _ => None,
    })?;
    Some(RawRedirect {
        contacts: contacts?,
        code,
    })
}

fn read_reject(c: &mut Cursor) -> Option<RawReject> {
    let (mut code, mut reason) = (None, None);
    c.map(|k, c| match k {
        "code" => once(&mut code, c.code()?),
        "reason" => once(&mut reason, c.scalar()?),
        _ => None,
    })?;
    Some(RawReject {
        code: code?,
        reason,
    })
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// `{ key: value, ... }` (or `{}`), calling `f` for each key.
    fn map(&mut self, mut f: impl FnMut(&str, &mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.spaces();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let k = self.word()?;
            self.eat(b':')?;
            self.eat(b' ')?;
            self.spaces();
            f(k, self)?;
            self.spaces();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.spaces();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[scalar, ...]` (or `[]`).
    fn seq(&mut self) -> Option<Vec<String>> {
        self.eat(b'[')?;
        self.spaces();
        let mut out = Vec::new();
        if self.eat(b']').is_some() {
            return Some(out);
        }
        loop {
            out.push(self.scalar()?);
            self.spaces();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.spaces();
                }
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// A single-quoted scalar, or a plain one of safe words.
    fn scalar(&mut self) -> Option<String> {
        if self.peek()? == b'\'' {
            self.i += 1;
            // common case: no '' escape inside, take the slice as is
            let rest = self.s.get(self.i..)?;
            let close = rest.iter().position(|&b| b == b'\'')?;
            if rest.get(close + 1) != Some(&b'\'') {
                self.i += close + 1;
                return std::str::from_utf8(&rest[..close]).ok().map(str::to_string);
            }
            let mut out = Vec::new();
            loop {
                let b = self.peek()?;
                self.i += 1;
                if b == b'\'' {
                    if self.peek() == Some(b'\'') {
                        self.i += 1;
                        out.push(b'\'');
                    } else {
                        return String::from_utf8(out).ok();
                    }
                } else {
                    out.push(b);
                }
            }
        }
        self.plain()
    }

    /// Plain scalar: words of `[A-Za-z0-9_.+-]` separated by single spaces, starting with a
    /// letter or `_`, and not one YAML would read as null or a boolean.
    fn plain(&mut self) -> Option<String> {
        let start = self.i;
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-');
        loop {
            while self.peek().is_some_and(word) {
                self.i += 1;
            }
            // a single space followed by another word continues the scalar
            if self.peek() == Some(b' ') && self.s.get(self.i + 1).is_some_and(|&b| word(b)) {
                self.i += 1;
                continue;
            }
            break;
        }
        let v = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        let special = ["null", "true", "false", "yes", "no", "on", "off", "y", "n"];
        if v.len() <= 5 && special.iter().any(|w| w.eq_ignore_ascii_case(v)) {
            return None;
        }
        Some(v.to_string())
    }

    /// A key: `[a-z_]+`.
    fn word(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        {
            self.i += 1;
        }
        let s: &'a [u8] = self.s;
        std::str::from_utf8(s.get(start..self.i)?)
            .ok()
            .filter(|w| !w.is_empty())
    }

    /// A status code: 1-3 decimal digits, no leading zero.
    fn code(&mut self) -> Option<u16> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        let d = self.s.get(start..self.i)?;
        if d.is_empty() || d.len() > 3 || d[0] == b'0' {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    }
}
