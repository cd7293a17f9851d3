// Soak: Airlock in workerd (Miniflare) under steady mixed traffic for minutes,
// with a revocation part-way. Checks that every request gets the answer known
// in advance, that Airlock writes exactly one audit line per request and
// stores one record per request in each session's audit trail, that a
// revoked session is refused from its next request on, and reports workerd's
// RSS over time with its least-squares slope.
//
// Run it with `bash bench/soak` (the project's Node 22, under a timeout).
// Options:
//   --minutes=N       length of the traffic (default 10; e.g. 1 for a quick check)
//   --concurrency=N   client loops, each on its own session (default 32)
//   --revoke=N        sessions revoked at the midpoint (default a quarter of the loops)
//   --max-requests=N  stop earlier after this many requests (default 3,000 per second of the run)
//   --rss-every=S     seconds between RSS samples (default 5; 2 for runs of 2 minutes or less)
//   --mix=K,K,...     only these kinds of traffic (allowed, streamed, denied, mcp,
//                     proof), in the same proportions to each other (default all five)
//   --probe           also sample, through workerd's inspector, the V8 heap and the
//                     Wasm linear memory of the Airlock and airlock-state isolates
//                     (a bench-only entry module records each Wasm instance's memory;
//                     nothing is added to the built scripts)
//   --gc-every=S      with --probe: force a full garbage collection in both isolates
//                     every S seconds (tells memory garbage waiting for V8's collector
//                     from memory still referenced)
// Everything runs on 127.0.0.1. Exit status 1 on any unexpected answer, an
// audit-line mismatch, or more than 0.1% of the requests losing their
// connection before an answer (each such one is tried once more as a new
// request and reported); 0 otherwise (the RSS slope is reported, not judged).
//
// The traffic, per loop, drawn from a seeded generator:
//   35%  allowed:  GET /t/bench/small            -> 200, 1 KiB
//   10%  streamed: GET /t/bench/large            -> 200, 1 MiB (chunked)
//   15%  denied:   DELETE /t/bench/small         -> 403 route_not_allowed (no rule allows DELETE)
//   20%  MCP:      POST /mcp/benchmcp tools/call -> 200, the tool's JSON-RPC result
//   20%  proof:    GET /t/benchproof/small with a fresh x-airlock-proof -> 200, 1 KiB
// At the midpoint the loops of the sessions to revoke pause after their
// current request, the sessions are revoked through the admin API
// (DELETE /v1/sessions/{id}), and the loops go on: from then on every
// request of theirs must be 401 session_revoked, except the denial, which
// the policy refuses before the session's state is consulted (403 as before).

import { createHash, createHmac, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  MIB,
  KIB,
  REPO_ROOT,
  STATE,
  adminCall,
  describeMachine,
  fmtInt,
  fmtMs,
  log,
  percentile,
  policyFor,
  procCpuMs,
  openIsolateProbe,
  procStatus,
  readIsolateMemory,
  request,
  sleep,
  slope,
  startBench,
} from "./lib.mjs";

// ---------------------------------------------------------------------------
// Options

const args = process.argv.slice(2);
const opt = {};
const USAGE = "usage: bash bench/soak [--minutes=N] [--concurrency=N] [--revoke=N] [--max-requests=N] [--rss-every=S] [--mix=K,K,...] [--probe [--gc-every=S]]";
for (const a of args) {
  const m = /^--(minutes|concurrency|revoke|max-requests|rss-every|gc-every)=([0-9.]+)$/.exec(a);
  const mix = /^--mix=([a-z,]+)$/.exec(a);
  if (m) opt[m[1]] = Number(m[2]);
  else if (mix) opt.mix = mix[1].split(",").filter(Boolean);
  else if (a === "--probe") opt.probe = true;
  else {
    console.error(`unknown argument ${a}\n${USAGE}`);
    process.exit(2);
  }
}
const MINUTES = opt.minutes ?? 10;
const CONCURRENCY = Math.max(2, Math.round(opt.concurrency ?? 32));
const REVOKE = Math.min(CONCURRENCY - 1, Math.max(1, Math.round(opt.revoke ?? CONCURRENCY / 4)));
const DURATION_MS = MINUTES * 60_000;
const MAX_REQUESTS = Math.round(opt["max-requests"] ?? (DURATION_MS / 1000) * 3000);
const RSS_EVERY_MS = (opt["rss-every"] ?? (MINUTES <= 2 ? 2 : 5)) * 1000;
if (opt["gc-every"] !== undefined && !opt.probe) {
  console.error(`--gc-every needs --probe\n${USAGE}`);
  process.exit(2);
}
if (!(MINUTES > 0 && MINUTES <= 240)) {
  console.error("--minutes must be more than 0 and at most 240");
  process.exit(2);
}

