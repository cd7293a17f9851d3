// Side-by-side benchmark: the origin called directly, a minimal JavaScript
// Worker that forwards and sets one credential header (the "do it yourself"
// baseline), the same JS forwarder with one session-state check per request
// in a Durable Object (the floor for what Airlock must do to make revocation
// immediate), the plain forwarder written with workers-rs (the Rust floor
// worker, bench/floor-worker: what any Rust/Wasm worker pays), the JS broker
// floor (bench/broker-floor-worker.js: the least of Airlock's per-request
// guarantees in plain JS), and Airlock with its full pipeline — all in one
// run, on one workerd process, interleaved round by round so that machine
// drift hits all six alike. The
// budgets hold Airlock against the JS forwarder with the state check. One
// cell spreads its load over 32 sessions; a last section measures each
// worker's cold start in fresh workerd processes (bench/coldstart.mjs). See
// docs/performance.md for what is measured and how to read it.
//
// Run it with `bash bench/run` (builds Airlock and the floor worker when
// missing or stale, then runs this file with the project's Node 22). Options:
//   --quick         about a fifth of the requests; does not touch docs/performance.md
//   --scale=F       multiply every request count by F
//   --no-write      print only, do not update docs/performance.md
//   --write         update docs/performance.md even with --quick / --scale
//   --cold-samples=N  fresh-isolate samples per target for the cold-start
//                   section (default 7, 3 with --quick; 0 leaves it out)
// Environment: AIRLOCK_WORKER_SCRIPT (default build/index.js),
// AIRLOCK_STATE_SCRIPT (default build/state/index.js, the session-state script),
// AIRLOCK_FLOOR_SCRIPT (default bench/floor-worker/build/index.js; when it is
// missing the run goes on without the floor worker and says so).

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { coldStartReport, measureColdStart } from "./coldstart.mjs";
import {
  KIB,
  MIB,
  FLOOR_SCRIPT,
  REPO_ROOT,
  STATE_SCRIPT,
  WORKER_SCRIPT,
  describeMachine,
  fmtInt,
  fmtMiB,
  fmtMs,
  fmtSignedMiB,
  fmtX,
  log,
  median,
  percentile,
  procStatus,
  rel,
  request,
  resetHwm,
  runBatch,
  sleep,
  checkStopping,
  runMain,
  startBench,
} from "./lib.mjs";

const DOC = join(REPO_ROOT, "docs", "performance.md");
const BEGIN_MARK = "<!-- BEGIN GENERATED: bench/run (do not edit by hand) -->";
const END_MARK = "<!-- END GENERATED: bench/run -->";
const COMMAND = "bash bench/run";

// ---------------------------------------------------------------------------
// Options

const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const option = (name) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
for (const a of args) {
  if (!/^--(quick|no-write|write|scale=[0-9.]+|cold-samples=[0-9]+)$/.test(a)) {
    console.error(`unknown argument ${a}\nusage: bash bench/run [--quick] [--scale=F] [--no-write] [--write] [--cold-samples=N]`);
    process.exit(2);
  }
}
const QUICK = flag("quick");
const SCALE = Number(option("scale") ?? (QUICK ? 0.2 : 1));
const FULL = !QUICK && option("scale") === undefined;
const WRITE_DOC = flag("write") || (FULL && !flag("no-write"));
const COLD_SAMPLES = Number(option("cold-samples") ?? (QUICK ? 3 : 7));

// Sizes the origin serves (bench/origin.mjs).
const SIZES = {
  small: { path: "/small", bytes: KIB, label: "1 KiB" },
  large: { path: "/large", bytes: MIB, label: "1 MiB (chunked, 64 KiB writes)" },
};

// The cells: requests per target (split into interleaved rounds).
const scaled = (c) => ({
  ...c,
  perTarget: Math.max(c.rounds * Math.max(c.concurrency, 4), Math.round((c.perTarget * SCALE) / c.rounds) * c.rounds),
});
// Rounds are a multiple of 6: with six targets, each takes every place in
// the order equally often.
// `sessions`: the client loops use that many sessions, loop i its own
// (default: all share one).
const CELLS = [
  { size: "small", concurrency: 1, perTarget: 1200, rounds: 12, warmup: 100 },
  { size: "large", concurrency: 1, perTarget: 240, rounds: 12, warmup: 20 },
  { size: "small", concurrency: 32, perTarget: 6144, rounds: 12, warmup: 320 },
  { size: "large", concurrency: 32, perTarget: 768, rounds: 12, warmup: 64 },
  { size: "small", concurrency: 32, perTarget: 6144, rounds: 12, warmup: 320, sessions: 32 },
].map(scaled);
const SESSIONS = Math.max(...CELLS.map((c) => c.sessions ?? 1));
// An extra cell, no budget: a body that contains the credential, so
// Airlock's redaction finds and replaces a match.
const ECHO_CELL = scaled({ size: "echo", concurrency: 1, perTarget: 480, rounds: 6, warmup: 50 });

