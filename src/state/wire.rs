//! The worker's reading of a state object's [`Reply`]: the same JSON the
//! derived `Serialize` writes, read from a `serde_json::Value` field by
//! field. The derived `Deserialize` of every reply type would cost the
//! request-path Wasm about 18 KB; this reader a few. Anything that is not
//! exactly a reply is `None`, which the caller treats as a state fault
//! (fail closed).
//!
//! The tests write every variant with the derived `Serialize` and read it
//! back here, so a change to a reply type that this reader misses fails.

use serde_json::{Map, Value};

use super::approvals::{self, Approval, Decided, PageAnswer, Status};
use super::session::{IdemBegin, Refusal, SessionView, StoredAnswer, Usage};
use super::tokens::Answer;
use super::Reply;
use crate::level::Level;

/// Reads a reply from the bytes a state object answered.
pub fn decode_reply(bytes: &[u8]) -> Option<Reply> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    reply(&value)
}

fn reply(value: &Value) -> Option<Reply> {
    if let Some(unit) = value.as_str() {
        return match unit {
            "done" => Some(Reply::Done),
            "failed" => Some(Reply::Failed),
            _ => None,
        };
    }
    let (tag, inner) = single(value)?;
    Some(match tag {
        "minted" => Reply::Minted {
            body: text(field(inner, "body")?)?,
            agent: text(field(inner, "agent")?)?,
            user: text(field(inner, "user")?)?,
            expires_at: field(inner, "expires_at")?.as_u64()?,
            entry: text(field(inner, "entry")?)?,
        },
        "created" => Reply::Created { created: field(inner, "created")?.as_bool()? },
        "session" => Reply::Session { session: optional(field(inner, "session")?, session_view)? },
        "admitted" => Reply::Admitted { refusal: optional(field(inner, "refusal")?, refusal)?, trail: field(inner, "trail").and_then(Value::as_bool) },
        "idem" => Reply::Idem { outcome: idem(field(inner, "outcome")?)? },
        "approval" => Reply::Approval { approval: optional(field(inner, "approval")?, approval)? },
        "consumed" => Reply::Consumed { result: consumed(field(inner, "result")?)? },
        "pending" => Reply::Pending { approvals: field(inner, "approvals")?.as_array()?.iter().map(approval).collect::<Option<_>>()? },
        "decided" => Reply::Decided { decided: decided(field(inner, "decided")?)? },
        "listed" => Reply::Listed(inner.as_str()?.to_string()),
        "refused" => Reply::Refused(inner.as_str()?.to_string()),
        "agent" => {
            let parts = inner.as_array()?;
            let [name, sessions, more] = parts.as_slice() else { return None };
            let sessions = sessions.as_array()?.iter().map(|pair| Some((text(pair.get(0)?)?, text(pair.get(1)?)?))).collect::<Option<_>>()?;
            Reply::Agent(text(name)?, sessions, more.as_bool()?)
        }
        "token" => Reply::Token(answer(inner)?),
        "page" => Reply::Page(page(inner)?),
        _ => return None,
    })
}

fn page(value: &Value) -> Option<PageAnswer> {
    let map = value.as_object()?;
    let opt = |name: &str| optional(map.get(name)?, text);
    Some(PageAnswer {
        status: u16::try_from(number(map, "status")?).ok()?,
        html: text(map.get("html")?)?,
        code: opt("code")?,
        detail: opt("detail")?,
        approval_id: opt("approval_id")?,
        session_id: opt("session_id")?,
        approved_by: opt("approved_by")?,
        decided: map.get("decided")?.as_bool()?,
    })
}

/// An externally tagged value: an object with exactly one key.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    let mut entries = map.iter();
    let (tag, inner) = entries.next()?;
    entries.next().is_none().then_some((tag.as_str(), inner))
}

fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_object()?.get(name)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn number(map: &Map<String, Value>, name: &str) -> Option<u64> {
    map.get(name)?.as_u64()
}

/// `null` is `Some(None)`; anything else is read by `read`.
fn optional<T>(value: &Value, read: impl Fn(&Value) -> Option<T>) -> Option<Option<T>> {
    if value.is_null() {
        Some(None)
    } else {
        read(value).map(Some)
    }
}

