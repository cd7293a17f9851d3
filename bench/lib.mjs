// Shared pieces of the benchmark tools (bench/harness.mjs, bench/profile.mjs):
// the origin process, one Miniflare/workerd hosting Airlock, the JS baseline
// and the Rust floor worker, the HTTP client, and /proc readings of workerd.

import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { Miniflare } from "miniflare";

// The HTTP client is undici, resolved through Miniflare's own dependency (the
// same client Miniflare uses), so no extra package is needed.
export const requireFromMiniflare = createRequire(createRequire(import.meta.url).resolve("miniflare"));
const { Pool } = requireFromMiniflare("undici");

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const rel = (p) => relative(REPO_ROOT, p) || ".";
export const WORKER_SCRIPT = resolve(REPO_ROOT, process.env.AIRLOCK_WORKER_SCRIPT || join("build", "index.js"));
export const STATE_SCRIPT = resolve(REPO_ROOT, process.env.AIRLOCK_STATE_SCRIPT || join("build", "state", "index.js"));
const BASELINE_SCRIPT = join(REPO_ROOT, "bench", "baseline-worker.js");
const STATE_BASELINE_SCRIPT = join(REPO_ROOT, "bench", "baseline-state-worker.js");
const BROKER_FLOOR_SCRIPT = join(REPO_ROOT, "bench", "broker-floor-worker.js");
/** The Rust floor worker (bench/floor-worker, built by bench/floor-worker/build.sh). */
export const FLOOR_SCRIPT = resolve(REPO_ROOT, process.env.AIRLOCK_FLOOR_SCRIPT || join("bench", "floor-worker", "build", "index.js"));
const ORIGIN_SCRIPT = join(REPO_ROOT, "bench", "origin.mjs");

export const KIB = 1024;
export const MIB = 1024 * KIB;

export const log = (...a) => console.error("[bench]", ...a);

/** Set when a signal asks the run to stop: batches end, nothing is reported. */
export const STATE = { stopping: false };