const MEMORY_RUNS_MB = [10, 100];

// Latency, throughput and CPU are held against the JS baseline with a state
// check: the floor for a broker whose revocation is immediate.
const BUDGETS = {
  wasmGzipBytes: 300_000, // the Airlock worker's module (the request path's cold start)
  p50c1: 1.1, // Airlock p50 <= 1.10 x (JS + state) p50 at concurrency 1
  rpsc32: 0.9, // Airlock req/s >= 0.90 x (JS + state) req/s at concurrency 32
  cpu: 1.25, // Airlock workerd CPU per request <= 1.25 x (JS + state), every cell
  memoryGrowthMiB: 16, // peak RSS growth, 100 MB run vs 10 MB run (GC sawtooth stays well below; a buffered body adds >= 90)
};

// ---------------------------------------------------------------------------
// One cell: warm up, then interleaved rounds

/** The request headers of each client loop in `cell` (null: the target's own, one session). */
function loopHeadersFor(cell, sessions) {
  if (!cell.sessions) return null;
  if (sessions.length < cell.sessions) throw new Error(`cell wants ${cell.sessions} sessions, ${sessions.length} minted`);
  return sessions.slice(0, cell.sessions).map((s) => s.headers);
}

async function runCell(targets, cell, sessions) {
  const loopHeaders = loopHeadersFor(cell, sessions);
  const size = cell.size === "echo" ? { path: "/echo-small", bytes: null, label: "~1 KiB containing the credential" } : SIZES[cell.size];
  const perRound = cell.perTarget / cell.rounds;
  const stats = targets.map(() => ({
    latencies: [],
    wallMs: 0,
    n: 0,
    errors: 0,
    warmupErrors: 0,
    firstError: null,
    roundRps: [],
    roundP50: [],
    cpu: { workerd: 0, origin: 0, client: 0 },
  }));
  const t0 = performance.now();
  for (const [i, t] of targets.entries()) {
    const r = await runBatch(t, size.path, size.bytes, cell.warmup, cell.concurrency, null, loopHeaders);
    stats[i].warmupErrors += r.errors;
    stats[i].firstError ??= r.firstError;
  }
  for (let round = 0; round < cell.rounds; round++) {
    checkStopping();
    // Rotate the order every round: each target takes each place equally often
    // (over a multiple of targets.length rounds).
    for (let k = 0; k < targets.length; k++) {
      const i = (round + k) % targets.length;
      const s = stats[i];
      const lat = [];
      const r = await runBatch(targets[i], size.path, size.bytes, perRound, cell.concurrency, lat, loopHeaders);
      s.latencies.push(...lat);
      s.wallMs += r.wallMs;
      s.n += perRound;
      s.errors += r.errors;
      s.firstError ??= r.firstError;
      for (const key of Object.keys(s.cpu)) s.cpu[key] += r.cpu[key];
      s.roundRps.push((perRound / r.wallMs) * 1000);
      s.roundP50.push(median(lat));
    }
  }
  const results = targets.map((t, i) => {
    const s = stats[i];
    const sorted = s.latencies.sort((a, b) => a - b);
    return {
      name: t.name,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      rps: (s.n / s.wallMs) * 1000,
      n: s.n,
      errors: s.errors,
      warmupErrors: s.warmupErrors,
      firstError: s.firstError,
      cpuUs: Object.fromEntries(Object.entries(s.cpu).map(([k, v]) => [k, (v * 1000) / s.n])),
      roundRps: s.roundRps,
      roundP50: s.roundP50,
    };
  });
  const by = Object.fromEntries(targets.map((t, i) => [t.key, results[i]]));
  return {
    cell,
    size,
    results,
    by,
    seconds: (performance.now() - t0) / 1000,
    // Airlock / JS baseline (the budgets), and with the floor worker:
    // Airlock / floor (what Airlock's pipeline adds) and floor / baseline
    // (what a workers-rs worker pays over a JS one).
    ratios: compare(by.airlock, by.baseline),
    airFloor: by.floor ? compare(by.airlock, by.floor) : null,
    // Airlock / the JS baseline with a state check (the floor for a broker
    // whose revocation is immediate), and what that check costs JS.
    airState: by.statebase ? compare(by.airlock, by.statebase) : null,
    stateBase: by.statebase ? compare(by.statebase, by.baseline) : null,
    // Airlock / the JS broker floor (the same guarantees' least work in
    // plain JS), and that floor / JS + state (what the guarantees cost).
    airBroker: by.broker ? compare(by.airlock, by.broker) : null,
    brokerState: by.broker && by.statebase ? compare(by.broker, by.statebase) : null,
    floorBase: by.floor ? compare(by.floor, by.baseline) : null,
  };
}

