use super::*;
use crate::egress::HostPattern;

pub(crate) const GOOD: &str = r#"{
  "version": 1,
  "audience": "airlock-test",
  "limits": { "max_session_ttl_seconds": 600 },
  "tools": {
    "github": {
      "origin": "https://api.github.com/",
      "credential": { "secret": "GITHUB_TOKEN", "inject": "bearer" },
      "forward_headers": ["X-GitHub-Api-Version"],
      "rules": [
        { "methods": ["GET", "HEAD"], "path": "/repos/*/*/**", "level": "read" },
        { "methods": ["POST"], "path": "/repos/*/*/issues", "level": "write" },
        { "methods": ["DELETE"], "path": "/repos/*/*", "level": "admin" }
      ]
    },
    "crm": {
      "service": "CRM_TUNNEL",
      "credential": { "secret": "CRM_KEY", "inject": "header", "header": "X-Api-Key", "format": "Key {secret}" },
      "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ]
    }
  }
}"#;

#[test]
fn parses_a_good_policy() {
    let p = Policy::parse(GOOD).unwrap();
    assert_eq!(p.audience, "airlock-test");
    assert_eq!(p.limits.max_session_ttl_seconds, 600);
    assert_eq!(p.limits.upstream_timeout_ms, 30_000);
    let gh = p.tool("github").unwrap();
    assert_eq!(gh.origin, Origin { target: Target::Public, base: "https://api.github.com".into(), base_path: String::new() });
    assert_eq!(gh.forward_headers, vec!["x-github-api-version"]);
    let crm = p.tool("crm").unwrap();
    assert_eq!(crm.origin.target, Target::Service { binding: "CRM_TUNNEL".into() });
    assert_eq!(crm.origin.base, "https://crm.airlock.invalid");
    assert_eq!(crm.credential.as_ref().unwrap().placement, Placement::Header { name: "x-api-key".into(), prefix: "Key ".into(), suffix: String::new() });
    assert!(p.tool("nope").is_none());
}

fn with(path: &[&str], value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let mut cur = &mut v;
    for (i, key) in path.iter().enumerate() {
        if i + 1 == path.len() {
            if value.is_null() {
                cur.as_object_mut().unwrap().remove(*key);
            } else {
                cur[*key] = value.clone();
            }
            break;
        }
        cur = if let Ok(n) = key.parse::<usize>() { &mut cur[n] } else { &mut cur[*key] };
    }
    v.to_string()
}

