// Cold start: how long a fresh isolate takes to load a worker's module and
// answer its first request, for Airlock (with its session-state script), the
// JS baseline, the JS baseline with a state check and the Rust floor worker.
//
// Two figures, each over several samples (median, lowest, highest):
//
// 1. In workerd: a fresh Miniflare (a new workerd process) per sample, hosting
//    only the target's own scripts; time from creating it to `ready` (workerd
//    started, the scripts compiled and their top-level code run: the
//    wasm-bindgen glue instantiates the module there), and from `ready` to the
//    first 200 on a fresh connection (the first request: Wasm functions
//    compiled on first call, for Airlock also the policy parse and the first
//    Durable Object instance). Samples rotate over the targets. Airlock's
//    first request is a real brokered call with a session minted beforehand:
//    its Durable Object storage persists on disk across the samples, and the
//    signing keys stay the same.
// 2. In Node (V8, the engine workerd embeds): WebAssembly.compile and
//    WebAssembly.instantiate of each module in a fresh Node process per
//    sample (V8 caches compiled modules within a process), with V8's default
//    lazy compilation and with every function compiled up front
//    (--no-wasm-lazy-compilation). Instantiation links stub imports and runs
//    no start code.
//
// Used by bench/harness.mjs; standalone:
//   node_modules/.bin/node bench/coldstart.mjs [--samples=N]

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { Miniflare } from "miniflare";
import {
  FLOOR_SCRIPT,
  benchSecrets,
  checkStopping,
  compatibilityDate,
  countingStdio,
  fmtInt,
  fmtMs,
  log,
  median,
  mintSession,
  sessionHeaders,
  snapshotBuild,
  startOriginProcess,
  STATE_SCRIPT,
  withTimeout,
  workerOptions,
  WORKER_SCRIPT,
} from "./lib.mjs";

/** The targets: which workers a fresh workerd hosts, and the path of the first request. */
const TARGETS = [
  { key: "baseline", name: "JS baseline worker", workers: ["baseline"], path: "/small" },
  { key: "statebase", name: "JS baseline + state check", workers: ["statebase"], path: "/small" },
  { key: "floor", name: "Rust floor worker", workers: ["floor"], path: "/small" },
  { key: "airlock", name: "Airlock", workers: ["airlock", "airlock-state"], path: "/t/bench/small" },
];

const summary = (values) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });
const fmtRange = (s) => `${fmtMs(s.median)} (${fmtMs(s.min)}–${fmtMs(s.max)})`;

/** One fresh workerd hosting `names`; resolves when it is ready. */
async function startFresh(opts, names, persistDir, stdio) {
  const mf = new Miniflare({
    cf: false,
    host: "127.0.0.1",
    port: 0,
    durableObjectsPersist: persistDir,
    handleRuntimeStdio: countingStdio(stdio),
    workers: names.map((n) => opts[n]),
  });
  try {
    await withTimeout(mf.ready, 60_000, "Miniflare start");
  } catch (err) {
    await withTimeout(mf.dispose(), 10_000, "mf.dispose").catch(() => {});
    throw err;
  }
  return mf;
}

/** GET on a fresh connection; resolves with the status after the whole body arrived. */
async function firstRequest(url, headers) {
  const resp = await fetch(url, { headers: { ...headers, connection: "close" } });
  await resp.arrayBuffer();
  return resp.status;
}

/** Fresh-workerd samples: { key: { ready, first, total } } (each a list of ms). */
async function workerdSamples({ samples, originUrl, scripts }) {
  const persistDir = mkdtempSync(join(os.tmpdir(), "airlock-bench-cold-"));
  const stdio = { auditLines: 0, stdoutLines: 0, stderrTail: [] };
  try {
    const credential = `benchcred_${randomBytes(24).toString("hex")}`;
    const secrets = benchSecrets(credential);
    const opts = workerOptions({ originUrl, credential, secrets, compat: compatibilityDate(), ...scripts });
    const targets = TARGETS.filter((t) => t.workers.every((n) => opts[n]));
    // A session for Airlock's first requests, minted once (not timed).
    const setup = await startFresh(opts, ["airlock", "airlock-state"], persistDir, stdio);
    let headers;
    try {
      const session = await mintSession({ airlockUrl: await setup.unsafeGetDirectURL("airlock"), secrets }, {
        agent: "bench-agent",
        user: "bench-cold",
        tools: { bench: "read" },
        ttl_seconds: 3600,
      });
      headers = sessionHeaders(session.token);
    } finally {
      await withTimeout(setup.dispose(), 15_000, "mf.dispose");
    }
    const out = Object.fromEntries(targets.map((t) => [t.key, { name: t.name, ready: [], first: [], total: [] }]));
    for (let i = 0; i < samples; i++) {
      for (let k = 0; k < targets.length; k++) {
        checkStopping();
        const t = targets[(i + k) % targets.length];
        const t0 = performance.now();
        const mf = await startFresh(opts, t.workers, persistDir, stdio);
        try {
          const tReady = performance.now();
          const url = new URL(t.path, await mf.unsafeGetDirectURL(t.workers[0]));
          const status = await firstRequest(url, headers);
          const tFirst = performance.now();
          if (status !== 200) throw new Error(`cold start ${t.name}: first request answered ${status}`);
          out[t.key].ready.push(tReady - t0);
          out[t.key].first.push(tFirst - tReady);
          out[t.key].total.push(tFirst - t0);
        } finally {
          await withTimeout(mf.dispose(), 15_000, "mf.dispose").catch(() => {});
        }
      }
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { name: v.name, ready: summary(v.ready), first: summary(v.first), total: summary(v.total) }]));
  } catch (err) {
    const tail = stdio.stderrTail.join("");
    if (tail) err.message += `\nworkerd stderr (tail):\n${tail}`;
    throw err;
  } finally {
    rmSync(persistDir, { recursive: true, force: true });
  }
}

