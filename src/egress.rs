//! Egress: which hosts a sandbox may reach, without credentials, through `/e/`.
//!
//! Invariants:
//! - Hosts are compared in one normal form: ASCII, lower-case, no trailing
//!   dot, LDH labels (IDN only as punycode). Anything else is refused, not
//!   converted.
//! - Some destinations are never reachable whatever the allowlist says: IP
//!   literals in every spelling a URL parser accepts, loopback and private
//!   names, cloud metadata names, single-label names and the worker itself.
//!   This check runs before the allowlist, so a policy typo cannot open them.
//! - `*.suffix` matches whole labels only: `*.example.com` never matches
//!   `example.com`, `evil-example.com` or `example.com.evil.io`.

use crate::error::Error;
use crate::token::VerifiedSession;

pub use crate::error::HostError;

impl HostError {
    /// Whether the host was well-formed but is in a never-reachable class.
    pub fn is_forbidden_class(&self) -> bool {
        matches!(
            self,
            HostError::IpLiteral | HostError::Localhost | HostError::PrivateName | HostError::Metadata | HostError::SingleLabel | HostError::SelfHost
        )
    }

    /// Malformed input is the caller's mistake (400); a well-formed host in a
    /// never-reachable class is a policy refusal (403).
    pub fn into_error(self, host: &str) -> Error {
        let host: String = host.chars().take(64).collect();
        if self.is_forbidden_class() {
            Error::HostForbidden { host, why: self }
        } else {
            Error::InvalidHost { why: self }
        }
    }
}

/// A normalized destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: Option<u16>,
}

const MAX_HOST_LEN: usize = 253;

/// Suffixes that only ever name private, loopback or special-use networks.
const PRIVATE_SUFFIXES: &[&str] =
    &["local", "internal", "localdomain", "home.arpa", "arpa", "intranet", "lan", "corp", "private", "invalid", "test", "example", "onion"];

/// Cloud instance-metadata names (beyond the IP literals refused anyway).
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.azure.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
    "metadata.packet.net",
];

/// Parses the `{host}` or `{host}:{port}` segment of an egress path, raw
/// from the request URL.
pub fn parse_authority(raw: &str) -> Result<Destination, HostError> {
    // pip quotes the path of every link it follows (urllib's `quote`, which
    // escapes `:`), so `/e/host:8080/…` comes back as `/e/host%3A8080/…`.
    // That one escape is read as the port separator it stands for; every
    // other escape is still refused below.
    let unescaped;
    let raw = match raw.contains("%3") {
        true => {
            unescaped = raw.replace("%3A", ":").replace("%3a", ":");
            unescaped.as_str()
        }
        false => raw,
    };
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.len() > MAX_HOST_LEN + 6 {
        return Err(HostError::TooLong);
    }
    if raw.contains('@') {
        return Err(HostError::Userinfo);
    }
    // Brackets, or several colons between hex digits and dots, are an IPv6
    // literal (with or without a zone id): never reachable.
    let ipv6_like = raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'%');
    if raw.contains(['[', ']']) || (raw.matches(':').count() > 1 && ipv6_like) {
        return Err(HostError::IpLiteral);
    }
    if raw.matches(':').count() > 1 {
        return Err(HostError::BadPort);
    }
    if raw.contains('%') {
        return Err(HostError::Encoded);
    }
    if !raw.is_ascii() {
        return Err(HostError::NonAscii);
    }
    let (host, port) = match raw.split_once(':') {
        Some((h, p)) => {
            let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            let port: u16 = p.parse().ok().filter(|&n| valid && n != 0).ok_or(HostError::BadPort)?;
            (h, Some(port))
        }
        None => (raw, None),
    };
    let host = normalize_host(host)?;
    Ok(Destination { host, port })
}

/// Lower-cases, removes one trailing dot and checks the label syntax.
pub fn normalize_host(host: &str) -> Result<String, HostError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if !host.is_ascii() {
        return Err(HostError::NonAscii);
    }
    let host = host.to_ascii_lowercase();
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(HostError::BadCharacter);
    }
    // A URL parser turns a host whose last label is a number (decimal,
    // octal `0177`, hex `0x7f`) into an IPv4 address: `127.1`, `2130706433`
    // and `0x7f.0.0.1` all mean 127.0.0.1. Refuse before label checks so
    // every such spelling is reported as what it is.
    if let Some(last) = host.rsplit('.').next() {
        let hex = last.strip_prefix("0x").map(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || hex == Some(true) {
            return Err(HostError::IpLiteral);
        }
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::BadLabel);
        }
    }
    Ok(host)
}