#[test]
fn errors_name_the_field() {
    use serde_json::json;
    let table: Vec<(&str, String, &str)> = vec![
        ("not json", "{".into(), ""),
        ("unknown top-level field", with(&["extra"], json!(1)), "extra"),
        ("wrong version", with(&["version"], json!(2)), "version"),
        ("missing audience", with(&["audience"], serde_json::Value::Null), ""),
        ("bad level", with(&["tools", "github", "rules", "0", "level"], json!("superuser")), "tools.github.rules[0].level"),
        ("unknown rule field", with(&["tools", "github", "rules", "1", "approve"], json!(true)), "tools.github.rules[1]"),
        ("wait above 300", with(&["tools", "github", "rules", "1", "approval"], json!({"wait_seconds": 301})), "tools.github.rules[1].approval.wait_seconds"),
        ("unknown approval field", with(&["tools", "github", "rules", "1", "approval"], json!({"wait": 3})), "tools.github.rules[1].approval.wait"),
        ("approval not a flag", with(&["tools", "github", "rules", "1", "approval"], json!("yes")), "tools.github.rules[1].approval"),
        ("http webhook", with(&["approvals"], json!({"webhook": {"url": "http://hooks.example/x"}})), "approvals.webhook.url"),
        ("two destinations", with(&["approvals"], json!({"webhook": {"url": "https://h.example", "service": "HOOK"}})), "approvals.webhook"),
        ("bad binding", with(&["approvals"], json!({"webhook": {"service": "a-b"}})), "approvals.webhook.service"),
        ("bad secret name", with(&["approvals"], json!({"webhook_secret": "x y"})), "approvals.webhook_secret"),
        ("markup in page_url", with(&["approvals"], json!({"page_url": "https://a.example/\"><x"})), "approvals.page_url"),
        ("unknown approvals field", with(&["approvals"], json!({"hook": 1})), "approvals.hook"),
        ("lower-case method", with(&["tools", "github", "rules", "0", "methods"], json!(["get"])), "tools.github.rules[0].methods[0]"),
        ("no methods", with(&["tools", "github", "rules", "0", "methods"], json!([])), "tools.github.rules[0].methods"),
        ("relative path", with(&["tools", "github", "rules", "0", "path"], json!("repos/*")), "tools.github.rules[0].path"),
        ("** in the middle", with(&["tools", "github", "rules", "0", "path"], json!("/**/x")), "tools.github.rules[0].path"),
        ("partial star", with(&["tools", "github", "rules", "0", "path"], json!("/re*")), "tools.github.rules[0].path"),
        ("dot segment", with(&["tools", "github", "rules", "0", "path"], json!("/a/../b")), "tools.github.rules[0].path"),
        ("encoded literal", with(&["tools", "github", "rules", "0", "path"], json!("/a%2fb")), "tools.github.rules[0].path"),
        ("http origin", with(&["tools", "github", "origin"], json!("http://api.github.com")), "tools.github.origin"),
        ("origin with userinfo", with(&["tools", "github", "origin"], json!("https://u:p@api.github.com")), "tools.github.origin"),
        ("origin with query", with(&["tools", "github", "origin"], json!("https://api.github.com/?a=1")), "tools.github.origin"),
        ("ftp origin", with(&["tools", "github", "origin"], json!("ftp://x")), "tools.github.origin"),
        ("punycode origin", with(&["tools", "github", "origin"], json!("https://xn--ttgrxct7l.example.com")), "tools.github.origin"),
        ("encoded punycode origin", with(&["tools", "github", "origin"], json!("https://xn%2D-ttgrxct7l.example.com")), "tools.github.origin"),
        ("no origin", with(&["tools", "github", "origin"], serde_json::Value::Null), "tools.github"),
        ("bad binding", with(&["tools", "crm", "service"], json!("crm-tunnel")), "tools.crm.service"),
        ("no rules", with(&["tools", "github", "rules"], json!([])), "tools.github.rules"),
        ("forbidden forward header", with(&["tools", "github", "forward_headers"], json!(["Cookie"])), "tools.github.forward_headers[0]"),
        ("x-forwarded forward header", with(&["tools", "github", "forward_headers"], json!(["X-Forwarded-For"])), "tools.github.forward_headers[0]"),
        ("credential header forwarded", with(&["tools", "crm", "forward_headers"], json!(["x-api-key"])), "tools.crm.forward_headers[0]"),
        ("bad inject", with(&["tools", "github", "credential", "inject"], json!("cookie")), "tools.github.credential.inject"),
        ("bearer with header", with(&["tools", "github", "credential", "header"], json!("x")), "tools.github.credential.header"),
        ("format without secret", with(&["tools", "crm", "credential", "format"], json!("Key")), "tools.crm.credential.format"),
        ("credential into host", with(&["tools", "crm", "credential", "header"], json!("Host")), "tools.crm.credential.header"),
        ("secret name", with(&["tools", "github", "credential", "secret"], json!("github token")), "tools.github.credential.secret"),
        (
            "bad tool name",
            with(&["tools", "Bad Name"], json!({"origin": "https://x", "rules": [{"methods": ["GET"], "path": "/", "level": "read"}]})),
            "tools.Bad Name",
        ),
        ("ttl zero", with(&["limits", "max_session_ttl_seconds"], json!(0)), "limits.max_session_ttl_seconds"),
        ("unknown limit", with(&["limits", "max_rps"], json!(1)), "limits"),
        ("no tools", with(&["tools"], json!({})), "tools"),
        ("egress IP literal", with(&["egress"], json!({"hosts": ["169.254.169.254"]})), "egress.hosts[0]"),
        ("egress localhost", with(&["egress"], json!({"hosts": ["pypi.org", "localhost"]})), "egress.hosts[1]"),
        ("egress wildcard apex", with(&["egress"], json!({"hosts": ["*"]})), "egress.hosts[0]"),
        ("egress internal suffix", with(&["egress"], json!({"hosts": ["*.internal"]})), "egress.hosts[0]"),
        ("egress unknown entry field", with(&["egress"], json!({"hosts": [{"host": "pypi.org", "scheme": "http"}]})), "egress.hosts[0]"),
        ("egress port zero", with(&["egress"], json!({"hosts": [{"host": "pypi.org", "ports": [0]}]})), "egress.hosts[0].ports"),
        ("egress unknown field", with(&["egress"], json!({"allow": []})), "egress"),
        ("idle timeout", with(&["limits", "upstream_idle_timeout_ms"], json!(10)), "limits.upstream_idle_timeout_ms"),
        ("response cap zero", with(&["limits", "max_response_body_bytes"], json!(0)), "limits.max_response_body_bytes"),
        ("method-override header", with(&["tools", "github", "forward_headers"], json!(["X-HTTP-Method-Override"])), "tools.github.forward_headers[0]"),
        ("x-http-method header", with(&["tools", "github", "forward_headers"], json!(["accept", "x-http-method"])), "tools.github.forward_headers[1]"),
        ("x-method-override header", with(&["tools", "github", "forward_headers"], json!(["x-method-override"])), "tools.github.forward_headers[0]"),
        (
            "CGI spelling of the override header",
            with(&["tools", "github", "forward_headers"], json!(["x_http_method_override"])),
            "tools.github.forward_headers[0]",
        ),
        ("allow_range not a bool", with(&["tools", "github", "allow_range"], json!("yes")), "tools.github.allow_range"),
        ("allow_method_override not a bool", with(&["tools", "github", "allow_method_override"], json!(1)), "tools.github.allow_method_override"),
    ];
    for (what, json, field) in table {
        let e = Policy::parse(&json).expect_err(what);
        assert!(e.field.starts_with(field), "{what}: got field {:?} ({})", e.field, e.message);
        if !field.is_empty() {
            assert!(e.to_string().starts_with(field), "{what}: {e}");
        }
    }
}

