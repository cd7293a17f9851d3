//! The approval page: the link a human follows, the CSRF token of its
//! form, and the HTML that shows what is being approved.
//!
//! Invariants:
//! - A link (`ap1.<approval id>.<exp>.<mac>`) is MAC'd with HMAC-SHA256
//!   under `AIRLOCK_APPROVAL_KEY`, a key used for nothing else; the MAC is
//!   checked (in constant time) before the expiry, and both before any
//!   state is read. A forged, tampered or expired link changes nothing.
//! - A decision is a POST that carries the page's CSRF token (an HMAC of
//!   the link under the same key, so only someone who could read the page
//!   has it) and, when the browser sends one, the worker's own `Origin`.
//! - Everything the page shows is HTML-escaped, and the page is served
//!   with a Content-Security-Policy that allows no script at all: a body
//!   holding markup or script is shown as text and never runs.
//!
//! Must never: decide on a GET, show a credential (the stored body is the
//! sandbox's, before injection), or read a clock (`now` comes in).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::audit::rfc3339_ms;
use crate::error::Error;
use crate::secret::Secret;
use crate::state::approvals::{self, Approval, Decided, Status};
pub use crate::state::approvals::{PageAnswer, PageRequest};
use crate::state::outbox;
use crate::state::store::Store;

/// The secret that keys approval links: base64 of 32 random bytes.
pub const KEY_SECRET: &str = "AIRLOCK_APPROVAL_KEY";
/// The route prefix of the page.
pub const PAGE_PREFIX: &str = "/approve/";
/// Most bytes of a request body kept with the approval for the page.
pub const MAX_SHOWN_BODY: usize = 16 * 1024;
/// The page allows nothing but its own form: no script, no style, no frames.
pub const CSP: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The approver when Cloudflare Access did not name one.
pub const PAGE_APPROVER: &str = "approval-page";

const VERSION: &str = "ap1";

/// The key of approval links.
pub struct LinkKey(Secret);

impl LinkKey {
    /// Base64 (standard or URL-safe) of at least 32 bytes.
    pub fn parse(raw: &str) -> Option<LinkKey> {
        let raw = raw.trim();
        let bytes = STANDARD.decode(raw).or_else(|_| URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))).ok()?;
        (bytes.len() >= 32).then(|| LinkKey(Secret::new(bytes)))
    }

    fn mac(&self, parts: &[&str]) -> Hmac<Sha256> {
        // A 32-byte key is always accepted.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose()).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(p.as_bytes());
        }
        mac
    }
}

/// Mints the link token of approval `id`, valid until `exp` (unix s).
pub fn mint_link(key: &LinkKey, id: &str, exp: u64) -> String {
    let signed = format!("{VERSION}.{id}.{exp}");
    let tag = key.mac(&[&signed]).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// A link whose MAC and expiry checked out: the approval it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub approval_id: String,
    pub exp: u64,
}

/// Verifies a link token: MAC first, then expiry (`now < exp`).
pub fn verify_link(key: &LinkKey, token: &str, now_s: u64) -> Result<Link, Error> {
    let invalid = Error::ApprovalLinkInvalid;
    let (signed, tag) = token.rsplit_once('.').ok_or(invalid.clone())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid.clone())?;
    // `verify_slice` compares in constant time; a truncated tag fails.
    key.mac(&[signed]).verify_slice(&tag).map_err(|_| invalid.clone())?;
    let mut parts = signed.split('.');
    let (Some(VERSION), Some(id), Some(exp), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(invalid);
    };
    let exp: u64 = exp.parse().map_err(|_| invalid.clone())?;
    if now_s >= exp {
        return Err(Error::ApprovalLinkExpired { exp, now: now_s });
    }
    Ok(Link { approval_id: id.to_string(), exp })
}

/// The CSRF token of the page at `token`: bound to the link, so a token
/// read from one page decides nothing else.
pub fn csrf_token(key: &LinkKey, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.mac(&["airlock-approval-csrf\n", token]).finalize().into_bytes())
}

