// Session state (Durable Object AirlockState, binding AIRLOCK_STATE), with
// real Durable Objects in workerd against the built worker:
//   revocation, request proofs (replay), idempotency keys, rate limits,
//   approval gates, a failing or missing state object, and the time spent
//   waiting for the session object (audit field state_ms).
//
// Every test counts what reached the origin (the echo origin records every
// request it receives; the fake internet records every egress fetch) and
// reads the audit line of the requests it makes.

import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import {
  REPO_ROOT,
  assertError,
  assertNotLeaked,
  fakeInternet,
  percentile,
  sleep,
  startAirlock,
  testPolicy,
} from "./helpers.mjs";

// ---------------------------------------------------------------------------
// Request proofs: a signer written from the specification

const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");
const nowSec = () => Math.floor(Date.now() / 1000);
const randomNonce = () => randomBytes(18).toString("base64url"); // 24 chars [A-Za-z0-9_-]
const marker = (p) => `${p}-${randomBytes(6).toString("hex")}`;

/** The x-airlock-proof header for one request. */
function signProof({ proofKey, sessionId, method, path, query = "", body = "", ts = nowSec(), nonce = randomNonce() }) {
  const bodyBytes = typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body);
  const signed = [
    "airlock-proof-v1",
    sessionId,
    method.toUpperCase(),
    path,
    query,
    createHash("sha256").update(bodyBytes).digest("hex"),
    String(ts),
    nonce,
  ].join("\n");
  const sig = createHmac("sha256", Buffer.from(proofKey, "base64url")).update(signed, "utf8").digest("base64url");
  return { header: `v1;ts=${ts};nonce=${nonce};sig=${sig}`, signed };
}

// ---------------------------------------------------------------------------
// The stack under test

/** testPolicy, plus: a proof-requiring tool, a rate-limited tool, approval on DELETE. */
function statePolicy(echoUrl) {
  const echoTool = (extra) => ({
    origin: echoUrl,
    allow_http: true,
    credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
    ...extra,
  });
  const p = testPolicy(echoUrl, {
    extraTools: {
      signed: echoTool({
        require_proof: true,
        rules: [{ methods: ["GET", "POST"], path: "/**", level: "read" }],
      }),
      rated: echoTool({
        rate: { burst: 5, per_second: 0.001 },
        rules: [{ methods: ["GET"], path: "/**", level: "read" }],
      }),
    },
  });
  p.tools.echo.rules = [
    { methods: ["GET", "HEAD"], path: "/**", level: "read" },
    { methods: ["POST", "PUT", "PATCH"], path: "/items/**", level: "write" },
    // A write the echo origin answers slowly (/delay/MS/...), for duplicates in flight.
    { methods: ["POST"], path: "/delay/**", level: "write" },
    // N pseudo-random bytes (/random/N), for an answer too large to store.
    { methods: ["POST"], path: "/random/**", level: "write" },
    { methods: ["DELETE"], path: "/items/*", level: "admin", approval: true },
  ];
  return p;
}

let h;

before(async () => {
  h = await startAirlock({ policy: statePolicy });
});

after(async () => {
  await h?.close();
});

// ---------------------------------------------------------------------------
// Small helpers

const adminHeaders = (stack = h) => ({
  authorization: `Bearer ${stack.secrets.AIRLOCK_ADMIN_KEY}`,
  "content-type": "application/json",
});

const getSession = (id, headers = adminHeaders(), stack = h) =>
  stack.fetch(`/v1/sessions/${id}`, { method: "GET", headers });
const deleteSession = (id, headers = adminHeaders(), stack = h) =>
  stack.fetch(`/v1/sessions/${id}`, { method: "DELETE", headers });

/** Echo-origin requests whose path starts with `prefix`. */
const echoHits = (prefix, stack = h) => stack.echo.hits.filter((x) => x.path.startsWith(prefix));

/** The single audit line of one response. */
async function auditOne(r, label, stack = h) {
  const id = r.headers["x-airlock-request-id"];
  assert.ok(id, `${label}: no x-airlock-request-id (${r.status} ${r.text})`);
  const lines = await stack.auditFor(id);
  assert.equal(lines.length, 1, `${label}: ${lines.length} audit lines for request ${id}`);
  return lines[0];
}

