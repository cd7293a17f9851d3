//! RS256 JWTs Airlock signs for token endpoints (the GitHub App JWT, the
//! Google `jwt-bearer` assertion), and the RSA private keys they are signed
//! with, read from PEM.
//!
//! Only the bytes are built here: the signature itself comes from the
//! runtime's WebCrypto (`RSASSA-PKCS1-v1_5` with SHA-256 over a `pkcs8`
//! key), so the Wasm carries no RSA code. WebCrypto imports PKCS#8 only;
//! a PKCS#1 key (`BEGIN RSA PRIVATE KEY`, as GitHub hands out App keys) is
//! wrapped into PKCS#8 by prefixing the fixed DER header.
//!
//! Must never: put a key's bytes in an error.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// `AlgorithmIdentifier { rsaEncryption, NULL }`, DER.
const RSA_ALGORITHM: [u8; 15] = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
/// The smallest RSA key accepted, in DER bytes (a 2048-bit PKCS#1 key is
/// about 1190 bytes): shorter blobs are not RSA keys GitHub or Google issue.
const MIN_KEY_DER: usize = 600;

/// Why a PEM is not a usable RSA private key (never quoting it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub &'static str);

/// A DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A DER tag-length-value.
fn tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_len(value.len(), out);
    out.extend_from_slice(value);
}

/// Wraps a PKCS#1 `RSAPrivateKey` into a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING pkcs1 }`.
pub fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x02, 0x01, 0x00];
    inner.extend_from_slice(&RSA_ALGORITHM);
    tlv(0x04, pkcs1, &mut inner);
    let mut out = Vec::with_capacity(inner.len() + 4);
    tlv(0x30, &inner, &mut out);
    out
}

/// The outer DER `SEQUENCE` of `der` spans all of it.
fn is_whole_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else { return false };
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return false;
        }
        let Some(bytes) = der.get(2..2 + n) else { return false };
        (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), 2 + n)
    };
    header + len == der.len()
}

