// Request proofs end to end with the reference signers: the Python one
// (clients/python/airlock_proof.py, run as a CLI) and the TypeScript one
// (clients/typescript/airlock-proof.ts, imported directly: Node 22 strips
// the types) sign requests to a tool with "require_proof": true. Then the
// refusals: missing, tampered, replayed and stale proofs never reach the origin.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { proofFetch, sign } from "../clients/typescript/airlock-proof.ts";
import { REPO_ROOT, assertError, readResponse, startAirlock, testPolicy } from "./helpers.mjs";

const PY_SIGNER = join(REPO_ROOT, "clients", "python", "airlock_proof.py");
const VENV_PYTHON = join(REPO_ROOT, ".venv-mcp", "bin", "python");
const PYTHON = process.env.PYTHON || (existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");

let h;
let s; // echo:write, private:read; echo requires proofs, private does not

before(async () => {
  h = await startAirlock({
    policy: (echoUrl) => {
      const p = testPolicy(echoUrl);
      p.tools.echo.require_proof = true;
      return p;
    },
  });
  s = await h.mint({ echo: "write", private: "read" }, { agent: "agent-proof", user: "user-proof" });
  assert.match(s.proof_key ?? "", /^[A-Za-z0-9_-]{43}$/, "mint answer carries proof_key");
});

after(async () => {
  await h?.close();
});

const now = () => Math.floor(Date.now() / 1000);

/** Run the Python signer's CLI; resolves with its JSON output. */
function python(args, session = s) {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [PY_SIGNER, "--session-id", session.session_id, ...args],
      {
        cwd: REPO_ROOT,
        timeout: 30_000,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          AIRLOCK_SESSION_TOKEN: session.token,
          AIRLOCK_PROOF_KEY: session.proof_key,
        },
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`python signer failed: ${err.message}\n${stdout}\n${stderr}`));
        else resolve(JSON.parse(stdout));
      },
    );
  });
}

/** The one echo hit `fn` caused (asserts there was exactly one). */
async function oneEchoHit(fn) {
  const before = h.echo.hits.length;
  const result = await fn();
  const hits = h.echo.hits.slice(before);
  assert.equal(hits.length, 1, `echo origin hits: ${hits.length}`);
  return { result, hit: hits[0] };
}

/** The origin got the real credential and nothing of the proof. */
function assertBrokered(hit, proofHeader) {
  assert.equal(hit.headers.authorization, `Bearer ${h.secrets.ECHO_API_TOKEN}`);
  assert.equal(hit.headers["x-airlock-proof"], undefined, "proof header forwarded to the origin");
  const everything = JSON.stringify(hit.rawHeaders) + hit.url + hit.body;
  assert.ok(!everything.includes(s.token), "session token reached the origin");
  if (proofHeader) assert.ok(!everything.includes(proofHeader.split("sig=")[1]), "proof MAC reached the origin");
}

/** A request with an explicit proof header, through Miniflare's dispatchFetch. */
function call(path, { method = "GET", body, proof, headers = {} } = {}) {
  return h.fetch(path, {
    method,
    body,
    headers: { authorization: `Bearer ${s.token}`, ...(proof ? { "x-airlock-proof": proof } : {}), ...headers },
  });
}

describe("the Python signer", () => {
  test("GET with a percent-encoded path and query", async () => {
    const url = new URL("/t/echo/files/a%20b/%E2%9C%93?q=two%20words&tag=%E2%9C%93", h.url);
    const { result: r, hit } = await oneEchoHit(() => python(["--url", url.href]));
    assert.equal(r.status, 200, r.body);
    assert.equal(hit.method, "GET");
    assert.equal(hit.path, "/files/a%20b/%E2%9C%93");
    assert.equal(hit.query, "q=two%20words&tag=%E2%9C%93");
    assertBrokered(hit);
    const echoed = JSON.parse(r.body);
    assert.equal(echoed.headers["x-airlock-proof"], undefined);
    assert.match(echoed.headers.authorization, /\[REDACTED\]/, "credential redacted in the answer");
  });

  test("POST with a JSON body", async () => {
    const body = JSON.stringify({ name: "widget", note: "naïve café ✓" });
    const url = new URL("/t/echo/items/py?mode=create", h.url);
    const { result: r, hit } = await oneEchoHit(() =>
      python(["--url", url.href, "--method", "POST", "--data", body, "--header", "content-type: application/json"]),
    );
    assert.equal(r.status, 200, r.body);
    assert.equal(hit.method, "POST");
    assert.equal(hit.path, "/items/py");
    assert.equal(hit.query, "mode=create");
    assert.equal(hit.body, body);
    assert.equal(hit.headers["content-type"], "application/json");
    assertBrokered(hit);
  });
});

