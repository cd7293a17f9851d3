// MCP end to end with the official Python SDK as the client: the script
// clients/python/airlock_mcp_client.py (mcp.client.streamable_http +
// ClientSession, from the .venv-mcp/ venv that scripts/setup builds) talks to
// Airlock in Miniflare, which brokers the TypeScript SDK demo server
// (demo/mcp-server.mjs). Both server response modes: SSE and plain JSON.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DOCS } from "../demo/mcp-server.mjs";
import { REPO_ROOT, sleep } from "./helpers.mjs";
import { RESOURCES_AT, TOOLS_AT, assertNoSecret, callsOf, startMcpStack, waitFor } from "./mcp-helpers.mjs";

const VENV_PYTHON = join(REPO_ROOT, ".venv-mcp", "bin", "python");
const CLIENT = join(REPO_ROOT, "clients", "python", "airlock_mcp_client.py");
const RUN_TIMEOUT_MS = 60_000;

let stack;

before(async () => {
  if (!existsSync(VENV_PYTHON)) {
    throw new Error(`${VENV_PYTHON} is missing: run bash scripts/setup (it builds the MCP Python venv)`);
  }
  stack = await startMcpStack({
    docs: { enableJsonResponse: false, keepAliveMs: 300 },
    docs_json: { enableJsonResponse: true, keepAliveMs: 300 },
    docs_resumable: { enableJsonResponse: false, resumable: true, keepAliveMs: 300 },
  });
});

after(async () => {
  await stack?.close();
});

/** Run the Python client; resolves with its parsed JSON summary (and raw output). */
function runPython(args, token) {
  return new Promise((resolve, reject) => {
    execFile(
      VENV_PYTHON,
      [CLIENT, ...args],
      {
        cwd: REPO_ROOT,
        timeout: RUN_TIMEOUT_MS,
        killSignal: "SIGKILL",
        maxBuffer: 8 * 1024 * 1024,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, AIRLOCK_SESSION_TOKEN: token, PYTHONUNBUFFERED: "1" },
      },
      (err, stdout, stderr) => {
        let summary;
        try {
          summary = JSON.parse(stdout.trim().split("\n").at(-1) || "null");
        } catch {}
        if (err && !summary) {
          reject(new Error(`python client failed (${err.killed ? "timed out" : `exit ${err.code}`}):\n${stdout}\n${stderr}`));
          return;
        }
        resolve({ summary, stdout, stderr, exitCode: err ? err.code : 0 });
      },
    );
  });
}

const errorOf = (code, message) => ({ code, message });

