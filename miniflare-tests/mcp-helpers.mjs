// Harness for the MCP suites: real MCP servers (demo/mcp-server.mjs, built on
// the official TypeScript SDK) on loopback, the built Airlock worker in
// Miniflare brokering them at /mcp/{name}, and real SDK clients connected to
// Airlock's port.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { startMcpServer } from "../demo/mcp-server.mjs";
import { REPO_ROOT, randomSecret, secretWindows, sleep, startAirlock, testPolicy } from "./helpers.mjs";

export const MCP_PROTOCOL_VERSION = "2025-11-25";
/** limits.upstream_idle_timeout_ms of the MCP suites' policy. */
export const IDLE_MS = 1500;

/** What the policy grants on every MCP server of these suites. */
export const MCP_RULES = {
  tools: {
    search: "read",
    whoami: "read",
    list_roots: "read",
    create_page: "write",
    delete_space: "admin",
  },
  // debug_dump (and anything else) is not named: denied at every level.
  resources: [
    { prefix: "docs://public/", level: "read" },
    { prefix: "docs://private/", level: "admin" },
    { prefix: "file:///srv/docs/public/", level: "read" },
    { prefix: "file:///srv/docs/private/", level: "admin" },
  ],
  prompts: { summarize: "read" },
};

/** Tools each level must see in tools/list, sorted. */
export const TOOLS_AT = {
  read: ["list_roots", "search", "whoami"],
  write: ["create_page", "list_roots", "search", "whoami"],
  admin: ["create_page", "delete_space", "list_roots", "search", "whoami"],
};
export const ALL_SERVER_TOOLS = ["create_page", "debug_dump", "delete_space", "list_roots", "search", "whoami"];

export const RESOURCES_AT = {
  read: ["docs://public/guide", "docs://public/readme", "file:///srv/docs/public/index.txt"],
  write: ["docs://public/guide", "docs://public/readme", "file:///srv/docs/public/index.txt"],
  admin: [
    "docs://private/salaries",
    "docs://public/guide",
    "docs://public/readme",
    "file:///srv/docs/private/keys.txt",
    "file:///srv/docs/public/index.txt",
  ],
};

/** Whether a resource URI, as a server resolves it (new URL), is within what `level` may read. */
export function resourceAllowedAt(uri, level) {
  let href;
  try {
    href = new URL(uri).href;
  } catch {
    return false;
  }
  const order = { read: 0, write: 1, admin: 2 };
  const best = MCP_RULES.resources
    .filter((r) => href.startsWith(r.prefix))
    .sort((x, y) => y.prefix.length - x.prefix.length)[0];
  return best !== undefined && order[best.level] <= order[level];
}
export const TEMPLATES_AT = {
  read: ["docs://public/pages/{id}"],
  write: ["docs://public/pages/{id}"],
  admin: ["docs://private/vault/{id}", "docs://public/pages/{id}"],
};

/** The policy entry of one MCP server. */
export function mcpTool(url, secret) {
  return {
    origin: url,
    allow_http: true,
    credential: { secret, inject: "bearer" },
    mcp: MCP_RULES,
  };
}

/**
 * Start MCP servers and Airlock.
 * @param {Record<string, object>} servers  Airlock tool name -> startMcpServer options
 *   (token is generated); each becomes /mcp/{name} with credential secret
 *   MCP_<NAME>_TOKEN.
 */
