//! The approval page at the edge (`/approve/{link}`): a GET shows the held
//! request, a POST from that page decides it. Everything that decides —
//! the link, the CSRF check, the escaping — is [`crate::approval`]; this
//! file reads the secret, the form and the approvals object.
//!
//! Must never: decide on a GET, or answer a refusal with anything but the
//! plain page (the audit record carries the reason).

use worker::{Env, Headers, Request, Response};

use super::body::read_capped;
use super::config::read_secret;
use super::http::header;
use super::state;
use crate::admit::APPROVALS_OBJECT;
use crate::approval::{self, LinkKey, PostOrigin, CSP, KEY_SECRET};
use crate::audit::AuditRecord;
use crate::error::Error;
use crate::policy::Policy;
use crate::state::approvals::{Decided, Status};
use crate::state::{Command, Reply};

/// Serves the page; every outcome, refusals included, is an HTML page.
pub async fn page(mut req: Request, env: &Env, policy: &Policy, token: &str, audit: &mut AuditRecord, now_s: u64) -> Result<Response, Error> {
    audit.route = "approve";
    let (status, html) = match run(&mut req, env, policy, token, audit, now_s).await {
        Ok(html) => {
            audit.allow(None);
            (200, html)
        }
        Err(e) => {
            audit.fail(&e);
            (e.status(), approval::outcome_page(None, Some(&e)))
        }
    };
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // The link is a capability: it never leaves in a Referer to another
        // site (`no-referrer` would make browsers send `Origin: null` on the
        // page's own POST).
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        let _ = headers.set(name, value);
    }
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(html.into_bytes()))
}

async fn run(req: &mut Request, env: &Env, policy: &Policy, token: &str, audit: &mut AuditRecord, now_s: u64) -> Result<String, Error> {
    let key = read_secret(env, KEY_SECRET)
        .ok()
        .and_then(|k| LinkKey::parse(&String::from_utf8_lossy(k.expose())))
        .ok_or_else(|| Error::Misconfigured("secret AIRLOCK_APPROVAL_KEY is not base64 of 32 bytes".into()))?;
    let link = approval::verify_link(&key, token, now_s)?;
    let id = link.approval_id;
    audit.approval_id = Some(id.clone());
    let unexpected = || Error::StateUnavailable("state object: unexpected answer".into());
    match req.inner().method().as_str() {
        "GET" => {
            let a = match state::call(env, APPROVALS_OBJECT, &Command::Approval { id }).await? {
                Reply::Approval { approval: Some(a) } => a,
                Reply::Approval { approval: None } => return Err(Error::ApprovalLinkInvalid),
                _ => return Err(unexpected()),
            };
            audit.session_id = Some(a.session_id.clone());
            if a.status != Status::Pending {
                return Err(Error::ApprovalDecided { status: a.status.as_str() });
            }
            // The runtime's clock formats the times (ISO 8601, UTC).
            let iso = |s: u64| String::from(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(s as f64 * 1000.0)).to_iso_string());
            Ok(approval::page(&a, &approval::csrf_token(&key, token), [&iso(a.created_at), &iso(a.expires_at)]))
        }
        "POST" => {
            let form = read_capped(req, 4096).await?;
            let url = req.inner().url();
            let own: Vec<&str> =
                [approval::origin_of(&url), policy.approvals.page_url.as_deref().and_then(approval::origin_of)].into_iter().flatten().collect();
            let (origin, fetch_site) = (header(req, "origin"), header(req, "sec-fetch-site"));
            let from = PostOrigin { origin: origin.as_deref(), fetch_site: fetch_site.as_deref(), own: &own };
            let approve = approval::check_decision(&key, token, &form, &from)?;
            // Set by Cloudflare Access when it guards /approve/*.
            let approver = approval::approver(header(req, "cf-access-authenticated-user-email").as_deref());
            audit.approved_by = Some(approver.clone());
            match state::call(env, APPROVALS_OBJECT, &Command::Decide { id, approve, approver }).await? {
                Reply::Decided { decided: Decided::Done(a) } => {
                    audit.session_id = Some(a.session_id.clone());
                    Ok(approval::outcome_page(Some(&a), None))
                }
                Reply::Decided { decided: Decided::AlreadyDecided(a) } => Err(Error::ApprovalDecided { status: a.status.as_str() }),
                Reply::Decided { decided: Decided::NotFound } => Err(Error::ApprovalLinkInvalid),
                _ => Err(unexpected()),
            }
        }
        _ => Err(Error::MethodNotAllowed),
    }
}
