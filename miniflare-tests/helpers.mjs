// Shared harness for the Miniflare suites: runs the BUILT Airlock worker
// (build/index.js) in workerd through the standalone `miniflare` package,
// next to the demo private origin (service binding PRIVATE_ORIGIN) and a
// Node echo origin standing in for a public API.
//
// Build first (`bash scripts/build`), or run everything with `bash scripts/test`.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { startEchoOrigin } from "../demo/echo-origin.mjs";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

// AIRLOCK_WORKER_SCRIPT and AIRLOCK_STATE_SCRIPT let you point the suites at
// other build outputs.
export const WORKER_SCRIPT = resolve(
  REPO_ROOT,
  process.env.AIRLOCK_WORKER_SCRIPT || join("build", "index.js"),
);
export const PRIVATE_WORKER_SCRIPT = join(REPO_ROOT, "demo", "private-origin", "worker.js");
export const PRIVATE_WORKER_NAME = "airlock-demo-private";

// Session state: the Durable Object class AirlockState, exported by the built
// state script (build/state/index.js, worker "airlock-state"), bound as
// AIRLOCK_STATE (SQLite-backed, as in wrangler.toml and wrangler.state.toml).
// A failing stand-in (fixtures/broken-state.js) runs as its own worker; the
// state script as an earlier release answers (fixtures/earlier-state.js, the
// built one with an admission's wire form taken back) runs in its place.
export const STATE_BINDING = "AIRLOCK_STATE";
export const STATE_CLASS = "AirlockState";
export const STATE_WORKER_NAME = "airlock-state";
export const STATE_SCRIPT = resolve(
  REPO_ROOT,
  process.env.AIRLOCK_STATE_SCRIPT || join("build", "state", "index.js"),
);
export const BROKEN_STATE_SCRIPT = join(REPO_ROOT, "miniflare-tests", "fixtures", "broken-state.js");
export const BROKEN_STATE_WORKER_NAME = "airlock-broken-state";
export const BROKEN_STATE_CLASS = "BrokenState";
export const EARLIER_STATE_SCRIPT = join(REPO_ROOT, "miniflare-tests", "fixtures", "earlier-state.js");
export const STATE_MODES = ["default", "missing", "broken", "earlier"];

// Same compatibility date as wrangler.toml (read from it so the two cannot drift).
export const COMPATIBILITY_DATE = (() => {
  try {
    const toml = readFileSync(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const m = /^\s*compatibility_date\s*=\s*"([^"]+)"/m.exec(toml);
    if (m) return m[1];
  } catch {}
  return "2026-07-01";
})();

// The Airlock worker's compatibility flags, as in wrangler.toml.
export const COMPATIBILITY_FLAGS = (() => {
  try {
    const toml = readFileSync(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const m = /^\s*compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
    if (m) return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
  } catch {}
  return [];
})();

export const AUDIENCE = "airlock-test";
export const REDACTED = "[REDACTED]";
export const AUDIT_FIELDS = [
  "kind", "ts", "request_id", "session_id", "agent", "user", "tool", "method",
  "path", "rule", "decision", "reason", "upstream_status", "duration_ms", "detail",
  "bytes_out", "stream",
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A random secret made only of characters that JSON never escapes. */
export function randomSecret(prefix) {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}

/** A signing-key entry `kid:base64(32 random bytes)`. */
export function signingKey(kid) {
  return `${kid}:${randomBytes(32).toString("base64")}`;
}

export function generateSecrets() {
  return {
    AIRLOCK_ADMIN_KEY: randomSecret("admin"),
    AIRLOCK_SIGNING_KEYS: signingKey("k1"),
    ECHO_API_TOKEN: randomSecret("echotok"),
    PRIVATE_API_KEY: randomSecret("privkey"),
  };
}

/**
 * The test policy: the demo policy's shape, with the echo tool pointing at
 * the test's echo origin.
 */
export function testPolicy(echoUrl, { extraTools = {}, limits = {}, egress } = {}) {
  return {
    version: 1,
    audience: AUDIENCE,
    limits: {
      max_session_ttl_seconds: 3600,
      max_request_body_bytes: 4096,
      upstream_timeout_ms: 3000,
      ...limits,
    },
    tools: {
      echo: {
        origin: echoUrl,
        allow_http: true,
        credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
        forward_headers: ["x-echo-mode"],
        rules: [
          { methods: ["GET", "HEAD"], path: "/**", level: "read" },
          { methods: ["POST", "PUT", "PATCH"], path: "/items/**", level: "write" },
          { methods: ["DELETE"], path: "/items/*", level: "admin" },
        ],
      },
      private: {
        service: "PRIVATE_ORIGIN",
        credential: {
          secret: "PRIVATE_API_KEY",
          inject: "header",
          header: "x-api-key",
          format: "Key {secret}",
        },
        rules: [{ methods: ["GET", "POST"], path: "/**", level: "read" }],
      },
      ...extraTools,
    },
    ...(egress === undefined ? {} : { egress }),
  };
}

/** Parse workerd stdout lines; keep the audit objects. */
function collectLines(stream, onLine) {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) !== -1) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  stream.on("end", () => {
    if (buf) onLine(buf);
    buf = "";
  });
}

