// MCP demo server: a real Model Context Protocol server built with the
// official TypeScript SDK (McpServer + StreamableHTTPServerTransport, stateful
// sessions), standing in for a documentation service that Airlock brokers at
// /mcp/docs. Used by the dev demo and by the Miniflare MCP suites.
//
//   MCP_DOCS_TOKEN=... node demo/mcp-server.mjs [port]     (default port 8790)
//   MCP_JSON_RESPONSE=1   answer with plain JSON instead of SSE streams
//   MCP_RESUMABLE=1       keep an in-memory event store (SSE events get ids,
//                         and streams start with a priming event)
//   MCP_QUIET=1           do not log requests (method and JSON-RPC method only)
//
//   import { startMcpServer } from "../demo/mcp-server.mjs";
//   const s = await startMcpServer({ token, port: 0, enableJsonResponse: false });
//   s.url       http://127.0.0.1:PORT/mcp
//   s.requests  every HTTP request received, in order:
//               { method, path, headers, body (parsed JSON-RPC or null), rawBody,
//                 status (set when the response is done), authorized }
//   s.close()
//
// The endpoint requires `Authorization: Bearer <token>` and answers 401
// otherwise; every authorized response carries the Authorization value it
// received in an `x-seen-authorization` header. What it serves (the levels
// are what the demo policy grants):
//   tools      search (read)        echoes its query
//              whoami (read)        echoes the Authorization header it received
//                                   (in the result, in a log notification, and,
//                                   with fail: true, in an error), so a
//                                   credential leak shows up in the client
//              list_roots (read)    asks the client for its roots (a server ->
//                                   client request) and returns them
//              create_page (write)  also announces resources/list_changed on
//                                   the session's standalone GET stream
//              delete_space (admin)
//              debug_dump           not named by the policy; dumps the token
//   resources  docs://public/readme, docs://public/guide, docs://private/salaries,
//              docs://internal/notes (no policy prefix covers it),
//              file:///srv/docs/public/index.txt, file:///srv/docs/private/keys.txt
//              (the SDK looks resources up by new URL(uri).href, so dot
//              segments in a requested URI are resolved by the server)
//              templates docs://public/pages/{id}, docs://private/vault/{id}
//   prompts    summarize (argument topic, with completions), internal_review
//
// Node built-ins plus @modelcontextprotocol/sdk and zod (devDependencies).

import { randomUUID } from "node:crypto";
import http from "node:http";
import { pathToFileURL } from "node:url";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { isInitializeRequest, ListRootsResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const MAX_BODY_BYTES = 4 * 1024 * 1024;

export const DOCS = {
  "docs://public/readme": "Public readme: how to use the docs service.",
  "docs://public/guide": "Public guide: pages, spaces and search.",
  "docs://private/salaries": "PRIVATE salary table (admins only).",
  "docs://internal/notes": "Internal notes no policy prefix covers.",
  // path-style URIs, as filesystem-like servers use them
  "file:///srv/docs/public/index.txt": "Public index file.",
  "file:///srv/docs/private/keys.txt": "PRIVATE key material file (admins only).",
};

/** A minimal event store, so SSE events carry ids and streams are resumable. */
class MemoryEventStore {
  constructor() {
    this.events = [];
    this.seq = 0;
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}::${++this.seq}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.eventId === lastEventId);
    if (at === -1) return "";
    const { streamId } = this.events[at];
    for (const e of this.events.slice(at + 1)) {
      if (e.streamId === streamId) await send(e.eventId, e.message);
    }
    return streamId;
  }
}

const text = (t) => ({ content: [{ type: "text", text: t }] });

