#!/usr/bin/env python3
"""Request proofs for Airlock: the `x-airlock-proof` header (standard library only).

When a policy sets "require_proof", every request of a session must carry

    x-airlock-proof: v1;ts=<unix seconds>;nonce=<random>;sig=<base64url HMAC-SHA256>

keyed with the session's `proof_key` (returned when the session is minted).
A stolen session token alone is then not enough to make requests.

    from airlock_proof import request, signed_headers
    status, headers, body = request("http://127.0.0.1:8787/t/echo/items/1",
                                    token, proof_key, session_id)

Gotcha: the path and query are signed exactly as they go on the wire, still
percent-encoded (`/t/x/a%20b`, not `/t/x/a b`); Airlock checks the request
target it receives, never a decoded or re-encoded form. `request()` signs what
urllib sends, byte for byte, and refuses URLs that Airlock's runtime would
rewrite before checking (it parses URLs with WHATWG rules: characters such as
`"`, `<`, `>`, `{`, `}` are percent-encoded and `.`/`..` segments resolved):
percent-encode such characters yourself. With another HTTP client, sign the
path and query that client really sends (WHATWG `fetch` sends
`URL.pathname` and `URL.search`).

Command line (token and proof key from the environment, or flags):

    AIRLOCK_SESSION_TOKEN=... AIRLOCK_PROOF_KEY=... python3 airlock_proof.py \\
        --url http://127.0.0.1:8787/t/echo/items/1 --session-id <id> \\
        [--method POST --data '{"a":1}' --header 'content-type: application/json']

prints {"status": ..., "headers": {...}, "body": "..."} as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import urllib.error
import urllib.request

HEADER = "x-airlock-proof"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _b64url_decode(text: str) -> bytes:
    text = text.rstrip("=")
    if not _B64URL.fullmatch(text):
        raise ValueError("proof_key is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_nonce() -> str:
    """22 random base64url characters (16 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def signed_string(session_id: str, method: str, path: str, query: str, body: bytes | str,
                  ts: int, nonce: str) -> str:
    """The exact text that is MACed (fields joined by "\\n", no trailing newline)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    fields = [session_id, method, path, query, nonce]
    if any("\n" in f or "\r" in f for f in fields):
        raise ValueError("proof fields must not contain line breaks")
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError("path must start with '/' and hold no query or fragment")
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 characters of [A-Za-z0-9_-]")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise ValueError("ts must be a non-negative integer (unix seconds)")
    return "\n".join(["airlock-proof-v1", session_id, method.upper(), path, query,
                      hashlib.sha256(body).hexdigest(), str(ts), nonce])


def sign(proof_key: str, session_id: str, method: str, path: str, query: str = "",
         body: bytes | str = b"", ts: int | None = None, nonce: str | None = None) -> str:
    """The `x-airlock-proof` header value for one request.

    path and query: as sent on the wire (raw, percent-encoded; query without '?').
    body: the exact request body bytes (a str is sent as UTF-8).
    ts defaults to now, nonce to a fresh random one: use each header once.
    """
    ts = int(time.time()) if ts is None else ts
    nonce = new_nonce() if nonce is None else nonce
    message = signed_string(session_id, method, path, query, body, ts, nonce)
    mac = hmac.new(_b64url_decode(proof_key), message.encode("utf-8"), hashlib.sha256)
    sig = base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")
    return f"v1;ts={ts};nonce={nonce};sig={sig}"


def signed_headers(proof_key: str, session_id: str, method: str, path: str, query: str = "",
                   body: bytes | str = b"", ts: int | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """{"x-airlock-proof": sign(...)} to merge into a request's headers."""
    return {HEADER: sign(proof_key, session_id, method, path, query, body, ts, nonce)}


# Airlock's runtime parses the URL with WHATWG rules before the proof is
# checked: these characters would be percent-encoded (a backslash turned into
# "/"), and dot segments resolved, so a proof signed over them never matches.
_REWRITTEN_IN_PATH = set('"<>\\^`{}')
_REWRITTEN_IN_QUERY = set('"<>\'')


def split_target(url: str) -> tuple[str, str]:
    """(path, query) of `url` exactly as urllib puts them in the request line.

    Raises ValueError for URLs the receiving side would rewrite: percent-encode
    such characters yourself and leave out "." and ".." segments.
    """
    selector = urllib.request.Request(url).selector or "/"  # http.client sends "" as "/"
    path, _, query = selector.partition("?")
    if any(not "!" <= c <= "~" for c in selector):
        raise ValueError("percent-encode spaces, control and non-ASCII characters in the URL")
    if _REWRITTEN_IN_PATH & set(path) or _REWRITTEN_IN_QUERY & set(query):
        raise ValueError("percent-encode characters a URL parser would rewrite in the URL")
    if any(seg.lower().replace("%2e", ".") in (".", "..") for seg in path.split("/")):
        raise ValueError("URL path has a '.' or '..' segment")
    return path, query


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send the token and a proof signed for another path.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def request(url: str, token: str, proof_key: str, session_id: str, method: str = "GET",
            body: bytes | str = b"", headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send one signed request; returns (status, headers, body). Redirects are not followed."""
    method = method.upper()
    data = body.encode("utf-8") if isinstance(body, str) else body
    path, query = split_target(url)
    all_headers = dict(headers or {})
    all_headers["Authorization"] = f"Bearer {token}"
    all_headers[HEADER] = sign(proof_key, session_id, method, path, query, data)
    req = urllib.request.Request(url, data=data if data else None, headers=all_headers,
                                 method=method)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(description="Send one request with an x-airlock-proof header.")
    p.add_argument("--url", required=True)
    p.add_argument("--session-id", required=True)
    p.add_argument("--token", default=os.environ.get("AIRLOCK_SESSION_TOKEN"),
                   help="default: $AIRLOCK_SESSION_TOKEN")
    p.add_argument("--proof-key", default=os.environ.get("AIRLOCK_PROOF_KEY"),
                   help="default: $AIRLOCK_PROOF_KEY")
    p.add_argument("--method", default="GET")
    p.add_argument("--data", default="", help="request body (sent as UTF-8)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    args = p.parse_args(argv)
    if not args.token or not args.proof_key:
        p.error("a session token and a proof key are required")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    status, resp_headers, body = request(args.url, args.token, args.proof_key, args.session_id,
                                         args.method, args.data, headers)
    print(json.dumps({"status": status, "headers": resp_headers,
                      "body": body.decode("utf-8", "replace")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
