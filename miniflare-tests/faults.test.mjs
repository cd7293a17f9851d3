// Upstream faults: refused connections, slow or malformed origins, 5xx
// answers, and bodies that break off, never end or stall. The sandbox must get
// the contract's error (or a stream that visibly ends in an error), never the
// credential or the origin's address, and exactly one audit line per request
// with the stream outcome.
//
// The echo origin's /fault/* paths (demo/echo-origin.mjs) play the bad origin;
// every one of them writes the Authorization value it received into whatever
// it sends, so a leak on an error path shows up.
//
// "Ends in an error" as the sandbox can see it: workerd writes the terminating
// chunk even after a response body stream errored, but then drops the
// kept-alive connection at once; after a body that ended normally it keeps the
// connection. h.rawStream() reports the former as how = "end+close" (see
// helpers.mjs), so a worker that merely closes its stream early is told apart
// from one that errors it.

import assert from "node:assert/strict";
import http from "node:http";
import { randomBody } from "../demo/echo-origin.mjs";
import { after, before, describe, test } from "node:test";
import { assertError, secretWindows, sleep, startAirlock, testPolicy } from "./helpers.mjs";

const CAP = 65536; // limits.max_response_body_bytes
const IDLE_MS = 1000; // limits.upstream_idle_timeout_ms
const HEADERS_MS = 1000; // limits.upstream_timeout_ms (the minimum)

let h;
let s; // echo:read, down:read
let downHost;

async function closedPortHost() {
  const srv = http.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return `127.0.0.1:${port}`;
}