fn has_suffix(host: &str, suffix: &str) -> bool {
    host == suffix || host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.'))
}

/// Refuses destinations that are never reachable. `own_host` is the
/// worker's own hostname (normalized), so it cannot be made to call itself.
pub fn check_reachable(host: &str, own_host: Option<&str>) -> Result<(), HostError> {
    if has_suffix(host, "localhost") {
        return Err(HostError::Localhost);
    }
    if METADATA_NAMES.contains(&host) {
        return Err(HostError::Metadata);
    }
    if PRIVATE_SUFFIXES.iter().any(|s| has_suffix(host, s)) {
        return Err(HostError::PrivateName);
    }
    if !host.contains('.') {
        return Err(HostError::SingleLabel);
    }
    if own_host.is_some_and(|own| own == host) {
        return Err(HostError::SelfHost);
    }
    Ok(())
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub pattern: HostPattern,
    /// Forward over plain http instead of https.
    pub http: bool,
    /// Non-default ports the sandbox may name.
    pub ports: Vec<u16>,
    /// The host serves package indexes whose links are rewritten onto the
    /// egress route (see [`crate::index`]).
    pub package_index: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.suffix`: one or more labels in front of `suffix`.
    Subdomain(String),
}

impl HostPattern {
    /// Parses `host` or `*.suffix`.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let (wild, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if rest.contains('*') {
            return Err("'*' is only allowed as a whole first label, as in \"*.example.com\"".into());
        }
        let host = normalize_host(rest).map_err(|e| format!("not a valid host name ({e:?})"))?;
        check_reachable(&host, None).map_err(|e| format!("{host:?} can never be reached through egress ({e:?})"))?;
        Ok(if wild { HostPattern::Subdomain(host) } else { HostPattern::Exact(host) })
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomain(suffix) => host.strip_suffix(suffix.as_str()).is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        }
    }
}

/// Where an allowed egress request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressTarget {
    /// `scheme://host[:port]`
    pub base: String,
}

/// Proof that a session may send an egress request to a destination. Only
/// [`authorize`] builds one; credential-free forwarding takes it by value.
#[derive(Debug)]
pub struct EgressPermit {
    session: VerifiedSession,
    target: EgressTarget,
}

impl EgressPermit {
    pub fn session(&self) -> &VerifiedSession {
        &self.session
    }
    pub fn target(&self) -> &EgressTarget {
        &self.target
    }
}

/// Authorizes an egress request: never-reachable classes first (whatever
/// the session), then the session's egress right and the allowlist, which
/// fail identically so a sandbox cannot probe the list without the right.
pub fn authorize(rules: &[EgressRule], session: VerifiedSession, dest: &Destination, own_host: Option<&str>) -> Result<EgressPermit, Error> {
    check_reachable(&dest.host, own_host).map_err(|e| e.into_error(&dest.host))?;
    if !session.egress() {
        return Err(Error::EgressNotAllowed { host: dest.host.clone() });
    }
    let target = allowlisted(rules, dest)?;
    Ok(EgressPermit { session, target })
}

/// Rewrites a redirect's `Location` (absolute or relative to `request_url`)
/// to the egress route when its target is allowed; `None` removes it.
pub fn rewrite_location(location: &str, request_url: &str, rules: &[EgressRule], own_host: Option<&str>) -> Option<String> {
    route(location, &url::Url::parse(request_url).ok()?, rules, own_host).map(|(route, _)| route)
}