export function checkStopping() {
  if (STATE.stopping) throw new Error("stopped by a signal");
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Small helpers

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

export function median(values) {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export const fmtMs = (v) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(3) : v.toFixed(1)) : "n/a");
export const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "n/a");
export const fmtX = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}x` : "n/a");
export const fmtMiB = (kib) => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : "n/a");
export const fmtSignedMiB = (kib) => (Number.isFinite(kib) ? `${kib >= 0 ? "+" : ""}${(kib / 1024).toFixed(1)} MiB` : "n/a");

export async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function compatibilityDate() {
  try {
    const toml = readFileSync(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const m = /^\s*compatibility_date\s*=\s*"([^"]+)"/m.exec(toml);
    if (m) return m[1];
  } catch {}
  return "2026-07-01";
}


/** Runs a bench script's `main`: exit 0 when it resolves, 1 with the error when it throws. */
export function runMain(main) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(`[bench] failed: ${err?.stack || err}`);
      process.exit(1);
    },
  );
}

/** The least-squares slope of points { x, y } (NaN for fewer than two). */
export function slope(points) {
  if (points.length < 2) return NaN;
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den > 0 ? num / den : NaN;
}

// ---------------------------------------------------------------------------
// /proc: find workerd, read its memory

export function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const get = (key) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return { rssKiB: get("VmRSS"), hwmKiB: get("VmHWM"), anonKiB: get("RssAnon"), fileKiB: get("RssFile"), shmemKiB: get("RssShmem") };
}

/** The workerd process Miniflare spawned: a child of this process. */
export function findWorkerdPid() {
  const found = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (ppid === process.pid && comm.startsWith("workerd")) found.push(Number(name));
    } catch {}
  }
  if (found.length !== 1) throw new Error(`expected one workerd child process, found ${found.length}`);
  return found[0];
}

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** user + system CPU time of a process, in ms (clock-tick resolution). */
export function procCpuMs(pid) {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** The processes whose CPU time each batch records. */
export const PIDS = { workerd: 0, origin: 0 };

export function cpuSnapshot() {
  const c = process.cpuUsage();
  return { workerd: procCpuMs(PIDS.workerd), origin: procCpuMs(PIDS.origin), client: (c.user + c.system) / 1000 };
}

export function cpuDelta(a, b) {
  return { workerd: b.workerd - a.workerd, origin: b.origin - a.origin, client: b.client - a.client };
}

/** Reset VmHWM to the current RSS (Linux: write 5 to clear_refs). */
export function resetHwm(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Environment description

export function describeMachine() {
  const cpus = os.cpus();
  const model = cpus[0]?.model?.trim() || "unknown CPU";
  let workerdVersion = "unknown";
  try {
    const workerdBin = process.env.MINIFLARE_WORKERD_PATH || requireFromMiniflare("workerd").default || requireFromMiniflare("workerd");
    workerdVersion = execFileSync(String(workerdBin), ["--version"], { encoding: "utf8" }).trim();
  } catch {}
  const pkg = (name) => {
    try {
      return JSON.parse(readFileSync(requireFromMiniflare.resolve(`${name}/package.json`), "utf8")).version;
    } catch {
      try {
        return JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", name, "package.json"), "utf8")).version;
      } catch {
        return "unknown";
      }
    }
  };
  let git = "unknown";
  try {
    const sha = execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    git = dirty ? `${sha} (with uncommitted changes under src/ or Cargo.*)` : sha;
  } catch {}
  return {
    cpu: model,
    cores: os.availableParallelism?.() ?? cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    workerd: workerdVersion,
    workerdNpm: pkg("workerd"),
    miniflare: JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", "miniflare", "package.json"), "utf8")).version,
    undici: pkg("undici"),
    git,
  };
}

/**
 * Copies a built worker (index.js + *.wasm) into a private directory, so a
 * rebuild of its build/ during the run cannot change what is measured.
 */
export function snapshotBuild(workerScript = WORKER_SCRIPT) {
  const from = dirname(workerScript);
  const dir = mkdtempSync(join(os.tmpdir(), "airlock-bench-"));
  const files = readdirSync(from).filter((f) => f === basename(workerScript) || f.endsWith(".js") || f.endsWith(".mjs") || f.endsWith(".wasm"));
  for (const f of files) copyFileSync(join(from, f), join(dir, f));
  return {
    dir,
    script: join(dir, basename(workerScript)),
    wasm: files
      .filter((f) => f.endsWith(".wasm"))
      .sort()
      .map((f) => {
        const buf = readFileSync(join(dir, f));
        return {
          file: rel(join(from, f)),
          path: join(dir, f),
          raw: buf.length,
          gzip: gzipSync(buf, { level: 9 }).length,
          sha256: createHash("sha256").update(buf).digest("hex").slice(0, 16),
          built: statSync(join(from, f)).mtime,
        };
      }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Bench only: puts bench/wasm-probe's entry module beside a snapshot's
 * script (which must be index.js) and returns its path, so the isolate keeps
 * its Wasm instances' memories in globalThis.__airlockBenchWasm (read with
 * {@link readIsolateMemory}). The snapshot's own files are left as built.
 */
export function withWasmProbe(snapshot) {
  if (basename(snapshot.script) !== "index.js") throw new Error(`the Wasm probe wraps an index.js, not ${snapshot.script}`);
  const from = join(REPO_ROOT, "bench", "wasm-probe");
  copyFileSync(join(from, "patch.mjs"), join(snapshot.dir, "bench-wasm-probe.mjs"));
  copyFileSync(join(from, "entry.mjs"), join(snapshot.dir, "bench-entry.mjs"));
  return join(snapshot.dir, "bench-entry.mjs");
}

/**
 * An inspector session on the isolate of worker `name`, with the id of its
 * execution context (Runtime.evaluate needs it; the Runtime domain is
 * enabled only long enough to learn it, so console output is not sent to
 * the session).
 */
export async function openIsolateProbe(mf, name) {
  const cdp = await connectInspector(await inspectorTarget(mf, name));
  await cdp.send("Runtime.enable");
  for (const deadline = Date.now() + 2000; !cdp.contexts().length && Date.now() < deadline; ) await sleep(20);
  await cdp.send("Runtime.disable");
  return { name, cdp, contextId: cdp.contexts()[0]?.id };
}

/**
 * One isolate's memory through its probe (see {@link openIsolateProbe}): the V8 heap
 * (used and total, MiB) and the byte length of each Wasm memory the probe
 * recorded (MiB; empty without the probe).
 */
export async function readIsolateMemory({ cdp, contextId }) {
  const heap = (await cdp.send("Runtime.getHeapUsage")).result ?? {};
  const wasm = await cdp.send("Runtime.evaluate", {
    expression: "(globalThis.__airlockBenchWasm ?? []).map((m) => m.buffer.byteLength)",
    returnByValue: true,
    contextId,
  });
  const mib = (b) => (Number.isFinite(b) ? b / MIB : NaN);
  return {
    heapUsed: mib(heap.usedSize),
    heapTotal: mib(heap.totalSize),
    backing: mib(heap.backingStorageSize),
    wasm: (wasm.result?.result?.value ?? []).map(mib),
  };
}

// ---------------------------------------------------------------------------
// The origin (its own process)

export async function startOriginProcess() {
  const child = spawn(process.execPath, [ORIGIN_SCRIPT, "0"], { stdio: ["pipe", "pipe", "inherit"] });
  const rl = createInterface({ input: child.stdout });
  const line = await withTimeout(
    new Promise((resolvePromise, reject) => {
      rl.once("line", resolvePromise);
      child.once("exit", (code) => reject(new Error(`origin exited early (code ${code})`)));
    }),
    15_000,
    "origin start",
  );
  const { port } = JSON.parse(line);
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      if (child.exitCode !== null) return;
      child.stdin.end();
      const exited = new Promise((r) => child.once("exit", r));
      await withTimeout(exited, 3000, "origin exit").catch(() => child.kill("SIGKILL"));
    },
  };
}

// ---------------------------------------------------------------------------
// Miniflare: one workerd process hosting all workers, each on its own socket

export function policyFor(originUrl) {
  return {
    version: 1,
    audience: "airlock-bench",
    limits: { max_session_ttl_seconds: 86400 },
    tools: {
      bench: {
        origin: originUrl,
        allow_http: true,
        credential: { secret: "BENCH_API_TOKEN", inject: "bearer" },
        rules: [{ methods: ["GET", "HEAD"], path: "/**", level: "read" }],
      },
    },
  };
}

export const AUDIT_MARK = '"kind":"airlock.audit"';

/** Fresh admin and signing keys, and the credential under BENCH_API_TOKEN. */
export function benchSecrets(credential) {
  return {
    AIRLOCK_ADMIN_KEY: `admin_${randomBytes(24).toString("hex")}`,
    AIRLOCK_SIGNING_KEYS: `k1:${randomBytes(32).toString("base64")}`,
    BENCH_API_TOKEN: credential,
  };
}

/**
 * The Miniflare options of each worker the benchmark can host, by name:
 * airlock, airlock-state, statebase, broker, baseline and (with `floorScript`) floor.
 */
export function workerOptions({ originUrl, credential, secrets, compat = compatibilityDate(), script = WORKER_SCRIPT, stateScript = STATE_SCRIPT, floorScript = null, policy = null }) {
  const wasmRules = [{ type: "CompiledWasm", include: ["**/*.wasm"] }];
  // The Wasm probe's entry imports the script's index.js, an ES module.
  const rulesFor = (entry) => (basename(entry) === "bench-entry.mjs" ? [...wasmRules, { type: "ESModule", include: ["**/*.js", "**/*.mjs"] }] : wasmRules);
  const socket = [{ host: "127.0.0.1", port: 0 }];
  const forwarder = (name, scriptPath) => ({
    name,
    modules: true,
    scriptPath,
    modulesRoot: dirname(scriptPath),
    compatibilityDate: compat,
    bindings: { ORIGIN: originUrl, TOKEN: credential },
    unsafeDirectSockets: socket,
  });
  return {
    airlock: {
      name: "airlock",
      modules: true,
      scriptPath: script,
      modulesRoot: dirname(script),
      modulesRules: rulesFor(script),
      compatibilityDate: compat,
      bindings: { AIRLOCK_POLICY: JSON.stringify(policy ?? policyFor(originUrl)), ...secrets },
      // Session state (the Durable Object class of the airlock-state
      // script), as in wrangler.toml and miniflare-tests/helpers.mjs.
      durableObjects: { AIRLOCK_STATE: { className: "AirlockState", scriptName: "airlock-state", useSQLite: true } },
      unsafeDirectSockets: socket,
    },
    "airlock-state": {
      name: "airlock-state",
      modules: true,
      scriptPath: stateScript,
      modulesRoot: dirname(stateScript),
      modulesRules: rulesFor(stateScript),
      compatibilityDate: compat,
    },
    statebase: {
      ...forwarder("statebase", STATE_BASELINE_SCRIPT),
      durableObjects: { STATE: { className: "SessionState", useSQLite: true } },
    },
    broker: {
      ...forwarder("broker", BROKER_FLOOR_SCRIPT),
      bindings: { ORIGIN: originUrl, TOKEN: credential, SIGNING_KEYS: secrets.AIRLOCK_SIGNING_KEYS },
      durableObjects: { STATE: { className: "BrokerState", useSQLite: true } },
    },
    baseline: forwarder("baseline", BASELINE_SCRIPT),
    ...(floorScript ? { floor: { ...forwarder("floor", floorScript), modulesRules: wasmRules } } : {}),
  };
}

/**
 * Miniflare's handleRuntimeStdio: counts workerd's stdout lines and Airlock's
 * audit lines among them into `stdio`, keeps the tail of stderr.
 */
export function countingStdio(stdio) {
  return (stdout, stderr) => {
    // Count audit lines cheaply (no JSON parsing on the hot path).
    let partial = "";
    stdout.setEncoding("utf8");
    stdout.on("data", (chunk) => {
      const text = partial + chunk;
      const lines = text.split("\n");
      partial = lines.pop();
      for (const l of lines) {
        stdio.stdoutLines++;
        for (let at = l.indexOf(AUDIT_MARK); at !== -1; at = l.indexOf(AUDIT_MARK, at + 1)) stdio.auditLines++;
      }
    });
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk) => {
      stdio.stderrTail.push(chunk);
      if (stdio.stderrTail.length > 20) stdio.stderrTail.shift();
    });
  };
}

/**
 * `floorScript`: the Rust floor worker's index.js, or null to leave it out
 * (then `floorUrl` is null). `policy`: Airlock's policy (default policyFor(originUrl)).
 */
export async function startWorkers(originUrl, credential, { script = WORKER_SCRIPT, stateScript = STATE_SCRIPT, floorScript = null, inspector = false, policy = null, persistDir = null } = {}) {
  const stdio = { auditLines: 0, stdoutLines: 0, stderrTail: [] };
  const secrets = benchSecrets(credential);
  const compat = compatibilityDate();
  const mf = new Miniflare({
    cf: false,
    host: "127.0.0.1",
    port: 0,
    ...(inspector ? { inspectorPort: 0 } : {}),
    // Durable Object storage: in memory unless a directory is given.
    ...(persistDir ? { durableObjectsPersist: persistDir } : {}),
    handleRuntimeStdio: countingStdio(stdio),
    workers: Object.values(workerOptions({ originUrl, credential, secrets, compat, script, stateScript, floorScript, policy })),
  });
  try {
    await withTimeout(mf.ready, 60_000, "Miniflare start");
  } catch (err) {
    await withTimeout(mf.dispose(), 10_000, "mf.dispose").catch(() => {});
    const tail = stdio.stderrTail.join("");
    if (tail) err.message += `\nworkerd stderr (tail):\n${tail}`;
    throw err;
  }
  const airlockUrl = await mf.unsafeGetDirectURL("airlock");
  const baselineUrl = await mf.unsafeGetDirectURL("baseline");
  const stateBaselineUrl = await mf.unsafeGetDirectURL("statebase");
  const brokerUrl = await mf.unsafeGetDirectURL("broker");
  const floorUrl = floorScript ? await mf.unsafeGetDirectURL("floor") : null;
  return { mf, stdio, secrets, airlockUrl, baselineUrl, stateBaselineUrl, brokerUrl, floorUrl, compat };
}

// ---------------------------------------------------------------------------
// HTTP client: undici Pools with identical settings for every target, one
// per (target, concurrency) with exactly `concurrency` connections, so every
// connection stays busy. workerd closes a keep-alive connection after 5 s
// idle without announcing it; a client that keeps idle connections longer
// races that close and sees "other side closed" on its next request. The
// client therefore drops idle connections after 2 s (reconnecting on loopback
// costs well under a millisecond, once per connection).

export const KEEPALIVE_MS = 2000;

export function poolFor(target, concurrency) {
  let pool = target.pools.get(concurrency);
  if (!pool) {
    pool = new Pool(target.origin, {
      connections: concurrency,
      pipelining: 1,
      keepAliveTimeout: KEEPALIVE_MS,
      keepAliveMaxTimeout: KEEPALIVE_MS,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    target.pools.set(concurrency, pool);
  }
  return pool;
}

/**
 * One request (GET with the target's headers unless told otherwise); resolves
 * with { ms, bytes, status, text? } after the whole body arrived.
 */
export function request(target, path, { keepText = false, concurrency = 1, onData = null, headers = target.headers, method = "GET", body = undefined } = {}) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    target.sent++;
    poolFor(target, concurrency)
      .request({ method, path: target.prefix + path, headers, body })
      .then(({ statusCode, body }) => {
        let bytes = 0;
        const chunks = keepText ? [] : null;
        body.on("data", (c) => {
          bytes += c.length;
          if (chunks) chunks.push(c);
          if (onData) onData(bytes);
        });
        body.on("error", reject);
        body.on("end", () =>
          resolvePromise({
            ms: performance.now() - t0,
            bytes,
            status: statusCode,
            text: chunks ? Buffer.concat(chunks).toString("utf8") : undefined,
          }),
        );
      }, (err) => {
        // No answer at all (e.g. the connection closed under the request):
        // callers may tell this from a body that broke off.
        if (err && typeof err === "object") err.beforeResponse = true;
        reject(err);
      });
  });
}

/**
 * `n` requests with `concurrency` in flight. Returns the wall time; pushes
 * each latency into `latencies`; counts failures (wrong status or length).
 * `loopHeaders`: one set of request headers per client loop (loop i sends
 * loopHeaders[i % length], e.g. its own session's token); default the
 * target's headers.
 */
export async function runBatch(target, path, expectBytes, n, concurrency, latencies, loopHeaders = null) {
  let issued = 0;
  let errors = 0;
  let firstError = null;
  const cpu0 = cpuSnapshot();
  const t0 = performance.now();
  const loop = async (_, index) => {
    const headers = loopHeaders ? loopHeaders[index % loopHeaders.length] : target.headers;
    while (issued < n && !STATE.stopping) {
      issued++;
      try {
        const r = await request(target, path, { concurrency, headers });
        if (r.status !== 200 || (expectBytes !== null && r.bytes !== expectBytes)) {
          errors++;
          firstError ??= `status ${r.status}, ${r.bytes} bytes`;
        } else if (latencies) {
          latencies.push(r.ms);
        }
      } catch (e) {
        errors++;
        firstError ??= String(e.message || e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, loop));
  const wallMs = performance.now() - t0;
  return { wallMs, errors, firstError, cpu: cpuDelta(cpu0, cpuSnapshot()) };
}


// ---------------------------------------------------------------------------
// Everything a run needs, started in order and stopped in reverse

/**
 * Starts the origin process and workerd (Airlock and its state script, the
 * JS baseline, the JS baseline with a state check and, when built, the Rust
 * floor worker), mints `sessions` session tokens (default 1), and returns the targets, in this
 * order:
 *   { build, stateBuild, floorBuild, origin, workers, workerdPid, credential, token,
 *     sessions: [{ token, session_id, proof_key, headers }] (sessions[0].token === token),
 *     targets: [direct, baseline, statebase, broker, floor, airlock] (floor only when built), close }
 * Each target has a `key`: "direct", "baseline", "statebase", "broker", "floor" or "airlock".
 * `build` / `stateBuild` / `floorBuild` describe the snapshots that run (see snapshotBuild);
 * `floorBuild` is null when the floor worker is left out: `floor: false`,
 * or its build is missing (`floor: "auto"`, the default; a warning is logged).
 * Every target sends the same request headers (the sandbox's session token).
 * `policy` replaces Airlock's policy (default policyFor(origin)); `scope` is the
 * minted sessions' tools (default { bench: "read" }). `persist`: keep Durable
 * Object storage in a temporary directory (removed at close) instead of in
 * workerd's memory, as on the edge, where it does not count in the isolate's memory.
 */
export async function startBench({ inspector = false, floor = "auto", sessions: sessionCount = 1, policy = null, scope = { bench: "read" }, persist = false, wasmProbe = false } = {}) {
  for (const script of [WORKER_SCRIPT, STATE_SCRIPT]) {
    if (!existsSync(script)) throw new Error(`${rel(script)} does not exist: build the workers first (bash scripts/build)`);
  }
  const withFloor = floor !== false && existsSync(FLOOR_SCRIPT);
  if (floor === true && !withFloor) throw new Error(`${rel(FLOOR_SCRIPT)} does not exist: build it first (bash bench/floor-worker/build.sh)`);
  if (floor === "auto" && !withFloor) log(`${rel(FLOOR_SCRIPT)} does not exist: running without the Rust floor worker (build it with bash bench/floor-worker/build.sh)`);
  const credential = `benchcred_${randomBytes(24).toString("hex")}`;
  const cleanups = [];
  let closing = null;
  // Every caller (the run's own finally, a signal) waits for the same cleanup.
  const close = () =>
    (closing ??= (async () => {
      while (cleanups.length) {
        const f = cleanups.pop();
        await withTimeout(Promise.resolve().then(f), 15_000, "cleanup step").catch(() => {});
      }
    })());
  const onSignal = (sig) => {
    log(`${sig}: stopping`);
    STATE.stopping = true;
    withTimeout(close(), 25_000, "cleanup")
      .catch(() => {})
      .finally(() => process.exit(130));
  };
  for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, onSignal);

  try {
    const build = snapshotBuild();
    cleanups.push(async () => build.remove());
    // Miniflare exits the process on SIGINT/SIGTERM itself (after stopping
    // workerd), possibly before the async cleanup ran: remove the copy then too.
    process.once("exit", build.remove);
    const stateBuild = snapshotBuild(STATE_SCRIPT);
    cleanups.push(async () => stateBuild.remove());
    process.once("exit", stateBuild.remove);
    const floorBuild = withFloor ? snapshotBuild(FLOOR_SCRIPT) : null;
    if (floorBuild) {
      cleanups.push(async () => floorBuild.remove());
      process.once("exit", floorBuild.remove);
    }
    let persistDir = null;
    if (persist) {
      persistDir = mkdtempSync(join(os.tmpdir(), "airlock-bench-state-"));
      const removeState = () => rmSync(persistDir, { recursive: true, force: true });
      cleanups.push(async () => removeState());
      process.once("exit", removeState);
    }
    checkStopping();
    const origin = await startOriginProcess();
    cleanups.push(origin.close);
    const workers = await startWorkers(origin.url, credential, {
      script: wasmProbe ? withWasmProbe(build) : build.script,
      stateScript: wasmProbe ? withWasmProbe(stateBuild) : stateBuild.script,
      floorScript: floorBuild?.script ?? null,
      inspector: inspector || wasmProbe,
      policy: typeof policy === "function" ? policy(origin.url) : policy,
      persistDir,
    });
    cleanups.push(() => withTimeout(workers.mf.dispose(), 15_000, "mf.dispose"));
    const workerdPid = findWorkerdPid();
    PIDS.workerd = workerdPid;
    PIDS.origin = origin.child.pid;

    const sessions = [];
    for (let i = 0; i < sessionCount; i++) {
      const s = await mintSession(workers, { agent: "bench-agent", user: `bench-user-${i}`, tools: scope, ttl_seconds: 7200 });
      sessions.push({ ...s, headers: sessionHeaders(s.token) });
    }
    const { token, headers } = sessions[0];
    const targets = [
      { key: "direct", name: "origin direct", origin: origin.url, prefix: "", headers },
      { key: "baseline", name: "JS baseline worker", origin: workers.baselineUrl.origin, prefix: "", headers },
      { key: "statebase", name: "JS baseline + state check", origin: workers.stateBaselineUrl.origin, prefix: "", headers },
      { key: "broker", name: "JS broker floor", origin: workers.brokerUrl.origin, prefix: "", headers },
      ...(workers.floorUrl ? [{ key: "floor", name: "Rust floor worker", origin: workers.floorUrl.origin, prefix: "", headers }] : []),
      { key: "airlock", name: "Airlock", origin: workers.airlockUrl.origin, prefix: "/t/bench", headers },
    ].map((t) => ({ ...t, pools: new Map(), sent: 0 }));
    // Destroying a pool waits for its sockets; don't let that hold up the rest.
    cleanups.push(() =>
      withTimeout(Promise.all(targets.flatMap((t) => [...t.pools.values()].map((p) => p.destroy().catch(() => {})))), 2000, "pool.destroy"),
    );
    return { build, stateBuild, floorBuild, origin, workers, workerdPid, credential, token, sessions, targets, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The request headers of a sandbox holding `token` (the same for every target). */
export function sessionHeaders(token) {
  return { authorization: `Bearer ${token}`, accept: "*/*", "user-agent": "airlock-bench" };
}

/** Minimal Chrome DevTools Protocol client over the inspector WebSocket. */
export async function connectInspector(url) {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", () => reject(new Error(`inspector connection to ${url} failed`)), { once: true });
  });
  let id = 0;
  const pending = new Map();
  const events = [];
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("utf8"));
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    } else if (msg.method === "Runtime.executionContextCreated") {
      events.push(msg);
    }
  });
  return {
    /** Runtime.executionContextCreated events seen so far (after Runtime.enable). */
    contexts: () => events.map((e) => e.params.context),
    send: (method, params = {}, timeoutMs = 60_000) =>
      withTimeout(
        new Promise((resolve) => {
          const i = ++id;
          pending.set(i, resolve);
          ws.send(JSON.stringify({ id: i, method, params }));
        }),
        timeoutMs,
        method,
      ),
    close: () => ws.close(),
  };
}

/** The inspector WebSocket URL of the isolate of worker `name` (Miniflare started with `inspector`). */
export async function inspectorTarget(mf, name) {
  const inspectorUrl = await mf.getInspectorURL();
  const list = await (await fetch(`http://${inspectorUrl.host}/json/list`)).json();
  const entry = list.find((t) => t.webSocketDebuggerUrl?.endsWith(`core:user:${name}`));
  if (!entry) throw new Error(`no inspector target for ${name}: ${list.map((t) => t.webSocketDebuggerUrl).join(", ")}`);
  return entry.webSocketDebuggerUrl;
}

/** A control-plane call to Airlock with the admin key; resolves with { status, text }. */
export async function adminCall(workers, method, path, body = undefined) {
  const resp = await fetch(new URL(path, workers.airlockUrl), {
    method,
    headers: { authorization: `Bearer ${workers.secrets.AIRLOCK_ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: resp.status, text: await resp.text() };
}

/** Mints one session: { token, session_id, proof_key, expires_at }. */
export async function mintSession(workers, claims) {
  const r = await adminCall(workers, "POST", "/v1/sessions", claims);
  if (r.status !== 201) throw new Error(`mint failed: ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}
