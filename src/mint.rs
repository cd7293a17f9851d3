//! Control plane: admin authentication and session minting.
//!
//! Invariants:
//! - The admin key is compared in constant time over SHA-256 digests, so
//!   neither content nor length leaks through timing.
//! - A session is only minted for tools the policy declares, at a known
//!   level, for at most the policy's maximum TTL.
//! - Session ids come from the caller as 16 random bytes (the edge reads
//!   them from the platform CSPRNG); nothing here draws randomness or time.
//! - Minting runs in the new session's state object ([`serve`]), which
//!   creates the record before the token exists anywhere: a token that was
//!   answered always has a record that revocation finds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::json::{self, FieldError, Obj};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::hex::hex;
use crate::inject::aws::session_keys;
use crate::policy::{Level, Policy};
use crate::secret::Secret;
use crate::state::session::{self, SessionRecord};
use crate::state::sessions_index::IndexRow;
use crate::state::store::{Store, StoreError};
use crate::state::{MintCall, Reply};
use crate::token::{bearer, sign, Claims, KeyRing};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Admin keys shorter than this are refused as misconfiguration: a weak
/// key would make every session mintable by guessing.
pub const MIN_ADMIN_KEY_LEN: usize = 16;
/// Largest mint request body read.
pub const MAX_MINT_BODY: usize = 16 * 1024;
const MAX_NAME_LEN: usize = 128;
const MAX_TOOLS: usize = 64;

/// Checks `Authorization: Bearer <admin key>`.
pub fn check_admin(authorization: Option<&str>, admin_key: &Secret) -> Result<(), Error> {
    if admin_key.len() < MIN_ADMIN_KEY_LEN {
        return Err(Error::Misconfigured(format!("AIRLOCK_ADMIN_KEY must be at least {MIN_ADMIN_KEY_LEN} bytes")));
    }
    let presented = bearer(authorization).ok_or(Error::AdminKeyInvalid)?;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(admin_key.expose());
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        Ok(())
    } else {
        Err(Error::AdminKeyInvalid)
    }
}

/// A mint request body: `{"agent", "user", "tools", "ttl_seconds",
/// "egress"}`, read strictly (duplicate and unknown keys refused).
#[derive(Debug)]
pub struct MintRequest {
    pub agent: String,
    pub user: String,
    pub tools: BTreeMap<String, Level>,
    /// Repositories per tool: `"tools": {"gh": {"level": "write", "repos":
    /// ["acme/app"]}}` (the short form `"gh": "write"` names none).
    pub repos: serde_json::Map<String, serde_json::Value>,
    pub ttl_seconds: u64,
    /// Whether the session may use the credential-free egress route.
    pub egress: bool,
}

impl MintRequest {
    pub fn parse(body: &[u8]) -> Result<MintRequest, FieldError> {
        let value = crate::mcp::strict_json(body).map_err(|why| json::err("", why))?;
        // Unlike the policy's, a request's `null` is not "left out": a
        // client that sends one sent something it did not mean.
        if let Some((key, _)) = value.as_object().and_then(|m| m.iter().find(|(_, v)| v.is_null())) {
            return Err(json::err(key.as_str(), "must not be null"));
        }
        let mut o = Obj::of(&value, String::new())?;
        let agent = o.required_str("agent")?.to_string();
        let user = o.required_str("user")?.to_string();
        let mut tools = BTreeMap::new();
        let mut repos = serde_json::Map::new();
        if let Some(t) = o.obj("tools")? {
            for (name, v) in t.map {
                if !v.is_object() {
                    tools.insert(name.clone(), json::level(v, t.field(name))?);
                    continue;
                }
                let mut tool = Obj::of(v, t.field(name))?;
                let level = tool.get("level").ok_or_else(|| json::err(tool.field("level"), "is required"))?;
                tools.insert(name.clone(), json::level(level, tool.field("level"))?);
                let list = tool.strings("repos")?;
                if !list.is_empty() {
                    repos.insert(name.clone(), list.into());
                }
                tool.done()?;
            }
        }
        let ttl_seconds = o.u64("ttl_seconds")?.ok_or_else(|| json::err("ttl_seconds", "is required"))?;
        let egress = o.flag("egress")?;
        o.done()?;
        Ok(MintRequest { agent, user, tools, repos, ttl_seconds, egress })
    }
}