/** The single audit line of each response (waits for all of them at once). */
async function auditEach(responses, label, stack = h) {
  const ids = responses.map((r, i) => {
    const id = r.headers["x-airlock-request-id"];
    assert.ok(id, `${label} #${i}: no x-airlock-request-id (${r.status} ${r.text})`);
    return id;
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const seen = new Set(stack.audit.map((a) => a.request_id));
    if (ids.every((id) => seen.has(id))) break;
    await sleep(25);
  }
  await sleep(200);
  return ids.map((id, i) => {
    const lines = stack.audit.filter((a) => a.request_id === id);
    assert.equal(lines.length, 1, `${label} #${i}: ${lines.length} audit lines for request ${id}`);
    return lines[0];
  });
}

/** Poll GET /v1/sessions/{id} until pred(json) holds (or time runs out); return the last answer. */
async function sessionWhen(id, pred, { timeoutMs = 3000, stack = h } = {}) {
  const deadline = Date.now() + timeoutMs;
  let r;
  for (;;) {
    r = await getSession(id, adminHeaders(stack), stack);
    if (r.status === 200 && pred(r.json)) return r;
    if (Date.now() > deadline) return r;
    await sleep(50);
  }
}

function tally(responses) {
  const out = {};
  for (const r of responses) {
    const k = `${r.status} ${r.json?.error?.code ?? ""}`.trim();
    out[k] = (out[k] || 0) + 1;
  }
  return out;
}

const SESSION_FIELDS = [
  "session_id", "status", "agent", "user", "tools", "egress",
  "created_at", "expires_at", "revoked_at", "usage",
];

function assertSessionShape(j, label) {
  assert.ok(j && typeof j === "object", `${label}: JSON object`);
  for (const f of SESSION_FIELDS) assert.ok(f in j, `${label}: lacks ${f} (${JSON.stringify(j)})`);
  for (const k of Object.keys(j)) {
    assert.ok(!/token|proof|key|secret/i.test(k), `${label}: unexpected field ${k}`);
  }
  assert.match(j.session_id, /^[0-9a-f]{32}$/, `${label}: session_id`);
  assert.ok(["active", "revoked", "expired"].includes(j.status), `${label}: status ${j.status}`);
  for (const f of ["created_at", "expires_at"]) assert.ok(Number.isInteger(j[f]), `${label}: ${f} ${j[f]}`);
  assert.ok(j.revoked_at === null || Number.isInteger(j.revoked_at), `${label}: revoked_at ${j.revoked_at}`);
  for (const f of ["requests", "denied", "rate_limited"]) {
    assert.ok(Number.isInteger(j.usage?.[f]) && j.usage[f] >= 0, `${label}: usage.${f} ${j.usage?.[f]}`);
  }
  assert.ok(j.usage.last_seen_at === null || Number.isInteger(j.usage.last_seen_at), `${label}: usage.last_seen_at`);
}

/** Neither the session token (nor its signature part) nor the proof key appears in r. */
function assertNoSessionSecrets(r, s, label) {
  assertNotLeaked(
    r,
    { token: s.token, token_signature: s.token.split(".").pop(), proof_key: s.proof_key },
    label,
  );
}

// ---------------------------------------------------------------------------

describe("the signer matches the shared proof vectors", () => {
  const file = join(REPO_ROOT, "clients", "test-vectors", "proof.json");
  test("clients/test-vectors/proof.json", { skip: !existsSync(file) && "no vector file" }, () => {
    const { vectors } = JSON.parse(readFileSync(file, "utf8"));
    assert.ok(vectors.length > 0);
    for (const v of vectors) {
      const { header, signed } = signProof({
        proofKey: v.proof_key,
        sessionId: v.session_id,
        method: v.method,
        path: v.path,
        query: v.query ?? "",
        body: Buffer.from(v.body_b64, "base64"),
        ts: v.ts,
        nonce: v.nonce,
      });
      assert.equal(signed, v.signed_string, v.name);
      assert.equal(header, v.header, v.name);
    }
  });
});

describe("mint answers with a proof key", () => {
  test("201 {token, session_id, expires_at, proof_key}; a fresh key per session", async () => {
    const a = await h.mint({ echo: "read" });
    const b = await h.mint({ echo: "read" });
    for (const s of [a, b]) {
      assert.match(s.proof_key, /^[A-Za-z0-9_-]{43}$/, "base64url without padding");
      assert.equal(Buffer.from(s.proof_key, "base64url").length, 32);
      assert.match(s.session_id, /^[0-9a-f]{32}$/);
    }
    assert.notEqual(a.proof_key, b.proof_key);
  });
});

// ---------------------------------------------------------------------------

describe("revocation", () => {
  test("DELETE /v1/sessions/{id}: next call 401 session_revoked, origin not hit; GET shows it", async () => {
    const m = marker("/revoke");
    const s = await h.mint({ echo: "write" }, { agent: "agent-revoke", user: "user-revoke" });
    const other = await h.mint({ echo: "read" });

    const ok = await h.call("echo", `${m}/a`, { token: s.token });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(echoHits(m).length, 1);

    const active = await getSession(s.session_id);
    assert.equal(active.status, 200, active.text);
    assertSessionShape(active.json, "active");
    assert.equal(active.json.status, "active");
    assert.equal(active.json.revoked_at, null);
    assertNoSessionSecrets(active, s, "GET active");

    const del = await deleteSession(s.session_id);
    assert.equal(del.status, 200, del.text);
    assertSessionShape(del.json, "DELETE");
    assert.equal(del.json.status, "revoked");
    assert.equal(del.json.session_id, s.session_id);
    assert.ok(Number.isInteger(del.json.revoked_at));
    assert.ok(Math.abs(del.json.revoked_at - nowSec()) <= 5, `revoked_at ${del.json.revoked_at} is now`);
    assertNoSessionSecrets(del, s, "DELETE");
    await auditOne(del, "DELETE session");

    for (const [label, call] of [
      ["GET", () => h.call("echo", `${m}/b`, { token: s.token })],
      ["POST", () => h.call("echo", `/items${m}`, { token: s.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } })],
    ]) {
      const before = h.echo.hits.length;
      const r = await call();
      await sleep(30);
      assertError(r, 401, "session_revoked", `revoked ${label}`);
      assert.equal(h.echo.hits.length - before, 0, `revoked ${label}: origin hit`);
      const a = await auditOne(r, `revoked ${label}`);
      assert.equal(a.reason, "session_revoked");
      assert.notEqual(a.decision, "allow");
    }

    // Another session is untouched.
    const fine = await h.call("echo", `${m}/other`, { token: other.token });
    assert.equal(fine.status, 200, fine.text);

    const g = await getSession(s.session_id);
    assert.equal(g.status, 200, g.text);
    assertSessionShape(g.json, "GET revoked");
    assert.equal(g.json.status, "revoked");
    assert.equal(g.json.revoked_at, del.json.revoked_at);
    assert.equal(g.json.agent, "agent-revoke");
    assert.equal(g.json.user, "user-revoke");
    assert.deepEqual(g.json.tools, { echo: "write" });
    assert.equal(g.json.egress, false);
    assert.equal(g.json.usage.requests, 1, `usage ${JSON.stringify(g.json.usage)}`);
    assert.ok(Number.isInteger(g.json.usage.last_seen_at), "last_seen_at set after a request");
    assert.ok(g.json.expires_at > g.json.created_at);
    assertNoSessionSecrets(g, s, "GET revoked");

    // Repeat: 200 again, revoked_at unchanged.
    await sleep(1100);
    const again = await deleteSession(s.session_id);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.status, "revoked");
    assert.equal(again.json.revoked_at, del.json.revoked_at, "revoked_at unchanged by a second DELETE");
    assert.equal(echoHits(m).length, 2, "origin saw only the call before revocation and the other session's");
  });

  test("a call in flight at revocation: afterwards the session is still revoked", async () => {
    const m = marker("/inflight");
    const s = await h.mint({ echo: "read" });
    // The echo origin answers /delay/1500/... after 1.5 s.
    const pending = h.call("echo", `/delay/1500${m}`, { token: s.token });
    const deadline = Date.now() + 5000;
    while (echoHits(`/delay/1500${m}`).length === 0 && Date.now() < deadline) await sleep(10);
    assert.equal(echoHits(`/delay/1500${m}`).length, 1, "the slow call reached the origin");

    const del = await deleteSession(s.session_id);
    assert.equal(del.status, 200, del.text);
    assert.equal(del.json.status, "revoked");

    const inflight = await pending;
    console.log(`[state] call in flight at revocation finished with ${inflight.status}`);
    assert.ok([200, 401].includes(inflight.status), `in-flight call: ${inflight.status} ${inflight.text}`);
    await auditOne(inflight, "in-flight call");

    // Whatever the in-flight call recorded afterwards must not resurrect the session.
    await sleep(300);
    const g = await getSession(s.session_id);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.json.status, "revoked");
    assert.equal(g.json.revoked_at, del.json.revoked_at);
    assert.equal(g.json.usage.requests, 1, `usage ${JSON.stringify(g.json.usage)}`);

    const hitsBefore = h.echo.hits.length;
    const r = await h.call("echo", `${m}/after`, { token: s.token });
    assertError(r, 401, "session_revoked", "after in-flight");
    await sleep(30);
    assert.equal(h.echo.hits.length, hitsBefore, "origin hit after revocation");
  });

  test("a response streaming at revocation: afterwards the session is still revoked", async () => {
    const s = await h.mint({ echo: "read" });
    // /fault/drip: 15 lines 100 ms apart.
    const streaming = h.rawStream({
      path: "/t/echo/fault/drip?interval=100&count=15",
      headers: { authorization: `Bearer ${s.token}` },
    });
    const before = echoHits("/fault/drip").length;
    const deadline = Date.now() + 5000;
    while (echoHits("/fault/drip").length === before && Date.now() < deadline) await sleep(10);
    await sleep(300); // some lines are out already
    const del = await deleteSession(s.session_id);
    assert.equal(del.status, 200, del.text);
    const r = await streaming;
    console.log(`[state] response streaming at revocation: ${r.status}, ${r.bodyBuffer.length} bytes, ${r.how}`);
    assert.equal(r.status, 200, "the stream had started before revocation");
    await sleep(300);
    const g = await getSession(s.session_id);
    assert.equal(g.json?.status, "revoked", g.text);
    assert.equal(g.json.revoked_at, del.json.revoked_at);
    const again = await h.expectNoOriginHits(() => h.call("echo", "/fault/drip?count=1", { token: s.token }), "after revocation");
    assertError(again, 401, "session_revoked", "after streaming");
  });

  // The state is consulted only for requests the policy allows (a refusal
  // costs no Durable Object call): a revoked token's in-scope requests are
  // session_revoked, the others keep their policy refusal. None is forwarded.
  test("after revocation every request with the token is refused; in-scope ones as session_revoked", async () => {
    const s = await h.mint({ echo: "read" }, { egress: false });
    assert.equal((await deleteSession(s.session_id)).status, 200);
    const json = { "content-type": "application/json" };
    const cases = [
      ["GET in scope", () => h.call("echo", "/revoked-any", { token: s.token })],
      ["POST above the session's level", () => h.call("echo", "/items/revoked-any", { token: s.token, method: "POST", body: "{}", headers: json })],
      ["tool not in the session", () => h.call("private", "/revoked-any", { token: s.token })],
      ["egress on a session without egress", () => h.egress("pypi.org/simple/", { token: s.token })],
    ];
    const got = [];
    for (const [label, call] of cases) {
      const r = await h.expectNoOriginHits(call, label);
      got.push(`${label}: ${r.status} ${r.json?.error?.code}`);
    }
    assert.deepEqual(
      got,
      [
        "GET in scope: 401 session_revoked",
        "POST above the session's level: 403 level_insufficient",
        "tool not in the session: 403 tool_not_allowed",
        "egress on a session without egress: 403 egress_not_allowed",
      ],
      "every request of a revoked session is refused",
    );
  });

  test("the state script's own URL: 404 for every request, nothing changes", async () => {
    const m = marker("/state-script");
    const s = await h.mint({ echo: "read" });
    const stateWorker = await h.mf.getWorker("airlock-state");
    // The commands Airlock itself sends to an object, sent to the script.
    for (const [method, body] of [
      ["GET", undefined],
      ["POST", JSON.stringify("revoke")],
      ["POST", JSON.stringify({ create: { record: { session_id: s.session_id } } })],
      ["DELETE", undefined],
    ]) {
      for (const path of ["/", `/session:${s.session_id}`, "/approvals"]) {
        const r = await stateWorker.fetch(`http://airlock-state${path}`, { method, body });
        const text = await r.text();
        assert.equal(r.status, 404, `${method} ${path}: ${r.status} ${text}`);
        assert.ok(!text.includes(s.session_id), `${method} ${path}: answer names the session`);
      }
    }
    const after = await getSession(s.session_id);
    assert.equal(after.status, 200, after.text);
    assert.equal(after.json.status, "active");
    assert.equal(after.json.usage.requests, 0);
    const ok = await h.call("echo", `${m}/a`, { token: s.token });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(echoHits(m).length, 1);
  });

  test("unknown id -> 404 session_not_found", async () => {
    const unknown = randomBytes(16).toString("hex");
    for (const [label, r] of [
      ["GET unknown", await getSession(unknown)],
      ["DELETE unknown", await deleteSession(unknown)],
    ]) {
      assertError(r, 404, "session_not_found", label);
    }
    // After a DELETE of an unknown id, it is still unknown (no record created).
    assertError(await getSession(unknown), 404, "session_not_found", "GET after DELETE unknown");
  });

  test("non-admin -> 401 invalid_admin_key (no key, wrong key, the session's own token)", async () => {
    const s = await h.mint({ echo: "read" });
    const variants = [
      ["no authorization", {}],
      ["wrong admin key", { authorization: "Bearer wrong-admin-key-value" }],
      ["the session token", { authorization: `Bearer ${s.token}` }],
    ];
    for (const [label, headers] of variants) {
      assertError(await getSession(s.session_id, headers), 401, "invalid_admin_key", `GET, ${label}`);
      assertError(await deleteSession(s.session_id, headers), 401, "invalid_admin_key", `DELETE, ${label}`);
    }
    // None of those DELETEs revoked it.
    const r = await h.call("echo", "/still-active", { token: s.token });
    assert.equal(r.status, 200, r.text);
    const g = await getSession(s.session_id);
    assert.equal(g.json?.status, "active", g.text);
  });

  test("an expired session shows status expired", async () => {
    const s = await h.mint({ echo: "read" }, { ttl_seconds: 1 });
    await sleep(2200);
    const g = await getSession(s.session_id);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.json.status, "expired");
    assert.equal(g.json.revoked_at, null);
  });
});