async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Read a fetch Response into a plain object. */
export async function readResponse(resp) {
  const text = await resp.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  const headers = {};
  for (const [k, v] of resp.headers) headers[k] = v;
  const setCookie = typeof resp.headers.getSetCookie === "function" ? resp.headers.getSetCookie() : [];
  return { status: resp.status, headers, setCookie, text, json };
}

/**
 * Start echo origin + Miniflare (Airlock + private origin).
 * @param {object} [o]
 * @param {object|string|(echoUrl)=>object|string} [o.policy] policy object, raw string, or factory
 * @param {object} [o.secrets] overrides for generated secrets (a value of undefined removes it)
 * @param {(request: Request) => Promise<Response>} [o.outboundService] intercepts EVERY
 *   outbound fetch of the Airlock worker (see fakeInternet()); without it the worker
 *   reaches the network directly, so suites that exercise /e/ must set it
 * @param {"default"|"missing"|"broken"|"earlier"} [o.state] the session-state Durable Object:
 *   "default" binds AIRLOCK_STATE to AirlockState in the worker airlock-state
 *   (build/state/index.js, SQLite); "earlier" runs fixtures/earlier-state.js
 *   as airlock-state instead (build/state/index.js answering an admission as
 *   a release before carried audit lines did);
 *   "missing" leaves the binding out; "broken" binds it to BrokenState in the
 *   worker airlock-broken-state (fixtures/broken-state.js), whose fetch always
 *   throws. `h.restart({ state })` switches modes; Durable Object storage lives
 *   in Miniflare's temporary directory and survives restarts.
 */
