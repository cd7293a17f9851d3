//! OAuth 2.0 token requests and answers: client credentials (RFC 6749
//! §4.4), refresh tokens with rotation (§6), and the `jwt-bearer` grant of
//! Google service accounts (RFC 7523).
//!
//! Invariants:
//! - A refresh answer that carries a new refresh token is the only source
//!   of the next one; an `invalid_grant` answer (a reused or revoked refresh
//!   token) is a refusal, never retried here.
//! - The endpoint's `error` code is kept only if it is a plain OAuth code
//!   (`[a-z_]`, short); its description is never read.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::{token_text_ok, MintError, Token, DEFAULT_LIFETIME_S, MAX_LIFETIME_S};
use crate::secret::Secret;

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(id:secret)` (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// The policy's `oauth_client_credentials` and `oauth_refresh_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub token_url: String,
    pub client_id: String,
    /// Refresh tokens: the secret holding the client secret, if the client
    /// is confidential. (For client credentials the credential's `secret`
    /// is the client secret.)
    pub client_secret: Option<String>,
    /// Space-separated scopes; empty: none sent.
    pub scope: String,
    /// The `audience` parameter some servers (Auth0) take; empty: none sent.
    pub audience: String,
    pub auth: ClientAuth,
}

/// The policy's `google_service_account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Google {
    pub scopes: Vec<String>,
    /// Overrides the key file's `token_uri`.
    pub token_url: Option<String>,
}

/// A token request: the extra headers and the form body.
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

fn form(pairs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        crate::path::percent_encode(v, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b), &mut out);
    }
    out
}

fn enc(v: &[u8]) -> String {
    form(&[("", v)]).split_off(1)
}

/// A request to `c.token_url` for `grant` (its own parameters), with the
/// client authenticated as the policy says.
fn request(c: &Client, grant: &[(&str, &[u8])], client_secret: Option<&[u8]>) -> Request {
    let mut pairs: Vec<(&str, &[u8])> = grant.to_vec();
    if !c.scope.is_empty() {
        pairs.push(("scope", c.scope.as_bytes()));
    }
    if !c.audience.is_empty() {
        pairs.push(("audience", c.audience.as_bytes()));
    }
    let mut headers = Vec::new();
    match (c.auth, client_secret) {
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 §2.3.1: both form-encoded before the Basic pair.
            let pair = format!("{}:{}", enc(c.client_id.as_bytes()), enc(secret));
            headers.push(("authorization", format!("Basic {}", STANDARD.encode(pair))));
        }
        (ClientAuth::Body, Some(secret)) => {
            pairs.push(("client_id", c.client_id.as_bytes()));
            pairs.push(("client_secret", secret));
        }
        // A public client names itself.
        (_, None) => pairs.push(("client_id", c.client_id.as_bytes())),
    }
    Request { url: c.token_url.clone(), headers, body: form(&pairs) }
}

pub fn client_credentials(c: &Client, client_secret: &Secret) -> Request {
    request(c, &[("grant_type", b"client_credentials")], Some(client_secret.expose()))
}

pub fn refresh(c: &Client, refresh_token: &Secret, client_secret: Option<&Secret>) -> Request {
    request(c, &[("grant_type", b"refresh_token"), ("refresh_token", refresh_token.expose())], client_secret.map(Secret::expose))
}

pub fn jwt_bearer(token_url: &str, assertion: &str) -> Request {
    let body = form(&[("grant_type", b"urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_bytes())]);
    Request { url: token_url.to_string(), headers: Vec::new(), body }
}

/// Reads a token endpoint's answer at `now`.
pub fn read_answer(status: u16, body: &[u8], now: u64) -> Result<Token, MintError> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    if status != 200 {
        let error = value
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .filter(|e| e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        return Err(MintError::Refused { status, error: error.map(str::to_string) });
    }
    let value = value.ok_or(MintError::Garbage("not JSON"))?;
    let token = value.get("access_token").and_then(Value::as_str).filter(|t| token_text_ok(t)).ok_or(MintError::Garbage("no access_token"))?;
    match value.get("token_type").and_then(Value::as_str) {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(MintError::Garbage("token_type is not bearer")),
    }
    let lifetime = match value.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_LIFETIME_S,
        Some(v) => v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).ok_or(MintError::Garbage("expires_in is not a number"))?,
    };
    if lifetime == 0 {
        return Err(MintError::Garbage("expires_in is 0"));
    }
    let refresh = match value.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().filter(|t| token_text_ok(t)).ok_or(MintError::Garbage("refresh_token is not a token"))?),
    };
    Ok(Token {
        value: Secret::new(token.as_bytes().to_vec()),
        expires_at: now.saturating_add(lifetime.min(MAX_LIFETIME_S)),
        refresh: refresh.map(|r| Secret::new(r.as_bytes().to_vec())),
    })
}

/// The fields of a Google service-account key file Airlock uses.
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    /// The PEM (PKCS#8) private key.
    pub private_key: Secret,
}

/// The token endpoint of a service account: the policy's `token_url`,
/// else the key file's `token_uri`, which must be https (the file is a
/// secret, but not one that may send the assertion in the clear).
pub fn google_token_url(google: &Google, sa: &ServiceAccount) -> Result<String, MintError> {
    match &google.token_url {
        Some(url) => Ok(url.clone()),
        None if sa.token_uri.starts_with("https://") => Ok(sa.token_uri.clone()),
        None => Err(MintError::Misconfigured("the key file's token_uri is not https".into())),
    }
}

