//! Upstream credentials Airlock mints itself: GitHub App installation
//! tokens narrowed to the session, OAuth 2.0 client credentials, rotating
//! OAuth refresh tokens and Google service-account tokens.
//!
//! The broker holds the long-lived root (an App key, a client secret, a
//! refresh token, a service-account key) as a platform secret and puts only
//! a short-lived derivative on each request. Everything that decides lives
//! here and is tested natively: the policy's description of each kind, the
//! token request each kind sends ([`github`], [`oauth`], the JWTs of
//! [`jwt`]), the reading of the token endpoint's answer, the cache's name
//! and expiry arithmetic, and the key that seals cached tokens. The edge
//! (`edge/upstream.rs`) only signs with WebCrypto, seals with AES-GCM,
//! fetches and talks to the cache object (`state::tokens`).
//!
//! Invariants:
//! - A token endpoint's answer becomes a token only if it is exactly what
//!   the kind expects (a non-empty token of header-safe characters, a
//!   lifetime); anything else is [`MintError::Garbage`], and the request is
//!   refused with nothing forwarded.
//! - A GitHub token is never broader than the session: the request names
//!   the session's repositories and the permissions of its level, and an
//!   answer granting more than was asked is refused.
//! - Must never: log, return in an error, or store unsealed a token, a
//!   refresh token or a root secret. Errors carry names and statuses only.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::hex::hex;
use crate::level::Level;

pub mod github;
pub mod jwt;
pub mod oauth;

/// How long a token endpoint may take by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// A cached token is renewed this long before the upstream's expiry, or at
/// a quarter of its lifetime for short-lived tokens, whichever is shorter.
pub const REFRESH_BEFORE_S: u64 = 300;
/// A token whose remaining lifetime is below this is never handed out
/// (a request could start with it and arrive after it expired).
pub const MIN_REMAINING_S: u64 = 10;
/// Lifetime assumed when an OAuth server omits `expires_in`.
pub const DEFAULT_LIFETIME_S: u64 = 3_600;
/// The longest lifetime believed; a token claiming longer is cached for this.
pub const MAX_LIFETIME_S: u64 = 86_400;

/// A minted credential kind, as the policy's `credential.kind` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    GithubApp(github::App),
    OauthClient(oauth::Client),
    OauthRefresh(oauth::Client),
    GoogleServiceAccount(oauth::Google),
}

/// The policy's `credential` for a minted kind: the kind and how long its
/// token endpoint may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub kind: Kind,
    pub timeout_ms: u64,
    /// The policy's JSON of the whole credential, as the worker sends it
    /// to the cache object, which reads it again with the same reader.
    pub raw: String,
}

impl Kind {
    /// The name in the policy and in audit records.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::GithubApp(_) => "github_app",
            Kind::OauthClient(_) => "oauth_client_credentials",
            Kind::OauthRefresh(_) => "oauth_refresh_token",
            Kind::GoogleServiceAccount(_) => "google_service_account",
        }
    }
}

/// What a session asks of a minted credential: its level for the tool and,
/// for GitHub, the repositories it was minted for (empty: all of the
/// installation's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope<'a> {
    pub level: Level,
    pub repos: &'a [String],
}

/// The request a mint sends, with the name of the cache it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The cache object's name: one per (tool, kind's identity, narrowed
    /// scope), so sessions with the same scope share a token and sessions
    /// with different scopes never do.
    pub cache: String,
    /// GitHub only: the JSON body of the access-token request.
    pub body: Option<String>,
}

