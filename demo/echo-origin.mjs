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
//   /redirect-to?u=URL  302 with Location: URL (and an echo body)
//   /status/NNN     the echo with status NNN (no body for 204/304)
//   /delay/MS/...   the echo after waiting MS milliseconds (at most 60000)
//   /reflect/...    the echo, plus response headers x-reflected-authorization
//                   and x-reflected-api-key copying those request headers
//   /gzip/...       the echo, gzip-compressed (Content-Encoding: gzip)
//   /status/503 and /status/429 also carry `Retry-After: 7`.
//
// Credential reflection (the credential is what arrived in Authorization,
// minus "Bearer "; `?src=header:<name>&prefix=<p>` or `?src=query:<param>`
// pick another place):
//   /reflect-encodings/...  the credential in every encoding an origin might
//                   use (raw, whole injected value, percent-encoded, base64
//                   std/url with and without padding, JSON-escaped) in
//                   response headers and in a body written in 1..7-byte
//                   chunks; see credentialForms() / reflectionSegments()
//   /mirror-body/...  the request body, byte for byte (`?tiny=1`: 1..7-byte chunks)
//   /random/N       N deterministic pseudo-random bytes (`?seed=`; chunked in
//                   random sizes, or `?cl=1` with Content-Length); see
//                   randomBody()
//
// Misbehaving upstreams (each writes the received Authorization value into
// whatever part of the body it sends, so leaks on error paths show up):
//   /fault/reset-mid-stream   200, part of a body, then the socket is destroyed
//   /fault/short-body         Content-Length 5000, 1000 bytes, then FIN
//   /fault/bad-chunk          chunked body with an invalid chunk size mid-way
//   /fault/never-ends         200, 1 KiB chunks until the client goes away
//                             (at most 32 MiB / 30 s)
//   /fault/stall              200, ~200 bytes, then silence (at most 15 s)
//   /fault/drip?interval=MS&count=N   N small chunks MS ms apart, then ends
//   /fault/no-response        accepts the request, never answers (at most 15 s)
//   /fault/bad-header         a raw response with a header line without a colon
//   /fault/bad-status         a raw response whose status code is not a number
//                             (`?code=600` etc. for other out-of-range codes)
//   /fault/garbage            a non-HTTP line, then FIN
//   /fault/close-before-headers  the socket is destroyed before any byte
// Every hit records `closedAt` (ms timestamp when its response closed: sent in
// full, or the connection dropped) and,
// for /fault/never-ends, `faultBytes` (body bytes written).
//
// Node built-ins only.

import { createHash } from "node:crypto";
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
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/**
 * `n` deterministic pseudo-random bytes for `seed` (SHA-256 in counter mode),
 * so a test can compare what it received with what the origin sent.
 */
export function randomBody(seed, n) {
  const out = Buffer.alloc(n);
  let off = 0;
  for (let i = 0; off < n; i++) {
    const block = createHash("sha256").update(`${seed}:${i}`).digest();
    off += block.copy(out, off, 0, Math.min(block.length, n - off));
  }
  return out;
}

/**
 * The encodings of a credential an origin might reflect. `injected` is the
 * whole value the origin received (e.g. "Bearer <secret>").
 */
