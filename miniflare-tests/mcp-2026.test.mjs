// MCP 2026-07-28 end to end with the official Python SDK 2.x on both sides:
// a server built with MCPServer (miniflare-tests/fixtures/mcp2_server.py) and
// a client pinned to 2026-07-28 with no fallback to the initialize handshake
// (clients/python/airlock_mcp2_client.py), both from the .venv-mcp2/ venv that
// scripts/setup builds; Airlock in Miniflare between them at /mcp/docs2.
// Raw requests (fetch) carry what the SDK would never send: mismatched
// request metadata headers, and the methods the era removed.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { randomSecret, startAirlock, testPolicy } from "./helpers.mjs";
import { MCP2_PYTHON as VENV_PYTHON, assertNoSecret, runMcp2Client, startMcp2Server, waitFor } from "./mcp-helpers.mjs";

const V = "2026-07-28";

const RULES = {
  tools: { search: "read", touch: "read", deploy: "write", create_page: "write", delete_space: "admin" },
  // debug_dump is not named: denied at every level.
  resources: [
    { prefix: "docs://public/", level: "read" },
    { prefix: "docs://private/", level: "admin" },
  ],
  prompts: { summarize: "read" },
};

let server; // { proc, url, log(), close() }
let h;
let cred;

before(async () => {
  if (!existsSync(VENV_PYTHON)) {
    throw new Error(`${VENV_PYTHON} is missing: run bash scripts/setup (it builds the MCP Python SDK 2.x venv)`);
  }
  cred = randomSecret("mcp2cred");
  server = await startMcp2Server(cred);
  h = await startAirlock({
    policy: (echoUrl) =>
      testPolicy(echoUrl, {
        extraTools: { docs2: { origin: server.url, allow_http: true, credential: { secret: "MCP_DOCS2_TOKEN", inject: "bearer" }, mcp: RULES } },
      }),
    secrets: { MCP_DOCS2_TOKEN: cred },
  });
});

after(async () => {
  await h?.close();
  server?.close();
});

const runClient = (args, token) => runMcp2Client(new URL("/mcp/docs2", h.url).href, args, token);

