// The soak's RSS question asked of the reference workers: does workerd's RSS
// grow under steady load with no Airlock code in the process at all? Starts
// the same setup as the soak (origin process, one workerd, Durable Object
// storage on disk, 32 sessions minted) and loads one target with 1 KiB GETs
// at concurrency 32, each client loop sending its own session's token, then
// reports workerd's RSS over time, its least-squares slope over the second
// half, and the memory mappings that grew most (V8's heap lives in its
// pointer-compression cages, workerd's own C++ heap in its allocator's
// regions). See docs/performance.md ("Soak").
//
//   node_modules/.bin/node bench/rss-control.mjs [--target=baseline|statebase|airlock]
//       [--seconds=90] [--gc-every=S]
//
// --gc-every=S forces a full garbage collection in the target's isolate
// every S seconds through workerd's inspector. Build first (bash scripts/build).

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { MIB, fmtInt, log, openIsolateProbe, procStatus, runBatch, runMain, slope, startBench } from "./lib.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--(target|seconds|gc-every)=(.+)$/.exec(a);
    if (!m) {
      console.error(`unknown argument ${a}\nusage: node bench/rss-control.mjs [--target=baseline|statebase|airlock] [--seconds=90] [--gc-every=S]`);
      process.exit(2);
    }
    return [m[1], m[2]];
  }),
);
const TARGET = args.target ?? "statebase";
const SECONDS = Number(args.seconds ?? 90);
const GC_EVERY = args["gc-every"] === undefined ? 0 : Number(args["gc-every"]);
const ISOLATE = { baseline: "baseline", statebase: "statebase", airlock: "airlock" }[TARGET];
if (!ISOLATE || !(SECONDS > 0) || !(GC_EVERY >= 0)) {
  console.error("--target must be baseline, statebase or airlock; --seconds and --gc-every positive numbers");
  process.exit(2);
}

/** Resident KiB per mapping (start address and path), from /proc/<pid>/smaps. */
function mappings(pid) {
  const out = new Map();
  let current = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) current = `${head[1]}${head[2] ? ` ${head[2].split("/").pop()}` : ""}`;
    else if (current && line.startsWith("Rss:")) out.set(current, Number(line.split(/\s+/)[1]));
  }
  return out;
}

async function main() {
  const bench = await startBench({ floor: false, sessions: 32, persist: true, inspector: GC_EVERY > 0 });
  try {
    const target = bench.targets.find((t) => t.key === TARGET);
    const loopHeaders = bench.sessions.map((s) => s.headers);
    const pid = bench.workerdPid;
    const probe = GC_EVERY > 0 ? await openIsolateProbe(bench.workers.mf, ISOLATE) : null;
    const before = mappings(pid);
    const rss = [];
    const t0 = performance.now();
    const sample = () => {
      const st = procStatus(pid);
      rss.push({ x: (performance.now() - t0) / 60_000, y: st.rssKiB / 1024, anon: st.anonKiB / 1024 });
    };
    sample();
    const timer = setInterval(sample, 5000);
    const gcs = { done: 0, failed: 0 };
    const gcTimer = probe ? setInterval(() => probe.cdp.send("HeapProfiler.collectGarbage", {}, 20_000).then(() => gcs.done++, () => gcs.failed++), GC_EVERY * 1000) : null;
    log(`loading ${target.name} GET /small at concurrency 32 over 32 sessions for ${SECONDS} s${probe ? `, a forced GC every ${GC_EVERY} s` : ""}`);
    let requests = 0;
    let errors = 0;
    while (performance.now() - t0 < SECONDS * 1000) {
      const r = await runBatch(target, "/small", 1024, 3200, 32, null, loopHeaders);
      requests += 3200;
      errors += r.errors;
    }
    clearInterval(timer);
    if (gcTimer) clearInterval(gcTimer);
    sample();
    const seconds = (performance.now() - t0) / 1000;
    const end = rss.at(-1).x;
    const secondHalf = slope(rss.filter((p) => p.x >= end / 2));
    const grew = [...mappings(pid)]
      .map(([k, v]) => ({ k, d: v - (before.get(k) ?? 0) }))
      .sort((a, b) => b.d - a.d)
      .slice(0, 3);
    probe?.cdp.close();
    console.log(
      `${target.name}: ${fmtInt(requests)} requests in ${seconds.toFixed(0)} s (${fmtInt(requests / seconds)} req/s), ${errors} errors; ` +
        `workerd RSS ${rss[0].y.toFixed(0)} → ${rss.at(-1).y.toFixed(0)} MiB (anonymous ${rss[0].anon.toFixed(0)} → ${rss.at(-1).anon.toFixed(0)}); ` +
        `second-half slope ${secondHalf.toFixed(1)} MiB/min, about ${fmtInt((secondHalf * MIB) / ((requests / seconds) * 60))} bytes per request` +
        (probe ? `; forced GCs ${gcs.done} (${gcs.failed} failed)` : ""),
    );
    console.log(`grew most (KiB): ${grew.map((g) => `${g.k} +${fmtInt(g.d)}`).join(", ")}`);
    console.log(`RSS samples (minute: MiB): ${rss.map((p) => `${p.x.toFixed(1)}: ${p.y.toFixed(0)}`).join(", ")}`);
  } finally {
    await bench.close();
  }
}

runMain(main);