#[test]
fn range_and_method_override_options() {
    use serde_json::json;
    let gh = Policy::parse(GOOD).unwrap().tool("github").unwrap().clone();
    assert!(!gh.allow_range && !gh.allow_method_override, "both default to off");
    let j = with(&["tools", "github", "allow_range"], json!(true));
    let j = {
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v["tools"]["github"]["allow_method_override"] = json!(true);
        v.to_string()
    };
    let p = Policy::parse(&j).unwrap();
    let gh = p.tool("github").unwrap();
    assert!(gh.allow_range && gh.allow_method_override);
    assert!(!p.tool("crm").unwrap().allow_range);
    // Even with the override allowed, the header is never forwarded:
    // headers are bound by neither proofs nor approvals.
    let j = {
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v["tools"]["github"]["forward_headers"] = json!(["X-HTTP-Method-Override"]);
        v.to_string()
    };
    assert_eq!(Policy::parse(&j).unwrap_err().field, "tools.github.forward_headers[0]");
}

#[test]
fn method_override_names() {
    for name in [
        "_method",
        "_METHOD",
        "_Method",
        "x-http-method-override",
        "X-HTTP-Method-Override",
        "x_http_method_override",
        "x-http-method",
        "X-Method-Override",
        "_HttpMethod",
        "_httpmethod",
        " _method",
        "  _method",
        ".method",
        "_method[]",
        "_method[x]",
        "_method[",
        "x-http-method-overr\u{131}de",
        "x-http-method-overr\u{130}de",
    ] {
        assert!(is_method_override_name(name.as_bytes()), "{name:?}");
    }
    for name in [
        "method",
        "methods",
        "_methods",
        "x-http-method-overrides",
        "x-method",
        "_method_",
        "[_method]",
        "",
        "q",
        "\u{ff3f}method",
        "_m\u{e9}thod",
        "http_method",
    ] {
        assert!(!is_method_override_name(name.as_bytes()), "{name:?}");
    }
}

#[test]
fn mcp_servers() {
    use serde_json::json;
    let j = with(
        &["tools", "crm", "mcp"],
        json!({"tools": {"search": "read", "delete": "admin"}, "resources": [{"prefix": "crm://accounts/", "level": "read"}], "prompts": {"brief": "read"}}),
    );
    let j = {
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v["tools"]["crm"].as_object_mut().unwrap().remove("rules");
        v.to_string()
    };
    let p = Policy::parse(&j).unwrap();
    let m = p.tool("crm").unwrap().mcp.as_ref().unwrap();
    assert_eq!(m.tools.get("delete"), Some(&Level::Admin));
    assert_eq!(m.default_tool, None, "unnamed tools are denied by default");
    assert_eq!(m.resources, vec![("crm://accounts/".to_string(), Level::Read)]);
    let bad = with(&["tools", "crm", "mcp"], json!({"tools": {"search": "root"}}));
    assert_eq!(Policy::parse(&bad).unwrap_err().field, "tools.crm.mcp.tools.search");
    let bad = with(&["tools", "crm", "mcp"], json!({"resources": [{"prefix": "", "level": "read"}]}));
    assert_eq!(Policy::parse(&bad).unwrap_err().field, "tools.crm.mcp.resources[0].prefix");
    let bad = with(&["tools", "crm", "mcp"], json!({"tool": {}}));
    assert!(Policy::parse(&bad).unwrap_err().field.starts_with("tools.crm.mcp"));
}