/// The egress route (`/e/{authority}{path}?{query}`) of a link resolved
/// against `base`, with the URL it resolved to, when its target is allowed
/// (host, scheme, port, no userinfo); `None` when it is not.
pub fn route(link: &str, base: &url::Url, rules: &[EgressRule], own_host: Option<&str>) -> Option<(String, url::Url)> {
    // Punycode labels are decoded by the URL parser's IDNA step, which has
    // debug assertions reachable from crafted labels: an origin-chosen
    // link with one is removed rather than parsed.
    if has_punycode(link) {
        return None;
    }
    let target = base.join(link).ok()?;
    let host = target.host_str()?;
    let authority = match target.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let dest = parse_authority(&authority).ok()?;
    let allowed = decide(rules, &dest, own_host).ok()?;
    // The route re-derives the scheme from the rule: only rewrite when the
    // link asks for exactly that scheme.
    if !allowed.base.starts_with(&format!("{}://", target.scheme())) || !target.username().is_empty() || target.password().is_some() {
        return None;
    }
    let path = crate::path::normalize(target.path()).ok()?;
    let authority = allowed.base.split_once("://")?.1;
    let mut out = format!("/e/{authority}{}", path.encoded());
    if let Some(q) = target.query() {
        out.push('?');
        out.push_str(q);
    }
    Some((out, target))
}

/// Whether text contains a punycode (`xn--`) label anywhere, as a URL
/// parser would see it: after dropping tabs and newlines and decoding
/// percent-escapes (both happen before its IDNA step).
pub fn has_punycode(text: &str) -> bool {
    let raw: Vec<u8> = text.bytes().filter(|b| !matches!(b, b'\t' | b'\n' | b'\r')).collect();
    crate::path::percent_decode_lenient(&raw).windows(4).any(|w| w.eq_ignore_ascii_case(b"xn--"))
}

/// Decides an egress destination: the never-reachable classes first, then
/// the allowlist (host, then scheme and port).
pub fn decide(rules: &[EgressRule], dest: &Destination, own_host: Option<&str>) -> Result<EgressTarget, Error> {
    check_reachable(&dest.host, own_host).map_err(|e| e.into_error(&dest.host))?;
    allowlisted(rules, dest)
}

/// The rule that decides a (normalized) host: the first that matches.
pub fn rule_for<'a>(rules: &'a [EgressRule], host: &str) -> Option<&'a EgressRule> {
    rules.iter().find(|r| r.pattern.matches(host))
}

