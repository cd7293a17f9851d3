// Approvals a person can answer, end to end against the built workers:
//   - the webhook: a signed event per held request and per decision,
//     delivered through a service binding to a receiver in this process
//     that verifies the signature; retried by the approvals object's alarm
//     after the receiver fails twice;
//   - the approval page, driven in a real headless browser (Debian's
//     chromium through playwright-core): the body shown escaped (its
//     <script> is text and never runs), approve with one click, and the
//     held, unmodified request (Python requests) completes with the origin
//     hit once;
//   - hold-open: deny, timeout, and a client that hangs up;
//   - forged, expired and reused links, and CSRF attempts, which change
//     nothing.

import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT, sleep, startAirlock, testPolicy } from "./helpers.mjs";

const VENV_PYTHON = join(REPO_ROOT, ".venv-sdks", "bin", "python");
const CHROMIUM = process.env.AIRLOCK_CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString("hex")}`;
const APPROVAL_KEY = randomBytes(32).toString("base64");
const marker = (p) => `${p}-${randomBytes(6).toString("hex")}`;

/** The local receiver: verifies each delivery's signature as the README shows. */
function startReceiver() {
  const r = { events: [], attempts: [], failNext: 0 };
  r.handle = async (request) => {
    const body = await request.text();
    const header = request.headers.get("airlock-signature") || "";
    const parts = Object.fromEntries(header.split(",").map((kv) => kv.split("=", 2)));
    const want = createHmac("sha256", WEBHOOK_SECRET).update(`${parts.t}.${body}`).digest();
    const got = Buffer.from(parts.v1 || "", "hex");
    const verified = got.length === want.length && timingSafeEqual(got, want) && Math.abs(Date.now() / 1000 - Number(parts.t)) < 300;
    const attempt = { at: Date.now(), t: Number(parts.t), verified, body, event: JSON.parse(body), contentType: request.headers.get("content-type") };
    r.attempts.push(attempt);
    if (r.failNext > 0) {
      r.failNext -= 1;
      return new Response("receiver down", { status: 503 });
    }
    if (!verified) return new Response("bad signature", { status: 400 });
    r.events.push(attempt);
    return new Response("ok");
  };
  /** The first accepted event matching `pred`, waiting up to `ms`. */
  r.waitFor = async (pred, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const e = r.events.find(pred);
      if (e) return e;
      await sleep(20);
    }
    assert.fail(`no webhook event matched within ${ms} ms; attempts: ${JSON.stringify(r.attempts.map((a) => a.event.type))}`);
  };
  return r;
}

const receiver = startReceiver();
let h;
let s;

before(async () => {
  h = await startAirlock({
    policy: (echoUrl) => ({
      ...testPolicy(echoUrl, {
        extraTools: {
          pay: {
            origin: echoUrl,
            allow_http: true,
            credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
            rules: [
              { methods: ["POST"], path: "/hold/**", level: "write", approval: { wait_seconds: 30 } },
              { methods: ["POST"], path: "/quick/**", level: "write", approval: { wait_seconds: 2 } },
              { methods: ["POST"], path: "/later/**", level: "write", approval: true },
            ],
          },
        },
        limits: { max_request_body_bytes: 65536 },
      }),
      approvals: { webhook: { service: "HOOK" }, webhook_secret: "AIRLOCK_WEBHOOK_SECRET" },
    }),
    secrets: { AIRLOCK_APPROVAL_KEY: APPROVAL_KEY },
    stateBindings: { AIRLOCK_WEBHOOK_SECRET: WEBHOOK_SECRET },
    stateServiceBindings: { HOOK: (request) => receiver.handle(request) },
  });
  s = await h.mint({ pay: "write" }, { agent: "agent-<b>bold</b>", user: "user-approvals" });
});

after(async () => {
  await h?.close();
});

const base = () => h.url.origin;
const adminHeaders = () => ({ authorization: `Bearer ${h.secrets.AIRLOCK_ADMIN_KEY}` });
const getApproval = async (id) => (await h.fetch(`/v1/approvals/${id}`, { headers: adminHeaders() })).json;
const hitsFor = (m) => h.echo.hits.filter((x) => JSON.stringify(x).includes(m));

/** A held POST from an unmodified Python client (requests). */
function pythonPost(path, body) {
  const script = `
import json, sys, time, requests
t = time.monotonic()
r = requests.post(sys.argv[1], data=sys.argv[3].encode(), headers={"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"}, timeout=120)
print(json.dumps({"status": r.status_code, "text": r.text, "ms": (time.monotonic() - t) * 1000, "end": time.time() * 1000}))
`;
  return new Promise((resolve, reject) => {
    execFile(VENV_PYTHON, ["-c", script, `${base()}/t/pay${path}`, s.token, body], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout));
    });
  });
}

/** A held POST through node's fetch. */
async function nodePost(path, body, headers = {}) {
  const t = Date.now();
  const r = await fetch(`${base()}/t/pay${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json", ...headers },
    body,
  });
  return { status: r.status, json: await r.json().catch(() => null), headers: r.headers, ms: Date.now() - t };
}

