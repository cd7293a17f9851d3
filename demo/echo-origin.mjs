// Echo origin: a tiny stand-in for a public API, used by the dev demo
// (`node demo/echo-origin.mjs [port]`) and by the Miniflare tests
// (`import { startEchoOrigin } from "../demo/echo-origin.mjs"`).
//
// Every request is recorded and answered with a JSON echo of what arrived:
//   { method, path, query, headers, body }
// Special paths:
//   /stream/...     the same echo JSON, written in 7-byte chunks with a pause
//                   between writes, so every value spans chunk boundaries
//   /cookie/...     the echo, plus Set-Cookie headers
//   /redirect/...   302 with Location: /redirected/... (and an echo body)
//   /status/NNN     the echo with status NNN (no body for 204/304)
//   /delay/MS/...   the echo after waiting MS milliseconds (at most 60000)
//   /reflect/...    the echo, plus response headers x-reflected-authorization
//                   and x-reflected-api-key copying those request headers
//   /gzip/...       the echo, gzip-compressed (Content-Encoding: gzip)
//
// No dependencies beyond node:http.

import http from "node:http";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const STREAM_CHUNK_BYTES = 7;
const STREAM_PAUSE_MS = 1;
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function splitUrl(rawUrl) {
  const q = rawUrl.indexOf("?");
  return q === -1
    ? { path: rawUrl, query: "" }
    : { path: rawUrl.slice(0, q), query: rawUrl.slice(q + 1) };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

async function handle(req, res, hits, onHit) {
  const body = await readBody(req);
  const { path, query } = splitUrl(req.url);
  const hit = {
    method: req.method,
    url: req.url,
    path,
    query,
    headers: { ...req.headers },
    rawHeaders: [...req.rawHeaders],
    body,
  };
  hits.push(hit);
  if (onHit) onHit(hit);

  const echo = JSON.stringify({
    method: req.method,
    path,
    query,
    headers: req.headers,
    body,
  });
  const headers = { "content-type": "application/json; charset=utf-8" };
  let status = 200;

  const statusMatch = /^\/status\/(\d{3})(?:\/|$)/.exec(path);
  if (statusMatch) {
    status = Number(statusMatch[1]);
    if (status < 200 || status > 599) status = 400;
  } else if (path.startsWith("/redirect/")) {
    status = 302;
    headers.location = "/redirected/" + path.slice("/redirect/".length);
  } else if (path.startsWith("/reflect/")) {
    if (req.headers.authorization) headers["x-reflected-authorization"] = req.headers.authorization;
    if (req.headers["x-api-key"]) headers["x-reflected-api-key"] = req.headers["x-api-key"];
  } else if (path.startsWith("/cookie/")) {
    headers["set-cookie"] = [
      "origin_session=s3cr3t-cookie-value; Path=/; HttpOnly; Secure",
      "tracking=abc123; Path=/",
    ];
  }

  const delayMatch = /^\/delay\/(\d+)(?:\/|$)/.exec(path);
  if (delayMatch) await sleep(Math.min(Number(delayMatch[1]), 60000));
  if (res.destroyed) return;

  const noBody = req.method === "HEAD" || status === 204 || status === 304;

  if (path.startsWith("/stream/") && !noBody) {
    // No Content-Length: chunked transfer, many tiny writes.
    res.writeHead(status, headers);
    const bytes = Buffer.from(echo, "utf8");
    for (let i = 0; i < bytes.length; i += STREAM_CHUNK_BYTES) {
      if (res.destroyed) return;
      res.write(bytes.subarray(i, i + STREAM_CHUNK_BYTES));
      await sleep(STREAM_PAUSE_MS);
    }
    res.end();
    return;
  }

  if (noBody) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  if (path.startsWith("/gzip/")) {
    const gz = gzipSync(Buffer.from(echo, "utf8"));
    headers["content-encoding"] = "gzip";
    headers["content-length"] = String(gz.length);
    res.writeHead(status, headers);
    res.end(gz);
    return;
  }
  headers["content-length"] = String(Buffer.byteLength(echo));
  res.writeHead(status, headers);
  res.end(echo);
}

/**
 * Start the echo origin on 127.0.0.1.
 * @param {{port?: number, onHit?: (hit: object) => void}} [options] port 0 picks a free port.
 * @returns {Promise<{url: string, port: number, hits: object[], server: http.Server, close: () => Promise<void>}>}
 */
export async function startEchoOrigin({ port = 8788, onHit } = {}) {
  const hits = [];
  const server = http.createServer((req, res) => {
    handle(req, res, hits, onHit).catch((err) => {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain" });
      }
      res.end(String(err && err.message));
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  let closed = false;
  return {
    url: `http://127.0.0.1:${actualPort}`,
    port: actualPort,
    hits,
    server,
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function mask(value) {
  if (typeof value !== "string") return value;
  return value.length <= 12 ? "****" : `${value.slice(0, 10)}…(${value.length} chars)`;
}

const isMain =
  process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;

if (isMain) {
  const port = Number(process.argv[2] ?? process.env.ECHO_ORIGIN_PORT ?? process.env.PORT ?? 8788);
  const origin = await startEchoOrigin({
    port,
    onHit(hit) {
      const auth = hit.headers.authorization ? ` authorization=${mask(hit.headers.authorization)}` : "";
      const key = hit.headers["x-api-key"] ? ` x-api-key=${mask(hit.headers["x-api-key"])}` : "";
      console.log(`[echo-origin] ${hit.method} ${hit.url}${auth}${key}`);
    },
  });
  console.log(`[echo-origin] listening on ${origin.url}`);
  const stop = () => origin.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