const meta = { "io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {} };

/** A raw POST to /mcp/docs2 with the given headers (request metadata included); resolves to { status, json, text }. */
function raw(token, body, headers = {}) {
  return h.fetch("/mcp/docs2", {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

const hitsOf = (log, since, rpc, name) => log.slice(since).filter((e) => e.rpc === rpc && (name === undefined || e.name === name));

describe("Python SDK 2.x, 2026-07-28 on both sides, through Airlock (/mcp/docs2)", () => {
  test("discover, filtered private lists, allowed and forbidden calls, reads and prompts", async () => {
    const session = await h.mint({ docs2: "read" }, { agent: "agent-mcp2" });
    const since = (await server.log()).length;
    const { summary, stdout, stderr } = await runClient(
      [
        "--discover",
        "--lists",
        "--call", 'search:{"query": "rotation", "region": "us-west1"}',
        "--call", 'create_page:{"title": "x"}',
        "--call", "debug_dump",
        "--call", "no_such_tool",
        "--read", "docs://public/readme",
        "--read", "docs://private/salaries",
        "--prompt", 'summarize:{"topic": "t"}',
        "--prompt", "internal_review",
      ],
      session.token,
    );
    assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
    assert.equal(summary.protocol_version, V);
    // discover: only what a read session can use, and private
    assert.deepEqual(summary.discover.capabilities.filter((c) => c !== "logging"), ["prompts", "resources", "tools"]);
    assert.equal(summary.discover.cache_scope, "private");
    assert.deepEqual(summary.discover.supported_versions, [V]);
    // lists filtered as in the handshake era, marked private
    assert.deepEqual(summary.tools, ["search", "touch"]);
    assert.deepEqual(summary.resources, ["docs://public/readme"]);
    assert.deepEqual(summary.prompts, ["summarize"]);
    assert.deepEqual(summary.cache_scopes, { tools: "private", resources: "private", prompts: "private" });
    const [search, createPage, debugDump, unknown] = summary.calls;
    assert.deepEqual(search.result, { is_error: false, text: 'search results for "rotation" in us-west1' });
    for (const c of [createPage, debugDump, unknown]) assert.deepEqual(c.error, { code: -32602, message: "Tool not found" }, c.tool);
    assert.deepEqual(summary.reads[0], { uri: "docs://public/readme", text: "Public readme." });
    assert.equal(summary.reads[1].error.code, -32602, "resource not found is -32602 in 2026-07-28");
    assert.deepEqual(summary.prompts_get[0], { name: "summarize", text: "Summarize t." });
    assert.equal(summary.prompts_get[1].error.code, -32602);

    const log = await server.log();
    // The forbidden calls never reached the server; the allowed one did once.
    for (const name of ["create_page", "debug_dump", "no_such_tool"]) assert.equal(hitsOf(log, since, "tools/call", name).length, 0, name);
    assert.equal(hitsOf(log, since, "resources/read", "docs://private/salaries").length, 0);
    assert.equal(hitsOf(log, since, "prompts/get", "internal_review").length, 0);
    const [call] = hitsOf(log, since, "tools/call", "search");
    // Airlock's own request metadata, matching the body; no session id.
    assert.deepEqual(call.headers, {
      "mcp-protocol-version": V,
      "mcp-method": "tools/call",
      "mcp-name": "search",
      "mcp-param-region": "us-west1",
      "mcp-session-id": null,
    });
    assert.equal(hitsOf(log, since, "server/discover").length, 1);
    assert.ok(log.slice(since).every((e) => e.rpc !== "initialize"), "no fallback to the handshake");

    await waitFor(() => h.audit.some((a) => a.session_id === session.session_id && a.mcp_method === "tools/call"), { label: "audit" });
    const mine = h.audit.filter((a) => a.session_id === session.session_id && a.route === "mcp");
    assert.ok(mine.length > 0 && mine.every((a) => a.mcp_era === V), JSON.stringify(mine.map((a) => a.mcp_era)));
    const denied = mine.find((a) => a.mcp_target === "debug_dump");
    assert.equal(denied.decision, "deny");
    assert.equal(denied.reason, "mcp_tool_not_allowed");
    for (const a of mine) assert.ok(!JSON.stringify(a).includes("rotation"), "argument values are never logged");
  });

  test("a header/body mismatch is refused with -32020 before the server or the credential", async () => {
    const session = await h.mint({ docs2: "admin" }, { agent: "agent-mcp2" });
    const since = (await server.log()).length;
    const body = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "delete_space", arguments: { space: "x" }, _meta: meta } };
    const ok = { "mcp-protocol-version": V, "mcp-method": "tools/call", "mcp-name": "delete_space" };
    const rows = [
      ["Mcp-Name names an allowed tool", { ...ok, "mcp-name": "search" }],
      ["Mcp-Name in another case", { ...ok, "mcp-name": "Delete_Space" }],
      ["Mcp-Name percent-encoded", { ...ok, "mcp-name": "delete%5Fspace" }],
      ["Mcp-Name missing", { "mcp-protocol-version": V, "mcp-method": "tools/call" }],
      ["Mcp-Method missing", { "mcp-protocol-version": V, "mcp-name": "delete_space" }],
      ["Mcp-Method another method", { ...ok, "mcp-method": "tools/list" }],
      ["version header of the handshake era", { ...ok, "mcp-protocol-version": "2025-11-25" }],
      ["version header missing", { "mcp-method": "tools/call", "mcp-name": "delete_space" }],
      ["Mcp-Param with a value the body lacks", { ...ok, "mcp-param-space": "y" }],
    ];
    for (const [what, headers] of rows) {
      const r = await raw(session.token, body, headers);
      assert.equal(r.status, 400, what);
      const j = r.json;
      assert.equal(j.error.code, -32020, `${what}: ${JSON.stringify(j)}`);
    }
    // the same message with the right headers passes (and Mcp-Param with the body's value)
    const r = await raw(session.token, body, { ...ok, "mcp-param-space": "x" });
    assert.equal(r.status, 200);
    const log = await server.log();
    assert.equal(hitsOf(log, since, "tools/call").length, 1, "only the matching request reached the server");
    assert.equal(hitsOf(log, since, "tools/call")[0].headers["mcp-name"], "delete_space");
    const mismatches = () => h.audit.filter((a) => a.session_id === session.session_id && a.reason === "mcp_header_mismatch");
    await waitFor(() => mismatches().length === rows.length, { label: "mismatch audits" });
    const audits = mismatches();
    assert.ok(audits.every((a) => a.decision === "deny" && a.mcp_era === V));
  });

  test("the methods the era removed are refused in it, not in the handshake era", async () => {
    const session = await h.mint({ docs2: "admin" }, { agent: "agent-mcp2" });
    const since = (await server.log()).length;
    for (const method of ["initialize", "ping", "logging/setLevel", "resources/subscribe"]) {
      const r = await raw(session.token, { jsonrpc: "2.0", id: 3, method, params: { uri: "docs://public/readme", _meta: meta } }, { "mcp-protocol-version": V, "mcp-method": method });
      assert.equal(r.status, 404, method);
      assert.equal(r.json.error.code, -32601, method);
    }
    const get = await h.fetch("/mcp/docs2", { headers: { authorization: `Bearer ${session.token}`, accept: "text/event-stream", "mcp-protocol-version": V } });
    assert.equal(get.status, 405);
    const log = await server.log();
    assert.equal(log.length, since, "none reached the server");
  });

  test("subscriptions/listen: updates about what the session may not read never arrive", async () => {
    const session = await h.mint({ docs2: "read" }, { agent: "agent-mcp2" });
    const since = (await server.log()).length;
    const { summary, stdout, stderr } = await runClient(["--listen", "--listen-seconds", "2"], session.token);
    assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
    // the filter Airlock forwarded asked only for the readable URI
    assert.deepEqual(summary.listen.honored, { toolsListChanged: true, resourceSubscriptions: ["docs://public/readme"] });
    const uris = summary.listen.events.map((e) => e.uri).filter(Boolean);
    assert.deepEqual(uris, ["docs://public/readme"]);
    assert.ok(summary.listen.events.some((e) => e.type === "ToolsListChanged"), JSON.stringify(summary.listen.events));
    assert.ok(!stdout.includes("private"), stdout);
    assert.equal(hitsOf(await server.log(), since, "subscriptions/listen").length, 1);
  });

  test("a server-initiated multi round-trip request passes, scrubbed, and the retry is decided again", async () => {
    const writer = await h.mint({ docs2: "write" }, { agent: "agent-mcp2" });
    const since = (await server.log()).length;
    const { summary, stdout, stderr } = await runClient(["--mrtr", 'deploy:{"env": "staging"}'], writer.token);
    assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
    const [round] = summary.mrtr;
    assert.equal(round.first.input_required, true, JSON.stringify(round));
    assert.deepEqual(round.first.keys, ["confirm"]);
    assert.equal(round.first.has_state, true);
    assert.match(round.first.messages[0], /^Deploy to staging\? \(token \[REDACTED\]\)$/);
    assertNoSecret(stdout, cred, "input_required result");
    assert.deepEqual(round.final, { text: "deployed to staging" });
    const log = await server.log();
    const calls = hitsOf(log, since, "tools/call", "deploy");
    assert.deepEqual(calls.map((c) => c.retry), [false, true]);

    // A read session's retry of the same call (with a server's requestState) is refused like the call.
    const reader = await h.mint({ docs2: "read" }, { agent: "agent-mcp2" });
    const before = (await server.log()).length;
    const retry = { jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: "deploy", arguments: { env: "staging" }, inputResponses: { confirm: { action: "accept", content: { confirm: true } } }, requestState: "anything", _meta: meta } };
    const r = await raw(reader.token, retry, { "mcp-protocol-version": V, "mcp-method": "tools/call", "mcp-name": "deploy" });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json.error, { code: -32602, message: "Tool not found" });
    assert.equal((await server.log()).length, before, "the server never saw it");
  });
});
