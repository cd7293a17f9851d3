// The session token wherever a client puts its key, in the built worker:
// every built-in place and a tool's own, exactly one token per request, the
// 401 challenge, text errors for git, per-tool timeouts and the 5xx
// pass-through of vendor presets. The origin records every request, so each
// case shows what arrived (the real credential, never the token) and each
// refusal shows that nothing did.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { REDACTED, assertError, startAirlock, testPolicy } from "./helpers.mjs";

const KEY = `sk-proj-${randomBytes(18).toString("hex")}`;
const CHALLENGE = 'Basic realm="airlock", Bearer realm="airlock"';

/** An origin that answers like an API: `/slow/<ms>` waits before its
 * head, `/fail` is a 503 whose body and headers echo the credential it
 * received, anything else echoes what arrived. */
async function startApiOrigin() {
  const hits = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      hits.push({ method: req.method, url: req.url, headers: req.headers, body });
      const slow = req.url.match(/^\/v1\/slow\/(\d+)/);
      const answer = () => {
        if (req.url.startsWith("/v1/fail")) {
          res.writeHead(503, { "content-type": "application/json", "x-should-retry": "true", "x-seen": req.headers.authorization ?? "" });
          res.end(JSON.stringify({ error: { type: "overloaded", seen: req.headers.authorization } }));
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: true, path: req.url }));
      };
      if (slow) setTimeout(answer, Number(slow[1]));
      else answer();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, hits, close: () => new Promise((r) => server.close(r)) };
}

let o;
let h;
let s;

before(async () => {
  o = await startApiOrigin();
  try {
    const local = { origin: o.url, allow_http: true };
    h = await startAirlock({
      secrets: { API_KEY: KEY },
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          limits: { upstream_timeout_ms: 1000 },
          extraTools: {
            // The preset's placement (Bearer), its 5xx pass-through and
            // its long timeouts; the origin is the local one.
            llm: { preset: "openai", ...local, credential: { secret: "API_KEY" }, session_token: { query: ["key"], headers: ["x-sandbox-key"] } },
            // The same API without the preset: 5xx refused, policy timeout.
            plain: { ...local, credential: { secret: "API_KEY", inject: "bearer" }, rules: [{ methods: ["GET"], path: "/**", level: "read" }] },
            quick: { ...local, credential: { secret: "API_KEY", inject: "bearer" }, timeout_ms: 1000, rules: [{ methods: ["GET"], path: "/**", level: "read" }] },
          },
        }),
    });
    s = await h.mint({ llm: "write", plain: "read", quick: "read" });
  } catch (err) {
    await o.close();
    throw err;
  }
});

after(async () => {
  await h?.close();
  await o?.close();
});

const basic = (pair) => `Basic ${Buffer.from(pair).toString("base64")}`;

/** Everything the origin received in its last `n` hits. */
const seen = (n = 1) => JSON.stringify(o.hits.slice(-n));