#[derive(Debug, Serialize)]
pub struct Minted {
    pub token: String,
    pub session_id: String,
    pub expires_at: u64,
    /// The per-session request-proof key (base64url), derived from the
    /// signing key: handed to the sandbox, never stored by Airlock.
    pub proof_key: String,
    /// The session's state record, written before the token is returned.
    #[serde(skip)]
    pub record: SessionRecord,
    /// For each AWS tool of the session, the keys its SDK signs with
    /// (`access_key_id`, `secret_access_key`, `session_token`, `region`):
    /// derived from the session, never the real key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<serde_json::Value>,
}

fn check_name(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.chars().count() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!("{field} must be 1-{MAX_NAME_LEN} characters without control characters")));
    }
    Ok(())
}

/// Parses an approval decision body `{"approver": "..."}`: who decided,
/// recorded with the approval and in the audit record.
pub fn approver(body: &[u8]) -> Result<String, Error> {
    let read = || -> Result<String, FieldError> {
        let value = crate::mcp::strict_json(body).map_err(|why| json::err("", why))?;
        let mut o = Obj::of(&value, String::new())?;
        let approver = o.required_str("approver")?.to_string();
        o.done()?;
        Ok(approver)
    };
    let approver = read().map_err(|e| Error::InvalidRequest(format!("invalid decision (expected {{\"approver\": \"...\"}}): {e}")))?;
    check_name("approver", &approver)?;
    Ok(approver)
}

/// Most repositories one session may name for a tool.
pub const MAX_REPOS: usize = 32;

/// Repositories may only be named for a GitHub App credential, each of its
/// installation's owner: the token is narrowed to exactly these.
fn check_repos(repos: &serde_json::Map<String, serde_json::Value>, policy: &Policy) -> Result<(), Error> {
    for (tool, list) in repos {
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        let app = match policy.tool(tool).and_then(|t| t.credential.as_ref()).and_then(|c| c.upstream.as_ref()).map(|u| &u.kind) {
            Some(crate::upstream::Kind::GithubApp(app)) => app,
            _ => return Err(Error::InvalidRequest(format!("tools.{tool}.repos: the tool's credential is not a GitHub App"))),
        };
        if list.len() > MAX_REPOS {
            return Err(Error::InvalidRequest(format!("tools.{tool}.repos: at most {MAX_REPOS} repositories")));
        }
        for repo in list.iter().map(|r| r.as_str().unwrap_or_default()) {
            let owner_ok = repo.split_once('/').is_some_and(|(owner, _)| owner.eq_ignore_ascii_case(&app.owner));
            if !crate::upstream::github::repo_ok(repo) || !owner_ok {
                return Err(Error::InvalidRequest(format!("tools.{tool}.repos: each must be owner/name with owner {:?}", app.owner)));
            }
        }
    }
    Ok(())
}

