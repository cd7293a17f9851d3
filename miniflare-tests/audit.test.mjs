// Audit: exactly one `"kind":"airlock.audit"` console line per request, with
// the right decision and reason, and never a secret, token, query value or body.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { AUDIT_FIELDS, sleep, startAirlock } from "./helpers.mjs";

let h;
let writer; // echo:write, private:read
const QUERY_MARK = `qmark${randomBytes(8).toString("hex")}`;
const BODY_MARK = `bmark${randomBytes(8).toString("hex")}`;
const HEADER_MARK = `hmark${randomBytes(8).toString("hex")}`;
const seen = []; // every audit line checked by a test
const extraFields = new Set(); // fields beyond the contract's list (reported, not failed)

before(async () => {
  h = await startAirlock({ directSocket: true });
});

after(async () => {
  await h?.close();
});

/** Assert exactly one audit line for the response's request id; return it. */
async function oneAuditLine(r, label) {
  const id = r.headers["x-airlock-request-id"];
  assert.ok(id, `${label}: no x-airlock-request-id`);
  const lines = await h.auditFor(id);
  assert.equal(lines.length, 1, `${label}: ${lines.length} audit lines for request ${id}`);
  const a = lines[0];
  seen.push(a);
  const missing = AUDIT_FIELDS.filter((f) => !(f in a));
  assert.deepEqual(missing, [], `${label}: audit line lacks contract fields`);
  const extra = Object.keys(a).filter((f) => !AUDIT_FIELDS.includes(f));
  if (extra.length) extraFields.add(extra.join(","));
  assert.equal(a.kind, "airlock.audit");
  assert.match(a.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, `${label}: ts`);
  assert.ok(Math.abs(Date.parse(a.ts) - Date.now()) < 60_000, `${label}: ts is now`);
  assert.equal(typeof a.duration_ms, "number");
  assert.ok(a.duration_ms >= 0);
  assert.ok(["allow", "deny", "error"].includes(a.decision), `${label}: decision ${a.decision}`);
  // The audit line must agree with what the client got.
  const code = r.json?.error?.code;
  const isAirlockError = r.status >= 400 && code && Object.keys(r.json).length === 1;
  if (isAirlockError) {
    assert.equal(a.reason, code, `${label}: audit reason vs response code`);
    assert.notEqual(a.decision, "allow", `${label}: an error response audited as allow`);
  } else {
    assert.equal(a.reason, "ok", `${label}: response ${r.status} but audit says ${a.decision}/${a.reason}`);
    assert.equal(a.decision, "allow", `${label}: response ${r.status} but audit says ${a.decision}/${a.reason}`);
  }
  return a;
}