// Runs in a fresh Node process: compile and instantiate one module, print the times.
const V8_PROBE = `
const bytes = require("node:fs").readFileSync(process.argv[1]);
const { performance } = require("node:perf_hooks");
(async () => {
  const t0 = performance.now();
  const module = await WebAssembly.compile(bytes);
  const t1 = performance.now();
  const imports = {};
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.kind !== "function" && i.kind !== "tag") throw new Error("unexpected import kind " + i.kind);
    (imports[i.module] ??= {})[i.name] = i.kind === "function" ? () => {} : WebAssembly.JSTag;
  }
  await WebAssembly.instantiate(module, imports);
  const t2 = performance.now();
  console.log(JSON.stringify({ compile: t1 - t0, instantiate: t2 - t1 }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
`;

/** Node samples per module: { file, lazy: { compile, instantiate }, eager: { … } }. */
function v8Samples(samples, wasm) {
  const probe = (flags) => {
    const compile = [];
    const instantiate = [];
    for (let i = 0; i < samples; i++) {
      checkStopping();
      const r = JSON.parse(execFileSync(process.execPath, [...flags, "-e", V8_PROBE, wasm.path], { encoding: "utf8", timeout: 60_000 }));
      compile.push(r.compile);
      instantiate.push(r.instantiate);
    }
    return { compile: summary(compile), instantiate: summary(instantiate) };
  };
  return { ...wasm, lazy: probe([]), eager: probe(["--no-wasm-lazy-compilation"]) };
}

/**
 * Both figures. `builds`: { build, stateBuild, floorBuild } snapshots (see
 * snapshotBuild; floorBuild may be null); `originUrl`: a running bench origin.
 */
export async function measureColdStart({ samples, originUrl, builds }) {
  const { build, stateBuild, floorBuild } = builds;
  const scripts = { script: build.script, stateScript: stateBuild.script, floorScript: floorBuild?.script ?? null };
  log(`cold start: ${samples} fresh workerd processes per target`);
  const workerd = await workerdSamples({ samples, originUrl, scripts });
  log(`cold start: ${samples} fresh Node processes per module`);
  const modules = [
    ...build.wasm.map((w) => ({ ...w, role: "Airlock worker (request path)" })),
    ...stateBuild.wasm.map((w) => ({ ...w, role: "Airlock state script" })),
    ...(floorBuild?.wasm ?? []).map((w) => ({ ...w, role: "Rust floor worker" })),
  ];
  const v8 = modules.map((w) => v8Samples(samples, w));
  return { samples, workerd, v8, node: process.version };
}

/** The report section (markdown lines). */
export function coldStartReport(cold) {
  const out = [];
  const p = (s = "") => out.push(s);
  p(`#### Cold start`);
  p();
  p(
    `A fresh workerd process per sample (${cold.samples} per target, rotating), hosting only the target's scripts: *ready* is from creating the Miniflare instance to \`ready\` (workerd started, the modules compiled, their top-level code run: the Wasm glue instantiates the module there), *first request* from \`ready\` to the first 200's last byte on a new connection (Airlock: a brokered call with a session minted earlier, including its state object's first instance). Median (lowest–highest), ms.`,
  );
  p();
  p(`| target | ready | first request | total | total − JS baseline |`);
  p(`|---|---:|---:|---:|---:|`);
  const base = cold.workerd.baseline?.total.median;
  for (const [key, r] of Object.entries(cold.workerd)) {
    const extra = Number.isFinite(base) && key !== "baseline" ? r.total.median - base : NaN;
    p(`| ${r.name} | ${fmtRange(r.ready)} | ${fmtRange(r.first)} | ${fmtRange(r.total)} | ${Number.isFinite(extra) ? `${extra >= 0 ? "+" : ""}${fmtMs(extra)}` : "—"} |`);
  }
  p();
  p(
    `The same modules in Node ${cold.node} (V8): \`WebAssembly.compile\` and \`WebAssembly.instantiate\` (stub imports, no start code) in a fresh process per sample, with V8's default lazy compilation and with every function compiled up front (\`--no-wasm-lazy-compilation\`). Median (lowest–highest), ms.`,
  );
  p();
  p(`| module | raw bytes | gzip -9 bytes | compile (lazy) | instantiate | compile (eager) | instantiate |`);
  p(`|---|---:|---:|---:|---:|---:|---:|`);
  for (const m of cold.v8) {
    p(`| ${m.role}: ${m.file} | ${fmtInt(m.raw)} | ${fmtInt(m.gzip)} | ${fmtRange(m.lazy.compile)} | ${fmtRange(m.lazy.instantiate)} | ${fmtRange(m.eager.compile)} | ${fmtRange(m.eager.instantiate)} |`);
  }
  p();
  return out;
}

// Standalone: build/ and the floor worker's build/ as they are.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const arg = process.argv.slice(2).find((a) => a.startsWith("--samples="));
  const samples = Math.max(1, Number(arg?.split("=")[1] ?? 5) || 5);
  const builds = {
    build: snapshotBuild(WORKER_SCRIPT),
    stateBuild: snapshotBuild(STATE_SCRIPT),
    floorBuild: existsSync(FLOOR_SCRIPT) ? snapshotBuild(FLOOR_SCRIPT) : null,
  };
  const origin = await startOriginProcess();
  try {
    const cold = await measureColdStart({ samples, originUrl: origin.url, builds });
    console.log(coldStartReport(cold).join("\n"));
  } finally {
    await origin.close();
    for (const b of Object.values(builds)) b?.remove();
  }
  process.exit(0);
}