/// Reads a service-account key file (`"type": "service_account"`).
pub fn service_account(json: &[u8]) -> Result<ServiceAccount, MintError> {
    let bad = |why: &str| MintError::Misconfigured(format!("not a service-account key file: {why}"));
    let v: Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    if v.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err(bad("type is not service_account"));
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let client_email = text("client_email").ok_or_else(|| bad("no client_email"))?;
    let private_key = text("private_key").ok_or_else(|| bad("no private_key"))?;
    let token_uri = text("token_uri").unwrap_or("https://oauth2.googleapis.com/token");
    Ok(ServiceAccount {
        client_email: client_email.to_string(),
        private_key_id: text("private_key_id").map(str::to_string),
        token_uri: token_uri.to_string(),
        private_key: Secret::new(private_key.as_bytes().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(auth: ClientAuth) -> Client {
        Client {
            token_url: "https://auth.example/token".into(),
            client_id: "my client".into(),
            client_secret: None,
            scope: "read write".into(),
            audience: String::new(),
            auth,
        }
    }

    #[test]
    fn client_credentials_with_basic_and_body_auth() {
        let secret = Secret::new(b"s3:cr&t".to_vec());
        let r = client_credentials(&client(ClientAuth::Basic), &secret);
        assert_eq!(r.body, "grant_type=client_credentials&scope=read%20write");
        assert_eq!(r.headers, vec![("authorization", format!("Basic {}", STANDARD.encode("my%20client:s3%3Acr%26t")))]);
        let r = client_credentials(&client(ClientAuth::Body), &secret);
        assert_eq!(r.body, "grant_type=client_credentials&scope=read%20write&client_id=my%20client&client_secret=s3%3Acr%26t");
        assert!(r.headers.is_empty());
    }

    #[test]
    fn refresh_of_a_public_client_names_it() {
        let rt = Secret::new(b"rt-1".to_vec());
        let r = refresh(&Client { scope: String::new(), audience: "api".into(), ..client(ClientAuth::Basic) }, &rt, None);
        assert_eq!(r.body, "grant_type=refresh_token&refresh_token=rt-1&audience=api&client_id=my%20client");
        assert!(r.headers.is_empty());
        let j = jwt_bearer("https://oauth2.googleapis.com/token", "a.b.c");
        assert_eq!(j.body, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c");
    }

    #[test]
    fn reads_answers() {
        let t = read_answer(200, br#"{"access_token":"at","token_type":"Bearer","expires_in":600,"refresh_token":"rt2"}"#, 1_000).unwrap();
        assert_eq!((t.value.expose(), t.expires_at), (&b"at"[..], 1_600));
        assert_eq!(t.refresh.unwrap().expose(), b"rt2");
        let t = read_answer(200, br#"{"access_token":"at","expires_in":"30"}"#, 0).unwrap();
        assert_eq!((t.expires_at, t.refresh.is_none()), (30, true));
        assert_eq!(read_answer(200, br#"{"access_token":"at"}"#, 0).unwrap().expires_at, DEFAULT_LIFETIME_S);
        assert_eq!(read_answer(200, br#"{"access_token":"at","expires_in":999999999}"#, 0).unwrap().expires_at, MAX_LIFETIME_S);
        assert_eq!(
            read_answer(400, br#"{"error":"invalid_grant","error_description":"reused rt-1"}"#, 0).err(),
            Some(MintError::Refused { status: 400, error: Some("invalid_grant".into()) })
        );
        assert_eq!(read_answer(500, b"<html>", 0).err(), Some(MintError::Refused { status: 500, error: None }));
        assert_eq!(read_answer(401, br#"{"error":"Evil <b>"}"#, 0).err(), Some(MintError::Refused { status: 401, error: None }));
        for bad in [
            &b"garbage"[..],
            br#"{}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"at","token_type":"mac"}"#,
            br#"{"access_token":"at","expires_in":0}"#,
            br#"{"access_token":"at","expires_in":-5}"#,
            br#"{"access_token":"at","refresh_token":7}"#,
        ] {
            assert!(matches!(read_answer(200, bad, 0), Err(MintError::Garbage(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn service_account_files() {
        let ok = br#"{"type":"service_account","client_email":"sa@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n","private_key_id":"kid1"}"#;
        let sa = service_account(ok).unwrap();
        assert_eq!(
            (sa.client_email.as_str(), sa.token_uri.as_str(), sa.private_key_id.as_deref()),
            ("sa@p.iam.gserviceaccount.com", "https://oauth2.googleapis.com/token", Some("kid1"))
        );
        let google = Google { scopes: vec!["s".into()], token_url: None };
        assert_eq!(google_token_url(&google, &sa).unwrap(), "https://oauth2.googleapis.com/token");
        let plain = service_account(br#"{"type":"service_account","client_email":"e","private_key":"k","token_uri":"http://x"}"#).unwrap();
        assert!(matches!(google_token_url(&google, &plain), Err(MintError::Misconfigured(_))));
        let pinned = Google { token_url: Some("http://127.0.0.1:1/token".into()), ..google };
        assert_eq!(google_token_url(&pinned, &plain).unwrap(), "http://127.0.0.1:1/token");
        for bad in [&b"{"[..], br#"{"type":"authorized_user"}"#, br#"{"type":"service_account","private_key":"k"}"#] {
            match service_account(bad) {
                Err(MintError::Misconfigured(why)) => assert!(!why.contains("MII")),
                _ => panic!("{}", String::from_utf8_lossy(bad)),
            }
        }
    }
}