/** One McpServer per MCP session (a server instance serves one transport). */
function buildServer({ token }) {
  const server = new McpServer(
    { name: "airlock-demo-docs", version: "1.0.0" },
    { capabilities: { logging: {} } },
  );

  server.registerTool(
    "search",
    {
      description: "Search the docs (read)",
      inputSchema: { query: z.string(), limit: z.number().int().optional() },
    },
    async ({ query, limit }, extra) =>
      text(`search results for "${query}" (limit ${limit ?? 10}) in session ${extra.sessionId}`),
  );

  server.registerTool(
    "whoami",
    {
      description: "Report what the server received (read)",
      inputSchema: { fail: z.boolean().optional() },
    },
    async ({ fail }, extra) => {
      const auth = extra.requestInfo?.headers?.authorization ?? "(none)";
      await extra.sendNotification({
        method: "notifications/message",
        params: { level: "info", logger: "whoami", data: `whoami saw authorization: ${auth}` },
      });
      if (fail) throw new Error(`whoami failed; authorization was ${auth}`);
      return text(`authorization received: ${auth}`);
    },
  );

  server.registerTool(
    "list_roots",
    { description: "Ask the client for its roots (read)" },
    async (extra) => {
      // (no inputSchema: the SDK passes only `extra`)
      const roots = await extra.sendRequest({ method: "roots/list" }, ListRootsResultSchema);
      return text(`client roots: ${roots.roots.map((r) => r.uri).join(", ")}`);
    },
  );

  server.registerTool(
    "create_page",
    {
      description: "Create a page (write)",
      inputSchema: { title: z.string(), body: z.string().optional() },
    },
    async ({ title }) => {
      // Goes out on the session's standalone GET stream, if one is open.
      server.sendResourceListChanged();
      return text(`created page "${title}"`);
    },
  );

  server.registerTool(
    "delete_space",
    { description: "Delete a whole space (admin)", inputSchema: { space: z.string() } },
    async ({ space }) => text(`deleted space "${space}"`),
  );

  server.registerTool(
    "debug_dump",
    { description: "Dump the server's configuration (no policy grants this)" },
    async () => text(`debug dump: expected token ${token}`),
  );

  for (const [uri, body] of Object.entries(DOCS)) {
    const name = uri.replace(/^[a-z]+:\/+/, "").replace(/\//g, "-");
    server.registerResource(name, uri, { mimeType: "text/plain" }, async (u) => ({
      contents: [{ uri: u.href, mimeType: "text/plain", text: body }],
    }));
  }
  server.registerResource(
    "public-page",
    new ResourceTemplate("docs://public/pages/{id}", { list: undefined }),
    { mimeType: "text/plain" },
    async (u, { id }) => ({ contents: [{ uri: u.href, text: `public page ${id}` }] }),
  );
  server.registerResource(
    "private-vault",
    new ResourceTemplate("docs://private/vault/{id}", { list: undefined }),
    { mimeType: "text/plain" },
    async (u, { id }) => ({ contents: [{ uri: u.href, text: `vault entry ${id}` }] }),
  );

  server.registerPrompt(
    "summarize",
    {
      description: "Summarize a topic (read)",
      argsSchema: {
        topic: completable(z.string(), (value) =>
          ["security", "search", "spaces"].filter((t) => t.startsWith(value)),
        ),
      },
    },
    ({ topic }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Please summarize the docs about ${topic}.` } }],
    }),
  );

  server.registerPrompt(
    "internal_review",
    { description: "Review internal material (no policy grants this)", argsSchema: { target: z.string() } },
    ({ target }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Review ${target} using token ${token}.` } }],
    }),
  );

  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function sendJson(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(body);
}

const rpcError = (code, message, id = null) => ({ jsonrpc: "2.0", id, error: { code, message } });

/**
 * Start the MCP server.
 * @param {object} o
 * @param {string} o.token              the bearer token the server requires
 * @param {number} [o.port=0]
 * @param {string} [o.host="127.0.0.1"]
 * @param {string} [o.path="/mcp"]
 * @param {boolean} [o.enableJsonResponse=false]  plain JSON responses instead of SSE
 * @param {boolean} [o.resumable=false]   event store (SSE event ids, priming events)
 * @param {number} [o.keepAliveMs]        interval of `: keepalive` SSE comments (SDK default 15 s)
 * @param {(line: string) => void} [o.log]
 */
