//! `airlock::egress::parse_authority` then `check_reachable` on arbitrary input.
//!
//! Properties (a panic is a finding): neither panics; for every `Ok(dest)`:
//! - the host is non-empty ASCII, lower-case, LDH labels only, with no
//!   trailing dot;
//! - its last label is not a number a URL parser would read as IPv4: not
//!   all digits, and not `0x` followed by hex digits only (a label such as
//!   `0xg` is a name, not a number, for WHATWG URL parsers);
//! - `parse_authority(&dest.host)` is `Ok` with the same host and no port
//!   (the normal form is idempotent);
//! - a second parser agrees: when the `url` crate accepts
//!   `http://<host>/`, it sees a domain (never an IP address) spelled
//!   exactly as Airlock's normal form;
//! - `check_reachable` only lets through multi-label names other than the
//!   worker's own host.
//!
//! Open finding (see `regressions/egress_host/`): with `idna_adapter` 1.0,
//! some `xn--` labels make the `url` crate's IDNA code fail a debug
//! assertion (`idna` 1.1.0, `uts46.rs`, `debug_assert_ne!(c, '\u{200F}')`).
//! It is a panic in builds with debug assertions only (this fuzz build,
//! native debug builds and tests), inside the `url` crate, which Airlock
//! also uses on policy origins and `Location` headers (see
//! `regressions/README.md`). Built with the
//! `tolerate-known` feature, the shim skips the `url` cross-check for hosts
//! with an `xn--` label.
#![no_main]

use airlock::egress;
use libfuzzer_sys::fuzz_target;

const OWN_HOST: &str = "airlock.example.workers.dev";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(dest) = egress::parse_authority(s) else { return };
    let host = dest.host.as_str();

    assert!(!host.is_empty(), "empty host from {s:?}");
    assert!(
        host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "host {host:?} from {s:?} is not lower-case LDH ASCII"
    );
    assert!(!host.ends_with('.'), "host {host:?} from {s:?} has a trailing dot");
    let last = host.rsplit('.').next().unwrap_or_default();
    assert!(!last.bytes().all(|b| b.is_ascii_digit()), "numeric last label in {host:?} from {s:?}");
    if let Some(hex) = last.strip_prefix("0x") {
        assert!(!hex.bytes().all(|b| b.is_ascii_hexdigit()), "hex last label in {host:?} from {s:?}");
    }
    assert_eq!(
        egress::parse_authority(host),
        Ok(egress::Destination { host: host.to_string(), port: None }),
        "normal form {host:?} of {s:?} is not idempotent"
    );

    let punycode = host.split('.').any(|l| l.starts_with("xn--"));
    let skip_url = cfg!(feature = "tolerate-known") && punycode;
    if let Some(Ok(u)) = (!skip_url).then(|| url::Url::parse(&format!("http://{host}/"))) {
        match u.host() {
            Some(url::Host::Domain(d)) => {
                assert_eq!(d, host, "the url crate reads {host:?} (from {s:?}) as another name")
            }
            other => panic!("the url crate reads {host:?} (from {s:?}) as {other:?}"),
        }
    }

    if egress::check_reachable(host, Some(OWN_HOST)).is_ok() {
        assert!(host.contains('.'), "single-label {host:?} reachable");
        assert_ne!(host, OWN_HOST, "own host reachable");
        assert!(host != "localhost" && !host.ends_with(".localhost"), "{host:?} reachable");
    }
});
