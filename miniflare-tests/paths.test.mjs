// Path traversal and encoding tricks, sent with node:http so the exact
// request-target reaches workerd (fetch() would normalize it client-side).
//
// Finding (workerd 2026-07-30 via Miniflare): the runtime parses the request
// URL with WHATWG URL rules BEFORE the worker runs, so dot segments (`..`,
// `.`, `%2e%2e`, `.%2e`) are already resolved and `\` is already `/` in
// request.url. Encoded separators (%2f, %5c), %00 and %25 survive unchanged
// and are the worker's job to reject. The tests below therefore check, for
// dot segments, that the outcome is exactly the outcome of the resolved path
// (the policy matched the same path the origin then received), or a 400
// invalid_path should a future runtime hand the raw path to the worker.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertError, startAirlock } from "./helpers.mjs";

let h;
let full; // echo:admin
let reader; // echo:read

before(async () => {
  h = await startAirlock();
  full = await h.mint({ echo: "admin" });
  reader = await h.mint({ echo: "read" });
});

after(async () => {
  await h?.close();
});

/** Send a raw request; return the response plus the origin requests it caused. */
async function rawWithHits({ method = "GET", path, token, body }) {
  const echoBefore = h.echo.hits.length;
  const privBefore = (await h.privateHits()).count;
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await h.raw({ method, path, headers, body });
  await new Promise((res) => setTimeout(res, 30));
  const echoHits = h.echo.hits.slice(echoBefore);
  const privHits = (await h.privateHits()).count - privBefore;
  return { r, echoHits, privHits };
}

function outcome({ r, echoHits, privHits }) {
  return {
    status: r.status,
    code: r.json?.error?.code ?? null,
    originPaths: echoHits.map((x) => x.path),
    privateHits: privHits,
  };
}

describe("encoded separators, NUL and bad escapes reach the worker and are rejected", () => {
  const cases = [
    "/t/echo/a/..%2fb",
    "/t/echo/a/..%2Fb",
    "/t/echo/a%2fb",
    "/t/echo/a%2Fb",
    "/t/echo/a%5cb",
    "/t/echo/a%5Cb",
    "/t/echo/a%00b",
    "/t/echo/%2e%2e%2fv1%2fsessions",
    "/t/echo/a/%zz",
    "/t/echo/a/%2",
  ];
  for (const path of cases) {
    test(`GET ${path} -> 400 invalid_path, no origin request`, async () => {
      const res = await rawWithHits({ path, token: full.token });
      assertError(res.r, 400, "invalid_path", path);
      assert.deepEqual(res.echoHits.map((x) => x.url), [], "origin received a request");
      assert.equal(res.privHits, 0);
    });
  }

  // Not named by the contract's invalid_path list, but ambiguous downstream:
  // any Airlock denial is acceptable, forwarding is not.
  for (const path of ["/t/echo/%252e%252e/x", "/t/echo/a%252fb", "/t/echo/a//b", "/t/echo//"]) {
    test(`GET ${path} (double-encoded / empty segment) is denied, no origin request`, async () => {
      const res = await rawWithHits({ path, token: full.token });
      assert.ok(
        res.r.status >= 400 && res.r.status < 500 && res.r.json?.error?.code,
        `expected an Airlock denial, got ${res.r.status} ${res.r.text.slice(0, 200)}`,
      );
      assert.deepEqual(res.echoHits.map((x) => x.url), [], "origin received a request");
    });
  }

  test("the same rejections without a session token still leak nothing", async () => {
    const res = await rawWithHits({ path: "/t/echo/a%2fb" });
    assert.ok([400, 401].includes(res.r.status), `${res.r.status} ${res.r.text}`);
    assert.equal(res.echoHits.length, 0);
  });
});

