// AWS tools (credential kind aws_sigv4) end to end: the real boto3, given
// only Airlock's tool URL as its endpoint_url and the keys a session was
// minted with, lists, puts and gets S3 objects (UNSIGNED-PAYLOAD and hashed
// uploads), calls STS GetCallerIdentity and DynamoDB ListTables, against a
// fake AWS (fixtures/aws-origin.mjs) that verifies SigV4 with the REAL key
// as AWS does. Then the attack table, in raw HTTP: each hostile request is
// refused with its code and an audit record, and the fake AWS is not hit.
// An echoing origin never shows the sandbox the real key.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { everythingReceived } from "./fixtures/api-origins.mjs";
import { amzDate, signRequest, startAwsOrigin } from "./fixtures/aws-origin.mjs";
import { AUDIENCE, REPO_ROOT, assertError, assertNotLeaked, secretWindows, startAirlock } from "./helpers.mjs";

const VENV_PYTHON = join(REPO_ROOT, ".venv-sdks", "bin", "python");
const AWS_CALLS = join(REPO_ROOT, "miniflare-tests", "fixtures", "aws_calls.py");

// The real key, shaped like AWS's own: temporary credentials with a session token.
const REAL = {
  accessKeyId: `ASIA${randomBytes(8).toString("hex").toUpperCase()}`,
  secretAccessKey: randomBytes(30).toString("base64"),
  sessionToken: `IQoJb3JpZ2luX2VjE${randomBytes(60).toString("base64")}`,
};

let origin;
let h;

function awsTool(service, rules) {
  return {
    origin: origin.url,
    allow_http: true,
    credential: {
      kind: "aws_sigv4",
      access_key_id_secret: "AWS_ACCESS_KEY_ID",
      secret_access_key_secret: "AWS_SECRET_ACCESS_KEY",
      session_token_secret: "AWS_SESSION_TOKEN",
      region: "us-east-1",
      service,
    },
    rules,
  };
}

before(async () => {
  origin = await startAwsOrigin({ ...REAL, region: "us-east-1" });
  try {
    h = await startAirlock({
      policy: {
        version: 1,
        audience: AUDIENCE,
        limits: { max_session_ttl_seconds: 3600, max_request_body_bytes: 65536, upstream_timeout_ms: 5000 },
        tools: {
          s3: awsTool("s3", [
            { methods: ["GET", "HEAD"], path: "/**", level: "read" },
            { methods: ["PUT"], path: "/*/**", level: "write" },
          ]),
          sts: awsTool("sts", [{ methods: ["POST"], path: "/", level: "read" }]),
          dynamodb: awsTool("dynamodb", [{ methods: ["POST"], path: "/", level: "read" }]),
        },
      },
      secrets: { AWS_ACCESS_KEY_ID: REAL.accessKeyId, AWS_SECRET_ACCESS_KEY: REAL.secretAccessKey, AWS_SESSION_TOKEN: REAL.sessionToken },
    });
  } catch (err) {
    await origin.close();
    throw err;
  }
});

after(async () => {
  await origin?.close();
  await h?.close();
});

function run(file, args, env) {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { env, timeout: 90_000, killSignal: "SIGKILL", encoding: "utf8" }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(new Error(`${file}: ${err.message}\n${stdout}\n${stderr}`));
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
    child.stdin.end();
  });
}

/** Nothing in `text` holds any part of the real key. */
function assertNoRealKey(text, label) {
  for (const [name, value] of Object.entries(REAL)) {
    assert.ok(!text.includes(value), `${label}: holds the real ${name}`);
    for (const w of secretWindows(value, 20)) assert.ok(!text.includes(w), `${label}: holds part of the real ${name}`);
  }
}