export async function startAirlock(o = {}) {
  for (const script of [WORKER_SCRIPT, STATE_SCRIPT]) {
    if (!existsSync(script)) {
      throw new Error(`${script} does not exist: build the workers first (bash scripts/build)`);
    }
  }
  const echo = await startEchoOrigin({ port: 0 });
  const h = {
    echo,
    mf: null,
    url: null,
    secrets: {},
    policy: null,
    policyText: null,
    // "object": the policy binding is a JSON object (a TOML table in
    // wrangler.toml) instead of a string.
    policyBinding: "string",
    state: "default",
    audit: [],
    stdout: [],
    stderr: [],
  };

  const setState = ({ policy, secrets, state, policyBinding }) => {
    if (policyBinding !== undefined) h.policyBinding = policyBinding;
    if (state !== undefined) {
      if (!STATE_MODES.includes(state)) {
        throw new Error(`unknown state mode ${JSON.stringify(state)} (one of ${STATE_MODES.join(", ")})`);
      }
      if (state === "earlier" && STATE_SCRIPT !== resolve(REPO_ROOT, "build", "state", "index.js")) {
        throw new Error('state "earlier" wraps build/state/index.js (fixtures/earlier-state.js): unset AIRLOCK_STATE_SCRIPT');
      }
      h.state = state;
    }
    if (policy !== undefined) {
      const p = typeof policy === "function" ? policy(echo.url) : policy;
      h.policy = p;
      h.policyText = typeof p === "string" ? p : JSON.stringify(p);
    }
    if (secrets !== undefined) {
      const merged = { ...h.secrets, ...secrets };
      for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
      h.secrets = merged;
    }
  };
  try {
    setState({
      policy: o.policy ?? testPolicy(echo.url),
      secrets: { ...generateSecrets(), ...(o.secrets || {}) },
      state: o.state ?? "default",
    });
  } catch (err) {
    await echo.close();
    throw err;
  }

  /** The AIRLOCK_STATE part of the airlock worker's options, for h.state. */
  const stateOptions = () => {
    if (h.state === "missing") return {};
    if (h.state === "broken") {
      return {
        durableObjects: {
          [STATE_BINDING]: { className: BROKEN_STATE_CLASS, scriptName: BROKEN_STATE_WORKER_NAME, useSQLite: true },
        },
      };
    }
    return {
      durableObjects: { [STATE_BINDING]: { className: STATE_CLASS, scriptName: STATE_WORKER_NAME, useSQLite: true } },
    };
  };

  const options = () => ({
    cf: false,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      collectLines(stdout, (line) => {
        h.stdout.push(line);
        if (process.env.AIRLOCK_TEST_VERBOSE) console.log(`[workerd] ${line}`);
        const t = line.trim();
        if (!t.startsWith("{")) return;
        try {
          const obj = JSON.parse(t);
          if (obj && obj.kind === "airlock.audit") h.audit.push(obj);
        } catch {}
      });
      collectLines(stderr, (line) => {
        h.stderr.push(line);
        if (process.env.AIRLOCK_TEST_VERBOSE) console.error(`[workerd:err] ${line}`);
      });
    },
    workers: [
      {
        name: "airlock",
        modules: true,
        scriptPath: WORKER_SCRIPT,
        modulesRoot: dirname(WORKER_SCRIPT),
        modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
        compatibilityDate: COMPATIBILITY_DATE,
        compatibilityFlags: COMPATIBILITY_FLAGS,
        bindings: { AIRLOCK_POLICY: h.policyBinding === "object" ? h.policy : h.policyText, ...h.secrets },
        serviceBindings: { PRIVATE_ORIGIN: PRIVATE_WORKER_NAME },
        // o.secretsStore: Secrets Store bindings of the airlock worker.
        ...(o.secretsStore ? { secretsStoreSecrets: o.secretsStore } : {}),
        ...stateOptions(),
        ...(o.outboundService ? { outboundService: o.outboundService } : {}),
        // o.directSocket: the worker also listens on a socket of its own
        // (workerd's HTTP server straight into the worker, h.directUrl).
        ...(o.directSocket ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
      },
      {
        name: PRIVATE_WORKER_NAME,
        modules: true,
        scriptPath: PRIVATE_WORKER_SCRIPT,
        modulesRoot: dirname(PRIVATE_WORKER_SCRIPT),
        compatibilityDate: COMPATIBILITY_DATE,
      },
      ...(h.state === "default" || h.state === "earlier"
        ? [
            {
              name: STATE_WORKER_NAME,
              modules: true,
              ...(h.state === "earlier"
                ? {
                    // The fixture imports the built script from build/state/.
                    scriptPath: EARLIER_STATE_SCRIPT,
                    modulesRoot: REPO_ROOT,
                    modulesRules: [
                      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
                      { type: "CompiledWasm", include: ["**/*.wasm"] },
                    ],
                  }
                : {
                    scriptPath: STATE_SCRIPT,
                    modulesRoot: dirname(STATE_SCRIPT),
                    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
                  }),
              compatibilityDate: COMPATIBILITY_DATE,
              // o.stateBindings / o.stateServiceBindings: the webhook
              // secret and destination binding of the approvals object.
              ...(o.stateBindings ? { bindings: o.stateBindings } : {}),
              ...(o.stateServiceBindings ? { serviceBindings: o.stateServiceBindings } : {}),
              // o.stateSecretsStore: Secrets Store bindings of the state script.
              ...(o.stateSecretsStore ? { secretsStoreSecrets: o.stateSecretsStore } : {}),
            },
          ]
        : []),
      ...(h.state === "broken"
        ? [
            {
              name: BROKEN_STATE_WORKER_NAME,
              modules: true,
              scriptPath: BROKEN_STATE_SCRIPT,
              modulesRoot: dirname(BROKEN_STATE_SCRIPT),
              compatibilityDate: COMPATIBILITY_DATE,
            },
          ]
        : []),
    ],
  });

  const failStart = async (err) => {
    // Close our own server first: an open server would keep node --test alive.
    await echo.close();
    if (h.mf) await withTimeout(h.mf.dispose(), 10_000, "mf.dispose").catch(() => {});
    const tail = h.stderr.slice(-20).join("\n");
    if (tail) err.message += `\nworkerd stderr (tail):\n${tail}`;
    throw err;
  };

  try {
    h.mf = new Miniflare(options());
    h.url = await withTimeout(h.mf.ready, 60_000, "Miniflare start");
    if (o.directSocket) h.directUrl = await h.mf.unsafeGetDirectURL("airlock");
  } catch (err) {
    await failStart(err);
  }

  /**
   * Restart workerd with a changed policy, secrets and/or state mode
   * (Miniflare setOptions): h.restart({ policy, secrets, state }).
   */
  h.restart = async (changes = {}) => {
    setState(changes);
    try {
      await withTimeout(h.mf.setOptions(options()), 60_000, "Miniflare setOptions");
      h.url = await withTimeout(h.mf.ready, 60_000, "Miniflare ready");
      if (o.directSocket) h.directUrl = await h.mf.unsafeGetDirectURL("airlock");
    } catch (err) {
      await failStart(err);
    }
  };

  let closed = false;
  h.close = async () => {
    if (closed) return;
    closed = true;
    await echo.close();
    if (h.mf) await withTimeout(h.mf.dispose(), 15_000, "mf.dispose").catch(() => {});
  };

  /** fetch() into workerd through Miniflare (the URL is normalized by fetch). */
  h.fetch = async (path, init = {}) => {
    const resp = await h.mf.dispatchFetch(new URL(path, h.url), { redirect: "manual", ...init });
    return readResponse(resp);
  };

  /**
   * A request with an exact raw request-target, sent with node:http (no
   * client-side normalization), to Miniflare's real port.
   */
  h.raw = ({ method = "GET", path, headers = {}, body } = {}) =>
    new Promise((resolvePromise, reject) => {
      const req = http.request(
        {
          host: h.url.hostname,
          port: h.url.port,
          method,
          path,
          headers: { connection: "close", ...headers },
          agent: false,
        },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const bodyBuffer = Buffer.concat(chunks);
            const text = bodyBuffer.toString("utf8");
            let json;
            try {
              json = JSON.parse(text);
            } catch {}
            const hdrs = { ...res.headers };
            const setCookie = res.headers["set-cookie"] || [];
            resolvePromise({
              status: res.statusCode,
              headers: hdrs,
              rawHeaders: res.rawHeaders,
              setCookie,
              bodyBuffer,
              text,
              json,
            });
          });
          res.on("error", reject);
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error(`raw request ${path} timed out`)));
      req.on("error", reject);
      if (body !== undefined) req.write(body);
      req.end();
    });

  /** POST /v1/sessions; returns the raw response (see readResponse). */
  h.mintRaw = (body, adminKey = h.secrets.AIRLOCK_ADMIN_KEY) =>
    h.fetch("/v1/sessions", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(adminKey === null ? {} : { authorization: `Bearer ${adminKey}` }),
      },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });

  /**
   * Mint a session; returns the whole 201 body:
   * { token, session_id, expires_at, proof_key } (proof_key: base64url, the
   * HMAC key that signs the session's x-airlock-proof headers).
   */
  h.mint = async (tools, { agent = "agent-test", user = "user-test", ttl_seconds = 600, egress } = {}) => {
    const r = await h.mintRaw({ agent, user, tools, ttl_seconds, ...(egress === undefined ? {} : { egress }) });
    assert.equal(r.status, 201, `mint failed: ${r.status} ${r.text}`);
    assert.equal(typeof r.json?.token, "string");
    if (r.json.proof_key !== undefined) {
      assert.match(r.json.proof_key, /^[A-Za-z0-9_-]{43}$/, "proof_key: base64url (no padding) of 32 bytes");
    }
    return r.json;
  };

  /** A brokered call: ANY /t/{tool}{path}. */
  h.call = (tool, path, { token, method = "GET", headers = {}, body } = {}) =>
    h.fetch(`/t/${tool}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body,
    });

  /** An egress call: ANY /e/{hostAndPath} (through fetch, so the URL is normalized). */
  h.egress = (hostAndPath, { token, method = "GET", headers = {}, body } = {}) =>
    h.fetch(`/e/${hostAndPath}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body,
    });

  /**
   * A raw request whose response body is read as a stream, for responses that
   * may be cut off. Resolves (never rejects once the status line arrived) with
   *   { status, headers, rawHeaders, setCookie, bodyBuffer, text, json,
   *     clean,      // true only if the body ended normally (see below)
   *     how,        // "end" | "end+close" | "error" | "close" | "client-abort" | "client-limit" | "timeout"
   *     error, ms, msAfterLastByte }
   * abortAfterBytes: the client hangs up once it has that many body bytes.
   * maxBytes: the client stops reading (how = "client-limit") past this many.
   *
   * The request asks for a kept-alive connection. workerd (2026-07) ends a
   * chunked response whose body stream errored with a regular terminating
   * chunk, so node reports it as complete; what differs is that workerd then
   * closes the connection at once, while after a body that ended normally
   * the connection stays open. So "clean" = complete AND the connection
   * survived the end of the body by `closeGraceMs`; otherwise how = "end+close".
   */
  h.rawStream = ({ method = "GET", path, headers = {}, body, abortAfterBytes, maxBytes = 64 * 1024 * 1024, timeoutMs = 30_000, closeGraceMs = 400 } = {}) =>
    new Promise((resolvePromise, reject) => {
      const t0 = Date.now();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      let settled = false;
      let res;
      let socket;
      let socketClosed = false;
      const chunks = [];
      let received = 0;
      let lastByteAt = t0;
      let error = null;
      const finish = (how) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const bodyBuffer = Buffer.concat(chunks);
        const text = bodyBuffer.toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {}
        const now = Date.now();
        resolvePromise({
          status: res.statusCode,
          headers: { ...res.headers },
          rawHeaders: res.rawHeaders,
          setCookie: res.headers["set-cookie"] || [],
          bodyBuffer,
          text,
          json,
          clean: how === "end" && res.complete === true,
          how,
          error: error ? String(error.message || error) : null,
          ms: now - t0,
          msAfterLastByte: now - lastByteAt,
        });
        if (!req.destroyed) req.destroy();
        agent.destroy();
      };
      const onEnd = () => {
        if (settled) return;
        if (!res.complete) return finish("close");
        if (socketClosed) return finish("end+close");
        const grace = setTimeout(() => finish("end"), closeGraceMs);
        socket?.once("close", () => {
          clearTimeout(grace);
          finish("end+close");
        });
      };
      const timer = setTimeout(() => {
        if (res) finish("timeout");
        else {
          settled = true;
          req.destroy();
          agent.destroy();
          reject(new Error(`rawStream ${path}: no response within ${timeoutMs} ms`));
        }
      }, timeoutMs);
      const req = http.request(
        {
          host: h.url.hostname,
          port: h.url.port,
          method,
          path,
          headers: { connection: "keep-alive", ...headers },
          agent,
        },
        (response) => {
          res = response;
          lastByteAt = Date.now();
          res.on("data", (c) => {
            if (settled) return;
            chunks.push(c);
            received += c.length;
            lastByteAt = Date.now();
            if (abortAfterBytes !== undefined && received >= abortAfterBytes) finish("client-abort");
            else if (received > maxBytes) finish("client-limit");
          });
          res.on("end", onEnd);
          res.on("error", (e) => {
            error = e;
            finish("error");
          });
          res.on("close", () => {
            if (!res.complete) finish("close");
          });
        },
      );
      req.on("socket", (sock) => {
        socket = sock;
        sock.once("close", () => {
          socketClosed = true;
        });
      });
      req.on("error", (e) => {
        if (settled) return;
        if (res) {
          error = e;
          finish("error");
        } else {
          settled = true;
          clearTimeout(timer);
          agent.destroy();
          reject(e);
        }
      });
      if (body !== undefined) req.write(body);
      req.end();
    });

  /** Private origin hits, read from the private worker directly. */
  h.privateHits = async () => {
    const worker = await h.mf.getWorker(PRIVATE_WORKER_NAME);
    const resp = await worker.fetch("http://private.internal/__hits");
    return resp.json();
  };

  /** Total requests both origins have received. */
  h.originHitCount = async () => h.echo.hits.length + (await h.privateHits()).count;

  /** Run fn and assert neither origin received a request meanwhile. */
  h.expectNoOriginHits = async (fn, label = "") => {
    const before = await h.originHitCount();
    const result = await fn();
    await sleep(30);
    const after = await h.originHitCount();
    assert.equal(after - before, 0, `origin received ${after - before} request(s) ${label}`);
    return result;
  };

  /**
   * Wait for the audit line(s) of one request id; then wait a little more so a
   * duplicate line would show up too.
   */
  h.auditFor = async (requestId, { timeoutMs = 5000, settleMs = 150 } = {}) => {
    assert.ok(requestId, "response has no x-airlock-request-id");
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (h.audit.some((a) => a.request_id === requestId)) break;
      await sleep(20);
    }
    await sleep(settleMs);
    return h.audit.filter((a) => a.request_id === requestId);
  };

  return h;
}

