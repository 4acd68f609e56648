//! Presence documents (RFC 3863 PIDF, `application/pidf+xml`): what a publisher sends is
//! checked before it is kept and passed to watchers, and the document of a presentity whose
//! state follows its registration is written here.
//!
//! The check is a bounded scan, not an XML library: documents come from the network, so it
//! refuses a DOCTYPE (no entity expansion, no external entities), more than [`MAX_DEPTH`]
//! levels or [`MAX_ELEMENTS`] elements, and anything that is not well-formed element
//! structure (every start tag closed in order, quoted attributes), and wants the root to be
//! PIDF's `presence` in its namespace (RFC 3863 section 4.1: "urn:ietf:params:xml:ns:pidf").

/// RFC 3863 section 4.1.
pub const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";
/// RFC 3863 section 4.1: the MIME type.
pub const PIDF_TYPE: &str = "application/pidf+xml";

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 2000;

/// Why a document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidfError {
    NotUtf8,
    /// A DOCTYPE or ENTITY declaration.
    Doctype,
    /// Tags that do not nest, an unterminated construct, a bad attribute.
    Malformed,
    TooDeep,
    TooManyElements,
    /// The root is not `presence` in the PIDF namespace.
    NotPidf,
}

/// The facts a watcher of a presentity needs that trunkline reads from a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The first tuple's `<basic>`: open (true) or closed.
    pub open: Option<bool>,
}

/// The scan's state: open elements, how many were seen, whether the root is PIDF's, and the
/// first tuple's basic status.
#[derive(Default)]
struct Scan<'a> {
    stack: Vec<&'a str>,
    elements: usize,
    root_ok: bool,
    open: Option<bool>,
    in_basic: bool,
}

/// Check `doc` as a PIDF document.
pub fn check(doc: &[u8]) -> Result<Summary, PidfError> {
    let text = std::str::from_utf8(doc).map_err(|_| PidfError::NotUtf8)?;
    let mut st = Scan::default();
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        st.text(&rest[..lt]);
        rest = &rest[lt..];
        rest = if let Some(r) = rest.strip_prefix("<?") {
            after(r, "?>")?
        } else if let Some(r) = rest.strip_prefix("<!--") {
            after(r, "-->")?
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            if st.stack.is_empty() {
                return Err(PidfError::Malformed);
            }
            after(r, "]]>")?
        } else if rest.starts_with("<!") {
            return Err(PidfError::Doctype);
        } else if let Some(r) = rest.strip_prefix("</") {
            st.end_tag(r)?
        } else {
            st.start_tag(&rest[1..])?
        };
    }
    if !st.stack.is_empty() || !st.root_ok || !rest.trim().is_empty() {
        return Err(if st.root_ok {
            PidfError::Malformed
        } else {
            PidfError::NotPidf
        });
    }
    Ok(Summary { open: st.open })
}

impl<'a> Scan<'a> {
    /// Character data between tags: the first `<basic>`'s value.
    fn text(&mut self, between: &str) {
        if self.in_basic && self.open.is_none() {
            match between.trim() {
                "open" => self.open = Some(true),
                "closed" => self.open = Some(false),
                _ => {}
            }
        }
    }

    /// `r`: what follows `</`. The rest after the tag.
    fn end_tag(&mut self, r: &'a str) -> Result<&'a str, PidfError> {
        let end = r.find('>').ok_or(PidfError::Malformed)?;
        let name = r[..end].trim_end();
        if self.stack.pop() != Some(name) {
            return Err(PidfError::Malformed);
        }
        if local(name) == "basic" {
            self.in_basic = false;
        }
        Ok(&r[end + 1..])
    }

    /// `r`: what follows `<` of a start tag. The rest after the tag.
    fn start_tag(&mut self, r: &'a str) -> Result<&'a str, PidfError> {
        let end = tag_end(r)?;
        let inner = &r[..end];
        let (inner, empty) = match inner.strip_suffix('/') {
            Some(i) => (i, true),
            None => (inner, false),
        };
        let name_end = inner
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(inner.len());
        let name = &inner[..name_end];
        if name.is_empty() || !name.chars().all(name_char) {
            return Err(PidfError::Malformed);
        }
        let attrs = attributes(&inner[name_end..])?;
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(PidfError::TooManyElements);
        }
        if self.stack.is_empty() {
            if self.root_ok || self.elements > 1 {
                return Err(PidfError::Malformed); // a second root
            }
            let ns_attr = match name.split_once(':') {
                Some((p, _)) => format!("xmlns:{p}"),
                None => "xmlns".to_string(),
            };
            self.root_ok = local(name) == "presence"
                && attrs.iter().any(|(k, v)| *k == ns_attr && *v == PIDF_NS);
            if !self.root_ok {
                return Err(PidfError::NotPidf);
            }
        }
        if !empty {
            self.stack.push(name);
            if self.stack.len() > MAX_DEPTH {
                return Err(PidfError::TooDeep);
            }
            if local(name) == "basic" {
                self.in_basic = true;
            }
        }
        Ok(&r[end + 1..])
    }
}

/// What follows the first `end` in `s`.
fn after<'a>(s: &'a str, end: &str) -> Result<&'a str, PidfError> {
    s.find(end)
        .map(|i| &s[i + end.len()..])
        .ok_or(PidfError::Malformed)
}

