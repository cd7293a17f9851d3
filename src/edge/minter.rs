//! The minting half of upstream credentials, run by the cache object
//! (the `airlock-state` script, so the request path's module carries none
//! of it): RS256 signatures and AES-GCM sealing with the runtime's
//! WebCrypto, and the token endpoint's fetch under a timeout. What to send
//! and how to read the answer is decided in [`crate::upstream`].
//!
//! Must never: log, or return in an error, a token, a refresh token or a
//! root secret (errors are [`MintError`]s: names and statuses only).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::{select, Either};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use crate::level::Level;
use crate::secret::Secret;
use crate::upstream::{github, jwt, oauth, Kind, MintError, Token};

/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 64 * 1024;

fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).ok()?;
    Some(buf)
}

/// A random lease id.
pub fn lease_id() -> Option<String> {
    random_bytes::<16>().map(|b| crate::hex::hex(&b))
}

/// `github`: the access-token request body and the level it was planned for.
pub async fn mint(
    env: &Env,
    kind: &Kind,
    root: &Secret,
    refresh: Option<Secret>,
    github: (Option<&str>, Level),
    timeout_ms: u64,
    now_s: u64,
) -> Result<Token, MintError> {
    let (body, level) = github;
    let misconfigured = |why: &str| MintError::Misconfigured(why.to_string());
    match kind {
        Kind::GithubApp(app) => {
            let pem = std::str::from_utf8(root.expose()).map_err(|_| misconfigured("the App key is not text"))?;
            let input = jwt::signing_input(None, &jwt::github_app_claims(&app.app_id, now_s));
            let assertion = rs256(pem, &input).await?;
            let url = format!("{}/app/installations/{}/access_tokens", app.api, app.installation_id);
            let headers = vec![
                ("authorization", format!("Bearer {assertion}")),
                ("accept", "application/vnd.github+json".to_string()),
                ("x-github-api-version", "2022-11-28".to_string()),
                ("content-type", "application/json".to_string()),
            ];
            let (status, answer) = post(&url, &headers, body.unwrap_or("{}"), timeout_ms).await?;
            let asked = &app.permissions[github::level_index(level)];
            github::read_answer(status, &answer, asked)
        }
        Kind::OauthClient(client) => send(oauth::client_credentials(client, root), timeout_ms, now_s).await,
        Kind::OauthRefresh(client) => {
            let client_secret = match &client.client_secret {
                Some(name) => Some(Secret::from_string(env.var(name).map_err(|_| MintError::Misconfigured(format!("secret {name} is not set")))?.to_string())),
                None => None,
            };
            let refresh = refresh.unwrap_or_else(|| Secret::new(root.expose().to_vec()));
            send(oauth::refresh(client, &refresh, client_secret.as_ref()), timeout_ms, now_s).await
        }
        Kind::GoogleServiceAccount(google) => {
            let sa = oauth::service_account(root.expose())?;
            let token_url = oauth::google_token_url(google, &sa)?;
            let pem = std::str::from_utf8(sa.private_key.expose()).map_err(|_| misconfigured("the private key is not text"))?;
            let input = jwt::signing_input(sa.private_key_id.as_deref(), &jwt::google_claims(&sa.client_email, &google.scopes, &token_url, now_s));
            let assertion = rs256(pem, &input).await?;
            send(oauth::jwt_bearer(&token_url, &assertion), timeout_ms, now_s).await
        }
    }
}

async fn send(request: oauth::Request, timeout_ms: u64, now_s: u64) -> Result<Token, MintError> {
    let mut headers = request.headers;
    headers.push(("content-type", "application/x-www-form-urlencoded".to_string()));
    headers.push(("accept", "application/json".to_string()));
    let (status, answer) = post(&request.url, &headers, &request.body, timeout_ms).await?;
    oauth::read_answer(status, &answer, now_s)
}

