//! The control plane at the edge: health, minting sessions, reading,
//! listing and revoking them, reading a session's audit trail, and listing
//! and deciding approvals. Every route but health needs the admin key
//! (compared in constant time).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use worker::{Env, Request, Response};

use super::body::read_capped;
use super::config::{load_keys, load_keys_text, policy_text, random_bytes, read_secret, ADMIN_KEY_SECRET};
use super::http::{header, json_response, to_json};
use super::state;
use crate::admit::{session_object, APPROVALS_OBJECT};
use crate::audit::AuditRecord;
use crate::error::Error;
use crate::hex::hex;
use crate::mint;
use crate::state::approvals::Decided;
use crate::state::sessions_index::INDEX_OBJECT;
use crate::state::{Command, MintCall, Reply};

async fn admin(req: &Request, env: &Env) -> Result<(), Error> {
    let admin_key = read_secret(env, ADMIN_KEY_SECRET).await?;
    mint::check_admin(header(req, "authorization").as_deref(), &admin_key)
}

fn unexpected() -> Error {
    Error::StateUnavailable("state object: unexpected answer".into())
}

pub async fn health(method: &str, env: &Env, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = "health";
    if !matches!(method, "GET" | "HEAD") {
        return Err(Error::MethodNotAllowed);
    }
    load_keys(env).await?;
    audit.allow(None);
    Ok(json_response(200, r#"{"status":"ok"}"#.into()))
}

/// `POST /v1/sessions`: mints a session. The new session's own state
/// object checks the request, signs the token and creates the record
/// ([`crate::mint::serve`]), so no token leaves before its record exists
/// and revocation always finds it; the request path carries none of it.
pub async fn mint_session(mut req: Request, env: &Env, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = "mint";
    if req.inner().method() != "POST" {
        return Err(Error::MethodNotAllowed);
    }
    admin(&req, env).await?;
    let body = read_capped(&mut req, mint::MAX_MINT_BODY).await?;
    let (_, keys) = load_keys_text(env).await?;
    let session_id = hex(&random_bytes::<16>()?);
    let call = MintCall { body: STANDARD.encode(&body), policy: policy_text(env)?, keys, session_id: session_id.clone() };
    let (body, entry) = match state::call(env, &session_object(&session_id), &Command::Mint(call)).await? {
        Reply::Minted { body, agent, user, entry, .. } => {
            audit.session_id = Some(session_id);
            audit.agent = Some(agent);
            audit.user = Some(user);
            (body, entry)
        }
        Reply::Refused(detail) => return Err(Error::InvalidRequest(detail)),
        _ => return Err(unexpected()),
    };
    // Listed before the token leaves: a session minted is listed at once.
    if !matches!(state::call(env, INDEX_OBJECT, &Command::IndexPut(serde_json::Value::String(entry))).await?, Reply::Done) {
        return Err(Error::StateUnavailable("sessions index not written".into()));
    }
    audit.allow(None);
    Ok(json_response(201, body))
}

/// `GET` / `DELETE /v1/sessions/{id}`: inspect or revoke one session;
/// `GET /v1/sessions/{id}/audit` (`trail`): its audit trail and chain head.
pub async fn session(req: &Request, env: &Env, id: &str, trail: bool, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = if trail { "session_audit" } else { "session" };
    audit.session_id = Some(id.to_string());
    admin(req, env).await?;
    let command = match (req.inner().method().as_str(), trail) {
        ("GET", false) => Command::Get,
        ("DELETE", false) => Command::Revoke,
        ("GET", true) => Command::Trail,
        _ => return Err(Error::MethodNotAllowed),
    };
    let revoke = matches!(command, Command::Revoke);
    match state::call(env, &session_object(id), &command).await? {
        Reply::Session { session: Some(view) } => {
            if let (true, Some(revoked_at)) = (revoke, view.revoked_at) {
                let revoked = vec![(view.session_id.clone(), format!("{}:{revoked_at}", view.created_at))];
                if !matches!(state::call(env, INDEX_OBJECT, &Command::IndexRevoked(revoked)).await, Ok(Reply::Done)) {
                    // Revoked where requests look; the listing is stale, so say so and let the caller retry.
                    return Err(Error::StateUnavailable("session revoked; the sessions index was not updated".into()));
                }
            }
            audit.allow(None);
            Ok(json_response(200, to_json(&view)?))
        }
        Reply::Listed(json) if json != "null" => {
            audit.allow(None);
            Ok(json_response(200, json))
        }
        Reply::Session { session: None } | Reply::Listed(_) => Err(Error::SessionNotFound),
        _ => Err(unexpected()),
    }
}

/// `GET /v1/sessions?…`: a page of the sessions index; `DELETE
/// /v1/sessions?agent=NAME`: revoke all of an agent's active sessions (at
/// most 500 a call; `"more": true` says to call again). The state object
/// parses the query and renders the page.
pub async fn sessions(req: &Request, env: &Env, query: &str, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = "sessions";
    admin(req, env).await?;
    let query = query.to_string();
    let command = match req.inner().method().as_str() {
        "GET" => Command::IndexList(query),
        "DELETE" => Command::IndexAgent(query),
        _ => return Err(Error::MethodNotAllowed),
    };
    let body = match state::call(env, INDEX_OBJECT, &command).await? {
        Reply::Listed(json) => json,
        Reply::Agent(agent, sessions, more) => {
            audit.agent = Some(agent);
            revoke_agent(env, &sessions, audit).await?;
            format!(r#"{{"revoked":{},"more":{more}}}"#, sessions.len())
        }
        Reply::Refused(fault) => return Err(Error::InvalidRequest(fault)),
        _ => return Err(unexpected()),
    };
    audit.allow(None);
    Ok(json_response(200, body))
}

/// Each session is revoked in its own object (what requests check), then
/// marked in the index. Fails closed: if any revocation fails the answer is
/// 503, and the audit detail says how many succeeded.
async fn revoke_agent(env: &Env, sessions: &[(String, String)], audit: &mut AuditRecord) -> Result<(), Error> {
    let mut revoked = Vec::new();
    for (id, created_at) in sessions {
        if let Ok(Reply::Session { session }) = state::call(env, &session_object(id), &Command::Revoke).await {
            // No record left: nothing accepts the session any more.
            let at = session.and_then(|v| v.revoked_at).unwrap_or(audit.ts / 1000);
            revoked.push((id.clone(), format!("{created_at}:{at}")));
        }
    }
    let count = revoked.len();
    let indexed = count == 0 || matches!(state::call(env, INDEX_OBJECT, &Command::IndexRevoked(revoked)).await, Ok(Reply::Done));
    let index = if indexed { "" } else { "; the sessions index was not updated" };
    let detail = format!("revoked {count} of {} sessions{index}", sessions.len());
    if count < sessions.len() || !indexed {
        return Err(Error::StateUnavailable(detail));
    }
    audit.detail = Some(detail);
    Ok(())
}

/// `GET /v1/approvals`: every pending approval.
pub async fn approvals(req: &Request, env: &Env, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = "approvals";
    admin(req, env).await?;
    if req.inner().method() != "GET" {
        return Err(Error::MethodNotAllowed);
    }
    match state::call(env, APPROVALS_OBJECT, &Command::Pending).await? {
        Reply::Pending { approvals } => {
            audit.allow(None);
            // Written around the list, not through `json!`: that would serialize
            // every approval into a `Value` first, a second copy of the code.
            Ok(json_response(200, format!("{{\"approvals\":{}}}", to_json(&approvals)?)))
        }
        _ => Err(unexpected()),
    }
}

/// `GET /v1/approvals/{id}`, `POST /v1/approvals/{id}/approve|deny`.
pub async fn approval(mut req: Request, env: &Env, id: &str, action: Option<bool>, audit: &mut AuditRecord) -> Result<Response, Error> {
    audit.route = "approvals";
    audit.approval_id = Some(id.to_string());
    admin(&req, env).await?;
    let command = match (req.inner().method().as_str(), action) {
        ("GET", None) => Command::Approval { id: id.to_string() },
        ("POST", Some(approve)) => {
            let body = read_capped(&mut req, 4096).await?;
            let approver = mint::approver(&body)?;
            audit.approved_by = Some(approver.clone());
            Command::Decide { id: id.to_string(), approve, approver }
        }
        _ => return Err(Error::MethodNotAllowed),
    };
    let approval = match state::call(env, APPROVALS_OBJECT, &command).await? {
        Reply::Approval { approval: Some(a) } | Reply::Decided { decided: Decided::Done(a) } => a,
        Reply::Approval { approval: None } | Reply::Decided { decided: Decided::NotFound } => return Err(Error::ApprovalNotFound),
        Reply::Decided { decided: Decided::AlreadyDecided(a) } => return Err(Error::ApprovalDecided { status: a.status.as_str() }),
        _ => return Err(unexpected()),
    };
    audit.session_id = Some(approval.session_id.clone());
    audit.allow(None);
    Ok(json_response(200, to_json(&approval)?))
}
