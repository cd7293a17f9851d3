//! The worker's side of upstream credentials Airlock mints
//! ([`crate::upstream`]): before injection, the tool's token comes from
//! this isolate's memory or from its cache object (`Command::Token`), which
//! answers from its sealed cache or mints, one mint at a time
//! (`edge/minter.rs`, in the `airlock-state` script). The request path
//! carries no signing, sealing or token-endpoint code, and never reads the
//! root secret.
//!
//! Must never: log, audit or return in an error a token; forward a request
//! whose credential was not obtained (every failure here is an `Err`, and
//! injection never runs); inject the root secret of a minted kind.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use super::state::{call, Command, Reply};
use crate::audit::AuditRecord;
use crate::authorize::Permit;
use crate::error::Error;
use crate::inject::PreparedCredential;
use crate::secret::Secret;
use crate::state::tokens::Answer;
use crate::upstream::{plan, refresh_at, usable, Scope};

/// What injection reads as the tool's credential.
pub enum Obtained {
    /// The static secrets the credential names, read now (a worker secret
    /// or a Secrets Store binding); a secret that is not set is left out.
    Static(Vec<(String, Rc<PreparedCredential>)>),
    /// The minted token; the root secret is never injected.
    Minted(Rc<PreparedCredential>),
    /// Nothing (a refused MCP message, which reads no credential).
    Nothing,
}

impl Obtained {
    pub fn read(&self, name: &str) -> Option<Rc<PreparedCredential>> {
        match self {
            Obtained::Static(read) => read.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone()),
            Obtained::Minted(prepared) => Some(prepared.clone()),
            Obtained::Nothing => None,
        }
    }
}

/// The static secrets of `permit`'s tool, read before injection.
async fn read_static(env: &Env, permit: &Permit<'_>) -> Obtained {
    let mut read = Vec::new();
    for name in permit.tool().credential.iter().flat_map(|c| c.secret_names()) {
        if let Some(prepared) = super::config::read_credential(env, name).await {
            read.push((name.to_string(), prepared));
        }
    }
    Obtained::Static(read)
}

/// A token this isolate holds: its cache, its renewal and expiry times.
struct Held {
    cache: String,
    prepared: Rc<PreparedCredential>,
    refresh_at: u64,
    expires_at: u64,
}

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}
/// Tokens kept per isolate.
const HELD_MAX: usize = 16;

/// The credential of an authorized request: minted (from this isolate's
/// memory, the cache object, or the token endpoint) for a minted kind, its
/// static secrets otherwise.
pub async fn obtain(env: &Env, permit: &Permit<'_>, audit: &mut AuditRecord, now_s: u64) -> Result<Obtained, Error> {
    let tool = permit.tool();
    let Some(upstream) = tool.credential.as_ref().and_then(|c| c.upstream.as_ref()) else { return Ok(read_static(env, permit).await) };
    let session = permit.session();
    let level = session.level_for(&tool.name).ok_or_else(|| Error::ToolNotAllowed { tool: tool.name.clone() })?;
    let repos = session.repos_for(&tool.name);
    let cache = plan(&tool.name, &upstream.kind, &Scope { level, repos: &repos }).map_err(|e| e.into_error(&tool.name))?.cache;
    audit.minted = Some(upstream.kind.name());

    let held = HELD.with(|h| {
        h.borrow().iter().find(|t| t.cache == cache && now_s < t.refresh_at && usable(now_s, t.expires_at)).map(|t| (t.prepared.clone(), t.expires_at))
    });
    if let Some((prepared, expires_at)) = held {
        audit.minted_from = Some("memory");
        audit.minted_expires_at = Some(expires_at);
        return Ok(Obtained::Minted(prepared));
    }
    // Held open while another mint is in flight: its timeout, then some.
    let wait_s = upstream.timeout_ms.div_ceil(1000) + 5;
    let ask = Command::Token { tool: tool.name.clone(), credential: upstream.raw.clone(), level, repos, wait_s };
    let (token, expires_at, minted) = match call(env, &cache, &ask).await? {
        Reply::Token(Answer::Token { token, expires_at, minted }) => (token, expires_at, minted),
        Reply::Token(Answer::Failed { misconfigured: true, detail }) => return Err(Error::Misconfigured(detail)),
        Reply::Token(Answer::Failed { detail, .. }) => return Err(Error::CredentialUnavailable { detail }),
        _ => return Err(Error::StateUnavailable("token cache: unexpected answer".into())),
    };
    if !usable(now_s, expires_at) {
        return Err(Error::CredentialUnavailable { detail: format!("tool {:?}: the token handed out is about to expire", tool.name) });
    }
    let prepared = Rc::new(PreparedCredential::new(Secret::from_string(token)));
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.retain(|t| t.cache != cache && usable(now_s, t.expires_at));
        if h.len() >= HELD_MAX {
            h.remove(0);
        }
        h.push(Held { cache, prepared: prepared.clone(), refresh_at: refresh_at(now_s, expires_at), expires_at });
    });
    audit.minted_from = Some(if minted { "mint" } else { "cache" });
    audit.minted_expires_at = Some(expires_at);
    Ok(Obtained::Minted(prepared))
}
