// The operator's loop, end to end against the built worker: the sessions
// index (GET /v1/sessions, consistent right after mint and across pages),
// agent-wide revoke (DELETE /v1/sessions?agent=), each session's audit trail
// (GET /v1/sessions/{id}/audit) and its hash chain, and the three
// control-plane clients: the `airlock` CLI (the built native binary), the
// Python client (stdlib only, run as a process) and the TypeScript client
// (imported; Node strips the types).

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Airlock, AirlockError, ChainBroken, verifyChain } from "../clients/typescript/airlock-control.ts";
import { REPO_ROOT, assertError, sleep, startAirlock, testPolicy } from "./helpers.mjs";

// The CLI: AIRLOCK_CLI, or cargo's debug build (built here when missing).
const CLI = process.env.AIRLOCK_CLI || join(process.env.CARGO_TARGET_DIR || join(REPO_ROOT, "target"), "debug", "airlock");
const PY_CLIENT = join(REPO_ROOT, "clients", "python", "airlock_control.py");
const PYTHON = process.env.PYTHON || "python3";

let h;
let tmp;
const tag = () => randomBytes(4).toString("hex");

function operatorPolicy(echoUrl) {
  return testPolicy(echoUrl, {
    extraTools: {
      gated: {
        origin: echoUrl,
        allow_http: true,
        credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
        rules: [
          { methods: ["GET"], path: "/**", level: "read" },
          { methods: ["POST"], path: "/**", level: "write", approval: true },
        ],
      },
    },
  });
}

before(async () => {
  if (!process.env.AIRLOCK_CLI && !existsSync(CLI)) {
    execFileSync("cargo", ["build", "--locked", "--bin", "airlock"], { cwd: REPO_ROOT, stdio: "inherit", timeout: 900_000 });
  }
  tmp = mkdtempSync(join(tmpdir(), "airlock-operator-"));
  h = await startAirlock({ policy: operatorPolicy });
});