/** Ratios of target `a` to target `b` in one cell. */
function compare(a, b) {
  const roundRpsRatios = a.roundRps.map((v, i) => v / b.roundRps[i]);
  const roundP50Ratios = a.roundP50.map((v, i) => v / b.roundP50[i]);
  return {
    p50: a.p50 / b.p50,
    p99: a.p99 / b.p99,
    rps: a.rps / b.rps,
    addedP50: a.p50 - b.p50,
    cpu: a.cpuUs.workerd / b.cpuUs.workerd,
    addedCpuUs: a.cpuUs.workerd - b.cpuUs.workerd,
    roundRps: { median: median(roundRpsRatios), min: Math.min(...roundRpsRatios), max: Math.max(...roundRpsRatios) },
    roundP50: { median: median(roundP50Ratios), min: Math.min(...roundP50Ratios), max: Math.max(...roundP50Ratios) },
  };
}

// ---------------------------------------------------------------------------
// Memory: workerd RSS around one huge streamed response

async function measureMemory(target, pid, mb) {
  await sleep(500);
  const before = procStatus(pid);
  const hwmReset = resetHwm(pid);
  let polledPeak = before.rssKiB;
  const poll = setInterval(() => {
    try {
      polledPeak = Math.max(polledPeak, procStatus(pid).rssKiB);
    } catch {}
  }, 10);
  // RSS each time another tenth of the body has arrived: a body buffered
  // anywhere in workerd would show as a climb.
  const total = mb * MIB;
  const trail = [];
  const onData = (bytes) => {
    while (trail.length < 10 && bytes >= ((trail.length + 1) * total) / 10) {
      try {
        trail.push(procStatus(pid).rssKiB);
      } catch {
        trail.push(NaN);
      }
    }
  };
  const t0 = performance.now();
  let r;
  try {
    r = await request(target, `/huge?mb=${mb}`, { onData });
  } finally {
    clearInterval(poll);
  }
  const seconds = (performance.now() - t0) / 1000;
  const end = procStatus(pid);
  await sleep(1000);
  const after = procStatus(pid);
  const peak = hwmReset ? Math.max(end.hwmKiB, polledPeak) : polledPeak;
  return {
    target: target.name,
    key: target.key,
    mb,
    ok: r.status === 200 && r.bytes === total,
    status: r.status,
    bytes: r.bytes,
    beforeKiB: before.rssKiB,
    peakKiB: peak,
    peakSource: hwmReset ? "VmHWM" : "polled VmRSS",
    growthKiB: peak - before.rssKiB,
    afterKiB: after.rssKiB,
    trail,
    seconds,
    mbPerS: r.bytes / MIB / seconds,
  };
}

// ---------------------------------------------------------------------------
// Report (markdown; printed and written into docs/performance.md)