/// The allowlist's answer for a destination already known to be reachable.
fn allowlisted(rules: &[EgressRule], dest: &Destination) -> Result<EgressTarget, Error> {
    let not_allowed = || Error::EgressNotAllowed { host: dest.host.clone() };
    let rule = rule_for(rules, &dest.host).ok_or_else(not_allowed)?;
    let scheme = if rule.http { "http" } else { "https" };
    let base = match dest.port {
        None => format!("{scheme}://{}", dest.host),
        Some(p) if rule.ports.contains(&p) => format!("{scheme}://{}:{p}", dest.host),
        Some(_) => return Err(not_allowed()),
    };
    Ok(EgressTarget { base })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        let table: &[(&str, &str, Option<u16>)] = &[
            ("pypi.org", "pypi.org", None),
            ("PyPI.ORG", "pypi.org", None),
            ("pypi.org.", "pypi.org", None),
            ("files.pythonhosted.org:8443", "files.pythonhosted.org", Some(8443)),
            ("files.pythonhosted.org%3A8443", "files.pythonhosted.org", Some(8443)),
            ("files.pythonhosted.org%3a8443", "files.pythonhosted.org", Some(8443)),
            ("xn--bcher-kva.de", "xn--bcher-kva.de", None),
            ("123.example.com", "123.example.com", None),
            ("a-b.example.com", "a-b.example.com", None),
        ];
        for (raw, host, port) in table {
            assert_eq!(parse_authority(raw), Ok(Destination { host: host.to_string(), port: *port }), "{raw}");
        }
    }

    #[test]
    fn refuses_malformed_and_unreachable_hosts() {
        use HostError::*;
        let long = format!("{}.com", "a".repeat(260));
        let label = format!("{}.com", "a".repeat(64));
        let table: Vec<(&str, &str, HostError)> = vec![
            ("empty", "", Empty),
            ("only a dot", ".", Empty),
            ("too long", &long, TooLong),
            ("label too long", &label, BadLabel),
            ("userinfo", "user@pypi.org", Userinfo),
            ("userinfo with password", "u:p@pypi.org", Userinfo),
            ("percent-encoded", "pypi%2eorg", Encoded),
            ("encoded at", "evil.com%40pypi.org", Encoded),
            ("encoded colon and at", "evil.com%3A%40pypi.org", Encoded),
            ("two encoded colons", "pypi.org%3A80%3A80", BadPort),
            ("encoded IPv6", "%3A%3A1", IpLiteral),
            ("encoded 3", "pypi.org%33", Encoded),
            ("unicode IDN", "bücher.de", NonAscii),
            ("fullwidth dot", "pypi\u{ff0e}org", NonAscii),
            ("underscore", "a_b.example.com", BadCharacter),
            ("space", "a b.com", BadCharacter),
            ("backslash", "a\\b.com", BadCharacter),
            ("empty label", "a..com", BadLabel),
            ("two trailing dots", "pypi.org..", BadLabel),
            ("leading hyphen", "-a.com", BadLabel),
            ("trailing hyphen", "a-.com", BadLabel),
            ("port zero", "pypi.org:0", BadPort),
            ("port too big", "pypi.org:99999", BadPort),
            ("port not numeric", "pypi.org:abc", BadPort),
            ("port empty", "pypi.org:", BadPort),
            ("port signed", "pypi.org:+443", BadPort),
            ("two ports", "pypi.org:8080:8080", BadPort),
            ("dotted IPv4", "127.0.0.1", IpLiteral),
            ("private IPv4", "10.0.0.1", IpLiteral),
            ("metadata IPv4", "169.254.169.254", IpLiteral),
            ("public IPv4", "1.1.1.1", IpLiteral),
            ("IPv4 with port", "127.0.0.1:80", IpLiteral),
            ("decimal IPv4", "2130706433", IpLiteral),
            ("octal IPv4", "0177.0.0.1", IpLiteral),
            ("hex IPv4", "0x7f.0.0.1", IpLiteral),
            ("hex whole", "0x7f000001", IpLiteral),
            ("short IPv4", "127.1", IpLiteral),
            ("shorter IPv4", "10.1", IpLiteral),
            ("IPv4 trailing dot", "127.0.0.1.", IpLiteral),
            ("uppercase hex", "0X7F.1", IpLiteral),
            ("bare hex prefix", "0x", IpLiteral),
            ("IPv6 loopback", "[::1]", IpLiteral),
            ("IPv6 bare", "::1", IpLiteral),
            ("IPv6 with port", "[::1]:443", IpLiteral),
            ("IPv4-mapped", "[::ffff:127.0.0.1]", IpLiteral),
            ("IPv4-mapped hex", "[::ffff:7f00:1]", IpLiteral),
            ("NAT64", "[64:ff9b::7f00:1]", IpLiteral),
            ("6to4", "[2002:7f00:1::]", IpLiteral),
            ("zone id", "[fe80::1%25eth0]", IpLiteral),
            ("zone id raw", "[fe80::1%eth0]", IpLiteral),
            ("link-local v6", "[fe80::1]", IpLiteral),
            ("unique local v6", "[fd00::1]", IpLiteral),
        ];
        for (what, raw, want) in table {
            assert_eq!(parse_authority(raw), Err(want), "{what}: {raw:?}");
        }
    }

    #[test]
    fn never_reachable_names() {
        use HostError::*;
        let table: &[(&str, HostError)] = &[
            ("localhost", Localhost),
            ("LOCALHOST.", Localhost),
            ("foo.localhost", Localhost),
            ("metadata", Metadata),
            ("metadata.google.internal", Metadata),
            ("metadata.goog", Metadata),
            ("instance-data", Metadata),
            ("instance-data.ec2.internal", Metadata),
            ("metadata.azure.com", Metadata),
            ("printer.local", PrivateName),
            ("db.internal", PrivateName),
            ("x.corp.internal", PrivateName),
            ("host.localdomain", PrivateName),
            ("nas.home.arpa", PrivateName),
            ("1.0.0.127.in-addr.arpa", PrivateName),
            ("router.lan", PrivateName),
            ("intranet", PrivateName),
            ("x.invalid", PrivateName),
            ("kubernetes", SingleLabel),
            ("airlock.example.workers.dev", SelfHost),
        ];
        for (raw, want) in table {
            let dest = parse_authority(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(check_reachable(&dest.host, Some("airlock.example.workers.dev")), Err(want.clone()), "{raw}");
        }
        for ok in ["pypi.org", "localhost.example.com", "internal.example.com", "metadata.example.com"] {
            assert_eq!(check_reachable(ok, Some("airlock.example.workers.dev")), Ok(()), "{ok}");
        }
    }

    fn rules() -> Vec<EgressRule> {
        vec![
            EgressRule { pattern: HostPattern::parse("pypi.org").unwrap(), http: false, ports: vec![], package_index: false },
            EgressRule { pattern: HostPattern::parse("*.pythonhosted.org").unwrap(), http: false, ports: vec![], package_index: false },
            EgressRule { pattern: HostPattern::parse("mirror.example.com").unwrap(), http: true, ports: vec![8080], package_index: false },
        ]
    }

    #[test]
    fn allowlist_matching() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("pypi.org", Ok("https://pypi.org")),
            ("PYPI.org.", Ok("https://pypi.org")),
            ("files.pythonhosted.org", Ok("https://files.pythonhosted.org")),
            ("a.b.pythonhosted.org", Ok("https://a.b.pythonhosted.org")),
            ("mirror.example.com", Ok("http://mirror.example.com")),
            ("mirror.example.com:8080", Ok("http://mirror.example.com:8080")),
            ("mirror.example.com:8081", Err("egress_not_allowed")),
            ("pypi.org:443", Err("egress_not_allowed")),
            ("pythonhosted.org", Err("egress_not_allowed")),
            ("evilpythonhosted.org", Err("egress_not_allowed")),
            ("pythonhosted.org.evil.io", Err("egress_not_allowed")),
            ("evil-pythonhosted.org", Err("egress_not_allowed")),
            ("www.pypi.org", Err("egress_not_allowed")),
            ("pypi.org.evil.io", Err("egress_not_allowed")),
            ("example.com", Err("egress_not_allowed")),
            ("airlock.example.workers.dev", Err("host_forbidden")),
        ];
        for (raw, want) in table {
            let dest = parse_authority(raw).unwrap();
            let got = decide(&rules(), &dest, Some("airlock.example.workers.dev"));
            match (got, want) {
                (Ok(t), Ok(base)) => assert_eq!(t.base, *base, "{raw}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), *code, "{raw}"),
                (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn redirect_locations() {
        let own = Some("airlock.example.workers.dev");
        let from = "https://pypi.org/simple/requests/";
        let table: &[(&str, Option<&str>)] = &[
            ("https://files.pythonhosted.org/packages/a/b.whl#sha256=x", Some("/e/files.pythonhosted.org/packages/a/b.whl")),
            ("/simple/requests", Some("/e/pypi.org/simple/requests")),
            ("../other/?q=1", Some("/e/pypi.org/simple/other/?q=1")),
            ("http://mirror.example.com:8080/x", Some("/e/mirror.example.com:8080/x")),
            ("https://mirror.example.com:8080/x", None),
            ("http://pypi.org/x", None),
            ("https://evil.example.net/x", None),
            ("https://169.254.169.254/latest/meta-data", None),
            ("https://[::1]/x", None),
            ("https://localhost/x", None),
            ("https://user:pw@pypi.org/x", None),
            ("https://airlock.example.workers.dev/v1/sessions", None),
            ("javascript:alert(1)", None),
            ("https://pypi.org/a%2fb", None),
            ("http://xn--ttgrxct7l/", None),
            ("http://xn%2D-ttgrxct7l/", None),
            ("http://%78n--ttgrxct7l/", None),
            ("//xn%2d-ttgrxct7l/", None),
            ("http://xn-\t-ttgrxct7l/", None),
            ("https://XN--bcher-kva.pythonhosted.org/x", None),
        ];
        for (loc, want) in table {
            assert_eq!(rewrite_location(loc, from, &rules(), own).as_deref(), *want, "{loc}");
        }
    }

    #[test]
    fn forbidden_classes_win_over_the_allowlist() {
        // Even a rule naming them cannot be built…
        for bad in ["localhost", "127.0.0.1", "*.internal", "metadata.google.internal", "10.1", "*.localhost", "kubernetes"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        for bad in ["ex*ample.com", "*", "*.", "**.example.com", "a.*.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        // …and the worker's own host is refused even if a rule matches it.
        let rules = vec![EgressRule { pattern: HostPattern::parse("*.workers.dev").unwrap(), http: false, ports: vec![], package_index: false }];
        let dest = parse_authority("airlock.acme.workers.dev").unwrap();
        assert_eq!(decide(&rules, &dest, Some("airlock.acme.workers.dev")).unwrap_err().code(), "host_forbidden");
        assert!(decide(&rules, &parse_authority("other.acme.workers.dev").unwrap(), Some("airlock.acme.workers.dev")).is_ok());
    }
}
