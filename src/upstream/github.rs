//! GitHub App installation tokens, narrowed to the session.
//!
//! The access-token request (`POST /app/installations/{id}/access_tokens`)
//! names the session's repositories and the permissions of its level, so
//! the token GitHub hands out can do no more than the session may: a token
//! minted for `acme/app` cannot reach `acme/other`, whatever the rules say.
//!
//! Invariants:
//! - Repositories are `owner/name` with the installation's owner; another
//!   owner's repository is refused at mint (the installation could hold a
//!   repository of the same name).
//! - An answer whose permissions exceed what was asked is refused.

use serde_json::Value;

use super::{token_text_ok, MintError, Permissions, Scope};
use crate::level::Level;

/// The policy's `github_app` credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub app_id: String,
    pub installation_id: u64,
    /// The account the installation belongs to (case-insensitive).
    pub owner: String,
    /// The API base URL (`https://api.github.com`, or GitHub Enterprise's).
    pub api: String,
    /// Permissions per level: read, write, admin.
    pub permissions: [Permissions; 3],
}

/// Permissions a level implies when the policy lists none.
pub fn default_permissions(level: Level) -> Permissions {
    let write = if level == Level::Read { "read" } else { "write" };
    let mut p = Permissions::new();
    for (k, v) in [("contents", write), ("issues", write), ("pull_requests", write), ("metadata", "read")] {
        p.insert(k.into(), v.into());
    }
    p
}

pub fn level_index(level: Level) -> usize {
    match level {
        Level::Read => 0,
        Level::Write => 1,
        Level::Admin => 2,
    }
}

/// A permission name GitHub could know: `[a-z_]`, 1-64.
pub fn permission_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// An `owner/name` repository as GitHub spells them: 1-100 of
/// `[A-Za-z0-9._-]` each, not `.` or `..`.
pub fn repo_ok(repo: &str) -> bool {
    let part = |s: &str| !s.is_empty() && s.len() <= 100 && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    matches!(repo.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// The access-token request body for `scope`.
pub fn request_body(app: &App, scope: &Scope<'_>) -> Result<String, MintError> {
    // Sorted and without duplicates, so one scope has one spelling.
    let mut names: Vec<String> = Vec::with_capacity(scope.repos.len());
    for repo in scope.repos {
        match repo.split_once('/') {
            Some((owner, name)) if repo_ok(repo) && owner.eq_ignore_ascii_case(&app.owner) => {
                let name = name.to_ascii_lowercase();
                if let Err(at) = names.binary_search(&name) {
                    names.insert(at, name);
                }
            }
            _ => return Err(MintError::Scope(format!("repository {repo:?} is not a repository of {}", app.owner))),
        }
    }
    let mut body = serde_json::Map::new();
    if !names.is_empty() {
        body.insert("repositories".into(), Value::from(names));
    }
    body.insert("permissions".into(), Value::Object(app.permissions[level_index(scope.level)].clone()));
    Ok(Value::Object(body).to_string())
}

/// The access-token answer (`201`): the token and its expiry, refused if
/// it grants a permission that was not asked, or more than asked.
pub fn read_answer(status: u16, body: &[u8], asked: &Permissions) -> Result<super::Token, MintError> {
    if status != 201 && status != 200 {
        return Err(MintError::Refused { status, error: None });
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| MintError::Garbage("not JSON"))?;
    let token = value.get("token").and_then(Value::as_str).filter(|t| token_text_ok(t)).ok_or(MintError::Garbage("no token"))?;
    let expires_at = value.get("expires_at").and_then(Value::as_str).and_then(rfc3339_seconds).ok_or(MintError::Garbage("no expires_at"))?;
    if let Some(granted) = value.get("permissions").and_then(Value::as_object) {
        for (name, access) in granted {
            let ok =
                matches!((asked.get(name).and_then(Value::as_str), access.as_str()), (Some("write"), Some("read" | "write")) | (Some("read"), Some("read")));
            if !ok {
                return Err(MintError::Garbage("token grants more than was asked"));
            }
        }
    }
    Ok(super::Token { value: crate::secret::Secret::new(token.as_bytes().to_vec()), expires_at, refresh: None })
}

/// `YYYY-MM-DDTHH:MM:SSZ` (GitHub's `expires_at`; fractions and offsets
/// other than `Z` are refused) as unix seconds.
pub fn rfc3339_seconds(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse::<u64>().ok() };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        let perms = [default_permissions(Level::Read), default_permissions(Level::Write), default_permissions(Level::Write)];
        App { app_id: "42".into(), installation_id: 7, owner: "Acme".into(), api: "https://api.github.com".into(), permissions: perms }
    }

    #[test]
    fn narrows_to_the_sessions_repositories_and_level() {
        let repos = vec!["acme/App".to_string(), "ACME/lib".into(), "acme/app".into()];
        let body = request_body(&app(), &Scope { level: Level::Read, repos: &repos }).unwrap();
        assert_eq!(body, r#"{"permissions":{"contents":"read","issues":"read","metadata":"read","pull_requests":"read"},"repositories":["app","lib"]}"#);
        let body = request_body(&app(), &Scope { level: Level::Write, repos: &[] }).unwrap();
        assert_eq!(body, r#"{"permissions":{"contents":"write","issues":"write","metadata":"read","pull_requests":"write"}}"#);
    }

    #[test]
    fn refuses_repositories_it_cannot_narrow_to() {
        for bad in ["other/app", "acme", "acme/", "/app", "acme/a/b", "acme/..", "acme/a b", "acme/app\"}"] {
            let repos = vec![bad.to_string()];
            assert!(matches!(request_body(&app(), &Scope { level: Level::Read, repos: &repos }), Err(MintError::Scope(_))), "{bad}");
        }
    }

    #[test]
    fn reads_the_answer_and_refuses_broader_grants() {
        let asked = default_permissions(Level::Read);
        let ok = br#"{"token":"ghs_abc","expires_at":"2026-12-07T05:00:00Z","permissions":{"contents":"read","metadata":"read"}}"#;
        let t = read_answer(201, ok, &asked).unwrap();
        assert_eq!((t.value.expose(), t.expires_at), (&b"ghs_abc"[..], 1_796_619_600));
        let table: &[(&str, u16, &[u8])] = &[
            ("refused", 401, br#"{"message":"Bad credentials"}"#),
            ("garbage", 201, b"<html>"),
            ("no token", 201, br#"{"expires_at":"2026-12-07T05:00:00Z"}"#),
            ("empty token", 201, br#"{"token":"","expires_at":"2026-12-07T05:00:00Z"}"#),
            ("token with a newline", 201, br#"{"token":"a\nb","expires_at":"2026-12-07T05:00:00Z"}"#),
            ("bad expiry", 201, br#"{"token":"t","expires_at":"tomorrow"}"#),
            ("broader", 201, br#"{"token":"t","expires_at":"2026-12-07T05:00:00Z","permissions":{"contents":"write"}}"#),
            ("unasked", 201, br#"{"token":"t","expires_at":"2026-12-07T05:00:00Z","permissions":{"administration":"read"}}"#),
        ];
        for (what, status, body) in table {
            assert!(read_answer(*status, body, &asked).is_err(), "{what}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(rfc3339_seconds("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        for bad in ["", "2024-02-29 23:59:59Z", "2024-02-29T23:59:59+01:00", "2024-13-01T00:00:00Z", "1969-12-31T23:59:59Z", "2024-02-29T23:59:59.5Z"] {
            assert_eq!(rfc3339_seconds(bad), None, "{bad}");
        }
    }
}