/// What the browser said about where a POST came from.
pub struct PostOrigin<'a> {
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header.
    pub fetch_site: Option<&'a str>,
    /// The origins the page is served from (`https://host[:port]`).
    pub own: &'a [&'a str],
}

/// Checks a decision POST (`application/x-www-form-urlencoded`, fields
/// `decision=approve|deny` and `csrf`) and returns whether it approves.
/// Cross-site posts are refused by their `Origin` (or `Sec-Fetch-Site`),
/// and every post must carry the page's CSRF token.
pub fn check_decision(key: &LinkKey, token: &str, form: &[u8], from: &PostOrigin<'_>) -> Result<bool, Error> {
    let csrf = |why| Error::ApprovalCsrf { why };
    match from.origin {
        Some(o) if !from.own.iter().any(|own| own.eq_ignore_ascii_case(o)) => return Err(csrf("foreign origin")),
        _ => {}
    }
    if from.fetch_site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return Err(csrf("cross-site fetch"));
    }
    // Both values are plain ASCII (base64url, a word): no decoding, so a
    // percent-encoded field is simply wrong.
    let (mut decision, mut presented) = (None, None);
    for pair in form.split(|b| *b == b'&') {
        let (slot, value) = match pair.split_at(pair.iter().position(|b| *b == b'=').unwrap_or(pair.len())) {
            (b"decision", v) => (&mut decision, v),
            (b"csrf", v) => (&mut presented, v),
            _ => continue,
        };
        if slot.replace(value.get(1..).unwrap_or_default()).is_some() {
            return Err(Error::InvalidRequest("a decision field was sent twice".into()));
        }
    }
    let presented = presented.ok_or(csrf("token missing"))?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(presented, csrf_token(key, token).as_bytes())) {
        return Err(csrf("token wrong"));
    }
    match decision {
        Some(b"approve") => Ok(true),
        Some(b"deny") => Ok(false),
        _ => Err(Error::InvalidRequest("decision must be approve or deny".into())),
    }
}

/// Who decided: the Cloudflare Access identity when Access put one in
/// front of the page, else [`PAGE_APPROVER`].
pub fn approver(access_email: Option<&str>) -> String {
    match access_email {
        Some(e) if !e.is_empty() && e.len() <= 254 && e.bytes().all(|b| b.is_ascii_graphic()) => e.to_string(),
        _ => PAGE_APPROVER.to_string(),
    }
}

/// The part of a request body kept for the page: UTF-8 text, at most
/// [`MAX_SHOWN_BODY`] bytes (cut at a character boundary). `None` for an
/// empty or binary body. The flag says whether it was cut.
pub fn shown_body(body: &[u8]) -> (Option<String>, bool) {
    let cut = body.len() > MAX_SHOWN_BODY;
    let head = &body[..body.len().min(MAX_SHOWN_BODY)];
    // A multi-byte character cut by the cap loses its start; anything else
    // that is not UTF-8 is binary.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => head.len(),
        Err(e) if cut && e.error_len().is_none() => e.valid_up_to(),
        Err(_) => return (None, false),
    };
    let text = String::from_utf8_lossy(&head[..valid]);
    if text.is_empty() || text.bytes().any(|b| b < 0x20 && !b"\n\r\t".contains(&b) || b == 0x7f) {
        return (None, false);
    }
    (Some(text.into_owned()), cut)
}

/// The origin (`scheme://authority`) of an absolute URL.
pub fn origin_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shell(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <meta name=referrer content=same-origin><title>Airlock: {t}</title></head><body><h1>{t}</h1>{inner}</body></html>",
        t = escape(title)
    )
}