describe("dot segments: the policy sees exactly the path the origin gets", () => {
  const cases = [
    // [method, raw path, token name, expected resolved path]
    ["GET", "/t/echo/a/%2e%2e/b", "full", "/t/echo/b"],
    ["GET", "/t/echo/a/.%2e/b", "full", "/t/echo/b"],
    ["GET", "/t/echo/a/%2E%2E/b", "full", "/t/echo/b"],
    ["GET", "/t/echo/a/../b", "full", "/t/echo/b"],
    ["GET", "/t/echo/a/./b", "full", "/t/echo/a/b"],
    ["GET", "/t/echo/a\\b", "full", "/t/echo/a/b"],
    ["GET", "/t/echo/a/../../v1/sessions", "full", "/t/v1/sessions"],
    ["POST", "/t/echo/../../v1/sessions", "full", "/v1/sessions"],
    ["GET", "/t/echo/../private/things", "reader", "/t/private/things"],
    ["POST", "/t/echo/items/../hello", "full", "/t/echo/hello"],
    ["DELETE", "/t/echo/items/x/../../hello", "full", "/t/echo/hello"],
  ];
  for (const [method, raw, who, resolved] of cases) {
    test(`${method} ${raw}`, async (t) => {
      assert.equal(new URL(raw, "http://x").pathname, resolved, "WHATWG resolution of the test case");
      const token = who === "full" ? full.token : reader.token;
      const body = method === "POST" ? JSON.stringify({ agent: "x", user: "y", tools: { echo: "admin" } }) : undefined;

      const viaResolved = outcome(await rawWithHits({ method, path: resolved, token, body }));
      const viaRaw = outcome(await rawWithHits({ method, path: raw, token, body }));

      if (viaRaw.status === 400 && viaRaw.code === "invalid_path") {
        t.diagnostic(`${raw}: the worker saw the raw path and rejected it`);
        assert.deepEqual(viaRaw.originPaths, []);
        assert.equal(viaRaw.privateHits, 0);
      } else {
        t.diagnostic(
          `${raw}: resolved by the runtime to ${resolved} -> ${viaRaw.status} ${viaRaw.code ?? ""} origin=${JSON.stringify(viaRaw.originPaths)}`,
        );
        assert.deepEqual(viaRaw, viaResolved, "raw and resolved requests must be treated identically");
      }
      // Never: a traversal that mints, or reaches another tool, or sends `..` upstream.
      assert.notEqual(viaRaw.status, 201, "traversal minted a session");
      assert.equal(viaRaw.privateHits, 0);
      for (const p of viaRaw.originPaths) {
        assert.ok(!/(^|\/)\.\.?(\/|$)|%2e|\\/i.test(p), `origin received a dot segment: ${p}`);
        assert.equal(p, resolved.replace(/^\/t\/echo/, "") || "/", "origin got exactly the resolved path");
      }
    });
  }

  test("expected outcomes of the resolved paths", async () => {
    // Pin the meaning of the cases above, so "identical" is not vacuous.
    const a = outcome(await rawWithHits({ path: "/t/echo/a/%2e%2e/b", token: full.token }));
    assert.ok(
      (a.status === 200 && a.originPaths.length === 1 && a.originPaths[0] === "/b") ||
        (a.status === 400 && a.code === "invalid_path" && a.originPaths.length === 0),
      JSON.stringify(a),
    );
    const mint = outcome(
      await rawWithHits({ method: "POST", path: "/t/echo/../../v1/sessions", token: full.token, body: "{}" }),
    );
    assert.ok(
      (mint.status === 401 && mint.code === "invalid_admin_key") ||
        (mint.status === 400 && mint.code === "invalid_path"),
      JSON.stringify(mint),
    );
    const other = outcome(await rawWithHits({ path: "/t/echo/../private/things", token: reader.token }));
    assert.ok(
      (other.status === 403 && other.code === "tool_not_allowed") ||
        (other.status === 400 && other.code === "invalid_path"),
      JSON.stringify(other),
    );
    assert.equal(other.privateHits, 0);
    const post = outcome(await rawWithHits({ method: "POST", path: "/t/echo/items/../hello", token: full.token, body: "{}" }));
    assert.ok(
      (post.status === 403 && post.code === "route_not_allowed") ||
        (post.status === 400 && post.code === "invalid_path"),
      JSON.stringify(post),
    );
    assert.deepEqual(post.originPaths, []);
  });
});