const pagePath = (event) => new URL(event.event.links.page).pathname;

/** GET the page and read its CSRF token (as a browser would see it). */
async function openPage(path) {
  const r = await fetch(`${base()}${path}`);
  const html = await r.text();
  const csrf = /name=csrf value="([^"]*)"/.exec(html)?.[1];
  return { status: r.status, html, csrf, headers: r.headers };
}

function postDecision(path, form, headers = { origin: base() }) {
  return fetch(`${base()}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form).toString(),
  }).then(async (r) => ({ status: r.status, html: await r.text() }));
}

describe("approval page in a real browser", () => {
  test("webhook -> page shows the escaped body -> approve -> the held Python request completes once", async () => {
    assert.ok(CHROMIUM, "chromium is not installed: run bash scripts/setup as root (apt-get install chromium), or set AIRLOCK_CHROMIUM");
    const { chromium } = await import("playwright-core");
    const m = marker("browser");
    const body = JSON.stringify({ amount: 42, note: `<script>window.__pwned=1;document.title='pwned'</script><img src=x onerror="window.__pwned=2">${m}` });
    const started = Date.now();
    const held = pythonPost(`/hold/${m}`, body);

    const requested = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.path === `/hold/${m}`);
    const webhookMs = requested.at - started;
    assert.ok(requested.verified, "signature verified");
    assert.equal(requested.contentType, "application/json");
    assert.match(requested.event.id, /^evt_[0-9a-f]{32}$/);
    assert.equal(requested.event.approval.agent, "agent-<b>bold</b>");
    assert.ok(!requested.body.includes("__pwned"), "the event carries no body");
    assert.equal(hitsFor(m).length, 0, "nothing forwarded while held");

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      const dialogs = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        d.dismiss().catch(() => {});
      });
      const resp = await page.goto(requested.event.links.page);
      assert.equal(resp.status(), 200);
      const csp = resp.headers()["content-security-policy"];
      assert.match(csp, /default-src 'none'/);
      assert.equal(await page.title(), "Airlock: Approve this request?");
      const shown = await page.textContent("#body");
      assert.ok(shown.includes("<script>window.__pwned=1"), `the script shows as text: ${shown}`);
      assert.ok(shown.includes(m));
      assert.equal(await page.evaluate(() => window.__pwned), undefined, "the body's script never ran");
      assert.equal(await page.locator("script, img").count(), 0, "no element from the body");
      const text = await page.textContent("body");
      for (const field of ["agent-<b>bold</b>", "user-approvals", "pay", "POST", `/hold/${m}`]) assert.ok(text.includes(field), field);

      const clicked = Date.now();
      await Promise.all([page.waitForNavigation(), page.click("#approve")]);
      assert.equal(await page.title(), "Airlock: Request approved");
      assert.match(await page.textContent("#outcome"), /Decided by approval-page/);
      const done = await held;
      assert.equal(done.status, 200, done.text);
      const hits = hitsFor(m);
      assert.equal(hits.length, 1, "the origin saw the held request exactly once");
      assert.ok(JSON.stringify(hits[0]).includes("window.__pwned"), "the unmodified body reached the origin");
      const afterApproval = done.end - clicked;
      assert.deepEqual(dialogs, [], "no dialog opened");

      const decided = await receiver.waitFor((e) => e.event.type === "approval.decided" && e.event.approval.id === requested.event.approval.id);
      assert.equal(decided.event.approval.status, "approved");
      assert.equal(decided.event.approval.decided_by, "approval-page");
      assert.equal(decided.event.links, undefined);
      const ap = await getApproval(requested.event.approval.id);
      assert.equal(ap.status, "used");
      assert.equal(ap.webhook, "delivered");

      // The same link again: decided, nothing changes.
      const again = await page.goto(requested.event.links.page);
      assert.equal(again.status(), 409);
      assert.equal(await page.title(), "Airlock: Already used");
      assert.equal(await page.locator("form").count(), 0);
      console.log(`# webhook event ${webhookMs} ms after the held request started; held request answered ${afterApproval} ms after the approve click (total ${done.ms.toFixed(0)} ms)`);

      // Cloudflare Access names the approver.
      const m2 = marker("access");
      const held2 = nodePost(`/hold/${m2}`, JSON.stringify({ m2 }));
      const ev2 = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.path === `/hold/${m2}`);
      await page.setExtraHTTPHeaders({ "cf-access-authenticated-user-email": "alice@example.com" });
      await page.goto(ev2.event.links.page);
      await Promise.all([page.waitForNavigation(), page.click("#deny")]);
      assert.equal(await page.title(), "Airlock: Request denied");
      const denied = await held2;
      assert.equal(denied.status, 403);
      assert.equal(denied.json?.error?.code, "approval_denied");
      assert.equal(hitsFor(m2).length, 0, "a denied request is never forwarded");
      assert.equal((await getApproval(ev2.event.approval.id)).decided_by, "alice@example.com");
    } finally {
      await browser.close();
    }
  });
});

