// Package indexes in a closed sandbox: real `pip download` (and `npm install`)
// pointed at Airlock's egress route, with every other way out blocked.
//
// Three local servers stand in for the internet, reached by the worker only
// through its outbound service (which maps their names to 127.0.0.1):
//   index.pkgs.example.com  a PEP 503 / PEP 691 index and an npm registry
//                           (egress host with "package_index": true); its
//                           links are absolute URLs to the files host
//   files.pkgs.example.net  the files (an egress host, not an index)
//   evil.pkgs.example.org   not on the egress list; the index links to a
//                           newer version there, which must never be fetched
// The clients get proxy variables pointing at a closed port, with only
// Airlock's host exempt: any request not sent to Airlock fails.

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { assertError, startAirlock, testPolicy } from "./helpers.mjs";

const INDEX = "index.pkgs.example.com";
const FILES = "files.pkgs.example.net";
const EVIL = "evil.pkgs.example.org";
const RUN_TIMEOUT_MS = 120_000;

const tmp = mkdtempSync(join(tmpdir(), "airlock-index-"));
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

/** A minimal valid wheel, built with Python's zipfile. */
function buildWheel(name, version) {
  const file = join(tmp, `${name}-${version}-py3-none-any.whl`);
  const script = `
import base64, hashlib, sys, zipfile
name, version, out = sys.argv[1:4]
di = f"{name}-{version}.dist-info"
files = {f"{name}/__init__.py": f"VERSION = {version!r}\\n",
         f"{di}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
         f"{di}/WHEEL": "Wheel-Version: 1.0\\nGenerator: airlock-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
record = []
with zipfile.ZipFile(out, "w") as z:
    for path, text in files.items():
        data = text.encode()
        z.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{di}/RECORD,,")
    z.writestr(f"{di}/RECORD", "\\n".join(record) + "\\n")
`;
  execFileSync("python3", ["-c", script, name, version, file]);
  return { name: `${name}-${version}-py3-none-any.whl`, bytes: readFileSync(file) };
}

/** An npm package tarball (package/package.json, package/index.js), built with Python's tarfile. */
function buildTarball(name, version) {
  const file = join(tmp, `${name}-${version}.tgz`);
  const script = `
import io, json, sys, tarfile
name, version, out = sys.argv[1:4]
files = {"package/package.json": json.dumps({"name": name, "version": version, "main": "index.js"}),
         "package/index.js": f"module.exports = {version!r};\\n"}
with tarfile.open(out, "w:gz") as t:
    for path, text in files.items():
        data = text.encode()
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
`;
  execFileSync("python3", ["-c", script, name, version, file]);
  const bytes = readFileSync(file);
  return {
    name: `${name}-${version}.tgz`,
    bytes,
    shasum: createHash("sha1").update(bytes).digest("hex"),
    integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
  };
}

/** A local HTTP server that counts its hits. */
async function serve(handler) {
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url);
    handler(req, res);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, hits, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

/** A port nothing listens on. */
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const wheel = buildWheel("tinypkg", "1.0");
const evilWheel = buildWheel("tinypkg", "2.0");
const badWheel = buildWheel("badhash", "1.0");
const tarball = buildTarball("tinynpm", "1.0.0");
const evilTarball = buildTarball("tinynpm", "2.0.0");

let index, files, evil, h, session, deadPort;
const outbound = []; // every URL the worker fetched

const filesUrl = (path) => `http://${FILES}:${files.port}${path}`;
const evilUrl = (path) => `http://${EVIL}:${evil.port}${path}`;

function simpleHtml(name) {
  if (name === "tinypkg") {
    return `<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.0"><title>Links for tinypkg</title></head>
<body><h1>Links for tinypkg</h1>
<a href="${filesUrl(`/packages/${wheel.name}`)}#sha256=${sha256(wheel.bytes)}" data-requires-python="&gt;=3.7">${wheel.name}</a><br/>
<a href="${evilUrl(`/packages/${evilWheel.name}`)}#sha256=${sha256(evilWheel.bytes)}">${evilWheel.name}</a><br/>
<a href='/packages/tinypkg-0.1.tar.gz#sha256=00'>tinypkg-0.1.tar.gz</a><br/>
</body></html>
`;
  }
  if (name === "badhash") {
    return `<html><body><a href="${filesUrl(`/packages/${badWheel.name}`)}#sha256=${"0".repeat(64)}">${badWheel.name}</a></body></html>`;
  }
  if (name === "broken") return `<html><body><a href="${filesUrl("/packages/x.whl")}"`;
  return null;
}