describe("the TypeScript signer", () => {
  const opts = () => ({ token: s.token, proofKey: s.proof_key, sessionId: s.session_id });

  test("GET: fetch percent-encodes the URL, the proof covers what it sends", async () => {
    const { result: resp, hit } = await oneEchoHit(() =>
      proofFetch(new URL("/t/echo/files/a b/✓?q=two words", h.url), opts()),
    );
    const r = await readResponse(resp);
    assert.equal(r.status, 200, r.text);
    assert.equal(hit.path, "/files/a%20b/%E2%9C%93");
    assert.equal(hit.query, "q=two%20words");
    assertBrokered(hit);
    assert.equal(r.json.headers["x-airlock-proof"], undefined);
  });

  test("POST with a byte body", async () => {
    const body = new TextEncoder().encode(JSON.stringify({ name: "ts", note: "✓" }));
    const { result: resp, hit } = await oneEchoHit(() =>
      proofFetch(new URL("/t/echo/items/ts", h.url), {
        ...opts(), method: "POST", body, headers: { "content-type": "application/json" },
      }),
    );
    const r = await readResponse(resp);
    assert.equal(r.status, 200, r.text);
    assert.equal(hit.method, "POST");
    assert.equal(hit.path, "/items/ts");
    assert.equal(hit.body, new TextDecoder().decode(body));
    assertBrokered(hit);
  });

  test("the audit record says the proof was verified", async () => {
    const proof = await sign({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", path: "/t/echo/audited" });
    const { result: r } = await oneEchoHit(() => call("/t/echo/audited", { proof }));
    assert.equal(r.status, 200, r.text);
    const records = await h.auditFor(r.headers["x-airlock-request-id"]);
    assert.equal(records.length, 1);
    assert.equal(records[0].proof, "verified");
    assert.ok(!JSON.stringify(records[0]).includes(proof.split("sig=")[1]), "MAC in the audit record");
  });
});

describe("refused proofs never reach the origin", () => {
  const signFor = (o) => sign({ proofKey: s.proof_key, sessionId: s.session_id, method: "GET", ...o });

  test("no proof -> 401 proof_required", async () => {
    const r = await h.expectNoOriginHits(() => call("/t/echo/hello"), "without proof");
    assertError(r, 401, "proof_required");
  });

  test("a proof for another body -> 401 proof_invalid", async () => {
    const proof = await signFor({ method: "POST", path: "/t/echo/items/1", body: '{"amount":1}' });
    const r = await h.expectNoOriginHits(
      () => call("/t/echo/items/1", { method: "POST", body: '{"amount":1000}', proof }),
      "tampered body",
    );
    assertError(r, 401, "proof_invalid");
  });

  test("a proof made with another session's key -> 401 proof_invalid", async () => {
    const other = await h.mint({ echo: "read" });
    const proof = await sign({ proofKey: other.proof_key, sessionId: s.session_id, method: "GET", path: "/t/echo/hello" });
    const r = await h.expectNoOriginHits(() => call("/t/echo/hello", { proof }), "other key");
    assertError(r, 401, "proof_invalid");
  });

  test("the same header twice -> 200, then 401 proof_replayed", async () => {
    const proof = await signFor({ path: "/t/echo/once" });
    const { result: first } = await oneEchoHit(() => call("/t/echo/once", { proof }));
    assert.equal(first.status, 200, first.text);
    const again = await h.expectNoOriginHits(() => call("/t/echo/once", { proof }), "replay");
    assertError(again, 401, "proof_replayed");
  });

  test("a proof 10 minutes old -> 401 proof_stale", async () => {
    const proof = await signFor({ path: "/t/echo/hello", ts: now() - 600 });
    const r = await h.expectNoOriginHits(() => call("/t/echo/hello", { proof }), "stale");
    assertError(r, 401, "proof_stale");
  });

  test("a proof is checked even where none is required", async () => {
    const before = (await h.privateHits()).count;
    const plain = await call("/t/private/hello");
    assert.equal(plain.status, 200, `no proof needed on private: ${plain.text}`);
    assert.equal((await h.privateHits()).count - before, 1);
    const bad = await signFor({ path: "/t/private/other" });
    const r = await h.expectNoOriginHits(() => call("/t/private/hello", { proof: bad }), "wrong path");
    assertError(r, 401, "proof_invalid");
  });
});
