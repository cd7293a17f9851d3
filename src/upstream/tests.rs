use super::*;

fn github() -> Kind {
    let p = github::default_permissions(Level::Read);
    Kind::GithubApp(github::App {
        app_id: "1".into(),
        installation_id: 2,
        owner: "acme".into(),
        api: "https://api.github.com".into(),
        permissions: [p.clone(), p.clone(), p],
    })
}

#[test]
fn one_cache_per_tool_and_narrowed_scope() {
    let a = vec!["acme/app".to_string()];
    let b = vec!["acme/lib".to_string()];
    let p = |tool: &str, repos: &[String], level| plan(tool, &github(), &Scope { level, repos }).unwrap().cache;
    let base = p("gh", &a, Level::Read);
    assert!(base.starts_with("cred:") && base.len() == 37);
    assert_eq!(base, p("gh", &["ACME/app".to_string()], Level::Read), "the same narrowed scope shares a cache");
    assert_ne!(base, p("gh", &b, Level::Read), "another repository");
    assert_ne!(base, p("gh2", &a, Level::Read), "another tool");
    assert_ne!(p("gh", &a, Level::Read), p("gh", &[], Level::Read), "all repositories");
}

#[test]
fn refresh_shortly_before_expiry() {
    assert_eq!(refresh_at(1_000, 1_000 + 3_600), 1_000 + 3_600 - REFRESH_BEFORE_S);
    // Short-lived: after three quarters of the lifetime.
    assert_eq!(refresh_at(1_000, 1_100), 1_075);
    assert_eq!(refresh_at(1_000, 900), 900);
    assert!(usable(1_000, 1_011));
    assert!(!usable(1_000, 1_010));
}

#[test]
fn seal_keys_differ_per_root_and_cache() {
    let k = seal_key(b"root", "cred:a").unwrap();
    assert_ne!(k, seal_key(b"root2", "cred:a").unwrap());
    assert_ne!(k, seal_key(b"root", "cred:b").unwrap());
    assert_eq!(k, seal_key(b"root", "cred:a").unwrap());
}

#[test]
fn errors_name_no_secret_and_blame_the_endpoint() {
    let e = MintError::Refused { status: 400, error: Some("invalid_grant".into()) }.into_error("crm");
    assert_eq!((e.code(), e.status()), ("credential_unavailable", 502));
    assert!(e.detail().contains("invalid_grant"));
    assert_eq!(MintError::Garbage("x").into_error("t").status(), 502);
    assert_eq!(MintError::Misconfigured("no key".into()).into_error("t").code(), "misconfigured");
}

#[test]
fn root_shapes_are_checked_without_quoting_them() {
    assert!(check_root(&github(), b"ghp_not_a_key").is_err());
    let e = check_root(
        &Kind::GoogleServiceAccount(oauth::Google { scopes: vec![], token_url: None }),
        br#"{"type":"service_account","client_email":"e","private_key":"secretbytes"}"#,
    )
    .unwrap_err();
    assert!(!e.contains("secretbytes"), "{e}");
}