function simpleJson(name) {
  if (name !== "tinypkg") return null;
  return JSON.stringify({
    meta: { "api-version": "1.0" },
    name,
    files: [
      { filename: wheel.name, url: filesUrl(`/packages/${wheel.name}`), hashes: { sha256: sha256(wheel.bytes) }, "requires-python": ">=3.7" },
      { filename: evilWheel.name, url: evilUrl(`/packages/${evilWheel.name}`), hashes: { sha256: sha256(evilWheel.bytes) } },
    ],
  });
}

function npmDoc() {
  const version = (t, v) => ({
    name: "tinynpm",
    version: v,
    dist: { tarball: t, shasum: tarballOf(v).shasum, integrity: tarballOf(v).integrity },
  });
  return JSON.stringify({
    name: "tinynpm",
    "dist-tags": { latest: "1.0.0" },
    versions: {
      "1.0.0": version(filesUrl(`/npm/${tarball.name}`), "1.0.0"),
      "2.0.0": version(evilUrl(`/npm/${evilTarball.name}`), "2.0.0"),
    },
  });
}
const tarballOf = (v) => (v === "1.0.0" ? tarball : evilTarball);

function fileServer(req, res) {
  const name = req.url.split("/").pop();
  const blob = [wheel, evilWheel, badWheel, tarball, evilTarball].find((f) => f.name === name);
  if (!blob) return res.writeHead(404).end("no such file");
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.bytes.length }).end(blob.bytes);
}

before(async () => {
  index = await serve((req, res) => {
    const url = new URL(req.url, "http://x");
    let m;
    if ((m = /^\/simple\/([^/]+)\/$/.exec(url.pathname)) && simpleHtml(m[1]) !== null) {
      return res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(simpleHtml(m[1]));
    }
    if ((m = /^\/json\/simple\/([^/]+)\/$/.exec(url.pathname)) && simpleJson(m[1]) !== null) {
      return res.writeHead(200, { "content-type": "application/vnd.pypi.simple.v1+json" }).end(simpleJson(m[1]));
    }
    if (url.pathname === "/npm/tinynpm") {
      return res.writeHead(200, { "content-type": "application/json" }).end(npmDoc());
    }
    res.writeHead(404, { "content-type": "text/html" }).end(`<a href="${evilUrl("/x")}">not found</a>`);
  });
  files = await serve(fileServer);
  evil = await serve(fileServer);
  deadPort = await closedPort();
  const ports = { [INDEX]: index.port, [FILES]: files.port, [EVIL]: evil.port };
  // The worker's whole internet: the three names, on their own ports.
  const outboundService = async (request) => {
    const url = new URL(request.url);
    outbound.push(request.url);
    if (ports[url.hostname] === undefined || Number(url.port) !== ports[url.hostname]) {
      return new Response("unreachable", { status: 502 });
    }
    url.hostname = "127.0.0.1";
    const headers = new Headers(request.headers);
    headers.delete("host");
    const resp = await fetch(url, { method: request.method, headers, redirect: "manual" });
    return new Response(resp.body, resp);
  };
  const hosts = [
    { host: INDEX, http: true, ports: [index.port], package_index: true },
    { host: FILES, http: true, ports: [files.port] },
  ];
  h = await startAirlock({ policy: (echoUrl) => testPolicy(echoUrl, { egress: { hosts } }), outboundService });
  session = await h.mint({ echo: "read" }, { egress: true });
});