export async function startMcpServer({
  token,
  port = 0,
  host = "127.0.0.1",
  path = "/mcp",
  enableJsonResponse = false,
  resumable = false,
  keepAliveMs,
  log = () => {},
} = {}) {
  if (typeof token !== "string" || token.length === 0) throw new Error("startMcpServer: token required");
  const requests = [];
  const sessions = new Map(); // session id -> { transport, server }

  const handle = async (req, res) => {
    const rawBody = req.method === "POST" ? await readBody(req) : "";
    let body = null;
    if (rawBody) {
      try {
        body = JSON.parse(rawBody);
      } catch {}
    }
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = v;
    const authorized = headers.authorization === `Bearer ${token}`;
    const entry = { method: req.method, path: req.url, headers, body, rawBody, status: null, authorized };
    requests.push(entry);
    res.on("finish", () => {
      entry.status = res.statusCode;
    });
    res.on("close", () => {
      if (entry.status === null) entry.status = res.statusCode;
    });
    log(`${req.method} ${req.url} ${body?.method ?? ""}`);

    const pathname = new URL(req.url, "http://x").pathname;
    if (pathname !== path) return sendJson(res, 404, { error: "not found" });
    if (!authorized) {
      return sendJson(res, 401, { error: "unauthorized" }, { "www-authenticate": 'Bearer realm="docs"' });
    }

    // Echo the credential in a response header too (Airlock must redact it).
    res.setHeader("x-seen-authorization", headers.authorization);

    const sid = headers["mcp-session-id"];
    const known = typeof sid === "string" ? sessions.get(sid) : undefined;

    if (req.method === "POST") {
      if (body === null) return sendJson(res, 400, rpcError(-32700, "Parse error"));
      if (known) return known.transport.handleRequest(req, res, body);
      if (sid !== undefined) return sendJson(res, 404, rpcError(-32001, "Session not found"));
      if (!isInitializeRequest(body)) {
        return sendJson(res, 400, rpcError(-32000, "Bad Request: no valid session id", body?.id ?? null));
      }
      const server = buildServer({ token });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse,
        ...(keepAliveMs === undefined ? {} : { keepAliveMs }),
        ...(resumable ? { eventStore: new MemoryEventStore(), retryInterval: 1000 } : {}),
        onsessioninitialized: (id) => {
          sessions.set(id, { transport, server });
        },
        onsessionclosed: (id) => {
          sessions.delete(id);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      return transport.handleRequest(req, res, body);
    }

    if (req.method === "GET" || req.method === "DELETE") {
      if (sid === undefined) return sendJson(res, 400, rpcError(-32000, "Bad Request: no valid session id"));
      if (!known) return sendJson(res, 404, rpcError(-32001, "Session not found"));
      return known.transport.handleRequest(req, res);
    }

    return sendJson(res, 405, rpcError(-32000, "Method not allowed"), { allow: "GET, POST, DELETE" });
  };

  const httpServer = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      log(`error: ${err?.stack || err}`);
      if (!res.headersSent) sendJson(res, 500, rpcError(-32603, "Internal error"));
      else res.destroy();
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(port, host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });
  const actual = httpServer.address().port;
  const url = `http://${host}:${actual}${path}`;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const { transport, server } of sessions.values()) {
      await transport.close().catch(() => {});
      await server.close().catch(() => {});
    }
    sessions.clear();
    await new Promise((resolve) => {
      httpServer.close(() => resolve());
      httpServer.closeAllConnections();
    });
  };

  return { url, port: actual, requests, sessions, close };
}

// CLI: node demo/mcp-server.mjs [port]
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const token = process.env.MCP_DOCS_TOKEN;
  if (!token) {
    console.error("mcp-server: set MCP_DOCS_TOKEN (the bearer token the server requires)");
    process.exit(2);
  }
  const port = Number(process.argv[2] ?? process.env.MCP_PORT ?? 8790);
  const s = await startMcpServer({
    token,
    port,
    enableJsonResponse: process.env.MCP_JSON_RESPONSE === "1",
    resumable: process.env.MCP_RESUMABLE === "1",
    log: process.env.MCP_QUIET === "1" ? () => {} : (line) => console.log(`[mcp-server] ${line}`),
  });
  console.log(`[mcp-server] MCP demo server on ${s.url}`);
  const stop = () => s.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