describe("boto3 through Airlock", () => {
  test("lists, puts and gets objects, calls STS and DynamoDB; the fake AWS sees only the real key", async () => {
    if (!existsSync(VENV_PYTHON)) throw new Error(`${VENV_PYTHON} is missing: run bash scripts/setup`);
    const minted = await h.mint({ s3: "write", sts: "read", dynamodb: "read" });
    const keys = minted.aws;
    assert.deepEqual(Object.keys(keys).sort(), ["dynamodb", "s3", "sts"]);
    for (const k of Object.values(keys)) {
      assert.match(k.access_key_id, /^AIRL[0-9A-F]{16}$/);
      assert.equal(k.secret_access_key.length, 40);
      assert.equal(k.session_token, minted.token);
      assert.equal(k.region, "us-east-1");
    }
    assert.ok(!JSON.stringify(minted).includes(REAL.accessKeyId) && !JSON.stringify(minted).includes(REAL.secretAccessKey));

    const since = origin.requests.length;
    const out = await run(VENV_PYTHON, [AWS_CALLS, h.url.origin], {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? "/tmp",
      LANG: "C.UTF-8",
      AIRLOCK_AWS_KEYS: JSON.stringify(keys),
      AWS_CONFIG_FILE: "/dev/null",
      AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
      AWS_EC2_METADATA_DISABLED: "true",
      no_proxy: "127.0.0.1,localhost",
      NO_PROXY: "127.0.0.1,localhost",
    });
    assert.equal(out.code, 0, `aws_calls.py failed:\n${out.stdout}\n${out.stderr}`);
    const summary = JSON.parse(out.stdout.trim().split("\n").at(-1));
    assert.deepEqual(summary.listed, ["reports/hashed~two.txt", "reports/unsigned one.txt"]);
    assert.equal(summary.got, "unsigned payload body");
    assert.match(summary.put_unsigned_etag, /^"[0-9a-f]{32}"$/);
    assert.equal(summary.arn, "arn:aws:iam::123456789012:user/airlock-broker");
    assert.deepEqual(summary.tables, ["airlock-table"]);
    assertNoRealKey(out.stdout + out.stderr, "boto3's output");

    const recs = origin.requests.slice(since);
    assert.equal(recs.length, 6, recs.map((r) => `${r.method} ${r.url} ${r.status}`).join("\n"));
    for (const rec of recs) {
      assert.ok(rec.verified, `${rec.method} ${rec.url}: the fake AWS refused the signature (${rec.status})`);
      assert.ok(rec.status >= 200 && rec.status < 300, `${rec.method} ${rec.url}: ${rec.status}`);
      const all = everythingReceived(rec);
      for (const [name, value] of [["session token", minted.token], ...Object.entries(keys).flatMap(([t, k]) => [[`${t} key id`, k.access_key_id], [`${t} secret`, k.secret_access_key]])]) {
        assert.ok(!all.includes(value), `${rec.method} ${rec.url}: the origin received the sandbox's ${name}`);
      }
      assert.match(rec.headers.authorization, new RegExp(`^AWS4-HMAC-SHA256 Credential=${REAL.accessKeyId}/`));
      assert.equal(rec.headers["x-amz-security-token"], REAL.sessionToken);
    }
    const puts = recs.filter((r) => r.method === "PUT");
    assert.deepEqual(
      puts.map((r) => r.headers["x-amz-content-sha256"] === "UNSIGNED-PAYLOAD"),
      [true, false],
      "one upload UNSIGNED-PAYLOAD, one hashed",
    );
    assert.match(puts[1].headers["x-amz-content-sha256"], /^[0-9a-f]{64}$/);
    assert.equal(puts[1].headers["x-amz-meta-colour"], "blue", "signed x-amz-* headers are forwarded");
    const ddb = recs.find((r) => r.headers["x-amz-target"]);
    assert.equal(ddb.headers["x-amz-target"], "DynamoDB_20120810.ListTables");
    assert.match(ddb.headers.authorization, /SignedHeaders=[^,]*x-amz-target/, "X-Amz-Target is signed");
    assert.equal(origin.objects.get("airlock-bucket/reports/unsigned one.txt").body.toString(), "unsigned payload body");
  });

  test("control: the fake AWS refuses the sandbox's derived key and a wrong signature", async () => {
    const minted = await h.mint({ s3: "read" });
    const k = minted.aws.s3;
    const since = origin.requests.length;
    const url = `${origin.url}/airlock-bucket?list-type=2`;
    const payload = "UNSIGNED-PAYLOAD";
    const direct = async (accessKeyId, secretAccessKey, sessionToken) => {
      const headers = signRequest({ method: "GET", url, headers: { "x-amz-security-token": sessionToken }, accessKeyId, secretAccessKey, region: "us-east-1", service: "s3", amzDate: amzDate(), payload });
      return fetch(url, { headers });
    };
    assert.equal((await direct(k.access_key_id, k.secret_access_key, k.session_token)).status, 403, "the derived key is no AWS key");
    assert.equal((await direct(REAL.accessKeyId, k.secret_access_key, REAL.sessionToken)).status, 403, "the real id with another secret");
    assert.equal((await direct(REAL.accessKeyId, REAL.secretAccessKey, REAL.sessionToken)).status, 200, "the real key works");
    assert.deepEqual(origin.requests.slice(since).map((r) => r.verified), [false, false, true]);
  });
});