// ---------------------------------------------------------------------------
// The policy: the benchmark's tool, an MCP server and a tool that needs proofs

function soakPolicy(originUrl) {
  const policy = policyFor(originUrl);
  const credential = { secret: "BENCH_API_TOKEN", inject: "bearer" };
  policy.tools.benchmcp = { origin: `${originUrl}/mcp`, allow_http: true, credential, mcp: { tools: { lookup: "read" } } };
  policy.tools.benchproof = { origin: originUrl, allow_http: true, credential, require_proof: true, rules: [{ methods: ["GET"], path: "/**", level: "read" }] };
  return policy;
}
const SCOPE = { bench: "read", benchmcp: "read", benchproof: "read" };

// ---------------------------------------------------------------------------
// Request proofs (README "Request proofs"), checked against the shared vectors

const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");

function proofHeader({ proofKey, sessionId, method, path, query = "", bodySha256 = EMPTY_SHA256, ts = Math.floor(Date.now() / 1000), nonce = randomBytes(16).toString("base64url") }) {
  const signed = ["airlock-proof-v1", sessionId, method, path, query, bodySha256, String(ts), nonce].join("\n");
  const sig = createHmac("sha256", Buffer.from(proofKey, "base64url")).update(signed, "utf8").digest("base64url");
  return `v1;ts=${ts};nonce=${nonce};sig=${sig}`;
}

/** The signer above must reproduce clients/test-vectors/proof.json, when it is there. */
function checkProofVectors() {
  const file = join(REPO_ROOT, "clients", "test-vectors", "proof.json");
  if (!existsSync(file)) return 0;
  const data = JSON.parse(readFileSync(file, "utf8"));
  const vectors = Array.isArray(data) ? data : (data.vectors ?? []);
  let checked = 0;
  for (const v of vectors) {
    if (typeof v.header !== "string" || typeof v.proof_key !== "string") continue;
    const body = Buffer.from(v.body_b64 ?? "", "base64");
    const got = proofHeader({
      proofKey: v.proof_key,
      sessionId: v.session_id,
      method: v.method,
      path: v.path,
      query: v.query ?? "",
      bodySha256: createHash("sha256").update(body).digest("hex"),
      ts: v.ts,
      nonce: v.nonce,
    });
    if (got !== v.header) throw new Error(`proof signer disagrees with ${file}: ${v.name ?? JSON.stringify(v).slice(0, 80)}`);
    checked++;
  }
  return checked;
}

// ---------------------------------------------------------------------------
// The traffic

const KINDS = {
  allowed: { weight: 35, label: "allowed GET, 1 KiB" },
  streamed: { weight: 10, label: "allowed GET, 1 MiB streamed" },
  denied: { weight: 15, label: "denied (DELETE, no rule)" },
  mcp: { weight: 20, label: "MCP tools/call" },
  proof: { weight: 20, label: "proof-bound GET, 1 KiB" },
};
const MIX = opt.mix ?? Object.keys(KINDS);
for (const k of MIX) {
  if (!KINDS[k]) {
    console.error(`--mix: unknown kind ${k} (kinds: ${Object.keys(KINDS).join(", ")})`);
    process.exit(2);
  }
}
const MIX_WEIGHT = MIX.reduce((n, k) => n + KINDS[k].weight, 0);
const KIND_TABLE = Object.entries(KINDS)
  .filter(([k]) => MIX.includes(k))
  .flatMap(([k, v]) => Array(v.weight).fill(k));