describe("the token wherever a client puts its key", () => {
  const places = () => [
    ["Authorization: Bearer", { authorization: `Bearer ${s.token}` }],
    ["Authorization: token", { authorization: `token ${s.token}` }],
    ["Basic password", { authorization: basic(`x-access-token:${s.token}`) }],
    ["Basic user, empty password", { authorization: basic(`${s.token}:`) }],
    ["x-api-key", { "x-api-key": s.token }],
    ["x-goog-api-key", { "x-goog-api-key": s.token }],
    ["api-key", { "api-key": s.token }],
    ["the tool's own header", { "x-sandbox-key": s.token }],
    ["the same token twice", { authorization: `Bearer ${s.token}`, "x-api-key": s.token }],
  ];

  test("every place is accepted; the origin gets the real key and never the token", async () => {
    for (const [what, headers] of places()) {
      const before = o.hits.length;
      const r = await h.call("llm", "/v1/models", { headers });
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(o.hits.length - before, 1, what);
      const hit = o.hits.at(-1);
      assert.equal(hit.headers.authorization, `Bearer ${KEY}`, what);
      assert.ok(!seen().includes(s.token), `${what}: the session token reached the origin`);
      for (const h of ["x-api-key", "x-goog-api-key", "api-key", "x-sandbox-key"]) assert.equal(hit.headers[h], undefined, `${what}: ${h} forwarded`);
      assert.ok(!r.text.includes(KEY), `${what}: the key reached the sandbox`);
    }
  });

  test("a query parameter the tool names carries the token and is not forwarded", async () => {
    for (const query of [`key=${s.token}&limit=2`, `limit=2;key=${s.token}`]) {
      const r = await h.call("llm", `/v1/models?${query}`);
      assert.equal(r.status, 200, `${query}: ${r.text}`);
      const hit = o.hits.at(-1);
      assert.equal(hit.url, "/v1/models?limit=2", query);
      assert.ok(!seen().includes(s.token), `${query}: the session token reached the origin`);
      assert.ok(!JSON.stringify(h.audit.at(-1)).includes(s.token), "the token is in the audit record");
    }
  });

  test("two different tokens, or a token and another value, are refused with the challenge and nothing is sent", async () => {
    const other = await h.mint({ llm: "admin" });
    const rows = [
      ["bearer and x-api-key", { authorization: `Bearer ${s.token}`, "x-api-key": other.token }],
      ["x-api-key and x-goog-api-key", { "x-api-key": s.token, "x-goog-api-key": other.token }],
      ["a token and a raw key", { authorization: `Bearer ${s.token}`, "x-api-key": "sk-something-else" }],
      ["basic and api-key", { authorization: basic(`x:${other.token}`), "api-key": s.token }],
    ];
    for (const [what, headers] of rows) {
      const before = o.hits.length;
      const r = await h.call("llm", "/v1/models", { headers });
      assertError(r, 401, "invalid_session");
      assert.equal(r.headers["www-authenticate"], CHALLENGE, what);
      assert.equal(o.hits.length, before, `${what}: the origin was reached`);
    }
    const r = await h.call("llm", `/v1/models?key=${other.token}`, { headers: { authorization: `Bearer ${s.token}` } });
    assertError(r, 401, "invalid_session");
  });

  test("no token: 401 with the challenge; git gets it as text it can show", async () => {
    const r = await h.call("llm", "/v1/models");
    assertError(r, 401, "invalid_session");
    assert.equal(r.headers["www-authenticate"], CHALLENGE);
    const g = await h.call("llm", "/v1/models", { headers: { "user-agent": "git/2.47.3" } });
    assert.equal(g.status, 401);
    assert.match(g.headers["content-type"], /^text\/plain/);
    assert.equal(g.text, "airlock: invalid_session: invalid session\n");
    assert.equal(g.headers["www-authenticate"], CHALLENGE);
  });
});

describe("per-tool timeouts and 5xx answers", () => {
  test("a tool's timeout_ms outlasts the policy's limit, and a shorter one cuts off sooner", async () => {
    // The policy allows 1000 ms; the preset tool allows minutes.
    const r = await h.call("llm", "/v1/slow/1600", { token: s.token });
    assert.equal(r.status, 200, r.text);
    const plain = await h.call("plain", "/v1/slow/1600", { token: s.token });
    assertError(plain, 504, "upstream_timeout");
    const t0 = Date.now();
    const quick = await h.call("quick", "/v1/slow/3000", { token: s.token });
    assertError(quick, 504, "upstream_timeout");
    assert.ok(Date.now() - t0 < 2500, `cut off after ${Date.now() - t0} ms`);
  });

  test("pass_server_errors keeps the origin's status, headers and body, scrubbed; without it the 5xx is 502", async () => {
    const r = await h.call("llm", "/v1/fail", { token: s.token });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.headers["x-should-retry"], "true");
    assert.equal(r.json.error.type, "overloaded");
    assert.equal(r.json.error.seen, `Bearer ${REDACTED}`);
    assert.ok(!r.text.includes(KEY) && !JSON.stringify(r.headers).includes(KEY), "the key reached the sandbox");
    const plain = await h.call("plain", "/v1/fail", { token: s.token });
    assertError(plain, 502, "upstream_error");
    assert.ok(!plain.text.includes("overloaded"));
  });
});
