//! Secrets as both scripts read them: a worker secret (or variable) of the
//! name, else a Cloudflare Secrets Store binding of the name
//! (`[[secrets_store_secrets]]`), whose value is fetched at each read so a
//! rotation in the store reaches the next request without a redeploy.
//!
//! Must never: log or return in an error a secret's value.

use js_sys::{Array, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

/// The value of secret `name`: the worker secret if there is one, else the
/// Secrets Store binding's. `None` if neither is set.
pub async fn secret_value(env: &Env, name: &str) -> Option<String> {
    match env.var(name) {
        Ok(v) => Some(v.to_string()),
        Err(_) => secrets_store(env, name).await,
    }
}

/// The value of a Secrets Store binding `name`; `None` if there is no such
/// binding or no value.
async fn secrets_store(env: &Env, name: &str) -> Option<String> {
    let binding = Reflect::get(env, &name.into()).ok().filter(|b| b.is_object())?;
    // The binding is an RPC stub: `get` is called through `Reflect.apply`,
    // since the stub reads `get.call` as another remote method.
    let get = Reflect::get(&binding, &"get".into()).ok().filter(JsValue::is_function)?.unchecked_into::<js_sys::Function>();
    let promise = js_sys::Promise::resolve(&Reflect::apply(&get, &binding, &Array::new()).ok()?);
    JsFuture::from(promise).await.ok()?.as_string()
}
