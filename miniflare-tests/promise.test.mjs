// The two promises, against origins that read requests the way real stacks
// do (fixtures/stacks-origin.mjs): forward only what Airlock decided, return
// only what it could inspect. Every refusal is checked three ways: the stable
// code, the origin's hit counter (nothing forwarded), and the credential's
// absence from everything the sandbox received.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { startStacksOrigin } from "./fixtures/stacks-origin.mjs";
import { REDACTED, assertError, startAirlock, testPolicy } from "./helpers.mjs";

// Upper-case letters, so a header *name* holding it shows whether names are
// compared case-insensitively (the runtime lower-cases them).
const TOKEN = `StacksTok_${randomBytes(16).toString("hex").toUpperCase()}`;
const MODELS = ["express", "gocase", "firstdup", "nulstrip", "resumable", "idecho"];
const MCP_RULES = { tools: { search: "read", delete_space: "admin" } };

let o;
let h;
let s;

before(async () => {
  o = await startStacksOrigin({ token: TOKEN });
  try {
    const credential = { secret: "STACKS_TOKEN", inject: "bearer" };
    const tool = (extra) => ({ origin: o.url, allow_http: true, credential, ...extra });
    const mcpTools = Object.fromEntries(MODELS.map((m) => [`m_${m}`, tool({ origin: `${o.url}/mcp/${m}`, mcp: MCP_RULES })]));
    h = await startAirlock({
      secrets: { STACKS_TOKEN: TOKEN },
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          extraTools: {
            stacks: tool({
              allow_path_params: true,
              rules: [
                { methods: ["GET", "HEAD"], path: "/h/**", level: "read" },
                { methods: ["POST"], path: "/h/override/**", level: "write" },
                { methods: ["DELETE"], path: "/h/override/**", level: "admin" },
              ],
            }),
            ranged: tool({ allow_range: true, rules: [{ methods: ["GET"], path: "/h/**", level: "read" }] }),
            ...mcpTools,
          },
        }),
    });
    const scope = { stacks: "write", ranged: "read", ...Object.fromEntries(MODELS.map((m) => [`m_${m}`, "read"])) };
    s = await h.mint(scope);
  } catch (err) {
    await o.close();
    throw err;
  }
});

after(async () => {
  await h?.close();
  await o?.close();
});

/** Nothing the sandbox received holds the credential (raw or base64). */
function assertClean(r, label) {
  const everything = [r.text, JSON.stringify(r.headers)].join("\n");
  assert.ok(!everything.includes(TOKEN), `${label}: credential reached the sandbox`);
  assert.ok(!everything.includes(Buffer.from(TOKEN).toString("base64").slice(0, 20)), `${label}: base64 of the credential reached the sandbox`);
}

const get = (path, headers = {}) => h.call("stacks", path, { token: s.token, headers });

function mcpPost(model, body, contentType = "application/json") {
  return h.fetch(`/mcp/m_${model}`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.token}`, "content-type": contentType, accept: "application/json, text/event-stream" },
    body,
  });
}

function callBody(params, extra = "") {
  return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":${params}${extra}}`;
}