#[test]
fn mcp_tool_gates() {
    use serde_json::json;
    let mcp = |tools: serde_json::Value| {
        let j = with(&["tools", "crm", "mcp"], json!({ "tools": tools }));
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v["tools"]["crm"].as_object_mut().unwrap().remove("rules");
        Policy::parse(&v.to_string())
    };
    let p = mcp(json!({
        "search": "read",
        "pay": {"level": "admin", "approval": {"wait_seconds": 30}},
        "book": {"level": "write", "dedupe_seconds": 60},
        "plain": {"level": "write"}
    }))
    .unwrap();
    let m = p.tool("crm").unwrap().mcp.clone().unwrap();
    assert_eq!(m.tools.get("pay"), Some(&Level::Admin));
    assert_eq!(m.gate("pay"), Some(crate::mcp::McpGate { approval: true, wait_s: 30, dedupe_s: 0 }));
    assert_eq!(m.gate("book"), Some(crate::mcp::McpGate { approval: false, wait_s: 0, dedupe_s: 60 }));
    assert_eq!(m.gate("plain"), None, "an object with only a level gates nothing");
    assert_eq!(m.gate("search"), None);
    for (tools, field) in [
        (json!({"pay": {"approval": true}}), "tools.crm.mcp.tools.pay.level"),
        (json!({"pay": {"level": "admin", "approval": {"wait_seconds": 301}}}), "tools.crm.mcp.tools.pay.approval.wait_seconds"),
        (json!({"pay": {"level": "admin", "dedupe_seconds": 86401}}), "tools.crm.mcp.tools.pay.dedupe_seconds"),
        (json!({"pay": {"level": "admin", "dedupe": 5}}), "tools.crm.mcp.tools.pay"),
    ] {
        assert!(mcp(tools.clone()).unwrap_err().field.starts_with(field), "{tools}");
    }
}

#[test]
fn egress_hosts() {
    use serde_json::json;
    let j = with(&["egress"], json!({"hosts": ["PyPI.org.", "*.pythonhosted.org", {"host": "mirror.example.com", "http": true, "ports": [8080]}]}));
    let p = Policy::parse(&j).unwrap();
    assert_eq!(p.egress.len(), 3);
    assert_eq!(p.egress[0].pattern, HostPattern::Exact("pypi.org".into()));
    assert_eq!(p.egress[1].pattern, HostPattern::Subdomain("pythonhosted.org".into()));
    assert!(p.egress[2].http && p.egress[2].ports == vec![8080]);
    assert!(Policy::parse(GOOD).unwrap().egress.is_empty(), "default is no egress");
}

#[test]
fn query_and_basic_credentials() {
    use serde_json::json;
    let q = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "query", "param": "api_key"}));
    let p = Policy::parse(&q).unwrap();
    assert_eq!(p.tool("github").unwrap().credential.as_ref().unwrap().placement, Placement::Query { param: "api_key".into() });
    let b = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "basic", "username": "api"}));
    let p = Policy::parse(&b).unwrap();
    assert_eq!(p.tool("github").unwrap().credential.as_ref().unwrap().placement, Placement::Basic { username: Some("api".into()) });
    let missing = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "query"}));
    assert_eq!(Policy::parse(&missing).unwrap_err().field, "tools.github.credential.param");
}

#[test]
fn http_origin_needs_opt_in_and_keeps_port_and_base_path() {
    use serde_json::json;
    let j = with(&["tools", "github", "origin"], json!("http://127.0.0.1:8788/api/v2/"));
    let j2: serde_json::Value = serde_json::from_str(&j).unwrap();
    let mut j2 = j2;
    j2["tools"]["github"]["allow_http"] = json!(true);
    let p = Policy::parse(&j2.to_string()).unwrap();
    let o = &p.tool("github").unwrap().origin;
    assert_eq!(o.base, "http://127.0.0.1:8788");
    assert_eq!(o.base_path, "/api/v2");
}

#[test]
fn pattern_matching_table() {
    let table: &[(&str, &str, bool)] = &[
        ("/", "", true),
        ("/", "a", false),
        ("/**", "", true),
        ("/**", "a/b/c", true),
        ("/repos/*/*", "repos/o/r", true),
        ("/repos/*/*", "repos/o", false),
        ("/repos/*/*", "repos/o/r/x", false),
        ("/repos/*/*/**", "repos/o/r", true),
        ("/repos/*/*/**", "repos/o/r/issues/1", true),
        ("/repos/*/*/**", "repos/o", false),
        ("/repos/*/issues", "repos/o/issues", true),
        ("/repos/*/issues", "repos/o/pulls", false),
        ("/repos/*/issues", "Repos/o/issues", false),
        ("/items/*", "items/", false),
        ("/items/*", "items/a b", true),
    ];
    for (pattern, path, want) in table {
        let p = PathPattern::parse(pattern).unwrap();
        let segs: Vec<&str> = if path.is_empty() { vec![] } else { path.split('/').collect() };
        assert_eq!(p.matches(&segs), *want, "{pattern} vs {path}");
    }
}

