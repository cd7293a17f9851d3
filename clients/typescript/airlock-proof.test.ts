// Unit tests for airlock-proof.ts against the shared vectors.
//   node --test clients/typescript/airlock-proof.test.ts      (Node >= 22.18)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { PROOF_HEADER, proofFetch, sign, signedString } from "./airlock-proof.ts";

interface Vector {
  name: string; proof_key: string; session_id: string; method: string; path: string;
  query?: string; body_b64: string; ts: number; nonce: string; signed_string: string; header: string;
}

const vectors: Vector[] = JSON.parse(
  readFileSync(new URL("../test-vectors/proof.json", import.meta.url), "utf8"),
).vectors;

const bodyOf = (v: Vector) => new Uint8Array(Buffer.from(v.body_b64, "base64"));

function inputOf(v: Vector) {
  return {
    proofKey: v.proof_key, sessionId: v.session_id, method: v.method, path: v.path,
    ...(v.query === undefined ? {} : { query: v.query }),
    body: bodyOf(v), ts: v.ts, nonce: v.nonce,
  };
}

test("there are vectors", () => assert.ok(vectors.length >= 4));

for (const v of vectors) {
  test(`vector: ${v.name}`, async () => {
    assert.equal(await signedString(inputOf(v)), v.signed_string);
    assert.equal(await sign(inputOf(v)), v.header);
    // The same body as an ArrayBuffer, and without a body when it is empty.
    const bytes = bodyOf(v);
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    assert.equal(await sign({ ...inputOf(v), body: ab }), v.header);
    if (bytes.length === 0) assert.equal(await sign({ ...inputOf(v), body: undefined }), v.header);
  });
}

test("a string body is hashed as UTF-8; method is upper-cased", async () => {
  const v = vectors[1];
  const text = new TextDecoder().decode(bodyOf(v));
  assert.equal(await sign({ ...inputOf(v), body: text, method: v.method.toLowerCase() }), v.header);
});

test("every input changes the signature", async () => {
  const v = vectors[1];
  const changes: Record<string, unknown> = {
    sessionId: "1".repeat(32), method: "PUT", path: "/t/echo/items/neW", query: "mode=createX",
    body: '{"name":"widget","n":43}', ts: v.ts + 1, nonce: v.nonce + "x", proofKey: vectors[2].proof_key,
  };
  for (const [k, val] of Object.entries(changes)) {
    assert.notEqual(await sign({ ...inputOf(v), [k]: val }), v.header, k);
  }
});

test("defaults: current time and a fresh 22-character nonce", async () => {
  const v = vectors[0];
  const { ts: _ts, nonce: _nonce, ...rest } = inputOf(v);
  const before = Math.floor(Date.now() / 1000);
  const a = await sign(rest);
  const b = await sign(rest);
  const m = /^v1;ts=(\d+);nonce=([A-Za-z0-9_-]{22});sig=[A-Za-z0-9_-]{43}$/.exec(a);
  assert.ok(m, a);
  assert.ok(Number(m[1]) >= before && Number(m[1]) <= before + 2, a);
  assert.notEqual(a, b, "two calls must not reuse a nonce");
  assert.equal(await sign({ ...rest, ts: Number(m[1]), nonce: m[2] }), a);
});

test("bad inputs are refused", async () => {
  const base = inputOf(vectors[0]);
  const bad: Array<[string, unknown]> = [
    ["nonce", "short"], ["nonce", "x".repeat(65)], ["nonce", "dots.are.not.allowed"],
    ["path", "t/echo"], ["path", "/t/echo?x=1"], ["path", "/t/echo#f"], ["sessionId", "a\nb"],
    ["query", "a=1\n"], ["ts", -1], ["ts", 1.5], ["proofKey", "not base64!"], ["proofKey", "a+b/"],
  ];
  for (const [k, val] of bad) {
    await assert.rejects(sign({ ...base, [k]: val }), undefined, `${k}=${JSON.stringify(val)}`);
  }
});

test("proofFetch signs pathname and search as fetch sends them", async () => {
  const seen: Array<{ url: string; method: string; headers: http.IncomingHttpHeaders; body: Buffer }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ url: req.url ?? "", method: req.method ?? "", headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(302, { location: "/elsewhere" }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    const { port } = server.address() as AddressInfo;
    const v = vectors[2]; // percent-encoded path and query
    const body = "naïve ✓";
    // fetch percent-encodes the space and the non-ASCII character of the path.
    const resp = await proofFetch(`http://127.0.0.1:${port}/t/echo/files/a b/✓?${v.query}#frag`, {
      token: "tok_123", proofKey: v.proof_key, sessionId: v.session_id, method: "post",
      body, headers: { "content-type": "text/plain" }, ts: v.ts, nonce: v.nonce,
    });
    assert.equal(resp.status, 302, "redirects are not followed");
    assert.equal(seen.length, 1);
    const got = seen[0];
    assert.equal(got.url, `${v.path}?${v.query}`);
    assert.equal(got.method, "POST");
    assert.equal(got.headers.authorization, "Bearer tok_123");
    assert.equal(got.headers["content-type"], "text/plain");
    assert.equal(got.body.toString("utf8"), body);
    const [path, query] = [got.url.slice(0, got.url.indexOf("?")), got.url.slice(got.url.indexOf("?") + 1)];
    const want = await sign({
      proofKey: v.proof_key, sessionId: v.session_id, method: "POST", path, query,
      body: new Uint8Array(got.body), ts: v.ts, nonce: v.nonce,
    });
    assert.equal(got.headers[PROOF_HEADER], want);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
