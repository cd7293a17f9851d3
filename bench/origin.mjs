// Benchmark origin: a plain node:http server standing in for the API behind
// a tool. It runs in its own process (the harness spawns it) so that serving
// the origin never competes with the benchmark client's event loop.
//
//   GET /small        1 KiB body (one write, Content-Length)
//   GET /large        1 MiB body, chunked, written in 64 KiB chunks
//   GET /huge?mb=N    N MiB body, chunked, 64 KiB chunks, honouring backpressure
//   GET /echo-small   ~1 KiB body that contains the request's Authorization
//                     header, so Airlock's redaction finds and replaces a match
//   POST /mcp         a tiny MCP server (Streamable HTTP, plain JSON answers, no
//                     session): answers one JSON-RPC request per POST; tools/call
//                     of any tool returns a short text result, initialize and
//                     tools/list what a client expects, anything else -32601
//   anything else     404
//
// Bodies are printable text (base64 of fixed pseudo-random bytes); they never
// contain the credential, except /echo-small. The origin does no other work.
//
// Run standalone: node bench/origin.mjs [port]   (prints {"port": N} on stdout)
// As a child of the harness it exits when its stdin closes.

import { randomBytes } from "node:crypto";
import http from "node:http";
import { pathToFileURL } from "node:url";

const KIB = 1024;
const MIB = 1024 * KIB;
const CHUNK = 64 * KIB;
const MAX_HUGE_MB = 1024;

/** `bytes` of printable filler; deterministic per process, not per request. */
function filler(bytes) {
  return Buffer.from(randomBytes(Math.ceil((bytes * 3) / 4) + 3).toString("base64").slice(0, bytes), "latin1");
}

export function createOrigin() {
  const small = filler(KIB);
  const chunk = filler(CHUNK);
  const echoPad = filler(KIB - 200);

  async function streamBody(res, totalBytes) {
    res.writeHead(200, { "content-type": "application/octet-stream", "cache-control": "no-store" });
    let left = totalBytes;
    while (left > 0) {
      const piece = left >= CHUNK ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!res.write(piece)) {
        await new Promise((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
        if (res.destroyed) return;
      }
    }
    res.end();
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://origin.local");
    if (url.pathname === "/mcp" && req.method === "POST") {
      mcpAnswer(req, res);
      return;
    }
    // Drain any request body (there is none in the benchmark).
    req.resume();
    switch (url.pathname) {
      case "/small":
        res.writeHead(200, {
          "content-type": "text/plain",
          "content-length": String(small.length),
          "cache-control": "no-store",
        });
        res.end(small);
        return;
      case "/large":
        streamBody(res, MIB).catch(() => res.destroy());
        return;
      case "/huge": {
        const mb = Math.min(MAX_HUGE_MB, Math.max(1, Number(url.searchParams.get("mb")) || 1));
        streamBody(res, mb * MIB).catch(() => res.destroy());
        return;
      }
      case "/echo-small": {
        const body = Buffer.concat([
          Buffer.from(`{"authorization":${JSON.stringify(req.headers.authorization ?? "")},"pad":"`),
          echoPad,
          Buffer.from('"}\n'),
        ]);
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": String(body.length),
          "cache-control": "no-store",
        });
        res.end(body);
        return;
      }
      default:
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found\n");
    }
  });
  // Keep idle keep-alive connections (from the client and from workerd) open
  // across benchmark rounds.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.requestTimeout = 0;
  return server;
}

const MCP_MAX_BODY = 64 * KIB;

/** One JSON-RPC message in, one plain JSON answer out (202 for a notification). */
function mcpAnswer(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size <= MCP_MAX_BODY) chunks.push(c);
  });
  req.on("end", () => {
    let msg;
    try {
      msg = size <= MCP_MAX_BODY ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null;
    } catch {}
    const reply = (status, body) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "cache-control": "no-store" });
      res.end(text);
    };
    if (!msg || typeof msg !== "object" || msg.jsonrpc !== "2.0" || typeof msg.method !== "string") {
      reply(400, { jsonrpc: "2.0", id: null, error: { code: -32600, message: "Invalid Request" } });
      return;
    }
    if (msg.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    const ok = (result) => reply(200, { jsonrpc: "2.0", id: msg.id, result });
    switch (msg.method) {
      case "initialize":
        ok({ protocolVersion: "2025-11-25", capabilities: { tools: {} }, serverInfo: { name: "bench-mcp", version: "1.0.0" } });
        return;
      case "tools/list":
        ok({ tools: [{ name: "lookup", description: "Looks a key up", inputSchema: { type: "object", properties: { key: { type: "string" } } } }] });
        return;
      case "tools/call":
        ok({ content: [{ type: "text", text: `looked up ${JSON.stringify(msg.params?.arguments?.key ?? null)}` }], isError: false });
        return;
      default:
        reply(200, { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "Method not found" } });
    }
  });
  req.on("error", () => res.destroy());
}

export function startOrigin({ host = "127.0.0.1", port = 0 } = {}) {
  const server = createOrigin();
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolve({
        server,
        url: `http://${host}:${actual}`,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const port = Number(process.argv[2] ?? 0);
  const origin = await startOrigin({ port });
  process.stdout.write(`${JSON.stringify({ port: origin.server.address().port })}\n`);
  // Exit with the parent: the harness holds our stdin open.
  if (!process.stdin.isTTY) {
    process.stdin.resume();
    process.stdin.on("end", () => process.exit(0));
    process.stdin.on("error", () => process.exit(0));
  }
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
}
