// Gated MCP tool calls end to end: human approval and duplicate suppression.
// The server is built with the official Python SDK 2.x
// (miniflare-tests/fixtures/mcp2_server.py, it counts its bookings and logs
// every request); the clients are the pinned Python SDK 2.x speaking only
// 2026-07-28 (clients/python/airlock_mcp2_client.py) and, for the handshake
// era, the pinned TypeScript SDK 1.x. Raw requests (fetch) carry what no SDK
// sends: tampered, forged and replayed requestState.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { randomSecret, startAirlock, testPolicy } from "./helpers.mjs";
import { MCP2_PYTHON, connectClient, expectRpcError, resultText, runMcp2Client, startMcp2Server, waitFor } from "./mcp-helpers.mjs";

const V = "2026-07-28";
const PREFIX = "airlock-approval.v1.";
const RULES = {
  tools: {
    search: "read",
    create_page: { level: "write", approval: true },
    book_slot: { level: "write", dedupe_seconds: 60 },
  },
  resources: [{ prefix: "docs://public/", level: "read" }],
  prompts: { summarize: "read" },
};

let server;
let h;

before(async () => {
  if (!existsSync(MCP2_PYTHON)) throw new Error(`${MCP2_PYTHON} is missing: run bash scripts/setup`);
  const cred = randomSecret("mcp2cred");
  server = await startMcp2Server(cred);
  h = await startAirlock({
    policy: (echoUrl) =>
      testPolicy(echoUrl, {
        extraTools: {
          docs2: { origin: server.url, allow_http: true, credential: { secret: "MCP_DOCS2_TOKEN", inject: "bearer" }, mcp: RULES },
          // The same server with `search` deduplicated, for the figures.
          docs2d: { origin: server.url, allow_http: true, credential: { secret: "MCP_DOCS2_TOKEN", inject: "bearer" }, mcp: { tools: { search: { level: "read", dedupe_seconds: 60 } } } },
        },
      }),
    secrets: { MCP_DOCS2_TOKEN: cred },
  });
});

after(async () => {
  await h?.close();
  server?.close();
});

const url = () => new URL("/mcp/docs2", h.url).href;
const admin = () => ({ authorization: `Bearer ${h.secrets.AIRLOCK_ADMIN_KEY}`, "content-type": "application/json" });
const approval = async (id) => (await h.fetch(`/v1/approvals/${id}`, { headers: admin() })).json;
async function decide(id, approve = true) {
  const r = await h.fetch(`/v1/approvals/${id}/${approve ? "approve" : "deny"}`, { method: "POST", headers: admin(), body: JSON.stringify({ approver: "alice@example.com" }) });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}
const idOf = (u) => /\/v1\/approvals\/(ap_[0-9a-f]{32})$/.exec(u)?.[1];
const hitsOf = (log, since, name, pred = () => true) => log.slice(since).filter((e) => e.rpc === "tools/call" && e.name === name && pred(e));
const auditOf = (sid) => h.audit.filter((a) => a.session_id === sid && a.route === "mcp" && a.mcp_method === "tools/call");

