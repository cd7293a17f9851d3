// A policy that does not parse or validate makes EVERY route answer
// 500 policy_invalid; bad signing keys make health/mint answer 500
// misconfigured. No origin receives anything.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertError, signingKey, startAirlock } from "./helpers.mjs";

let h;
let validPolicy;
let token; // minted under the valid policy

before(async () => {
  h = await startAirlock();
  validPolicy = h.policy;
  token = (await h.mint({ echo: "read", private: "read" })).token;
});

after(async () => {
  await h?.close();
});

function mutate(fn) {
  const p = structuredClone(validPolicy);
  fn(p);
  return p;
}

const invalidPolicies = [
  ["rule level superuser", () => mutate((p) => { p.tools.echo.rules[0].level = "superuser"; })],
  ["unknown top-level field", () => mutate((p) => { p.extra = true; })],
  ["unknown tool field", () => mutate((p) => { p.tools.echo.timeout = 5; })],
  ["unknown rule field", () => mutate((p) => { p.tools.echo.rules[0].comment = "x"; })],
  ["unknown credential field", () => mutate((p) => { p.tools.echo.credential.prefix = "x"; })],
  ["unknown inject variant", () => mutate((p) => { p.tools.echo.credential.inject = "cookie"; })],
  ["http origin without allow_http", () => mutate((p) => { delete p.tools.echo.allow_http; })],
  ["** not in last position", () => mutate((p) => { p.tools.echo.rules[0].path = "/**/x"; })],
  ["unsupported version", () => mutate((p) => { p.version = 2; })],
  ["not JSON", () => "{ this is not json"],
  ["empty string", () => ""],
];

describe("invalid policy -> every route answers 500 policy_invalid", () => {
  test("control: the valid policy works", async () => {
    const r = await h.fetch("/v1/health");
    assert.equal(r.status, 200, r.text);
    const c = await h.call("echo", "/hello", { token });
    assert.equal(c.status, 200, c.text);
  });

  for (const [label, make] of invalidPolicies) {
    test(label, async () => {
      await h.restart({ policy: make() });
      const echoBefore = h.echo.hits.length;
      const privBefore = (await h.privateHits()).count;
      const auditBefore = h.audit.length;
      const requests = [
        ["GET /v1/health", () => h.fetch("/v1/health")],
        ["POST /v1/sessions", () => h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 60 })],
        ["GET /t/echo/hello", () => h.call("echo", "/hello", { token })],
        ["POST /t/private/x", () => h.call("private", "/x", { token, method: "POST", body: "{}" })],
        ["GET /t/echo (no token)", () => h.call("echo", "/hello")],
        ["GET /unknown", () => h.fetch("/unknown")],
      ];
      for (const [what, send] of requests) {
        const r = await send();
        assertError(r, 500, "policy_invalid", `${label}: ${what}`);
        assert.ok(!r.text.includes(h.secrets.ECHO_API_TOKEN));
      }
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(h.echo.hits.length, echoBefore, "echo origin received a request");
      assert.equal((await h.privateHits()).count, privBefore, "private origin received a request");
      const lines = h.audit.slice(auditBefore);
      assert.equal(lines.length, requests.length, "one audit line per request");
      for (const a of lines) {
        assert.equal(a.reason, "policy_invalid");
        assert.equal(a.decision, "error");
      }
    });
  }

  test("restoring the valid policy recovers", async () => {
    await h.restart({ policy: validPolicy });
    const r = await h.fetch("/v1/health");
    assert.equal(r.status, 200, r.text);
    const c = await h.call("echo", "/hello", { token });
    assert.equal(c.status, 200, c.text);
  });
});

describe("a policy given as a table (an object binding) is read like the string", () => {
  after(async () => {
    await h.restart({ policy: validPolicy, policyBinding: "string" });
  });

  test("the valid policy as an object: mint and call work, the credential reaches the origin", async () => {
    await h.restart({ policy: validPolicy, policyBinding: "object" });
    const minted = await h.mint({ echo: "read" });
    const before = h.echo.hits.length;
    const r = await h.call("echo", "/table", { token: minted.token });
    assert.equal(r.status, 200, r.text);
    const hit = h.echo.hits.slice(before).find((x) => x.path === "/table");
    assert.ok(hit, "echo origin received the call");
    assert.equal(hit.headers.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);
    // A rule the object policy does not grant is still refused.
    const w = await h.call("echo", "/items/1", { token: minted.token, method: "POST", body: "{}" });
    assertError(w, 403, "level_insufficient", "write with a read session");
  });

  test("an invalid object policy refuses every route with 500 policy_invalid", async () => {
    await h.restart({ policy: mutate((p) => { p.tools.echo.timeout = 5; }), policyBinding: "object" });
    const before = h.echo.hits.length;
    assertError(await h.fetch("/v1/health"), 500, "policy_invalid", "health");
    assertError(await h.call("echo", "/hello", { token }), 500, "policy_invalid", "call");
    assert.equal(h.echo.hits.length, before, "echo origin received a request");
  });
});

describe("bad keys -> 500 misconfigured", () => {
  const badKeys = [
    ["missing AIRLOCK_SIGNING_KEYS", undefined],
    ["key shorter than 32 bytes", `k1:${Buffer.alloc(16, 1).toString("base64")}`],
    ["key not base64", "k1:!!!not-base64!!!"],
    ["kid with a bad character", `k.1:${Buffer.alloc(32, 1).toString("base64")}`],
    ["no kid", Buffer.alloc(32, 1).toString("base64")],
  ];
  for (const [label, value] of badKeys) {
    test(label, async () => {
      await h.restart({ policy: validPolicy, secrets: { AIRLOCK_SIGNING_KEYS: value } });
      const hitsBefore = await h.originHitCount();
      assertError(await h.fetch("/v1/health"), 500, "misconfigured", `${label}: health`);
      assertError(
        await h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 60 }),
        500,
        "misconfigured",
        `${label}: mint`,
      );
      const call = await h.call("echo", "/hello", { token });
      assert.ok([401, 500].includes(call.status), `${label}: tool call ${call.status} ${call.text}`);
      assert.equal(await h.originHitCount(), hitsBefore, "origin received a request");
    });
  }

  test("missing AIRLOCK_ADMIN_KEY -> mint answers 500 misconfigured, never mints", async () => {
    await h.restart({ policy: validPolicy, secrets: { AIRLOCK_SIGNING_KEYS: signingKey("k1"), AIRLOCK_ADMIN_KEY: undefined } });
    for (const auth of [null, "", "undefined"]) {
      const r = await h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" } }, auth);
      assert.ok([401, 500].includes(r.status), `${r.status} ${r.text}`);
      assert.equal(r.json?.token, undefined);
    }
    const r = await h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" } }, "anything");
    assertError(r, 500, "misconfigured", "mint without configured admin key");
  });
});