fn optional_number(map: &Map<String, Value>, name: &str) -> Option<Option<u64>> {
    optional(map.get(name)?, Value::as_u64)
}

fn level(value: &Value) -> Option<Level> {
    crate::json::level(value, String::new()).ok()
}

fn session_view(value: &Value) -> Option<SessionView> {
    let m = value.as_object()?;
    let s = |name| m.get(name).and_then(text);
    let usage = m.get("usage")?.as_object()?;
    Some(SessionView {
        session_id: s("session_id")?,
        status: s("status")?,
        agent: s("agent")?,
        user: s("user")?,
        tools: m.get("tools")?.as_object()?.iter().map(|(k, v)| Some((k.clone(), level(v)?))).collect::<Option<_>>()?,
        egress: m.get("egress")?.as_bool()?,
        created_at: number(m, "created_at")?,
        expires_at: number(m, "expires_at")?,
        revoked_at: optional_number(m, "revoked_at")?,
        usage: Usage {
            requests: number(usage, "requests")?,
            denied: number(usage, "denied")?,
            rate_limited: number(usage, "rate_limited")?,
            last_seen_at: optional_number(usage, "last_seen_at")?,
        },
    })
}

fn refusal(value: &Value) -> Option<Refusal> {
    match value.as_str() {
        Some("revoked") => return Some(Refusal::Revoked),
        Some("expired") => return Some(Refusal::Expired),
        Some("proof_stale") => return Some(Refusal::ProofStale),
        Some("proof_replayed") => return Some(Refusal::ProofReplayed),
        Some(_) => return None,
        None => {}
    }
    let ("rate_limited", inner) = single(value)? else { return None };
    Some(Refusal::RateLimited { tool: field(inner, "tool")?.as_bool()?, retry_after_s: field(inner, "retry_after_s")?.as_u64()? })
}

fn idem(value: &Value) -> Option<IdemBegin> {
    match value.as_str() {
        Some("fresh") => return Some(IdemBegin::Fresh),
        Some("mismatch") => return Some(IdemBegin::Mismatch),
        Some("in_flight") => return Some(IdemBegin::InFlight),
        Some(_) => return None,
        None => {}
    }
    let ("replay", answer) = single(value)? else { return None };
    let m = answer.as_object()?;
    let headers = m.get("headers")?.as_array()?.iter().map(|pair| Some((text(pair.get(0)?)?, text(pair.get(1)?)?))).collect::<Option<_>>()?;
    Some(IdemBegin::Replay(StoredAnswer { status: u16::try_from(number(m, "status")?).ok()?, headers, body: optional(m.get("body")?, text)? }))
}

fn answer(value: &Value) -> Option<Answer> {
    match single(value)? {
        ("token", t) => {
            Some(Answer::Token { token: text(field(t, "token")?)?, expires_at: field(t, "expires_at")?.as_u64()?, minted: field(t, "minted")?.as_bool()? })
        }
        ("failed", f) => Some(Answer::Failed { misconfigured: field(f, "misconfigured")?.as_bool()?, detail: text(field(f, "detail")?)? }),
        _ => None,
    }
}

fn status(value: &Value) -> Option<Status> {
    Some(match value.as_str()? {
        "pending" => Status::Pending,
        "approved" => Status::Approved,
        "denied" => Status::Denied,
        "used" => Status::Used,
        "expired" => Status::Expired,
        _ => return None,
    })
}

fn approval(value: &Value) -> Option<Approval> {
    let m = value.as_object()?;
    let s = |name| m.get(name).and_then(text);
    // Fields written only when set are absent otherwise.
    let absent_or = |name: &str| m.get(name).filter(|v| !v.is_null());
    Some(Approval {
        approval_id: s("approval_id")?,
        status: status(m.get("status")?)?,
        session_id: s("session_id")?,
        agent: s("agent")?,
        user: s("user")?,
        tool: s("tool")?,
        method: s("method")?,
        path: s("path")?,
        query: s("query")?,
        body_sha256: s("body_sha256")?,
        digest: s("digest")?,
        created_at: number(m, "created_at")?,
        expires_at: number(m, "expires_at")?,
        decided_by: optional(m.get("decided_by")?, text)?,
        decided_at: optional_number(m, "decided_at")?,
        body: match absent_or("body") {
            None => None,
            Some(v) => Some(text(v)?),
        },
        body_truncated: match absent_or("body_truncated") {
            None => false,
            Some(v) => v.as_bool()?,
        },
        webhook: match absent_or("webhook") {
            None => None,
            Some(v) => Some(text(v)?),
        },
    })
}