/// Parses a mint request body and signs a session token for it.
pub fn mint(body: &[u8], policy: &Policy, ring: &KeyRing, now: u64, session_id: [u8; 16]) -> Result<Minted, Error> {
    if body.len() > MAX_MINT_BODY {
        return Err(Error::InvalidRequest(format!("body larger than {MAX_MINT_BODY} bytes")));
    }
    // The message names the field, never its value.
    let req = MintRequest::parse(body).map_err(|e| Error::InvalidRequest(format!("invalid session request: {e}")))?;
    check_name("agent", &req.agent)?;
    check_name("user", &req.user)?;
    if (req.tools.is_empty() && !req.egress) || req.tools.len() > MAX_TOOLS {
        return Err(Error::InvalidRequest(format!("tools must name 1-{MAX_TOOLS} tools (or the session must ask for egress)")));
    }
    if req.egress && policy.egress.is_empty() {
        return Err(Error::InvalidRequest("egress requested but the policy allows no egress hosts".into()));
    }
    if let Some(unknown) = req.tools.keys().find(|t| policy.tool(t).is_none()) {
        return Err(Error::InvalidRequest(format!("tool {unknown:?} is not declared in the policy")));
    }
    check_repos(&req.repos, policy)?;
    let max = policy.limits.max_session_ttl_seconds;
    if req.ttl_seconds == 0 || req.ttl_seconds > max {
        return Err(Error::InvalidRequest(format!("ttl_seconds must be between 1 and {max}")));
    }
    let sid = hex(&session_id);
    let exp = now.saturating_add(req.ttl_seconds);
    let claims = Claims {
        sid: sid.clone(),
        agt: req.agent.clone(),
        usr: req.user.clone(),
        scp: req.tools,
        iat: now,
        exp,
        aud: policy.audience.clone(),
        egr: req.egress,
        rps: req.repos,
    };
    let proof_key = ring.proof_key(ring.signer().kid(), &sid).ok_or_else(|| Error::Internal("signing key missing from its ring".into()))?;
    let record = SessionRecord {
        session_id: sid.clone(),
        agent: req.agent,
        user: req.user,
        tools: claims.scp.clone(),
        egress: claims.egr,
        created_at: now,
        expires_at: exp,
        revoked_at: None,
        usage: Default::default(),
        buckets: Default::default(),
    };
    let token = sign(&claims, ring);
    let mut aws = serde_json::Map::new();
    for (name, tool) in claims.scp.keys().filter_map(|t| Some((t, policy.tool(t)?))) {
        let Some(a) = tool.aws() else { continue };
        let keys = session_keys(ring, ring.signer().kid(), &sid, name).ok_or_else(|| Error::Internal("signing key missing from its ring".into()))?;
        let secret_access_key = String::from_utf8_lossy(keys.secret_access_key.expose());
        let entry =
            serde_json::json!({"access_key_id": keys.access_key_id, "secret_access_key": secret_access_key, "session_token": token, "region": a.region});
        aws.insert(name.clone(), entry);
    }
    let aws = (!aws.is_empty()).then_some(serde_json::Value::Object(aws));
    Ok(Minted { token, session_id: sid, expires_at: exp, proof_key: URL_SAFE_NO_PAD.encode(proof_key), record, aws })
}

/// A mint run by the new session's own state object ([`Command::Mint`]):
/// the request is checked and the token signed exactly as [`mint`] does,
/// and the record is created here, before anything is answered. A request
/// the policy refuses is [`Reply::Refused`] (400, in words), with nothing
/// stored; anything else that fails (a policy or key ring that does not
/// parse, a record that exists) is [`Reply::Failed`].
///
/// [`Command::Mint`]: crate::state::Command::Mint
pub fn serve(store: &mut impl Store, call: &MintCall, now_s: u64) -> Result<Reply, StoreError> {
    let Some(session_id) = session_id_bytes(&call.session_id) else { return Ok(Reply::Failed) };
    let (Ok(policy), Ok(ring)) = (Policy::parse(&call.policy), KeyRing::parse(&call.keys)) else { return Ok(Reply::Failed) };
    let Ok(body) = base64::engine::general_purpose::STANDARD.decode(&call.body) else { return Ok(Reply::Failed) };
    let minted = match mint(&body, &policy, &ring, now_s, session_id) {
        Ok(minted) => minted,
        Err(Error::InvalidRequest(detail)) => return Ok(Reply::Refused(detail)),
        Err(_) => return Ok(Reply::Failed),
    };
    if !session::create(store, &minted.record)? {
        return Ok(Reply::Failed);
    }
    let entry = serde_json::to_string(&IndexRow::of(&minted.record)).map_err(|_| StoreError)?;
    let body = serde_json::to_string(&minted).map_err(|_| StoreError)?;
    let record = minted.record;
    Ok(Reply::Minted { body, agent: record.agent, user: record.user, expires_at: record.expires_at, entry })
}

