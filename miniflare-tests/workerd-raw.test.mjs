// Raw request paths against the built worker in a BARE workerd (no
// Miniflare), which is closer to production than Miniflare for this one
// question: Miniflare's entry worker re-parses every URL with WHATWG rules
// (resolving `%2e%2e`, `.%2e` and turning `\` into `/`) before Airlock runs,
// so the Miniflare suites can never hand those spellings to the worker.
//
// Measured with workerd 2026-07-30: workerd itself resolves literal `.` and
// `..` segments, but passes `%2e%2e`, `.%2e`, `%2e` and `\` through to
// request.url unchanged. A probe worker in the same process documents that;
// the Airlock cases assert the worker rejects those spellings itself.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startEchoOrigin } from "../demo/echo-origin.mjs";
import {
  COMPATIBILITY_DATE,
  PRIVATE_WORKER_SCRIPT,
  STATE_SCRIPT,
  WORKER_SCRIPT,
  assertError,
  generateSecrets,
  sleep,
  testPolicy,
} from "./helpers.mjs";

const require = createRequire(import.meta.url);
const WORKERD = require("workerd").default; // the binary Miniflare uses too

let echo;
let dir;
let child;
let stderr = "";
let secrets;
let airlockPort;
let probePort;
let token;

async function freePort() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function raw(port, path, headers = {}, method = "GET") {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method, headers: { connection: "close", ...headers }, agent: false },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode, headers: { ...res.headers }, text, json });
        });
        res.on("error", reject);
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error(`request ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

const capnpString = (s) => JSON.stringify(s); // ASCII-only names: JSON quoting is valid Cap'n Proto

async function stop() {
  if (echo) await echo.close();
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/**
 * Copies a built worker (its index.js, the state script's glue.mjs, and
 * *.wasm) into `dir/sub` and returns its Cap'n Proto module list.
 */
function embedBuild(script, sub) {
  const from = dirname(script);
  const files = [basename(script), ...readdirSync(from).filter((f) => f.endsWith(".mjs") || f.endsWith(".wasm"))];
  mkdirSync(join(dir, sub));
  for (const f of files) copyFileSync(join(from, f), join(dir, sub, f));
  return files.map((f) => `(name = ${capnpString(f)}, ${f.endsWith(".wasm") ? "wasm" : "esModule"} = embed ${capnpString(`${sub}/${f}`)})`);
}

before(async () => {
  echo = await startEchoOrigin({ port: 0 });
  try {
    secrets = generateSecrets();
    dir = mkdtempSync(join(tmpdir(), "airlock-workerd-"));
    const modules = embedBuild(WORKER_SCRIPT, "airlock");
    // The state script's modules have the same names: hence a folder each.
    const stateModules = embedBuild(STATE_SCRIPT, "state-script");
    copyFileSync(PRIVATE_WORKER_SCRIPT, join(dir, "private.js"));
    writeFileSync(
      join(dir, "probe.js"),
      "export default { fetch(req) { return new Response(req.url); } };\n",
    );
    const bindings = { AIRLOCK_POLICY: JSON.stringify(testPolicy(echo.url)), ...secrets };
    for (const [name, value] of Object.entries(bindings)) writeFileSync(join(dir, `${name}.txt`), value);
    mkdirSync(join(dir, "state"));

    airlockPort = await freePort();
    probePort = await freePort();
    const bindingList = [
      ...Object.keys(bindings).map((n) => `(name = ${capnpString(n)}, text = embed ${capnpString(`${n}.txt`)})`),
      `(name = "PRIVATE_ORIGIN", service = "airlock-demo-private")`,
      `(name = "AIRLOCK_STATE", durableObjectNamespace = (className = "AirlockState", serviceName = "airlock-state"))`,
    ];
    writeFileSync(
      join(dir, "config.capnp"),
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "airlock", worker = .airlock),
    (name = "airlock-state", worker = .state),
    (name = "airlock-demo-private", worker = .private),
    (name = "probe", worker = .probe),
    (name = "loopback", network = (allow = ["public", "private", "local"])),
    (name = "state-disk", disk = (path = ${capnpString(join(dir, "state"))}, writable = true)),
  ],
  sockets = [
    (name = "airlock", address = "127.0.0.1:${airlockPort}", http = (), service = "airlock"),
    (name = "probe", address = "127.0.0.1:${probePort}", http = (), service = "probe"),
  ],
);
const airlock :Workerd.Worker = (
  modules = [ ${modules.join(", ")} ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
  bindings = [ ${bindingList.join(", ")} ],
  globalOutbound = "loopback",
);
const state :Workerd.Worker = (
  modules = [ ${stateModules.join(", ")} ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
  durableObjectNamespaces = [ (className = "AirlockState", uniqueKey = "airlock-state", enableSql = true) ],
  durableObjectStorage = (localDisk = "state-disk"),
);
const private :Workerd.Worker = (
  modules = [ (name = "private.js", esModule = embed "private.js") ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
);
const probe :Workerd.Worker = (
  modules = [ (name = "probe.js", esModule = embed "probe.js") ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
);
`,
    );
    child = spawn(WORKERD, ["serve", "config.capnp"], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`workerd exited ${child.exitCode}: ${stderr}`);
      try {
        const r = await raw(airlockPort, "/v1/health");
        if (r.status === 200) break;
        throw new Error(`health ${r.status} ${r.text}`);
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`workerd did not start: ${err.message}\n${stderr}`);
        await sleep(200);
      }
    }
    const mint = await fetch(`http://127.0.0.1:${airlockPort}/v1/sessions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secrets.AIRLOCK_ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ agent: "a", user: "u", tools: { echo: "admin" }, ttl_seconds: 600 }),
    });
    assert.equal(mint.status, 201);
    token = (await mint.json()).token;
  } catch (err) {
    await stop();
    throw err;
  }
});

after(async () => {
  await stop();
});

describe("bare workerd: what the worker receives", () => {
  const seen = [
    ["/t/echo/a/%2e%2e/b", "/t/echo/a/%2e%2e/b"],
    ["/t/echo/a/.%2e/b", "/t/echo/a/.%2e/b"],
    ["/t/echo/a\\b", "/t/echo/a\\b"],
    ["/t/echo/a/../b", "/t/echo/b"],
    ["/t/echo/a/./b", "/t/echo/a/b"],
    ["/t/echo/a/../../v1/sessions", "/t/v1/sessions"],
  ];
  for (const [sent, expected] of seen) {
    test(`request.url path for ${sent}`, async (t) => {
      const r = await raw(probePort, sent);
      // Not new URL(): that would normalize again, in Node.
      const path = r.text.replace(/^[a-z]+:\/\/[^/]*/i, "").replace(/[?#].*$/, "");
      t.diagnostic(`${sent} -> ${path}`);
      assert.equal(path, expected);
    });
  }
});

describe("bare workerd: Airlock rejects dot segments and backslashes it does receive", () => {
  const cases = [
    "/t/echo/a/%2e%2e/b",
    "/t/echo/a/%2E%2E/b",
    "/t/echo/a/.%2e/b",
    "/t/echo/a/%2e./b",
    "/t/echo/a/%2e/b",
    "/t/echo/%2e%2e/%2e%2e/v1/sessions",
    "/t/echo/a\\b",
    "/t/echo/a/..%2fb",
    "/t/echo/a%2fb",
    "/t/echo/a%00b",
  ];
  for (const path of cases) {
    test(`GET ${path} -> 400 invalid_path, no origin request`, async () => {
      const before = echo.hits.length;
      const r = await raw(airlockPort, path, { authorization: `Bearer ${token}` });
      assertError(r, 400, "invalid_path", path);
      await sleep(20);
      assert.deepEqual(echo.hits.slice(before).map((h) => h.url), []);
    });
  }

  test("literal .. is resolved by workerd; the origin gets exactly the resolved path", async () => {
    const before = echo.hits.length;
    const r = await raw(airlockPort, "/t/echo/a/../b?x=1", { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(echo.hits.slice(before).map((h) => h.url), ["/b?x=1"]);
  });
});