describe("one audit line per request", () => {
  test("mint", async () => {
    const r = await h.mintRaw({
      agent: "agent-audit",
      user: "user-audit",
      tools: { echo: "write", private: "read" },
      ttl_seconds: 600,
    });
    assert.equal(r.status, 201, r.text);
    writer = r.json;
    const a = await oneAuditLine(r, "mint");
    assert.equal(a.decision, "allow");
    assert.equal(a.reason, "ok");
    assert.equal(a.method, "POST");
    assert.ok(a.session_id === null || a.session_id === writer.session_id, `session_id ${a.session_id}`);
  });

  test("allowed brokered GET", async () => {
    const r = await h.call("echo", `/hello/world?secretq=${QUERY_MARK}&x=1`, {
      token: writer.token,
      headers: { "user-agent": HEADER_MARK },
    });
    assert.equal(r.status, 200, r.text);
    const a = await oneAuditLine(r, "allowed GET");
    assert.equal(a.decision, "allow");
    assert.equal(a.reason, "ok");
    assert.equal(a.session_id, writer.session_id);
    assert.equal(a.agent, "agent-audit");
    assert.equal(a.user, "user-audit");
    assert.equal(a.tool, "echo");
    assert.equal(a.method, "GET");
    assert.equal(a.path, "/hello/world", "path without the query");
    assert.equal(a.rule, "/**");
    assert.equal(a.upstream_status, 200);
  });

  test("allowed brokered POST with a body", async () => {
    const r = await h.call("echo", `/items/7?v=${QUERY_MARK}`, {
      token: writer.token,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ note: BODY_MARK }),
    });
    assert.equal(r.status, 200, r.text);
    const a = await oneAuditLine(r, "allowed POST");
    assert.equal(a.decision, "allow");
    assert.equal(a.tool, "echo");
    assert.equal(a.method, "POST");
    assert.equal(a.path, "/items/7");
    assert.equal(a.rule, "/items/**");
    assert.equal(a.upstream_status, 200);
  });

  test("origin 4xx status is still an allow with upstream_status", async () => {
    const r = await h.call("echo", "/status/404", { token: writer.token });
    assert.equal(r.status, 404);
    const a = await oneAuditLine(r, "origin 404");
    assert.equal(a.decision, "allow");
    assert.equal(a.upstream_status, 404);
  });

  test("origin 5xx -> upstream_error, audited with the origin's status", async () => {
    const r = await h.call("echo", "/status/503", { token: writer.token });
    assert.equal(r.status, 502, r.text);
    const a = await oneAuditLine(r, "origin 503");
    assert.equal(a.decision, "error");
    assert.equal(a.reason, "upstream_error");
    assert.equal(a.upstream_status, 503);
  });

  test("private tool via service binding", async () => {
    const r = await h.call("private", `/p?k=${QUERY_MARK}`, { token: writer.token });
    assert.equal(r.status, 200, r.text);
    const a = await oneAuditLine(r, "private");
    assert.equal(a.decision, "allow");
    assert.equal(a.tool, "private");
    assert.equal(a.path, "/p");
    assert.equal(a.upstream_status, 200);
  });

  const denials = [
    ["no token", () => h.call("echo", `/hello?q=${QUERY_MARK}`), 401, "invalid_session"],
    ["garbage token", () => h.call("echo", "/hello", { token: "al1.k1.xxx.yyy" }), 401, "invalid_session"],
    ["wrong admin key", () => h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" } }, "wrong-admin-key-value"), 401, "invalid_admin_key"],
    ["bad mint body", () => h.mintRaw({ agent: "a", user: "u", tools: { nosuch: "read" } }), 400, "invalid_request"],
    ["unknown tool", () => h.call("nosuch", "/x", { token: writer.token }), 403, "tool_not_allowed"],
    ["level too low", () => h.call("echo", "/items/1", { token: writer.token, method: "DELETE" }), 403, "level_insufficient"],
    ["no rule", () => h.call("echo", "/nope", { token: writer.token, method: "POST", body: BODY_MARK }), 403, "route_not_allowed"],
    ["invalid path", () => h.raw({ path: `/t/echo/a%2fb?q=${QUERY_MARK}`, headers: { authorization: `Bearer ${writer.token}` } }), 400, "invalid_path"],
    ["not found", () => h.fetch("/nowhere"), 404, "not_found"],
    ["method not allowed", () => h.fetch("/v1/sessions", { method: "PUT" }), 405, "method_not_allowed"],
    ["method not allowed on health", () => h.fetch("/v1/health", { method: "POST", body: "{}" }), 405, "method_not_allowed"],
  ];
  for (const [label, send, status, code] of denials) {
    test(`denied: ${label} -> ${code}`, async () => {
      const r = await send();
      assert.equal(r.status, status, `${label}: ${r.text}`);
      const a = await oneAuditLine(r, label);
      assert.equal(a.decision, "deny", `${label}: decision`);
      assert.equal(a.reason, code, `${label}: reason`);
      assert.equal(a.upstream_status, null);
      if (["level too low", "no rule", "unknown tool"].includes(label)) {
        assert.equal(a.session_id, writer.session_id, `${label}: session_id`);
        assert.equal(a.tool, label === "unknown tool" ? "nosuch" : "echo", `${label}: tool`);
      }
      if (label === "level too low") {
        assert.ok(a.rule === null || a.rule === "/items/*", `rule ${a.rule}`);
      }
    });
  }

  test("health is audited too", async () => {
    const r = await h.fetch("/v1/health");
    assert.equal(r.status, 200);
    const a = await oneAuditLine(r, "health");
    assert.equal(a.decision, "allow");
    assert.equal(a.reason, "ok");
  });

  test("a burst of N requests produces exactly N audit lines", async () => {
    await sleep(200);
    const start = h.audit.length;
    const ids = [];
    const sends = [];
    for (let i = 0; i < 10; i++) {
      sends.push(h.call("echo", `/burst/${i}?q=${QUERY_MARK}`, { token: writer.token }));
      sends.push(h.call("echo", `/burst/${i}`, { token: "nope" }));
    }
    for (const r of await Promise.all(sends)) ids.push(r.headers["x-airlock-request-id"]);
    assert.equal(new Set(ids).size, 20, "request ids are unique");
    const deadline = Date.now() + 5000;
    while (h.audit.length - start < 20 && Date.now() < deadline) await sleep(20);
    await sleep(300);
    const lines = h.audit.slice(start);
    assert.equal(lines.length, 20, `${lines.length} audit lines for 20 requests`);
    assert.deepEqual(lines.map((a) => a.request_id).sort(), [...ids].sort());
    seen.push(...lines);
  });

  test("report audit fields beyond the contract's list (not a failure)", (t) => {
    if (extraFields.size) t.diagnostic(`fields beyond the contract: ${[...extraFields].join(" | ")}`);
  });

  test("no audit line contains a secret, token, query value, header value or body", async () => {
    assert.ok(seen.length >= 20);
    const forbidden = {
      ...h.secrets,
      token: writer.token,
      token_mac: writer.token.split(".")[3],
      QUERY_MARK,
      BODY_MARK,
      HEADER_MARK,
    };
    // Check the raw stdout, not just parsed audit lines.
    const everything = h.stdout.join("\n") + "\n" + h.stderr.join("\n");
    for (const [name, value] of Object.entries(forbidden)) {
      for (const part of String(value).split(",")) {
        const needle = part.includes(":") ? part.split(":")[1] : part;
        assert.ok(!everything.includes(needle), `${name} appears in workerd output`);
      }
    }
    const auditLines = h.stdout.filter((l) => l.includes('"airlock.audit"'));
    assert.equal(auditLines.length, h.audit.length, "every audit-looking line parses as JSON");
  });
});

