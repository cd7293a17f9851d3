#!/usr/bin/env python3
"""Write proof.json: request-proof test vectors shared by every signer.

The expected values are computed here, directly from the specification
(hmac + hashlib), not with any of the signers they are meant to check:

    python3 clients/test-vectors/make_proof_vectors.py > clients/test-vectors/proof.json
"""

import base64
import hashlib
import hmac
import json


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


KEY_A = b64url(bytes(range(32)))  # 00 01 02 ... 1f
KEY_B = b64url(hashlib.sha256(b"airlock proof vector key B").digest())
SID_A = "0123456789abcdef0123456789abcdef"
SID_B = "f" * 32

CASES = [
    dict(name="GET without body or query", proof_key=KEY_A, session_id=SID_A,
         method="GET", path="/t/echo/items/1", query="", body=b"",
         ts=1767225600, nonce="AAAAAAAAAAAAAAAAAAAAAA"),
    dict(name="POST with a JSON body", proof_key=KEY_A, session_id=SID_A,
         method="POST", path="/t/echo/items/new", query="mode=create",
         body=b'{"name":"widget","n":42}', ts=1767225661, nonce="n0nce_with-dash_0123"),
    dict(name="query and path with percent-encoding (signed as sent)", proof_key=KEY_B,
         session_id=SID_B, method="GET", path="/t/echo/files/a%20b/%E2%9C%93",
         query="q=two%20words&tag=%E2%9C%93&empty=&x=a+b", body=b"",
         ts=1767229200, nonce="Zm9vYmFyYmF6cXV4cXV1eA"),
    dict(name="non-ASCII and non-UTF-8 body bytes", proof_key=KEY_B, session_id=SID_B,
         method="PUT", path="/t/echo/items/x", query="",
         body="naïve café ✓\n".encode("utf-8") + b"\x00\xff\xfe",
         ts=1767229260, nonce="-_" * 32),
    # The same request once with "?" and nothing after it, once without any
    # "?": both sign an empty query line, so both give the same header.
    dict(name="empty query (URL ends with '?')", proof_key=KEY_A, session_id=SID_A,
         method="DELETE", path="/t/echo/items/7", query="", body=b"",
         ts=1767225700, nonce="sameNonceForBothCases"),
    dict(name="absent query (no '?' at all)", proof_key=KEY_A, session_id=SID_A,
         method="DELETE", path="/t/echo/items/7", query=None, body=b"",
         ts=1767225700, nonce="sameNonceForBothCases"),
]


def vector(c: dict) -> dict:
    key = base64.urlsafe_b64decode(c["proof_key"] + "=" * (-len(c["proof_key"]) % 4))
    signed = "\n".join([
        "airlock-proof-v1", c["session_id"], c["method"].upper(), c["path"],
        c["query"] or "", hashlib.sha256(c["body"]).hexdigest(), str(c["ts"]), c["nonce"],
    ])
    sig = b64url(hmac.new(key, signed.encode("utf-8"), hashlib.sha256).digest())
    out = {k: c[k] for k in ("name", "proof_key", "session_id", "method", "path")}
    if c["query"] is not None:
        out["query"] = c["query"]
    out["body_b64"] = base64.b64encode(c["body"]).decode("ascii")
    out.update(ts=c["ts"], nonce=c["nonce"], signed_string=signed,
               header=f"v1;ts={c['ts']};nonce={c['nonce']};sig={sig}")
    return out


if __name__ == "__main__":
    doc = {
        "description": "x-airlock-proof vectors. 'query' absent means the request had no '?'. "
                       "body_b64 is standard base64 of the raw body bytes.",
        "vectors": [vector(c) for c in CASES],
    }
    print(json.dumps(doc, indent=2, ensure_ascii=False))