for (const mode of [
  { name: "docs", label: "SSE responses" },
  { name: "docs_json", label: "JSON responses" },
]) {
  describe(`Python SDK client through Airlock, ${mode.label} (/mcp/${mode.name})`, () => {
    test("read session: exact tool list, allowed call works, denied calls fail before the server", async () => {
      const server = stack.servers[mode.name];
      const cred = stack.creds[mode.name];
      const session = await stack.mint({ [mode.name]: "read" }, { agent: "agent-python" });
      const needle = `py-needle-${randomBytes(8).toString("hex")}`;
      const since = server.requests.length;
      const { summary, stdout, stderr, exitCode } = await runPython(
        [
          "--url", stack.mcpUrl(mode.name).href,
          "--call", `search:${JSON.stringify({ query: needle, limit: 2 })}`,
          "--call", "whoami",
          "--call", `create_page:${JSON.stringify({ title: needle })}`,
          "--call", "debug_dump",
          "--call", "no_such_tool",
          "--read", "docs://public/readme",
          "--read", "docs://private/salaries",
          "--prompt", `summarize:${JSON.stringify({ topic: "search" })}`,
          "--prompt", "internal_review",
        ],
        session.token,
      );
      assert.equal(exitCode, 0, `exit ${exitCode}: ${stdout}\n${stderr}`);
      assert.equal(summary.ok, true, stdout);

      assert.equal(summary.server_info.name, "airlock-demo-docs");
      assert.deepEqual(summary.tools, TOOLS_AT.read);
      assert.deepEqual(summary.resources, RESOURCES_AT.read);
      assert.deepEqual(summary.prompts, ["summarize"]);

      // the Mcp-Session-Id the Python client got is Airlock's bound form
      const sid = summary.session_id;
      const raw = sid.slice(sid.lastIndexOf(".") + 1);
      assert.ok(sid.lastIndexOf(".") > 0 && raw.length > 0, `bound session id: ${sid}`);
      assert.ok(server.sessions.has(raw) || server.requests.some((r) => r.headers["mcp-session-id"] === raw));

      const [search, whoami, createPage, debugDump, unknown] = summary.calls;
      assert.deepEqual(search.result, {
        is_error: false,
        text: `search results for "${needle}" (limit 2) in session ${raw}`,
      });
      assert.equal(whoami.result.is_error, false);
      assert.match(whoami.result.text, /^authorization received: (Bearer )?\[REDACTED\]$/);
      assert.deepEqual(createPage.error, errorOf(-32602, "Tool not found"));
      assert.deepEqual(debugDump.error, errorOf(-32602, "Tool not found"));
      assert.deepEqual(unknown.error, errorOf(-32602, "Tool not found"));

      assert.deepEqual(summary.reads, [
        { uri: "docs://public/readme", text: DOCS["docs://public/readme"] },
        { uri: "docs://private/salaries", error: errorOf(-32002, "Resource not found") },
      ]);
      assert.deepEqual(summary.prompts_get, [
        { name: "summarize", text: "Please summarize the docs about search." },
        { name: "internal_review", error: errorOf(-32602, "Prompt not found") },
      ]);
      if (mode.name === "docs") {
        assert.ok(summary.logs.length >= 1, "whoami's log notification arrived over SSE");
        for (const l of summary.logs) assert.match(String(l), /^whoami saw authorization: (Bearer )?\[REDACTED\]$/);
      }

      // what the server received
      const calls = callsOf(server, "tools/call", since).map((b) => b.params.name);
      assert.deepEqual(calls, ["search", "whoami"], "only the allowed tools reached the server");
      assert.equal(callsOf(server, "tools/call", since)[0].params.arguments.query, needle);
      assert.deepEqual(callsOf(server, "resources/read", since).map((b) => b.params.uri), ["docs://public/readme"]);
      assert.deepEqual(callsOf(server, "prompts/get", since).map((b) => b.params.name), ["summarize"]);
      // the client ends its session on exit (DELETE through Airlock)
      await waitFor(
        () => server.requests.slice(since).some((r) => r.method === "DELETE" && r.headers["mcp-session-id"] === raw),
        { label: "the Python client's DELETE at the server" },
      );
      for (const r of server.requests.slice(since)) {
        assert.equal(r.headers.authorization, `Bearer ${cred}`, `${r.method} ${r.body?.method ?? ""}`);
        const everything = JSON.stringify(r.headers) + r.rawBody;
        assert.ok(!everything.includes(session.token), "the session token reached the server");
        if (r.headers["mcp-session-id"] !== undefined) assert.equal(r.headers["mcp-session-id"], raw);
      }

      // nothing the client printed holds the credential; no audit line holds argument values
      assertNoSecret(stdout + stderr, cred, "python client output");
      await sleep(200);
      const mine = stack.h.audit.filter((a) => a.session_id === session.session_id);
      assert.ok(mine.some((a) => a.mcp_method === "tools/call" && a.mcp_target === "search" && a.decision === "allow"));
      const denied = mine.find((a) => a.mcp_target === "create_page");
      assert.equal(denied?.decision, "deny");
      assert.equal(denied.reason, "mcp_tool_not_allowed");
      assert.deepEqual(denied.mcp_args, ["title"]);
      for (const line of [...stack.h.stdout, ...stack.h.stderr]) {
        assert.ok(!line.includes(needle), `argument value in workerd output: ${line}`);
        assert.ok(!line.includes(cred), "credential in workerd output");
      }
    });

    test("write session over Basic auth: create_page allowed, delete_space still denied", async () => {
      const server = stack.servers[mode.name];
      const session = await stack.mint({ [mode.name]: "write" }, { agent: "agent-python-basic" });
      const since = server.requests.length;
      const { summary, stdout, stderr, exitCode } = await runPython(
        [
          "--url", stack.mcpUrl(mode.name).href,
          "--basic",
          "--call", `create_page:${JSON.stringify({ title: "From Python" })}`,
          "--call", `delete_space:${JSON.stringify({ space: "all" })}`,
        ],
        session.token,
      );
      assert.equal(exitCode, 0, `${stdout}\n${stderr}`);
      assert.deepEqual(summary.tools, TOOLS_AT.write);
      assert.deepEqual(summary.calls[0].result, { is_error: false, text: 'created page "From Python"' });
      assert.deepEqual(summary.calls[1].error, errorOf(-32602, "Tool not found"));
      assert.deepEqual(callsOf(server, "tools/call", since).map((b) => b.params.name), ["create_page"]);
    });
  });
}

test("Python client on a resumable SSE server (priming events with retry:, event ids)", async () => {
  const session = await stack.mint({ docs_resumable: "read" });
  const { summary, stdout, stderr } = await runPython(
    ["--url", stack.mcpUrl("docs_resumable").href, "--call", `search:${JSON.stringify({ query: "resumable" })}`],
    session.token,
  );
  assert.equal(summary.ok, true, `${stdout}\n${stderr}`);
  assert.deepEqual(summary.tools, TOOLS_AT.read);
  assert.match(summary.calls[0].result.text, /^search results for "resumable"/);
});

test("Python client without access: a 403 from Airlock is a clean failure, nothing reaches the server", async () => {
  const session = await stack.mint({ docs_json: "read" });
  const since = stack.servers.docs.requests.length;
  const { summary, exitCode } = await runPython(["--url", stack.mcpUrl("docs").href], session.token);
  assert.equal(exitCode, 1);
  assert.equal(summary.ok, false);
  assert.equal(stack.servers.docs.requests.length - since, 0);
});
