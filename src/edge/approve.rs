//! The approval page at the edge (`/approve/{link}`): a GET shows the held
//! request, a POST from that page decides it. The approvals object serves
//! it ([`crate::approval::serve`]: the link, the CSRF check, the escaping,
//! the decision); this file reads the form, the headers and the link key,
//! and answers with the page and its headers.
//!
//! Must never: decide on a GET, or answer a refusal with anything but the
//! plain page (the audit record carries the reason).

use worker::{Env, Headers, Request, Response};

use super::body::read_capped;
use super::config::worker_secret;
use super::http::header;
use super::state;
use crate::admit::APPROVALS_OBJECT;
use crate::approval::{origin_of, PageRequest, CSP, KEY_SECRET, MAX_FORM};
use crate::audit::{AuditRecord, Decision};
use crate::policy::Policy;
use crate::state::{Command, Reply};

/// The page when the approvals object could not answer.
const UNAVAILABLE: &str = "<!doctype html><html lang=en><head><meta charset=utf-8><title>Airlock: Not available</title></head>\
                           <body><h1>Not available</h1><p id=outcome>Try again later. Nothing changed.</p></body></html>";

/// The codes a page can be refused with, as the audit record spells them.
const REASONS: &[&str] = &[
    "approval_decided",
    "approval_link_invalid",
    "approval_link_expired",
    "approval_csrf_failed",
    "invalid_request",
    "method_not_allowed",
    "state_unavailable",
    "misconfigured",
];

/// Serves the page; every outcome, refusals included, is an HTML page.
pub async fn page(mut req: Request, env: &Env, policy: &Policy, token: &str, audit: &mut AuditRecord) -> Response {
    audit.route = "approve";
    let method = req.inner().method();
    let form = match method.as_str() {
        "POST" => read_capped(&mut req, MAX_FORM).await.ok().map(|b| String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    };
    let url = req.inner().url();
    let own = [origin_of(&url), policy.approvals.page_url.as_deref().and_then(origin_of)].into_iter().flatten().map(String::from).collect();
    let request = PageRequest {
        token: token.to_string(),
        method,
        form,
        origin: header(&req, "origin"),
        fetch_site: header(&req, "sec-fetch-site"),
        own,
        access_email: header(&req, "cf-access-authenticated-user-email"),
        key: worker_secret(env, KEY_SECRET).map(|k| String::from_utf8_lossy(k.expose()).into_owned()),
    };
    let (status, html) = match state::call(env, APPROVALS_OBJECT, &Command::Page(request)).await {
        Ok(Reply::Page(answer)) => {
            audit.approval_id = answer.approval_id;
            audit.session_id = answer.session_id;
            audit.approved_by = answer.approved_by;
            match answer.code {
                None => audit.allow(None),
                Some(code) => {
                    audit.decision = if answer.status >= 500 { Decision::Error } else { Decision::Deny };
                    audit.reason = REASONS.iter().find(|r| **r == code).copied().unwrap_or("internal");
                    audit.detail = answer.detail;
                }
            }
            (answer.status, answer.html)
        }
        Ok(_) => {
            audit.fail(&crate::error::Error::StateUnavailable("state object: unexpected answer".into()));
            (503, UNAVAILABLE.to_string())
        }
        Err(e) => {
            audit.fail(&e);
            (503, UNAVAILABLE.to_string())
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
    Response::builder().with_status(status).with_headers(headers).fixed(html.into_bytes())
}