after(async () => {
  await Promise.all([index, files, evil].filter(Boolean).map((s) => s.close()));
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Environment for a client whose only way out is Airlock. */
function closedEnv(extra = {}) {
  const proxy = `http://127.0.0.1:${deadPort}`;
  const env = { PATH: process.env.PATH, HOME: join(tmp, "home"), LANG: "C.UTF-8" };
  for (const k of ["http_proxy", "https_proxy", "all_proxy"]) {
    env[k] = proxy;
    env[k.toUpperCase()] = proxy;
  }
  env.no_proxy = env.NO_PROXY = "127.0.0.1";
  return { ...env, ...extra };
}

function run(cmd, args, env, cwd = tmp) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, cwd, timeout: RUN_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

const airlockBase = () => `http://127.0.0.1:${h.url.port}`;
const indexRoute = () => `/e/${INDEX}:${index.port}`;

describe("pages through Airlock", () => {
  test("PEP 503 HTML: links onto /e/, the host not listed removed, hashes and attributes kept", async () => {
    const r = await h.egress(`${INDEX}:${index.port}/simple/tinypkg/`, { token: session.token });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers["content-type"], /^text\/html/);
    const wheelLink = `${airlockBase()}/e/${FILES}:${files.port}/packages/${wheel.name}#sha256=${sha256(wheel.bytes)}`;
    assert.ok(r.text.includes(`<a href="${wheelLink}" data-requires-python="&gt;=3.7">`), r.text);
    assert.ok(r.text.includes(`<a href="${airlockBase()}${indexRoute()}/packages/tinypkg-0.1.tar.gz#sha256=00">`), "root-relative link");
    assert.ok(!r.text.includes(EVIL) && !r.text.includes(evilWheel.name), r.text);
    assert.ok(r.text.includes("<title>Links for tinypkg</title>"));
  });

  test("PEP 691 JSON and npm documents", async () => {
    const r = await h.egress(`${INDEX}:${index.port}/json/simple/tinypkg/`, { token: session.token });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.files.map((f) => f.url), [`${airlockBase()}/e/${FILES}:${files.port}/packages/${wheel.name}`]);
    assert.equal(r.json.files[0].hashes.sha256, sha256(wheel.bytes));
    const n = await h.egress(`${INDEX}:${index.port}/npm/tinynpm`, { token: session.token });
    assert.equal(n.status, 200, n.text);
    assert.deepEqual(Object.keys(n.json.versions), ["1.0.0"]);
    assert.deepEqual(n.json.versions["1.0.0"].dist, {
      tarball: `${airlockBase()}/e/${FILES}:${files.port}/npm/${tarball.name}`,
      shasum: tarball.shasum,
      integrity: tarball.integrity,
    });
  });

  test("a page that cannot be read whole is refused, not passed half-rewritten", async () => {
    const r = await h.egress(`${INDEX}:${index.port}/simple/broken/`, { token: session.token });
    assertError(r, 502, "upstream_index_unreadable");
    assert.ok(!r.text.includes(FILES));
  });

  test("only 2xx pages of the index host are rewritten; files pass unchanged", async () => {
    const r = await h.egress(`${INDEX}:${index.port}/nothing-here`, { token: session.token });
    assert.equal(r.status, 404);
    assert.ok(r.text.includes(EVIL), "a 404 page is passed as it is");
    const f = await h.raw({ path: `/e/${FILES}:${files.port}/packages/${wheel.name}`, headers: { authorization: `Bearer ${session.token}` } });
    assert.equal(f.status, 200);
    assert.equal(sha256(f.bodyBuffer), sha256(wheel.bytes));
  });
});

