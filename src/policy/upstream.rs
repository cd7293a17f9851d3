//! The policy's `credential.kind`: credentials Airlock mints (see
//! [`crate::upstream`]). Absent or `"static"`: the secret is set on the
//! request as it is, as before.

use super::{err, PolicyError};
use crate::json::Obj;
use crate::level::Level;
use crate::upstream::github::{self, default_permissions, permission_name_ok};
use crate::upstream::oauth::{Client, ClientAuth, Google};
use crate::upstream::{Kind, Permissions, Upstream, DEFAULT_TIMEOUT_MS};

/// A token endpoint URL: https (http only with the tool's `allow_http`),
/// no credentials, no fragment.
fn token_url(c: &Obj<'_>, key: &'static str, url: &str, allow_http: bool) -> Result<String, PolicyError> {
    let parsed = url::Url::parse(url).map_err(|_| err(c.field(key), "must be a URL"))?;
    let scheme_ok = parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http");
    if !scheme_ok || parsed.host_str().is_none() || !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(err(c.field(key), "must be an https URL without credentials (http only with \"allow_http\")"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn text_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn permissions(c: &mut Obj<'_>) -> Result<[Permissions; 3], PolicyError> {
    let mut out = [default_permissions(Level::Read), default_permissions(Level::Write), default_permissions(Level::Write)];
    let Some(mut p) = c.obj("permissions")? else { return Ok(out) };
    for (level, key) in [(Level::Read, "read"), (Level::Write, "write"), (Level::Admin, "admin")] {
        let Some(map) = p.obj(key)? else { continue };
        let mut set = Permissions::new();
        for (name, access) in map.map {
            let f = map.field(name);
            if !permission_name_ok(name) {
                return Err(err(f, "not a GitHub permission name"));
            }
            match access.as_str() {
                Some(a @ ("read" | "write")) => set.insert(name.clone(), a.into()),
                _ => return Err(err(f, "must be \"read\" or \"write\"")),
            };
        }
        out[github::level_index(level)] = set;
    }
    p.done()?;
    Ok(out)
}

/// Reads the kind and its fields from `c`; `None` for a static credential.
pub(super) fn read(c: &mut Obj<'_>, allow_http: bool) -> Result<Option<Upstream>, PolicyError> {
    let kind = match c.str("kind")? {
        None | Some("static") => return Ok(None),
        Some(k) => k,
    };
    let timeout_ms = c.u64("timeout_ms")?.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(500..=60_000).contains(&timeout_ms) {
        return Err(err(c.field("timeout_ms"), "must be between 500 and 60000"));
    }
    let required = |c: &mut Obj<'_>, key: &'static str| -> Result<String, PolicyError> {
        let v = c.required_str(key)?;
        if !text_ok(v) {
            return Err(err(c.field(key), "must be 1-512 printable ASCII characters"));
        }
        Ok(v.to_string())
    };
    let optional = |c: &mut Obj<'_>, key: &'static str| -> Result<String, PolicyError> {
        match c.str(key)? {
            Some(v) if !text_ok(v) => Err(err(c.field(key), "must be 1-512 printable ASCII characters")),
            v => Ok(v.unwrap_or_default().to_string()),
        }
    };
    let kind = match kind {
        "github_app" => {
            let app_id = required(c, "app_id")?;
            let installation_id = c.u64("installation_id")?.filter(|&i| i > 0).ok_or_else(|| err(c.field("installation_id"), "is required (a number)"))?;
            let owner = required(c, "owner")?;
            if !github::repo_ok(&format!("{owner}/x")) {
                return Err(err(c.field("owner"), "must be a GitHub account name"));
            }
            let api = match c.str("api")? {
                Some(u) => token_url(c, "api", u, allow_http)?,
                None => "https://api.github.com".to_string(),
            };
            Kind::GithubApp(github::App { app_id, installation_id, owner, api, permissions: permissions(c)? })
        }
        "oauth_client_credentials" | "oauth_refresh_token" => {
            let url = c.required_str("token_url")?;
            let token_url = token_url(c, "token_url", url, allow_http)?;
            let client_id = required(c, "client_id")?;
            let client_secret = match (kind, c.str("client_secret")?) {
                (_, None) => None,
                ("oauth_refresh_token", Some(name)) if super::is_binding_name(name) => Some(name.to_string()),
                ("oauth_refresh_token", Some(_)) => return Err(err(c.field("client_secret"), "must be a secret binding name")),
                _ => return Err(err(c.field("client_secret"), "the client secret of client credentials is \"secret\"")),
            };
            let auth = match c.str("client_auth")? {
                None | Some("basic") => ClientAuth::Basic,
                Some("body") => ClientAuth::Body,
                Some(_) => return Err(err(c.field("client_auth"), "must be \"basic\" or \"body\"")),
            };
            let client = Client { token_url, client_id, client_secret, scope: optional(c, "scope")?, audience: optional(c, "audience")?, auth };
            if kind == "oauth_refresh_token" {
                Kind::OauthRefresh(client)
            } else {
                Kind::OauthClient(client)
            }
        }
        "google_service_account" => {
            let scopes = c.strings("scopes")?;
            if scopes.is_empty() || scopes.iter().any(|s| !text_ok(s) || s.contains(' ')) {
                return Err(err(c.field("scopes"), "list 1 or more scopes (URLs without spaces)"));
            }
            let token_url = match c.str("token_url")? {
                Some(u) => Some(token_url(c, "token_url", u, allow_http)?),
                None => None,
            };
            Kind::GoogleServiceAccount(Google { scopes, token_url })
        }
        _ => {
            return Err(err(
                c.field("kind"),
                "must be \"static\", \"github_app\", \"oauth_client_credentials\", \"oauth_refresh_token\" or \"google_service_account\"",
            ))
        }
    };
    Ok(Some(Upstream { kind, timeout_ms, raw: serde_json::Value::Object(c.map.clone()).to_string() }))
}
