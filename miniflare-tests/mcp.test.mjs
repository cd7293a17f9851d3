// MCP end to end: real MCP servers built with the official TypeScript SDK
// (demo/mcp-server.mjs), Airlock in Miniflare brokering them at /mcp/{name},
// and real SDK clients (Client + StreamableHTTPClientTransport) talking to
// Airlock's port with a session token. Both response modes of the server are
// covered: SSE streams (/mcp/docs) and plain JSON (/mcp/docs_json), plus a
// resumable SSE server (/mcp/docs_resumable: event ids, priming events with
// retry:, keepalive comments).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { DOCS } from "../demo/mcp-server.mjs";
import { assertError, sleep } from "./helpers.mjs";
import {
  ALL_SERVER_TOOLS,
  IDLE_MS,
  RESOURCES_AT,
  TEMPLATES_AT,
  TOOLS_AT,
  assertNoSecret,
  callsOf,
  connectClient,
  expectRpcError,
  resourceAllowedAt,
  resultText,
  rpcBodies,
  sortedNames,
  startMcpStack,
  waitFor,
} from "./mcp-helpers.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const REDACTED_AUTH = /^(Bearer )?\[REDACTED\]$/;

let stack;

before(async () => {
  stack = await startMcpStack({
    docs: { enableJsonResponse: false, keepAliveMs: 300 },
    docs_json: { enableJsonResponse: true, keepAliveMs: 300 },
    docs_resumable: { enableJsonResponse: false, resumable: true, keepAliveMs: 200 },
  });
});

after(async () => {
  await stack?.close();
});

/** The server's own session id inside Airlock's bound id "<tag>.<server id>". */
function serverSid(boundSid) {
  const dot = boundSid.lastIndexOf(".");
  assert.ok(dot > 0, `bound Mcp-Session-Id has the form <tag>.<server id>: ${boundSid}`);
  const raw = boundSid.slice(dot + 1);
  assert.match(raw, UUID, "server session id");
  return raw;
}

const MODES = [
  { name: "docs", label: "SSE responses", contentType: "text/event-stream" },
  { name: "docs_json", label: "JSON responses", contentType: "application/json" },
];