/// POSTs to a token endpoint; its status and (capped) body, within `timeout_ms`.
async fn post(url: &str, headers: &[(&str, String)], body: &str, timeout_ms: u64) -> Result<(u16, Vec<u8>), MintError> {
    let unreachable = |why: &str| MintError::Unreachable(why.to_string());
    let h = Headers::new();
    for (name, value) in headers {
        h.set(name, value).map_err(|_| unreachable("request header refused"))?;
    }
    let _ = h.set("user-agent", "airlock");
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(h).with_body(Some(JsValue::from_str(body)));
    let request = Request::new_with_init(url, &init).map_err(|_| unreachable("URL refused"))?;
    let exchange = async {
        let response = Fetch::Request(request).send().await.map_err(|_| unreachable("could not be reached"))?;
        let mut response = response;
        let answer = response.bytes().await.map_err(|_| unreachable("answer unreadable"))?;
        Ok((response.status_code(), answer))
    };
    let timer = worker::Delay::from(Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(exchange);
    futures_util::pin_mut!(timer);
    match select(exchange, timer).await {
        Either::Left((Ok((_, answer)), _)) if answer.len() > MAX_ANSWER => Err(MintError::Garbage("answer too large")),
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(MintError::Unreachable(format!("did not answer within {timeout_ms} ms"))),
    }
}

// ---- WebCrypto --------------------------------------------------------------

fn subtle() -> Option<JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    Reflect::get(&crypto, &"subtle".into()).ok()
}

/// `crypto.subtle[method](...args)`, awaited.
async fn subtle_call(method: &str, args: &[JsValue]) -> Option<JsValue> {
    let subtle = subtle()?;
    let f: js_sys::Function = Reflect::get(&subtle, &method.into()).ok()?.dyn_into().ok()?;
    let promise: js_sys::Promise = f.apply(&subtle, &args.iter().collect::<Array>()).ok()?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn usages(list: &[&str]) -> JsValue {
    list.iter().map(|u| JsValue::from_str(u)).collect::<Array>().into()
}

fn algorithm(json: &str) -> JsValue {
    js_sys::JSON::parse(json).unwrap_or(JsValue::NULL)
}

/// An RS256 JWT over `input`, signed with the RSA key in `pem` by WebCrypto.
async fn rs256(pem: &str, input: &str) -> Result<String, MintError> {
    let pkcs8 = jwt::private_key_pkcs8(pem).map_err(|e| MintError::Misconfigured(e.0.to_string()))?;
    let alg = algorithm(r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-256"}"#);
    let key = subtle_call("importKey", &["pkcs8".into(), bytes(&pkcs8), alg.clone(), false.into(), usages(&["sign"])])
        .await
        .ok_or_else(|| MintError::Misconfigured("the private key is not an RSA key WebCrypto imports".into()))?;
    let signature = subtle_call("sign", &[alg, key, bytes(input.as_bytes())]).await.ok_or_else(|| MintError::Misconfigured("signing failed".into()))?;
    Ok(jwt::finish(input, &Uint8Array::new(&signature).to_vec()))
}

/// The AES-GCM parameters for `iv`, bound to the cache's name.
fn gcm(iv: &[u8], cache: &str) -> JsValue {
    let params = Object::new();
    let _ = Reflect::set(&params, &"name".into(), &"AES-GCM".into());
    let _ = Reflect::set(&params, &"iv".into(), &bytes(iv));
    let _ = Reflect::set(&params, &"additionalData".into(), &bytes(cache.as_bytes()));
    params.into()
}

async fn aes_key(key: &[u8; 32]) -> Option<JsValue> {
    subtle_call("importKey", &["raw".into(), bytes(key), "AES-GCM".into(), false.into(), usages(&["encrypt", "decrypt"])]).await
}

/// `base64url(iv ‖ AES-256-GCM(value))`, the cache's name as associated
/// data (an entry copied to another cache does not open).
pub async fn seal(key: &[u8; 32], cache: &str, value: &[u8]) -> Option<String> {
    let iv = random_bytes::<12>()?;
    let sealed = subtle_call("encrypt", &[gcm(&iv, cache), aes_key(key).await?, bytes(value)]).await?;
    let mut out = iv.to_vec();
    out.extend(Uint8Array::new(&sealed).to_vec());
    Some(URL_SAFE_NO_PAD.encode(out))
}

pub async fn open(key: &[u8; 32], cache: &str, sealed: &str) -> Option<Secret> {
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (iv, ciphertext) = (raw.get(..12)?, raw.get(12..)?);
    let plain = subtle_call("decrypt", &[gcm(iv, cache), aes_key(key).await?, bytes(ciphertext)]).await?;
    Some(Secret::new(Uint8Array::new(&plain).to_vec()))
}
