//! Authenticate: the session token, wherever the sandbox's client put it,
//! verified (MAC first, in constant time, then claims).
//!
//! Invariants:
//! - A [`VerifiedSession`] exists only for a token that passed every check;
//!   every failure is the same `invalid_session` on the wire, with the
//!   reason in the audit record.
//! - A request carries exactly one token: every place that holds a value
//!   must hold the same one, so two parsers (Airlock's and an origin's)
//!   can never each pick a different credential out of one request.
//! - None of the places is ever forwarded (see [`crate::inject`]).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::audit::AuditRecord;
use crate::error::Error;
use crate::path::form_decode;
pub use crate::policy::TOKEN_HEADERS;
use crate::policy::{is_token_header, Policy, TokenSlots};
use crate::token::{self, joined, KeyRing, TokenError, VerifiedSession};

/// Verifies the session token of a request and names its session, agent
/// and user in the audit record. `slots` are the tool's own extra places.
pub fn authenticate(
    policy: &Policy,
    keys: &KeyRing,
    headers: &[(String, String)],
    query: Option<&str>,
    slots: Option<&TokenSlots>,
    now: u64,
    audit: &mut AuditRecord,
) -> Result<VerifiedSession, Error> {
    let presented = presented(headers, query, slots).map_err(Error::InvalidSession)?;
    let session = token::verify(&presented, keys, &policy.audience, now).map_err(Error::InvalidSession)?;
    audit.session_id = Some(session.claims().sid.clone());
    audit.agent = Some(session.claims().agt.clone());
    audit.user = Some(session.claims().usr.clone());
    Ok(session)
}

/// Whether a raw query pair (`key=value`, still encoded) is a place for
/// the session token: its key as a form decoder reads it is one of
/// `slots`' parameter names.
pub fn is_token_param(pair: &str, slots: Option<&TokenSlots>) -> bool {
    let Some(slots) = slots.filter(|s| !s.query.is_empty()) else {
        return false;
    };
    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
    let key = form_decode(key);
    slots.query.iter().any(|p| p.as_bytes() == &key[..])
}

/// The raw query without the tool's session-token parameters: what is
/// recorded, bound and forwarded. Pairs are split on `;` as well as `&`
/// (as [`presented`] reads them), so a token behind a `;` is removed too
/// rather than reaching an origin that splits on it.
pub fn without_token_params(query: Option<&str>, slots: Option<&TokenSlots>) -> String {
    let query = query.unwrap_or_default();
    if slots.is_none_or(|s| s.query.is_empty()) {
        return query.to_string();
    }
    let kept = query.split('&').filter_map(|pair| {
        let rest: Vec<&str> = pair.split(';').filter(|p| !is_token_param(p, slots)).collect();
        let joined = rest.join(";");
        (!joined.is_empty()).then_some(joined)
    });
    kept.collect::<Vec<_>>().join("&")
}

/// The one session token a request presents, from every place a client
/// may have put it. No place holding a value → `Missing`; a value that is
/// not a token where one is expected → `Malformed`; two different tokens
/// → `Conflicting`.
pub fn presented(headers: &[(String, String)], query: Option<&str>, slots: Option<&TokenSlots>) -> Result<String, TokenError> {
    let mut found: Option<Cow<str>> = None;
    let mut take = |token: Cow<'_, str>| -> Result<(), TokenError> {
        if token.is_empty() || joined(&token) {
            return Err(TokenError::Malformed);
        }
        match &found {
            Some(seen) if seen.as_bytes() != token.as_bytes() => Err(TokenError::Conflicting),
            Some(_) => Ok(()),
            None => {
                found = Some(Cow::Owned(token.into_owned()));
                Ok(())
            }
        }
    };
    for (name, value) in headers {
        if value.is_empty() || !is_token_header(name, slots) {
            continue;
        }
        if name.eq_ignore_ascii_case("authorization") {
            take(from_authorization(value)?)?;
        } else {
            take(Cow::Borrowed(value.as_str()))?;
        }
    }
    if let Some(query) = query {
        for pair in query.split(['&', ';']).filter(|p| is_token_param(p, slots)) {
            let value = pair.split_once('=').map_or("", |(_, v)| v);
            let decoded = String::from_utf8(form_decode(value)).map_err(|_| TokenError::Malformed)?;
            if !decoded.is_empty() {
                take(Cow::Owned(decoded))?;
            }
        }
    }
    found.map(Cow::into_owned).ok_or(TokenError::Missing)
}