describe("hold-open", () => {
  test("timeout answers approval_required with the id; approved later, the unchanged retry passes once", async () => {
    const m = marker("timeout");
    const r = await nodePost(`/quick/${m}`, JSON.stringify({ m }));
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, "approval_required");
    const id = r.json.error.approval_id;
    assert.ok(r.ms >= 1900 && r.ms < 6000, `held about 2 s (${r.ms} ms)`);
    const ev = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.id === id);
    const { csrf } = await openPage(pagePath(ev));
    assert.equal((await postDecision(pagePath(ev), { decision: "approve", csrf })).status, 200);
    // An unmodified client simply sends the same request again.
    const retry = await nodePost(`/quick/${m}`, JSON.stringify({ m }));
    assert.equal(retry.status, 200);
    assert.ok(retry.ms < 1500, `no wait for an approved request (${retry.ms} ms)`);
    assert.equal(hitsFor(m).length, 1);
    const third = await nodePost(`/quick/${m}`, JSON.stringify({ m }));
    assert.equal(third.json?.error?.code, "approval_required", "used once: the next one is held again");
    assert.equal(hitsFor(m).length, 1);
  });

  // Locally neither Miniflare nor a bare workerd reports a client that
  // hung up to a worker waiting on a subrequest (request.signal stays
  // unaborted, the invocation runs on: measured with workerd 2026-07-30),
  // so this runs as a TODO: it documents the local behaviour and turns
  // green where the runtime cancels the invocation or aborts the signal.
  test("a client that hangs up while held gets nothing forwarded", { todo: "the local runtime does not report the hang-up" }, async () => {
    const m = marker("hangup");
    const body = JSON.stringify({ m });
    const req = http.request(`${base()}/t/pay/hold/${m}`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    req.on("error", () => {});
    req.end(body);
    const ev = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.path === `/hold/${m}`);
    req.destroy();
    await sleep(500);
    const { csrf } = await openPage(pagePath(ev));
    assert.equal((await postDecision(pagePath(ev), { decision: "approve", csrf })).status, 200);
    await sleep(1500);
    assert.equal(hitsFor(m).length, 0, "nothing forwarded after the client left");
    assert.equal((await getApproval(ev.event.approval.id)).status, "approved", "the approval is still there for a retry");
  });
});