// A sandbox that floods Airlock with requests it refuses must not stall
// anyone's connections. Each refusal's trail append runs after the answer;
// in workerd, such calls made over JS RPC to many distinct state objects
// left the next request on a keep-alive connection undispatched until the
// runtime reset the connection (16 to 32 of 32 loops, within seconds), so
// Airlock makes them over the object's `fetch`. The loops use the worker's
// own socket (workerd's HTTP server, no Miniflare entry worker in front).
describe("a flood of refusals over keep-alive connections", () => {
  test("32 sessions, 32 keep-alive loops: every request answered, every refusal in its session's trail", async () => {
    const LOOPS = 32;
    const PER_LOOP = 400;
    const sessions = [];
    for (let i = 0; i < LOOPS; i++) sessions.push(await h.mint({ echo: "read" }, { agent: `flood-${i}` }));
    const hitsBefore = await h.originHitCount();
    const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS });
    const failures = [];
    const statuses = new Map();
    const one = (token, i) =>
      new Promise((resolve) => {
        const req = http.request(
          { host: h.directUrl.hostname, port: h.directUrl.port, path: `/t/private/flood/${i}`, agent, headers: { authorization: `Bearer ${token}` } },
          (res) => {
            res.resume();
            res.on("end", () => {
              statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
              resolve();
            });
            res.on("error", (e) => (failures.push(e.code ?? e.message), resolve()));
          },
        );
        // A request the runtime never dispatches would otherwise wait for
        // the connection to be reset, long after this test.
        req.setTimeout(5_000, () => req.destroy(Object.assign(new Error("stalled"), { code: "STALLED" })));
        req.on("error", (e) => (failures.push(e.code ?? e.message), resolve()));
        req.end();
      });
    try {
      await Promise.all(
        sessions.map(async (s) => {
          for (let i = 0; i < PER_LOOP; i++) await one(s.token, i);
        }),
      );
    } finally {
      agent.destroy();
    }
    assert.deepEqual(failures, [], `requests that failed: ${failures.length}`);
    assert.deepEqual([...statuses], [[403, LOOPS * PER_LOOP]], "every request refused 403 tool_not_allowed");
    assert.equal(await h.originHitCount(), hitsBefore, "no refusal reached an origin");
    // Every refusal reaches its own session's trail, once.
    for (const s of sessions) {
      const deadline = Date.now() + 10_000;
      let records = [];
      for (;;) {
        const r = await h.fetch(`/v1/sessions/${s.session_id}/audit`, { headers: { authorization: `Bearer ${h.secrets.AIRLOCK_ADMIN_KEY}` } });
        assert.equal(r.status, 200, r.text);
        records = r.json.records;
        if (records.length >= PER_LOOP || Date.now() > deadline) break;
        await sleep(50);
      }
      assert.equal(records.length, PER_LOOP, `session ${s.session_id}: ${records.length} trail records`);
      const off = records.map((line) => JSON.parse(line)).find((a) => a.reason !== "tool_not_allowed" || a.session_id !== s.session_id);
      assert.equal(off, undefined, `a record that is not this session's refusal: ${JSON.stringify(off)}`);
    }
  });
});