export function credentialForms(secret, injected) {
  const b64 = Buffer.from(secret, "utf8").toString("base64");
  const b64url = b64.replace(/\+/g, "-").replace(/\//g, "_");
  return {
    raw: secret,
    injected,
    percent: encodeURIComponent(secret), // upper-case hex
    b64_std: b64,
    b64_std_nopad: b64.replace(/=+$/, ""),
    b64_url: b64url,
    b64_url_nopad: b64url.replace(/=+$/, ""),
    json: JSON.stringify(secret).slice(1, -1),
  };
}

/**
 * The body of /reflect-encodings as [marker, value] pairs: every form alone,
 * twice back to back, inside JSON and a URL, and one form as the very last
 * bytes of the body. Markers contain nothing secret.
 */
export function reflectionSegments(forms) {
  const segs = [];
  for (const [name, value] of Object.entries(forms)) segs.push([`<<${name}>>`, value]);
  segs.push(["<<raw-twice>>", forms.raw + forms.raw]);
  segs.push(["<<json-in-json>>", `{"token":"${forms.json}"}`]);
  segs.push(["<<pct-in-url>>", `https://cb.example/?token=${forms.percent}&next=1`]);
  segs.push(["<<b64-in-basic>>", `Basic ${forms.b64_std}`]);
  segs.push(["<<last>>", forms.raw]);
  return segs;
}

function credentialOf(req, query) {
  const params = new URLSearchParams(query);
  const src = params.get("src") || "bearer";
  if (src === "bearer") {
    const v = req.headers.authorization || "";
    return { secret: v.replace(/^Bearer /, ""), injected: v };
  }
  if (src.startsWith("header:")) {
    const v = req.headers[src.slice("header:".length).toLowerCase()] || "";
    const prefix = params.get("prefix") || "";
    return { secret: v.startsWith(prefix) ? v.slice(prefix.length) : v, injected: v };
  }
  if (src.startsWith("query:")) {
    const name = src.slice("query:".length);
    const rawPair = query.split("&").find((p) => p.startsWith(`${name}=`)) || "";
    return { secret: params.get(name) || "", injected: rawPair.slice(name.length + 1) };
  }
  return { secret: "", injected: "" };
}

const randInt = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** Write `bytes` in random chunk sizes lo..hi with a pause between writes. */
async function writeChunked(res, bytes, lo, hi, pauseMs) {
  for (let i = 0; i < bytes.length; ) {
    if (res.destroyed) return false;
    const n = randInt(lo, hi);
    const ok = res.write(bytes.subarray(i, i + n));
    i += n;
    if (!ok) await new Promise((r) => res.once("drain", r).once("close", r));
    if (pauseMs) await sleep(pauseMs);
  }
  return true;
}

/** Wait up to `ms` or until the response's connection goes away. */
async function holdOpen(res, ms) {
  const until = Date.now() + ms;
  while (!res.destroyed && !res.socket?.destroyed && Date.now() < until) await sleep(50);
}

/** Misbehaving upstreams; returns true when it handled the request. */
async function handleFault(req, res, path, query, hit) {
  const name = path.slice("/fault/".length).split("/")[0];
  const auth = req.headers.authorization || "";
  const socket = req.socket;
  const params = new URLSearchParams(query);
  const textHeaders = { "content-type": "text/plain; charset=utf-8" };
  switch (name) {
    case "reset-mid-stream": {
      res.writeHead(200, textHeaders);
      res.write(`${"a".repeat(1000)} auth=${auth} partial=`);
      res.write(auth.slice(0, Math.ceil(auth.length / 2)));
      await sleep(100);
      socket.destroy();
      return true;
    }
    case "short-body": {
      res.writeHead(200, { ...textHeaders, "content-length": "5000" });
      res.write(`${"s".repeat(900)} auth=${auth} `.padEnd(1000, "s"));
      await sleep(100);
      socket.end();
      return true;
    }
    case "bad-chunk": {
      socket.write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
          `${Buffer.byteLength(`ok auth=${auth}`).toString(16)}\r\nok auth=${auth}\r\n`,
      );
      await sleep(100);
      socket.end("zz\r\nnot a chunk\r\n0\r\n\r\n");
      return true;
    }
    case "never-ends": {
      res.writeHead(200, textHeaders);
      const chunk = Buffer.alloc(1024, "n");
      hit.faultBytes = 0;
      res.write(`auth=${auth}\n`);
      const until = Date.now() + 30_000;
      while (!res.destroyed && hit.faultBytes < 32 * 1024 * 1024 && Date.now() < until) {
        hit.faultBytes += chunk.length;
        if (!res.write(chunk)) {
          await new Promise((r) => {
            res.once("drain", r);
            res.once("close", r);
            setTimeout(r, 1000);
          });
        }
      }
      if (!res.destroyed) res.end();
      return true;
    }
    case "stall": {
      res.writeHead(200, textHeaders);
      res.write(`stall auth=${auth} `.padEnd(200, "t"));
      await holdOpen(res, 15_000);
      if (!res.destroyed) res.end();
      return true;
    }
    case "drip": {
      const interval = Math.min(Number(params.get("interval") || 100), 5000);
      const count = Math.min(Number(params.get("count") || 10), 1000);
      res.writeHead(200, textHeaders);
      for (let i = 0; i < count; i++) {
        if (res.destroyed) return true;
        res.write(`drip ${String(i).padStart(4, "0")}\n`);
        await sleep(interval);
      }
      if (!res.destroyed) res.end();
      return true;
    }
    case "no-response": {
      await holdOpen(res, 15_000);
      if (!res.destroyed) socket.destroy();
      return true;
    }
    case "bad-header": {
      socket.end(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" +
          `This Is Not A Header ${auth}\r\nContent-Length: 5\r\n\r\nhello`,
      );
      return true;
    }
    case "bad-status": {
      const code = (params.get("code") || "2x0").replace(/[^0-9A-Za-z]/g, "").slice(0, 6);
      socket.end(`HTTP/1.1 ${code} OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(auth)}\r\n\r\n${auth}`);
      return true;
    }
    case "garbage": {
      socket.end(`SSH-2.0-OpenSSH_9.6 ${auth}\r\n`);
      return true;
    }
    case "close-before-headers": {
      socket.destroy();
      return true;
    }
    default:
      return false;
  }
}

