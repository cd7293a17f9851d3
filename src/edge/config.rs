//! Configuration read from the platform: the policy and signing keys
//! (parsed once per isolate, again only when the raw value changes), the
//! admin key, credentials with their redaction spellings, randomness.
//! Secrets are worker secrets or Secrets Store bindings ([`super::secrets`]),
//! read at each request.
//!
//! Must never: log or return a secret's value; errors name the secret only.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use super::secrets::secret_value;
use crate::error::Error;
use crate::inject::PreparedCredential;
use crate::policy::Policy;
use crate::secret::Secret;
use crate::token::KeyRing;

const POLICY_VAR: &str = "AIRLOCK_POLICY";
pub const ADMIN_KEY_SECRET: &str = "AIRLOCK_ADMIN_KEY";
const SIGNING_KEYS_SECRET: &str = "AIRLOCK_SIGNING_KEYS";

type Cached<T> = RefCell<Option<(String, Result<Rc<T>, Error>)>>;

thread_local! {
    // Parsed once per isolate; re-parsed only if the raw value changes.
    static POLICY: Cached<Policy> = const { RefCell::new(None) };
    static KEYS: Cached<KeyRing> = const { RefCell::new(None) };
}

fn cached<T>(cell: &'static std::thread::LocalKey<Cached<T>>, raw: String, parse: impl FnOnce(&str) -> Result<T, Error>) -> Result<Rc<T>, Error> {
    cell.with(|c| {
        if let Some((seen, value)) = c.borrow().as_ref() {
            if *seen == raw {
                return value.clone();
            }
        }
        let value = parse(&raw).map(Rc::new);
        *c.borrow_mut() = Some((raw, value.clone()));
        value
    })
}

pub fn load_policy(env: &Env) -> Result<Rc<Policy>, Error> {
    cached(&POLICY, policy_text(env)?, |s| Policy::parse(s).map_err(|e| Error::PolicyInvalid(e.to_string())))
}

/// The policy as configured (JSON text).
pub fn policy_text(env: &Env) -> Result<String, Error> {
    Ok(match env.var(POLICY_VAR) {
        Ok(v) => v.to_string(),
        // A TOML table in [vars] arrives as an object, not a string.
        // Read as JSON by the runtime: no second deserializer in the module.
        Err(_) => match js_sys::Reflect::get(env, &POLICY_VAR.into()).ok().filter(|v| v.is_object()).and_then(|v| js_sys::JSON::stringify(&v).ok()) {
            Some(v) => String::from(v),
            None => return Err(Error::PolicyInvalid(format!("{POLICY_VAR} is not set"))),
        },
    })
}

pub async fn load_keys(env: &Env) -> Result<Rc<KeyRing>, Error> {
    Ok(load_keys_text(env).await?.0)
}

/// The key ring and its text as configured (for the session object that
/// signs a new session's token).
pub async fn load_keys_text(env: &Env) -> Result<(Rc<KeyRing>, String), Error> {
    let raw = secret_value(env, SIGNING_KEYS_SECRET).await.ok_or_else(|| Error::Misconfigured(format!("secret {SIGNING_KEYS_SECRET} is not set")))?;
    let ring = cached(&KEYS, raw.clone(), |s| KeyRing::parse(s).map_err(|e| Error::Misconfigured(format!("{SIGNING_KEYS_SECRET}: {e}"))))?;
    Ok((ring, raw))
}

thread_local! {
    // Credentials with their redaction encodings, per secret name; rebuilt
    // when the platform hands out a different value (rotation).
    static CREDENTIALS: RefCell<Vec<(String, String, Rc<PreparedCredential>)>> = const { RefCell::new(Vec::new()) };
}

/// The credential in secret `name`, prepared for injection and redaction.
pub async fn read_credential(env: &Env, name: &str) -> Option<Rc<PreparedCredential>> {
    let value = secret_value(env, name).await?;
    CREDENTIALS.with(|c| {
        let mut cache = c.borrow_mut();
        if let Some((_, _, prepared)) = cache.iter().find(|(n, v, _)| n == name && *v == value) {
            return Some(prepared.clone());
        }
        cache.retain(|(n, _, _)| n != name);
        let prepared = Rc::new(PreparedCredential::new(Secret::from_string(value.clone())));
        cache.push((name.to_string(), value, prepared.clone()));
        Some(prepared)
    })
}

/// A secret that must be a worker secret (read where the request path
/// cannot wait: the approval link key).
pub fn worker_secret(env: &Env, name: &str) -> Option<Secret> {
    env.var(name).ok().map(|v| Secret::from_string(v.to_string()))
}

pub async fn read_secret(env: &Env, name: &str) -> Result<Secret, Error> {
    secret_value(env, name).await.map(Secret::from_string).ok_or_else(|| Error::Misconfigured(format!("secret {name} is not set")))
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| Error::Internal("CSPRNG unavailable".into()))?;
    Ok(buf)
}