#[test]
fn rule_matches_method_and_path() {
    let r = Rule {
        methods: vec![Method::Get, Method::Head],
        path: PathPattern::parse("/a/*").unwrap(),
        query: vec![],
        level: Level::Read,
        approval: false,
        approval_wait_s: 0,
    };
    assert!(r.matches(Method::Get, &["a", "x"], &[]));
    assert!(r.matches(Method::Head, &["a", "x"], &query_pairs(Some("anything=1"))));
    assert!(!r.matches(Method::Post, &["a", "x"], &[]));
    assert!(!r.matches(Method::Get, &["b", "x"], &[]));
}

#[test]
fn rule_query_parameters_match_once_and_exactly() {
    let r = Rule {
        methods: vec![Method::Get],
        path: PathPattern::parse("/*/*/info/refs").unwrap(),
        query: vec![("service".into(), "git-upload-pack".into())],
        level: Level::Read,
        approval: false,
        approval_wait_s: 0,
    };
    let path = ["acme", "app.git", "info", "refs"];
    let table = [
        ("service=git-upload-pack", true),
        ("a=1&service=git-upload-pack", true),
        ("service=git%2Dupload%2Dpack", true),
        ("ser%76ice=git-upload-pack", true),
        ("", false),
        ("service=git-receive-pack", false),
        ("service=git-upload-pack&service=git-receive-pack", false),
        ("service=git-upload-pack;service=git-receive-pack", false),
        ("service=git-upload-pack&service=git-upload-pack", false),
        ("service=git-upload-pack+", false),
        ("Service=git-upload-pack", false),
        ("service", false),
    ];
    for (query, want) in table {
        assert_eq!(r.matches(Method::Get, &path, &query_pairs(Some(query))), want, "{query}");
    }
}

fn tool_json(tool: serde_json::Value) -> Result<Policy, PolicyError> {
    Policy::parse(&serde_json::json!({ "version": 1, "audience": "t", "tools": { "x": tool } }).to_string())
}

#[test]
fn presets_fill_in_what_the_tool_does_not_say() {
    let p = tool_json(serde_json::json!({ "preset": "anthropic", "credential": { "secret": "ANTHROPIC_KEY" } })).unwrap();
    let t = p.tool("x").unwrap();
    assert_eq!(t.preset, Some("anthropic"));
    assert_eq!(t.origin.base, "https://api.anthropic.com");
    assert_eq!(t.credential.as_ref().unwrap().placement, Placement::Header { name: "x-api-key".into(), prefix: String::new(), suffix: String::new() });
    assert_eq!(t.forward_headers, vec!["anthropic-version", "anthropic-beta"]);
    assert_eq!((t.timeout_ms, t.idle_timeout_ms, t.pass_server_errors), (Some(600_000), Some(300_000), true));
    let levels: Vec<(Method, Level)> = t.rules.iter().flat_map(|r| r.methods.iter().map(move |m| (*m, r.level))).collect();
    assert!(levels.contains(&(Method::Get, Level::Read)) && levels.contains(&(Method::Post, Level::Write)) && levels.contains(&(Method::Delete, Level::Admin)));

    let cases = [
        ("openai", "https://api.openai.com", Placement::Bearer),
        (
            "google-genai",
            "https://generativelanguage.googleapis.com",
            Placement::Header { name: "x-goog-api-key".into(), prefix: String::new(), suffix: String::new() },
        ),
        ("github", "https://api.github.com", Placement::Bearer),
        ("stripe", "https://api.stripe.com", Placement::Bearer),
        ("git", "https://github.com", Placement::Basic { username: Some("x-access-token".into()) }),
    ];
    for (preset, origin, placement) in cases {
        let p = tool_json(serde_json::json!({ "preset": preset, "credential": { "secret": "K" } })).unwrap();
        let t = p.tool("x").unwrap();
        assert_eq!((t.origin.base.as_str(), &t.credential.as_ref().unwrap().placement), (origin, &placement), "{preset}");
    }
    let git = tool_json(serde_json::json!({ "preset": "git", "credential": { "secret": "K" } })).unwrap();
    let git = git.tool("x").unwrap();
    assert!(git.forward_headers.contains(&"git-protocol".to_string()));
    let push = git.rules.iter().find(|r| r.query == vec![("service".to_string(), "git-receive-pack".to_string())]).unwrap();
    assert_eq!(push.level, Level::Write);
}

