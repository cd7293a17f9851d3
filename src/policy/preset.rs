//! Vendor presets: a tool that says `"preset": "openai"` gets the origin,
//! the credential's placement, the vendor headers its SDK sends, rules per
//! level and timeouts of that API. Anything the tool states itself wins:
//! its origin or service, its credential placement, its rules (which then
//! replace the preset's), its timeouts; its `forward_headers` are added to
//! the preset's.
//!
//! Presets only fill the tool's JSON in before it is read, so a preset
//! tool is checked exactly like one written out by hand.

use serde_json::{json, Map, Value};

use crate::level::Level;

pub(super) const UNKNOWN: &str = "unknown preset; use openai, anthropic, google-genai, github, stripe or git";

struct Preset {
    name: &'static str,
    origin: &'static str,
    /// The credential's placement: `(inject, header, username)`.
    inject: &'static str,
    header: Option<&'static str>,
    username: Option<&'static str>,
    forward_headers: &'static [&'static str],
    rules: &'static [PresetRule],
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    pass_server_errors: bool,
}

/// Long model calls: a non-streaming completion may take minutes, and a
/// stream may pause between tokens while the model works.
const MODEL_TIMEOUT_MS: u64 = 600_000;
const MODEL_IDLE_MS: u64 = 300_000;

const PRESETS: &[Preset] = &[
    Preset {
        name: "openai",
        origin: "https://api.openai.com",
        inject: "bearer",
        header: None,
        username: None,
        forward_headers: &["openai-beta", "openai-organization", "openai-project"],
        rules: API_RULES,
        timeout_ms: Some(MODEL_TIMEOUT_MS),
        idle_timeout_ms: Some(MODEL_IDLE_MS),
        pass_server_errors: true,
    },
    Preset {
        name: "anthropic",
        origin: "https://api.anthropic.com",
        inject: "header",
        header: Some("x-api-key"),
        username: None,
        forward_headers: &["anthropic-version", "anthropic-beta"],
        rules: API_RULES,
        timeout_ms: Some(MODEL_TIMEOUT_MS),
        idle_timeout_ms: Some(MODEL_IDLE_MS),
        pass_server_errors: true,
    },
    Preset {
        name: "google-genai",
        origin: "https://generativelanguage.googleapis.com",
        inject: "header",
        header: Some("x-goog-api-key"),
        username: None,
        forward_headers: &["x-goog-api-client"],
        rules: API_RULES,
        timeout_ms: Some(MODEL_TIMEOUT_MS),
        idle_timeout_ms: Some(MODEL_IDLE_MS),
        pass_server_errors: true,
    },
    Preset {
        name: "github",
        origin: "https://api.github.com",
        inject: "bearer",
        header: None,
        username: None,
        forward_headers: &["x-github-api-version"],
        rules: API_RULES,
        timeout_ms: None,
        idle_timeout_ms: None,
        pass_server_errors: false,
    },
    Preset {
        name: "stripe",
        origin: "https://api.stripe.com",
        inject: "bearer",
        header: None,
        username: None,
        forward_headers: &["stripe-version", "stripe-account"],
        rules: API_RULES,
        timeout_ms: Some(80_000),
        idle_timeout_ms: None,
        pass_server_errors: true,
    },
    Preset {
        name: "git",
        origin: "https://github.com",
        inject: "basic",
        header: None,
        username: Some("x-access-token"),
        forward_headers: &["git-protocol"],
        rules: GIT_RULES,
        timeout_ms: Some(300_000),
        idle_timeout_ms: Some(120_000),
        pass_server_errors: false,
    },
];

/// A preset rule: methods, path, a required query parameter, level.
type PresetRule = (&'static [&'static str], &'static str, Option<(&'static str, &'static str)>, Level);

/// Plain HTTP APIs: reading is `read`, creating and changing is `write`,
/// deleting is `admin`.
const API_RULES: &[PresetRule] =
    &[(&["GET", "HEAD"], "/**", None, Level::Read), (&["POST", "PUT", "PATCH"], "/**", None, Level::Write), (&["DELETE"], "/**", None, Level::Admin)];

/// Git smart HTTP (`/{owner}/{repo}[.git]/…`): fetching and cloning is
/// `read` (the upload-pack service), pushing is `write` (receive-pack),
/// told apart already at the ref advertisement by its `service` parameter.
const GIT_RULES: &[PresetRule] = &[
    (&["GET"], "/*/*/info/refs", Some(("service", "git-upload-pack")), Level::Read),
    (&["POST"], "/*/*/git-upload-pack", None, Level::Read),
    (&["GET"], "/*/*/info/refs", Some(("service", "git-receive-pack")), Level::Write),
    (&["POST"], "/*/*/git-receive-pack", None, Level::Write),
];

/// The preset's own name, if there is one called `name`.
pub(super) fn name(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.name == name).map(|p| p.name)
}

/// Fills the tool's JSON in from the preset `name`; `false` if there is
/// no such preset.
pub(super) fn apply(name: &str, tool: &mut Map<String, Value>) -> bool {
    let Some(preset) = PRESETS.iter().find(|p| p.name == name) else {
        return false;
    };
    let absent = |tool: &Map<String, Value>, key: &str| tool.get(key).is_none_or(Value::is_null);
    if absent(tool, "origin") && absent(tool, "service") {
        tool.insert("origin".into(), preset.origin.into());
    }
    if let Some(Value::Object(credential)) = tool.get_mut("credential") {
        if absent(credential, "inject") {
            credential.insert("inject".into(), preset.inject.into());
            for (key, value) in [("header", preset.header), ("username", preset.username)] {
                if let (Some(value), true) = (value, absent(credential, key)) {
                    credential.insert(key.into(), value.into());
                }
            }
        }
    }
    if absent(tool, "forward_headers") {
        tool.insert("forward_headers".into(), Value::Array(Vec::new()));
    }
    if let Some(Value::Array(headers)) = tool.get_mut("forward_headers") {
        for header in preset.forward_headers {
            if !headers.iter().any(|h| h.as_str().is_some_and(|h| h.eq_ignore_ascii_case(header))) {
                headers.push((*header).into());
            }
        }
    }
    if absent(tool, "rules") && absent(tool, "mcp") {
        let rules = preset.rules.iter().map(|(methods, path, query, level)| {
            let query: Map<String, Value> = query.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
            json!({ "methods": methods, "path": path, "query": query, "level": level.as_str() })
        });
        tool.insert("rules".into(), Value::Array(rules.collect()));
    }
    let defaults = [
        ("timeout_ms", preset.timeout_ms.map(Value::from)),
        ("idle_timeout_ms", preset.idle_timeout_ms.map(Value::from)),
        ("pass_server_errors", Some(preset.pass_server_errors.into())),
    ];
    for (key, value) in defaults {
        if let (Some(value), true) = (value, absent(tool, key)) {
            tool.insert(key.into(), value);
        }
    }
    true
}