for (const mode of MODES) {
  describe(`MCP through Airlock, ${mode.label} (/mcp/${mode.name})`, () => {
    const sessions = {};
    let server;
    let cred;
    let controlSid; // the session of the direct (not brokered) control client

    before(async () => {
      server = stack.servers[mode.name];
      cred = stack.creds[mode.name];
      for (const level of ["read", "write", "admin"]) {
        sessions[level] = await stack.mint({ [mode.name]: level }, { agent: `agent-${level}`, user: `user-${mode.name}` });
      }
    });

    test("control: the server itself, asked directly, offers everything", async () => {
      const c = await connectClient(new URL(server.url), cred);
      controlSid = c.sessionId;
      try {
        assert.deepEqual(sortedNames((await c.client.listTools()).tools), ALL_SERVER_TOOLS);
        assert.equal((await c.client.listResources()).resources.length, Object.keys(DOCS).length);
        assert.equal((await c.client.listPrompts()).prompts.length, 2);
        const dump = await c.client.callTool({ name: "debug_dump", arguments: {} });
        assert.ok(resultText(dump).includes(cred), "debug_dump really dumps the credential");
      } finally {
        await c.close();
      }
    });

    test("tools/list shows exactly the tools allowed at the session's level", async () => {
      for (const level of ["read", "write", "admin"]) {
        const c = await stack.connect(mode.name, sessions[level].token);
        const { tools } = await c.client.listTools();
        assert.deepEqual(sortedNames(tools), TOOLS_AT[level], `${level} session`);
        assert.ok(!sortedNames(tools).includes("debug_dump"));
        // the filtered list keeps the server's tool definitions intact
        const search = tools.find((t) => t.name === "search");
        assert.deepEqual(search.inputSchema.required, ["query"]);
        // and the server really answered in this mode
        const listResp = c.http.filter((e) => e.method === "POST" && e.status === 200).at(-1);
        assert.match(listResp.headers["content-type"], new RegExp(mode.contentType.replace("/", "\\/")));
        await c.close();
      }
    });

    test("allowed calls reach the server and return its results", async () => {
      const read = await stack.connect(mode.name, sessions.read.token);
      const raw = serverSid(read.sessionId);
      const query = `find-${randomBytes(6).toString("hex")}`;
      const before = server.requests.length;
      const r = await read.client.callTool({ name: "search", arguments: { query, limit: 3 } });
      assert.equal(r.isError, undefined, resultText(r));
      assert.equal(resultText(r), `search results for "${query}" (limit 3) in session ${raw}`);
      const calls = callsOf(server, "tools/call", before);
      assert.equal(calls.length, 1);
      assert.deepEqual(calls[0].params.arguments, { query, limit: 3 });

      // forwarded as they are: ping, logging/setLevel
      const nBefore = server.requests.length;
      await read.client.ping();
      await read.client.setLoggingLevel("debug");
      assert.deepEqual(rpcBodies(server, nBefore).map((b) => b.method), ["ping", "logging/setLevel"]);
      // the headers the server relies on arrive (and only allowlisted ones)
      const seen = server.requests.at(-1).headers;
      assert.equal(seen["mcp-session-id"], raw);
      assert.ok(seen["mcp-protocol-version"], "mcp-protocol-version forwarded");
      assert.match(seen.accept, /text\/event-stream/);
      assert.match(seen["content-type"], /^application\/json/);

      const write = await stack.connect(mode.name, sessions.write.token);
      const p = await write.client.callTool({ name: "create_page", arguments: { title: "Launch notes" } });
      assert.equal(resultText(p), 'created page "Launch notes"');

      const admin = await stack.connect(mode.name, sessions.admin.token);
      const d = await admin.client.callTool({ name: "delete_space", arguments: { space: "sandbox" } });
      assert.equal(resultText(d), 'deleted space "sandbox"');
      for (const c of [read, write, admin]) await c.close();
    });

    test("denied and unknown tools fail with 'Tool not found' and the server sees nothing", async () => {
      const denied = {
        read: ["create_page", "delete_space", "debug_dump", "no_such_tool"],
        write: ["delete_space", "debug_dump", "no_such_tool"],
        admin: ["debug_dump", "no_such_tool"],
      };
      const messages = new Set();
      for (const [level, names] of Object.entries(denied)) {
        const c = await stack.connect(mode.name, sessions[level].token);
        for (const name of names) {
          const before = server.requests.length;
          const err = await expectRpcError(
            c.client.callTool({ name, arguments: { title: "t", space: "s" } }),
            -32602,
            "Tool not found",
            `${level} calls ${name}`,
          );
          messages.add(err.message);
          await sleep(20);
          assert.equal(server.requests.length - before, 0, `${level} calls ${name}: the server received a request`);
        }
        await c.close();
      }
      // a denied tool and an unknown one are indistinguishable
      assert.equal(messages.size, 1, [...messages].join(" | "));
      assert.equal(
        server.requests.filter(
          (r) =>
            r.body?.method === "tools/call" &&
            r.body.params?.name === "debug_dump" &&
            r.headers["mcp-session-id"] !== controlSid,
        ).length,
        0,
        "debug_dump was never called through Airlock",
      );
    });

    test("the credential never reaches the client, even from a tool that echoes it", async () => {
      const c = await stack.connect(mode.name, sessions.read.token);
      const r = await c.client.callTool({ name: "whoami", arguments: {} });
      const text = resultText(r);
      assert.match(text, /^authorization received: /);
      assert.match(text.slice("authorization received: ".length), REDACTED_AUTH, text);
      // the server did receive (and echo) the real credential
      const hit = callsOf(server, "tools/call").filter((b) => b.params.name === "whoami").at(-1);
      assert.ok(hit, "whoami reached the server");

      const failed = await c.client.callTool({ name: "whoami", arguments: { fail: true } });
      assert.equal(failed.isError, true);
      assert.match(resultText(failed), /^whoami failed; authorization was (Bearer )?\[REDACTED\]$/);

      if (mode.contentType === "text/event-stream") {
        // the tool's log notification travels in the same SSE stream
        await waitFor(() => c.logs.length >= 2, { label: "log notifications" });
        for (const l of c.logs) assert.match(String(l.data), /^whoami saw authorization: (Bearer )?\[REDACTED\]$/);
      }
      // the server echoes the credential in a response header on every response
      const echoed = c.http.map((e) => e.headers["x-seen-authorization"]).filter((v) => v !== undefined);
      assert.ok(echoed.length >= 3, "x-seen-authorization reached the client");
      for (const v of echoed) assert.match(v, REDACTED_AUTH);
      assertNoSecret(c.receivedText(), cred, "whoami client");
      await c.close();
    });

    test("resources: list, templates and reads are filtered and enforced by level", async () => {
      const read = await stack.connect(mode.name, sessions.read.token);
      const admin = await stack.connect(mode.name, sessions.admin.token);
      for (const [level, c] of [["read", read], ["admin", admin]]) {
        const { resources } = await c.client.listResources();
        assert.deepEqual(sortedNames(resources, "uri"), RESOURCES_AT[level], `${level} resources/list`);
        const { resourceTemplates } = await c.client.listResourceTemplates();
        assert.deepEqual(sortedNames(resourceTemplates, "uriTemplate"), TEMPLATES_AT[level], `${level} templates`);
      }

      const ok = await read.client.readResource({ uri: "docs://public/readme" });
      assert.equal(ok.contents[0].text, DOCS["docs://public/readme"]);
      const page = await read.client.readResource({ uri: "docs://public/pages/42" });
      assert.equal(page.contents[0].text, "public page 42");
      const secret = await admin.client.readResource({ uri: "docs://private/salaries" });
      assert.equal(secret.contents[0].text, DOCS["docs://private/salaries"]);

      const refusals = [
        [read, "docs://private/salaries"],
        [read, "docs://private/vault/1"],
        [read, "docs://internal/notes"],
        [admin, "docs://internal/notes"], // no prefix covers it: denied at every level
        [read, "docs://nowhere/at/all"],
      ];
      for (const [c, uri] of refusals) {
        const before = server.requests.length;
        await expectRpcError(c.client.readResource({ uri }), -32002, "Resource not found", uri);
        await sleep(20);
        assert.equal(server.requests.length - before, 0, `${uri}: the server received a request`);
      }
      assert.ok(
        !server.requests.some((r) => r.body?.method === "resources/read" && r.body.params.uri === "docs://internal/notes"),
      );
      await read.close();
      await admin.close();
    });

    test("resource URIs with dot segments cannot climb out of an allowed prefix", async () => {
      const c = await stack.connect(mode.name, sessions.read.token);
      const secretText = DOCS["file:///srv/docs/private/keys.txt"];
      // control: the allowed file resource works
      const ok = await c.client.readResource({ uri: "file:///srv/docs/public/index.txt" });
      assert.equal(ok.contents[0].text, DOCS["file:///srv/docs/public/index.txt"]);
      const climbs = [
        "file:///srv/docs/public/../private/keys.txt",
        "file:///srv/docs/public/%2e%2e/private/keys.txt",
        "file:///srv/docs/public/%2E%2E/private/keys.txt",
        "file:///srv/docs/public/.%2e/private/keys.txt",
        "file:///srv/docs/public/./../private/keys.txt",
        "file:///srv/docs/public/x/../../private/keys.txt",
        "file:///srv/docs/public/..\\private\\keys.txt",
      ];
      const failures = [];
      try {
        for (const uri of climbs) {
          assert.equal(new URL(uri).href, "file:///srv/docs/private/keys.txt", `the server resolves ${uri} to the private file`);
          const before = server.requests.length;
          let outcome;
          try {
            const r = await c.client.readResource({ uri });
            outcome = `RESULT ${JSON.stringify(r.contents.map((x) => x.text))}`;
          } catch (e) {
            outcome = `error ${e.code} ${e.message}`;
          }
          await sleep(20);
          const reached = server.requests.slice(before).filter((r) => r.body?.method === "resources/read").length;
          if (outcome.includes(secretText) || reached > 0 || !outcome.startsWith("error -32002")) {
            failures.push(`${uri}: server received ${reached} resources/read; client got ${outcome}`);
          }
        }
      } finally {
        await c.close();
      }
      assert.deepEqual(failures, [], "a read session reached admin-only content through dot segments");
    });

    test("prompts and completions: filtered and enforced like tools", async () => {
      const c = await stack.connect(mode.name, sessions.read.token);
      const { prompts } = await c.client.listPrompts();
      assert.deepEqual(sortedNames(prompts), ["summarize"]);
      const p = await c.client.getPrompt({ name: "summarize", arguments: { topic: "search" } });
      assert.equal(p.messages[0].content.text, "Please summarize the docs about search.");
      const done = await c.client.complete({ ref: { type: "ref/prompt", name: "summarize" }, argument: { name: "topic", value: "s" } });
      assert.deepEqual(done.completion.values, ["security", "search", "spaces"]);

      const admin = await stack.connect(mode.name, sessions.admin.token);
      for (const [who, name] of [[c, "internal_review"], [admin, "internal_review"], [c, "no_such_prompt"]]) {
        const before = server.requests.length;
        await expectRpcError(who.client.getPrompt({ name, arguments: { target: "x" } }), -32602, "Prompt not found", name);
        await sleep(20);
        assert.equal(server.requests.length - before, 0, `prompts/get ${name}: the server received a request`);
      }
      const completions = [
        { ref: { type: "ref/prompt", name: "internal_review" }, argument: { name: "target", value: "a" } },
        { ref: { type: "ref/resource", uri: "docs://private/vault/{id}" }, argument: { name: "id", value: "1" } },
      ];
      for (const params of completions) {
        const before = server.requests.length;
        await expectRpcError(c.client.complete(params), -32602, undefined, `complete ${JSON.stringify(params.ref)}`);
        await sleep(20);
        assert.equal(server.requests.length - before, 0, "completion/complete: the server received a request");
      }
      assertNoSecret(c.receivedText() + admin.receivedText(), cred, "prompts");
      await c.close();
      await admin.close();
    });

    test("the GET stream carries server notifications through Airlock", async () => {
      const c = await stack.connect(mode.name, sessions.write.token);
      const raw = serverSid(c.sessionId);
      await waitFor(() => server.requests.some((r) => r.method === "GET" && r.headers["mcp-session-id"] === raw), {
        label: "the client's GET stream at the server",
      });
      await sleep(100); // the server registers the stream once its headers are out
      await c.client.callTool({ name: "create_page", arguments: { title: "Ping" } });
      await waitFor(() => c.notifications.length >= 1, { label: "notifications/resources/list_changed" });
      assert.equal(c.notifications[0].method, "notifications/resources/list_changed");
      const get = c.http.find((e) => e.method === "GET");
      assert.equal(get.status, 200);
      assert.match(get.headers["content-type"], /^text\/event-stream/);
      assert.match(get.text, /notifications\/resources\/list_changed/);
      await c.close();
    });

    test("DELETE (terminateSession) ends the session at the server", async () => {
      const c = await stack.connect(mode.name, sessions.admin.token);
      const raw = serverSid(c.sessionId);
      assert.ok(server.sessions.has(raw));
      await c.transport.terminateSession();
      const del = server.requests.filter((r) => r.method === "DELETE" && r.headers["mcp-session-id"] === raw);
      assert.equal(del.length, 1, "the server received the DELETE with its own session id");
      await waitFor(() => del[0].status !== null, { label: "DELETE response" });
      assert.equal(del[0].status, 200);
      assert.ok(!server.sessions.has(raw), "the server session is gone");
      // the id still verifies at Airlock, so the server's own 404 (which tells a
      // client to initialize again) comes through, not an Airlock error
      const before = server.requests.length;
      const r = await stack.raw(mode.name, { token: sessions.admin.token, sid: c.sessionId, body: { jsonrpc: "2.0", id: 99, method: "ping" } });
      assert.equal(r.status, 404, r.text);
      assert.equal(r.json?.jsonrpc, "2.0", `the server's JSON-RPC error: ${r.text}`);
      assert.equal(server.requests.length - before, 1);
      await c.close();
    });

    test("the server saw the injected credential on every request, never a session token or a bound id", async () => {
      assert.ok(server.requests.length > 20, `only ${server.requests.length} requests`);
      for (const r of server.requests) {
        assert.equal(r.headers.authorization, `Bearer ${cred}`, `${r.method} ${r.body?.method ?? ""}`);
        assert.equal(r.authorized, true);
        const everything = JSON.stringify(r.headers) + r.rawBody + r.path;
        for (const token of stack.tokens) assert.ok(!everything.includes(token), "a session token reached the server");
        assert.ok(!everything.includes(stack.h.secrets.AIRLOCK_ADMIN_KEY), "the admin key reached the server");
        const sid = r.headers["mcp-session-id"];
        if (sid !== undefined) assert.match(sid, UUID, "the server only ever sees its own session ids");
      }
      // nothing but the endpoint path
      assert.ok(server.requests.every((r) => r.path === "/mcp"));
    });

    test("nothing any client received contains the credential; session ids handed out are bound", async () => {
      const mine = stack.clients.filter((c) => c.url.endsWith(`/mcp/${mode.name}`));
      assert.ok(mine.length >= 10, `clients: ${mine.length}`);
      for (const c of mine) {
        assertNoSecret(c.receivedText(), cred, "client");
        for (const e of c.http) {
          const sid = e.headers["mcp-session-id"];
          if (sid !== undefined) {
            assert.equal(sid, c.sessionId, "every Mcp-Session-Id a client sees is its bound id");
            assert.doesNotMatch(sid, UUID);
          }
        }
      }
    });

    test("audit lines name the MCP method, target and argument names, never argument values", async () => {
      const c = await stack.connect(mode.name, sessions.read.token);
      const needle = `needle-${randomBytes(8).toString("hex")}`;
      await c.client.callTool({ name: "search", arguments: { query: needle, limit: 7 } });
      await expectRpcError(c.client.callTool({ name: "create_page", arguments: { title: needle } }), -32602, "Tool not found");
      await expectRpcError(c.client.readResource({ uri: `docs://private/${needle}` }), -32002, "Resource not found");
      await expectRpcError(c.client.getPrompt({ name: "internal_review", arguments: { target: needle } }), -32602, "Prompt not found");
      await c.close();
      await sleep(300);

      const mine = stack.h.audit.filter((a) => a.tool === mode.name && a.session_id === sessions.read.session_id);
      for (const a of mine) assert.equal(a.route, "mcp");
      const find = (pred, what) => {
        const hits = mine.filter(pred);
        assert.ok(hits.length >= 1, `no audit line for ${what}`);
        return hits.at(-1);
      };
      const search = find((a) => a.mcp_method === "tools/call" && a.mcp_target === "search" && a.mcp_args?.includes("limit"), "search");
      assert.equal(search.decision, "allow");
      assert.deepEqual([...search.mcp_args].sort(), ["limit", "query"]);
      assert.equal(search.upstream_status, 200);
      const page = find((a) => a.mcp_method === "tools/call" && a.mcp_target === "create_page", "create_page");
      assert.equal(page.decision, "deny");
      assert.equal(page.reason, "mcp_tool_not_allowed");
      assert.deepEqual(page.mcp_args, ["title"]);
      assert.equal(page.upstream_status, null);
      const res = find((a) => a.mcp_method === "resources/read", "resources/read");
      assert.equal(res.decision, "deny");
      assert.equal(res.reason, "mcp_resource_not_allowed");
      const prompt = find((a) => a.mcp_method === "prompts/get" && a.mcp_target === "internal_review", "prompts/get");
      assert.equal(prompt.decision, "deny");
      assert.equal(prompt.reason, "mcp_prompt_not_allowed");
      find((a) => a.mcp_method === "initialize" && a.decision === "allow", "initialize");
      find((a) => a.mcp_method === "tools/list" && a.decision === "allow", "tools/list");

      // exactly one audit line per HTTP request the SDK clients made (streams included)
      // (a client left open by a failed test keeps its GET stream, unlogged)
      const mineClients = stack.clients.filter((x) => x.url.endsWith(`/mcp/${mode.name}`) && x.closed);
      const entries = mineClients.flatMap((x) => x.http);
      assert.ok(entries.length > 50, `requests: ${entries.length}`);
      const unlogged = () => entries.filter((e) => !stack.h.audit.some((l) => l.request_id === e.headers["x-airlock-request-id"]));
      // abandoned GET streams are logged once idle for IDLE_MS (see below)
      await waitFor(() => unlogged().length === 0, { label: "audit lines", timeoutMs: IDLE_MS * 3 + 2000 }).catch(() => {});
      assert.deepEqual(
        unlogged().map((e) => [e.method, e.status, e.headers["content-type"], e.text.slice(0, 60)]),
        [],
        "requests without an audit line (GET streams are logged when they end)",
      );
      await sleep(150);
      for (const e of entries) {
        const id = e.headers["x-airlock-request-id"];
        assert.ok(id, "x-airlock-request-id");
        const lines = stack.h.audit.filter((l) => l.request_id === id);
        assert.equal(lines.length, 1, `${e.method}: ${lines.length} audit lines`);
        assert.equal(lines[0].route, "mcp");
        assert.equal(lines[0].tool, mode.name);
        assert.equal(lines[0].method, e.method);
      }

      // argument VALUES appear nowhere in workerd's output (the URI is a target, not an argument)
      const lines = [...stack.h.stdout, ...stack.h.stderr].filter((l) => !l.includes(`docs://private/${needle}`));
      for (const l of lines) assert.ok(!l.includes(needle), `argument value in workerd output: ${l}`);
      for (const a of stack.h.audit) {
        const s = JSON.stringify(a);
        assert.ok(!s.includes(cred), "credential in an audit line");
        for (const token of stack.tokens) assert.ok(!s.includes(token), "session token in an audit line");
        if (a.mcp_method === "tools/call" || a.mcp_method === "prompts/get") assert.ok(!s.includes(needle), `value in audit: ${s}`);
      }
    });
  });
}

