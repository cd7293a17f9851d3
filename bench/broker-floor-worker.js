// The JS broker floor: the least a credential broker with Airlock's
// guarantees does per request, written in plain JavaScript with the runtime's
// own primitives. It answers one question: what do those guarantees cost
// before any implementation choice (Rust, Wasm, wasm-bindgen) is made?
//
// Per request, as Airlock does for a GET on a tool route:
// - the session token (`al1.<kid>.<claims>.<mac>`, Airlock's own format and
//   key) is verified with WebCrypto HMAC-SHA256 (key imported once), then its
//   claims are read: expiry and the tool in scope (not the audience);
// - one JS RPC call to the session's SQLite-backed Durable Object refuses a
//   revoked session, counts the request and stores the session's previous
//   audit record (carried on the admission, as Airlock does);
// - the credential is set and the request forwarded without following
//   redirects, under a timeout;
// - the answer is scanned for the credential's bytes (Horspool; whole for a
//   body of declared length up to 64 KiB, otherwise read by a BYOB reader
//   into a byte stream, with an overlap between reads) and a match is
//   replaced;
// - one JSON audit line is written to the log.
// Left out, so this is a lower bound: the policy and its rules, header
// filtering, other encodings of the credential, rate limits, proofs, the
// trail's hash chain, idle and size limits on the body, error codes, and
// sending a session's last records when no admission follows.
//
// Bindings: ORIGIN, TOKEN (the credential), SIGNING_KEYS (Airlock's
// `kid:base64` ring), STATE (the class below).

import { DurableObject } from "cloudflare:workers";

export class BrokerState extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS session (id INTEGER PRIMARY KEY, revoked INTEGER NOT NULL, requests INTEGER NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS trail (seq INTEGER PRIMARY KEY, line TEXT NOT NULL)");
  }

  /** Stores the carried audit lines; true when the session may go on (counted). */
  admit(carried) {
    const sql = this.ctx.storage.sql;
    for (const line of carried) sql.exec("INSERT INTO trail (line) VALUES (?)", line);
    const row = sql.exec("SELECT revoked FROM session WHERE id = 1").toArray()[0];
    if (row?.revoked) return false;
    sql.exec("INSERT INTO session (id, revoked, requests) VALUES (1, 0, 1) ON CONFLICT(id) DO UPDATE SET requests = requests + 1");
    return true;
  }
}

const encoder = new TextEncoder();
let keys = null; // Map kid -> Promise<CryptoKey>, built once per isolate.
let needle = null; // the credential's bytes, once per isolate,
let skip = null; // and its skip table.
const waiting = new Map(); // session id -> audit lines not yet stored

function b64urlBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function keyRing(spec) {
  const ring = new Map();
  for (const entry of spec.split(",")) {
    const [kid, b64] = entry.trim().split(":");
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    ring.set(kid, crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]));
  }
  return ring;
}

/** The token's claims when its MAC verifies and it has not expired, else null. */
async function verify(token, env) {
  const parts = token.split(".");
  if (parts.length !== 4 || parts[0] !== "al1") return null;
  keys ??= keyRing(env.SIGNING_KEYS);
  const key = keys.get(parts[1]);
  if (!key) return null;
  const signed = encoder.encode(`${parts[0]}.${parts[1]}.${parts[2]}`);
  if (!(await crypto.subtle.verify("HMAC", await key, b64urlBytes(parts[3]), signed))) return null;
  const claims = JSON.parse(new TextDecoder().decode(b64urlBytes(parts[2])));
  return claims.exp > Date.now() / 1000 ? claims : null;
}

/** Horspool skips for the credential: how far a mismatch lets the scan move. */
function skips(pattern) {
  const table = new Uint32Array(256).fill(pattern.length);
  for (let i = 0; i < pattern.length - 1; i++) table[pattern[i]] = pattern.length - 1 - i;
  return table;
}