fn consumed(value: &Value) -> Option<Result<String, approvals::Refusal>> {
    match single(value)? {
        ("Ok", approver) => Some(Ok(text(approver)?)),
        ("Err", why) => Some(Err(match why.as_str()? {
            "pending" => approvals::Refusal::Pending,
            "denied" => approvals::Refusal::Denied,
            "invalid" => approvals::Refusal::Invalid,
            _ => return None,
        })),
        _ => None,
    }
}

fn decided(value: &Value) -> Option<Decided> {
    if value.as_str() == Some("not_found") {
        return Some(Decided::NotFound);
    }
    match single(value)? {
        ("done", a) => Some(Decided::Done(approval(a)?)),
        ("already_decided", a) => Some(Decided::AlreadyDecided(approval(a)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_approval(status: Status, extras: bool) -> Approval {
        Approval {
            approval_id: "ap_1".into(),
            status,
            session_id: "s1".into(),
            agent: "agent".into(),
            user: "user".into(),
            tool: "echo".into(),
            method: "DELETE".into(),
            path: "/items/1".into(),
            query: "a=1".into(),
            body_sha256: "e3b0".into(),
            digest: "d1".into(),
            created_at: 10,
            expires_at: 20,
            decided_by: extras.then(|| "alice".to_string()),
            decided_at: extras.then_some(15),
            body: extras.then(|| "{\"x\":\"<script>\"}".to_string()),
            body_truncated: extras,
            webhook: extras.then(|| "delivered".to_string()),
        }
    }

    fn view(revoked: bool) -> SessionView {
        SessionView {
            session_id: "s1".into(),
            status: if revoked { "revoked" } else { "active" }.into(),
            agent: "a".into(),
            user: "u".into(),
            tools: [("echo".to_string(), Level::Write), ("docs".to_string(), Level::Read)].into_iter().collect(),
            egress: revoked,
            created_at: 1,
            expires_at: 2,
            revoked_at: revoked.then_some(2),
            usage: Usage { requests: 3, denied: 1, rate_limited: 0, last_seen_at: revoked.then_some(2) },
        }
    }

    /// Every variant (and every shape inside one) as the state object
    /// writes it, read back exactly.
    #[test]
    fn every_reply_the_state_writes_is_read_back() {
        let replies = vec![
            Reply::Minted { body: "{\"token\":\"t\"}".into(), agent: "a".into(), user: "u".into(), expires_at: 7, entry: "{}".into() },
            Reply::Created { created: true },
            Reply::Session { session: None },
            Reply::Session { session: Some(view(false)) },
            Reply::Session { session: Some(view(true)) },
            Reply::Admitted { refusal: None, trail: None },
            Reply::Admitted { refusal: None, trail: Some(true) },
            Reply::Admitted { refusal: Some(Refusal::Revoked), trail: Some(false) },
            Reply::Admitted { refusal: Some(Refusal::Revoked), trail: None },
            Reply::Admitted { refusal: Some(Refusal::Expired), trail: None },
            Reply::Admitted { refusal: Some(Refusal::ProofStale), trail: None },
            Reply::Admitted { refusal: Some(Refusal::ProofReplayed), trail: None },
            Reply::Admitted { refusal: Some(Refusal::RateLimited { tool: true, retry_after_s: 7 }), trail: None },
            Reply::Idem { outcome: IdemBegin::Fresh },
            Reply::Idem { outcome: IdemBegin::Mismatch },
            Reply::Idem { outcome: IdemBegin::InFlight },
            Reply::Idem {
                outcome: IdemBegin::Replay(StoredAnswer {
                    status: 201,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Some("e30=".into()),
                }),
            },
            Reply::Idem { outcome: IdemBegin::Replay(StoredAnswer { status: 204, headers: vec![], body: None }) },
            Reply::Done,
            Reply::Approval { approval: None },
            Reply::Approval { approval: Some(sample_approval(Status::Pending, false)) },
            Reply::Approval { approval: Some(sample_approval(Status::Approved, true)) },
            Reply::Consumed { result: Ok("alice".into()) },
            Reply::Consumed { result: Err(approvals::Refusal::Pending) },
            Reply::Consumed { result: Err(approvals::Refusal::Denied) },
            Reply::Consumed { result: Err(approvals::Refusal::Invalid) },
            Reply::Pending { approvals: vec![] },
            Reply::Pending { approvals: vec![sample_approval(Status::Pending, false), sample_approval(Status::Expired, true)] },
            Reply::Decided { decided: Decided::Done(sample_approval(Status::Denied, true)) },
            Reply::Decided { decided: Decided::AlreadyDecided(sample_approval(Status::Used, false)) },
            Reply::Decided { decided: Decided::NotFound },
            Reply::Listed("{\"sessions\":[]}".into()),
            Reply::Refused("bad cursor".into()),
            Reply::Agent("agent".into(), vec![("s1".into(), "10".into())], true),
            Reply::Failed,
            Reply::Token(Answer::Token { token: "ghs_x".into(), expires_at: 9, minted: true }),
            Reply::Token(Answer::Token { token: "at".into(), expires_at: 0, minted: false }),
            Reply::Token(Answer::Failed { misconfigured: true, detail: "secret GH_KEY is not set".into() }),
            Reply::Page(PageAnswer { status: 200, html: "<p>x</p>".into(), approval_id: Some("ap".into()), ..Default::default() }),
            Reply::Page(PageAnswer {
                status: 403,
                html: "<p id=outcome>no</p>".into(),
                code: Some("approval_csrf_failed".into()),
                detail: Some("csrf: token wrong".into()),
                approval_id: Some("ap".into()),
                session_id: Some("s".into()),
                approved_by: Some("approval-page".into()),
                decided: true,
            }),
        ];
        for reply in replies {
            let bytes = serde_json::to_vec(&reply).unwrap();
            assert_eq!(decode_reply(&bytes).as_ref(), Some(&reply), "{}", String::from_utf8_lossy(&bytes));
        }
    }

    /// No wildcard: a new reply variant stops this from compiling until it
    /// is read above and listed in the round trip.
    #[allow(dead_code)]
    fn every_variant_is_known(reply: &Reply) {
        match reply {
            Reply::Minted { .. }
            | Reply::Created { .. }
            | Reply::Session { .. }
            | Reply::Admitted { .. }
            | Reply::Idem { .. }
            | Reply::Done
            | Reply::Approval { .. }
            | Reply::Consumed { .. }
            | Reply::Pending { .. }
            | Reply::Decided { .. }
            | Reply::Listed(_)
            | Reply::Refused(_)
            | Reply::Agent(..)
            | Reply::Failed
            | Reply::Token(_)
            | Reply::Page(_) => {}
        }
    }

    #[test]
    fn anything_else_is_no_reply() {
        for bad in [
            &b""[..],
            b"null",
            b"\"nope\"",
            b"{}",
            b"{\"created\":{\"created\":1}}",
            b"{\"created\":{\"created\":true},\"done\":1}",
            b"{\"admitted\":{\"refusal\":\"banned\"}}",
            b"{\"idem\":{\"outcome\":{\"replay\":{\"status\":70000,\"headers\":[],\"body\":null}}}}",
            b"{\"approval\":{\"approval\":{\"approval_id\":\"x\"}}}",
            b"{\"consumed\":{\"result\":{\"Ok\":1}}}",
            b"{\"agent\":[\"a\",[],true,1]}",
            b"{\"token\":\"busy\"}",
            b"{\"token\":{\"token\":{\"token\":1,\"expires_at\":2,\"minted\":true}}}",
        ] {
            assert_eq!(decode_reply(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