/** Assert an Airlock error response: status, code, error body shape, request id header. */
export function assertError(r, status, code, label = "") {
  const where = `${label} -> ${r.status} ${r.text}`;
  assert.equal(r.status, status, `status ${where}`);
  assert.ok(r.json && typeof r.json === "object", `JSON error body ${where}`);
  assert.deepEqual(Object.keys(r.json), ["error"], `error body shape ${where}`);
  assert.equal(r.json.error.code, code, `error code ${where}`);
  assert.equal(typeof r.json.error.message, "string", `error message ${where}`);
  assert.ok(r.headers["x-airlock-request-id"], `x-airlock-request-id header ${where}`);
}

/** Assert none of `needles` appears in the response's headers or body. */
export function assertNotLeaked(r, needles, label = "") {
  const headerText = JSON.stringify([r.headers, r.setCookie, r.rawHeaders ?? []]);
  for (const [name, value] of Object.entries(needles)) {
    assert.ok(value && value.length > 8, `needle ${name} too short to be meaningful`);
    assert.ok(!headerText.includes(value), `${name} leaked in response headers ${label}`);
    assert.ok(!r.text.includes(value), `${name} leaked in response body ${label}`);
  }
}

/**
 * A stand-in for the internet, for Miniflare's `outboundService`: every
 * outbound request of the worker lands here, is recorded, and is answered
 * locally. It never opens a connection anywhere. Answers:
 *   /redirect-to?u=<url>&s=<status>  3xx (default 302) with Location: <url>
 *   /status/NNN                      status NNN (503 and 429 with Retry-After: 7)
 *   /cookie...                       Set-Cookie headers
 *   anything else                    200
 * with a JSON echo { url, method, headers, body } (no body for HEAD/204/304).
 * Requests to `forward` (host:port strings, loopback only) are passed on to
 * that local server instead.
 */