#[test]
fn what_the_tool_states_wins_over_its_preset() {
    let p = tool_json(serde_json::json!({
        "preset": "openai",
        "origin": "http://127.0.0.1:9000/v1",
        "allow_http": true,
        "credential": { "secret": "K", "inject": "header", "header": "api-key" },
        "forward_headers": ["x-extra"],
        "rules": [ { "methods": ["GET"], "path": "/models", "level": "read" } ],
        "timeout_ms": 5000,
        "pass_server_errors": false
    }))
    .unwrap();
    let t = p.tool("x").unwrap();
    assert_eq!((t.origin.base.as_str(), t.origin.base_path.as_str()), ("http://127.0.0.1:9000", "/v1"));
    assert_eq!(t.credential.as_ref().unwrap().placement, Placement::Header { name: "api-key".into(), prefix: String::new(), suffix: String::new() });
    assert_eq!(t.forward_headers, vec!["x-extra", "openai-beta", "openai-organization", "openai-project"]);
    assert_eq!(t.rules.len(), 1);
    assert_eq!((t.timeout_ms, t.idle_timeout_ms, t.pass_server_errors), (Some(5000), Some(300_000), false));
    // `null` is the same as leaving a field out, for presets too.
    let p = tool_json(serde_json::json!({ "preset": "stripe", "credential": { "secret": "K" }, "forward_headers": null, "timeout_ms": null })).unwrap();
    assert_eq!(p.tool("x").unwrap().forward_headers, vec!["stripe-version", "stripe-account"]);
    assert_eq!(p.tool("x").unwrap().timeout_ms, Some(80_000));
    // A service binding replaces the preset's origin too.
    let p = tool_json(serde_json::json!({ "preset": "github", "service": "GH_TUNNEL" })).unwrap();
    assert_eq!(p.tool("x").unwrap().origin.target, Target::Service { binding: "GH_TUNNEL".into() });
}

#[test]
fn preset_and_token_place_errors_name_the_field() {
    let table = [
        (serde_json::json!({ "preset": "nope", "rules": [] }), "tools.x.preset"),
        (serde_json::json!({ "origin": "https://a.example", "credential": { "secret": "K" }, "rules": [] }), "tools.x.credential.inject"),
        (serde_json::json!({ "preset": "openai", "forward_headers": ["x-api-key"] }), "tools.x.forward_headers[0]"),
        (serde_json::json!({ "preset": "openai", "forward_headers": ["Api-Key"] }), "tools.x.forward_headers[0]"),
        (serde_json::json!({ "preset": "openai", "session_token": { "headers": ["x-mine"] }, "forward_headers": ["x-mine"] }), "tools.x.forward_headers[0]"),
        (serde_json::json!({ "preset": "openai", "session_token": { "headers": ["accept"] } }), "tools.x.session_token.headers[0]"),
        (serde_json::json!({ "preset": "openai", "session_token": { "headers": ["cookie"] } }), "tools.x.session_token.headers[0]"),
        (serde_json::json!({ "preset": "openai", "session_token": { "query": ["a b"] } }), "tools.x.session_token.query[0]"),
        (serde_json::json!({ "preset": "openai", "session_token": { "query": ["_method"] } }), "tools.x.session_token.query[0]"),
        (serde_json::json!({ "preset": "openai", "timeout_ms": 999 }), "tools.x.timeout_ms"),
        (serde_json::json!({ "preset": "openai", "idle_timeout_ms": 900001 }), "tools.x.idle_timeout_ms"),
        (
            serde_json::json!({ "origin": "https://a.example", "rules": [ { "methods": ["GET"], "path": "/", "query": { "_method": "x" }, "level": "read" } ] }),
            "tools.x.rules[0].query",
        ),
        (
            serde_json::json!({ "origin": "https://a.example", "session_token": { "query": ["key"] }, "rules": [ { "methods": ["GET"], "path": "/", "query": { "key": "x" }, "level": "read" } ] }),
            "tools.x.rules[0].query",
        ),
    ];
    for (tool, field) in table {
        let e = tool_json(tool.clone()).expect_err(&tool.to_string());
        assert_eq!(e.field, field, "{tool}: {e}");
    }
    let ok = tool_json(
        serde_json::json!({ "preset": "google-genai", "credential": { "secret": "K" }, "session_token": { "headers": ["x-mine"], "query": ["key"] } }),
    )
    .unwrap();
    assert_eq!(ok.tool("x").unwrap().session_token, TokenSlots { headers: vec!["x-mine".into()], query: vec!["key".into()] });
}

#[test]
fn levels_are_ordered() {
    assert!(Level::Read < Level::Write && Level::Write < Level::Admin);
    assert_eq!(serde_json::to_string(&Level::Admin).unwrap(), "\"admin\"");
    assert!(Method::parse("get").is_none() && Method::parse("CONNECT").is_none() && Method::parse("TRACE").is_none());
}