describe("links and CSRF", () => {
  test("forged, tampered, expired and reused links show a page and change nothing", async () => {
    const m = marker("links");
    const r = await nodePost(`/later/${m}`, JSON.stringify({ m }));
    assert.equal(r.json?.error?.code, "approval_required");
    const id = r.json.error.approval_id;
    const ev = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.id === id);
    const good = pagePath(ev);
    const token = good.slice("/approve/".length);
    const [signed, tag] = [token.slice(0, token.lastIndexOf(".")), token.slice(token.lastIndexOf(".") + 1)];
    const sign = (text) => createHmac("sha256", Buffer.from(APPROVAL_KEY, "base64")).update(text).digest("base64url");
    const expiredSigned = `ap1.${id}.${Math.floor(Date.now() / 1000) - 1}`;
    const table = [
      ["forged MAC", `/approve/${signed}.${"A".repeat(43)}`, 404, "Invalid link"],
      ["other key", `/approve/${signed}.${createHmac("sha256", randomBytes(32)).update(signed).digest("base64url")}`, 404, "Invalid link"],
      ["later expiry", `/approve/ap1.${id}.9999999999.${tag}`, 404, "Invalid link"],
      ["unknown approval", `/approve/ap1.ap_${"0".repeat(32)}.9999999999.${sign(`ap1.ap_${"0".repeat(32)}.9999999999`)}`, 404, "Invalid link"],
      ["expired", `/approve/${expiredSigned}.${sign(expiredSigned)}`, 410, "Link expired"],
    ];
    // Every POST carries the CSRF token the link's own page would have.
    const csrfOf = (path) => createHmac("sha256", Buffer.from(APPROVAL_KEY, "base64")).update(`airlock-approval-csrf\n${path.slice("/approve/".length)}`).digest("base64url");
    for (const [label, path, status, title] of table) {
      for (const method of ["GET", "POST"]) {
        const body = method === "POST" ? `decision=approve&csrf=${csrfOf(path)}` : undefined;
        const resp = await fetch(`${base()}${path}`, { method, headers: { origin: base(), "content-type": "application/x-www-form-urlencoded" }, body });
        const html = await resp.text();
        assert.equal(resp.status, status, `${label} ${method}`);
        assert.ok(html.includes(title), `${label} ${method}: ${html}`);
        assert.ok(!html.includes("<form"), `${label}: no form`);
        assert.equal(resp.headers.get("content-type"), "text/html; charset=utf-8");
      }
    }
    assert.equal((await getApproval(id)).status, "pending", "nothing changed");
    const audit = h.audit.filter((a) => a.route === "approve").map((a) => a.reason);
    for (const code of ["approval_link_invalid", "approval_link_expired"]) assert.ok(audit.includes(code), `audited ${code}`);

    // Reused: decided once, the second decision changes nothing.
    const { csrf } = await openPage(good);
    assert.equal((await postDecision(good, { decision: "deny", csrf })).status, 200);
    const reused = await postDecision(good, { decision: "approve", csrf });
    assert.equal(reused.status, 409);
    assert.ok(reused.html.includes("Already denied"));
    assert.equal((await getApproval(id)).status, "denied");
    assert.equal(hitsFor(m).length, 0);
  });

  test("CSRF: no token, a wrong token, another page's token or another origin change nothing", async () => {
    const m = marker("csrf");
    const r = await nodePost(`/later/${m}`, JSON.stringify({ m }));
    const id = r.json.error.approval_id;
    const ev = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.id === id);
    const path = pagePath(ev);
    const page = await openPage(path);
    assert.equal(page.status, 200);
    assert.ok(page.csrf, "the page carries a CSRF token");
    assert.equal(page.headers.get("referrer-policy"), "same-origin");
    assert.equal(page.headers.get("x-frame-options"), "DENY");
    const other = await nodePost(`/later/${m}-other`, JSON.stringify({ m }));
    const otherEv = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.id === other.json.error.approval_id);
    const otherCsrf = (await openPage(pagePath(otherEv))).csrf;
    const attempts = [
      ["no token", { decision: "approve" }, { origin: base() }],
      ["wrong token", { decision: "approve", csrf: "x".repeat(43) }, { origin: base() }],
      ["another page's token", { decision: "approve", csrf: otherCsrf }, { origin: base() }],
      ["another origin", { decision: "approve", csrf: page.csrf }, { origin: "https://evil.example" }],
      ["cross-site fetch", { decision: "approve", csrf: page.csrf }, { "sec-fetch-site": "cross-site" }],
    ];
    for (const [label, form, headers] of attempts) {
      const resp = await postDecision(path, form, headers);
      assert.equal(resp.status, 403, label);
      assert.ok(resp.html.includes("Not accepted"), label);
      assert.equal((await getApproval(id)).status, "pending", `${label}: nothing changed`);
    }
    assert.ok(h.audit.some((a) => a.route === "approve" && a.reason === "approval_csrf_failed"), "audited");
    assert.equal((await postDecision(path, { decision: "approve", csrf: page.csrf })).status, 200, "the page's own post works");
    assert.equal((await getApproval(id)).status, "approved");
  });
});

describe("webhook delivery", () => {
  test("retried by the alarm after the receiver fails twice; same event id, fresh signatures", async () => {
    const m = marker("retry");
    receiver.failNext = 2;
    const started = Date.now();
    const r = await nodePost(`/later/${m}`, JSON.stringify({ m }));
    const id = r.json.error.approval_id;
    const ev = await receiver.waitFor((e) => e.event.type === "approval.requested" && e.event.approval.id === id, 60_000);
    const attempts = receiver.attempts.filter((a) => a.event.approval.id === id);
    assert.equal(attempts.length, 3, "two failures, then delivered");
    assert.equal(new Set(attempts.map((a) => a.event.id)).size, 1, "one event id");
    assert.equal(new Set(attempts.map((a) => a.body)).size, 1, "the same body");
    assert.ok(attempts.every((a) => a.verified), "every attempt signed");
    const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i].at);
    assert.ok(gaps[0] >= 4_000 && gaps[1] >= 29_000, `backoff 5 s then 30 s: ${gaps}`);
    assert.equal((await getApproval(id)).webhook, "delivered");
    const lines = h.stdout.filter((l) => l.includes('"airlock.webhook"') && l.includes(ev.event.id)).map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.result), ["retrying", "retrying", "delivered"]);
    assert.deepEqual(lines.map((l) => l.status), [503, 503, 200]);
    console.log(`# delivered ${ev.at - started} ms after the request, after two failures`);
  });
});