/** mulberry32: a small seeded generator, so every run draws the same mix. */
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The request of one kind for one session, and the answer it must get. */
function plan(kind, session, revoked, seq) {
  const refusedRevoked = { status: 401, code: "session_revoked" };
  switch (kind) {
    case "allowed":
      return { method: "GET", path: "/t/bench/small", headers: session.headers, expect: revoked ? refusedRevoked : { status: 200, bytes: KIB } };
    case "streamed":
      return { method: "GET", path: "/t/bench/large", headers: session.headers, expect: revoked ? refusedRevoked : { status: 200, bytes: MIB } };
    case "denied":
      // The policy refuses it before the state is consulted: the same answer
      // whether the session is revoked or not.
      return { method: "DELETE", path: "/t/bench/small", headers: session.headers, expect: { status: 403, code: "route_not_allowed" } };
    case "mcp": {
      const id = seq;
      const body = JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "lookup", arguments: { key: `k${seq}` } } });
      return {
        method: "POST",
        path: "/mcp/benchmcp",
        headers: { ...session.headers, "content-type": "application/json", accept: "application/json, text/event-stream" },
        body,
        expect: revoked ? refusedRevoked : { status: 200, rpc: { id, text: `looked up "k${seq}"` } },
      };
    }
    case "proof": {
      const path = "/t/benchproof/small";
      const proof = proofHeader({ proofKey: session.proof_key, sessionId: session.session_id, method: "GET", path });
      return { method: "GET", path, headers: { ...session.headers, "x-airlock-proof": proof }, expect: revoked ? refusedRevoked : { status: 200, bytes: KIB } };
    }
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