/** A raw 2026-07-28 tools/call (the client declares URL elicitation). */
const call = (token, name, args, extra = {}, id = 1) => callOn("docs2", token, name, args, extra, id);
function callOn(target, token, name, args, extra = {}, id = 1, harness = h) {
  const meta = { "io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": { elicitation: { url: {} } } };
  const body = { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args, ...extra, _meta: meta } };
  return harness.fetch(`/mcp/${target}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": V,
      "mcp-method": "tools/call",
      "mcp-name": name,
    },
    body: JSON.stringify(body),
  });
}
const retry = (token, args, state, id = 2) => call(token, "create_page", args, { inputResponses: { airlock_approval: { action: "accept" } }, requestState: state }, id);

describe("approval gate on an MCP tool", () => {
  test("Python SDK 2.x: input_required -> pending -> approved through the control plane -> the retry passes once, the next is refused", async () => {
    const s = await h.mint({ docs2: "write" }, { agent: "agent-gates" });
    const since = (await server.log()).length;
    let seenAtApproval;
    const { summary, stdout, stderr } = await runMcp2Client(url(), ["--gated", 'create_page:{"title": "gated-1"}'], s.token, async (line, stdin) => {
      assert.equal(line.stage, "approve");
      const id = idOf(line.url);
      assert.ok(id, line.url);
      seenAtApproval = hitsOf(await server.log(), since, "create_page").length;
      const a = await approval(id);
      assert.deepEqual([a.status, a.tool, a.method, a.path], ["pending", "docs2", "tools/call", "create_page"]);
      assert.match(a.body, /"title":"gated-1"/, "the person sees the canonical arguments");
      await decide(id);
      stdin.write("approved\n");
    });
    assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
    const [g] = summary.gated;
    assert.equal(g.first.input_required, true, JSON.stringify(g));
    assert.deepEqual(g.first.keys, ["airlock_approval"]);
    assert.deepEqual(g.first.modes, ["url"]);
    const id = idOf(g.first.urls[0]);
    assert.ok(g.first.urls[0].startsWith(new URL(h.url).origin), g.first.urls[0]);
    assert.ok(g.first.state.startsWith(PREFIX), g.first.state);
    // Retried while pending: asked again, for the same approval.
    assert.equal(g.pending.input_required, true, JSON.stringify(g.pending));
    assert.equal(idOf(g.pending.urls[0]), id);
    assert.equal(seenAtApproval, 0, "nothing reached the server before the approval");
    assert.deepEqual(g.final, { text: "created gated-1" });
    assert.deepEqual(g.again, { error: { code: -32012, message: "Approval not usable" } }, "the same state passes once");
    assert.equal((await approval(id)).status, "used");

    const calls = hitsOf(await server.log(), since, "create_page");
    assert.equal(calls.length, 1, "the server ran it once");
    assert.equal(calls[0].state, null, "Airlock's requestState never reached the server");
    assert.deepEqual(calls[0].responses, [], "nor the answer to Airlock's question");
    assert.deepEqual(calls[0].arguments, { title: "gated-1" });

    await waitFor(() => auditOf(s.session_id).length >= 4, { label: "audit" });
    const reasons = auditOf(s.session_id).map((a) => [a.reason, a.approval_id]);
    assert.deepEqual(reasons, [["approval_required", id], ["approval_pending", id], ["ok", id], ["approval_invalid", id]]);
    assert.equal(auditOf(s.session_id)[2].approved_by, "alice@example.com");
  });

  test("tampered, forged, other-session and other-argument states are refused and spend nothing; a replayed one is refused", async () => {
    const s = await h.mint({ docs2: "write" }, { agent: "agent-gates" });
    const other = await h.mint({ docs2: "write" }, { agent: "agent-gates" });
    const since = (await server.log()).length;
    const args = { title: "gated-2" };
    const first = await call(s.token, "create_page", args);
    assert.equal(first.status, 200);
    const state = first.json.result.requestState;
    const id = idOf(first.json.result.inputRequests.airlock_approval.params.url);
    await decide(id);
    const flip = (st, i) => st.slice(0, i) + (st[i] === "A" ? "B" : "A") + st.slice(i + 1);
    const rows = [
      ["a flipped MAC", s.token, args, flip(state, state.length - 2), "mcp_state_forged"],
      ["a pushed-out expiry", s.token, args, state.replace(/\.(\d+)\./, (_, e) => `.${Number(e) + 3600}.`), "mcp_state_forged"],
      ["Airlock's prefix on anything", s.token, args, `${PREFIX}${id}`, "mcp_state_forged"],
      ["other arguments", s.token, { title: "other" }, state, "mcp_state_other_call"],
      ["another session", other.token, args, state, "mcp_state_other_session"],
    ];
    for (const [what, token, a, st] of rows) {
      const r = await retry(token, a, st);
      assert.equal(r.status, 400, what);
      assert.deepEqual(r.json.error, { code: -32013, message: "Invalid request state" }, what);
    }
    assert.equal((await approval(id)).status, "approved", "no refused retry spent the approval");
    assert.equal(hitsOf(await server.log(), since, "create_page").length, 0, "the server saw none");
    const ok = await retry(s.token, args, state, 3);
    assert.equal(ok.status, 200);
    assert.equal(ok.json.id, 3);
    assert.match(JSON.stringify(ok.json.result), /created gated-2/);
    const replayed = await retry(s.token, args, state, 4);
    assert.deepEqual([replayed.status, replayed.json.error], [400, { code: -32012, message: "Approval not usable" }]);
    assert.equal(hitsOf(await server.log(), since, "create_page").length, 1);
    // A denied approval: refused, stably.
    const denied = await call(s.token, "create_page", { title: "gated-3" });
    await decide(idOf(denied.json.result.inputRequests.airlock_approval.params.url), false);
    const r = await retry(s.token, { title: "gated-3" }, denied.json.result.requestState);
    assert.deepEqual([r.status, r.json.error], [400, { code: -32011, message: "Approval denied" }]);
    assert.equal(hitsOf(await server.log(), since, "create_page").length, 1);
    const reasons = (sid) => auditOf(sid).map((a) => a.reason);
    await waitFor(() => reasons(other.session_id).length === 1 && reasons(s.session_id).length === 9, { label: "audit" });
    assert.deepEqual(reasons(s.session_id), [
      "approval_required", "mcp_state_forged", "mcp_state_forged", "mcp_state_forged", "mcp_state_other_call",
      "ok", "approval_invalid", "approval_required", "approval_denied",
    ]);
    assert.deepEqual(reasons(other.session_id), ["mcp_state_other_session"]);
    assert.ok(auditOf(s.session_id).every((a) => a.decision === (a.reason === "ok" ? "allow" : "deny")));
  });

  test("a 2025-11-25 client (TypeScript SDK 1.x) gets -32042 with the approval; the identical call after approval passes once, the next is gated again", async () => {
    const s = await h.mint({ docs2: "write" }, { agent: "agent-gates-ts" });
    const since = (await server.log()).length;
    const c = await connectClient(url(), s.token);
    try {
      const args = { name: "create_page", arguments: { title: "ts-1" } };
      // The SDK hands the error over as UrlElicitationRequiredError: the
      // approval is its elicitation (id and URL).
      const err = await expectRpcError(c.client.callTool(args), -32042, undefined, "gated");
      const [asked] = err.data.elicitations;
      const id = asked.elicitationId;
      assert.match(id ?? "", /^ap_[0-9a-f]{32}$/, JSON.stringify(err.data));
      assert.equal(asked.mode, "url");
      assert.equal(idOf(asked.url), id);
      assert.equal((await approval(id)).status, "pending");
      // Pending: the same approval again.
      const again = await expectRpcError(c.client.callTool(args), -32042, undefined, "pending");
      assert.equal(again.data.elicitations[0].elicitationId, id);
      assert.equal(hitsOf(await server.log(), since, "create_page").length, 0);
      await decide(id);
      const done = await c.client.callTool(args);
      assert.equal(resultText(done), "created ts-1");
      const next = await expectRpcError(c.client.callTool(args), -32042, undefined, "gated again");
      assert.notEqual(next.data.elicitations[0].elicitationId, id, "a new approval");
      assert.equal(hitsOf(await server.log(), since, "create_page").length, 1, "the server ran it once");
    } finally {
      await c.close();
    }
  });
});

describe("duplicate suppression on an MCP tool (dedupe_seconds)", () => {
  test("20 concurrent identical calls from the Python SDK 2.x: the server books once, all 20 get its result", async () => {
    const s = await h.mint({ docs2: "write" }, { agent: "agent-dedupe" });
    const since = (await server.log()).length;
    const { summary, stdout, stderr } = await runMcp2Client(url(), ["--call", 'book_slot:{"slot": "10am"}', "--dedupe", 'book_slot:{"slot": "9am"}'], s.token);
    assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
    assert.match(summary.calls[0].result.text, /^booked 10am \(booking #\d+\)$/);
    assert.equal(summary.dedupe.length, 20);
    const texts = new Set(summary.dedupe.map((d) => d.text ?? JSON.stringify(d.error)));
    assert.equal(texts.size, 1, JSON.stringify([...texts]));
    assert.match([...texts][0], /^booked 9am \(booking #\d+\)$/);
    const log = await server.log();
    assert.equal(hitsOf(log, since, "book_slot", (e) => e.arguments?.slot === "9am").length, 1, "the server ran it once");
    assert.equal(hitsOf(log, since, "book_slot", (e) => e.arguments?.slot === "10am").length, 1, "other arguments are another call");
    // The same call later in the window: the stored result, the server untouched.
    const later = await call(s.token, "book_slot", { slot: "9am" }, {}, "late");
    assert.equal(later.status, 200);
    assert.equal(later.json.id, "late", "the replay carries the new request's id");
    assert.equal(later.json.result.content[0].text, [...texts][0]);
    assert.equal(hitsOf(await server.log(), since, "book_slot", (e) => e.arguments?.slot === "9am").length, 1);
    await waitFor(() => auditOf(s.session_id).length === 22, { label: "audit" });
    const nine = auditOf(s.session_id).filter((a) => a.decision === "allow");
    assert.equal(nine.filter((a) => a.mcp_replay === false).length, 2, "two calls ran (9am once, 10am once)");
    assert.equal(nine.filter((a) => a.mcp_replay === true).length, 20, "twenty answered from the stored result");
  });
});

describe("a deduplicated result too large to keep", () => {
  let small;
  before(async () => {
    small = await startAirlock({
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          limits: { idempotency_max_body_bytes: 0 },
          extraTools: { docs2: { origin: server.url, allow_http: true, credential: { secret: "MCP_DOCS2_TOKEN", inject: "bearer" }, mcp: RULES } },
        }),
      secrets: { MCP_DOCS2_TOKEN: h.secrets.MCP_DOCS2_TOKEN },
    });
  });
  after(async () => {
    await small?.close();
  });

  test("the call still runs once; identical calls in the window get -32015, never a second run", async () => {
    const s = await small.mint({ docs2: "write" }, { agent: "agent-dedupe-big" });
    const since = (await server.log()).length;
    const viaSmall = (id) => callOn("docs2", s.token, "book_slot", { slot: "noon" }, {}, id, small);
    const first = await viaSmall(1);
    assert.equal(first.status, 200);
    assert.match(first.text, /booked noon/);
    const second = await viaSmall(2);
    assert.equal(second.status, 400);
    assert.deepEqual(second.json.error, { code: -32015, message: "Duplicate of a call whose result was not kept" });
    assert.equal(second.json.id, 2);
    assert.equal(hitsOf(await server.log(), since, "book_slot", (e) => e.arguments?.slot === "noon").length, 1, "the server ran it once");
  });
});

describe("figures", () => {
  test("a dedupe lookup in workerd: a plain call, a deduplicated first call, a replay (median of 30)", async () => {
    const s = await h.mint({ docs2: "read", docs2d: "read" }, { agent: "agent-figures" });
    const since = (await server.log()).length;
    const N = 30;
    const median = async (f) => {
      const t = [];
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const r = await f(i);
        t.push(performance.now() - t0);
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.ok(r.json.result, JSON.stringify(r.json));
      }
      return t.sort((a, b) => a - b)[N >> 1];
    };
    const plain = await median((i) => callOn("docs2", s.token, "search", { query: `p${i}` }, {}, i));
    const first = await median((i) => callOn("docs2d", s.token, "search", { query: `d${i}` }, {}, i));
    const replay = await median((i) => callOn("docs2d", s.token, "search", { query: "d0" }, {}, i));
    console.log(
      `# dedupe in workerd (median of ${N}): plain call ${plain.toFixed(1)} ms; deduplicated first call ${first.toFixed(1)} ms ` +
        `(${first >= plain ? "+" : ""}${(first - plain).toFixed(1)} ms: claim and store in the session's Durable Object); replay ${replay.toFixed(1)} ms (the server not called)`,
    );
    assert.equal(hitsOf(await server.log(), since, "search", (e) => e.arguments?.query === "d0").length, 1, "replays never reach the server");
  });
});
