//! The worker's proof verification against the vectors the reference
//! signers (clients/) are tested with, generated independently with Python's
//! `hmac`: all three implementations must agree byte for byte.

use airlock::proof::{self, Signed};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

#[test]
fn reference_signer_vectors_verify_and_reproduce() {
    let raw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/test-vectors/proof.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let key: [u8; 32] = URL_SAFE_NO_PAD.decode(v["proof_key"].as_str().unwrap()).unwrap().try_into().unwrap();
        let body = STANDARD.decode(v["body_b64"].as_str().unwrap()).unwrap();
        let body_sha256 = proof::body_sha256(&body);
        let signed = Signed {
            session_id: v["session_id"].as_str().unwrap(),
            method: v["method"].as_str().unwrap(),
            path: v["path"].as_str().unwrap(),
            query: v["query"].as_str().unwrap_or(""),
            body_sha256: &body_sha256,
        };
        let ts = v["ts"].as_u64().unwrap();
        let nonce = v["nonce"].as_str().unwrap();
        assert_eq!(proof::signed_string(&signed, ts, nonce), v["signed_string"].as_str().unwrap(), "{name}: signed string");
        let header = v["header"].as_str().unwrap();
        assert_eq!(proof::sign(&signed, &key, ts, nonce), header, "{name}: header");
        assert!(proof::verify(Some(header), &signed, &key, ts, 60).is_ok(), "{name}: verifies");
        let other = if signed.method == "PATCH" { "PUT" } else { "PATCH" };
        let tampered = Signed { method: other, ..signed };
        assert_eq!(proof::verify(Some(header), &tampered, &key, ts, 60), Err(proof::ProofError::Invalid), "{name}: tampered");
    }
}