/** Why `r` is not the answer `expect` describes, or null when it is. */
function mismatch(r, expect) {
  if (r.status !== expect.status) return `status ${r.status}, want ${expect.status}${r.text ? `: ${r.text.slice(0, 160)}` : ""}`;
  if (expect.bytes !== undefined && r.bytes !== expect.bytes) return `${r.bytes} bytes, want ${expect.bytes}`;
  if (expect.code !== undefined) {
    let code;
    try {
      code = JSON.parse(r.text).error?.code;
    } catch {}
    if (code !== expect.code) return `error code ${code}, want ${expect.code}`;
  }
  if (expect.rpc !== undefined) {
    let msg;
    try {
      msg = JSON.parse(r.text);
    } catch {}
    if (msg?.id !== expect.rpc.id || msg?.result?.content?.[0]?.text !== expect.rpc.text) return `JSON-RPC answer ${String(r.text).slice(0, 160)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const startedAt = new Date();
  const loadStart = os.loadavg();
  const machine = describeMachine();
  const vectors = checkProofVectors();
  log(`soak: ${MINUTES} min, ${CONCURRENCY} loops on ${CONCURRENCY} sessions, ${REVOKE} revoked at the midpoint, at most ${fmtInt(MAX_REQUESTS)} requests` + (vectors ? `; proof signer checked against ${vectors} shared vectors` : ""));
  // Durable Object storage on disk, as on the edge: each request appends to
  // its session's audit trail, which in memory would grow workerd's RSS by
  // design and hide what the RSS slope is for.
  const bench = await startBench({ floor: false, sessions: CONCURRENCY, policy: soakPolicy, scope: SCOPE, persist: true, wasmProbe: !!opt.probe });
  const probes = [];
  let failed = true;
  try {
    const { workers: w, workerdPid, sessions } = bench;
    const airlock = { ...bench.targets.find((t) => t.key === "airlock"), prefix: "", pools: new Map(), sent: 0 };
    // The mints wrote one audit line each; wait for them, then count from here.
    for (const deadline = Date.now() + 5000; Date.now() < deadline && w.stdio.auditLines < sessions.length; ) await sleep(50);
    const auditBefore = w.stdio.auditLines;
    let adminRequests = 0;

    // The sessions of every (CONCURRENCY / REVOKE)-th loop are revoked.
    const step = CONCURRENCY / REVOKE;
    const revokeLoops = new Set(Array.from({ length: REVOKE }, (_, i) => Math.floor(i * step + step - 1)));
    const stats = Object.fromEntries(MIX.map((k) => [k, { sent: 0, ok: 0, unexpected: 0, lost: 0, revokedRefused: 0, latencies: [] }]));
    const unexpected = [];
    const lost = [];
    const revocation = { requested: false, parked: 0, done: null, release: null, at: NaN, firstAfter: new Map() };
    revocation.done = new Promise((r) => (revocation.release = r));
    const revoked = new Set();

    // --probe: one inspector session per isolate, its heap and Wasm memory
    // read at every RSS sample (skipped while the previous read is pending).
    if (opt.probe) {
      for (const name of ["airlock", "airlock-state"]) probes.push({ ...(await openIsolateProbe(w.mf, name)), samples: [], busy: false });
    }
    const rss = [];
    const cpu0 = procCpuMs(workerdPid);
    const t0 = performance.now();
    const sampleRss = () => {
      const x = (performance.now() - t0) / 60_000;
      try {
        const st = procStatus(workerdPid);
        rss.push({ x, y: st.rssKiB / 1024, anon: st.anonKiB / 1024, file: st.fileKiB / 1024, shmem: st.shmemKiB / 1024 });
      } catch {}
      for (const pr of probes) {
        if (pr.busy) continue;
        pr.busy = true;
        readIsolateMemory(pr)
          .then((m) => pr.samples.push({ x, ...m }))
          .catch(() => {})
          .finally(() => (pr.busy = false));
      }
    };
    sampleRss();
    const rssTimer = setInterval(sampleRss, RSS_EVERY_MS);
    const gcs = { done: 0, failed: 0 };
    const gcTimer = opt["gc-every"]
      ? setInterval(() => {
          for (const pr of probes) pr.cdp.send("HeapProfiler.collectGarbage", {}, 20_000).then(() => gcs.done++, () => gcs.failed++);
        }, opt["gc-every"] * 1000)
      : null;
    let lastReport = t0;
    let issued = 0;
    const timeUp = () => performance.now() - t0 >= DURATION_MS || issued >= MAX_REQUESTS || STATE.stopping;

    // Requests sent on each session, and those of them whose connection
    // closed before an answer (which may not have reached Airlock): each
    // session's audit trail must hold one record per request.
    const sentOn = sessions.map(() => 0);
    const lostOn = sessions.map(() => 0);
    const loop = async (index) => {
      const session = sessions[index];
      const random = generator(0x5eed + index);
      let seq = 0;
      while (!timeUp()) {
        if (revokeLoops.has(index) && revocation.requested && !revoked.has(index)) {
          revocation.parked++;
          await revocation.done;
          continue;
        }
        const kind = KIND_TABLE[Math.floor(random() * KIND_TABLE.length)];
        const isRevoked = revoked.has(index);
        const s = stats[kind];
        let problem;
        try {
          let r;
          let req;
          for (let attempt = 0; ; attempt++) {
            req = plan(kind, session, isRevoked, index * 1e9 + ++seq);
            issued++;
            s.sent++;
            sentOn[index]++;
            try {
              r = await request(airlock, req.path, { method: req.method, headers: req.headers, body: req.body, concurrency: CONCURRENCY, keepText: req.expect.bytes !== MIB });
              break;
            } catch (e) {
              // A connection closed before any answer (a keep-alive
              // connection the server dropped as it was reused) is tried
              // once more, as a new request (a fresh proof); counted apart.
              if (attempt > 0 || !e?.beforeResponse) throw e;
              s.lost++;
              lostOn[index]++;
              if (lost.length < 20) lost.push(`${((performance.now() - t0) / 60_000).toFixed(2)} min, ${kind} on session ${index}: ${e.message || e}`);
            }
          }
          problem = mismatch(r, req.expect);
          if (!problem) {
            s.ok++;
            if (req.expect.status === 200) s.latencies.push(r.ms);
            if (isRevoked && req.expect.code === "session_revoked") {
              s.revokedRefused++;
              if (!revocation.firstAfter.has(index)) revocation.firstAfter.set(index, kind);
            }
          }
        } catch (e) {
          problem = `request failed: ${e.message || e}`;
        }
        if (problem) {
          s.unexpected++;
          if (unexpected.length < 20) unexpected.push(`${((performance.now() - t0) / 60_000).toFixed(2)} min, ${kind} on session ${index}${isRevoked ? " (revoked)" : ""}: ${problem}`);
        }
        if (performance.now() - lastReport > 30_000) {
          lastReport = performance.now();
          const total = Object.values(stats).reduce((n, x) => n + x.sent, 0);
          const bad = Object.values(stats).reduce((n, x) => n + x.unexpected, 0);
          log(`  ${((lastReport - t0) / 60_000).toFixed(1)} min: ${fmtInt(total)} requests, ${bad} unexpected, workerd RSS ${rss.at(-1)?.y.toFixed(1)} MiB`);
        }
      }
    };

    const revoker = (async () => {
      try {
        await revokeAtMidpoint();
      } finally {
        // Never leave the paused loops waiting, whatever happened.
        revocation.release();
      }
    })();
    async function revokeAtMidpoint() {
      while (performance.now() - t0 < DURATION_MS / 2 && issued < MAX_REQUESTS / 2 && !STATE.stopping) await sleep(100);
      if (STATE.stopping) return;
      // Pause the loops of the sessions to revoke, so "before" and "after" are
      // sharp: each finishes the request it has in flight, then waits.
      revocation.requested = true;
      for (const deadline = Date.now() + 60_000; revocation.parked < revokeLoops.size && Date.now() < deadline; ) await sleep(5);
      if (revocation.parked < revokeLoops.size) throw new Error(`only ${revocation.parked} of ${revokeLoops.size} loops paused for the revocation`);
      revocation.at = (performance.now() - t0) / 60_000;
      for (const i of revokeLoops) {
        adminRequests++;
        const r = await adminCall(w, "DELETE", `/v1/sessions/${sessions[i].session_id}`);
        let status;
        try {
          status = JSON.parse(r.text).status;
        } catch {}
        if (r.status !== 200 || status !== "revoked") throw new Error(`revoking session ${i}: ${r.status} ${r.text.slice(0, 200)}`);
        revoked.add(i);
      }
      log(`  revoked ${revoked.size} sessions at ${revocation.at.toFixed(2)} min`);
    }

    await Promise.all([...Array.from({ length: CONCURRENCY }, (_, i) => loop(i)), revoker]);
    const wallMs = performance.now() - t0;
    clearInterval(rssTimer);
    if (gcTimer) clearInterval(gcTimer);
    sampleRss();
    const cpuMs = procCpuMs(workerdPid) - cpu0;

    const requests = Object.values(stats).reduce((n, x) => n + x.sent, 0);
    const expectedLines = requests + adminRequests;
    // Audit lines arrive asynchronously (a streamed response's record is
    // written when its body ends); give the last ones a moment.
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && w.stdio.auditLines - auditBefore < expectedLines; ) await sleep(50);
    await sleep(500);
    const auditLines = w.stdio.auditLines - auditBefore;
    const bad = Object.values(stats).reduce((n, x) => n + x.unexpected, 0);
    // An attempt whose connection closed before any answer may or may not
    // have reached Airlock: it has at most one audit line. A few are the
    // client's keep-alive race; more than 0.1% of the requests fail the run.
    const lostCount = Object.values(stats).reduce((n, x) => n + x.lost, 0);
    const lostOk = lostCount <= Math.max(1, requests / 1000);
    const auditOk = auditLines <= expectedLines && auditLines >= expectedLines - lostCount;
    const revokedWithoutRefusal = [...revoked].filter((i) => !revocation.firstAfter.has(i)).length;

    // Each session's trail: the last record's seq + 1 is how many it
    // stored (it keeps the last 1,000). Records reach it after the answers,
    // the last ones within a few seconds.
    const stored = sessions.map(() => NaN);
    const trailMatches = (i) => stored[i] <= sentOn[i] && stored[i] >= sentOn[i] - lostOn[i];
    for (const deadline = Date.now() + 15_000; ; await sleep(250)) {
      for (let i = 0; i < sessions.length; i++) {
        if (trailMatches(i)) continue;
        const r = await adminCall(w, "GET", `/v1/sessions/${sessions[i].session_id}/audit`);
        try {
          const last = JSON.parse(r.text).records.at(-1);
          stored[i] = last === undefined ? 0 : JSON.parse(last).seq + 1;
        } catch {
          stored[i] = NaN;
        }
      }
      if (sessions.every((_, i) => trailMatches(i)) || Date.now() > deadline) break;
    }
    const trailsOk = sessions.every((_, i) => trailMatches(i));
    const trailMisses = sessions.map((_, i) => i).filter((i) => !trailMatches(i)).map((i) => `session ${i}: ${stored[i]} records for ${sentOn[i]} requests`);

    // Slopes over the second half of the run (after start-up, JIT warm-up
    // and the heaps' first growth) and after its first tenth.
    const end = rss.at(-1).x;
    const rssSlope = slope(rss.filter((p) => p.x >= end / 2));
    const rssSlopeTenth = slope(rss.filter((p) => p.x >= end / 10));
    const ys = rss.map((p) => p.y);
    const secondHalf = (points) => slope(points.filter((p) => p.x >= end / 2));
    const perRequest = (mibPerMin) => (mibPerMin * MIB) / ((requests / wallMs) * 60_000);

    const out = [];
    const p = (s = "") => out.push(s);
    p(`### Soak`);
    p();
    p(`Run by \`bash bench/soak${args.length ? ` ${args.join(" ")}` : ""}\` on ${startedAt.toISOString().replace(/\.\d+Z$/, "Z")}: ${(wallMs / 60_000).toFixed(2)} min of traffic, ${CONCURRENCY} client loops, each on its own session.`);
    p();
    p(`- Machine: ${machine.cpu}, ${machine.cores} cores; load average ${loadStart.map((v) => v.toFixed(2)).join(" / ")} at start, ${os.loadavg().map((v) => v.toFixed(2)).join(" / ")} at end`);
    p(`- Software: Node ${machine.node}, ${machine.workerd}, miniflare ${machine.miniflare}; source tree at git ${machine.git}`);
    p(
      `- Requests: ${fmtInt(requests)} (${fmtInt((requests / wallMs) * 1000)} req/s), **${bad} unexpected answers**; ` +
        `${lostCount} connections closed before an answer (tried once more)${lostOk ? "" : " — TOO MANY"}; workerd CPU ${fmtInt((cpuMs * 1000) / requests)} µs per request`,
    );
    p(
      `- Audit lines: ${fmtInt(auditLines)} for ${fmtInt(expectedLines)} requests to Airlock (${fmtInt(requests)} of the traffic + ${adminRequests} revocations${lostCount ? `, of which ${lostCount} may not have reached it` : ""}) — ` +
        `${!auditOk ? "MISMATCH" : auditLines === expectedLines ? "one each" : `one each, ${expectedLines - auditLines} of the closed connections never reached Airlock`}`,
    );
    p(
      `- Audit trails: ${sessions.filter((_, i) => trailMatches(i)).length} of ${sessions.length} sessions hold one record per request sent on them ` +
        `(${fmtInt(stored.reduce((n, x) => n + (Number.isFinite(x) ? x : 0), 0))} records stored in all)${trailsOk ? "" : ` — MISMATCH: ${trailMisses.slice(0, 5).join("; ")}`}`,
    );
    p(
      `- Revocation: ${revoked.size} of ${CONCURRENCY} sessions revoked at ${Number.isFinite(revocation.at) ? `${revocation.at.toFixed(2)} min` : "—"} (their loops paused for it); every later request on them answered as expected` +
        ` (${fmtInt(Object.values(stats).reduce((n, x) => n + x.revokedRefused, 0))} refused 401 session_revoked${revokedWithoutRefusal ? `; ${revokedWithoutRefusal} revoked sessions sent no state-checked request afterwards` : ""})`,
    );
    p(
      `- workerd RSS: ${ys[0]?.toFixed(1)} MiB at start, ${ys.at(-1)?.toFixed(1)} MiB at end, ${Math.min(...ys).toFixed(1)}–${Math.max(...ys).toFixed(1)} MiB over ${rss.length} samples (every ${RSS_EVERY_MS / 1000} s); ` +
        `least-squares slope **${Number.isFinite(rssSlope) ? rssSlope.toFixed(2) : "n/a"} MiB/min** over the second half of the run (${Number.isFinite(rssSlopeTenth) ? rssSlopeTenth.toFixed(2) : "n/a"} MiB/min after its first tenth), ` +
        `about ${fmtInt(perRequest(rssSlope))} bytes per request`,
    );
    const first = rss[0];
    const last = rss.at(-1);
    p(
      `- RSS by kind (/proc status): anonymous ${first.anon.toFixed(1)} → ${last.anon.toFixed(1)} MiB (second-half slope ${secondHalf(rss.map((q) => ({ x: q.x, y: q.anon }))).toFixed(2)} MiB/min), ` +
        `file-backed ${first.file.toFixed(1)} → ${last.file.toFixed(1)} MiB, shared memory ${first.shmem.toFixed(1)} → ${last.shmem.toFixed(1)} MiB`,
    );
    for (const pr of probes) {
      const a = pr.samples[0];
      const b = pr.samples.at(-1);
      if (!a || !b) {
        p(`- isolate ${pr.name}: no inspector samples`);
        continue;
      }
      const heapSlope = secondHalf(pr.samples.map((q) => ({ x: q.x, y: q.heapUsed })));
      const wasm = (m) => (m.wasm.length ? m.wasm.map((v) => v.toFixed(1)).join(" + ") : "—");
      p(
        `- isolate ${pr.name}: V8 heap used ${a.heapUsed.toFixed(1)} → ${b.heapUsed.toFixed(1)} MiB (total ${a.heapTotal.toFixed(1)} → ${b.heapTotal.toFixed(1)}; second-half slope ${heapSlope.toFixed(2)} MiB/min)` +
          `, array-buffer backing stores ${a.backing.toFixed(1)} → ${b.backing.toFixed(1)} MiB, Wasm linear memory ${wasm(a)} → ${wasm(b)} MiB`,
      );
    }
    if (gcTimer) p(`- forced full garbage collections: ${gcs.done} done (${gcs.failed} failed or timed out), every ${opt["gc-every"]} s in each of the ${probes.length} isolates`);
    p();
    p(`| traffic | share | requests | as expected | unexpected | closed before an answer | refused as revoked | p50 ms (200s) | p99 ms (200s) |`);
    p(`|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
    for (const [k, s] of Object.entries(stats)) {
      const sorted = s.latencies.sort((a, b) => a - b);
      p(`| ${KINDS[k].label} | ${fmtInt((100 * KINDS[k].weight) / MIX_WEIGHT)}% | ${fmtInt(s.sent)} | ${fmtInt(s.ok)} | ${s.unexpected} | ${s.lost} | ${fmtInt(s.revokedRefused)} | ${fmtMs(percentile(sorted, 50))} | ${fmtMs(percentile(sorted, 99))} |`);
    }
    p();
    p(`RSS samples (minute: MiB): ${rss.map((q) => `${q.x.toFixed(1)}: ${q.y.toFixed(0)}`).join(", ")}`);
    for (const pr of probes) {
      p();
      p(`${pr.name} samples (minute: V8 heap used / Wasm MiB): ${pr.samples.map((q) => `${q.x.toFixed(1)}: ${q.heapUsed.toFixed(0)} / ${q.wasm.map((v) => v.toFixed(0)).join("+") || "—"}`).join(", ")}`);
    }
    if (unexpected.length) {
      p();
      p(`First unexpected answers:`);
      p();
      for (const u of unexpected) p(`- ${u}`);
    }
    if (lost.length) {
      p();
      p(`Connections closed before an answer:`);
      p();
      for (const u of lost) p(`- ${u}`);
    }
    console.log(out.join("\n"));
    failed = bad > 0 || !auditOk || !trailsOk || !lostOk || STATE.stopping;
    log(
      failed
        ? `FAILED: ${bad} unexpected answers${auditOk ? "" : `, ${auditLines} audit lines for ${expectedLines} requests`}${trailsOk ? "" : `, trails: ${trailMisses.slice(0, 3).join("; ")}`}${lostOk ? "" : `, ${lostCount} connections closed before an answer`}`
        : "soak passed: no unexpected answer, one audit line and one trail record per request",
    );
  } finally {
    for (const pr of probes) pr.cdp.close();
    await bench.close();
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`[bench] soak failed: ${err?.stack || err}`);
    process.exit(1);
  },
);