describe("pip download in a closed sandbox", () => {
  let pip;
  before(async () => {
    const venv = join(tmp, "venv");
    execFileSync("python3", ["-m", "venv", venv], { timeout: RUN_TIMEOUT_MS });
    pip = join(venv, "bin", "pip");
  });

  const download = (indexPath, pkg, dest) =>
    run(
      pip,
      [
        "--isolated", "--disable-pip-version-check", "--no-cache-dir", "--retries", "0", "--timeout", "20",
        "download", "--no-deps", "-d", dest,
        "--index-url", `http://session:${session.token}@127.0.0.1:${h.url.port}${indexRoute()}${indexPath}`,
        pkg,
      ],
      closedEnv(),
    );

  for (const [label, indexPath] of [["PEP 503 HTML", "/simple/"], ["PEP 691 JSON", "/json/simple/"]]) {
    test(`${label}: every file comes through Airlock, the hash holds, the unlisted host is never asked`, async () => {
      const dest = join(tmp, `dl-${indexPath.replaceAll("/", "")}`);
      const filesBefore = files.hits.length;
      const outBefore = outbound.length;
      const r = await download(indexPath, "tinypkg", dest);
      assert.equal(r.code, 0, `pip failed:\n${r.stdout}\n${r.stderr}`);
      assert.deepEqual(readdirSync(dest), [wheel.name], "pip chose the newest version it was shown");
      assert.equal(sha256(readFileSync(join(dest, wheel.name))), sha256(wheel.bytes));
      const fileHits = files.hits.slice(filesBefore);
      assert.ok(fileHits.includes(`/packages/${wheel.name}`), `files host hits: ${fileHits}`);
      // Every request the files host saw was one the worker sent.
      const sent = outbound.slice(outBefore).filter((u) => new URL(u).hostname === FILES);
      assert.equal(fileHits.length, sent.length, `${fileHits} vs ${sent}`);
      assert.equal(evil.hits.length, 0, `the unlisted host was asked: ${evil.hits}`);
      assert.ok(!outbound.some((u) => u.includes(EVIL)), "the worker fetched from the unlisted host");
    });
  }

  test("a wrong #sha256 in the index fails pip's hash check (the fragment reached pip)", async () => {
    const dest = join(tmp, "dl-bad");
    const r = await download("/simple/", "badhash", dest);
    assert.notEqual(r.code, 0, "pip accepted a file whose hash does not match");
    assert.match(r.stdout + r.stderr, /HASH/i);
    assert.ok(!existsSync(join(dest, badWheel.name)));
  });

  test("without Airlock there is no way out (the proxy variables hold)", async () => {
    const r = await run(
      pip,
      ["--isolated", "--disable-pip-version-check", "--no-cache-dir", "--retries", "0", "--timeout", "5",
        "download", "--no-deps", "-d", join(tmp, "dl-direct"), "--index-url", `http://${INDEX}:${index.port}/simple/`, "tinypkg"],
      closedEnv(),
    );
    assert.notEqual(r.code, 0);
    assert.equal(evil.hits.length, 0);
  });
});

describe("npm install in a closed sandbox", () => {
  test("the tarball comes through Airlock, integrity holds, the unlisted host is never asked", async (t) => {
    const npmOk = await run("npm", ["--version"], { PATH: process.env.PATH });
    if (npmOk.code !== 0) return t.skip("no npm on PATH");
    const project = join(tmp, "npm-project");
    mkdirSync(project, { recursive: true });
    const registry = `${airlockBase()}${indexRoute()}/npm/`;
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "sandbox-project", version: "0.0.0", private: true }));
    writeFileSync(
      join(project, ".npmrc"),
      `registry=${registry}\n//127.0.0.1:${h.url.port}/:_authToken=${session.token}\n`,
    );
    const filesBefore = files.hits.length;
    const proxy = `http://127.0.0.1:${deadPort}`;
    const r = await run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--cache", join(tmp, "npm-cache"), "--prefer-online", "tinynpm"],
      closedEnv({ npm_config_proxy: proxy, npm_config_https_proxy: proxy, npm_config_noproxy: "127.0.0.1", npm_config_userconfig: join(tmp, "no-npmrc") }),
      project,
    );
    assert.equal(r.code, 0, `npm failed:\n${r.stdout}\n${r.stderr}`);
    const installed = JSON.parse(readFileSync(join(project, "node_modules", "tinynpm", "package.json"), "utf8"));
    assert.equal(installed.version, "1.0.0");
    const lock = JSON.parse(readFileSync(join(project, "package-lock.json"), "utf8"));
    assert.equal(lock.packages["node_modules/tinynpm"].integrity, tarball.integrity);
    assert.ok(files.hits.slice(filesBefore).includes(`/npm/${tarball.name}`));
    assert.equal(evil.hits.length, 0);
  });
});