// ---------------------------------------------------------------------------

describe("request proofs", () => {
  /** A raw request (exact request-target) with an optional proof. */
  const proofCall = (s, { method = "GET", path, query = "", body, headers = {}, proof } = {}) =>
    h.raw({
      method,
      path: query ? `${path}?${query}` : path,
      headers: {
        authorization: `Bearer ${s.token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...(proof ? { "x-airlock-proof": proof } : {}),
        ...headers,
      },
      body,
    });

  test("50 concurrent requests with the same proof: one 200, 49 x 401 proof_replayed, origin hit once", async () => {
    const s = await h.mint({ signed: "read" });
    const m = marker("/replay");
    const path = `/t/signed${m}`;
    const query = "x=1&y=two%20words";
    const { header } = signProof({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", path, query });

    const rs = await Promise.all(Array.from({ length: 50 }, () => proofCall(s, { path, query, proof: header })));
    await sleep(50);
    const t = tally(rs);
    assert.deepEqual(t, { 200: 1, "401 proof_replayed": 49 }, `statuses ${JSON.stringify(t)}`);
    for (const r of rs.filter((x) => x.status !== 200)) assertError(r, 401, "proof_replayed", "replay");
    assert.equal(echoHits(m).length, 1, "origin hit exactly once");
    const hit = echoHits(m)[0];
    assert.equal(hit.query, query);
    assert.equal(hit.headers["x-airlock-proof"], undefined, "the proof header is not forwarded");
    assert.equal(hit.headers.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);

    const audits = await auditEach(rs, "replay burst");
    const ok = audits[rs.findIndex((r) => r.status === 200)];
    assert.equal(ok.reason, "ok");
    assert.equal(ok.proof, "verified");
    const replayed = audits.filter((a) => a.reason === "proof_replayed");
    assert.equal(replayed.length, 49);
    for (const a of replayed) assert.notEqual(a.decision, "allow");

    const g = await sessionWhen(s.session_id, (j) => j.usage.requests === 1 && j.usage.denied === 49);
    assert.equal(g.json?.usage?.requests, 1, `usage ${g.text}`);
    assert.equal(g.json.usage.denied, 49, `usage ${g.text}`);
  });

  test("required proof missing, malformed, wrong, stale or for another request -> 401, origin not hit", async () => {
    const s = await h.mint({ signed: "read" });
    const other = await h.mint({ signed: "read" });
    const m = marker("/proofs");
    const path = `/t/signed${m}`;
    const body = JSON.stringify({ item: m });
    const sign = (o = {}) =>
      signProof({ proofKey: s.proof_key, sessionId: s.session_id, method: "POST", path, query: "a=1", body, ...o }).header;
    const good = sign();
    const sigOf = (hdr) => hdr.split(";sig=")[1];
    const flip = (x) => (x[0] === "A" ? "B" : "A") + x.slice(1);

    const cases = [
      ["missing", undefined, "proof_required"],
      ["empty", "", "proof_required"],
      ["garbage", "nonsense", "proof_invalid"],
      ["v2", good.replace(/^v1;/, "v2;"), "proof_invalid"],
      ["short nonce", sign({ nonce: "abc" }), "proof_invalid"],
      ["nonce with a bad character", sign({ nonce: "abcdefghijklmnop.q" }), "proof_invalid"],
      ["flipped signature", good.replace(sigOf(good), flip(sigOf(good))), "proof_invalid"],
      ["other session's key", signProof({ proofKey: other.proof_key, sessionId: s.session_id, method: "POST", path, query: "a=1", body }).header, "proof_invalid"],
      ["other session id", sign({ sessionId: other.session_id }), "proof_invalid"],
      ["other method", sign({ method: "GET" }), "proof_invalid"],
      ["other path", sign({ path: `${path}x` }), "proof_invalid"],
      ["other query", sign({ query: "a=2" }), "proof_invalid"],
      ["other body", sign({ body: `${body} ` }), "proof_invalid"],
      ["old", sign({ ts: nowSec() - 600 }), "proof_stale"],
      ["future", sign({ ts: nowSec() + 600 }), "proof_stale"],
    ];
    for (const [label, proof, code] of cases) {
      const r = await h.expectNoOriginHits(
        () => proofCall(s, { method: "POST", path, query: "a=1", body, proof }),
        label,
      );
      if (label === "empty") {
        // An empty header is either absent or malformed; both are refusals.
        assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
        assert.ok(["proof_required", "proof_invalid"].includes(r.json?.error?.code), `${label}: ${r.text}`);
      } else {
        assertError(r, 401, code, label);
      }
      const a = await auditOne(r, label);
      assert.equal(a.reason, r.json.error.code, `${label}: audit reason`);
    }
    // None of those spent the good proof's nonce: it still works, once.
    const ok = await proofCall(s, { method: "POST", path, query: "a=1", body, proof: good });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(echoHits(m).length, 1);
    assert.equal(JSON.parse(ok.text).body, body);
    const replay = await h.expectNoOriginHits(() => proofCall(s, { method: "POST", path, query: "a=1", body, proof: good }), "replay");
    assertError(replay, 401, "proof_replayed", "sequential replay");
  });

  test("a fresh nonce per request: every request goes through", async () => {
    const s = await h.mint({ signed: "read" });
    const m = marker("/fresh");
    const rs = [];
    for (let i = 0; i < 5; i++) {
      const path = `/t/signed${m}/${i}`;
      rs.push(await proofCall(s, { path, proof: signProof({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", path }).header }));
    }
    assert.deepEqual(tally(rs), { 200: 5 });
    assert.equal(echoHits(m).length, 5);
  });

  test("a proof that is present is checked even where none is required", async () => {
    const s = await h.mint({ echo: "read" });
    const m = marker("/optional");
    const path = `/t/echo${m}`;
    const good = signProof({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", path }).header;
    const bad = signProof({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", path: `${path}/x` }).header;

    const none = await proofCall(s, { path });
    assert.equal(none.status, 200, `no proof needed on echo: ${none.text}`);
    const refused = await h.expectNoOriginHits(() => proofCall(s, { path, proof: bad }), "bad optional proof");
    assertError(refused, 401, "proof_invalid", "bad optional proof");
    const ok = await proofCall(s, { path, proof: good });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((await auditOne(ok, "optional proof")).proof, "verified");
    const replay = await h.expectNoOriginHits(() => proofCall(s, { path, proof: good }), "optional replay");
    assertError(replay, 401, "proof_replayed", "optional replay");
    assert.equal(echoHits(m).length, 2);
  });
});

// ---------------------------------------------------------------------------

describe("idempotency keys", () => {
  const post = (s, path, { key, body, agentName } = {}) =>
    h.call("echo", path, {
      token: s.token,
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(key !== undefined ? { "idempotency-key": key } : {}),
        // The echo origin reflects request headers, so each copy is distinguishable.
        ...(agentName ? { "user-agent": agentName } : {}),
      },
      body,
    });

  test("20 concurrent POSTs with one key: origin hit once, 20 identical answers, 19 replays", async () => {
    const s = await h.mint({ echo: "write" });
    const m = marker("/idem");
    const path = `/delay/1000${m}`;
    const key = `key-${randomBytes(12).toString("hex")}`;
    const body = JSON.stringify({ create: m });

    const rs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(s, path, { key, body, agentName: `idem-client-${i}` })),
    );
    await sleep(50);
    assert.equal(echoHits(path).length, 1, `origin hits: ${echoHits(path).length} (${JSON.stringify(tally(rs))})`);
    const hit = echoHits(path)[0];
    assert.equal(hit.headers["idempotency-key"], key, "the key is forwarded");

    const statuses = new Set(rs.map((r) => r.status));
    assert.deepEqual([...statuses], [200], `statuses ${JSON.stringify(tally(rs))}`);
    const bodies = new Set(rs.map((r) => r.text));
    assert.equal(bodies.size, 1, "byte-identical bodies");
    assert.equal(new Set(rs.map((r) => r.headers["content-type"])).size, 1, "same content-type");
    // The one body is the forwarded request's: its user-agent says which client it was.
    const ua = JSON.parse(rs[0].text).headers["user-agent"];
    assert.equal(ua, hit.headers["user-agent"]);
    const replays = rs.filter((r) => r.headers["x-airlock-idempotent-replay"] === "true");
    assert.equal(replays.length, 19, "19 carry x-airlock-idempotent-replay: true");
    const first = rs.filter((r) => r.headers["x-airlock-idempotent-replay"] === undefined);
    assert.equal(first.length, 1);
    assert.equal(first[0], rs[Number(ua.replace("idem-client-", ""))], "the original answer went to the client that was forwarded");

    const audits = await auditEach(rs, "idempotent burst");
    const marks = audits.map((a) => a.idempotency).sort();
    assert.deepEqual(marks, ["stored", ...Array(19).fill("replayed")].sort());
    for (const a of audits) assert.equal(a.reason, "ok");

    // Later, sequentially: same key, same request -> stored answer, origin not hit.
    const later = await h.expectNoOriginHits(() => post(s, path, { key, body }), "later replay");
    assert.equal(later.status, 200);
    assert.equal(later.text, rs[0].text);
    assert.equal(later.headers["x-airlock-idempotent-replay"], "true");

    // Same key, different body -> 422, origin not hit.
    const reused = await h.expectNoOriginHits(
      () => post(s, path, { key, body: JSON.stringify({ create: `${m}-other` }) }),
      "key reused",
    );
    assertError(reused, 422, "idempotency_key_reused", "different body");
    assert.equal((await auditOne(reused, "key reused")).idempotency, "key_reused");
    // ... different path, or different query, too.
    const reusedPath = await h.expectNoOriginHits(() => post(s, `/items${m}`, { key, body }), "key reused, path");
    assertError(reusedPath, 422, "idempotency_key_reused", "different path");
    const reusedQuery = await h.expectNoOriginHits(() => post(s, `${path}?v=2`, { key, body }), "key reused, query");
    assertError(reusedQuery, 422, "idempotency_key_reused", "different query");
    assert.equal(echoHits(path).length, 1);
  });

  test("an answer Airlock produced after forwarding (504) is stored too: at most once", async () => {
    // upstream_timeout_ms is 3000; the echo origin answers after 4 s.
    const s = await h.mint({ echo: "write" });
    const m = marker("/idem-timeout");
    const path = `/delay/4000${m}`;
    const key = `timeout-${randomBytes(8).toString("hex")}`;
    const first = await post(s, path, { key, body: "{}" });
    assertError(first, 504, "upstream_timeout", "first, timed out");
    assert.equal(echoHits(path).length, 1);
    assert.equal((await auditOne(first, "timed out")).idempotency, "stored");
    const again = await h.expectNoOriginHits(() => post(s, path, { key, body: "{}" }), "after a 504");
    assert.equal(again.status, 504, again.text);
    assert.equal(again.text, first.text, "the stored 504 again");
    assert.equal(again.headers["x-airlock-idempotent-replay"], "true");
    assert.equal(echoHits(path).length, 1, "not retried upstream");
  });

  test("an answer too large to store -> later duplicates 409 idempotency_response_not_stored", async () => {
    const s = await h.mint({ echo: "write" });
    const m = marker("/idem-large");
    const path = `/random/70000${m}`; // over the default idempotency_max_body_bytes (65536)
    const key = `large-${randomBytes(8).toString("hex")}`;
    const first = await h.raw({
      method: "POST",
      path: `/t/echo${path}`,
      headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json", "idempotency-key": key },
      body: "{}",
    });
    assert.equal(first.status, 200, first.text.slice(0, 200));
    assert.equal(first.bodyBuffer.length, 70000, "the whole answer reached the client");
    assert.equal(echoHits(path).length, 1);
    const dup = await h.expectNoOriginHits(() => post(s, path, { key, body: "{}" }), "large duplicate");
    assertError(dup, 409, "idempotency_response_not_stored", "large duplicate");
    assert.equal(echoHits(path).length, 1, "the duplicate was not forwarded");
  });

  test("keys are scoped to the session; without a key every POST is forwarded", async () => {
    const a = await h.mint({ echo: "write" });
    const b = await h.mint({ echo: "write" });
    const m = marker("/scope");
    const path = `/items${m}`;
    const key = `scope-${randomBytes(8).toString("hex")}`;
    const body = "{}";
    const ra = await post(a, path, { key, body });
    const rb = await post(b, path, { key, body });
    assert.equal(ra.status, 200, ra.text);
    assert.equal(rb.status, 200, rb.text);
    assert.equal(rb.headers["x-airlock-idempotent-replay"], undefined, "other session: not a replay");
    assert.equal(echoHits(path).length, 2);
    await post(a, path, { body });
    await post(a, path, { body });
    assert.equal(echoHits(path).length, 4, "no key: forwarded every time");
  });

  test("read-level rules ignore the key", async () => {
    const s = await h.mint({ echo: "write" });
    const m = marker("/idem-read");
    const key = `read-${randomBytes(8).toString("hex")}`;
    for (let i = 0; i < 2; i++) {
      const r = await h.call("echo", m, { token: s.token, headers: { "idempotency-key": key } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers["x-airlock-idempotent-replay"], undefined);
    }
    assert.equal(echoHits(m).length, 2);
  });

  test("a malformed key -> 400 invalid_request, origin not hit", async () => {
    const s = await h.mint({ echo: "write" });
    const m = marker("/idem-bad");
    for (const [label, key] of [
      ["256 characters", "k".repeat(256)],
      ["a space", "has space"],
      ["non-ASCII", "clé-unique"],
    ]) {
      let r;
      try {
        r = await h.expectNoOriginHits(() => post(s, `/items${m}`, { key, body: "{}" }), label);
      } catch (err) {
        // A client may refuse to send a non-ASCII header value at all; that is fine.
        if (label === "non-ASCII" && /invalid|header/i.test(String(err.message))) continue;
        throw err;
      }
      assertError(r, 400, "invalid_request", `key with ${label}`);
    }
    const ok = await post(s, `/items${m}`, { key: "k".repeat(255), body: "{}" });
    assert.equal(ok.status, 200, `255-character key: ${ok.text}`);
    assert.equal(echoHits(`/items${m}`).length, 1);
  });
});

// ---------------------------------------------------------------------------

describe("rate limits", () => {
  test("tool rate {burst: 5}: 12 concurrent -> 5 x 200, 7 x 429 rate_limited with Retry-After, origin 5", async () => {
    const s = await h.mint({ rated: "read", echo: "read" });
    const m = marker("/rated");
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => h.call("rated", `${m}/${i}`, { token: s.token })));
    await sleep(50);
    assert.deepEqual(tally(rs), { 200: 5, "429 rate_limited": 7 });
    assert.equal(echoHits(m).length, 5, "origin count 5");
    const limited = rs.filter((r) => r.status === 429);
    for (const r of limited) {
      assertError(r, 429, "rate_limited", "over the tool rate");
      const ra = r.headers["retry-after"];
      assert.match(ra ?? "", /^\d+$/, `Retry-After ${ra}`);
      assert.ok(Number(ra) >= 1, `Retry-After ${ra}`);
    }
    const audits = await auditEach(limited, "429s");
    for (const a of audits) {
      assert.equal(a.reason, "rate_limited");
      assert.equal(a.rate_limit, "tool");
    }

    // The limit is per session + tool: the same session's echo calls and
    // another session's rated calls pass.
    const other = await h.mint({ rated: "read" });
    assert.equal((await h.call("echo", `${m}/echo`, { token: s.token })).status, 200);
    assert.equal((await h.call("rated", `${m}/other`, { token: other.token })).status, 200);
    assert.equal(echoHits(m).length, 7);

    const g = await sessionWhen(s.session_id, (j) => j.usage.rate_limited === 7 && j.usage.requests === 6);
    assert.equal(g.json?.usage?.rate_limited, 7, `usage ${g.text}`);
    assert.equal(g.json.usage.requests, 6, `usage ${g.text}`);
    assert.equal(g.json.usage.denied, 0, `rate refusals are counted in rate_limited only: ${g.text}`);
  });

  test("tool rate, sequential: requests 6..12 all 429", async () => {
    const s = await h.mint({ rated: "read" });
    const m = marker("/rated-seq");
    const rs = [];
    for (let i = 0; i < 12; i++) rs.push(await h.call("rated", `${m}/${i}`, { token: s.token }));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    assert.equal(echoHits(m).length, 5);
  });
});

describe("session rate", () => {
  let sh;

  before(async () => {
    sh = await startAirlock({
      policy: (echoUrl) => testPolicy(echoUrl, { limits: { session_rate: { burst: 3, per_second: 0.001 } } }),
    });
  });

  after(async () => {
    await sh?.close();
  });

  test("limits.session_rate {burst: 3}: counted across tools, 429 rate_limit session, other sessions unaffected", async () => {
    const s = await sh.mint({ echo: "read", private: "read" });
    const other = await sh.mint({ echo: "read" });
    const before = await sh.originHitCount();
    const rs = [
      await sh.call("echo", "/sr/1", { token: s.token }),
      await sh.call("private", "/sr/2", { token: s.token }),
      await sh.call("echo", "/sr/3", { token: s.token }),
    ];
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200], rs.map((r) => r.text).join("\n"));
    assert.equal((await sh.originHitCount()) - before, 3);

    for (const tool of ["echo", "private"]) {
      const r = await sh.expectNoOriginHits(() => sh.call(tool, "/sr/over", { token: s.token }), `session over, ${tool}`);
      assertError(r, 429, "rate_limited", `session rate, ${tool}`);
      assert.ok(Number(r.headers["retry-after"]) >= 1, `Retry-After ${r.headers["retry-after"]}`);
      const a = await auditOne(r, `session rate ${tool}`, sh);
      assert.equal(a.rate_limit, "session");
    }
    const fine = await sh.call("echo", "/sr/other", { token: other.token });
    assert.equal(fine.status, 200, fine.text);
    assert.equal((await sh.originHitCount()) - before, 4);
  });
});

// ---------------------------------------------------------------------------

describe("approval gates", () => {
  const del = (s, path, { approval, body, headers = {} } = {}) =>
    h.call("echo", path, {
      token: s.token,
      method: "DELETE",
      headers: { ...(approval ? { "x-airlock-approval": approval } : {}), ...headers },
      body,
    });
  const decide = (id, verdict, approver, headers = adminHeaders()) =>
    h.fetch(`/v1/approvals/${id}/${verdict}`, {
      method: "POST",
      headers,
      body: JSON.stringify(approver === undefined ? {} : { approver }),
    });
  const getApproval = (id, headers = adminHeaders()) => h.fetch(`/v1/approvals/${id}`, { headers });
  const listApprovals = (headers = adminHeaders()) => h.fetch("/v1/approvals", { headers });

  /** A request that needs approval -> 403 approval_required; returns the approval id. */
  async function requireApproval(s, path, label) {
    const r = await h.expectNoOriginHits(() => del(s, path), label);
    assertError(r, 403, "approval_required", label);
    const id = r.json.error.approval_id;
    assert.match(id ?? "", /^ap_[0-9a-f]{32}$/, `${label}: approval_id`);
    assert.equal(r.headers["x-airlock-approval-id"], id, `${label}: x-airlock-approval-id header`);
    return [id, r];
  }

  test("required -> approve -> forwarded once; reuse, tampering, re-deciding refused", async () => {
    const s = await h.mint({ echo: "admin" }, { agent: "agent-approve", user: "user-approve" });
    const m = marker("apv");
    const path = `/items/${m}`;

    const [id, first] = await requireApproval(s, path, "first request");
    assert.equal((await auditOne(first, "approval_required")).reason, "approval_required");
    const [same] = await requireApproval(s, path, "same request again");
    assert.equal(same, id, "the same pending approval for the same request");

    const list = await listApprovals();
    assert.equal(list.status, 200, list.text);
    assert.ok(Array.isArray(list.json?.approvals), list.text);
    const listed = list.json.approvals.filter((a) => a.approval_id === id);
    assert.equal(listed.length, 1, "listed once");
    for (const a of list.json.approvals) assert.equal(a.status, "pending", "the list holds pending approvals only");
    const ap = listed[0];
    assert.equal(ap.status, "pending");
    assert.equal(ap.session_id, s.session_id);
    assert.equal(ap.agent, "agent-approve");
    assert.equal(ap.user, "user-approve");
    assert.equal(ap.tool, "echo");
    assert.equal(ap.method, "DELETE");
    assert.ok(ap.path.endsWith(path), `path ${ap.path}`);
    assert.equal(ap.body_sha256, EMPTY_SHA256);
    assert.equal(ap.decided_by, null);
    assert.equal(ap.decided_at, null);
    assert.ok(Number.isInteger(ap.created_at) && Number.isInteger(ap.expires_at));
    assert.ok(Math.abs(ap.expires_at - ap.created_at - 3600) <= 1, "default approval_ttl_seconds 3600");
    assertNoSessionSecrets(list, s, "approval list");

    // Still pending.
    const pending = await h.expectNoOriginHits(() => del(s, path, { approval: id }), "pending");
    assertError(pending, 403, "approval_pending", "pending");

    // Only the admin decides.
    for (const headers of [{}, { authorization: `Bearer ${s.token}` }]) {
      assertError(await decide(id, "approve", "mallory", headers), 401, "invalid_admin_key", "approve without admin key");
      assertError(await listApprovals(headers), 401, "invalid_admin_key", "list without admin key");
      assertError(await getApproval(id, headers), 401, "invalid_admin_key", "get without admin key");
    }
    assert.equal((await getApproval(id)).json?.status, "pending");

    const ok = await decide(id, "approve", "alice");
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.approval_id, id);
    assert.equal(ok.json.status, "approved");
    assert.equal(ok.json.decided_by, "alice");
    assert.ok(Number.isInteger(ok.json.decided_at));

    // The identical request with the id: forwarded exactly once.
    const before = echoHits(path).length;
    const done = await del(s, path, { approval: id });
    assert.equal(done.status, 200, done.text);
    assert.equal(echoHits(path).length - before, 1, "origin hit once");
    const hit = echoHits(path).at(-1);
    assert.equal(hit.method, "DELETE");
    assert.equal(hit.headers["x-airlock-approval"], undefined, "the approval header is not forwarded");
    const a = await auditOne(done, "approved request");
    assert.equal(a.reason, "ok");
    assert.equal(a.approval_id, id);
    assert.equal(a.approved_by, "alice");
    assert.equal((await getApproval(id)).json?.status, "used");
    assert.ok(!(await listApprovals()).json.approvals.some((x) => x.approval_id === id), "no longer pending");

    // Second use; a different path, query or body with the used id.
    for (const [label, call] of [
      ["second use", () => del(s, path, { approval: id })],
      ["other path", () => del(s, `/items/${m}-x`, { approval: id })],
      ["other query", () => del(s, `${path}?force=1`, { approval: id })],
    ]) {
      const r = await h.expectNoOriginHits(call, label);
      assertError(r, 403, "approval_invalid", label);
    }

    // Deciding again.
    assertError(await decide(id, "approve", "alice"), 409, "approval_decided", "approve again");
    assertError(await decide(id, "deny", "bob"), 409, "approval_decided", "deny after approve");
    assert.equal(echoHits(path).length, before + 1);
  });

  test("an approved id does not carry over to another request or session", async () => {
    const s = await h.mint({ echo: "admin" });
    const intruder = await h.mint({ echo: "admin" });
    const m = marker("apt");
    const path = `/items/${m}`;
    const [id] = await requireApproval(s, path, "tamper target");
    assert.equal((await decide(id, "approve", "alice")).status, 200);
    for (const [label, call] of [
      ["other path", () => del(s, `/items/${m}-other`, { approval: id })],
      ["other query", () => del(s, `${path}?cascade=1`, { approval: id })],
      ["other body", () => del(s, path, { approval: id, body: '{"all":true}', headers: { "content-type": "application/json" } })],
      ["other session", () => del(intruder, path, { approval: id })],
    ]) {
      const r = await h.expectNoOriginHits(call, label);
      assertError(r, 403, "approval_invalid", label);
      const a = await auditOne(r, label);
      assert.equal(a.reason, "approval_invalid");
      assert.equal(a.approved_by ?? null, null, `${label}: no approver on a refusal`);
    }
    assert.equal(echoHits(`/items/${m}`).length, 0);
  });

  test("denied -> 403 approval_denied; forged or unknown ids -> approval_invalid / 404", async () => {
    const s = await h.mint({ echo: "admin" });
    const m = marker("apd");
    const path = `/items/${m}`;
    const [id] = await requireApproval(s, path, "to be denied");
    const no = await decide(id, "deny", "bob");
    assert.equal(no.status, 200, no.text);
    assert.equal(no.json.status, "denied");
    assert.equal(no.json.decided_by, "bob");
    const denied = await h.expectNoOriginHits(() => del(s, path, { approval: id }), "denied");
    assertError(denied, 403, "approval_denied", "denied");
    assertError(await decide(id, "approve", "alice"), 409, "approval_decided", "approve after deny");
    const still = await h.expectNoOriginHits(() => del(s, path, { approval: id }), "denied, after a late approve");
    assertError(still, 403, "approval_denied", "still denied");

    const forged = `ap_${randomBytes(16).toString("hex")}`;
    for (const [label, value] of [
      ["forged id", forged],
      ["not an id", "nope"],
      ["the real id with a changed digit", id.slice(0, -1) + (id.endsWith("0") ? "1" : "0")],
    ]) {
      const r = await h.expectNoOriginHits(() => del(s, path, { approval: value }), label);
      assertError(r, 403, "approval_invalid", label);
    }
    assertError(await getApproval(forged), 404, "approval_not_found", "GET unknown approval");
    assertError(await decide(forged, "approve", "alice"), 404, "approval_not_found", "approve unknown");
    assertError(await decide(forged, "deny", "alice"), 404, "approval_not_found", "deny unknown");
    assert.equal(echoHits(path).length, 0);
  });

  test("approver must be 1-128 characters", async () => {
    const s = await h.mint({ echo: "admin" });
    const [id] = await requireApproval(s, `/items/${marker("apa")}`, "approver check");
    for (const [label, approver] of [
      ["missing", undefined],
      ["empty", ""],
      ["129 characters", "a".repeat(129)],
    ]) {
      const r = await decide(id, "approve", approver);
      assertError(r, 400, "invalid_request", `approver ${label}`);
    }
    assert.equal((await getApproval(id)).json?.status, "pending", "bad decisions changed nothing");
    const ok = await decide(id, "approve", "a".repeat(128));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.decided_by, "a".repeat(128));
  });

  test("rules without approval are not gated", async () => {
    const s = await h.mint({ echo: "admin" });
    const m = marker("/items/nogate");
    const r = await h.call("echo", m, { token: s.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(echoHits(m).length, 1);
  });
});

// ---------------------------------------------------------------------------

describe("session object unavailable -> 503 state_unavailable, nothing forwarded", () => {
  const net = fakeInternet();
  let fh;
  let session; // minted while the state object worked

  before(async () => {
    fh = await startAirlock({
      state: "broken",
      outboundService: net.handler,
      policy: (echoUrl) => testPolicy(echoUrl, { egress: { hosts: ["pypi.org"] } }),
    });
  });

  after(async () => {
    await fh?.close();
  });

  const originCount = async () => (await fh.originHitCount()) + net.count();

  async function expectUnavailable(label, fn) {
    const before = await originCount();
    const r = await fn();
    await sleep(50);
    assertError(r, 503, "state_unavailable", label);
    assert.equal((await originCount()) - before, 0, `${label}: something was forwarded`);
    assert.ok(!("token" in (r.json ?? {})), `${label}: no token`);
    const a = await auditOne(r, label, fh);
    assert.equal(a.reason, "state_unavailable", `${label}: audit reason`);
    assert.notEqual(a.decision, "allow");
    return r;
  }

  test("broken from the start: mint -> 503 state_unavailable, no token", async () => {
    await expectUnavailable("mint (broken)", () =>
      fh.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 600 }),
    );
  });

  test("working state: a session with tools and egress works", async () => {
    await fh.restart({ state: "default" });
    session = await fh.mint({ echo: "write", private: "read" }, { egress: true });
    const before = await originCount();
    assert.equal((await fh.call("echo", "/works", { token: session.token })).status, 200);
    assert.equal((await fh.call("private", "/works", { token: session.token })).status, 200);
    assert.equal((await fh.egress("pypi.org/simple/", { token: session.token })).status, 200);
    assert.equal((await originCount()) - before, 3);
  });

  for (const mode of ["broken", "missing"]) {
    test(`state ${mode}: tool call, service call, egress and mint -> 503`, async () => {
      assert.ok(session, "needs the session of the previous test");
      await fh.restart({ state: mode });
      await expectUnavailable(`${mode}: tool call`, () => fh.call("echo", "/down", { token: session.token }));
      await expectUnavailable(`${mode}: service-binding call`, () => fh.call("private", "/down", { token: session.token }));
      await expectUnavailable(`${mode}: egress`, () => fh.egress("pypi.org/simple/", { token: session.token }));
      await expectUnavailable(`${mode}: write`, () =>
        fh.call("echo", "/items/down", { token: session.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } }),
      );
      await expectUnavailable(`${mode}: mint`, () =>
        fh.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 600 }),
      );
      // Requests that never reach the state object are unaffected.
      assert.equal((await fh.fetch("/v1/health")).status, 200);
      const noToken = await fh.call("echo", "/down");
      assert.equal(noToken.status, 401, `no token -> 401 before any state lookup: ${noToken.text}`);
    });
  }

  test("state back: the same session works again", async () => {
    await fh.restart({ state: "default" });
    const before = await originCount();
    const r = await fh.call("echo", "/back", { token: session.token });
    assert.equal(r.status, 200, r.text);
    assert.equal((await originCount()) - before, 1);
  });
});

// ---------------------------------------------------------------------------

test("state latency: state_ms and client latency over 200 sequential calls (a figure)", async () => {
  const N = 200;
  const s = await h.mint({ echo: "read" });
  const m = marker("/lat");
  const rs = [];
  const client = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const r = await h.call("echo", `${m}/${i}`, { token: s.token });
    client.push(performance.now() - t0);
    assert.equal(r.status, 200, r.text);
    rs.push(r);
  }
  assert.equal(echoHits(m).length, N);
  const audits = await auditEach(rs, "latency");
  const stateMs = audits.map((a, i) => {
    assert.equal(typeof a.state_ms, "number", `#${i}: state_ms ${JSON.stringify(a.state_ms)}`);
    assert.ok(Number.isFinite(a.state_ms) && a.state_ms >= 0, `#${i}: state_ms ${a.state_ms}`);
    return a.state_ms;
  });
  const sorted = (xs) => [...xs].sort((a, b) => a - b);
  const fmt = (xs) => {
    const t = sorted(xs);
    return `p50 ${percentile(t, 50).toFixed(2)} ms, p99 ${percentile(t, 99).toFixed(2)} ms, max ${t.at(-1).toFixed(2)} ms`;
  };
  console.log(`[state] audit state_ms over ${N} sequential calls: ${fmt(stateMs)}`);
  console.log(`[state] client latency over ${N} sequential calls: ${fmt(client)}`);
  const g = await sessionWhen(s.session_id, (j) => j.usage.requests === N);
  assert.equal(g.json?.usage?.requests, N, `usage ${g.text}`);
});