function report({ startedAt, machine, wasm, stateWasm, floorWasm, loadStart, loadEnd, cells, echo, memory, cold, audit, warmupErrors, totalSeconds }) {
  const out = [];
  const p = (s = "") => out.push(s);
  const loadFmt = (l) => l.map((v) => v.toFixed(2)).join(" / ");
  p(`### Latest run`);
  p();
  p(`Generated by \`${COMMAND}\`${FULL ? "" : ` (reduced run: scale ${SCALE})`} on ${startedAt.toISOString().replace(/\.\d+Z$/, "Z")}, ${totalSeconds.toFixed(0)} s.`);
  p();
  p(`- Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.kernel}; load average (1/5/15 min) ${loadFmt(loadStart)} at start, ${loadFmt(loadEnd)} at end`);
  p(`- Software: Node ${machine.node}, ${machine.workerd} (npm workerd ${machine.workerdNpm}, miniflare ${machine.miniflare}), client undici ${machine.undici}, compatibility date ${cells.compat}`);
  p(`- Worker: ${rel(WORKER_SCRIPT)}; source tree at git ${machine.git}`);
  p(
    floorWasm
      ? `- Rust floor worker: ${rel(FLOOR_SCRIPT)} (bench/floor-worker, workers-rs, same toolchain and release profile as Airlock)`
      : `- Rust floor worker: not run (${rel(FLOOR_SCRIPT)} was missing)`,
  );
  p(`- Session-state script: ${rel(STATE_SCRIPT)} (the Durable Object class AirlockState; not on the request path's module)`);
  for (const w of [...wasm, ...stateWasm, ...(floorWasm ?? [])]) {
    p(`- Wasm size: ${w.file} ${fmtInt(w.raw)} bytes raw, ${fmtInt(w.gzip)} bytes gzip -9 (${(w.raw / KIB).toFixed(0)} KiB / ${(w.gzip / KIB).toFixed(0)} KiB); sha256 ${w.sha256}…, built ${w.built.toISOString().replace(/\.\d+Z$/, "Z")}`);
  }
  p(`- Audit lines written by Airlock during the run: ${fmtInt(audit.lines)} for ${fmtInt(audit.requests)} Airlock requests`);
  const warm = Object.entries(warmupErrors);
  if (warm.length) p(`- Errors during the initial warm-up: ${warm.map(([k, v]) => `${k} ${v}`).join(", ")}`);
  p();
  const headerEnd = out.length;

  const budgetRows = [];
  const cpuRows = [];
  const floorRows = [];
  for (const w of wasm) {
    budgetRows.push({
      what: `Airlock worker Wasm ≤ ${fmtInt(BUDGETS.wasmGzipBytes)} bytes gzip -9 (${w.file})`,
      measured: `${fmtInt(w.gzip)} bytes`,
      pass: w.gzip <= BUDGETS.wasmGzipBytes,
    });
  }
  const cellTable = (c, title) => {
    p(`#### ${title}`);
    p();
    p(`${fmtInt(c.cell.perTarget)} requests per target in ${c.cell.rounds} interleaved rounds (after ${c.cell.warmup} warm-up requests each), ${c.seconds.toFixed(1)} s.`);
    p();
    p(`| target | p50 ms | p99 ms | req/s | CPU µs/req: workerd | origin | client | errors |`);
    p(`|---|---:|---:|---:|---:|---:|---:|---:|`);
    for (const r of c.results) {
      const warm = r.warmupErrors ? ` (+${r.warmupErrors} in warm-up)` : "";
      const cpu = ["workerd", "origin", "client"].map((k) => fmtInt(r.cpuUs[k])).join(" | ");
      p(`| ${r.name} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtInt(r.rps)} | ${cpu} | ${r.errors}${warm}${r.firstError ? `: ${r.firstError}` : ""} |`);
    }
    p();
    const ratioLine = (label, q, bold) => {
      const b = (t) => (bold ? `**${t}**` : t);
      return (
        `${label}: ${b(`p50 ${fmtX(q.p50)}`)} (${q.addedP50 >= 0 ? "+" : ""}${fmtMs(q.addedP50)} ms), p99 ${fmtX(q.p99)}, ${b(`req/s ${fmtX(q.rps)}`)}. ` +
        `workerd CPU per request ${fmtX(q.cpu)} (${q.addedCpuUs >= 0 ? "+" : ""}${fmtInt(q.addedCpuUs)} µs). ` +
        `Per round: p50 ratio median ${fmtX(q.roundP50.median)} (${fmtX(q.roundP50.min)}–${fmtX(q.roundP50.max)}), req/s ratio median ${fmtX(q.roundRps.median)} (${fmtX(q.roundRps.min)}–${fmtX(q.roundRps.max)}).`
      );
    };
    if (c.airState) {
      p(ratioLine("Airlock / JS baseline + state check", c.airState, true));
      p();
      p(ratioLine("Airlock / JS baseline", c.ratios, false));
      p();
      p(ratioLine("JS baseline + state check / JS baseline", c.stateBase, false));
      if (c.airBroker) {
        p();
        p(ratioLine("Airlock / JS broker floor", c.airBroker, false));
        p();
        p(ratioLine("JS broker floor / JS baseline + state check", c.brokerState, false));
      }
    } else {
      p(ratioLine("Airlock / JS baseline", c.ratios, false));
    }
    if (c.airFloor) {
      p();
      p(ratioLine("Airlock / Rust floor", c.airFloor, false));
      p();
      p(ratioLine("Rust floor / JS baseline", c.floorBase, false));
    }
    p();
  };
  const cellName = (c) => `${c.size.label.replace(/ \(.*\)$/, "")}, c=${c.cell.concurrency}${c.cell.sessions ? `, ${c.cell.sessions} sessions` : ""}`;
  for (const c of cells.list) {
    cellTable(c, `${c.size.label} response, concurrency ${c.cell.concurrency}${c.cell.sessions ? `, spread over ${c.cell.sessions} sessions` : ""}`);
    const clean = c.results.every((r) => r.errors + r.warmupErrors === 0);
    if (!c.airState) continue;
    // The latency and throughput budgets hold for the one-session cells; the
    // CPU budget for every cell.
    if (!c.cell.sessions && c.cell.concurrency === 1) {
      budgetRows.push({
        what: `Airlock p50 ≤ ${BUDGETS.p50c1.toFixed(2)}x JS + state, concurrency 1, ${c.size.label}`,
        measured: fmtX(c.airState.p50),
        pass: c.airState.p50 <= BUDGETS.p50c1 && clean,
      });
      floorRows.push({ what: `p50, ${cellName(c)}`, q: "p50", c });
    } else if (!c.cell.sessions) {
      budgetRows.push({
        what: `Airlock req/s ≥ ${BUDGETS.rpsc32.toFixed(2)}x JS + state, concurrency ${c.cell.concurrency}, ${c.size.label}`,
        measured: fmtX(c.airState.rps),
        pass: c.airState.rps >= BUDGETS.rpsc32 && clean,
      });
      floorRows.push({ what: `req/s, ${cellName(c)}`, q: "rps", c });
    } else {
      floorRows.push({ what: `req/s, ${cellName(c)}`, q: "rps", c });
    }
    cpuRows.push({
      what: `Airlock workerd CPU/req ≤ ${BUDGETS.cpu.toFixed(2)}x JS + state, ${cellName(c)}`,
      measured: `${fmtX(c.airState.cpu)} (${fmtInt(c.by.airlock.cpuUs.workerd)} vs ${fmtInt(c.by.statebase.cpuUs.workerd)} µs)`,
      pass: c.airState.cpu <= BUDGETS.cpu && clean,
    });
    floorRows.push({ what: `workerd CPU/req, ${cellName(c)}`, q: "cpu", c });
  }
  budgetRows.push(...cpuRows);
  const many = cells.list.find((c) => c.cell.sessions);
  const one = many && cells.list.find((c) => !c.cell.sessions && c.cell.size === many.cell.size && c.cell.concurrency === many.cell.concurrency);
  if (many && one) {
    p(`#### One session against ${many.cell.sessions} sessions (${many.size.label}, concurrency ${many.cell.concurrency})`);
    p();
    p(
      `The same load, once with every client loop on one session and once with each of the ${many.cell.sessions} loops on its own session (its own token; for Airlock and JS + state, its own Durable Object). ` +
        `The stateless targets get the same headers and should not care.`,
    );
    p();
    p(`| target | req/s: 1 session | ${many.cell.sessions} sessions | ratio | p50 ms: 1 session | ${many.cell.sessions} sessions | workerd CPU µs/req: 1 session | ${many.cell.sessions} sessions |`);
    p(`|---|---:|---:|---:|---:|---:|---:|---:|`);
    for (const [k, a] of Object.entries(one.by)) {
      const b = many.by[k];
      if (!b) continue;
      p(`| ${a.name} | ${fmtInt(a.rps)} | ${fmtInt(b.rps)} | ${fmtX(b.rps / a.rps)} | ${fmtMs(a.p50)} | ${fmtMs(b.p50)} | ${fmtInt(a.cpuUs.workerd)} | ${fmtInt(b.cpuUs.workerd)} |`);
    }
    p();
    if (one.airState && many.airState) {
      p(
        `Airlock / JS + state: req/s ${fmtX(one.airState.rps)} with one session, ${fmtX(many.airState.rps)} with ${many.cell.sessions}; ` +
          `workerd CPU per request ${fmtX(one.airState.cpu)} and ${fmtX(many.airState.cpu)}.`,
      );
      p();
    }
  }
  if (cells.list.some((c) => c.airFloor)) {
    // Airlock's overhead over the JS baseline, split at the floor worker.
    const signed = (v, f) => (Number.isFinite(v) ? `${v >= 0 ? "+" : ""}${f(v)}` : "n/a");
    // No share when either part is negative (the floor measured below the
    // baseline, or Airlock below the floor): within the noise, not a split.
    const share = (part, rest) => (Number.isFinite(part + rest) && part >= 0 && rest >= 0 && part + rest > 0 ? `${Math.round((100 * part) / (part + rest))}%` : "—");
    p(`#### Airlock's overhead split at the Rust floor`);
    p();
    p(`Added over the JS baseline, per request: *floor* is what the workers-rs forwarder adds (Rust floor − JS baseline), *pipeline* what Airlock adds on top of it (Airlock − Rust floor); the share is the floor's part of Airlock's total (— when a part came out negative, i.e. within the noise). workerd CPU is the steadier figure; p50 differences of a few tenths of a millisecond are within the noise of a loaded machine.`);
    p();
    p(`| cell | workerd CPU µs/req: JS baseline | Rust floor | Airlock | floor | pipeline | floor share | p50 ms added: floor | pipeline | floor share |`);
    p(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
    for (const c of cells.list.filter((x) => x.airFloor)) {
      const { baseline: b, floor: f, airlock: a } = c.by;
      const cpuFloor = f.cpuUs.workerd - b.cpuUs.workerd;
      const cpuPipe = a.cpuUs.workerd - f.cpuUs.workerd;
      const msFloor = f.p50 - b.p50;
      const msPipe = a.p50 - f.p50;
      p(
        `| ${cellName(c)} | ${fmtInt(b.cpuUs.workerd)} | ${fmtInt(f.cpuUs.workerd)} | ${fmtInt(a.cpuUs.workerd)} | ` +
          `${signed(cpuFloor, fmtInt)} | ${signed(cpuPipe, fmtInt)} | ${share(cpuFloor, cpuPipe)} | ` +
          `${signed(msFloor, fmtMs)} | ${signed(msPipe, fmtMs)} | ${share(msFloor, msPipe)} |`,
      );
    }
    p();
  }
  if (echo) {
    cellTable(echo, `Extra: ${echo.size.label} (Airlock redacts a match), concurrency 1`);
    p(`The JS baseline${echo.by.floor ? " and the Rust floor worker return" : " returns"} the credential to the caller here; Airlock returns \`[REDACTED]\` (checked before the run).`);
    p();
  }

  p(`#### Memory: workerd RSS while one large response streams through`);
  p();
  p(`The client reads and discards the body. Peak is ${memory[0]?.peakSource ?? "VmHWM"} of the workerd process${memory[0]?.peakSource === "VmHWM" ? " (reset to the current RSS just before each request)" : ""}; "after" is read 1 s after the body ended.`);
  p();
  p(`| through | body | RSS before | peak | peak − before | RSS after | time | MiB/s |`);
  p(`|---|---:|---:|---:|---:|---:|---:|---:|`);
  for (const m of memory) {
    p(
      `| ${m.target} | ${m.mb} MiB${m.ok ? "" : ` (FAILED: status ${m.status}, ${m.bytes} bytes)`} | ${fmtMiB(m.beforeKiB)} | ${fmtMiB(m.peakKiB)} | ${fmtSignedMiB(m.growthKiB)} | ${fmtMiB(m.afterKiB)} | ${m.seconds.toFixed(2)} s | ${m.mbPerS.toFixed(0)} |`,
    );
  }
  p();
  for (const m of memory.filter((x) => x.mb === MEMORY_RUNS_MB[MEMORY_RUNS_MB.length - 1])) {
    p(`RSS through ${m.target} after each tenth of the ${m.mb} MiB body (MiB): ${m.trail.map((k) => (k / 1024).toFixed(0)).join(", ")}.`);
    p();
  }
  if (cold) out.push(...coldStartReport(cold));
  const airMem = memory.filter((m) => m.key === "airlock");
  const small = airMem.find((m) => m.mb === MEMORY_RUNS_MB[0]);
  const big = airMem.find((m) => m.mb === MEMORY_RUNS_MB[MEMORY_RUNS_MB.length - 1]);
  if (small && big) {
    const diff = big.growthKiB - small.growthKiB;
    budgetRows.push({
      what: `Airlock peak RSS growth, ${big.mb} MiB body vs ${small.mb} MiB body, ≤ ${BUDGETS.memoryGrowthMiB} MiB more`,
      measured: `${fmtSignedMiB(diff)} (${fmtSignedMiB(small.growthKiB)} vs ${fmtSignedMiB(big.growthKiB)})`,
      pass: small.ok && big.ok && diff <= BUDGETS.memoryGrowthMiB * 1024,
    });
  }

  // The budgets go first, right under the run's description.
  const budgets = [
    `#### Budgets`,
    ``,
    `| budget | measured | result |`,
    `|---|---:|:---:|`,
    ...budgetRows.map((b) => `| ${b.what} | ${b.measured} | ${b.pass ? "PASS" : "FAIL"} |`),
    ``,
    `Budgets are reported, not enforced: a miss prints FAIL and the command still exits 0.`,
    ``,
    ...(floorRows.length
      ? [
          `#### The same cells against the plain JS baseline, the JS broker floor and the Rust floor (no budget)`,
          ``,
          `The budgets hold Airlock against *JS + state*, the JS baseline with the least session-state check (one SQLite read and write per request in a Durable Object, over native JS RPC), which Airlock must match to make revocation immediate. The other columns are reported for comparison: against the plain JS forwarder, which checks nothing; against the *JS broker floor* (bench/broker-floor-worker.js), the least of Airlock's own per-request work written in plain JavaScript (token MAC, state check carrying the audit record, credential set, answer scanned, audit line), so *JS broker floor / JS + state* is what those guarantees cost before any choice of language; and against the Rust floor worker, what any workers-rs forwarder pays.`,
          ``,
          `| ratio | Airlock / JS + state | Airlock / JS baseline | JS + state / JS baseline | JS broker floor / JS + state | Airlock / JS broker floor | Airlock / Rust floor | Rust floor / JS baseline |`,
          `|---|---:|---:|---:|---:|---:|---:|---:|`,
          ...["p50", "rps", "cpu"]
            .flatMap((k) => floorRows.filter((r) => r.q === k))
            .map(
              ({ what, q, c }) =>
                `| ${what} | ${fmtX(c.airState[q])} | ${fmtX(c.ratios[q])} | ${fmtX(c.stateBase[q])} | ${c.brokerState ? fmtX(c.brokerState[q]) : "n/a"} | ${c.airBroker ? fmtX(c.airBroker[q]) : "n/a"} | ${c.airFloor ? fmtX(c.airFloor[q]) : "n/a"} | ${c.floorBase ? fmtX(c.floorBase[q]) : "n/a"} |`,
            ),
          ``,
        ]
      : []),
  ];
  out.splice(headerEnd, 0, ...budgets);
  while (out.at(-1) === "") out.pop();
  return { markdown: out.join("\n"), budgetRows };
}

function writeDoc(markdown) {
  const block = `${BEGIN_MARK}\n\n${markdown}\n\n${END_MARK}`;
  let doc = existsSync(DOC) ? readFileSync(DOC, "utf8") : "# Performance\n\n";
  const a = doc.indexOf(BEGIN_MARK);
  const b = doc.indexOf(END_MARK);
  if (a !== -1 && b > a) doc = doc.slice(0, a) + block + doc.slice(b + END_MARK.length);
  else doc = `${doc.replace(/\s*$/, "")}\n\n${block}\n`;
  writeFileSync(DOC, doc);
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const startedAt = new Date();
  const loadStart = os.loadavg();
  const machine = describeMachine();
  const bench = await startBench({ floor: process.env.AIRLOCK_BENCH_NO_FLOOR === "1" ? false : "auto", sessions: SESSIONS });
  const wasm = bench.build.wasm;
  const stateWasm = bench.stateBuild.wasm;
  const floorWasm = bench.floorBuild?.wasm ?? null;
  try {
    const { credential, targets, workers: w, workerdPid } = bench;
    const key = (k) => targets.find((t) => t.key === k);
    const [baseline, statebase, broker, floor, airlock] = ["baseline", "statebase", "broker", "floor", "airlock"].map(key);
    log(
      `origin on ${bench.origin.url}; workerd pid ${workerdPid}; Airlock on ${w.airlockUrl.origin}, baseline on ${w.baselineUrl.origin}` +
        (w.floorUrl ? `, Rust floor on ${w.floorUrl.origin}` : " (no Rust floor worker)"),
    );

    // Sanity: all answer the same bodies; Airlock redacts, the forwarders do not.
    for (const t of targets) {
      for (const s of Object.values(SIZES)) {
        const r = await request(t, s.path);
        if (r.status !== 200 || r.bytes !== s.bytes) throw new Error(`${t.name} ${s.path}: status ${r.status}, ${r.bytes} bytes (want 200, ${s.bytes})`);
      }
    }
    const echoAir = await request(airlock, "/echo-small", { keepText: true });
    const echoBase = await request(baseline, "/echo-small", { keepText: true });
    if (echoAir.status !== 200 || echoAir.text.includes(credential) || !echoAir.text.includes("[REDACTED]")) {
      throw new Error(`Airlock /echo-small: expected the credential redacted, got status ${echoAir.status}`);
    }
    if (!echoBase.text.includes(credential)) throw new Error("baseline /echo-small: the origin did not see the credential");
    const echoState = await request(statebase, "/echo-small", { keepText: true });
    if (echoState.status !== 200 || !echoState.text.includes(credential)) {
      throw new Error(`JS baseline + state check /echo-small: status ${echoState.status}, the origin did not see the credential`);
    }
    // The broker floor must do Airlock's job here: the origin sees the
    // credential, the client gets it redacted.
    const echoBroker = await request(broker, "/echo-small", { keepText: true });
    if (echoBroker.status !== 200 || echoBroker.text.includes(credential) || !echoBroker.text.includes("[REDACTED]")) {
      throw new Error(`JS broker floor /echo-small: expected the credential redacted, got status ${echoBroker.status}`);
    }
    if (floor) {
      // The floor worker must do the baseline's whole job: the origin sees the credential.
      const echoFloor = await request(floor, "/echo-small", { keepText: true });
      if (echoFloor.status !== 200 || !echoFloor.text.includes(credential)) {
        throw new Error(`Rust floor worker /echo-small: status ${echoFloor.status}, the origin did not see the credential`);
      }
    }
    await sleep(200);
    const auditBefore = w.stdio.auditLines;
    const sentBefore = airlock.sent;

    // Global warm-up (JIT tiers, connection pools), then the cells.
    log("warm-up");
    const warmupErrors = {};
    for (const s of Object.values(SIZES)) {
      for (const t of targets) {
        for (const conc of [1, 32]) {
          const n = Math.max(2 * conc, Math.round((conc === 1 ? 100 : 320) * (s.bytes > KIB ? 0.2 : 1) * SCALE));
          const r = await runBatch(t, s.path, s.bytes, n, conc, null);
          if (r.errors) warmupErrors[t.name] = `${(warmupErrors[t.name] ? `${warmupErrors[t.name]}; ` : "")}${r.errors} (${r.firstError})`;
        }
      }
    }

    const list = [];
    for (const cell of CELLS) {
      log(`cell ${cell.size} c=${cell.concurrency}${cell.sessions ? ` over ${cell.sessions} sessions` : ""}: ${cell.perTarget} per target, ${cell.rounds} rounds`);
      const c = await runCell(targets, cell, bench.sessions);
      log(
        `  ${c.seconds.toFixed(1)} s; p50 ${c.results.map((r) => fmtMs(r.p50)).join(" / ")} ms; req/s ${c.results.map((r) => fmtInt(r.rps)).join(" / ")} (${targets.map((t) => t.key).join(" / ")}); ` +
          `airlock/baseline p50 ${fmtX(c.ratios.p50)} req/s ${fmtX(c.ratios.rps)}` +
          (c.airState ? `; airlock/statebase p50 ${fmtX(c.airState.p50)} req/s ${fmtX(c.airState.rps)}` : "") +
          (c.airFloor ? `; airlock/floor p50 ${fmtX(c.airFloor.p50)} req/s ${fmtX(c.airFloor.rps)}; floor/baseline p50 ${fmtX(c.floorBase.p50)} req/s ${fmtX(c.floorBase.rps)}` : ""),
      );
      list.push(c);
    }
    log(`extra cell: echo-small c=1`);
    const echo = await runCell(targets, ECHO_CELL, bench.sessions);

    log("memory");
    const memory = [];
    for (const mb of MEMORY_RUNS_MB) {
      for (const t of [baseline, floor, airlock].filter(Boolean)) {
        checkStopping();
        const m = await measureMemory(t, workerdPid, mb);
        log(`  ${t.name} ${mb} MiB: before ${fmtMiB(m.beforeKiB)}, peak ${fmtMiB(m.peakKiB)}, after ${fmtMiB(m.afterKiB)}, ${m.mbPerS.toFixed(0)} MiB/s`);
        memory.push(m);
      }
    }
    // Audit lines arrive asynchronously (a streamed response's record is
    // written when its body ends); give the last ones a moment.
    for (const deadline = Date.now() + 5000; Date.now() < deadline && w.stdio.auditLines - auditBefore < airlock.sent - sentBefore; ) await sleep(50);
    const audit = { lines: w.stdio.auditLines - auditBefore, requests: airlock.sent - sentBefore };

    // Cold start last: fresh workerd processes of their own (this run's
    // workerd stays up, idle).
    const cold = COLD_SAMPLES > 0 ? await measureColdStart({ samples: COLD_SAMPLES, originUrl: bench.origin.url, builds: bench }) : null;

    checkStopping();
    const finishedAt = new Date();
    const { markdown, budgetRows } = report({
      startedAt,
      finishedAt,
      machine,
      wasm,
      stateWasm,
      floorWasm,
      loadStart,
      loadEnd: os.loadavg(),
      cells: { list, compat: w.compat },
      echo,
      memory,
      cold,
      audit,
      warmupErrors,
      totalSeconds: (finishedAt - startedAt) / 1000,
      workerdPid,
    });
    console.log(markdown);
    if (WRITE_DOC) {
      writeDoc(markdown);
      log(`wrote the results into ${rel(DOC)}`);
    } else {
      log(`${rel(DOC)} not updated (${FULL ? "--no-write" : "reduced run; pass --write to record it"})`);
    }
    const fails = budgetRows.filter((b) => !b.pass).length;
    log(fails ? `${fails} budget(s) missed (reported, not enforced)` : "all budgets met");
  } finally {
    await bench.close();
  }
}

runMain(main);