export async function startMcpStack(servers) {
  const stack = { servers: {}, creds: {}, secretNames: {}, h: null };
  const started = [];
  try {
    for (const [name, opts] of Object.entries(servers)) {
      const cred = randomSecret(`mcpcred_${name}`);
      const s = await startMcpServer({ token: cred, ...opts });
      started.push(s);
      stack.servers[name] = s;
      stack.creds[name] = cred;
      stack.secretNames[name] = `MCP_${name.toUpperCase()}_TOKEN`;
    }
    const extraTools = {};
    const secrets = {};
    for (const name of Object.keys(servers)) {
      extraTools[name] = mcpTool(stack.servers[name].url, stack.secretNames[name]);
      secrets[stack.secretNames[name]] = stack.creds[name];
    }
    stack.h = await startAirlock({
      policy: (echoUrl) =>
        testPolicy(echoUrl, {
          extraTools,
          limits: {
            // above 1 MiB, so the MCP message limit is what bites
            max_request_body_bytes: 4 * 1024 * 1024,
            // A stream the sandbox abandoned is only noticed (audited as
            // "cancelled", upstream released) once it has made no progress
            // for this long; live GET streams stay up through the servers'
            // keepalive comments (keepAliveMs below this).
            upstream_idle_timeout_ms: IDLE_MS,
          },
        }),
      secrets,
    });
  } catch (err) {
    for (const s of started) await s.close().catch(() => {});
    throw err;
  }
  stack.clients = [];
  stack.tokens = [];
  /** Mint a session and remember its token (for the "never reaches the server" checks). */
  stack.mint = async (tools, opts) => {
    const m = await stack.h.mint(tools, opts);
    stack.tokens.push(m.token);
    return m;
  };
  stack.mcpUrl = (name) => new URL(`/mcp/${name}`, stack.h.url);
  stack.connect = async (name, token, opts = {}) => {
    const c = await connectClient(stack.mcpUrl(name), token, opts);
    stack.clients.push(c);
    return c;
  };
  /** A raw request to /mcp/{name} through Miniflare. */
  stack.raw = (name, { token, sid, body, method = "POST", headers = {} } = {}) =>
    stack.h.fetch(`/mcp/${name}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(method === "POST" ? { "content-type": "application/json" } : {}),
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MCP_PROTOCOL_VERSION,
        ...(sid ? { "mcp-session-id": sid } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  stack.close = async () => {
    for (const c of stack.clients) await c.close().catch(() => {});
    // Our own servers first: an open server would keep node --test alive.
    for (const s of Object.values(stack.servers)) await s.close().catch(() => {});
    await stack.h.close();
  };
  return stack;
}

/**
 * A fetch that hands the SDK the real response while keeping a copy of
 * everything received (status, headers, full body text, also of SSE streams).
 */
function recordingFetch(log, open) {
  return async (url, init = {}) => {
    const ac = new AbortController();
    if (init.signal) {
      if (init.signal.aborted) ac.abort();
      else init.signal.addEventListener("abort", () => ac.abort(), { once: true });
    }
    const resp = await fetch(url, { ...init, signal: ac.signal });
    const headers = {};
    for (const [k, v] of resp.headers) headers[k] = v;
    const entry = { method: init?.method ?? "GET", status: resp.status, headers, text: "", done: false };
    log.push(entry);
    if (!resp.body) {
      entry.done = true;
      return resp;
    }
    const [mine, theirs] = resp.body.tee();
    const reader = theirs.getReader();
    open.add(ac);
    (async () => {
      const dec = new TextDecoder();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          entry.text += dec.decode(value, { stream: true });
        }
      } catch {}
      entry.done = true;
      open.delete(ac);
    })();
    return new Response(mine, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  };
}

/**
 * Connect an SDK Client to an Airlock MCP URL with the session token.
 * @returns {{client, transport, http, notifications, logs, sessionId, close}}
 */
export async function connectClient(url, token, { basic = false, roots = null, name = "airlock-test" } = {}) {
  const http = [];
  const open = new Set(); // AbortControllers of responses still being read
  const authorization = basic
    ? `Basic ${Buffer.from(`sandbox:${token}`).toString("base64")}`
    : `Bearer ${token}`;
  const client = new Client(
    { name, version: "1.0.0" },
    { capabilities: roots ? { roots: { listChanged: false } } : {} },
  );
  const c = { client, url: String(url), http, notifications: [], logs: [] };
  if (roots) client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots }));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    c.logs.push(n.params);
  });
  client.setNotificationHandler(ResourceListChangedNotificationSchema, (n) => {
    c.notifications.push(n);
  });
  c.transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { authorization } },
    fetch: recordingFetch(http, open),
    // No reconnect storms when a test ends a session on purpose.
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
  });
  await client.connect(c.transport);
  c.sessionId = c.transport.sessionId;
  // The SDK opens its GET stream in the background once the session is
  // initialized; wait for it, so it is not mistaken for a later request.
  await waitFor(() => http.some((e) => e.method === "GET"), { label: "the client's GET stream" });
  c.closed = false;
  c.close = async () => {
    if (c.closed) return;
    c.closed = true;
    await client.close().catch(() => {});
    // Drop whatever is still open (the GET stream): abort our copies' fetches.
    for (const ac of open) ac.abort();
    open.clear();
  };
  /** All text and headers this client received over HTTP. */
  c.receivedText = () => JSON.stringify(http.map((e) => [e.status, e.headers, e.text]));
  return c;
}

/** Expect an SDK call to fail with a JSON-RPC error; returns the error. */
export async function expectRpcError(promise, code, message, label = "") {
  let err;
  try {
    const result = await promise;
    assert.fail(`${label}: expected JSON-RPC error ${code}, got result ${JSON.stringify(result)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.code, code, `${label}: error code (${err.message})`);
  if (message !== undefined) assert.match(err.message, new RegExp(`${message}$`), `${label}: error message`);
  return err;
}

/** Forms of a secret that must never appear in what a sandbox receives. */
export function secretForms(secret) {
  const b64 = Buffer.from(secret).toString("base64");
  const b64url = Buffer.from(secret).toString("base64url");
  return [secret, ...secretWindows(secret), b64, b64.replace(/=+$/, ""), b64url];
}

export function assertNoSecret(text, secret, label) {
  for (const form of secretForms(secret)) {
    assert.ok(!text.includes(form), `${label}: contains the credential (form ${form.slice(0, 6)}...)`);
  }
}

/** Wait until pred() is true (polling), or fail. */
export async function waitFor(pred, { timeoutMs = 5000, label = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${label}`);
}

/** JSON-RPC messages a server received (POST bodies), optionally since index n. */
export function rpcBodies(server, since = 0) {
  return server.requests.slice(since).filter((r) => r.method === "POST").map((r) => r.body);
}

/** tools/call (or other method) requests a server received since n. */
export function callsOf(server, method, since = 0) {
  return rpcBodies(server, since).filter((b) => b && b.method === method);
}

/** The text of a CallToolResult. */
export const resultText = (r) => r.content.map((c) => c.text ?? "").join("\n");

export const sortedNames = (items, field = "name") => items.map((i) => i[field]).sort();

/** The Python of the MCP SDK 2.x venv, and the server built with it. */
export const MCP2_PYTHON = join(REPO_ROOT, ".venv-mcp2", "bin", "python");
const MCP2_SERVER = join(REPO_ROOT, "miniflare-tests", "fixtures", "mcp2_server.py");

/**
 * Starts the MCP server built with the official Python SDK 2.x
 * (fixtures/mcp2_server.py) on loopback with `token` as the credential it
 * accepts; `log()` returns every request it received.
 */
export async function startMcp2Server(token) {
  const proc = spawn(MCP2_PYTHON, [MCP2_SERVER], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, MCP2_TOKEN: token, PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 60_000);
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    proc,
    url: `${base}/mcp`,
    log: async () => (await fetch(`${base}/_log`)).json(),
    close: () => proc.kill("SIGKILL"),
  };
}

const MCP2_CLIENT = join(REPO_ROOT, "clients", "python", "airlock_mcp2_client.py");

/**
 * Runs the Python SDK 2.x client (clients/python/airlock_mcp2_client.py)
 * against `url` with `args`; resolves to { summary (its last JSON line),
 * stdout, stderr }. `onLine(obj, stdin)` sees every earlier JSON line (an
 * interactive stage) with the client's stdin to answer it.
 */
export function runMcp2Client(url, args, token, onLine = null, timeoutMs = 90_000) {
  return new Promise((resolve, reject) => {
    const proc = spawn(MCP2_PYTHON, [MCP2_CLIENT, "--url", url, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, AIRLOCK_SESSION_TOKEN: token, PYTHONUNBUFFERED: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let seen = 0;
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.stderr.on("data", (d) => (stderr += d));
    proc.stdout.on("data", (d) => {
      stdout += d;
      const lines = stdout.split("\n");
      for (; seen < lines.length - 1; seen++) {
        let obj = null;
        try {
          obj = JSON.parse(lines[seen]);
        } catch {}
        if (obj?.stage && onLine) Promise.resolve(onLine(obj, proc.stdin)).catch((e) => reject(e));
      }
    });
    proc.on("close", (code, signal) => {
      clearTimeout(timer);
      let summary;
      try {
        summary = JSON.parse(stdout.trim().split("\n").at(-1) || "null");
      } catch {}
      if (!summary || summary.stage) {
        reject(new Error(`python client failed (${signal ? "timed out" : `exit ${code}`}):\n${stdout}\n${stderr}`));
        return;
      }
      resolve({ summary, stdout, stderr });
    });
  });
}