#[test]
fn the_policy_json_is_read_strictly() {
    // A duplicate key is an error, not "the last one wins": a reviewer
    // reading the first `level` must see the one that applies.
    let dup = r#"{"version":1,"audience":"a","tools":{"x":{"origin":"https://a.example",
        "rules":[{"methods":["GET"],"path":"/**","level":"read","level":"admin"}]}}}"#;
    let e = Policy::parse(dup).unwrap_err();
    assert!(e.message.contains("duplicate key"), "{e}");
    let e = Policy::parse("{\"version\":1,").unwrap_err();
    assert!(e.message.contains("line 1"), "a syntax error says where: {e}");
    // `null` is the same as leaving a field out.
    let p = tool_json(
        serde_json::json!({ "origin": "https://a.example", "credential": null, "rules": [ { "methods": ["GET"], "path": "/", "level": "read", "approval": null } ] }),
    );
    assert!(p.unwrap().tool("x").unwrap().credential.is_none());
    // Wrong types name their field.
    let table = [
        (serde_json::json!({ "origin": 1, "rules": [] }), "tools.x.origin"),
        (serde_json::json!({ "origin": "https://a.example", "rules": {} }), "tools.x.rules"),
        (serde_json::json!({ "origin": "https://a.example", "rules": [ { "methods": "GET", "path": "/", "level": "read" } ] }), "tools.x.rules[0].methods"),
        (serde_json::json!({ "origin": "https://a.example", "rules": [ { "methods": [1], "path": "/", "level": "read" } ] }), "tools.x.rules[0].methods[0]"),
        (
            serde_json::json!({ "origin": "https://a.example", "rules": [ { "methods": ["GET"], "path": "/", "level": "read", "query": { "a": 1 } } ] }),
            "tools.x.rules[0].query.a",
        ),
        (
            serde_json::json!({ "origin": "https://a.example", "rate": { "burst": -1, "per_second": 1 }, "rules": [ { "methods": ["GET"], "path": "/", "level": "read" } ] }),
            "tools.x.rate.burst",
        ),
        (serde_json::json!({ "origin": "https://a.example", "credential": { "secret": "K", "inject": "bearer", "extra": 1 } }), "tools.x.credential.extra"),
        (serde_json::json!({ "origin": "https://a.example", "mcp": { "tools": { "t": "root" } } }), "tools.x.mcp.tools.t"),
    ];
    for (tool, field) in table {
        let e = tool_json(tool.clone()).expect_err(&tool.to_string());
        assert_eq!(e.field, field, "{tool}: {e}");
    }
}

#[test]
fn approvals_and_hold_open_parse() {
    use serde_json::json;
    let p = Policy::parse(&with(&["tools", "github", "rules", "1", "approval"], json!({"wait_seconds": 60}))).unwrap();
    let rule = &p.tool("github").unwrap().rules[1];
    assert_eq!((rule.approval, rule.approval_wait_s), (true, 60));
    let p = Policy::parse(&with(&["tools", "github", "rules", "1", "approval"], json!(true))).unwrap();
    assert_eq!((p.tool("github").unwrap().rules[1].approval, p.tool("github").unwrap().rules[1].approval_wait_s), (true, 0));
    assert_eq!(p.approvals, Approvals::default());
    let p = Policy::parse(&with(&["approvals"], json!({"webhook": {"service": "HOOK"}, "page_url": "https://a.example/"}))).unwrap();
    assert_eq!(p.approvals.webhook, Some(WebhookDest::Service("HOOK".into())));
    assert_eq!(p.approvals.webhook_secret, "AIRLOCK_WEBHOOK_SECRET");
    assert_eq!(p.approvals.page_url.as_deref(), Some("https://a.example"));
}

/// The credential of tool `github` replaced by `credential`.
fn with_credential(credential: serde_json::Value) -> Result<Policy, PolicyError> {
    Policy::parse(&with(&["tools", "github", "credential"], credential))
}