/// Plans the mint for `tool` under `kind` and the session's `scope`.
pub fn plan(tool: &str, kind: &Kind, scope: &Scope<'_>) -> Result<Plan, MintError> {
    let (identity, body) = match kind {
        Kind::GithubApp(app) => {
            let body = github::request_body(app, scope)?;
            (format!("{}|{}|{}", app.app_id, app.installation_id, app.api), Some(body))
        }
        Kind::OauthClient(c) | Kind::OauthRefresh(c) => (format!("{}|{}|{}|{}", c.token_url, c.client_id, c.scope, c.audience), None),
        Kind::GoogleServiceAccount(g) => (format!("{}|{}", g.token_url.as_deref().unwrap_or_default(), g.scopes.join(" ")), None),
    };
    let mut h = Sha256::new();
    for part in [tool, kind.name(), &identity, body.as_deref().unwrap_or_default()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    Ok(Plan { cache: format!("cred:{}", hex(&h.finalize()[..16])), body })
}

/// A token the endpoint handed out.
pub struct Token {
    pub value: crate::secret::Secret,
    /// Unix seconds at which the upstream stops accepting it.
    pub expires_at: u64,
    /// A rotated refresh token to keep for the next refresh.
    pub refresh: Option<crate::secret::Secret>,
}

/// When a token that expires at `expires_at`, minted at `now`, is renewed:
/// [`REFRESH_BEFORE_S`] before expiry, or after three quarters of its
/// lifetime when it is short.
pub fn refresh_at(now: u64, expires_at: u64) -> u64 {
    let life = expires_at.saturating_sub(now);
    expires_at.saturating_sub(REFRESH_BEFORE_S.min(life / 4))
}

/// Whether a cached token may still be put on a request at `now`.
pub fn usable(now: u64, expires_at: u64) -> bool {
    now.saturating_add(MIN_REMAINING_S) < expires_at
}

/// Why no token was obtained. Carries statuses and Airlock's own words,
/// never the endpoint's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintError {
    /// The root secret is missing, or is not a key of the expected shape.
    Misconfigured(String),
    /// The session asks for a scope the credential cannot narrow to.
    Scope(String),
    /// The endpoint could not be reached or did not answer in time.
    Unreachable(String),
    /// The endpoint refused: its status and OAuth `error` code, if any.
    Refused { status: u16, error: Option<String> },
    /// An answer that is not a token of the expected shape.
    Garbage(&'static str),
    /// Another mint held the lease for longer than the wait.
    Busy,
}

impl MintError {
    /// The broker's error for this failure: the root's fault is
    /// `misconfigured`; the endpoint's is `credential_unavailable`.
    pub fn into_error(self, tool: &str) -> crate::error::Error {
        use crate::error::Error;
        match self {
            MintError::Misconfigured(why) => Error::Misconfigured(format!("credential of tool {tool:?}: {why}")),
            MintError::Scope(why) => Error::Misconfigured(format!("credential of tool {tool:?}: {why}")),
            MintError::Unreachable(why) => Error::CredentialUnavailable { detail: format!("tool {tool:?}: token endpoint {why}") },
            MintError::Refused { status, error } => Error::CredentialUnavailable {
                detail: format!("tool {tool:?}: token endpoint answered {status}{}", error.map(|e| format!(" ({e})")).unwrap_or_default()),
            },
            MintError::Garbage(what) => Error::CredentialUnavailable { detail: format!("tool {tool:?}: token endpoint answer refused: {what}") },
            MintError::Busy => Error::CredentialUnavailable { detail: format!("tool {tool:?}: another mint is still in flight") },
        }
    }
}

/// Checks the shape of a root secret before it is deployed (`airlock
/// policy check` with the secret in its environment): an App key must be a
/// PEM RSA private key, a service-account key file must hold one. The
/// error names what is wrong, never the value.
pub fn check_root(kind: &Kind, value: &[u8]) -> Result<(), String> {
    let pem = |bytes: &[u8]| -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        jwt::private_key_pkcs8(text).map(drop).map_err(|e| e.0.to_string())
    };
    match kind {
        Kind::GithubApp(_) => pem(value),
        Kind::GoogleServiceAccount(_) => {
            let sa = oauth::service_account(value).map_err(|e| format!("{e:?}"))?;
            pem(sa.private_key.expose())
        }
        Kind::OauthClient(_) | Kind::OauthRefresh(_) if value.is_empty() => Err("empty".into()),
        Kind::OauthClient(_) | Kind::OauthRefresh(_) => Ok(()),
    }
}

/// Whether `value` may be put in a header as it is: a token of visible
/// ASCII, at most 8 KiB (an origin reflecting a huge or multi-line "token"
/// would otherwise be a header-injection channel).
pub(crate) fn token_text_ok(value: &str) -> bool {
    !value.is_empty() && value.len() <= 8192 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The 32-byte key that seals this cache's entries (AES-256-GCM, run by
/// the edge with WebCrypto): an HMAC of the cache name keyed by the root
/// secret. Whoever reads the cache object's storage without the root
/// secret reads nothing; whoever holds the root secret can mint anyway. A
/// rotated root secret cannot open the old entries, which then count as
/// missing (a rotated refresh-token root starts a new chain).
pub fn seal_key(root: &[u8], cache: &str) -> Option<[u8; 32]> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(root).ok()?;
    mac.update(b"airlock upstream cache v1\0");
    mac.update(cache.as_bytes());
    Some(mac.finalize().into_bytes().into())
}

/// A map of permission names to `"read"`/`"write"`, as GitHub takes it (a
/// JSON map: the request path already carries its code).
pub type Permissions = serde_json::Map<String, serde_json::Value>;

#[cfg(test)]
mod tests;
