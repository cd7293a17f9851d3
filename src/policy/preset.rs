//! Vendor presets: a tool that says `"preset": "openai"` gets the origin,
//! the credential's placement, the vendor headers its SDK sends, rules per
//! level and timeouts of that API. Anything the tool states itself wins:
//! its origin or service, its credential placement, its rules (which then
//! replace the preset's), its timeouts; its `forward_headers` are added to
//! the preset's.
//!
//! Presets only fill the raw policy in before validation, so a preset
//! tool is checked exactly like one written out by hand.

use super::raw::{RawInject, RawRule, RawTool};
use crate::level::Level;

pub(super) const UNKNOWN: &str = "unknown preset; use openai, anthropic, google-genai, github, stripe or git";

struct Preset {
    name: &'static str,
    origin: &'static str,
    /// The credential's placement: `(inject, header, username)`.
    inject: RawInject,
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
        inject: RawInject::Bearer,
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
        inject: RawInject::Header,
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
        inject: RawInject::Header,
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
        inject: RawInject::Bearer,
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
        inject: RawInject::Bearer,
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
        inject: RawInject::Basic,
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
const API_RULES: &[PresetRule] = &[
    (&["GET", "HEAD"], "/**", None, Level::Read),
    (&["POST", "PUT", "PATCH"], "/**", None, Level::Write),
    (&["DELETE"], "/**", None, Level::Admin),
];

/// Git smart HTTP (`/{owner}/{repo}[.git]/…`): fetching and cloning is
/// `read` (the upload-pack service), pushing is `write` (receive-pack),
/// told apart already at the ref advertisement by its `service` parameter.
const GIT_RULES: &[PresetRule] = &[
    (&["GET"], "/*/*/info/refs", Some(("service", "git-upload-pack")), Level::Read),
    (&["POST"], "/*/*/git-upload-pack", None, Level::Read),
    (&["GET"], "/*/*/info/refs", Some(("service", "git-receive-pack")), Level::Write),
    (&["POST"], "/*/*/git-receive-pack", None, Level::Write),
];

/// Fills `tool` in from the preset `name`; `None` if there is no such
/// preset.
pub(super) fn apply(name: &str, tool: &mut RawTool) -> Option<&'static str> {
    let preset = PRESETS.iter().find(|p| p.name == name)?;
    if tool.origin.is_none() && tool.service.is_none() {
        tool.origin = Some(preset.origin.to_string());
    }
    if let Some(credential) = tool.credential.as_mut().filter(|c| c.inject.is_none()) {
        credential.inject = Some(preset.inject);
        credential.header = credential.header.take().or(preset.header.map(str::to_string));
        credential.username = credential.username.take().or(preset.username.map(str::to_string));
    }
    for header in preset.forward_headers {
        if !tool.forward_headers.iter().any(|h| h.eq_ignore_ascii_case(header)) {
            tool.forward_headers.push(header.to_string());
        }
    }
    if tool.rules.is_empty() && tool.mcp.is_none() {
        tool.rules = preset
            .rules
            .iter()
            .map(|(methods, path, query, level)| RawRule {
                methods: methods.iter().map(|m| m.to_string()).collect(),
                path: path.to_string(),
                query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                level: *level,
                approval: false,
            })
            .collect();
    }
    tool.timeout_ms = tool.timeout_ms.or(preset.timeout_ms);
    tool.idle_timeout_ms = tool.idle_timeout_ms.or(preset.idle_timeout_ms);
    tool.pass_server_errors = tool.pass_server_errors.or(Some(preset.pass_server_errors));
    Some(preset.name)
}