async function handle(req, res, hits, onHit) {
  const bodyBuffer = await readBody(req);
  const body = bodyBuffer.toString("utf8");
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
  res.once("close", () => {
    hit.closedAt = Date.now();
  });
  if (onHit) onHit(hit);

  if (path.startsWith("/fault/") && (await handleFault(req, res, path, query, hit))) return;

  if (path.startsWith("/reflect-encodings/") || path === "/reflect-encodings") {
    const { secret, injected } = credentialOf(req, query);
    const forms = credentialForms(secret, injected);
    const headers = { "content-type": "text/plain; charset=utf-8" };
    for (const [name, value] of Object.entries(forms)) headers[`x-reflect-${name.replace(/_/g, "-")}`] = value;
    headers["x-reflect-mixed"] = `a=${forms.percent}; b=${forms.b64_url_nopad}; c=${forms.raw}`;
    headers.link = `<https://cb.example/?token=${forms.percent}>; rel="next"`;
    const body = reflectionSegments(forms).map(([m, v]) => m + v).join("");
    res.writeHead(200, headers);
    if (req.method !== "HEAD") await writeChunked(res, Buffer.from(body, "utf8"), 1, 7, 1);
    if (!res.destroyed) res.end();
    return;
  }

  if (path.startsWith("/mirror-body/") || path === "/mirror-body") {
    // The request body, byte for byte, in 1..7-byte chunks (`?tiny=1`) or random sizes.
    res.writeHead(200, { "content-type": "application/octet-stream" });
    const tiny = new URLSearchParams(query).get("tiny") === "1";
    await writeChunked(res, bodyBuffer, 1, tiny ? 7 : 16384, tiny ? 1 : 0);
    if (!res.destroyed) res.end();
    return;
  }

  const randomMatch = /^\/random\/(\d+)(?:\/|$)/.exec(path);
  if (randomMatch) {
    const params = new URLSearchParams(query);
    const bytes = randomBody(params.get("seed") || "seed", Math.min(Number(randomMatch[1]), 64 * 1024 * 1024));
    const headers = { "content-type": "application/octet-stream" };
    if (params.get("cl") === "1") {
      headers["content-length"] = String(bytes.length);
      res.writeHead(200, headers);
      res.end(bytes);
      return;
    }
    res.writeHead(200, headers);
    await writeChunked(res, bytes, 1, 16384, 0);
    if (!res.destroyed) res.end();
    return;
  }

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
    if (status === 503 || status === 429) headers["retry-after"] = "7";
  } else if (path.startsWith("/redirect/")) {
    status = 302;
    headers.location = "/redirected/" + path.slice("/redirect/".length);
  } else if (path === "/redirect-to") {
    status = 302;
    headers.location = new URLSearchParams(query).get("u") ?? "";
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