/// The token of an `Authorization` value: `Bearer <token>`, `token
/// <token>`, or `Basic base64(<user>:<token>)` — the user name is the
/// token when the password is empty (`https://<token>@host/` in a URL).
fn from_authorization(value: &str) -> Result<Cow<'_, str>, TokenError> {
    let (scheme, rest) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Ok(Cow::Borrowed(rest));
    }
    if !scheme.eq_ignore_ascii_case("basic") || joined(rest) {
        return Err(TokenError::Malformed);
    }
    let decoded = STANDARD.decode(rest).ok().and_then(|d| String::from_utf8(d).ok()).ok_or(TokenError::Malformed)?;
    let (user, password) = decoded.split_once(':').ok_or(TokenError::Malformed)?;
    Ok(Cow::Owned(if password.is_empty() { user } else { password }.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "al1.k1.eyJzaWQiOiJhIn0.mac_A";
    const U: &str = "al1.k1.eyJzaWQiOiJiIn0.mac_B";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn basic(pair: &str) -> String {
        format!("Basic {}", STANDARD.encode(pair))
    }

    fn slots() -> TokenSlots {
        TokenSlots { headers: vec!["x-custom-key".into()], query: vec!["key".into()] }
    }

    #[test]
    fn every_default_place_carries_the_token() {
        let cases: Vec<Vec<(String, String)>> = vec![
            h(&[("Authorization", &format!("Bearer {T}"))]),
            h(&[("authorization", &format!("bearer {T}"))]),
            h(&[("AUTHORIZATION", &format!("BEARER {T}"))]),
            h(&[("authorization", &format!("token {T}"))]),
            h(&[("authorization", &format!("Token {T}"))]),
            h(&[("authorization", &basic(&format!("x-access-token:{T}")))]),
            h(&[("authorization", &basic(&format!(":{T}")))]),
            h(&[("authorization", &basic(&format!("{T}:")))]),
            h(&[("authorization", &basic(&format!("user:{T}")))]),
            h(&[("x-api-key", T)]),
            h(&[("X-Api-Key", T)]),
            h(&[("x-goog-api-key", T)]),
            h(&[("api-key", T)]),
            h(&[("Api-Key", T)]),
        ];
        for headers in cases {
            assert_eq!(presented(&headers, None, None).as_deref(), Ok(T), "{headers:?}");
        }
    }

    #[test]
    fn a_tool_adds_headers_and_query_parameters() {
        let s = slots();
        assert_eq!(presented(&h(&[("x-custom-key", T)]), None, Some(&s)).as_deref(), Ok(T));
        assert_eq!(presented(&h(&[("X-CUSTOM-KEY", T)]), None, Some(&s)).as_deref(), Ok(T));
        assert_eq!(presented(&[], Some(&format!("a=1&key={T}")), Some(&s)).as_deref(), Ok(T));
        // The key as a form decoder reads it.
        assert_eq!(presented(&[], Some(&format!("k%65y={T}")), Some(&s)).as_deref(), Ok(T));
        // Without the tool's slots, neither place is read.
        assert_eq!(presented(&h(&[("x-custom-key", T)]), None, None), Err(TokenError::Missing));
        assert_eq!(presented(&[], Some(&format!("key={T}")), None), Err(TokenError::Missing));
    }

    #[test]
    fn the_same_token_in_two_places_is_one_token() {
        let headers = h(&[("authorization", &format!("Bearer {T}")), ("x-api-key", T)]);
        assert_eq!(presented(&headers, None, None).as_deref(), Ok(T));
        let s = slots();
        assert_eq!(presented(&h(&[("x-api-key", T)]), Some(&format!("key={T}&key={T}")), Some(&s)).as_deref(), Ok(T));
    }

    #[test]
    fn two_tokens_or_unreadable_places_are_refused() {
        let s = slots();
        type Case = (Vec<(String, String)>, Option<String>, TokenError);
        let cases: Vec<Case> = vec![
            (h(&[("authorization", &format!("Bearer {T}")), ("x-api-key", U)]), None, TokenError::Conflicting),
            (h(&[("x-api-key", T), ("x-goog-api-key", U)]), None, TokenError::Conflicting),
            (h(&[("api-key", U), ("authorization", &basic(&format!("x:{T}")))]), None, TokenError::Conflicting),
            (h(&[("x-custom-key", U), ("authorization", &format!("Bearer {T}"))]), None, TokenError::Conflicting),
            (h(&[("x-api-key", T)]), Some(format!("key={U}")), TokenError::Conflicting),
            (vec![], Some(format!("key={T}&key={U}")), TokenError::Conflicting),
            // Two values joined by the platform.
            (h(&[("authorization", &format!("Bearer {T}, Bearer {U}"))]), None, TokenError::Malformed),
            (h(&[("x-api-key", &format!("{T}, {U}"))]), None, TokenError::Malformed),
            (h(&[("authorization", &format!("Bearer {T} {U}"))]), None, TokenError::Malformed),
            // Schemes Airlock does not read are not silently skipped.
            (h(&[("authorization", &format!("Digest {T}"))]), None, TokenError::Malformed),
            (h(&[("authorization", T)]), None, TokenError::Malformed),
            (h(&[("authorization", "Basic !!!")]), None, TokenError::Malformed),
            (h(&[("authorization", &basic("no-colon"))]), None, TokenError::Malformed),
            (h(&[("authorization", "Bearer ")]), None, TokenError::Malformed),
            (vec![], Some("key=%FF".into()), TokenError::Malformed),
            (h(&[("accept", "x")]), None, TokenError::Missing),
            (h(&[("x-api-key", "")]), None, TokenError::Missing),
        ];
        for (headers, query, want) in cases {
            assert_eq!(presented(&headers, query.as_deref(), Some(&s)), Err(want.clone()), "{headers:?} {query:?}");
        }
    }

    #[test]
    fn token_places_are_recognized_in_any_case() {
        for name in ["Authorization", "x-API-key", "X-Goog-Api-Key", "API-KEY"] {
            assert!(is_token_header(name, None), "{name}");
        }
        assert!(!is_token_header("x-api-keys", None));
        let s = slots();
        assert!(is_token_header("X-Custom-Key", Some(&s)));
        assert!(is_token_param("key=abc", Some(&s)));
        assert!(is_token_param("ke%79=abc", Some(&s)));
        assert!(is_token_param("key", Some(&s)));
        assert!(!is_token_param("keys=abc", Some(&s)));
        assert!(!is_token_param("key=abc", None));
    }

    #[test]
    fn token_parameters_are_removed_from_the_query_in_every_split() {
        let s = slots();
        let cases = [
            ("a=1&key=T&b=2", "a=1&b=2"),
            ("key=T", ""),
            ("a=1;key=T&b=2", "a=1&b=2"),
            ("a=1;key=T;c=3", "a=1;c=3"),
            ("k%65y=T&b=2", "b=2"),
            ("keys=1&b=2", "keys=1&b=2"),
            ("", ""),
        ];
        for (query, want) in cases {
            assert_eq!(without_token_params(Some(query), Some(&s)), want, "{query}");
        }
        assert_eq!(without_token_params(Some("key=T"), None), "key=T");
        // A token behind a `;` is read, so it conflicts like any other.
        assert_eq!(presented(&[], Some(&format!("a=1;key={T}")), Some(&s)).as_deref(), Ok(T));
        assert_eq!(presented(&[], Some(&format!("a=1;key={T}&key={U}")), Some(&s)), Err(TokenError::Conflicting));
    }
}
