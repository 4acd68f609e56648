//! `admin:`: the operator's API on the metrics listener (`GET /calls`, `DELETE /calls/{id}`,
//! `GET /registrations`, `GET /trunks`, `POST /reload`, `POST /drain`; `trunkline ctl`).
//!
//! ```yaml
//! admin:
//!   token_file: /etc/trunkline/admin.token   # the bearer token every admin request needs
//! ```
//! The file is read by the server at start and at every reload (a token is not written into
//! the YAML); without a token the admin endpoints answer on a loopback listener only.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{key, sem, Sem};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub token_file: PathBuf,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    token_file: String,
}

pub(crate) fn build_admin(raw: RawAdmin) -> Result<Admin, Sem> {
    if raw.token_file.trim().is_empty() {
        return Err(sem(
            vec![key("admin"), key("token_file")],
            "token_file: the path of a file holding the admin token",
        ));
    }
    Ok(Admin {
        token_file: PathBuf::from(raw.token_file.trim()),
    })
}

/// The token in `text` (a token file's content): trimmed, at least 16 printable characters
/// without spaces.
pub fn parse_token(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the admin token must be at least 16 printable characters, no spaces".into());
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_token;

    #[test]
    fn tokens_are_trimmed_and_checked() {
        assert_eq!(
            parse_token("  abcdefghijklmnop\n").unwrap(),
            "abcdefghijklmnop"
        );
        assert!(parse_token("short").is_err());
        assert!(parse_token("abcdefgh ijklmnopq").is_err());
    }
}