describe("attacks, in raw HTTP: refused, audited, the fake AWS not hit", () => {
  test("each hostile request is refused before anything reaches the origin", async () => {
    const a = await h.mint({ s3: "write" });
    const b = await h.mint({ s3: "write" });
    const path = "/t/s3/airlock-bucket/attack.txt";
    const url = `${h.url.origin}${path}`;
    const sign = (o = {}) =>
      signRequest({
        method: o.method ?? "GET",
        url: o.url ?? url,
        headers: { "x-amz-security-token": o.token ?? a.token, ...(o.headers ?? {}) },
        body: o.body ?? "",
        accessKeyId: o.keyId ?? a.aws.s3.access_key_id,
        secretAccessKey: o.secret ?? a.aws.s3.secret_access_key,
        region: o.region ?? "us-east-1",
        service: "s3",
        amzDate: o.amzDate ?? amzDate(),
        payload: o.payload ?? "UNSIGNED-PAYLOAD",
      });
    const flip = (headers) => {
      const last = headers.authorization.at(-1);
      return { ...headers, authorization: headers.authorization.slice(0, -1) + (last === "0" ? "1" : "0") };
    };
    const changed = (() => {
      const s = sign({ headers: { "x-amz-meta-note": "signed" } });
      return { ...s, "x-amz-meta-note": "changed after signing" };
    })();
    const presignedQuery = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=${a.aws.s3.access_key_id}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=${amzDate()}&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Security-Token=${encodeURIComponent(a.token)}&X-Amz-Signature=${"0".repeat(64)}`;
    const chunkBody = "5;chunk-signature=" + "0".repeat(64) + "\r\nhello\r\n0;chunk-signature=" + "0".repeat(64) + "\r\n\r\n";
    const cases = [
      { what: "a wrong signature", headers: flip(sign()), status: 403, code: "signature_invalid" },
      { what: "a signature with the real key's id", headers: sign({ keyId: REAL.accessKeyId }), status: 403, code: "signature_invalid" },
      { what: "another session's key with this session's token", headers: sign({ keyId: b.aws.s3.access_key_id, secret: b.aws.s3.secret_access_key }), status: 403, code: "signature_invalid" },
      { what: "a header changed after signing", headers: changed, status: 403, code: "signature_invalid" },
      { what: "a time 20 minutes ago", headers: sign({ amzDate: amzDate(Date.now() - 20 * 60_000) }), status: 403, code: "signature_invalid" },
      { what: "a presigned URL", path: `${path}?${presignedQuery}`, headers: {}, status: 400, code: "presigned_refused" },
      {
        what: "an aws-chunked upload",
        method: "PUT",
        headers: sign({ method: "PUT", body: chunkBody, payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", headers: { "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "5" } }),
        body: chunkBody,
        status: 400,
        code: "aws_chunked_refused",
      },
      {
        what: "a body that is not the signed hash",
        method: "PUT",
        headers: sign({ method: "PUT", body: "signed body", payload: "d6e2c6e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1" }),
        body: "another body",
        status: 400,
        code: "payload_hash_mismatch",
      },
    ];
    for (const c of cases) {
      const since = origin.requests.length;
      const r = await h.raw({ method: c.method ?? "GET", path: c.path ?? path, headers: c.headers, body: c.body });
      assertError(r, c.status, c.code, c.what);
      assertNotLeaked(r, { realKeyId: REAL.accessKeyId, realSecret: REAL.secretAccessKey }, c.what);
      assert.equal(origin.requests.length, since, `${c.what}: the fake AWS was hit`);
      const lines = await h.auditFor(r.headers["x-airlock-request-id"]);
      assert.equal(lines.length, 1, `${c.what}: one audit record`);
      assert.equal(lines[0].reason, c.code, `${c.what}: audit reason`);
      assert.equal(lines[0].decision, "deny", `${c.what}: audit decision`);
    }
    // The same request, signed right, goes through.
    const since = origin.requests.length;
    const ok = await h.raw({ method: "PUT", path, headers: sign({ method: "PUT", body: "fine", payload: "UNSIGNED-PAYLOAD" }), body: "fine" });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(origin.requests.length, since + 1);
    assert.ok(origin.requests.at(-1).verified);
  });

  test("an echoing origin never shows the sandbox the real key", async () => {
    const a = await h.mint({ s3: "write" });
    const path = "/t/s3/airlock-bucket/echo";
    const headers = signRequest({
      method: "PUT",
      url: `${h.url.origin}${path}`,
      headers: { "x-amz-security-token": a.token },
      body: "x",
      accessKeyId: a.aws.s3.access_key_id,
      secretAccessKey: a.aws.s3.secret_access_key,
      region: "us-east-1",
      service: "s3",
      amzDate: amzDate(),
      payload: "UNSIGNED-PAYLOAD",
    });
    const r = await h.raw({ method: "PUT", path, headers, body: "x" });
    assert.equal(r.status, 200, r.text);
    assert.ok(origin.requests.at(-1).verified);
    const rec = origin.requests.at(-1);
    assert.ok(everythingReceived(rec).includes(REAL.accessKeyId), "the origin did receive the real key id (and echoed it)");
    assert.match(r.text, /<Echo>/);
    assert.ok(r.text.includes("[REDACTED]"), "the echoed real key id and token were replaced");
    assertNoRealKey(r.text + JSON.stringify(r.headers), "the echoed answer");
    assert.ok(r.text.includes(`Credential=[REDACTED]/`), "the echoed Authorization lost its key id");
  });
});