/// Reads an RSA private key from PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
/// `PRIVATE KEY`) into PKCS#8 DER for WebCrypto. The shape is checked
/// here; whether it is really an RSA key is WebCrypto's import.
pub fn private_key_pkcs8(pem: &str) -> Result<Vec<u8>, KeyError> {
    // Keys pasted through a JSON string or a shell keep `\n` literally.
    let pem = pem.replace("\\n", "\n");
    let pem = pem.trim();
    let (label, rest) = if let Some(rest) = pem.strip_prefix("-----BEGIN RSA PRIVATE KEY-----") {
        ("-----END RSA PRIVATE KEY-----", rest)
    } else if let Some(rest) = pem.strip_prefix("-----BEGIN PRIVATE KEY-----") {
        ("-----END PRIVATE KEY-----", rest)
    } else if pem.contains("ENCRYPTED") {
        return Err(KeyError("an encrypted private key: store it decrypted"));
    } else {
        return Err(KeyError("not a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)"));
    };
    let body = rest.trim_end().strip_suffix(label).ok_or(KeyError("PEM without its END line"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| KeyError("PEM body is not base64"))?;
    if der.len() < MIN_KEY_DER || !is_whole_sequence(&der) {
        return Err(KeyError("PEM body is not a DER RSA private key of 2048 bits or more"));
    }
    Ok(if label.contains("RSA") { pkcs1_to_pkcs8(&der) } else { der })
}

/// The signing input `base64url(header).base64url(claims)` of an RS256 JWT.
pub fn signing_input(kid: Option<&str>, claims: &serde_json::Value) -> String {
    let header = match kid {
        Some(kid) => serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        None => serde_json::json!({"alg": "RS256", "typ": "JWT"}),
    };
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// The JWT: the signing input and its signature.
pub fn finish(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The GitHub App JWT's claims: issued a minute in the past (GitHub's
/// advice against clock drift), valid nine minutes (GitHub allows ten).
pub fn github_app_claims(app_id: &str, now: u64) -> serde_json::Value {
    serde_json::json!({"iat": now.saturating_sub(60), "exp": now + 540, "iss": app_id})
}

/// The claims of a Google service account's `jwt-bearer` assertion.
pub fn google_claims(client_email: &str, scopes: &[String], token_url: &str, now: u64) -> serde_json::Value {
    serde_json::json!({"iss": client_email, "scope": scopes.join(" "), "aud": token_url, "iat": now, "exp": now + 3600})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_short_and_long_form() {
        for (len, want) in [(0usize, vec![0u8]), (0x7f, vec![0x7f]), (0x80, vec![0x81, 0x80]), (0x4a3, vec![0x82, 0x04, 0xa3]), (0x1_0000, vec![0x83, 1, 0, 0])]
        {
            let mut out = Vec::new();
            der_len(len, &mut out);
            assert_eq!(out, want, "{len}");
        }
    }

    #[test]
    fn pkcs1_is_wrapped_with_the_fixed_header() {
        // A 2048-bit PKCS#1 key's DER is about 1190 bytes: the PKCS#8
        // header is then the well-known 26 bytes.
        let mut pkcs1 = vec![0x30, 0x82, 0x04, 0xa3];
        pkcs1.resize(0x4a3 + 4, 0x5a);
        let p8 = pkcs1_to_pkcs8(&pkcs1);
        let header = [
            0x30, 0x82, 0x04, 0xbd, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x04, 0x82,
            0x04, 0xa7,
        ];
        assert_eq!(&p8[..26], &header);
        assert_eq!(&p8[26..], &pkcs1[..]);
        assert!(is_whole_sequence(&p8));
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    #[test]
    fn pem_shapes() {
        let mut pkcs1 = vec![0x30, 0x82, 0x04, 0xa3];
        pkcs1.resize(0x4a3 + 4, 7);
        let p8 = pkcs1_to_pkcs8(&pkcs1);
        assert_eq!(private_key_pkcs8(&pem("RSA PRIVATE KEY", &pkcs1)).unwrap(), p8);
        assert_eq!(private_key_pkcs8(&pem("PRIVATE KEY", &p8)).unwrap(), p8);
        // As a JSON string keeps it (a Google key file's private_key).
        assert_eq!(private_key_pkcs8(&pem("PRIVATE KEY", &p8).replace('\n', "\\n")).unwrap(), p8);
        let bad: &[(&str, String)] = &[
            ("empty", String::new()),
            ("a token", "ghp_abc".into()),
            ("public key", pem("PUBLIC KEY", &p8)),
            ("encrypted", pem("ENCRYPTED PRIVATE KEY", &p8)),
            ("no end", pem("PRIVATE KEY", &p8).replace("-----END PRIVATE KEY-----", "")),
            ("mismatched end", pem("RSA PRIVATE KEY", &pkcs1).replace("END RSA", "END")),
            ("not base64", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----".into()),
            ("too short", pem("PRIVATE KEY", &[0x30, 0x03, 2, 1, 0])),
            ("truncated", pem("PRIVATE KEY", &p8[..p8.len() - 1])),
        ];
        for (what, text) in bad {
            let e = private_key_pkcs8(text).unwrap_err();
            assert!(!e.0.contains("MII"), "{what}: the error quotes no key bytes");
        }
    }

    #[test]
    fn jwt_shape() {
        let input = signing_input(Some("k1"), &github_app_claims("123", 1_000));
        let (h, c) = input.split_once('.').unwrap();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}));
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
        assert_eq!(claims, serde_json::json!({"iat": 940, "exp": 1540, "iss": "123"}));
        assert_eq!(finish("a.b", &[0xff, 0xfe]), "a.b.__4");
        let g = google_claims("sa@p.iam.gserviceaccount.com", &["a".into(), "b".into()], "https://oauth2.googleapis.com/token", 5);
        assert_eq!(g["scope"], "a b");
        assert_eq!(g["exp"], 3605);
    }
}
