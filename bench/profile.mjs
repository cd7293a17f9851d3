// Where does a worker's time go? Starts the same setup as the benchmark
// (origin process, one workerd with Airlock and the JS baseline, plus the
// Rust floor worker when it is the target), loads one worker with requests,
// records a V8 CPU profile of that worker's isolate through workerd's
// inspector, and prints the time by category (Rust/Wasm, wasm-bindgen JS
// glue, runtime built-ins, idle), the top functions by self time, and
// Airlock's own functions by inclusive time.
//
//   node_modules/.bin/node bench/profile.mjs [--target=airlock|baseline|statebase|broker|floor]
//       [--isolate=NAME] [--path=/small|/large|/echo-small] [--concurrency=8] [--seconds=6] [--top=25]
//
// --isolate profiles another worker's isolate while the target is loaded,
// e.g. --isolate=airlock-state for Airlock's session-state Durable Object.
//
// Build first (bash scripts/build; for --target=floor also
// bash bench/floor-worker/build.sh). The profile covers JavaScript and Wasm
// on the isolate's thread; workerd's own socket and HTTP work shows as
// "(program)" or "(idle)".

import { connectInspector, fmtInt, inspectorTarget, log, request, runBatch, runMain, sleep, startBench } from "./lib.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([a-z]+)=(.*)$/.exec(a);
    if (!m) {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
    return [m[1], m[2]];
  }),
);
const TARGET = args.target ?? "airlock";
const ISOLATE = args.isolate ?? TARGET;
const PATH = args.path ?? "/small";
const CONCURRENCY = Number(args.concurrency ?? 8);
const SECONDS = Number(args.seconds ?? 6);
const TOP = Number(args.top ?? 25);
if (!["airlock", "baseline", "statebase", "broker", "floor"].includes(TARGET)) {
  console.error("--target must be airlock, baseline, statebase, broker or floor");
  process.exit(2);
}

/** Load with `concurrency` requests in flight until `ms` has passed. */
async function load(target, ms) {
  const end = Date.now() + ms;
  let n = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) {
        const r = await runBatch(target, PATH, null, 1, CONCURRENCY, null);
        n++;
        errors += r.errors;
      }
    }),
  );
  return { n, errors };
}

function category(frame) {
  if (["(idle)", "(program)", "(garbage collector)", "(root)"].includes(frame.functionName)) return frame.functionName;
  if (frame.url.includes("wasm")) return "Rust compiled to Wasm";
  if (frame.url.endsWith("index.js")) return "wasm-bindgen / workers-rs JS glue (build/index.js)";
  if (frame.url.endsWith("baseline-worker.js")) return "baseline worker JS";
  if (!frame.url) return "runtime built-ins (fetch, streams, Headers, timers, console)";
  return `other JS (${frame.url.split("/").pop()})`;
}

function summarize(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const counts = new Map();
  for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
  let total = 0;
  const self = new Map();
  const cats = new Map();
  const inclusive = new Map();
  for (const [nodeId, c] of counts) {
    total += c;
    const f = byId.get(nodeId).callFrame;
    const name = f.functionName || "(anonymous)";
    self.set(name, (self.get(name) ?? 0) + c);
    const cat = category(f);
    cats.set(cat, (cats.get(cat) ?? 0) + c);
    const seen = new Set();
    for (let cur = nodeId; cur !== undefined; cur = parent.get(cur)) {
      const fn = byId.get(cur).callFrame.functionName || "(anonymous)";
      if (seen.has(fn)) continue;
      seen.add(fn);
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + c);
    }
  }
  const pct = (c) => `${((100 * c) / total).toFixed(1).padStart(5)}%`;
  const short = (name) => name.replace(/::h[0-9a-f]{16}/g, "").slice(0, 150);
  const out = [];
  out.push(`samples: ${fmtInt(total)}`);
  out.push("", "time by category:");
  for (const [k, c] of [...cats].sort((a, b) => b[1] - a[1])) out.push(`  ${pct(c)}  ${k}`);
  out.push("", `top ${TOP} functions by self time:`);
  for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) out.push(`  ${pct(c)}  ${short(k)}`);
  const own = [...inclusive].filter(([k]) => /^(airlock::|<?airlock::|core::ptr::drop_in_place<airlock::)/.test(k) || k.includes("airlock::"));
  if (own.length) {
    out.push("", `Airlock's own functions by inclusive time (top ${TOP}):`);
    for (const [k, c] of own.sort((a, b) => b[1] - a[1]).slice(0, TOP)) out.push(`  ${pct(c)}  ${short(k)}`);
  }
  return out.join("\n");
}

async function main() {
  // The floor worker only starts when it is the one profiled.
  const bench = await startBench({ inspector: true, floor: TARGET === "floor" });
  try {
    const target = bench.targets.find((t) => t.key === TARGET);
    const check = await request(target, PATH);
    if (check.status !== 200) throw new Error(`${target.name} ${PATH}: status ${check.status}`);
    const debuggerUrl = await inspectorTarget(bench.workers.mf, ISOLATE);
    log(`warming up ${target.name} ${PATH} at concurrency ${CONCURRENCY}`);
    await load(target, 2000);
    const cdp = await connectInspector(debuggerUrl);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
    await cdp.send("Profiler.start");
    const t0 = Date.now();
    const r = await load(target, SECONDS * 1000);
    const seconds = (Date.now() - t0) / 1000;
    const { result } = await cdp.send("Profiler.stop");
    cdp.close();
    await sleep(100);
    console.log(`${target.name} GET ${PATH}, concurrency ${CONCURRENCY}, ${seconds.toFixed(1)} s: ${fmtInt(r.n / seconds)} req/s, ${r.errors} errors (while profiling)`);
    console.log(summarize(result.profile));
  } finally {
    await bench.close();
  }
}

runMain(main);