before(async () => {
  downHost = await closedPortHost();
  h = await startAirlock({
    policy: (echoUrl) =>
      testPolicy(echoUrl, {
        limits: {
          upstream_timeout_ms: HEADERS_MS,
          upstream_idle_timeout_ms: IDLE_MS,
          max_response_body_bytes: CAP,
        },
        extraTools: {
          down: {
            origin: `http://${downHost}`,
            allow_http: true,
            credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
        },
      }),
  });
  s = await h.mint({ echo: "read", down: "read" }, { agent: "agent-faults", user: "user-faults" });
});

after(async () => {
  await h?.close();
});

const auth = () => ({ authorization: `Bearer ${s.token}` });
const stream = (path, opts = {}) =>
  h.rawStream({ path: `/t/echo${path}`, headers: auth(), maxBytes: 4 * CAP, timeoutMs: 20_000, ...opts });

/** Nothing of the credential (no 16-char window of it), the token or the origin's address. */
function assertNothingLeaked(r, label) {
  const text = JSON.stringify(r.rawHeaders ?? r.headers) + (r.bodyBuffer ? r.bodyBuffer.toString("latin1") : r.text);
  for (const w of secretWindows(h.secrets.ECHO_API_TOKEN)) {
    assert.ok(!text.includes(w), `${label}: a fragment of the credential reached the sandbox (${w})`);
  }
  assert.ok(!text.includes(s.token.split(".")[3]), `${label}: session token`);
  if (r.status >= 400) {
    const echoHost = new URL(h.echo.url).host;
    for (const addr of ["127.0.0.1", echoHost, downHost, `:${new URL(h.echo.url).port}`]) {
      assert.ok(!text.includes(addr), `${label}: the origin's address (${addr}) in the error`);
    }
  }
}

/** The response started fine and its body then ended in an error, within the cap. */
function assertCutOff(r, label, max = CAP) {
  assert.equal(r.status, 200, `${label}: status ${r.status} ${r.text.slice(0, 200)}`);
  assert.ok(r.headers["x-airlock-request-id"], `${label}: x-airlock-request-id`);
  assert.ok(
    !r.clean && ["error", "close", "end+close"].includes(r.how),
    `${label}: the stream ended ${r.clean ? "cleanly" : `by ${r.how}`} after ${r.bodyBuffer.length} bytes (${r.error ?? ""})`,
  );
  assert.ok(r.bodyBuffer.length <= max, `${label}: ${r.bodyBuffer.length} bytes received (cap ${max})`);
}

/** Exactly one audit line for this response; returns it. */
async function oneAudit(r, label) {
  const lines = await h.auditFor(r.headers["x-airlock-request-id"], { timeoutMs: 8000, settleMs: 300 });
  assert.equal(lines.length, 1, `${label}: ${lines.length} audit lines`);
  return lines[0];
}

async function assertStreamAudit(r, label, streamValue) {
  const a = await oneAudit(r, label);
  assert.equal(a.stream, streamValue, `${label}: audit stream ${JSON.stringify(a.stream)}`);
  assert.equal(typeof a.bytes_out, "number", `${label}: audit bytes_out ${JSON.stringify(a.bytes_out)}`);
  assert.ok(a.bytes_out >= 0 && a.bytes_out <= CAP, `${label}: bytes_out ${a.bytes_out}`);
  if (streamValue === "complete") {
    assert.equal(a.bytes_out, r.bodyBuffer.length, `${label}: bytes_out vs bytes received`);
  } else {
    assert.ok(a.bytes_out >= r.bodyBuffer.length, `${label}: bytes_out ${a.bytes_out} < ${r.bodyBuffer.length} received`);
  }
  assert.equal(a.upstream_status, 200, `${label}: upstream_status`);
  assert.equal(a.tool, "echo");
  return a;
}

async function assertErrorAudit(r, label, code, upstreamStatus = null) {
  const a = await oneAudit(r, label);
  assert.equal(a.reason, code, `${label}: audit reason`);
  assert.equal(a.decision, "error", `${label}: audit decision`);
  assert.equal(a.upstream_status, upstreamStatus, `${label}: audit upstream_status`);
  return a;
}

describe("streams that end well", () => {
  test("a streamed response: complete, audited with stream complete and bytes_out", async () => {
    const r = await stream("/stream/abc?x=1");
    assert.equal(r.status, 200);
    assert.ok(r.clean, `stream ended by ${r.how} ${r.error ?? ""}`);
    assert.equal(r.json?.path, "/stream/abc");
    assertNothingLeaked(r, "stream");
    await assertStreamAudit(r, "stream", "complete");
  });

  for (const cl of [false, true]) {
    test(`a body of exactly max_response_body_bytes passes whole (${cl ? "Content-Length" : "chunked"})`, async () => {
      const r = await stream(`/random/${CAP}?seed=exact${cl ? "&cl=1" : ""}`);
      assert.equal(r.status, 200);
      assert.ok(r.clean, `stream ended by ${r.how} ${r.error ?? ""} after ${r.bodyBuffer.length} bytes`);
      assert.ok(r.bodyBuffer.equals(randomBody("exact", CAP)), "body differs from what the origin sent");
      await assertStreamAudit(r, "exact cap", "complete");
    });
  }

  test("a slow body within the idle timeout completes (idle, not total, timeout)", async () => {
    // 6 chunks 400 ms apart: 2.4 s in all, longer than both timeouts.
    const r = await stream("/fault/drip?interval=400&count=6");
    assert.equal(r.status, 200);
    assert.ok(r.clean, `ended by ${r.how} ${r.error ?? ""}`);
    assert.equal(r.text, Array.from({ length: 6 }, (_, i) => `drip ${String(i).padStart(4, "0")}\n`).join(""));
    assert.ok(r.ms >= 2000, `${r.ms} ms`);
    await assertStreamAudit(r, "drip", "complete");
  });
});

describe("bodies above max_response_body_bytes are cut off", () => {
  test("one byte over the cap (chunked)", async () => {
    const r = await stream(`/random/${CAP + 1}?seed=over`);
    assertCutOff(r, "cap+1");
    assert.ok(r.bodyBuffer.equals(randomBody("over", CAP + 1).subarray(0, r.bodyBuffer.length)), "what arrived is not the origin's prefix");
    await assertStreamAudit(r, "cap+1", "too_large");
  });

  test("a never-ending body", async (t) => {
    const before = h.echo.hits.length;
    const r = await stream("/fault/never-ends");
    assertCutOff(r, "never-ends");
    assertNothingLeaked(r, "never-ends");
    await assertStreamAudit(r, "never-ends", "too_large");
    const hit = h.echo.hits[before];
    const deadline = Date.now() + 5000;
    while (!hit.closedAt && Date.now() < deadline) await sleep(50);
    t.diagnostic(
      `origin wrote ${hit.faultBytes} bytes; its connection was ${hit.closedAt ? "closed" : "STILL OPEN 5 s after the cut-off"}`,
    );
  });

  test("a declared Content-Length above the cap", async (t) => {
    const r = await stream(`/random/${4 * CAP}?seed=declared&cl=1`);
    if (r.status === 200) {
      assertCutOff(r, "declared");
      await assertStreamAudit(r, "declared", "too_large");
    } else {
      // Refusing before the status line is stricter than the contract asks; report it.
      t.diagnostic(`refused up front: ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(r.status >= 500 && r.json?.error?.code, `${r.status} ${r.text.slice(0, 200)}`);
    }
  });
});

describe("bodies that break off", () => {
  const cases = [
    ["/fault/reset-mid-stream", "reset mid-stream"],
    ["/fault/short-body", "FIN before Content-Length"],
    ["/fault/bad-chunk", "invalid chunk size"],
  ];
  for (const [path, label] of cases) {
    test(`${label}: the stream ends in an error, nothing of the credential`, async () => {
      const r = await stream(path);
      assertNothingLeaked(r, label);
      if (r.status === 502) {
        // A small body of declared length is read whole before anything is
        // sent, so its breaking off is caught in time for a clean 502.
        assert.equal(r.json?.error?.code, "upstream_unavailable", `${label}: ${r.text}`);
        await assertErrorAudit(r, label, "upstream_unavailable", 200);
        return;
      }
      assertCutOff(r, label);
      await assertStreamAudit(r, label, "upstream_error");
    });
  }

  test("a stall past upstream_idle_timeout_ms ends the stream in an error", async () => {
    const r = await stream("/fault/stall");
    assertCutOff(r, "stall", 200);
    assert.ok(
      r.msAfterLastByte >= IDLE_MS - 300 && r.ms <= IDLE_MS + 5000,
      `ended ${r.msAfterLastByte} ms after the last byte (${r.ms} ms in all; idle timeout ${IDLE_MS})`,
    );
    assertNothingLeaked(r, "stall");
    await assertStreamAudit(r, "stall", "idle_timeout");
  });

  test("the sandbox hanging up mid-stream is audited as cancelled", async (t) => {
    const before = h.echo.hits.length;
    const r = await stream("/fault/drip?interval=100&count=150", { abortAfterBytes: 10 });
    assert.equal(r.status, 200);
    assert.equal(r.how, "client-abort");
    const a = await oneAudit(r, "cancelled");
    assert.equal(a.stream, "cancelled", `audit stream ${JSON.stringify(a.stream)}`);
    assert.equal(typeof a.bytes_out, "number");
    const hit = h.echo.hits[before];
    const deadline = Date.now() + 5000;
    while (!hit.closedAt && Date.now() < deadline) await sleep(50);
    t.diagnostic(`origin connection ${hit.closedAt ? "closed" : "STILL OPEN"} after the sandbox hung up`);
  });
});

describe("no usable response", () => {
  test("connection refused -> 502 upstream_unavailable", async () => {
    const r = await h.raw({ path: "/t/down/x?y=1", headers: auth() });
    assertError(r, 502, "upstream_unavailable");
    assertNothingLeaked(r, "refused");
    await assertErrorAudit(r, "refused", "upstream_unavailable");
  });

  for (const path of ["/delay/4000/slow", "/fault/no-response"]) {
    test(`no response headers within upstream_timeout_ms (${path}) -> 504 upstream_timeout`, async () => {
      const t0 = Date.now();
      const r = await h.raw({ path: `/t/echo${path}`, headers: auth() });
      const ms = Date.now() - t0;
      assertError(r, 504, "upstream_timeout", path);
      assert.ok(ms >= HEADERS_MS - 100 && ms < HEADERS_MS + 2500, `answered after ${ms} ms (limit ${HEADERS_MS})`);
      assertNothingLeaked(r, path);
      await assertErrorAudit(r, path, "upstream_timeout");
    });
  }

  const malformed = [
    ["/fault/bad-header", "a header line without a colon"],
    ["/fault/bad-status", "a status code that is not a number (2x0)"],
    ["/fault/bad-status?code=600", "status 600"],
    ["/fault/bad-status?code=099", "status 099"],
    ["/fault/bad-status?code=1000", "status 1000"],
    ["/fault/garbage", "not HTTP at all"],
    ["/fault/close-before-headers", "connection closed before any byte"],
  ];
  for (const [path, label] of malformed) {
    test(`${label} -> 502 upstream_unavailable`, async () => {
      const r = await h.raw({ path: `/t/echo${path}`, headers: auth() });
      assertError(r, 502, "upstream_unavailable", label);
      assertNothingLeaked(r, label);
      await assertErrorAudit(r, label, "upstream_unavailable");
    });
  }
});

describe("5xx from the origin -> 502 upstream_error", () => {
  for (const status of [500, 502, 503, 504, 599]) {
    test(`origin ${status}`, async () => {
      const marker = `origin-body-marker-${status}`;
      const r = await h.raw({ path: `/t/echo/status/${status}?m=${marker}`, headers: auth() });
      assertError(r, 502, "upstream_error", `origin ${status}`);
      assert.equal(r.headers["x-airlock-upstream-status"], String(status));
      if (status === 503) assert.equal(r.headers["retry-after"], "7", "the origin's Retry-After is kept");
      assert.ok(!r.text.includes(marker), "the origin's 5xx body reached the sandbox");
      assert.ok(!r.text.includes("/status/"), "the origin's 5xx body reached the sandbox");
      assertNothingLeaked(r, `origin ${status}`);
      await assertErrorAudit(r, `origin ${status}`, "upstream_error", status);
    });
  }

  test("control: a 4xx passes through with its body and Retry-After", async () => {
    const r = await h.raw({ path: "/t/echo/status/429", headers: auth() });
    assert.equal(r.status, 429);
    assert.equal(r.headers["retry-after"], "7");
    assert.equal(r.json?.path, "/status/429");
    assert.equal(r.headers["x-airlock-upstream-status"], undefined);
  });
});