/// The decision page of a pending approval; `csrf` is [`csrf_token`] of
/// its link, `times` its creation and expiry as the edge formats them.
pub fn page(a: &Approval, csrf: &str, times: [&str; 2]) -> String {
    let row = |k: &str, v: &str| format!("<tr><th>{k}</th><td><code>{}</code></td></tr>", escape(v));
    let mut rows = String::new();
    for (k, v) in [
        ("Agent", a.agent.as_str()),
        ("User", &a.user),
        ("Tool", &a.tool),
        ("Method", &a.method),
        ("Path", &a.path),
        ("Query", &a.query),
        ("Requested", times[0]),
        ("Expires", times[1]),
        ("Body SHA-256", &a.body_sha256),
        ("Approval", &a.approval_id),
    ] {
        rows.push_str(&row(k, v));
    }
    let body = match &a.body {
        Some(b) => format!("<pre id=body>{}</pre>{}", escape(b), if a.body_truncated { "<p>(body cut at 16 KiB)</p>" } else { "" }),
        None => "<p id=body>(no text body)</p>".into(),
    };
    let inner = format!(
        "<p>An agent asks to send this request. Approve it only if you expect it.</p><table>{rows}</table><h2>Body</h2>{body}\
         <form method=post><input type=hidden name=csrf value=\"{}\">\
         <button type=submit name=decision value=approve id=approve>Approve</button> \
         <button type=submit name=decision value=deny id=deny>Deny</button></form>",
        escape(csrf)
    );
    shell("Approve this request?", &inner)
}

/// The page after a decision, or for an approval that cannot be decided.
pub fn outcome_page(a: Option<&Approval>, error: Option<&Error>) -> String {
    let (title, text) = match (a, error) {
        (Some(a), None) => (
            format!("Request {}", if a.status == Status::Approved { "approved" } else { "denied" }),
            format!("Decided by {}.", a.decided_by.as_deref().unwrap_or("")),
        ),
        (_, Some(Error::ApprovalDecided { status })) => (format!("Already {status}"), "Nothing changed.".into()),
        (_, Some(Error::ApprovalLinkExpired { .. })) => ("Link expired".into(), "Nothing changed.".into()),
        (_, Some(Error::ApprovalCsrf { .. })) => ("Not accepted".into(), "Decide from the approval page. Nothing changed.".into()),
        (_, Some(Error::ApprovalLinkInvalid)) => ("Invalid link".into(), "Nothing changed.".into()),
        (_, e) => ("Not available".into(), e.map_or(String::new(), Error::public_message)),
    };
    shell(&title, &format!("<p id=outcome>{}</p>", escape(&text)))
}

/// Most bytes of a decision POST.
pub const MAX_FORM: usize = 4096;

/// Serves the page: every outcome, refusals included, is an HTML page. The
/// link is checked before anything is read from `store`.
pub fn serve(store: &mut impl Store, r: &PageRequest, now_ms: u64) -> PageAnswer {
    let mut answer = PageAnswer::default();
    match serve_inner(store, r, now_ms, &mut answer) {
        Ok(html) => {
            answer.status = 200;
            answer.html = html;
        }
        Err(e) => {
            answer.status = e.status();
            answer.html = outcome_page(None, Some(&e));
            answer.code = Some(e.code().to_string());
            answer.detail = Some(e.detail());
        }
    }
    answer
}