/// The index of the `>` that ends a start tag (quoted `>` in attribute values skipped).
fn tag_end(s: &str) -> Result<usize, PidfError> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Ok(i),
            (None, '<') => return Err(PidfError::Malformed),
            _ => {}
        }
    }
    Err(PidfError::Malformed)
}

fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// `k="v"` pairs of a start tag.
fn attributes(mut s: &str) -> Result<Vec<(&str, &str)>, PidfError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s.find('=').ok_or(PidfError::Malformed)?;
        let k = s[..eq].trim_end();
        if k.is_empty() || !k.chars().all(name_char) {
            return Err(PidfError::Malformed);
        }
        let v = s[eq + 1..].trim_start();
        let q = v.chars().next().ok_or(PidfError::Malformed)?;
        if q != '"' && q != '\'' {
            return Err(PidfError::Malformed);
        }
        let close = v[1..].find(q).ok_or(PidfError::Malformed)?;
        out.push((k, &v[1..1 + close]));
        s = &v[close + 2..];
    }
}

/// `s` with the five XML special characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The document of `entity` (`sip:alice@example.com`) when no one published for it: one tuple,
/// open while it has a registered contact, closed otherwise (RFC 3863 section 4.1.4).
pub fn from_registration(entity: &str, registered: bool) -> Vec<u8> {
    let basic = if registered { "open" } else { "closed" };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"{PIDF_NS}\" entity=\"{}\">\r\n\
         \x20 <tuple id=\"registration\">\r\n\
         \x20   <status><basic>{basic}</basic></status>\r\n\
         \x20 </tuple>\r\n\
         </presence>\r\n",
        escape(entity)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARESIP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\r\n\
        <presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
            xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\r\n\
            xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"\r\n\
            entity=\"sip:bob@example.com\">\r\n\
          <dm:person id=\"p4159\"><rpid:activities><rpid:busy/></rpid:activities></dm:person>\r\n\
          <tuple id=\"t4109\">\r\n\
            <status>\r\n\
              <basic>closed</basic>\r\n\
            </status>\r\n\
            <contact>sip:bob@example.com</contact>\r\n\
            <note xml:lang=\"en\">In a meeting &amp; away</note>\r\n\
          </tuple>\r\n\
        </presence>\r\n";

    #[test]
    fn real_documents_pass_and_say_open_or_closed() {
        assert_eq!(check(BARESIP.as_bytes()), Ok(Summary { open: Some(false) }));
        let ours = from_registration("sip:alice@example.com", true);
        assert_eq!(check(&ours), Ok(Summary { open: Some(true) }));
        let closed = from_registration("sip:a&b@example.com", false);
        assert_eq!(check(&closed), Ok(Summary { open: Some(false) }));
        assert!(String::from_utf8(closed).unwrap().contains("a&amp;b"));
        // A prefixed root in the PIDF namespace is PIDF too.
        let prefixed = "<p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:x@y\">\
                        <p:tuple id=\"a\"><p:status><p:basic>open</p:basic></p:status></p:tuple>\
                        </p:presence>";
        assert_eq!(check(prefixed.as_bytes()), Ok(Summary { open: Some(true) }));
    }

    #[test]
    fn hostile_and_broken_documents_are_refused() {
        let ns = "xmlns=\"urn:ietf:params:xml:ns:pidf\"";
        let cases: Vec<(String, PidfError)> = vec![
            (
                format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]><presence {ns}>&a;</presence>"),
                PidfError::Doctype,
            ),
            (
                format!("<presence {ns}><tuple></presence>"),
                PidfError::Malformed,
            ),
            (format!("<presence {ns}><tuple>"), PidfError::Malformed),
            (
                format!("<presence {ns}></presence><presence {ns}/>"),
                PidfError::Malformed,
            ),
            (
                format!("<presence {ns} entity=unquoted/>"),
                PidfError::Malformed,
            ),
            (
                format!("<presence {ns}><tuple id=\"a\"</tuple></presence>"),
                PidfError::Malformed,
            ),
            ("<presence xmlns=\"urn:other\"/>".into(), PidfError::NotPidf),
            ("<html><body/></html>".into(), PidfError::NotPidf),
            ("just text".into(), PidfError::NotPidf),
            (String::new(), PidfError::NotPidf),
            (
                format!(
                    "<presence {ns}>{}{}</presence>",
                    "<a>".repeat(40),
                    "</a>".repeat(40)
                ),
                PidfError::TooDeep,
            ),
            (
                format!("<presence {ns}>{}</presence>", "<a/>".repeat(MAX_ELEMENTS)),
                PidfError::TooManyElements,
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(check(doc.as_bytes()), Err(want), "{doc:.80}");
        }
        assert_eq!(check(&[0xff, 0xfe]), Err(PidfError::NotUtf8));
        // Every prefix of a good document is refused, none panics.
        for cut in 0..BARESIP.len() - 2 {
            if BARESIP.is_char_boundary(cut) {
                assert!(check(&BARESIP.as_bytes()[..cut]).is_err(), "cut {cut}");
            }
        }
    }
}