/// 32 lower-case hex digits as the 16 bytes of a session id.
fn session_id_bytes(hex_id: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if hex_id.len() != 32 || !hex_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;
    use crate::token::verify;

    const POLICY: &str = r#"{ "version": 1, "audience": "aud", "limits": { "max_session_ttl_seconds": 900 },
      "tools": { "gh": { "origin": "https://api.github.com", "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ] } } }"#;
    const RING: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn admin_key_checks() {
        let key = Secret::new(b"admin-key-0123456789".to_vec());
        assert!(check_admin(Some("Bearer admin-key-0123456789"), &key).is_ok());
        for bad in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Bearer admin-key-012345678"),
            Some("Bearer admin-key-01234567890"),
            Some("Basic admin-key-0123456789"),
            Some("admin-key-0123456789"),
        ] {
            assert_eq!(check_admin(bad, &key), Err(Error::AdminKeyInvalid), "{bad:?}");
        }
        let weak = Secret::new(b"short".to_vec());
        assert_eq!(check_admin(Some("Bearer short"), &weak).unwrap_err().code(), "misconfigured");
    }

    #[test]
    fn mints_a_verifiable_token() {
        let policy = Policy::parse(POLICY).unwrap();
        let ring = KeyRing::parse(RING).unwrap();
        let body = br#"{"agent":"coder","user":"alice","tools":{"gh":"read"},"ttl_seconds":600}"#;
        let m = mint(body, &policy, &ring, 1_000, [0xab; 16]).unwrap();
        assert_eq!(m.session_id, "ab".repeat(16));
        assert_eq!(m.expires_at, 1_600);
        let s = verify(&m.token, &ring, "aud", 1_001).unwrap();
        assert_eq!(s.claims().sid, m.session_id);
        assert_eq!(s.claims().agt, "coder");
        assert_eq!(s.level_for("gh"), Some(Level::Read));
        assert!(!s.egress());
        assert_eq!(m.record.expires_at, 1_600);
        assert_eq!((m.record.agent.as_str(), m.record.revoked_at), ("coder", None));
        // The proof key is derived again from the token's key id, never stored.
        let key = ring.proof_key(s.kid(), &m.session_id).unwrap();
        assert_eq!(m.proof_key, URL_SAFE_NO_PAD.encode(key));
        assert_ne!(ring.proof_key(s.kid(), "another").unwrap(), key);
        assert!(!serde_json::to_string(&m.record).unwrap().contains(&m.proof_key));
    }

    #[test]
    fn approval_decisions_name_the_approver() {
        assert_eq!(approver(br#"{"approver":"alice@example.com"}"#).unwrap(), "alice@example.com");
        for bad in [&br#"{}"#[..], br#"{"approver":""}"#, br#"{"approver":"a\nb"}"#, br#"{"approver":"a","extra":1}"#, b"nope"] {
            assert_eq!(approver(bad).unwrap_err().code(), "invalid_request", "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn github_app_sessions_name_their_repositories() {
        let app = POLICY.replace(
            r#""rules": [ { "methods": ["GET"]"#,
            r#""credential": {"kind": "github_app", "secret": "K", "app_id": "1", "installation_id": 2, "owner": "Acme"}, "rules": [ { "methods": ["GET"]"#,
        );
        let policy = Policy::parse(&app).unwrap();
        let ring = KeyRing::parse(RING).unwrap();
        let body = br#"{"agent":"a","user":"u","tools":{"gh":{"level":"write","repos":["acme/app","ACME/lib"]}},"ttl_seconds":60}"#;
        let m = mint(body, &policy, &ring, 0, [1; 16]).unwrap();
        let s = verify(&m.token, &ring, "aud", 1).unwrap();
        assert_eq!(s.level_for("gh"), Some(Level::Write));
        assert_eq!(s.repos_for("gh"), vec!["acme/app".to_string(), "ACME/lib".into()]);
        assert_eq!(s.repos_for("other"), Vec::<String>::new());
        // The short form names none, and its token keeps the old shape.
        let short = mint(br#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":60}"#, &policy, &ring, 0, [1; 16]).unwrap();
        assert!(!String::from_utf8(URL_SAFE_NO_PAD.decode(short.token.split('.').nth(2).unwrap()).unwrap()).unwrap().contains("rps"));
        for bad in [
            r#"{"gh":{"level":"read","repos":["other/app"]}}"#,
            r#"{"gh":{"level":"read","repos":["app"]}}"#,
            r#"{"gh":{"level":"read","repos":["acme/a b"]}}"#,
            r#"{"gh":{"level":"read","repos":[1]}}"#,
            r#"{"gh":{"repos":["acme/app"]}}"#,
            r#"{"gh":{"level":"read","repos":["acme/app"],"extra":1}}"#,
        ] {
            let body = format!(r#"{{"agent":"a","user":"u","tools":{bad},"ttl_seconds":60}}"#);
            assert_eq!(mint(body.as_bytes(), &policy, &ring, 0, [0; 16]).unwrap_err().code(), "invalid_request", "{bad}");
        }
        let too_many: Vec<String> = (0..=MAX_REPOS).map(|i| format!("\"acme/r{i}\"")).collect();
        let body = format!(r#"{{"agent":"a","user":"u","tools":{{"gh":{{"level":"read","repos":[{}]}}}},"ttl_seconds":60}}"#, too_many.join(","));
        assert_eq!(mint(body.as_bytes(), &policy, &ring, 0, [0; 16]).unwrap_err().code(), "invalid_request");
        // Repositories only for a GitHub App credential.
        let plain = Policy::parse(POLICY).unwrap();
        let body = br#"{"agent":"a","user":"u","tools":{"gh":{"level":"read","repos":["acme/app"]}},"ttl_seconds":60}"#;
        assert_eq!(mint(body, &plain, &ring, 0, [0; 16]).unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn egress_sessions_need_an_egress_policy() {
        let ring = KeyRing::parse(RING).unwrap();
        let body = br#"{"agent":"a","user":"u","egress":true,"ttl_seconds":60}"#;
        let none = Policy::parse(POLICY).unwrap();
        assert_eq!(mint(body, &none, &ring, 0, [0; 16]).unwrap_err().code(), "invalid_request");
        let with = Policy::parse(&POLICY.replace(r#""tools":"#, r#""egress": {"hosts": ["pypi.org"]}, "tools":"#)).unwrap();
        let m = mint(body, &with, &ring, 0, [0; 16]).unwrap();
        let s = verify(&m.token, &ring, "aud", 1).unwrap();
        assert!(s.egress());
        assert_eq!(s.level_for("gh"), None);
    }

    #[test]
    fn refuses_bad_requests() {
        let policy = Policy::parse(POLICY).unwrap();
        let ring = KeyRing::parse(RING).unwrap();
        let table: &[(&str, &str)] = &[
            ("not json", "{"),
            ("unknown field", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":60,"admin":true}"#),
            ("unknown tool", r#"{"agent":"a","user":"u","tools":{"stripe":"read"},"ttl_seconds":60}"#),
            ("bad level", r#"{"agent":"a","user":"u","tools":{"gh":"root"},"ttl_seconds":60}"#),
            ("no tools", r#"{"agent":"a","user":"u","tools":{},"ttl_seconds":60}"#),
            ("ttl zero", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":0}"#),
            ("ttl above max", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":901}"#),
            ("negative ttl", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":-1}"#),
            ("empty agent", r#"{"agent":"","user":"u","tools":{"gh":"read"},"ttl_seconds":60}"#),
            ("control char user", r#"{"agent":"a","user":"u\n","tools":{"gh":"read"},"ttl_seconds":60}"#),
            ("missing user", r#"{"agent":"a","tools":{"gh":"read"},"ttl_seconds":60}"#),
            ("null egress", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":60,"egress":null}"#),
            ("null tools", r#"{"agent":"a","user":"u","tools":null,"ttl_seconds":60,"egress":true}"#),
            ("duplicate agent", r#"{"agent":"a","agent":"b","user":"u","tools":{"gh":"read"},"ttl_seconds":60}"#),
            ("string ttl", r#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":"60"}"#),
        ];
        for (what, body) in table {
            let e = mint(body.as_bytes(), &policy, &ring, 1_000, [0; 16]).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{what}");
        }
        let huge = vec![b' '; MAX_MINT_BODY + 1];
        assert_eq!(mint(&huge, &policy, &ring, 0, [0; 16]).unwrap_err().code(), "invalid_request");
    }

    fn call(body: &[u8], session_id: &str) -> MintCall {
        let body = base64::engine::general_purpose::STANDARD.encode(body);
        MintCall { body, policy: POLICY.into(), keys: RING.into(), session_id: session_id.into() }
    }

    #[test]
    fn the_session_object_mints_and_creates_its_record_first() {
        let mut store = MemStore::new();
        let id = "0123456789abcdef0123456789abcdef";
        let body = br#"{"agent":"coder","user":"alice","tools":{"gh":"read"},"ttl_seconds":600}"#;
        let Ok(Reply::Minted { body, agent, user, expires_at, entry }) = serve(&mut store, &call(body, id), 1_000) else { panic!("not minted") };
        assert_eq!((agent.as_str(), user.as_str(), expires_at), ("coder", "alice", 1_600));
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["session_id"], id);
        let token = answer["token"].as_str().unwrap();
        let ring = KeyRing::parse(RING).unwrap();
        assert_eq!(verify(token, &ring, "aud", 1_001).unwrap().claims().sid, id);
        // The record exists (what revocation and admission read), and the
        // index row is the record's.
        let view = session::get(&store, 1_001).unwrap().unwrap();
        assert_eq!((view.session_id.as_str(), view.expires_at), (id, 1_600));
        let row: IndexRow = serde_json::from_str(&entry).unwrap();
        assert_eq!((row.session_id.as_str(), row.agent.as_str(), row.created_at, row.expires_at, row.revoked_at), (id, "coder", 1_000, 1_600, None));
        // Neither the stored record nor the index row holds the token or the proof key.
        let dump = store.dump();
        for secret in [token, answer["proof_key"].as_str().unwrap()] {
            assert!(!dump.contains(secret) && !entry.contains(secret));
        }
        // A second mint for the same id finds the record: nothing answered.
        let again = serve(&mut store, &call(br#"{"agent":"x","user":"y","tools":{"gh":"read"},"ttl_seconds":60}"#, id), 1_000);
        assert_eq!(again, Ok(Reply::Failed));
    }

    #[test]
    fn a_mint_call_never_prints_its_keys() {
        let shown = format!("{:?}", call(b"{}", "0123456789abcdef0123456789abcdef"));
        assert!(!shown.contains(RING) && !shown.contains("MDEy") && shown.contains("0123456789abcdef"), "{shown}");
    }

    #[test]
    fn a_refused_mint_stores_nothing() {
        let cases: &[(&[u8], &str, &str)] = &[
            (br#"{"agent":"a","user":"u","tools":{"stripe":"read"},"ttl_seconds":60}"#, "0123456789abcdef0123456789abcdef", "refused"),
            (b"\xff\xfe not json", "0123456789abcdef0123456789abcdef", "refused"),
            (br#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":60}"#, "0123", "failed"),
            (br#"{"agent":"a","user":"u","tools":{"gh":"read"},"ttl_seconds":60}"#, "0123456789ABCDEF0123456789ABCDEF", "failed"),
        ];
        for (body, id, outcome) in cases {
            let mut store = MemStore::new();
            let reply = serve(&mut store, &call(body, id), 1_000).unwrap();
            match (*outcome, &reply) {
                ("refused", Reply::Refused(detail)) => assert!(detail.starts_with("invalid session request") || detail.starts_with("tool"), "{detail}"),
                ("failed", Reply::Failed) => {}
                _ => panic!("{id}: {reply:?}"),
            }
            assert!(store.is_empty(), "{id}: something stored");
        }
        let mut bad_keys = call(b"{}", "0123456789abcdef0123456789abcdef");
        bad_keys.keys = "k1:short".into();
        let mut store = MemStore::new();
        assert_eq!(serve(&mut store, &bad_keys, 1_000), Ok(Reply::Failed));
        assert!(store.is_empty());
    }
}