// A deployment upgrades its two scripts one after the other. While its state
// script is still of a release from before audit records rode on admissions,
// that script ignores the lines an admission carries and its reply does not
// say whether it stored them (fixtures/earlier-state.js): the worker must
// then send them on their own, so no record is lost.
describe("audit lines carried to a state script of an earlier release", () => {
  test("the lines an admission carried are sent on their own: every request in the trail once, nothing logged lost", async () => {
    const e = await startAirlock({ state: "earlier" });
    try {
      const s = await e.mint({ echo: "read" }, { agent: "agent-earlier-state" });
      const N = 20;
      const ids = [];
      // Back to back: each admission finds the previous request's line
      // waiting and carries it.
      for (let i = 0; i < N; i++) {
        const r = await e.call("echo", `/earlier/${i}`, { token: s.token });
        assert.equal(r.status, 200, r.text);
        ids.push(r.headers["x-airlock-request-id"]);
      }
      const carried = e.stdout.filter((l) => l.includes('"kind":"test.earlier_state"'));
      assert.ok(carried.length > 0, "no admission carried lines: the earlier-release path was not taken");
      const deadline = Date.now() + 10_000;
      let records = [];
      for (;;) {
        const r = await e.fetch(`/v1/sessions/${s.session_id}/audit`, { headers: { authorization: `Bearer ${e.secrets.AIRLOCK_ADMIN_KEY}` } });
        assert.equal(r.status, 200, r.text);
        records = r.json.records.map((line) => JSON.parse(line));
        if (records.length >= N || Date.now() > deadline) break;
        await sleep(50);
      }
      await sleep(300); // a duplicate would arrive after the last record
      const again = await e.fetch(`/v1/sessions/${s.session_id}/audit`, { headers: { authorization: `Bearer ${e.secrets.AIRLOCK_ADMIN_KEY}` } });
      assert.equal(again.json.records.length, records.length, "records kept arriving after the trail was complete");
      assert.deepEqual(
        records.map((a) => a.request_id),
        ids,
        `the trail holds ${records.length} records for ${N} requests, in order, each once`,
      );
      assert.deepEqual(
        e.stdout.filter((l) => l.includes('"kind":"airlock.audit_trail"')),
        [],
        "no trail line logged as lost or cancelled",
      );
    } finally {
      await e.close();
    }
  });
});
