//! Dial-plan rules from YAML: the raw shapes (read by yaml_serde or by [`crate::fastyaml`]),
//! validated and compiled into [`Rule`]s, on one thread or one per chunk of a big plan.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::dialplan::{CaptureSource, Cidr, Rule};
use crate::locate::Seg;
use crate::pattern::{Pattern, Template};
use crate::{check_text, fastyaml, key, sem, Action, Sem, Trunk, EAGER_REGEX_LIMIT};

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default, rename = "match")]
    pub(crate) matches: Option<RawMatch>,
    #[serde(default)]
    pub(crate) rewrite: Option<RawRewrite>,
    #[serde(default)]
    pub(crate) route: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) redirect: Option<RawRedirect>,
    #[serde(default)]
    pub(crate) reject: Option<RawReject>,
    #[serde(default)]
    pub(crate) locate: Option<bool>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    pub(crate) to_user: Option<String>,
    #[serde(default)]
    pub(crate) from_user: Option<String>,
    #[serde(default)]
    pub(crate) request_uri: Option<String>,
    #[serde(default)]
    pub(crate) source_trunk: Option<String>,
    #[serde(default)]
    pub(crate) source_ip: Option<String>,
    #[serde(default)]
    pub(crate) pai_user: Option<String>,
    #[serde(default)]
    pub(crate) diversion_user: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRewrite {
    #[serde(default)]
    pub(crate) to_user: Option<String>,
    #[serde(default)]
    pub(crate) from_user: Option<String>,
    #[serde(default)]
    pub(crate) request_uri: Option<String>,
    #[serde(default)]
    pub(crate) from_display: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirect {
    pub(crate) contacts: Vec<String>,
    #[serde(default)]
    pub(crate) code: Option<u16>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReject {
    pub(crate) code: u16,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
/// Validates and compiles every rule, in file order.
pub(crate) fn build_rules(
    raw: Vec<RawRule>,
    trunks: &BTreeMap<String, Trunk>,
) -> Result<Vec<Rule>, Sem> {
    let mut cx = RuleCx::new(EAGER_REGEX_LIMIT);
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        out.push(build_rule(i, r, trunks, &mut cx)?);
    }
    Ok(out)
}

/// State shared by the rules compiled on one thread.
struct RuleCx {
    /// Non-fast patterns still to compile eagerly.
    eager: usize,
    /// Route lists already built: rules with the same list share it.
    routes: HashMap<Vec<String>, std::sync::Arc<[String]>>,
}

impl RuleCx {
    fn new(eager: usize) -> RuleCx {
        RuleCx {
            eager,
            routes: HashMap::new(),
        }
    }

    fn route(&mut self, names: Vec<String>) -> std::sync::Arc<[String]> {
        if let Some(r) = self.routes.get(&names) {
            return r.clone();
        }
        let r: std::sync::Arc<[String]> = names.clone().into();
        self.routes.insert(names, r.clone());
        r
    }
}

/// Reads and compiles the rules of each chunk on its own thread (each rule is independent of
/// the others; the index over all of them is built afterwards). Reading and compiling a chunk
/// on one thread keeps its allocations and frees on that thread. The first bad rule in file
/// order is the error reported, whichever thread found it; `Ok(None)` when a chunk is outside
/// the fast shape.
pub(crate) fn build_chunks(
    chunks: &[fastyaml::Chunk<'_>],
    trunks: &BTreeMap<String, Trunk>,
) -> Result<Option<Vec<Rule>>, Sem> {
    let budget = EAGER_REGEX_LIMIT / chunks.len().max(1);
    // Rule indices (in error paths) are relative to the chunk here.
    // The first chunk's vector receives the others' rules at the end: room for all of them
    // (an over-estimate costs address space only, pages never touched stay unbacked).
    let total: usize = chunks.iter().map(|c| c.rules).sum();
    let run = |c: &fastyaml::Chunk<'_>, cap: usize| -> Result<Option<Vec<Rule>>, Sem> {
        let mut cx = RuleCx::new(budget);
        let mut out = Vec::with_capacity(cap);
        let fast = fastyaml::each_rule(c, |r| {
            out.push(build_rule(out.len(), r, trunks, &mut cx)?);
            Ok(())
        })?;
        Ok(fast.then_some(out))
    };
    let results: Vec<Result<Option<Vec<Rule>>, Sem>> = match chunks {
        [] => Vec::new(),
        [one] => vec![run(one, one.rules)],
        [first, rest @ ..] => std::thread::scope(|s| {
            let handles: Vec<_> = rest
                .iter()
                .map(|c| s.spawn(move || run(c, c.rules)))
                .collect();
            let mut all = vec![run(first, total)];
            for h in handles {
                all.push(match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                });
            }
            all
        }),
    };
    // Any chunk outside the fast shape: the whole document goes the plain way (which reports
    // the same errors for the rules before it).
    if results.iter().any(|r| matches!(r, Ok(None))) {
        return Ok(None);
    }
    let mut rules: Vec<Rule> = Vec::new();
    for r in results {
        match r {
            Ok(Some(part)) => {
                if rules.is_empty() {
                    rules = part;
                } else {
                    rules.extend(part);
                }
            }
            Ok(None) => return Ok(None),
            Err(mut e) => {
                // dialplan[i] of the chunk -> dialplan[rules before it + i]
                if let Some(Seg::Index(i)) = e.path.get_mut(1) {
                    *i += rules.len();
                }
                return Err(e);
            }
        }
    }
    Ok(Some(rules))
}

fn build_rule(
    i: usize,
    r: RawRule,
    trunks: &BTreeMap<String, Trunk>,
    cx: &mut RuleCx,
) -> Result<Rule, Sem> {
    let eager = &mut cx.eager;
    // error paths are built only on error (this runs 100k times for big plans)
    let base = || vec![key("dialplan"), Seg::Index(i)];
    let at = |rest: &[&str]| {
        let mut p = base();
        p.extend(rest.iter().map(|k| key(k)));
        p
    };
    let mut m = r.matches.unwrap_or_default();
    let mut pat = |src: Option<String>, k: &str| -> Result<Option<Pattern>, Sem> {
        let Some(src) = src else {
            return Ok(None);
        };
        let p = Pattern::from_string(src, *eager > 0).map_err(|e| {
            let src = &e.pattern;
            let at_off = e
                .offset
                .map(|o| format!(" (at byte {o} of the pattern)"))
                .unwrap_or_default();
            sem(
                at(&["match", k]),
                format!("bad regex `{src}`{at_off}: {}", e.message),
            )
        })?;
        if !p.is_fast() {
            *eager = eager.saturating_sub(1);
        }
        Ok(Some(p))
    };
    let to_user = pat(m.to_user.take(), "to_user")?;
    let from_user = pat(m.from_user.take(), "from_user")?.map(Box::new);
    let request_uri = pat(m.request_uri.take(), "request_uri")?.map(Box::new);
    let pai_user = pat(m.pai_user.take(), "pai_user")?.map(Box::new);
    let diversion_user = pat(m.diversion_user.take(), "diversion_user")?.map(Box::new);
    if let Some(t) = &m.source_trunk {
        if !trunks.contains_key(t) {
            return Err(sem(
                at(&["match", "source_trunk"]),
                format!("source_trunk `{t}` is not a defined trunk"),
            ));
        }
    }
    let source_ip = match &m.source_ip {
        None => None,
        Some(c) => Some(
            c.parse::<Cidr>()
                .map_err(|e| sem(at(&["match", "source_ip"]), e))?,
        ),
    };

    let mut rewrite_to_user = None;
    let mut rewrite_from_user = None;
    let mut rewrite_request_uri = None;
    let mut rewrite_from_display = None;
    if let Some(rw) = &r.rewrite {
        let tpl = |src: &str, k: &str, p: Option<&Pattern>| -> Result<Template, Sem> {
            check_text(src, || at(&["rewrite", k]), "a rewrite")?;
            Template::parse(src, p).map_err(|(m, off)| {
                sem(
                    at(&["rewrite", k]),
                    format!("rewrite `{src}` (at byte {off}): {m}"),
                )
            })
        };
        if let Some(s) = &rw.to_user {
            rewrite_to_user = Some(tpl(s, "to_user", to_user.as_ref())?);
        }
        // The caller's identity: the From user's captures, else the asserted identity's,
        // else the dialled number's.
        let (caller, caller_src) = match (&from_user, &pai_user) {
            (Some(p), _) => (Some(&**p), CaptureSource::FromUser),
            (None, Some(p)) => (Some(&**p), CaptureSource::PaiUser),
            (None, None) => (to_user.as_ref(), CaptureSource::ToUser),
        };
        if let Some(s) = &rw.from_user {
            rewrite_from_user = Some((tpl(s, "from_user", caller)?, caller_src));
        }
        if let Some(s) = &rw.from_display {
            if s.contains('"') || s.contains('\\') {
                return Err(sem(
                    at(&["rewrite", "from_display"]),
                    "a display name without `\"` or `\\`",
                ));
            }
            rewrite_from_display = Some(Box::new((tpl(s, "from_display", caller)?, caller_src)));
        }
        if let Some(s) = &rw.request_uri {
            let (p, src) = match &request_uri {
                Some(p) => (Some(&**p), CaptureSource::RequestUri),
                None => (to_user.as_ref(), CaptureSource::ToUser),
            };
            rewrite_request_uri = Some((tpl(s, "request_uri", p)?, src));
        }
    }

    let locate = r.locate == Some(true);
    let n_actions = r.route.is_some() as u8
        + r.redirect.is_some() as u8
        + r.reject.is_some() as u8
        + locate as u8;
    if n_actions != 1 {
        return Err(sem(
            base(),
            format!(
                "rule {} needs exactly one action (`route`, `redirect`, `reject` or `locate: true`), it has {n_actions}",
                i + 1
            ),
        ));
    }
    if locate && (rewrite_from_user.is_some() || rewrite_request_uri.is_some()) {
        return Err(sem(
            at(&["rewrite"]),
            "a `locate` rule rewrites `to_user` only (the user looked up)",
        ));
    }
    let action = if let Some(route) = r.route {
        if route.is_empty() {
            return Err(sem(at(&["route"]), "`route` needs at least one trunk"));
        }
        for (j, name) in route.iter().enumerate() {
            let p = || {
                let mut p = at(&["route"]);
                p.push(Seg::Index(j));
                p
            };
            if !trunks.contains_key(name) {
                return Err(sem(
                    p(),
                    format!("route names `{name}`, which is not a defined trunk"),
                ));
            }
            if route[..j].contains(name) {
                return Err(sem(
                    p(),
                    format!("trunk `{name}` is listed twice in this route"),
                ));
            }
        }
        Action::Route(cx.route(route))
    } else if let Some(rd) = r.redirect {
        let code = rd.code.unwrap_or(302);
        if !(300..=399).contains(&code) {
            return Err(sem(
                at(&["redirect", "code"]),
                format!("redirect code {code} is not a 3xx"),
            ));
        }
        if rd.contacts.is_empty() {
            return Err(sem(
                at(&["redirect", "contacts"]),
                "a redirect needs at least one contact",
            ));
        }
        for (j, c) in rd.contacts.iter().enumerate() {
            let p = || {
                let mut p = at(&["redirect", "contacts"]);
                p.push(Seg::Index(j));
                p
            };
            check_text(c, p, "a contact")?;
            let lower = c.to_ascii_lowercase();
            if !(lower.starts_with("sip:")
                || lower.starts_with("sips:")
                || lower.starts_with("tel:"))
                || c.contains(char::is_whitespace)
            {
                return Err(sem(
                    p(),
                    format!("contact `{c}` is not a sip:, sips: or tel: URI"),
                ));
            }
        }
        Action::Redirect(rd.contacts, code)
    } else if let Some(rj) = r.reject {
        if !(400..=699).contains(&rj.code) {
            return Err(sem(
                at(&["reject", "code"]),
                format!("reject code {} is not a 4xx, 5xx or 6xx", rj.code),
            ));
        }
        if let Some(s) = &rj.reason {
            check_text(s, || at(&["reject", "reason"]), "a reason phrase")?;
        }
        let reason = rj.reason;
        Action::Reject(rj.code, reason)
    } else if locate {
        Action::Locate
    } else {
        return Err(sem(base(), "rule has no action"));
    };

    Ok(Rule {
        to_user,
        from_user,
        request_uri,
        pai_user,
        diversion_user,
        source_trunk: m.source_trunk,
        source_ip,
        rewrite_to_user,
        rewrite_from_user,
        rewrite_request_uri,
        rewrite_from_display,
        action,
    })
}