fn serve_inner(store: &mut impl Store, r: &PageRequest, now_ms: u64, answer: &mut PageAnswer) -> Result<String, Error> {
    let now_s = now_ms / 1000;
    let key = r.key.as_deref().and_then(LinkKey::parse).ok_or_else(|| Error::Misconfigured("secret AIRLOCK_APPROVAL_KEY is not base64 of 32 bytes".into()))?;
    let id = verify_link(&key, &r.token, now_s)?.approval_id;
    answer.approval_id = Some(id.clone());
    let failed = |_| Error::StateUnavailable("approvals store failed".into());
    match r.method.as_str() {
        "GET" => {
            let a = approvals::get(store, &id, now_s).map_err(failed)?.ok_or(Error::ApprovalLinkInvalid)?;
            answer.session_id = Some(a.session_id.clone());
            if a.status != Status::Pending {
                return Err(Error::ApprovalDecided { status: a.status.as_str() });
            }
            let iso = |s: u64| rfc3339_ms(s.saturating_mul(1000));
            Ok(page(&a, &csrf_token(&key, &r.token), [&iso(a.created_at), &iso(a.expires_at)]))
        }
        "POST" => {
            let form = r.form.as_deref().ok_or_else(|| Error::InvalidRequest(format!("body larger than {MAX_FORM} bytes")))?;
            let own: Vec<&str> = r.own.iter().map(String::as_str).collect();
            let from = PostOrigin { origin: r.origin.as_deref(), fetch_site: r.fetch_site.as_deref(), own: &own };
            let approve = check_decision(&key, &r.token, form.as_bytes(), &from)?;
            let decider = approver(r.access_email.as_deref());
            answer.approved_by = Some(decider.clone());
            match approvals::decide(store, &id, approve, &decider, now_s).map_err(failed)? {
                Decided::Done(a) => {
                    outbox::on_decided(store, &a, now_ms).map_err(failed)?;
                    answer.decided = true;
                    answer.session_id = Some(a.session_id.clone());
                    Ok(outcome_page(Some(&a), None))
                }
                Decided::AlreadyDecided(a) => Err(Error::ApprovalDecided { status: a.status.as_str() }),
                Decided::NotFound => Err(Error::ApprovalLinkInvalid),
            }
        }
        _ => Err(Error::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
    }

    const ID: &str = "ap_0123456789abcdef0123456789abcdef";

    #[test]
    fn the_page_is_served_and_decided_in_the_object() {
        use crate::state::store::MemStore;
        const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let mut store = MemStore::new();
        let mut held = approvals::sample(ID, "d");
        held.body = Some("<b>x</b>".into());
        approvals::hold(&mut store, held, 1_000).unwrap();
        let token = mint_link(&key(), ID, 4_600);
        let now_ms = 1_500_000;
        let ask = |method: &str, token: &str, form: Option<&str>, key: Option<&str>| PageRequest {
            token: token.into(),
            method: method.into(),
            form: form.map(str::to_string),
            origin: Some("https://airlock.example".into()),
            fetch_site: Some("same-origin".into()),
            own: vec!["https://airlock.example".into()],
            access_email: Some("alice@example.com".into()),
            key: key.map(str::to_string),
        };
        let status_of = |s: &MemStore| approvals::get(s, ID, 1_500).unwrap().unwrap().status;

        // Refusals change nothing: a forged link, no key, a GET that is not
        // a page method, a POST without the page's token.
        let forged = format!("{}x", &token[..token.len() - 1]);
        for (request, status, code) in [
            (ask("GET", &forged, None, Some(KEY)), 404, "approval_link_invalid"),
            (ask("POST", &forged, Some("decision=approve&csrf=x"), Some(KEY)), 404, "approval_link_invalid"),
            (ask("GET", &token, None, None), 500, "misconfigured"),
            (ask("PUT", &token, None, Some(KEY)), 405, "method_not_allowed"),
            (ask("POST", &token, Some("decision=approve&csrf=wrong"), Some(KEY)), 403, "approval_csrf_failed"),
            (ask("POST", &token, None, Some(KEY)), 400, "invalid_request"),
        ] {
            let a = serve(&mut store, &request, now_ms);
            assert_eq!((a.status, a.code.as_deref(), a.decided), (status, Some(code), false), "{}", a.html);
            assert!(a.html.contains("id=outcome"), "a refusal is the plain page");
            assert_eq!(status_of(&store), Status::Pending);
        }

        // The page shows the request escaped, with its CSRF token.
        let shown = serve(&mut store, &ask("GET", &token, None, Some(KEY)), now_ms);
        assert_eq!((shown.status, shown.code.as_deref(), shown.session_id.as_deref()), (200, None, Some("s1")));
        assert!(shown.html.contains(&csrf_token(&key(), &token)) && shown.html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(shown.html.contains("1970-01-01T00:16:40.000Z"), "times in ISO 8601");

        // The page's own POST decides, once.
        let form = format!("decision=approve&csrf={}", csrf_token(&key(), &token));
        let decided = serve(&mut store, &ask("POST", &token, Some(&form), Some(KEY)), now_ms);
        assert_eq!((decided.status, decided.decided, decided.approved_by.as_deref()), (200, true, Some("alice@example.com")));
        assert_eq!(status_of(&store), Status::Approved);
        let again = serve(&mut store, &ask("POST", &token, Some(&form), Some(KEY)), now_ms);
        assert_eq!((again.status, again.code.as_deref(), again.decided), (409, Some("approval_decided"), false));
    }

    #[test]
    fn link_tokens_verify_and_every_forgery_is_refused() {
        let k = key();
        let link = mint_link(&k, ID, 2_000);
        assert!(link.starts_with(&format!("ap1.{ID}.2000.")));
        assert_eq!(verify_link(&k, &link, 1_999).unwrap(), Link { approval_id: ID.into(), exp: 2_000 });
        let other = LinkKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
        let (signed, tag) = link.rsplit_once('.').unwrap();
        let mut flipped = tag.as_bytes().to_vec();
        flipped[3] ^= 1;
        let table: &[(&str, String, &str)] = &[
            ("expired exactly at exp", link.clone(), "approval_link_expired"),
            ("other key", mint_link(&other, ID, 2_000), "approval_link_invalid"),
            ("later expiry, same tag", format!("ap1.{ID}.9999.{tag}"), "approval_link_invalid"),
            ("other id, same tag", format!("ap1.ap_ffffffffffffffffffffffffffffffff.2000.{tag}"), "approval_link_invalid"),
            ("flipped tag bit", format!("{signed}.{}", String::from_utf8_lossy(&flipped)), "approval_link_invalid"),
            ("truncated tag", format!("{signed}.{}", &tag[..20]), "approval_link_invalid"),
            ("no tag", signed.to_string(), "approval_link_invalid"),
            ("empty", String::new(), "approval_link_invalid"),
            ("garbage", "../../etc/passwd".into(), "approval_link_invalid"),
        ];
        for (what, token, code) in table {
            let now = if *what == "expired exactly at exp" { 2_000 } else { 1_000 };
            assert_eq!(verify_link(&k, token, now).unwrap_err().code(), *code, "{what}");
        }
        // A well-formed MAC over extra fields is still refused.
        let extra = format!("ap1.{ID}.2000.x");
        let tag = URL_SAFE_NO_PAD.encode(k.mac(&[&extra]).finalize().into_bytes());
        assert_eq!(verify_link(&k, &format!("{extra}.{tag}"), 1_000).unwrap_err().code(), "approval_link_invalid");
        assert!(LinkKey::parse("c2hvcnQ=").is_none(), "a short key is refused");
    }

    #[test]
    fn decisions_need_the_page_token_and_a_same_origin_post() {
        let k = key();
        let link = mint_link(&k, ID, 2_000);
        let good = csrf_token(&k, &link);
        let own = ["https://airlock.example"];
        let from = |origin, fetch_site| PostOrigin { origin, fetch_site, own: &own };
        let form = |d: &str, t: &str| format!("decision={d}&csrf={t}").into_bytes();
        assert_eq!(check_decision(&k, &link, &form("approve", &good), &from(Some("https://airlock.example"), Some("same-origin"))), Ok(true));
        assert_eq!(check_decision(&k, &link, &form("deny", &good), &from(None, None)), Ok(false));
        let other_link = mint_link(&k, "ap_ffffffffffffffffffffffffffffffff", 2_000);
        type Row<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<&'a str>, &'a str);
        let table: &[Row] = &[
            ("no token", b"decision=approve".to_vec(), None, None, "approval_csrf_failed"),
            ("wrong token", form("approve", "AAAA"), None, None, "approval_csrf_failed"),
            ("token of another link", form("approve", &csrf_token(&k, &other_link)), None, None, "approval_csrf_failed"),
            ("foreign origin", form("approve", &good), Some("https://evil.example"), None, "approval_csrf_failed"),
            ("null origin", form("approve", &good), Some("null"), None, "approval_csrf_failed"),
            ("cross-site fetch", form("approve", &good), None, Some("cross-site"), "approval_csrf_failed"),
            ("same-site fetch", form("approve", &good), None, Some("same-site"), "approval_csrf_failed"),
            ("no decision", format!("csrf={good}").into_bytes(), None, None, "invalid_request"),
            ("unknown decision", form("maybe", &good), None, None, "invalid_request"),
            ("decision twice", format!("decision=deny&decision=approve&csrf={good}").into_bytes(), None, None, "invalid_request"),
        ];
        for (what, body, origin, site, code) in table {
            assert_eq!(check_decision(&k, &link, body, &from(*origin, *site)).unwrap_err().code(), *code, "{what}");
        }
    }

    #[test]
    fn hostile_text_is_escaped_everywhere_on_the_page() {
        let table: &[(&str, &str)] = &[
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("\"><img src=x onerror=alert(1)>", "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            ("' onmouseover='x", "&#39; onmouseover=&#39;x"),
            ("&lt;already&gt;", "&amp;lt;already&amp;gt;"),
            ("</pre></body><script>", "&lt;/pre&gt;&lt;/body&gt;&lt;script&gt;"),
            ("plain {\"json\": 1}", "plain {&quot;json&quot;: 1}"),
        ];
        for (raw, want) in table {
            assert_eq!(escape(raw), *want);
        }
        let hostile = "<script>alert(1)</script>";
        let a = Approval {
            approval_id: ID.into(),
            status: Status::Pending,
            session_id: "s".into(),
            agent: hostile.into(),
            user: hostile.into(),
            tool: hostile.into(),
            method: "POST".into(),
            path: "/x/<b>".into(),
            query: "a=<i>".into(),
            body_sha256: "00".into(),
            digest: "d".into(),
            created_at: 1_765_072_000,
            expires_at: 1_765_075_600,
            decided_by: None,
            decided_at: None,
            body: Some(format!("{{\"note\":\"{hostile}\"}}")),
            body_truncated: false,
            webhook: None,
        };
        let html = page(&a, "tok\"en", ["t0", "t1<"]);
        assert_eq!(html.matches("<script").count(), 0, "{html}");
        assert!(!html.contains("<b>") && !html.contains("<i>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        let done = outcome_page(Some(&Approval { status: Status::Denied, decided_by: Some(hostile.into()), ..a }), None);
        assert!(!done.contains("<script"));
    }

    #[test]
    fn shown_bodies_are_capped_text() {
        assert_eq!(shown_body(b"{\"a\":1}"), (Some("{\"a\":1}".into()), false));
        assert_eq!(shown_body(b""), (None, false));
        assert_eq!(shown_body(&[0xff, 0xfe, 0x00]), (None, false), "binary");
        assert_eq!(shown_body(b"a\x00b"), (None, false), "control bytes");
        let mut long = "é".repeat(MAX_SHOWN_BODY); // 2 bytes each: the cap falls inside none
        long.insert(0, 'x'); // now the cap cuts a character in two
        let (text, cut) = shown_body(long.as_bytes());
        assert!(cut);
        assert_eq!(text.unwrap().len(), MAX_SHOWN_BODY - 1);
    }

    #[test]
    fn approvers_and_times() {
        assert_eq!(approver(Some("alice@example.com")), "alice@example.com");
        assert_eq!(approver(None), PAGE_APPROVER);
        assert_eq!(approver(Some("a b")), PAGE_APPROVER);
        assert_eq!(approver(Some("")), PAGE_APPROVER);
        assert_eq!(origin_of("https://a.example:8443/approve/x?y"), Some("https://a.example:8443"));
        assert_eq!(origin_of("http://127.0.0.1:8787"), Some("http://127.0.0.1:8787"));
        assert_eq!(origin_of("nonsense"), None);
    }
}