/** Index of the credential in `hay` from `from`, or -1 (Horspool). */
function find(hay, from) {
  const last = needle.length - 1;
  for (let at = from; at + last < hay.length; at += skip[hay[at + last]]) {
    let k = last;
    while (k >= 0 && hay[at + k] === needle[k]) k--;
    if (k < 0) return at;
  }
  return -1;
}

const MASK = encoder.encode("[REDACTED]");

/** `bytes` with every whole occurrence of the credential replaced. */
function scrub(bytes) {
  let at = find(bytes, 0);
  if (at === -1) return bytes;
  const parts = [];
  let from = 0;
  while (at !== -1) {
    parts.push(bytes.subarray(from, at), MASK);
    from = at + needle.length;
    at = find(bytes, from);
  }
  parts.push(bytes.subarray(from));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A stream scrubbed as it is read, 64 KiB at most per read (a BYOB reader,
 *  as Airlock reads an origin body), holding back a credential's length less
 *  one byte so that a match across two reads is found. */
function scrubStream(body) {
  const reader = body.getReader({ mode: "byob" });
  let held = new Uint8Array(0);
  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      const { value, done } = await reader.read(new Uint8Array(64 * 1024));
      if (done) {
        if (held.length) controller.enqueue(held);
        controller.close();
        return;
      }
      let joined = value;
      if (held.length) {
        joined = new Uint8Array(held.length + value.length);
        joined.set(held);
        joined.set(value, held.length);
      }
      const clean = scrub(joined);
      const keep = Math.min(needle.length - 1, clean.length);
      held = clean.slice(clean.length - keep);
      if (clean.length > keep) controller.enqueue(clean.subarray(0, clean.length - keep));
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

function audit(fields) {
  const line = JSON.stringify({ kind: "broker.audit", ts: new Date().toISOString(), ...fields });
  console.log(line);
  return line;
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    needle ??= encoder.encode(env.TOKEN);
    skip ??= skips(needle);
    const url = new URL(request.url);
    const request_id = crypto.randomUUID();
    const auth = request.headers.get("authorization") ?? "";
    const claims = auth.startsWith("Bearer ") ? await verify(auth.slice(7), env) : null;
    const tool = "bench";
    if (!claims || !(tool in (claims.scp ?? {}))) {
      audit({ request_id, route: "tool", tool, method: request.method, path: url.pathname, decision: "deny", reason: "unauthenticated" });
      return new Response('{"error":"unauthenticated"}', { status: 401, headers: { "content-type": "application/json" } });
    }
    const carried = waiting.get(claims.sid) ?? [];
    waiting.delete(claims.sid);
    const stub = env.STATE.getByName(claims.sid);
    if (!(await stub.admit(carried))) {
      audit({ request_id, route: "tool", session_id: claims.sid, tool, decision: "deny", reason: "session_revoked" });
      return new Response('{"error":"session_revoked"}', { status: 401, headers: { "content-type": "application/json" } });
    }
    const upstream = await fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers: { authorization: `Bearer ${env.TOKEN}`, accept: request.headers.get("accept") ?? "*/*" },
      redirect: "manual",
      // A bound on the upstream call, as every broker needs (the runtime's
      // own timer: no JavaScript callback).
      signal: AbortSignal.timeout(30_000),
    });
    const headers = new Headers({ "content-type": upstream.headers.get("content-type") ?? "application/octet-stream" });
    const length = Number(upstream.headers.get("content-length") ?? NaN);
    const body = length <= 64 * 1024 ? scrub(new Uint8Array(await upstream.arrayBuffer())) : upstream.body && scrubStream(upstream.body);
    const line = audit({
      request_id,
      route: "tool",
      session_id: claims.sid,
      agent: claims.agt,
      user: claims.usr,
      tool,
      method: request.method,
      path: url.pathname,
      decision: "allow",
      reason: "ok",
      upstream_status: upstream.status,
      duration_ms: Date.now() - started,
      detail: null,
    });
    const queue = waiting.get(claims.sid);
    if (queue) queue.push(line);
    else waiting.set(claims.sid, [line]);
    return new Response(body, { status: upstream.status, headers });
  },
};
