// Brokered calls: credential injection, header filtering, response
// redaction (also across stream chunk boundaries), cookies, redirects,
// service bindings, limits and upstream failures.

import assert from "node:assert/strict";
import http from "node:http";
import { gunzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import {
  REDACTED,
  assertError,
  assertNotLeaked,
  randomSecret,
  startAirlock,
  testPolicy,
} from "./helpers.mjs";

// Request headers the contract lets through (plus the tool's forward_headers),
// and the ones the platform itself adds on an outbound request.
const ALLOWED_REQUEST_HEADERS = new Set([
  "accept", "accept-language", "content-type", "user-agent", "range",
  "idempotency-key", "cache-control", "x-echo-mode",
]);
const TRANSPORT_HEADERS = new Set([
  "host", "authorization", "content-length", "transfer-encoding", "connection",
  "accept-encoding", "keep-alive",
  "cf-worker", // workerd (and Cloudflare) mark every subrequest with the worker's zone
]);

async function closedPortUrl() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

let h;
let admin; // session with echo:admin, private:read

before(async () => {
  const downUrl = await closedPortUrl();
  h = await startAirlock({
    policy: (echoUrl) =>
      testPolicy(echoUrl, {
        extraTools: {
          // credential secret that is not bound -> 500 misconfigured
          unbound: {
            origin: echoUrl,
            allow_http: true,
            credential: { secret: "AIRLOCK_TEST_UNBOUND_SECRET", inject: "bearer" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
          // the other credential injection variants, against the echo origin
          qecho: {
            origin: echoUrl,
            allow_http: true,
            credential: { secret: "QUERY_API_KEY", inject: "query", param: "api_key" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
          becho: {
            origin: echoUrl,
            allow_http: true,
            credential: { secret: "BASIC_PASSWORD", inject: "basic", username: "svc-user" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
          buecho: {
            origin: echoUrl,
            allow_http: true,
            credential: { secret: "BASIC_USERNAME", inject: "basic" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
          // nothing listens there -> 502 upstream_unavailable
          down: {
            origin: downUrl,
            allow_http: true,
            credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
        },
        limits: { max_request_body_bytes: 4096, upstream_timeout_ms: 1500 },
      }),
    secrets: {
      QUERY_API_KEY: randomSecret("qkey"),
      BASIC_PASSWORD: randomSecret("bpass"),
      BASIC_USERNAME: randomSecret("buser"),
    },
  });
  admin = await h.mint(
    { echo: "admin", private: "read", unbound: "read", down: "read", qecho: "read", becho: "read", buecho: "read" },
    { agent: "agent-broker", user: "user-broker" },
  );
});

after(async () => {
  await h?.close();
});

// The worker may redact the whole injected value ("Bearer <secret>") or just
// the secret; either way the echoed header must be nothing but the marker.
function assertRedactedAuthorization(value) {
  assert.match(String(value), /^(Bearer )?\[REDACTED\]$/, `echoed authorization: ${value}`);
}

function lastEchoHit() {
  return h.echo.hits[h.echo.hits.length - 1];
}

function assertOriginSawCredentialNotToken(hit, token) {
  assert.equal(hit.headers.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);
  const all = JSON.stringify(hit.rawHeaders) + hit.body + hit.url;
  assert.ok(!all.includes(token), "session token reached the origin");
  assert.ok(!all.includes(h.secrets.AIRLOCK_ADMIN_KEY), "admin key reached the origin");
}

describe("brokered calls to the echo origin", () => {
  const cases = [
    { method: "GET", path: "/hello", query: "x=1&y=two%20words&z=%E2%9C%93" },
    {
      method: "POST",
      path: "/items/x",
      query: "mode=create",
      body: JSON.stringify({ name: "widget", note: "naïve café ✓", n: 42 }),
      contentType: "application/json",
    },
    {
      method: "PUT",
      path: "/items/x",
      query: "mode=replace&tags=a,b",
      body: "line one\nline two\n",
      contentType: "text/plain; charset=utf-8",
    },
    { method: "DELETE", path: "/items/x", query: "hard=1" },
  ];

  for (const c of cases) {
    test(`${c.method} ${c.path}?${c.query}`, async () => {
      const before = h.echo.hits.length;
      const r = await h.call("echo", `${c.path}?${c.query}`, {
        token: admin.token,
        method: c.method,
        headers: c.contentType ? { "content-type": c.contentType } : {},
        body: c.body,
      });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.headers["x-airlock-request-id"], "x-airlock-request-id");
      assert.equal(h.echo.hits.length - before, 1, "exactly one origin request");

      const hit = lastEchoHit();
      assert.equal(hit.method, c.method);
      assert.equal(hit.path, c.path);
      assert.equal(hit.query, c.query, "query arrives intact");
      assert.equal(hit.body, c.body ?? "", "body arrives intact");
      if (c.contentType) assert.equal(hit.headers["content-type"], c.contentType);
      assertOriginSawCredentialNotToken(hit, admin.token);

      // The origin echoed the credential; the sandbox must not see it.
      assertNotLeaked(r, {
        ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN,
        token: admin.token,
        AIRLOCK_ADMIN_KEY: h.secrets.AIRLOCK_ADMIN_KEY,
      });
      assertRedactedAuthorization(r.json.headers.authorization);
      assert.equal(r.json.method, c.method);
      assert.equal(r.json.path, c.path);
      assert.equal(r.json.query, c.query);
      assert.equal(r.json.body, c.body ?? "");
    });
  }

  test("HEAD is brokered without a body", async () => {
    const before = h.echo.hits.length;
    const r = await h.call("echo", "/hello", { token: admin.token, method: "HEAD" });
    assert.equal(r.status, 200);
    assert.equal(r.text, "");
    assert.equal(h.echo.hits.length - before, 1);
    assert.equal(lastEchoHit().method, "HEAD");
    assertOriginSawCredentialNotToken(lastEchoHit(), admin.token);
  });

  test("a credential split across many small chunks is still redacted", async () => {
    const before = h.echo.hits.length;
    const r = await h.call("echo", "/stream/abc?x=1", { token: admin.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.length - before, 1);
    assertOriginSawCredentialNotToken(lastEchoHit(), admin.token);
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
    assert.ok(r.json, `stream body is the complete echo JSON: ${r.text.slice(0, 200)}`);
    assertRedactedAuthorization(r.json.headers.authorization);
    assert.equal(r.json.path, "/stream/abc");
    assert.equal(r.json.query, "x=1");
  });

  test("a credential reflected into origin response headers never reaches the sandbox", async () => {
    const r = await h.raw({
      path: "/t/echo/reflect/a",
      headers: { authorization: `Bearer ${admin.token}` },
    });
    assert.equal(r.status, 200, r.text);
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
    const reflected = r.headers["x-reflected-authorization"];
    if (reflected !== undefined) assertRedactedAuthorization(reflected);
  });

  test("a gzip-encoded origin response is still redacted", async () => {
    const r = await h.raw({
      path: "/t/echo/gzip/a?x=1",
      headers: { authorization: `Bearer ${admin.token}`, "accept-encoding": "gzip" },
    });
    assert.equal(r.status, 200, r.text);
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
    let text = r.bodyBuffer.toString("utf8");
    if (/gzip/i.test(r.headers["content-encoding"] ?? "")) text = gunzipSync(r.bodyBuffer).toString("utf8");
    assert.ok(!text.includes(h.secrets.ECHO_API_TOKEN), "credential in the decoded body");
    const json = JSON.parse(text);
    assertRedactedAuthorization(json.headers.authorization);
    assert.equal(json.path, "/gzip/a");
  });

  test("inject: query puts the secret in the origin's query and redacts the echo", async () => {
    const before = h.echo.hits.length;
    const r = await h.call("qecho", "/search?q=cats&page=2", { token: admin.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.length - before, 1);
    const hit = lastEchoHit();
    const params = new URLSearchParams(hit.query);
    assert.deepEqual(params.getAll("api_key"), [h.secrets.QUERY_API_KEY]);
    assert.equal(params.get("q"), "cats");
    assert.equal(params.get("page"), "2");
    assert.equal(hit.headers.authorization, undefined, "no Authorization for a query credential");
    assertNotLeaked(r, { QUERY_API_KEY: h.secrets.QUERY_API_KEY, token: admin.token });
    assert.ok(r.json.query.includes(REDACTED), r.json.query);
  });

  test("inject: basic with a username", async () => {
    const before = h.echo.hits.length;
    const r = await h.call("becho", "/basic", { token: admin.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.length - before, 1);
    const b64 = Buffer.from(`svc-user:${h.secrets.BASIC_PASSWORD}`).toString("base64");
    assert.equal(lastEchoHit().headers.authorization, `Basic ${b64}`);
    assertNotLeaked(r, { BASIC_PASSWORD: h.secrets.BASIC_PASSWORD, basic_b64: b64, token: admin.token });
    assert.ok(r.json.headers.authorization.includes(REDACTED), r.json.headers.authorization);
  });

  test("inject: basic without a username (the secret is the username)", async () => {
    const before = h.echo.hits.length;
    const r = await h.call("buecho", "/basic", { token: admin.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.length - before, 1);
    const b64 = Buffer.from(`${h.secrets.BASIC_USERNAME}:`).toString("base64");
    assert.equal(lastEchoHit().headers.authorization, `Basic ${b64}`);
    assertNotLeaked(r, { BASIC_USERNAME: h.secrets.BASIC_USERNAME, basic_b64: b64, token: admin.token });
  });

  test("Set-Cookie from the origin never reaches the sandbox", async () => {
    const r = await h.raw({
      path: "/t/echo/cookie/a",
      headers: { authorization: `Bearer ${admin.token}` },
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.setCookie, [], "no set-cookie header");
    assert.ok(!r.rawHeaders.some((v, i) => i % 2 === 0 && v.toLowerCase() === "set-cookie"));
    assert.ok(!JSON.stringify(r.rawHeaders).includes("s3cr3t-cookie-value"));
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
  });

  test("sandbox-sent identity, proxy and cookie headers never reach the origin", async () => {
    const before = h.echo.hits.length;
    const sent = {
      authorization: `Bearer ${admin.token}`,
      cookie: "sandbox_cookie=should-not-pass",
      "x-forwarded-for": "203.0.113.7",
      "x-forwarded-host": "evil.example",
      "x-forwarded-proto": "https",
      forwarded: "for=203.0.113.7;proto=https",
      "x-real-ip": "203.0.113.7",
      "proxy-authorization": "Basic c2FuZGJveDpzZWNyZXQ=",
      "proxy-connection": "keep-alive",
      "x-custom-thing": "not-on-the-allowlist",
      // allowed:
      accept: "application/json",
      "accept-language": "en-GB",
      "user-agent": "airlock-test-agent/1.0",
      "if-none-match": '"etag-1"',
      "cache-control": "no-cache",
      "idempotency-key": "idem-123",
      "x-echo-mode": "loud",
    };
    const r = await h.raw({ path: "/t/echo/headers?h=1", headers: sent });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.length - before, 1);
    const got = lastEchoHit().headers;
    for (const name of [
      "cookie", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded",
      "x-real-ip", "proxy-authorization", "proxy-connection", "x-custom-thing",
    ]) {
      assert.equal(got[name], undefined, `${name} reached the origin: ${got[name]}`);
    }
    for (const name of [
      "accept", "accept-language", "user-agent", "if-none-match", "cache-control",
      "idempotency-key", "x-echo-mode",
    ]) {
      assert.equal(got[name], sent[name], `allowed header ${name} forwarded unchanged`);
    }
    assert.equal(got.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);
    const unexpected = Object.keys(got).filter(
      (n) => !ALLOWED_REQUEST_HEADERS.has(n) && !n.startsWith("if-") && !TRANSPORT_HEADERS.has(n),
    );
    assert.deepEqual(unexpected, [], `headers outside the allowlist reached the origin`);
    const rawValues = JSON.stringify(lastEchoHit().rawHeaders);
    for (const v of ["203.0.113.7", "should-not-pass", "c2FuZGJveDpzZWNyZXQ=", "evil.example"]) {
      assert.ok(!rawValues.includes(v), `${v} reached the origin`);
    }
  });

  test("a 3xx from the origin goes back to the sandbox and is not followed", async () => {
    // A Location on the tool's own origin is rewritten onto /t/{tool}/ (README);
    // any other Location is passed on as it is.
    const cases = [
      ["/t/echo/redirect/next", "/t/echo/redirected/next"],
      [`/t/echo/redirect-to?u=${encodeURIComponent(`${h.echo.url}/abs/x?y=1`)}`, "/t/echo/abs/x?y=1"],
      [`/t/echo/redirect-to?u=${encodeURIComponent("https://elsewhere.example/x?y=1")}`, "https://elsewhere.example/x?y=1"],
    ];
    for (const [path, location] of cases) {
      const before = h.echo.hits.length;
      const r = await h.raw({ path, headers: { authorization: `Bearer ${admin.token}` } });
      assert.equal(r.status, 302, r.text);
      assert.equal(r.headers.location, location, path);
      assert.equal(h.echo.hits.length - before, 1, "redirect not followed");
      assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
    }
  });

  test("origin status codes below 500 pass through", async () => {
    for (const status of [201, 204, 404, 409, 429]) {
      const r = await h.call("echo", `/status/${status}`, { token: admin.token });
      assert.equal(r.status, status, `status ${status}: ${r.text}`);
      if (status !== 204) {
        assert.equal(r.json.path, `/status/${status}`, "origin body, not an Airlock error");
        assertRedactedAuthorization(r.json.headers.authorization);
      } else {
        assert.equal(r.text, "");
      }
      assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
    }
  });

  test("an origin 5xx -> 502 upstream_error; nothing of the origin's body (faults.test.mjs has more)", async () => {
    const r = await h.call("echo", "/status/503", { token: admin.token });
    assertError(r, 502, "upstream_error");
    assert.equal(r.headers["x-airlock-upstream-status"], "503");
    assert.equal(r.headers["retry-after"], "7");
    assert.ok(!r.text.includes("/status/503"), "the origin's body reached the sandbox");
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
  });

  test("Content-Length above max_request_body_bytes -> 413, origin untouched", async () => {
    const big = "x".repeat(4097);
    const r = await h.expectNoOriginHits(() =>
      h.raw({
        method: "POST",
        path: "/t/echo/items/big",
        headers: {
          authorization: `Bearer ${admin.token}`,
          "content-type": "text/plain",
          "content-length": String(big.length),
        },
        body: big,
      }),
    );
    assertError(r, 413, "body_too_large");

    const before = h.echo.hits.length;
    const exact = "y".repeat(4096);
    const ok = await h.raw({
      method: "POST",
      path: "/t/echo/items/big",
      headers: {
        authorization: `Bearer ${admin.token}`,
        "content-type": "text/plain",
        "content-length": String(exact.length),
      },
      body: exact,
    });
    assert.equal(ok.status, 200, "a body of exactly the limit is allowed");
    assert.equal(h.echo.hits.length - before, 1);
    assert.equal(lastEchoHit().body, exact);
  });

  test("a chunked body (no Content-Length) above the limit never reaches the origin in full", async () => {
    // The contract names Content-Length; without one the limit must still hold,
    // or any client bypasses it with Transfer-Encoding: chunked.
    const before = h.echo.hits.length;
    const r = await new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: h.url.hostname,
          port: h.url.port,
          method: "POST",
          path: "/t/echo/items/chunked",
          agent: false,
          headers: {
            authorization: `Bearer ${admin.token}`,
            "content-type": "text/plain",
            "transfer-encoding": "chunked",
            connection: "close",
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (text += d));
          res.on("end", () => {
            let json;
            try {
              json = JSON.parse(text);
            } catch {}
            resolve({ status: res.statusCode, headers: res.headers, text, json });
          });
        },
      );
      req.on("error", reject);
      for (let i = 0; i < 10; i++) req.write("z".repeat(1000));
      req.end();
    });
    const delivered = h.echo.hits.slice(before).map((x) => x.body.length);
    assert.ok(
      delivered.every((n) => n <= 4096),
      `origin received ${JSON.stringify(delivered)} body bytes (limit 4096); sandbox got ${r.status}`,
    );
    assertError(r, 413, "body_too_large", "chunked 10000 bytes");
  });

  test("a credential secret missing from the environment -> 500 misconfigured", async () => {
    const r = await h.expectNoOriginHits(() =>
      h.call("unbound", "/hello", { token: admin.token }),
    );
    assertError(r, 500, "misconfigured");
  });

  test("an unreachable origin -> 502 upstream_unavailable", async () => {
    const r = await h.call("down", "/hello", { token: admin.token });
    assertError(r, 502, "upstream_unavailable");
    assertNotLeaked(r, { ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN, token: admin.token });
  });

  test("an origin slower than upstream_timeout_ms -> 504 upstream_timeout", async () => {
    const t0 = Date.now();
    const r = await h.call("echo", "/delay/6000/slow", { token: admin.token });
    assertError(r, 504, "upstream_timeout");
    assert.ok(Date.now() - t0 < 5500, `timed out after ${Date.now() - t0} ms (limit 1500)`);
  });
});

describe("private origin through the service binding", () => {
  test("a value in x-api-key that is not the session token is a second token: refused, nothing sent", async () => {
    const before = (await h.privateHits()).count;
    const r = await h.call("private", "/things/1", {
      token: admin.token,
      headers: { "x-api-key": "sandbox-supplied-key" },
    });
    assertError(r, 401, "invalid_session");
    assert.equal(r.headers["www-authenticate"], 'Basic realm="airlock", Bearer realm="airlock"');
    assert.equal((await h.privateHits()).count, before, "nothing reached the private origin");
  });

  test("GET gets x-api-key: Key <secret>; the sandbox's own x-api-key (its token) never arrives", async () => {
    const before = (await h.privateHits()).count;
    // The session token where an SDK for this API puts its key.
    const r = await h.call("private", "/things/1?q=2&r=%20x", {
      headers: { "x-api-key": admin.token, accept: "application/json" },
    });
    assert.equal(r.status, 200, r.text);
    const hits = await h.privateHits();
    assert.equal(hits.count - before, 1, "exactly one request reached the private origin");
    const hit = hits.hits[hits.hits.length - 1];
    assert.equal(hit.method, "GET");
    assert.equal(hit.path, "/things/1");
    assert.equal(hit.query, "q=2&r=%20x");
    assert.equal(hit.headers["x-api-key"], `Key ${h.secrets.PRIVATE_API_KEY}`);
    assert.equal(hit.headers.authorization, undefined, "no Authorization to the private origin");
    assert.ok(!JSON.stringify(hit).includes(admin.token), "session token reached the private origin");

    assertNotLeaked(r, {
      PRIVATE_API_KEY: h.secrets.PRIVATE_API_KEY,
      ECHO_API_TOKEN: h.secrets.ECHO_API_TOKEN,
      token: admin.token,
    });
    assert.equal(r.json.service, "airlock-demo-private");
    assert.ok(r.json.headers["x-api-key"].includes(REDACTED), r.json.headers["x-api-key"]);
  });

  test("POST body arrives intact", async () => {
    const body = JSON.stringify({ a: 1, b: "two ✓" });
    const r = await h.call("private", "/things", {
      token: admin.token,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    assert.equal(r.status, 200, r.text);
    const hits = await h.privateHits();
    const hit = hits.hits[hits.hits.length - 1];
    assert.equal(hit.method, "POST");
    assert.equal(hit.body, body);
    assert.equal(hit.headers["content-type"], "application/json");
    assertNotLeaked(r, { PRIVATE_API_KEY: h.secrets.PRIVATE_API_KEY, token: admin.token });
  });
});