#[test]
fn minted_credential_kinds_parse_and_keep_their_raw_json() {
    use crate::upstream::{oauth::ClientAuth, Kind};
    use serde_json::json;
    let gh = json!({"kind": "github_app", "secret": "GH_APP_KEY", "app_id": "1", "installation_id": 2, "owner": "acme",
                    "permissions": {"read": {"contents": "read"}, "admin": {"administration": "write", "contents": "write"}}});
    let p = with_credential(gh.clone()).unwrap();
    let c = p.tool("github").unwrap().credential.as_ref().unwrap();
    assert_eq!((c.secret.as_str(), &c.placement), ("GH_APP_KEY", &Placement::Bearer), "a minted token is a bearer token by default");
    let up = c.upstream.as_ref().unwrap();
    let Kind::GithubApp(app) = &up.kind else { panic!("{:?}", up.kind) };
    assert_eq!((app.api.as_str(), app.installation_id, up.timeout_ms), ("https://api.github.com", 2, 10_000));
    assert_eq!(app.permissions[0], json!({"contents": "read"}).as_object().unwrap().clone());
    assert_eq!(app.permissions[1], crate::upstream::github::default_permissions(Level::Write), "a level left out gets the default");
    assert_eq!(app.permissions[2]["administration"], "write");
    // The cache object reads the same credential from its raw JSON.
    let (secret, again) = minted_credential(&up.raw).unwrap();
    assert_eq!((secret.as_str(), &again.kind), ("GH_APP_KEY", &up.kind));

    let cc = json!({"kind": "oauth_client_credentials", "secret": "CS", "token_url": "https://auth.example/token", "client_id": "c",
                    "scope": "a b", "client_auth": "body", "inject": "header", "header": "x-token"});
    let p = with_credential(cc).unwrap();
    let c = p.tool("github").unwrap().credential.as_ref().unwrap();
    let Some(Kind::OauthClient(client)) = c.upstream.as_ref().map(|u| &u.kind) else { panic!() };
    assert_eq!((client.auth, client.scope.as_str()), (ClientAuth::Body, "a b"));
    assert!(matches!(c.placement, Placement::Header { .. }));

    let rt = json!({"kind": "oauth_refresh_token", "secret": "RT", "token_url": "https://auth.example/token", "client_id": "c", "client_secret": "CS"});
    let p = with_credential(rt).unwrap();
    let Some(Kind::OauthRefresh(client)) = p.tool("github").unwrap().credential.as_ref().and_then(|c| c.upstream.as_ref()).map(|u| &u.kind) else { panic!() };
    assert_eq!(client.client_secret.as_deref(), Some("CS"));

    let g = json!({"kind": "google_service_account", "secret": "SA", "scopes": ["https://www.googleapis.com/auth/cloud-platform"], "timeout_ms": 2000});
    assert_eq!(with_credential(g).unwrap().tool("github").unwrap().credential.as_ref().unwrap().upstream.as_ref().unwrap().timeout_ms, 2000);
    // Absent and "static" are today's static placements.
    let s = with_credential(json!({"kind": "static", "secret": "T", "inject": "bearer"})).unwrap();
    assert!(s.tool("github").unwrap().credential.as_ref().unwrap().upstream.is_none());
    assert!(Policy::parse(GOOD).unwrap().tool("github").unwrap().credential.as_ref().unwrap().upstream.is_none());
}

#[test]
fn minted_credential_errors_name_the_field() {
    use serde_json::json;
    let gh = |extra: serde_json::Value| {
        let mut c = json!({"kind": "github_app", "secret": "K", "app_id": "1", "installation_id": 2, "owner": "acme"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let oauth = json!({"kind": "oauth_client_credentials", "secret": "CS", "token_url": "https://auth.example/token", "client_id": "c"});
    let table: Vec<(&str, serde_json::Value, &str)> = vec![
        ("unknown kind", json!({"kind": "aws", "secret": "K"}), "kind"),
        ("no app id", json!({"kind": "github_app", "secret": "K", "installation_id": 2, "owner": "acme"}), "app_id"),
        ("installation 0", gh(json!({"installation_id": 0})), "installation_id"),
        ("bad owner", gh(json!({"owner": "a/b"})), "owner"),
        ("http api", gh(json!({"api": "http://api.github.com"})), "api"),
        ("bad permission name", gh(json!({"permissions": {"read": {"Contents!": "read"}}})), "permissions.read.Contents!"),
        ("bad permission access", gh(json!({"permissions": {"read": {"contents": "admin"}}})), "permissions.read.contents"),
        ("unknown level", gh(json!({"permissions": {"owner": {}}})), "permissions.owner"),
        ("timeout too short", gh(json!({"timeout_ms": 10})), "timeout_ms"),
        ("app field on static", json!({"secret": "K", "inject": "bearer", "app_id": "1"}), "app_id"),
        (
            "token url with credentials",
            {
                let mut o = oauth.clone();
                o["token_url"] = json!("https://u:p@auth.example/token");
                o
            },
            "token_url",
        ),
        (
            "client_secret on client credentials",
            {
                let mut o = oauth.clone();
                o["client_secret"] = json!("OTHER");
                o
            },
            "client_secret",
        ),
        (
            "bad client auth",
            {
                let mut o = oauth.clone();
                o["client_auth"] = json!("jwt");
                o
            },
            "client_auth",
        ),
        ("no scopes", json!({"kind": "google_service_account", "secret": "SA", "scopes": []}), "scopes"),
    ];
    for (what, credential, field) in table {
        let e = with_credential(credential).unwrap_err();
        assert_eq!(e.field, format!("tools.github.credential.{field}"), "{what}: {e}");
    }
}