describe("MCP route edges (/mcp/docs)", () => {
  let server;
  let a; // read session with a connected client
  let b; // another read session
  let clientA;

  before(async () => {
    server = stack.servers.docs;
    a = await stack.mint({ docs: "read", echo: "read" }, { agent: "agent-a" });
    b = await stack.mint({ docs: "read" }, { agent: "agent-b" });
    clientA = await stack.connect("docs", a.token);
  });

  const ping = (id) => ({ jsonrpc: "2.0", id, method: "ping" });

  test("an Mcp-Session-Id is bound to its Airlock session; raw server ids are refused", async () => {
    const bound = clientA.sessionId;
    const raw = serverSid(bound);
    const tag = bound.slice(0, bound.lastIndexOf("."));
    const before = server.requests.length;
    const refused = [
      ["session B + A's id (POST)", { token: b.token, sid: bound, body: ping(1) }],
      ["session B + A's id (GET)", { token: b.token, sid: bound, method: "GET" }],
      ["session B + A's id (DELETE)", { token: b.token, sid: bound, method: "DELETE" }],
      ["session A + raw server id", { token: a.token, sid: raw, body: ping(2) }],
      ["session B + raw server id", { token: b.token, sid: raw, body: ping(3) }],
      ["session A + tampered tag", { token: a.token, sid: `${tag.slice(0, -2)}AA.${raw}`, body: ping(4) }],
      ["session A + its tag on another id", { token: a.token, sid: `${tag}.00000000-0000-4000-8000-000000000000`, body: ping(5) }],
    ];
    for (const [label, req] of refused) {
      const r = await stack.raw("docs", req);
      assertError(r, 404, "mcp_session_invalid", label);
      assert.ok(!r.text.includes(raw) || label.includes("raw"), `${label}: the answer reveals the server id`);
    }
    await sleep(30);
    assert.equal(server.requests.length - before, 0, "the server received a request");

    // control: A's own id works from A's session; sandbox-only headers stay behind
    const ok = await stack.raw("docs", {
      token: a.token,
      sid: bound,
      body: ping(6),
      headers: { cookie: "sandbox=1", "x-forwarded-for": "10.9.9.9", "x-unlisted": "nope" },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.match(ok.text, /"id":6/);
    assert.equal(server.requests.length - before, 1);
    const seen = server.requests.at(-1).headers;
    assert.equal(seen["mcp-session-id"], raw);
    for (const h of ["cookie", "x-forwarded-for", "x-unlisted"]) assert.equal(seen[h], undefined, `${h} forwarded`);
    assert.equal(ok.headers["mcp-session-id"] ?? bound, bound, "a response's Mcp-Session-Id is the bound one");
  });

  test("Airlock's own JSON-RPC answers: denied call shapes, unknown methods", async () => {
    const sid = clientA.sessionId;
    const before = server.requests.length;
    const cases = [
      [{ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "create_page", arguments: { title: "x" } } },
        { jsonrpc: "2.0", id: 7, error: { code: -32602, message: "Tool not found" } }],
      [{ jsonrpc: "2.0", id: "s-8", method: "tools/call", params: { name: "no_such_tool" } },
        { jsonrpc: "2.0", id: "s-8", error: { code: -32602, message: "Tool not found" } }],
      [{ jsonrpc: "2.0", id: 9, method: "prompts/get", params: { name: "internal_review" } },
        { jsonrpc: "2.0", id: 9, error: { code: -32602, message: "Prompt not found" } }],
      [{ jsonrpc: "2.0", id: 10, method: "resources/read", params: { uri: "docs://private/salaries" } },
        { jsonrpc: "2.0", id: 10, error: { code: -32002, message: "Resource not found" } }],
      [{ jsonrpc: "2.0", id: 11, method: "resources/subscribe", params: { uri: "docs://internal/notes" } },
        { jsonrpc: "2.0", id: 11, error: { code: -32002, message: "Resource not found" } }],
      [{ jsonrpc: "2.0", id: 12, method: "sampling/createMessage", params: {} },
        { jsonrpc: "2.0", id: 12, error: { code: -32601, message: "Method not found" } }],
      [{ jsonrpc: "2.0", id: 13, method: "foo/bar" },
        { jsonrpc: "2.0", id: 13, error: { code: -32601, message: "Method not found" } }],
    ];
    for (const [body, expected] of cases) {
      const r = await stack.raw("docs", { token: a.token, sid, body });
      assert.equal(r.status, 200, `${body.method}: ${r.status} ${r.text}`);
      assert.deepEqual(r.json, expected, `${body.method} ${JSON.stringify(body.params ?? {})}`);
      assert.ok(r.headers["x-airlock-request-id"]);
      const lines = await stack.h.auditFor(r.headers["x-airlock-request-id"]);
      assert.equal(lines.length, 1, "one audit line");
      assert.equal(lines[0].decision, "deny");
      assert.equal(lines[0].mcp_method, body.method);
    }
    await sleep(30);
    assert.equal(server.requests.length - before, 0, "the server received a request");
  });

  test("odd message shapes and parser differentials never smuggle a call past the policy", async () => {
    const sid = clientA.sessionId;
    const bodies = [
      // duplicate keys: whatever a parser picks, a denied call must not run
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"debug_dump","arguments":{}}}',
      '{"jsonrpc":"2.0","id":2,"method":"tools/list","method":"tools/call","params":{"name":"debug_dump"}}',
      '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"debug_dump"},"params":{"name":"search","arguments":{"query":"dup"}}}',
      // escapes, case, whitespace, wrong types, missing names
      '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"debug\\u005fdump"}}',
      '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"Search "}}',
      '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"DEBUG_DUMP"}}',
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":["debug_dump"]}}',
      '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{}}',
      '{"jsonrpc":"2.0","id":9,"method":"tools/call"}',
      '{"jsonrpc":"2.0","id":10,"method":"TOOLS/CALL","params":{"name":"debug_dump"}}',
      // a call without an id (notification form)
      '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"debug_dump"}}',
      // prompts and resources the same way
      '{"jsonrpc":"2.0","id":11,"method":"prompts/get","params":{"name":"summarize","name":"internal_review"}}',
      '{"jsonrpc":"2.0","id":12,"method":"resources/read","params":{"uri":"docs://public/readme","uri":"docs://private/salaries"}}',
      '{"jsonrpc":"2.0","id":13,"method":"resources/read","params":{"uri":"docs://public/../private/salaries"}}',
      '{"jsonrpc":"2.0","id":14,"method":"resources/read","params":{"uri":"DOCS://public/x"}}',
    ];
    const allowedTools = new Set(TOOLS_AT.read);
    for (const body of bodies) {
      const before = server.requests.length;
      const r = await stack.raw("docs", { token: a.token, sid, body });
      assert.ok(r.status === 200 || r.status === 202 || r.status === 400, `${body}: ${r.status} ${r.text}`);
      await sleep(20);
      for (const seen of server.requests.slice(before)) {
        // if it was forwarded, what the server parsed must be something the session may do
        const m = seen.body;
        if (m?.method === "tools/call") assert.ok(allowedTools.has(m.params?.name), `${body} ran ${m.params?.name} at the server`);
        if (m?.method === "prompts/get") assert.equal(m.params?.name, "summarize", `${body} reached the server`);
        if (m?.method === "resources/read") {
          assert.ok(resourceAllowedAt(m.params?.uri, "read"), `${body} read ${m.params?.uri} at the server`);
        }
        assert.ok(!["TOOLS/CALL"].includes(m?.method), `${body} reached the server`);
      }
      assertNoSecret(r.text + JSON.stringify(r.headers), stack.creds.docs, body);
    }
  });

  test("batches, malformed and oversized messages are refused before the server", async () => {
    const sid = clientA.sessionId;
    const before = server.requests.length;
    const jsonRpcError = (r, status, code, label) => {
      assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.json?.jsonrpc, "2.0", `${label}: JSON-RPC error body ${r.text}`);
      assert.equal(r.json.error?.code, code, `${label}: ${r.text}`);
    };
    jsonRpcError(await stack.raw("docs", { token: a.token, sid, body: [ping(1), ping(2)] }), 400, -32600, "batch");
    jsonRpcError(await stack.raw("docs", { token: a.token, sid, body: [] }), 400, -32600, "empty batch");
    jsonRpcError(await stack.raw("docs", { token: a.token, sid, body: "{not json" }), 400, -32700, "unparseable");
    jsonRpcError(await stack.raw("docs", { token: a.token, sid, body: '"just a string"' }), 400, -32600, "not an object");
    jsonRpcError(await stack.raw("docs", { token: a.token, sid, body: { jsonrpc: "1.0", id: 1, method: "ping" } }), 400, -32600, "wrong jsonrpc");
    const big = {
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "search", arguments: { query: "x".repeat(1024 * 1024 + 10) } },
    };
    const r = await stack.raw("docs", { token: a.token, sid, body: big });
    assert.equal(r.status, 413, `> 1 MiB: ${r.status} ${r.text.slice(0, 200)}`);
    await sleep(30);
    assert.equal(server.requests.length - before, 0, "the server received a request");
  });

  test("route errors: methods, servers outside the scope, missing token", async () => {
    const sid = clientA.sessionId;
    const before = server.requests.length;
    for (const method of ["PUT", "PATCH"]) {
      assertError(await stack.raw("docs", { token: a.token, sid, method, body: ping(1) }), 405, "method_not_allowed", method);
    }
    const forbidden = [
      ["not an MCP server", await stack.raw("echo", { token: a.token, body: ping(1) })],
      ["unknown server", await stack.raw("nope", { token: a.token, body: ping(1) })],
      ["not in scope", await stack.raw("docs_json", { token: a.token, body: ping(1) })],
    ];
    for (const [label, r] of forbidden) assertError(r, 403, "tool_not_allowed", label);
    assert.deepEqual(forbidden[0][1].json, forbidden[1][1].json);
    assert.deepEqual(forbidden[1][1].json, forbidden[2][1].json);
    // the MCP server is not reachable around the MCP inspection through /t/
    const call = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "debug_dump" } });
    for (const path of ["/t/docs", "/t/docs/", "/t/docs/mcp", "/t/docs?x=1"]) {
      for (const method of ["POST", "GET"]) {
        const r = await stack.h.fetch(path, {
          method,
          headers: {
            authorization: `Bearer ${a.token}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-session-id": sid,
          },
          body: method === "POST" ? call : undefined,
        });
        assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.text}`);
        assertNoSecret(r.text, stack.creds.docs, path);
      }
    }
    assertError(await stack.raw("docs", { body: ping(1) }), 401, "invalid_session", "no token");
    assertError(await stack.raw("docs", { token: `${a.token}x`, body: ping(1) }), 401, "invalid_session", "bad token");
    await sleep(30);
    assert.equal(server.requests.length - before, 0);
  });

  test("a GET stream the sandbox hangs up on is audited as cancelled and released upstream", async (t) => {
    // The runtime does not tell the worker that the sandbox went away while
    // the stream is quiet; Airlock's watchdog notices the stalled stream
    // after limits.upstream_idle_timeout_ms and then writes the record and
    // releases the upstream connection.
    const c = await stack.connect("docs", b.token);
    const raw = serverSid(c.sessionId);
    const get = c.http.find((e) => e.method === "GET");
    const upstream = server.requests.find((r) => r.method === "GET" && r.headers["mcp-session-id"] === raw);
    assert.ok(upstream, "the GET stream reached the server");
    await sleep(600); // a keepalive comment or two
    assert.match(get.text, /: keepalive/);
    await c.close();
    const t0 = Date.now();
    const lines = await stack.h.auditFor(get.headers["x-airlock-request-id"], { timeoutMs: IDLE_MS * 3 + 2000 });
    assert.equal(lines.length, 1, "one audit line for the GET stream");
    assert.equal(lines[0].stream, "cancelled");
    assert.equal(lines[0].method, "GET");
    assert.equal(lines[0].mcp_method, null);
    await waitFor(() => upstream.status !== null, { label: "the upstream GET released", timeoutMs: 3000 });
    t.diagnostic(`audited and released ${Date.now() - t0} ms after the sandbox hung up (idle timeout ${IDLE_MS} ms)`);
  });

  test("Basic auth with the session token as password works for a real client", async () => {
    const c = await stack.connect("docs", b.token, { basic: true });
    const { tools } = await c.client.listTools();
    assert.deepEqual(sortedNames(tools), TOOLS_AT.read);
    const r = await c.client.callTool({ name: "search", arguments: { query: "basic" } });
    assert.match(resultText(r), /^search results for "basic"/);
    const seen = server.requests.at(-1);
    assert.equal(seen.headers.authorization, `Bearer ${stack.creds.docs}`);
    await c.close();
  });

  test("server -> client requests (roots/list) and the client's responses pass through", async () => {
    const roots = [{ uri: "file:///home/agent/project", name: "project" }];
    const c = await stack.connect("docs", b.token, { roots });
    const before = server.requests.length;
    const r = await c.client.callTool({ name: "list_roots", arguments: {} });
    assert.equal(resultText(r), "client roots: file:///home/agent/project");
    const responses = rpcResponses(server, before);
    assert.equal(responses.length, 1, "the client's JSON-RPC response reached the server");
    assert.deepEqual(responses[0].result.roots, roots);
    await c.close();
  });
});