// [model, label, content type, body]: serde_json reads `search` (a read tool)
// in each; the model, as the real stack would, reads `delete_space` (admin).
const DIFFERENTIALS = [
  ["express", "utf-7 charset turns +AG4-ame into name", "application/json; charset=utf-7", callBody(`{"name":"search","+AG4-ame":"delete_space"}`)],
  ["express", "UTF-7 charset, upper case", "application/json; charset=UTF-7", callBody(`{"name":"search","+AG4-ame":"delete_space"}`)],
  ["gocase", "case variant Name", "application/json", callBody(`{"name":"search","Name":"delete_space"}`)],
  ["gocase", "case variant NAME", "application/json", callBody(`{"name":"search","NAME":"delete_space"}`)],
  ["gocase", "long s folds to s in params", "application/json", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search"},"param\u017F":{"name":"delete_space"}}`],
  ["gocase", "escaped long s", "application/json", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search"},"param\\u017f":{"name":"delete_space"}}`],
  ["gocase", "Method case variant", "application/json", `{"jsonrpc":"2.0","id":7,"method":"tools/list","Method":"tools/call","params":{"name":"delete_space"}}`],
  ["firstdup", "duplicate name, first wins", "application/json", callBody(`{"name":"delete_space","name":"search"}`)],
  ["firstdup", "duplicate name spelled with an escape", "application/json", callBody(`{"name":"delete_space","na\\u006de":"search"}`)],
  ["nulstrip", "trailing NUL in a key", "application/json", callBody(`{"name":"search","name\\u0000":"delete_space"}`)],
  ["nulstrip", "two trailing NULs", "application/json", callBody(`{"name":"search","name\\u0000\\u0000":"delete_space"}`)],
];

describe("MCP: what the server receives is what Airlock authorized", () => {
  test("control: each model, reached directly, runs the admin tool", async () => {
    o.reset();
    for (const [model, label, contentType, body] of DIFFERENTIALS) {
      const r = await fetch(`${o.url}/mcp/${model}`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": contentType }, body });
      assert.equal(r.status, 200, label);
      await r.text();
      assert.equal(o.ran.at(-1)?.name, "delete_space", `${model}: ${label} is not a real differential`);
    }
  });

  for (const [model, label, contentType, body] of DIFFERENTIALS) {
    test(`refused before the server: ${model}, ${label}`, async () => {
      o.reset();
      const auditBefore = h.audit.length;
      const r = await mcpPost(model, body, contentType);
      assert.equal(r.status, 400, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.json?.error?.code, -32600, r.text);
      assert.equal(o.hitCount(`mcp:${model}`), 0, `${label}: the server was reached`);
      assert.deepEqual(o.ran, []);
      assertClean(r, label);
      const audit = h.audit.slice(auditBefore).find((a) => a.route === "mcp");
      assert.equal(audit?.decision, "deny", JSON.stringify(audit));
      assert.equal(audit?.reason, "mcp_invalid_message");
    });
  }

  test("an allowed call reaches every model as canonical JSON", async () => {
    for (const model of ["express", "gocase", "firstdup", "nulstrip"]) {
      o.reset();
      const r = await mcpPost(model, `{ "jsonrpc" : "2.0", "id": 3, "method":"tools/call", "params": {"name":"search","arguments":{"q":"caf\\u00e9"}} }`, "application/json; charset=utf-8");
      assert.equal(r.status, 200, `${model}: ${r.text}`);
      assert.deepEqual(o.ran, [{ model, name: "search" }]);
      const seen = o.seen.at(-1);
      assert.equal(seen.headers["content-type"], "application/json");
      assert.deepEqual(JSON.parse(seen.body.toString("utf8")), { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "search", arguments: { q: "café" } } });
      assert.ok(!/\s/.test(seen.body.toString("utf8").replace(/"[^"]*"/g, "")), "forwarded bytes are Airlock's compact rendering");
    }
  });

  test("ids: 1.0 and other non-integers are refused; a list answered under another spelling of the id is still filtered", async () => {
    for (const id of ["1.0", "1e0", "9007199254740992", "-9007199254740992", "true", "null", "[1]"]) {
      o.reset();
      const r = await mcpPost("express", `{"jsonrpc":"2.0","id":${id},"method":"tools/list"}`);
      assert.equal(r.status, 400, `id ${id}: ${r.text}`);
      assert.equal(o.hitCount("mcp:"), 0, `id ${id} reached the server`);
    }
    o.reset();
    const r = await mcpPost("idecho", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(o.hitCount("mcp:idecho"), 1);
    assert.deepEqual(r.json.result.tools.map((t) => t.name), ["search"], "the list under id \"1\" passed unfiltered");
  });

  test("a resumed stream (GET with Last-Event-ID) replays a filtered list", async () => {
    const list = await mcpPost("resumable", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`);
    assert.equal(list.status, 200);
    assert.ok(list.text.includes('"search"') && !list.text.includes("delete_space"), list.text);
    const r = await h.fetch("/mcp/m_resumable", { headers: { authorization: `Bearer ${s.token}`, accept: "text/event-stream", "last-event-id": "0" } });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.text.includes('"search"'), `the replayed list is there: ${r.text}`);
    assert.ok(!r.text.includes("delete_space"), `the replayed list was not filtered: ${r.text}`);
  });
});

describe("Range: no slices of a credentialed body", () => {
  test("Range and If-Range are not forwarded; the whole body comes back redacted", async () => {
    o.reset();
    for (let start = 0; start < 60; start += 7) {
      const r = await get("/h/echo-auth", { range: `bytes=${start}-${start + 6}`, "if-range": '"x"' });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.text.includes(REDACTED));
      assertClean(r, `range at ${start}`);
    }
    assert.ok(o.seen.every((x) => x.headers.range === undefined && x.headers["if-range"] === undefined), "a range reached the origin");
  });

  test("a 206 from a credentialed origin is refused, with nothing of its body", async () => {
    const auditBefore = h.audit.length;
    const r = await get("/h/partial");
    assertError(r, 502, "upstream_partial_content");
    assertClean(r, "206");
    assert.ok(!r.text.includes('{"authoriz'), "no byte of the slice");
    assert.ok(h.audit.slice(auditBefore).some((a) => a.reason === "upstream_partial_content" && a.upstream_status === 206));
  });

  test("a tool that opts in (allow_range) gets ranges and slices", async () => {
    o.reset();
    const r = await h.call("ranged", "/h/echo-auth", { token: s.token, headers: { range: "bytes=0-3" } });
    assert.equal(r.status, 206, r.text);
    assert.equal(r.text, '{"au');
    assert.equal(o.seen.at(-1).headers.range, "bytes=0-3");
  });
});

describe("content codings: only what was decoded before the scan", () => {
  for (const name of ["deflate", "x-gzip", "gzip-gzip", "zstd", "compress", "gzip-identity"]) {
    test(`${name} is refused`, async () => {
      o.reset();
      const r = await get(`/h/coding/${name}`, { "accept-encoding": "zstd, deflate, gzip, br" });
      assertError(r, 502, "upstream_encoding_refused");
      assertClean(r, name);
      assert.equal(o.hitCount(`coding:${name}`), 1);
      assert.equal(o.seen.at(-1).headers["accept-encoding"], "gzip, br", "Airlock sets Accept-Encoding itself");
    });
  }

  for (const name of ["gzip", "br"]) {
    test(`${name} is decoded, scanned and redacted`, async () => {
      const r = await get(`/h/coding/${name}`, { "accept-encoding": "gzip, br" });
      assert.equal(r.status, 200, r.text);
      const coding = r.headers["content-encoding"] ?? "";
      const text = /gzip/.test(coding) ? gunzipSync(r.bodyBuffer).toString() : /br/.test(coding) ? brotliDecompressSync(r.bodyBuffer).toString() : r.text;
      assert.ok(text.includes(REDACTED), text);
      assert.ok(!text.includes(TOKEN));
    });
  }
});

describe("response headers are scrubbed last", () => {
  test("Retry-After of a 5xx passes only as seconds or a date, never with the credential", async () => {
    let r = await get(`/h/retry-after?v=${encodeURIComponent(TOKEN)}`);
    assertError(r, 502, "upstream_error");
    assert.equal(r.headers["retry-after"], undefined);
    assertClean(r, "retry-after");
    r = await get(`/h/retry-after?v=${encodeURIComponent(`120 ${TOKEN}`)}`);
    assert.equal(r.headers["retry-after"], undefined);
    r = await get("/h/retry-after?v=120");
    assert.equal(r.headers["retry-after"], "120");
    r = await get(`/h/retry-after?v=${encodeURIComponent("Wed, 21 Oct 2026 07:28:00 GMT")}`);
    assert.equal(r.headers["retry-after"], "Wed, 21 Oct 2026 07:28:00 GMT");
  });

  test("a Location is rewritten onto the tool route and scrubbed after", async () => {
    const r = await get("/h/redirect");
    assert.equal(r.status, 302);
    assert.ok(r.headers.location.startsWith("/t/stacks/h/landing?tok="), r.headers.location);
    assert.ok(r.headers.location.includes(REDACTED), r.headers.location);
    assertClean(r, "location");
  });

  test("a header whose name holds the credential is dropped, whatever its case", async () => {
    const r = await get("/h/header-name");
    assert.equal(r.status, 200);
    assert.ok(!Object.keys(r.headers).some((n) => n.toLowerCase().includes(TOKEN.toLowerCase())), JSON.stringify(r.headers));
  });
});

// workerd's HTTP client (2026-07) hands a 1xx to the worker as the final
// answer, and leaves a response's trailers (or the real answer after a 103)
// on the pooled connection, where they break the next request to that origin.
// A worker cannot reach past its fetch() to fix either; these are marked todo
// until the runtime does, and what Airlock controls is asserted: a clean,
// audited 502 that leaks nothing.
describe("availability: 1xx and trailers", () => {
  test("103 Early Hints surfaced by the runtime is a clean 502 with an audit record", async () => {
    const auditBefore = h.audit.length;
    const r = await get("/h/early-hints");
    assertError(r, 502, "upstream_unavailable");
    assertClean(r, "early hints");
    const record = h.audit.slice(auditBefore).find((a) => a.path === "/h/early-hints");
    assert.match(record?.detail ?? "", /status 103/);
    // The final answer the runtime left on the connection may break the next call.
    await get("/h/echo-auth");
  });

  test("103 Early Hints before the answer does not break the call", { todo: "workerd returns the 1xx from fetch()" }, async () => {
    const r = await get("/h/early-hints");
    assert.equal(r.status, 200, r.text);
  });

  test("a response with trailers, then more calls on the pooled connection", { todo: "workerd leaves trailers on the pooled connection" }, async () => {
    for (let i = 0; i < 3; i++) {
      const r = await get("/h/trailers");
      assert.equal(r.status, 200, `call ${i}: ${r.text}`);
      assert.ok(r.text.includes(REDACTED));
      const next = await get("/h/echo-auth");
      assert.equal(next.status, 200, `call after trailers ${i}: ${next.text}`);
    }
  });

  test("a response with trailers is itself delivered whole and redacted", async () => {
    const r = await get("/h/trailers");
    assert.equal(r.status, 200, r.text);
    assert.ok(r.text.includes(REDACTED));
    assertClean(r, "trailers");
    await get("/h/echo-auth");
  });
});

describe("paths and methods the origin would read differently", () => {
  // [label, raw request path under /t/stacks]
  const PATHS = [
    ["servlet ..;", "/h/servlet/public/..;/admin"],
    ["servlet ..;param", "/h/servlet/public/..;jsessionid=1/admin"],
    ["servlet .; then ..;", "/h/servlet/public/.;/..;/admin"],
    ["servlet encoded %2e%2e;", "/h/servlet/public/%2e%2e;/admin"],
    ["NFKC fullwidth dots", "/h/nfkc/public/%EF%BC%8E%EF%BC%8E/admin"],
    ["NFKC two dot leader", "/h/nfkc/public/%E2%80%A5/admin"],
    ["NFKC fullwidth solidus", "/h/nfkc/public%EF%BC%8F..%EF%BC%8Fadmin"],
    ["NFKC fullwidth reverse solidus", "/h/nfkc/public/..%EF%BC%BCadmin"],
  ];
  for (const [label, path] of PATHS) {
    test(`refused: ${label}`, async () => {
      o.reset();
      const r = await h.raw({ path: `/t/stacks${path}`, headers: { authorization: `Bearer ${s.token}` } });
      assertError(r, 400, "invalid_path");
      assert.equal(o.hitCount(""), 0, `${label} reached the origin: ${JSON.stringify(o.hits)}`);
    });
  }

  test("control: the routers do resolve those paths to /admin", async () => {
    o.reset();
    for (const [, path] of PATHS) {
      const r = await fetch(`${o.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal((await r.json()).served.endsWith("/admin"), true, path);
    }
  });

  for (const query of ["_method=DELETE", "_METHOD=delete", "%5Fmethod=DELETE", "a=1&_method=DELETE", "x-http-method-override=DELETE", "_method=PUT"]) {
    test(`method override refused: POST ?${query}`, async () => {
      o.reset();
      const r = await h.call("stacks", `/h/override/items/1?${query}`, { token: s.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } });
      assert.equal(r.status, 400, `${query}: ${r.status} ${r.text}`);
      assert.equal(o.hitCount(""), 0, `${query} reached the origin`);
    });
  }

  test("a plain POST of the write session still passes", async () => {
    o.reset();
    const r = await h.call("stacks", "/h/override/items/1?x=1", { token: s.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.served, "POST /items/1");
  });
});