after(async () => {
  await h?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const admin = (path, init = {}) =>
  h.fetch(path, { ...init, headers: { authorization: `Bearer ${h.secrets.AIRLOCK_ADMIN_KEY}`, ...(init.headers || {}) } });

/** Every page of a listing; asserts no row comes twice. */
async function listAll(query, limit) {
  const rows = [];
  let cursor = null;
  let pages = 0;
  do {
    const q = new URLSearchParams({ ...query, limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    const r = await admin(`/v1/sessions?${q}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.json).sort(), ["next_cursor", "sessions"]);
    assert.ok(r.json.sessions.length <= limit);
    rows.push(...r.json.sessions);
    cursor = r.json.next_cursor;
    pages++;
  } while (cursor);
  const ids = rows.map((s) => s.session_id);
  assert.equal(new Set(ids).size, ids.length, "a row listed twice");
  return { rows, ids, pages };
}

/** The session's trail once it holds at least `n` records (appended after each answer). */
async function trailOf(sessionId, n) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await admin(`/v1/sessions/${sessionId}/audit`);
    assert.equal(r.status, 200, r.text);
    if (r.json.records.length >= n || Date.now() > deadline) return r.json;
    await sleep(50);
  }
}

function run(cmd, args, env = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

const cli = (args, env = { AIRLOCK_ADMIN_KEY: h.secrets.AIRLOCK_ADMIN_KEY }) => run(CLI, ["--url", h.url.origin, ...args], env);
const py = (args) => run(PYTHON, [PY_CLIENT, "--url", h.url.origin, ...args], { AIRLOCK_ADMIN_KEY: h.secrets.AIRLOCK_ADMIN_KEY });

describe("sessions index", () => {
  test("a session minted is listed at once, and pages cover every session exactly once", async () => {
    const agent = `lister-${tag()}`;
    const minted = [];
    for (let i = 0; i < 7; i++) {
      const s = await h.mint({ echo: "read" }, { agent, user: i % 2 ? "odd@example.com" : "even@example.com" });
      minted.push(s.session_id);
      // Listed right after the 201, before any request used it.
      const { ids } = await listAll({ agent }, 3);
      assert.deepEqual(new Set(ids), new Set(minted), `after mint ${i}`);
    }
    const { rows, ids, pages } = await listAll({ agent }, 3);
    assert.equal(pages, 3);
    assert.deepEqual(ids, [...ids].sort((a, b) => {
      const [x, y] = [rows.find((r) => r.session_id === a), rows.find((r) => r.session_id === b)];
      return x.created_at - y.created_at || (a < b ? -1 : 1);
    }), "ordered by (created_at, session_id)");
    const row = rows[0];
    assert.deepEqual(Object.keys(row).sort(), ["agent", "created_at", "egress", "expires_at", "revoked_at", "session_id", "status", "tools", "user"]);
    assert.equal(row.status, "active");
    assert.deepEqual(row.tools, { echo: "read" });
    assert.ok(!JSON.stringify(rows).includes("al1."), "no token in a listing");
    assert.equal((await listAll({ agent, user: "odd@example.com" }, 50)).ids.length, 3);
    assert.equal((await listAll({ agent, status: "revoked" }, 50)).ids.length, 0);
    // Revoking one moves it to revoked in the listing.
    assert.equal((await admin(`/v1/sessions/${minted[2]}`, { method: "DELETE" })).status, 200);
    assert.deepEqual((await listAll({ agent, status: "revoked" }, 50)).ids, [minted[2]]);
    assert.equal((await listAll({ agent, status: "active" }, 2)).ids.length, 6);
    // The default page size holds them all.
    const r = await admin(`/v1/sessions?agent=${agent}`);
    assert.equal(r.json.sessions.length, 7);
    assert.equal(r.json.next_cursor, null);
  });

  test("expired is computed from expires_at", async () => {
    const agent = `brief-${tag()}`;
    const s = await h.mint({ echo: "read" }, { agent, ttl_seconds: 1 });
    await sleep(2100);
    const { rows } = await listAll({ agent, status: "expired" }, 10);
    assert.deepEqual(rows.map((r) => [r.session_id, r.status]), [[s.session_id, "expired"]]);
    assert.equal((await listAll({ agent, status: "active" }, 10)).ids.length, 0);
  });

  test("refusals: admin key, parameters, methods", async () => {
    assertError(await h.fetch("/v1/sessions"), 401, "invalid_admin_key", "no key");
    assertError(await h.fetch("/v1/sessions", { headers: { authorization: "Bearer nope-nope-nope-nope" } }), 401, "invalid_admin_key", "wrong key");
    assertError(await h.fetch("/v1/sessions?agent=x", { method: "DELETE" }), 401, "invalid_admin_key", "revoke without key");
    for (const q of ["status=gone", "limit=0", "limit=201", "cursor=bogus", "agent=a&agent=b", "owner=x"]) {
      assertError(await admin(`/v1/sessions?${q}`), 400, "invalid_request", q);
    }
    for (const q of ["", "?user=u", "?agent=a&status=active"]) {
      assertError(await admin(`/v1/sessions${q}`, { method: "DELETE" }), 400, "invalid_request", `DELETE ${q}`);
    }
    assertError(await admin("/v1/sessions", { method: "PUT" }), 405, "method_not_allowed", "PUT");
    const s = await h.mint({ echo: "read" });
    assertError(await admin(`/v1/sessions/${s.session_id}/audit`, { method: "DELETE" }), 405, "method_not_allowed", "DELETE audit");
    assertError(await h.fetch(`/v1/sessions/${s.session_id}/audit`), 401, "invalid_admin_key", "audit without key");
    assertError(await admin(`/v1/sessions/${"0".repeat(32)}/audit`), 404, "session_not_found", "unknown session");
    // Every refusal has its audit record.
    const r = await admin("/v1/sessions?status=gone");
    const [line] = await h.auditFor(r.headers["x-airlock-request-id"]);
    assert.equal(line.route, "sessions");
    assert.equal(line.decision, "deny");
    assert.equal(line.reason, "invalid_request");
  });
});

describe("agent-wide revoke", () => {
  test("revokes every session of the agent at once, and only those", async () => {
    const [a, b] = [`crew-a-${tag()}`, `crew-b-${tag()}`];
    const as = await Promise.all([0, 1, 2].map(() => h.mint({ echo: "read" }, { agent: a })));
    const bs = await Promise.all([0, 1].map(() => h.mint({ echo: "read" }, { agent: b })));
    for (const s of [...as, ...bs]) assert.equal((await h.call("echo", "/x", { token: s.token })).status, 200);
    // One already revoked on its own is not counted again.
    assert.equal((await admin(`/v1/sessions/${as[0].session_id}`, { method: "DELETE" })).status, 200);
    const r = await admin(`/v1/sessions?agent=${a}`, { method: "DELETE" });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { revoked: 2, more: false });
    const [line] = await h.auditFor(r.headers["x-airlock-request-id"]);
    assert.equal(line.route, "sessions");
    assert.equal(line.agent, a);
    assert.equal(line.decision, "allow");
    assert.equal(line.detail, "revoked 2 of 2 sessions");
    const before = h.echo.hits.length;
    for (const s of as) assertError(await h.call("echo", "/x", { token: s.token }), 401, "session_revoked", "agent a");
    assert.equal(h.echo.hits.length, before, "no revoked request reached the origin");
    for (const s of bs) assert.equal((await h.call("echo", "/x", { token: s.token })).status, 200, "agent b unaffected");
    assert.equal((await listAll({ agent: a, status: "revoked" }, 50)).ids.length, 3);
    assert.equal((await listAll({ agent: b, status: "active" }, 50)).ids.length, 2);
    for (const s of as) assert.equal((await admin(`/v1/sessions/${s.session_id}`)).json.status, "revoked");
    // Again: nothing left to revoke.
    assert.deepEqual((await admin(`/v1/sessions?agent=${a}`, { method: "DELETE" })).json, { revoked: 0, more: false });
  });
});

describe("audit trail", () => {
  test("keeps each request's record as logged, chained, with a verifiable head", async () => {
    const s = await h.mint({ echo: "read" }, { agent: `audited-${tag()}` });
    const requests = [
      ["GET", "echo", "/items/1", 200],
      ["DELETE", "echo", "/items/1", 403], // level admin needed
      ["GET", "echo", "/items/2?q=secret-query-value", 200],
      ["GET", "private", "/x", 403], // tool not in scope
      ["GET", "echo", "/items/3", 200],
    ];
    const ids = [];
    for (const [method, tool, path, status] of requests) {
      const r = await h.call(tool, path, { token: s.token, method });
      assert.equal(r.status, status, `${method} ${tool}${path}: ${r.text}`);
      ids.push(r.headers["x-airlock-request-id"]);
    }
    // A control-plane read of the session is not one of its requests.
    await admin(`/v1/sessions/${s.session_id}`);
    const trail = await trailOf(s.session_id, requests.length);
    assert.deepEqual(Object.keys(trail).sort(), ["head", "records"]);
    assert.equal(trail.records.length, requests.length);
    const parsed = trail.records.map((r) => JSON.parse(r));
    assert.deepEqual(parsed.map((p) => p.request_id), ids);
    assert.deepEqual(parsed.map((p) => p.decision), ["allow", "deny", "allow", "deny", "allow"]);
    assert.deepEqual(parsed.map((p) => p.reason), ["ok", "level_insufficient", "ok", "tool_not_allowed", "ok"]);
    assert.deepEqual(parsed.map((p) => p.seq), [0, 1, 2, 3, 4]);
    assert.equal(parsed[0].prev, "0".repeat(64));
    assert.ok(!trail.records.join("\n").includes("secret-query-value"), "no query value in the trail");
    // Each stored record is the logged line, with seq and prev appended.
    for (let i = 0; i < ids.length; i++) {
      const logged = h.stdout.map((l) => l.trim()).find((l) => l.includes(`"request_id":"${ids[i]}"`) && l.includes('"kind":"airlock.audit"'));
      assert.ok(logged, `logged line of ${ids[i]}`);
      assert.equal(trail.records[i], `${logged.slice(0, -1)},"seq":${i},"prev":"${parsed[i].prev}"}`);
    }
    assert.equal(await verifyChain(trail.records), trail.head);
    writeFileSync(join(tmp, "trail.json"), JSON.stringify(trail));
    const ok = await cli(["audit", "verify", join(tmp, "trail.json")]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, new RegExp(`audit chain verified: 5 record\\(s\\), head ${trail.head}`));
  });

  test("a streamed answer's record is appended once its stream ended", async () => {
    const s = await h.mint({ echo: "read" }, { agent: `streamer-${tag()}` });
    const a = await h.call("echo", "/stream/x", { token: s.token });
    const b = await h.call("echo", "/random/300000", { token: s.token });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const trail = await trailOf(s.session_id, 2);
    const parsed = trail.records.map((r) => JSON.parse(r));
    assert.deepEqual(parsed.map((p) => p.request_id), [a.headers["x-airlock-request-id"], b.headers["x-airlock-request-id"]]);
    for (const p of parsed) assert.equal(p.decision, "allow");
    assert.equal(parsed[1].stream, "complete");
    assert.equal(parsed[1].bytes_out, 300000);
    assert.equal(await verifyChain(trail.records), trail.head);
  });

  test("a burst of one session's requests: every record in its trail exactly once, one chain", async () => {
    const s = await h.mint({ echo: "read" }, { agent: `burst-${tag()}` });
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => h.call("echo", `/burst/${i}`, { token: s.token })));
    for (const r of rs) assert.equal(r.status, 200, r.text);
    const trail = await trailOf(s.session_id, rs.length);
    assert.equal(trail.records.length, rs.length);
    const parsed = trail.records.map((r) => JSON.parse(r));
    // Batched appends keep each record once, in one unbroken chain.
    assert.deepEqual(parsed.map((p) => p.request_id).sort(), rs.map((r) => r.headers["x-airlock-request-id"]).sort());
    assert.deepEqual(parsed.map((p) => p.seq), rs.map((_, i) => i));
    assert.equal(await verifyChain(trail.records), trail.head);
  });

  test("a removed, altered or reordered record is detected by the verifiers", async () => {
    const s = await h.mint({ echo: "read" }, { agent: `tampered-${tag()}` });
    for (let i = 0; i < 4; i++) await h.call("echo", `/items/${i}`, { token: s.token });
    const trail = await trailOf(s.session_id, 4);
    const cases = {
      removed: { records: trail.records.filter((_, i) => i !== 1), head: trail.head, at: 1 },
      altered: { records: trail.records.map((r, i) => (i === 1 ? r.replace('"decision":"allow"', '"decision":"deny"') : r)), head: trail.head, at: 2 },
      reordered: { records: [trail.records[0], trail.records[2], trail.records[1], trail.records[3]], head: trail.head, at: 1 },
    };
    for (const [name, c] of Object.entries(cases)) {
      const file = join(tmp, `${name}.json`);
      writeFileSync(file, JSON.stringify({ records: c.records, head: c.head }));
      const r = await cli(["audit", "verify", file]);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`audit chain broken at record ${c.at} of`), name);
      await assert.rejects(verifyChain(c.records), (e) => e instanceof ChainBroken && e.index === c.at, name);
    }
    // The last record altered: the chain holds, the head does not.
    const last = [...trail.records];
    last[3] = last[3].replace('"decision":"allow"', '"decision":"deny"');
    writeFileSync(join(tmp, "last.json"), JSON.stringify({ records: last, head: trail.head }));
    const r = await cli(["audit", "verify", join(tmp, "last.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /head differs/);
  });
});

describe("the airlock CLI", () => {
  test("mint --env, list, show, audit, revoke", async () => {
    const agent = `cli-${tag()}`;
    const m = await cli(["sessions", "mint", "--agent", agent, "--user", "ana@example.com", "--tool", "echo=read", "--tool", "private=read", "--ttl", "600", "--env"]);
    assert.equal(m.code, 0, m.stderr);
    const vars = Object.fromEntries([...m.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((x) => [x[1], x[2]]));
    assert.deepEqual(Object.keys(vars).sort(), ["AIRLOCK_PROOF_KEY", "AIRLOCK_SESSION_ID", "AIRLOCK_TOKEN", "AIRLOCK_TOOL_ECHO_URL", "AIRLOCK_TOOL_PRIVATE_URL", "AIRLOCK_URL"]);
    assert.equal(vars.AIRLOCK_TOOL_ECHO_URL, `${h.url.origin}/t/echo`);
    assert.ok(!m.stdout.includes(h.secrets.AIRLOCK_ADMIN_KEY), "admin key never printed");
    // The variables work as printed.
    const used = await fetch(`${vars.AIRLOCK_TOOL_ECHO_URL}/items/1`, { headers: { authorization: `Bearer ${vars.AIRLOCK_TOKEN}` } });
    assert.equal(used.status, 200);
    const id = vars.AIRLOCK_SESSION_ID;
    const list = await cli(["sessions", "list", "--agent", agent, "--json"]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).sessions.map((s) => s.session_id), [id]);
    const table = await cli(["sessions", "list", "--agent", agent, "--status", "active"]);
    assert.match(table.stdout, new RegExp(`${id}\\s+active\\s+${agent}\\s+ana@example.com`));
    const show = await cli(["sessions", "show", id]);
    assert.equal(JSON.parse(show.stdout).usage.requests, 1);
    await trailOf(id, 1);
    const audit = await cli(["audit", id]);
    assert.equal(audit.code, 0, audit.stderr);
    assert.match(audit.stderr, /audit chain verified: 1 record/);
    assert.equal(JSON.parse(audit.stdout.trim()).request_id, used.headers.get("x-airlock-request-id"));
    const revoke = await cli(["sessions", "revoke", id]);
    assert.equal(JSON.parse(revoke.stdout).status, "revoked");
    const second = await cli(["sessions", "mint", "--agent", agent, "--user", "u", "--tool", "echo=read"]);
    assert.equal(second.code, 0, second.stderr);
    const all = await cli(["sessions", "revoke", "--agent", agent]);
    assert.deepEqual(JSON.parse(all.stdout), { agent, revoked: 1 });
    const refused = await fetch(`${vars.AIRLOCK_TOOL_ECHO_URL}/items/1`, { headers: { authorization: `Bearer ${JSON.parse(second.stdout).token}` } });
    assert.equal(refused.status, 401);
  });

  test("approvals list, show, approve, deny", async () => {
    const s = await h.mint({ gated: "write" }, { agent: `approver-${tag()}` });
    const held = [];
    for (const n of [1, 2]) {
      const r = await h.call("gated", `/items/${n}`, { token: s.token, method: "POST", body: "{}", headers: { "content-type": "application/json" } });
      assert.equal(r.status, 403, r.text);
      held.push(r.headers["x-airlock-approval-id"]);
    }
    const list = await cli(["approvals", "list"]);
    assert.equal(list.code, 0, list.stderr);
    const pending = JSON.parse(list.stdout).approvals.map((a) => a.approval_id);
    for (const id of held) assert.ok(pending.includes(id), id);
    assert.equal(JSON.parse((await cli(["approvals", "show", held[0]])).stdout).status, "pending");
    const yes = JSON.parse((await cli(["approvals", "approve", held[0], "--as", "alice@example.com"])).stdout);
    assert.deepEqual([yes.status, yes.decided_by], ["approved", "alice@example.com"]);
    const no = JSON.parse((await cli(["approvals", "deny", held[1], "--as", "bob@example.com"])).stdout);
    assert.equal(no.status, "denied");
    const again = await cli(["approvals", "deny", held[0]]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /409 approval_decided/);
  });

  test("the admin key comes from the environment only", async () => {
    const flag = await cli(["sessions", "list", "--admin-key", h.secrets.AIRLOCK_ADMIN_KEY]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /AIRLOCK_ADMIN_KEY only/);
    assert.ok(!flag.stderr.includes(h.secrets.AIRLOCK_ADMIN_KEY));
    const missing = await cli(["sessions", "list"], {});
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /set AIRLOCK_ADMIN_KEY/);
    const wrong = await cli(["sessions", "list"], { AIRLOCK_ADMIN_KEY: "wrong-wrong-wrong-wrong" });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /401 invalid_admin_key/);
  });
});

describe("control-plane clients", () => {
  test("Python (stdlib): mint, list, audit, revoke-agent, approve", async () => {
    const agent = `py-${tag()}`;
    const m = await py(["mint", agent, "ana", "echo=read", "gated=write"]);
    assert.equal(m.code, 0, m.stderr + m.stdout);
    const minted = JSON.parse(m.stdout);
    assert.equal((await h.call("echo", "/items/1", { token: minted.token })).status, 200);
    const held = await h.call("gated", "/items/9", { token: minted.token, method: "POST", body: "{}" });
    const list = JSON.parse((await py(["list", "--agent", agent, "--limit", "1"])).stdout);
    assert.deepEqual(list.sessions.map((s) => s.session_id), [minted.session_id]);
    await trailOf(minted.session_id, 2);
    const audit = JSON.parse((await py(["audit", minted.session_id])).stdout);
    assert.equal(audit.verified, true);
    assert.equal(audit.records.length, 2);
    const approved = JSON.parse((await py(["approve", held.headers["x-airlock-approval-id"], "carol"])).stdout);
    assert.equal(approved.status, "approved");
    assert.deepEqual(JSON.parse((await py(["revoke-agent", agent])).stdout), { revoked: 1 });
    const bad = await py(["revoke", "0".repeat(32)]);
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).error.code, "session_not_found");
  });

  test("TypeScript (fetch): mint, list, audit, revoke, deny", async () => {
    const api = new Airlock(h.url.origin, h.secrets.AIRLOCK_ADMIN_KEY);
    const agent = `ts-${tag()}`;
    const minted = [];
    for (let i = 0; i < 3; i++) minted.push(await api.mint({ agent, user: "ana", tools: { echo: "read", gated: "write" }, ttl_seconds: 300 }));
    const rows = [];
    for await (const row of api.sessions({ agent, limit: 2 })) rows.push(row.session_id);
    assert.deepEqual(rows.sort(), minted.map((m) => m.session_id).sort());
    assert.equal((await h.call("echo", "/items/1", { token: minted[0].token })).status, 200);
    const held = await h.call("gated", "/items/1", { token: minted[0].token, method: "POST", body: "{}" });
    const trail = await trailOf(minted[0].session_id, 2);
    assert.equal(await verifyChain((await api.audit(minted[0].session_id)).records), trail.head);
    assert.equal((await api.deny(held.headers["x-airlock-approval-id"], "dave")).status, "denied");
    assert.equal((await api.revoke(minted[1].session_id)).status, "revoked");
    assert.equal(await api.revokeAgent(agent), 2);
    assert.equal((await h.call("echo", "/items/1", { token: minted[2].token })).status, 401);
    await assert.rejects(api.session("0".repeat(32)), (e) => e instanceof AirlockError && e.status === 404 && e.code === "session_not_found");
    await assert.rejects(new Airlock(h.url.origin, "wrong-wrong-wrong-wrong").listPage(), (e) => e.code === "invalid_admin_key");
  });
});

describe("state unavailable", () => {
  test("mint, listing, agent revoke and trail reads fail closed", async () => {
    const s = await h.mint({ echo: "read" }, { agent: "doomed" });
    await h.restart({ state: "broken" });
    try {
      const r = await h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 60 });
      assertError(r, 503, "state_unavailable", "mint");
      assert.ok(!r.text.includes("al1."), "no token without its records");
      assertError(await admin("/v1/sessions"), 503, "state_unavailable", "list");
      const del = await admin("/v1/sessions?agent=doomed", { method: "DELETE" });
      assertError(del, 503, "state_unavailable", "agent revoke");
      const [line] = await h.auditFor(del.headers["x-airlock-request-id"]);
      assert.equal(line.route, "sessions");
      assert.equal(line.reason, "state_unavailable");
      assertError(await admin(`/v1/sessions/${s.session_id}/audit`), 503, "state_unavailable", "trail");
      // A request whose trail cannot be written is refused anyway (its admission needs the state).
      assertError(await h.call("echo", "/x", { token: s.token }), 503, "state_unavailable", "request");
    } finally {
      await h.restart({ state: "default" });
    }
  });
});