function rpcResponses(server, since) {
  return server.requests
    .slice(since)
    .filter((r) => r.method === "POST" && r.body && !r.body.method && ("result" in r.body || "error" in r.body))
    .map((r) => r.body);
}

describe("resumable SSE server (/mcp/docs_resumable): event ids, priming events, retry, comments", () => {
  let server;
  let session;

  before(async () => {
    server = stack.servers.docs_resumable;
    session = await stack.mint({ docs_resumable: "read" });
  });

  /** Parse an SSE body into events [{ id, event, retry, data, comments }]. */
  function sseEvents(text) {
    return text
      .split(/\n\n/)
      .filter((block) => block.length > 0)
      .map((block) => {
        const ev = { data: [], comments: [] };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) ev.comments.push(line);
          else {
            const i = line.indexOf(":");
            const field = i === -1 ? line : line.slice(0, i);
            const value = i === -1 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "data") ev.data.push(value);
            else ev[field] = value;
          }
        }
        ev.data = ev.data.join("\n");
        return ev;
      });
  }

  test("a priming event (id + retry + empty data) in a list response passes unchanged", async () => {
    const c = await stack.connect("docs_resumable", session.token);
    // raw tools/list in the client's session, to see the stream as sent
    const r = await stack.raw("docs_resumable", {
      token: session.token,
      sid: c.sessionId,
      body: { jsonrpc: "2.0", id: 42, method: "tools/list" },
    });
    assert.equal(r.status, 200);
    assert.match(r.headers["content-type"], /^text\/event-stream/);
    const events = sseEvents(r.text);
    const priming = events[0];
    assert.ok(priming.id, `priming event keeps its id: ${r.text.slice(0, 300)}`);
    assert.equal(priming.retry, "1000", "priming event keeps retry:");
    assert.equal(priming.data, "", `priming event data must stay empty, got: ${priming.data}`);
    const messages = events.filter((e) => e.data !== "").map((e) => JSON.parse(e.data));
    assert.equal(messages.length, 1, `exactly one JSON-RPC message, got ${JSON.stringify(messages)}`);
    assert.equal(messages[0].id, 42);
    assert.deepEqual(sortedNames(messages[0].result.tools), TOOLS_AT.read);
    assert.ok(events.every((e) => e.id), "every event keeps its id:");
    await c.close();
  });

  test("the SDK client lists, calls and reads on a resumable server", async () => {
    const c = await stack.connect("docs_resumable", session.token);
    const { tools } = await c.client.listTools();
    assert.deepEqual(sortedNames(tools), TOOLS_AT.read);
    const { resources } = await c.client.listResources();
    assert.deepEqual(sortedNames(resources, "uri"), RESOURCES_AT.read);
    const { prompts } = await c.client.listPrompts();
    assert.deepEqual(sortedNames(prompts), ["summarize"]);
    const r = await c.client.callTool({ name: "search", arguments: { query: "resumable" } });
    assert.match(resultText(r), /^search results for "resumable"/);
    await c.close();
  });

  test("Last-Event-ID is forwarded on a GET (stream resumption)", async () => {
    const c = await stack.connect("docs_resumable", session.token);
    await c.client.callTool({ name: "search", arguments: { query: "before resume" } });
    const raw = serverSid(c.sessionId);
    const lastEventId = `${randomBytes(4).toString("hex")}::1`;
    const ac = new AbortController();
    const resp = await fetch(stack.mcpUrl("docs_resumable"), {
      headers: {
        authorization: `Bearer ${session.token}`,
        accept: "text/event-stream",
        "mcp-session-id": c.sessionId,
        "mcp-protocol-version": "2025-11-25",
        "last-event-id": lastEventId,
      },
      signal: ac.signal,
    });
    ac.abort();
    assert.ok(resp.status < 500, `GET with Last-Event-ID: ${resp.status}`);
    const got = server.requests.filter((r) => r.method === "GET" && r.headers["last-event-id"] === lastEventId);
    assert.equal(got.length, 1, "the server received Last-Event-ID");
    assert.equal(got[0].headers["mcp-session-id"], raw);
    await c.close();
  });

  test("keepalive comments on the GET stream pass through", async () => {
    const c = await stack.connect("docs_resumable", session.token);
    await waitFor(() => c.http.some((e) => e.method === "GET" && e.text.includes(": keepalive")), {
      timeoutMs: 5000,
      label: "a keepalive comment on the GET stream",
    });
    const get = c.http.find((e) => e.method === "GET");
    assert.match(get.text, /(^|\n): keepalive\n\n/);
    assertNoSecret(c.receivedText(), stack.creds.docs_resumable, "resumable client");
    await c.close();
  });
});
