// Complete redaction: an origin that reflects the injected credential in
// every encoding it might use (raw, the whole injected value, percent-encoded,
// base64 std/url with and without padding, JSON-escaped), in response headers
// and in a body written 1..7 bytes at a time, must not get any of them to the
// sandbox; a response without secrets must pass byte for byte.
//
// The secrets contain characters that every one of those encodings changes
// (/ + = : " \ & ? @ %), so each form is a distinct string.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { randomBody } from "../demo/echo-origin.mjs";
import { REDACTED, randomSecret, startAirlock, testPolicy } from "./helpers.mjs";

/**
 * A secret whose base64 has padding and '+' or '/', so all forms differ.
 * ("~~~": one '~' lands on the last byte of a base64 group, whose low six
 * bits 111110 encode as '+'.)
 */
function awkwardSecret(prefix) {
  for (let i = 0; i < 1000; i++) {
    const s = `${prefix}_${randomBytes(10).toString("hex")}/+=:"\\&?@%~~~${randomBytes(10).toString("hex")}`;
    const b64 = Buffer.from(s).toString("base64");
    if (/[+/]/.test(b64) && b64.endsWith("=")) return s;
  }
  throw new Error("awkwardSecret: no suitable secret");
}

// The test's own encoder, written independently of the echo origin's.
function forms(secret, injected) {
  const b64 = Buffer.from(secret, "utf8").toString("base64");
  const pct = Array.from(Buffer.from(secret, "utf8"))
    .map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("");
  const f = {
    raw: secret,
    injected,
    percent: pct,
    b64_std: b64,
    b64_std_nopad: b64.replace(/=+$/, ""),
    b64_url: b64.replace(/\+/g, "-").replace(/\//g, "_"),
    b64_url_nopad: b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
    json: secret.replace(/\\/g, "\\\\").replace(/"/g, '\\"'),
  };
  return f;
}

const SECRETS = {
  ECHO_API_TOKEN: awkwardSecret("rk"),
  PLAIN_TOKEN: randomSecret("plain"),
  HEADER_KEY: awkwardSecret("hk"),
  QUERY_KEY: awkwardSecret("qk"),
};

// [tool, secret name, query selecting where the origin finds it, injected value]
const TOOLS = [
  ["echo", "ECHO_API_TOKEN", "", (s) => `Bearer ${s}`],
  ["plain", "PLAIN_TOKEN", "", (s) => `Bearer ${s}`],
  ["hecho", "HEADER_KEY", "?src=header:x-api-key&prefix=Token%20", (s) => `Token ${s}`],
  ["qecho", "QUERY_KEY", "?src=query:api_key", null], // injected = however the worker encodes it
];

let h;
let s;

before(async () => {
  h = await startAirlock({
    policy: (echoUrl) => {
      const tool = (credential) => ({
        origin: echoUrl,
        allow_http: true,
        credential,
        rules: [{ methods: ["GET"], path: "/**", level: "read" }],
      });
      const p = testPolicy(echoUrl, {
        limits: { max_request_body_bytes: 1024 * 1024 },
        extraTools: {
          plain: tool({ secret: "PLAIN_TOKEN", inject: "bearer" }),
          hecho: tool({ secret: "HEADER_KEY", inject: "header", header: "x-api-key", format: "Token {secret}" }),
          qecho: tool({ secret: "QUERY_KEY", inject: "query", param: "api_key" }),
        },
      });
      p.tools.echo.rules.push({ methods: ["POST"], path: "/mirror-body/**", level: "read" });
      return p;
    },
    secrets: SECRETS,
  });
  s = await h.mint({ echo: "read", plain: "read", hecho: "read", qecho: "read" });
});

after(async () => {
  await h?.close();
});

/** Every header value of a raw response, as [name, value] pairs. */
function headerPairs(r) {
  const out = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) out.push([r.rawHeaders[i].toLowerCase(), r.rawHeaders[i + 1]]);
  return out;
}

/** Assert none of the forms appears anywhere in the response. */
function assertNoForm(r, f, label) {
  const body = r.bodyBuffer.toString("utf8");
  for (const [name, value] of Object.entries(f)) {
    assert.ok(value && value.length >= 8, `${label}: form ${name} too short to search for`);
    for (const [hn, hv] of headerPairs(r)) {
      assert.ok(!hv.includes(value), `${label}: ${name} form in response header ${hn}: ${hv.slice(0, 120)}`);
    }
    assert.ok(!body.includes(value), `${label}: ${name} form in the body`);
  }
}

// What may remain of each body segment once every "[REDACTED]" is taken out
// (e.g. the scheme before the secret, or base64 padding after an unpadded match).
const LEFTOVERS = {
  raw: [""],
  injected: ["", "Bearer ", "Token "],
  percent: [""],
  b64_std: ["", "=", "=="],
  b64_std_nopad: [""],
  b64_url: ["", "=", "=="],
  b64_url_nopad: [""],
  json: [""],
  "raw-twice": [""],
  "json-in-json": ['{"token":""}'],
  "pct-in-url": ["https://cb.example/?token=&next=1"],
  "b64-in-basic": ["Basic ", "Basic =", "Basic =="],
  last: [""],
};

/** Split the body at the origin's markers; check each segment was redacted and nothing else changed. */
function assertSegments(body, label) {
  const names = Object.keys(LEFTOVERS);
  let pos = 0;
  const found = [];
  for (const name of names) {
    const marker = `<<${name}>>`;
    const at = body.indexOf(marker, pos);
    assert.ok(at !== -1, `${label}: marker ${marker} missing or out of order in ${JSON.stringify(body.slice(pos, pos + 200))}`);
    if (found.length) found[found.length - 1].end = at;
    found.push({ name, start: at + marker.length });
    pos = at + marker.length;
  }
  found[found.length - 1].end = body.length;
  assert.equal(body.indexOf("<<"), body.indexOf(`<<${names[0]}>>`), `${label}: text before the first marker`);
  for (const { name, start, end } of found) {
    const seg = body.slice(start, end);
    assert.ok(seg.includes(REDACTED), `${label}: segment ${name} has no ${REDACTED}: ${JSON.stringify(seg.slice(0, 160))}`);
    const rest = seg.split(REDACTED).join("");
    assert.ok(LEFTOVERS[name].includes(rest), `${label}: segment ${name} left ${JSON.stringify(rest.slice(0, 160))}`);
  }
}

describe("the origin reflects every encoding (control, straight to the origin)", () => {
  test("all forms are in the direct response, as this test computes them", async () => {
    const secret = SECRETS.ECHO_API_TOKEN;
    const resp = await fetch(`${h.echo.url}/reflect-encodings/x`, { headers: { authorization: `Bearer ${secret}` } });
    const body = await resp.text();
    const f = forms(secret, `Bearer ${secret}`);
    for (const [name, value] of Object.entries(f)) {
      assert.equal(resp.headers.get(`x-reflect-${name.replace(/_/g, "-")}`), value, `origin header for ${name}`);
      assert.ok(body.includes(value), `origin body lacks ${name}`);
    }
    assert.equal(new Set(Object.values(f)).size, Object.keys(f).length, "forms are pairwise distinct");
  });
});

describe("every encoding of the credential is redacted, headers and 1..7-byte chunked body", () => {
  for (const [tool, secretName, query, injectedOf] of TOOLS) {
    for (const run of [1, 2]) {
      test(`${tool} (${secretName}) run ${run}`, async () => {
        const before = h.echo.hits.length;
        const r = await h.rawStream({
          path: `/t/${tool}/reflect-encodings/x${query}`,
          headers: { authorization: `Bearer ${s.token}` },
          timeoutMs: 20_000,
        });
        assert.equal(r.status, 200, r.text.slice(0, 300));
        assert.ok(r.clean, `stream ended by ${r.how} ${r.error ?? ""}`);
        const hit = h.echo.hits[before];
        const secret = SECRETS[secretName];
        let injected;
        if (injectedOf) {
          injected = injectedOf(secret);
        } else {
          const pair = hit.query.split("&").find((p) => p.startsWith("api_key="));
          injected = pair.slice("api_key=".length);
          assert.equal(new URLSearchParams(hit.query).get("api_key"), secret, "origin got the query credential");
        }
        const f = forms(secret, injected);
        if (f.injected.length < 8) delete f.injected;
        assertNoForm(r, f, tool);
        assertSegments(r.bodyBuffer.toString("utf8"), tool);
        for (const [, v] of Object.entries(SECRETS)) {
          assert.ok(!r.bodyBuffer.toString("latin1").includes(v), `${tool}: some secret in the body`);
        }
        assert.ok(!JSON.stringify(r.rawHeaders).includes(s.token.split(".")[3]), "session token");
      });
    }
  }

  test("the same through fetch() (Miniflare's dispatchFetch)", async () => {
    const r = await h.call("echo", "/reflect-encodings/y", { token: s.token });
    assert.equal(r.status, 200);
    const f = forms(SECRETS.ECHO_API_TOKEN, `Bearer ${SECRETS.ECHO_API_TOKEN}`);
    for (const [name, value] of Object.entries(f)) {
      for (const [hn, hv] of Object.entries(r.headers)) assert.ok(!hv.includes(value), `${name} in header ${hn}`);
      assert.ok(!r.text.includes(value), `${name} in the body`);
    }
    assertSegments(r.text, "fetch");
  });
});

describe("a response without secrets passes byte for byte", () => {
  const sha = (b) => createHash("sha256").update(b).digest("hex");

  for (const [label, query] of [
    ["1 MiB of random bytes, chunked at random sizes", "seed=big"],
    ["1 MiB of random bytes with Content-Length", "seed=bigcl&cl=1"],
  ]) {
    test(label, async () => {
      const n = 1024 * 1024;
      const r = await h.rawStream({ path: `/t/echo/random/${n}?${query}`, headers: { authorization: `Bearer ${s.token}` }, timeoutMs: 30_000 });
      assert.equal(r.status, 200);
      assert.ok(r.clean, `stream ended by ${r.how} ${r.error ?? ""}`);
      const expected = randomBody(new URLSearchParams(query).get("seed"), n);
      assert.equal(r.bodyBuffer.length, n, "length");
      assert.equal(sha(r.bodyBuffer), sha(expected), "content");
    });
  }

  test("text that merely resembles secrets, in 1..7-byte chunks, passes unchanged", async () => {
    const secret = SECRETS.ECHO_API_TOKEN;
    const f = forms(secret, `Bearer ${secret}`);
    const utf8 = (t) => Buffer.from(t, "utf8");
    const body = Buffer.concat([
      utf8("start "),
      utf8(REDACTED),
      utf8(" Bearer Token "),
      ...Object.values(f).map((v) => utf8(`${v.slice(0, 12)}|`)), // short prefixes of every form
      utf8(`${secret.slice(0, 6)}${secret.slice(0, 12)}`),
      utf8("%%25%2F%2f=="),
      utf8(randomBytes(2000).toString("base64")),
      utf8("\u00e9\u2713\ud83d\ude00 UTF-8 across chunk boundaries \u00fc\u00f6\u00e4"),
      randomBytes(1500), // not UTF-8 at all
      utf8(" ends with a prefix of the secret: "),
      utf8(secret.slice(0, 12)),
    ]);
    const r = await h.rawStream({
      method: "POST",
      path: "/t/echo/mirror-body/x?tiny=1",
      headers: { authorization: `Bearer ${s.token}`, "content-type": "application/octet-stream" },
      body,
      timeoutMs: 30_000,
    });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.ok(r.clean, `stream ended by ${r.how} ${r.error ?? ""}`);
    assert.equal(r.bodyBuffer.length, body.length, "length");
    assert.ok(r.bodyBuffer.equals(body), `first difference at byte ${[...body].findIndex((b, i) => r.bodyBuffer[i] !== b)}`);
  });
});