export function fakeInternet({ forward = [] } = {}) {
  const requests = [];
  const handler = async (request) => {
    const url = new URL(request.url);
    const headers = {};
    for (const [k, v] of request.headers) headers[k] = v;
    const body = request.body ? Buffer.from(await request.arrayBuffer()).toString("utf8") : "";
    const rec = {
      url: request.url,
      method: request.method,
      protocol: url.protocol,
      host: url.host,
      hostname: url.hostname,
      port: url.port,
      pathname: url.pathname,
      search: url.search,
      headers,
      body,
    };
    requests.push(rec);
    const loopback = url.hostname === "127.0.0.1" || url.hostname === "[::1]";
    if (loopback && forward.includes(url.host)) {
      const fwdHeaders = new Headers(request.headers);
      fwdHeaders.delete("host");
      const resp = await fetch(request.url, {
        method: request.method,
        headers: fwdHeaders,
        body: ["GET", "HEAD"].includes(request.method) ? undefined : body,
        redirect: "manual",
      });
      return new Response(resp.body, resp);
    }
    let status = 200;
    const out = new Headers({ "content-type": "application/json" });
    const statusMatch = /^\/status\/(\d{3})(?:\/|$)/.exec(url.pathname);
    if (statusMatch) {
      status = Number(statusMatch[1]);
      if (status === 503 || status === 429) out.set("retry-after", "7");
    } else if (url.pathname.startsWith("/redirect-to")) {
      status = Number(url.searchParams.get("s") || 302);
      out.set("location", url.searchParams.get("u") ?? "");
    } else if (url.pathname.startsWith("/cookie")) {
      out.append("set-cookie", "egress_session=egress-cookie-value; Path=/; Secure; HttpOnly");
      out.append("set-cookie", "tracking=xyz; Path=/");
    }
    const noBody = request.method === "HEAD" || status === 204 || status === 304;
    const echo = JSON.stringify({ url: request.url, method: request.method, headers, body });
    return new Response(noBody ? null : echo, { status, headers: out });
  };
  return {
    handler,
    requests,
    count: () => requests.length,
    last: () => requests[requests.length - 1],
    since: (n) => requests.slice(n),
  };
}

/** Every 16-character window of `secret`; none may appear in a response. */
export function secretWindows(secret, width = 16) {
  const out = [];
  for (let i = 0; i + width <= secret.length; i++) out.push(secret.slice(i, i + width));
  return out;
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}
