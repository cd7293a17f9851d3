// Egress: ANY /e/{host}/{path}?{query} for sessions minted with "egress": true.
//
// Every outbound fetch of the worker goes to fakeInternet() (Miniflare's
// `outboundService`), which records it and answers locally: nothing here
// ever connects anywhere, so "the origin received nothing" is proved by the
// interceptor's request count. The never-reachable hosts are refused by the
// worker before any fetch; the count must not move.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertError, fakeInternet, sleep, startAirlock, testPolicy } from "./helpers.mjs";

// The name the sandbox reaches Airlock by, in the request URL (via the Host
// header or an absolute dispatchFetch URL). An ordinary public-looking name,
// so that only the own-hostname rule can forbid it.
const OWN_HOST = "airlock.acme-broker.dev";

const BASE_HOSTS = [
  "pypi.org",
  "*.pythonhosted.org",
  { host: "mirror.example.com", http: true, ports: [8080] },
];
// Never reachable, named in the allowlist on purpose: the allowlist must not matter.
const NAME_DECOYS = [
  "localhost",
  "*.localhost",
  "localhost.localdomain",
  "*.localdomain",
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "*.internal",
  "printer.local",
  "*.local",
  "router.home.arpa",
  "*.arpa",
  "intranet",
];
const IP_DECOYS = [
  "127.0.0.1",
  "1.2.3.4",
  "169.254.169.254",
  "10.0.0.1",
  "[::1]",
  { host: "192.168.1.1", http: true, ports: [8080] },
];

const policyWith = (hosts) => (echoUrl) => testPolicy(echoUrl, { egress: { hosts } });

const net = fakeInternet(); // no `forward`: nothing is ever passed on
let h;
let egress; // echo:read + egress
let noEgress; // echo:read, egress not mentioned at mint
let falseEgress; // echo:read, "egress": false
let notAllowedBody; // the one body every egress_not_allowed answer must have
let notAllowedHeaderNames;

before(async () => {
  h = await startAirlock({ policy: policyWith(BASE_HOSTS), outboundService: net.handler });
  egress = await h.mint({ echo: "read" }, { egress: true, agent: "agent-egress", user: "user-egress" });
  noEgress = await h.mint({ echo: "read" });
  falseEgress = await h.mint({ echo: "read" }, { egress: false });
});

after(async () => {
  await h?.close();
});

/** A raw /e/ request (exact request-target, no client-side normalization). */
function egressRaw(target, { token = egress.token, method = "GET", headers = {}, body } = {}) {
  return h.raw({
    method,
    path: `/e/${target}`,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body,
  });
}

/** Run fn; assert the fake internet received no request meanwhile. */
async function expectNoOutbound(fn, label = "") {
  const before = net.count();
  const r = await fn();
  await sleep(30);
  const sent = net.since(before).map((x) => `${x.method} ${x.url}`);
  assert.deepEqual(sent, [], `outbound request(s) for ${label}`);
  return r;
}

/** Run fn; assert exactly one outbound request; return [response, record]. */
async function expectOneOutbound(fn, label = "") {
  const before = net.count();
  const r = await fn();
  await sleep(30);
  const sent = net.since(before);
  assert.equal(sent.length, 1, `${label}: ${sent.length} outbound requests (${r.status} ${r.text?.slice(0, 200)})`);
  return [r, sent[0]];
}

function headerNames(r) {
  return Object.keys(r.headers)
    .filter((n) => !["date", "x-airlock-request-id"].includes(n))
    .sort();
}

function assertEgressNotAllowed(r, label) {
  assertError(r, 403, "egress_not_allowed", label);
  if (notAllowedBody === undefined) {
    notAllowedBody = r.text;
    notAllowedHeaderNames = headerNames(r);
  }
  assert.equal(r.text, notAllowedBody, `${label}: body differs from other egress_not_allowed bodies`);
  assert.deepEqual(headerNames(r), notAllowedHeaderNames, `${label}: header names differ`);
}

describe("who may use egress", () => {
  test("no session token -> 401 invalid_session, nothing sent", async () => {
    const r = await expectNoOutbound(() => egressRaw("pypi.org/simple/", { token: null }), "no token");
    assertError(r, 401, "invalid_session");
    const bad = await expectNoOutbound(() => egressRaw("pypi.org/simple/", { token: "al1.k1.x.y" }), "bad token");
    assertError(bad, 401, "invalid_session");
  });

  test("session without egress -> 403 egress_not_allowed (omitted and false alike)", async () => {
    for (const [label, s] of [["omitted", noEgress], ["false", falseEgress]]) {
      for (const target of ["pypi.org/simple/", "files.pythonhosted.org/packages/x.whl", "mirror.example.com:8080/x"]) {
        const r = await expectNoOutbound(() => egressRaw(target, { token: s.token }), `${label}: ${target}`);
        assertEgressNotAllowed(r, `egress ${label}: ${target}`);
      }
    }
  });

  test("host/port not on the list -> 403 egress_not_allowed, byte-identical to the no-egress answer", async () => {
    // Establish the reference body from a no-egress session first.
    assertEgressNotAllowed(
      await expectNoOutbound(() => egressRaw("pypi.org/simple/", { token: noEgress.token }), "reference"),
      "reference (no egress)",
    );
    // Ordinary public names only: special-use names may be host_forbidden.
    const targets = [
      "evil-mirror.io/x",
      "example.com/",
      "www.pypi.org/simple/",
      "a.pypi.org/simple/",
      "pypi.org.evil.io/simple/",
      "xn--bcher-kva.de/", // valid punycode: syntactically fine, just not listed
      "mirror.example.com.evil.io/x",
      "pypi.org:8080/simple/", // non-default port not listed for pypi.org
      "pypi.org:8443/simple/",
      "files.pythonhosted.org:8080/x",
      "mirror.example.com:8081/x", // only 8080 is listed
      "mirror.example.com:9999/x",
    ];
    for (const target of targets) {
      const r = await expectNoOutbound(() => egressRaw(target), target);
      assertEgressNotAllowed(r, target);
    }
  });

  test("mint: a non-boolean egress -> 400 invalid_request", async () => {
    for (const value of ["true", 1, null, { hosts: ["pypi.org"] }]) {
      const r = await h.mintRaw({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 60, egress: value });
      assertError(r, 400, "invalid_request", `egress: ${JSON.stringify(value)}`);
    }
  });
});

describe("allowed hosts", () => {
  test("exact host: forwarded over https with path and query, no credential", async () => {
    const [r, rec] = await expectOneOutbound(
      () => egressRaw("pypi.org/simple/requests/?format=json&x=%20y&z=a%2Fb"),
      "pypi.org",
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(rec.url, "https://pypi.org/simple/requests/?format=json&x=%20y&z=a%2Fb");
    assert.equal(rec.protocol, "https:", "https for a host without http: true");
    assert.equal(rec.method, "GET");
    assert.equal(rec.headers.authorization, undefined, "no credential on egress");
    assert.equal(r.json?.url, rec.url, "the egress response body passes through");
    assert.ok(r.headers["x-airlock-request-id"]);
  });

  test("*.suffix host: any subdomain depth", async () => {
    for (const host of ["files.pythonhosted.org", "a.b.pythonhosted.org", "x-y.pythonhosted.org", "xn--bcher-kva.pythonhosted.org"]) {
      const [r, rec] = await expectOneOutbound(() => egressRaw(`${host}/packages/ab/cd/pkg-1.0.tar.gz`), host);
      assert.equal(r.status, 200, `${host}: ${r.text}`);
      assert.equal(rec.url, `https://${host}/packages/ab/cd/pkg-1.0.tar.gz`);
    }
  });

  test("upper-case and trailing-dot spellings reach the normalized host", async () => {
    const cases = [
      ["PYPI.ORG", "pypi.org"],
      ["PyPI.Org.", "pypi.org"],
      ["pypi.org.", "pypi.org"],
      ["FILES.PythonHosted.ORG", "files.pythonhosted.org"],
      ["files.pythonhosted.org.", "files.pythonhosted.org"],
      ["Mirror.Example.COM.:8080", "mirror.example.com"],
    ];
    for (const [spelling, host] of cases) {
      const [r, rec] = await expectOneOutbound(() => egressRaw(`${spelling}/simple/`), spelling);
      assert.equal(r.status, 200, `${spelling}: ${r.text}`);
      assert.equal(rec.hostname, host, `${spelling}: forwarded to ${rec.url}`);
      assert.equal(rec.pathname, "/simple/");
    }
  });

  test("object form: http opt-in and a listed extra port", async (t) => {
    const [r, rec] = await expectOneOutbound(() => egressRaw("mirror.example.com/simple/"), "mirror");
    assert.equal(r.status, 200, r.text);
    assert.equal(rec.hostname, "mirror.example.com");
    assert.ok(["http:", "https:"].includes(rec.protocol), rec.url);
    t.diagnostic(`mirror.example.com (http: true) forwarded as ${rec.url}`);

    const [r2, rec2] = await expectOneOutbound(() => egressRaw("mirror.example.com:8080/simple/?a=1"), "mirror:8080");
    assert.equal(r2.status, 200, r2.text);
    assert.equal(rec2.host, "mirror.example.com:8080");
    assert.equal(rec2.search, "?a=1");
    t.diagnostic(`mirror.example.com:8080 forwarded as ${rec2.url}`);
  });

  test("a port separator quoted as %3A (pip quotes every path it follows) means the port", async () => {
    for (const spelling of ["mirror.example.com%3A8080", "mirror.example.com%3a8080"]) {
      const [r, rec] = await expectOneOutbound(() => egressRaw(`${spelling}/simple/`), spelling);
      assert.equal(r.status, 200, r.text);
      assert.equal(rec.host, "mirror.example.com:8080");
    }
    // Only the colon: any other escape in the host is still malformed, and
    // the port is checked against the list as usual.
    assertError(await expectNoOutbound(() => egressRaw("pypi.org%3A8080%2f/x"), "%2f"), 400, "invalid_host");
    assertEgressNotAllowed(await expectNoOutbound(() => egressRaw("pypi.org%3a8080/x"), "unlisted port"), "pypi.org%3a8080");
  });

  test("POST body and content-type are forwarded", async () => {
    const body = JSON.stringify({ name: "pkg", version: "1.0", note: "✓" });
    const [r, rec] = await expectOneOutbound(
      () => egressRaw("pypi.org/legacy/", { method: "POST", headers: { "content-type": "application/json" }, body }),
      "POST",
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(rec.method, "POST");
    assert.equal(rec.body, body);
    assert.equal(rec.headers["content-type"], "application/json");
  });

  test("identity, proxy, cookie and session headers never go out; the allowlist does", async () => {
    const sent = {
      cookie: "sandbox_cookie=egress-cookie-marker",
      "x-forwarded-for": "203.0.113.50",
      "x-forwarded-host": "fwd-host-marker.example",
      "x-forwarded-proto": "http",
      "x-forwarded-port": "4433",
      forwarded: "for=203.0.113.51;host=fwd2-marker.example",
      "x-real-ip": "203.0.113.52",
      "proxy-authorization": "Basic cHJveHk6bWFya2Vy",
      "proxy-connection": "keep-alive",
      "cf-connecting-ip": "203.0.113.53",
      "true-client-ip": "203.0.113.54",
      "x-airlock-session": "xairlock-marker",
      "x-custom-thing": "custom-marker",
      "x-echo-mode": "echo-mode-marker", // a tool's forward_headers do not apply to egress
      accept: "application/vnd.pypi.simple.v1+json",
      "accept-language": "en-GB",
      "user-agent": "pip/24.0",
      "if-none-match": '"etag-egress"',
    };
    const [r, rec] = await expectOneOutbound(() => egressRaw("pypi.org/simple/pkg/", { headers: sent }), "hostile headers");
    assert.equal(r.status, 200, r.text);
    const names = Object.keys(rec.headers);
    for (const n of names) {
      assert.ok(
        !/^(authorization|cookie|cookie2|forwarded|x-forwarded-.*|x-real-ip|true-client-ip|proxy-.*|x-airlock-.*|x-custom-thing)$/.test(n),
        `${n} went out: ${rec.headers[n]}`,
      );
    }
    const everything = JSON.stringify(rec);
    for (const v of [
      egress.token, egress.token.split(".")[3], h.secrets.ECHO_API_TOKEN, h.secrets.AIRLOCK_ADMIN_KEY,
      h.secrets.PRIVATE_API_KEY, "egress-cookie-marker", "203.0.113.", "fwd-host-marker", "fwd2-marker",
      "cHJveHk6bWFya2Vy", "xairlock-marker", "custom-marker",
    ]) {
      assert.ok(!everything.includes(v), `${v.slice(0, 24)} went out: ${everything.slice(0, 600)}`);
    }
    for (const n of ["accept", "accept-language", "user-agent", "if-none-match"]) {
      assert.equal(rec.headers[n], sent[n], `allowed header ${n} forwarded unchanged`);
    }
    const TRANSPORT = new Set(["host", "content-length", "accept-encoding", "connection", "transfer-encoding", "cf-worker", "cf-connecting-ip", "x-echo-mode"]);
    const ALLOWED = new Set(["accept", "accept-language", "content-type", "user-agent", "range", "idempotency-key", "cache-control"]);
    const unexpected = names.filter((n) => !ALLOWED.has(n) && !n.startsWith("if-") && !TRANSPORT.has(n));
    assert.deepEqual(unexpected, [], "headers outside the allowlist went out");
  });

  test("pip-style credentials (the token as a Basic password) work and never go out", async () => {
    const basic = (userPass) => `Basic ${Buffer.from(userPass).toString("base64")}`;
    for (const user of ["session", "__token__", ""]) {
      const [r, rec] = await expectOneOutbound(
        () => egressRaw("pypi.org/simple/requests/", { token: null, headers: { authorization: basic(`${user}:${egress.token}`) } }),
        `Basic user ${user}`,
      );
      assert.equal(r.status, 200, `user ${JSON.stringify(user)}: ${r.text}`);
      assert.equal(rec.headers.authorization, undefined, "Authorization went out");
      assert.ok(!JSON.stringify(rec).includes(egress.token.split(".")[3]), "the token went out");
    }
    const bad = await expectNoOutbound(
      () => egressRaw("pypi.org/simple/", { token: null, headers: { authorization: basic(`session:${egress.token}x`) } }),
      "bad Basic",
    );
    assertError(bad, 401, "invalid_session");
    const noEgressBasic = await expectNoOutbound(
      () => egressRaw("pypi.org/simple/", { token: null, headers: { authorization: basic(`session:${noEgress.token}`) } }),
      "no-egress Basic",
    );
    assertEgressNotAllowed(noEgressBasic, "no-egress session via Basic");
  });

  test("Set-Cookie from an egress response is dropped", async () => {
    const [r] = await expectOneOutbound(() => egressRaw("pypi.org/cookie/x"), "cookie");
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.setCookie, []);
    assert.ok(!JSON.stringify(r.rawHeaders).includes("egress-cookie-value"));
  });

  test("4xx passes through; 5xx -> 502 upstream_error with the origin's status and Retry-After", async () => {
    const [notFound] = await expectOneOutbound(() => egressRaw("pypi.org/status/404"), "404");
    assert.equal(notFound.status, 404);
    assert.equal(notFound.json?.url, "https://pypi.org/status/404", "the 4xx body passes through");

    const [r] = await expectOneOutbound(() => egressRaw("pypi.org/status/503?m=origin-5xx-marker"), "503");
    assertError(r, 502, "upstream_error", "egress 503");
    assert.equal(r.headers["x-airlock-upstream-status"], "503");
    assert.equal(r.headers["retry-after"], "7");
    assert.ok(!r.text.includes("origin-5xx-marker"), "the origin's 5xx body reached the sandbox");
  });
});

describe("*.pythonhosted.org matches label by label", () => {
  const notMatching = [
    "pythonhosted.org", // the apex is not a subdomain
    "pythonhosted.org.",
    "PYTHONHOSTED.ORG",
    "evilpythonhosted.org",
    "files-pythonhosted.org",
    "pythonhosted.org.evil.io",
    "files.pythonhosted.org.evil.io",
    "pythonhosted.org.files.pythonhosted.org.evil.io",
    "xpythonhosted.org",
  ];
  for (const host of notMatching) {
    test(`${host} -> 403 egress_not_allowed, nothing sent`, async () => {
      const r = await expectNoOutbound(() => egressRaw(`${host}/packages/x`), host);
      assertEgressNotAllowed(r, host);
    });
  }
});

// [target host, expected]; "either" rows are both malformed and an IP/zone id
// in the contract's wording, so 400 invalid_host and 403 host_forbidden both hold.
const FORBIDDEN = [
  // IPv4 in every spelling
  "1.2.3.4", "8.8.8.8", "127.0.0.1", "127.000.000.001", "2130706433", "0177.0.0.1", "0x7f.0.0.1",
  "0X7F.0.0.1", "0x7f000001", "017700000001", "127.1", "127.0.1", "0", "0.0.0.0", "10.0.0.1",
  "100.64.0.1", "169.254.169.254", "192.168.1.1", "172.16.0.1", "1.2.3.4.", "1.2.3.4:443",
  "1.2.3.4:8080", "192.168.1.1:8080", "169.254.169.254:80",
  // IPv6 (bracketed)
  "[::1]", "[::1]:443", "[0:0:0:0:0:0:0:1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
  "[64:ff9b::7f00:1]", "[fe80::1]", "[fd00::1]", "[fd00:ec2::254]", "[2606:4700:4700::1111]",
  "[::FFFF:169.254.169.254]",
  // localhost and special-use names
  "localhost", "LOCALHOST", "localhost.", "localhost:8080", "foo.localhost", "a.b.localhost",
  "localhost.localdomain", "db.localdomain", "printer.local", "my-mac.local.", "svc.internal",
  "api.corp.internal", "router.home.arpa", "1.0.0.127.in-addr.arpa", "b.a.ip6.arpa",
  // cloud metadata names
  "metadata", "metadata.google.internal", "METADATA.GOOGLE.INTERNAL", "metadata.google.internal.",
  "metadata.goog", "instance-data", "instance-data.ec2.internal",
  // single-label names
  "intranet", "pypi", "wpad", "org",
].map((host) => ({ host }));
const FORBIDDEN_EITHER = [
  "[fe80::1%25eth0]", // zone id, percent-encoded as URLs require
  "[fe80::1%eth0]",
  "[127.0.0.1]", // bracketed IPv4
  "::1", // unbracketed IPv6
  "[::1", // unbalanced
].map((host) => ({ host, either: true }));
// The worker's own hostname, as seen in the request URL (Host header).
const OWN = [
  { host: OWN_HOST, hostHeader: OWN_HOST },
  { host: OWN_HOST.toUpperCase(), hostHeader: OWN_HOST },
  { host: `${OWN_HOST}.`, hostHeader: OWN_HOST },
  { host: `${OWN_HOST}:8443`, hostHeader: OWN_HOST },
  { host: OWN_HOST, hostHeader: `${OWN_HOST}:8787` },
  // allowlisted, but it is the name Airlock is reached by in this request
  { host: "mirror.example.com", hostHeader: "mirror.example.com" },
  { host: "mirror.example.com:8080", hostHeader: "mirror.example.com" },
];

async function runForbiddenTable(rows) {
  const mismatches = [];
  const before = net.count();
  for (const row of rows) {
    const headers = row.hostHeader ? { host: row.hostHeader } : {};
    const r = await egressRaw(`${row.host}/latest/meta-data/?x=1`, { headers });
    const code = r.json?.error?.code;
    const ok = row.either
      ? (r.status === 403 && code === "host_forbidden") || (r.status === 400 && code === "invalid_host")
      : r.status === 403 && code === "host_forbidden";
    if (!ok || !r.headers["x-airlock-request-id"]) {
      mismatches.push(`${row.host}${row.hostHeader ? ` (Host: ${row.hostHeader})` : ""} -> ${r.status} ${code ?? r.text.slice(0, 80)}`);
    }
  }
  await sleep(50);
  const sent = net.since(before).map((x) => x.url);
  return { mismatches, sent };
}

describe("never-reachable hosts -> 403 host_forbidden, nothing sent, whatever the allowlist says", () => {
  const rows = [...FORBIDDEN, ...FORBIDDEN_EITHER, ...OWN];

  test("with the base allowlist", async () => {
    const { mismatches, sent } = await runForbiddenTable(rows);
    assert.deepEqual(sent, [], "outbound requests for never-reachable hosts");
    assert.deepEqual(mismatches, [], "hosts not answered 403 host_forbidden");
  });

  test("with Airlock's own hostname in the allowlist", async () => {
    await h.restart({ policy: policyWith([...BASE_HOSTS, OWN_HOST]) });
    const health = await h.fetch("/v1/health");
    assert.equal(health.status, 200, `policy naming an ordinary host: ${health.text}`);
    const { mismatches, sent } = await runForbiddenTable(OWN);
    assert.deepEqual(sent, [], "outbound requests for Airlock's own hostname");
    assert.deepEqual(mismatches, [], "hosts not answered 403 host_forbidden");
  });

  // "Never reachable, whatever the allowlist says": a policy that names such
  // a host does not validate at all, so a typo cannot open it. Every route
  // fails closed with policy_invalid, and nothing is ever sent.
  for (const [label, decoys] of [
    ["localhost, metadata, *.internal, *.local, *.arpa and single labels", NAME_DECOYS],
    ["IP literals", IP_DECOYS],
  ]) {
    test(`an allowlist naming ${label} is refused as a whole`, async () => {
      for (const decoy of decoys) {
        await h.restart({ policy: policyWith([...BASE_HOSTS, decoy]) });
        const health = await h.fetch("/v1/health");
        assertError(health, 500, "policy_invalid", `allowlist naming ${decoy}`);
      }
      await h.restart({ policy: policyWith([...BASE_HOSTS, ...decoys]) });
      const before = net.count();
      for (const row of rows.slice(0, 10)) {
        const r = await egressRaw(`${row.host}/x`);
        assertError(r, 500, "policy_invalid", row.host);
      }
      assert.equal(net.count() - before, 0, "outbound requests under an invalid policy");
    });
  }

  test("the own-hostname rule follows the request URL (absolute dispatchFetch URLs)", async () => {
    await h.restart({ policy: policyWith(BASE_HOSTS) });
    const auth = { authorization: `Bearer ${egress.token}` };
    const own = await expectNoOutbound(
      () => h.fetch(`http://${OWN_HOST}/e/${OWN_HOST}/x`, { headers: auth }),
      "own host",
    );
    assertError(own, 403, "host_forbidden", "own hostname");
    const mirror = await expectNoOutbound(
      () => h.fetch("http://mirror.example.com/e/mirror.example.com/x", { headers: auth }),
      "mirror as own host",
    );
    assertError(mirror, 403, "host_forbidden", "allowlisted host that is Airlock's own name here");
    // Control: reached by that name, other allowed hosts still work.
    const before = net.count();
    const ok = await h.fetch(`http://${OWN_HOST}/e/pypi.org/simple/`, { headers: auth });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(net.count() - before, 1);
  });
});

describe("malformed hosts -> 400 invalid_host, nothing sent", () => {
  const label64 = "a".repeat(64);
  const tooLong = `${Array.from({ length: 5 }, () => "b".repeat(60)).join(".")}.org`; // 308 chars
  const rows = [
    ["", "empty"],
    ["user@pypi.org", "userinfo"],
    ["user:pass@pypi.org", "userinfo with password"],
    ["@pypi.org", "empty userinfo"],
    ["pypi.org@evil.example", "host after @"],
    ["%70ypi.org", "percent-encoded letter"],
    ["pypi%2eorg", "percent-encoded dot"],
    ["pypi.org%2f@evil.example", "percent-encoded slash"],
    ["b%C3%BCcher.de", "non-ASCII IDN, percent-encoded"],
    ["pypi.org:0", "port 0"],
    ["pypi.org:99999", "port 99999"],
    ["pypi.org:65536", "port 65536"],
    ["pypi.org:abc", "port abc"],
    ["pypi.org:", "empty port"],
    ["pypi.org:-1", "negative port"],
    ["pypi.org:+443", "signed port"],
    ["pypi.org:0x1bb", "hex port"],
    ["pypi.org:8080:8080", "two ports"],
    [":443", "port without a name"],
    ["pypi..org", "empty label"],
    [".pypi.org", "leading dot"],
    ["pypi.org..", "two trailing dots"],
    ["-pypi.org", "label starts with a hyphen"],
    ["pypi-.org", "label ends with a hyphen"],
    ["pypi_org.org", "underscore"],
    ["*.pythonhosted.org", "wildcard as a host"],
    ["pypi.org!", "punctuation"],
    [`${label64}.org`, "63+ byte label"],
    [tooLong, "longer than 253 bytes"],
  ];
  for (const [host, label] of rows) {
    test(`${label}: /e/${host.length > 40 ? `${host.slice(0, 40)}…` : host}/`, async () => {
      const r = await expectNoOutbound(() => egressRaw(`${host}/simple/`), label);
      assertError(r, 400, "invalid_host", label);
    });
  }

  test("backslash in the host", async (t) => {
    // Miniflare's entry worker turns `\\` into `/` (WHATWG URL rules) before
    // Airlock runs, so the worker sees /e/pypi.org//simple/ (an empty segment).
    const r = await expectNoOutbound(() => egressRaw("pypi.org\\/simple/"), "backslash");
    t.diagnostic(`-> ${r.status} ${r.json?.error?.code}`);
    assert.ok(r.status === 400 && ["invalid_host", "invalid_path"].includes(r.json?.error?.code), `${r.status} ${r.text}`);
  });

  test("non-ASCII IDN sent as raw UTF-8 bytes (bücher.de)", async (t) => {
    // node:http writes header strings as latin1, so this puts the UTF-8 bytes on the wire.
    const rawHost = Buffer.from("bücher.de", "utf8").toString("latin1");
    const r = await expectNoOutbound(() => egressRaw(`${rawHost}/simple/`), "raw UTF-8");
    if (!r.headers["x-airlock-request-id"]) {
      t.diagnostic(`the runtime refused the raw bytes itself: ${r.status}`);
      assert.ok(r.status >= 400 && r.status < 500);
      return;
    }
    assertError(r, 400, "invalid_host", "raw UTF-8 host");
  });

  test("non-ASCII IDN through fetch (which percent-encodes it)", async () => {
    const r = await expectNoOutbound(
      () => h.egress("bücher.de/simple/", { token: egress.token }),
      "fetch IDN",
    );
    assertError(r, 400, "invalid_host", "bücher.de via fetch");
  });

  test("/e/ with no host at all is refused", async () => {
    for (const path of ["/e/", "/e"]) {
      const r = await expectNoOutbound(
        () => h.raw({ path, headers: { authorization: `Bearer ${egress.token}` } }),
        path,
      );
      assert.ok(
        (r.status === 400 && r.json?.error?.code === "invalid_host") ||
          (r.status === 404 && r.json?.error?.code === "not_found"),
        `${path} -> ${r.status} ${r.text}`,
      );
    }
  });
});

describe("redirects are never followed; Location is rewritten or removed", () => {
  // [Location the upstream sends, expected Location at the sandbox (null = removed), from]
  const rows = [
    ["https://files.pythonhosted.org/packages/ab/cd/pkg-1.0.tar.gz?sig=1&x=%20", "/e/files.pythonhosted.org/packages/ab/cd/pkg-1.0.tar.gz?sig=1&x=%20"],
    ["https://pypi.org/simple/other/", "/e/pypi.org/simple/other/"],
    ["/simple/relative/?q=1", "/e/pypi.org/simple/relative/?q=1"],
    ["//files.pythonhosted.org/x", "/e/files.pythonhosted.org/x"],
    ["http://mirror.example.com/x", "/e/mirror.example.com/x"],
    ["http://mirror.example.com:8080/x?y=1", "/e/mirror.example.com:8080/x?y=1"],
    ["/y", "/e/mirror.example.com:8080/y", "mirror.example.com:8080"],
    ["https://evil.example/x", null],
    ["http://pypi.org/x", null], // plain http is not opted into for pypi.org
    ["https://pypi.org:8443/x", null],
    ["https://pythonhosted.org/x", null],
    ["https://evilpythonhosted.org/x", null],
    ["https://127.0.0.1/x", null],
    ["http://169.254.169.254/latest/meta-data/", null],
    ["http://[::1]/x", null],
    ["https://localhost/x", null],
    ["https://metadata.google.internal/computeMetadata/v1/", null],
    ["https://user:pw@pypi.org/x", null],
    ["javascript:alert(1)", null],
    ["file:///etc/passwd", null],
    ["ftp://pypi.org/x", null],
  ];
  for (const [location, expected, from = "pypi.org"] of rows) {
    test(`${from}: 302 Location ${location} -> ${expected ?? "(removed)"}`, async () => {
      const [r, rec] = await expectOneOutbound(
        () => egressRaw(`${from}/redirect-to?u=${encodeURIComponent(location)}`),
        location,
      );
      assert.equal(r.status, 302, r.text);
      assert.equal(rec.pathname, "/redirect-to");
      if (expected === null) {
        assert.equal(r.headers.location, undefined, `Location kept: ${r.headers.location}`);
      } else {
        assert.equal(r.headers.location, expected);
      }
    });
  }

  test("301/303/307/308 are rewritten too", async () => {
    for (const s of [301, 303, 307, 308]) {
      const [r] = await expectOneOutbound(
        () => egressRaw(`pypi.org/redirect-to?s=${s}&u=${encodeURIComponent("https://files.pythonhosted.org/p")}`),
        `status ${s}`,
      );
      assert.equal(r.status, s);
      assert.equal(r.headers.location, "/e/files.pythonhosted.org/p");
    }
  });

  test("a rewritten Location, followed by the sandbox, reaches the target", async () => {
    const target = "https://files.pythonhosted.org/packages/ab/pkg.whl?sig=abc";
    const [r] = await expectOneOutbound(() => egressRaw(`pypi.org/redirect-to?u=${encodeURIComponent(target)}`), "redirect");
    assert.equal(r.status, 302);
    const [r2, rec] = await expectOneOutbound(
      () => h.raw({ path: r.headers.location, headers: { authorization: `Bearer ${egress.token}` } }),
      "follow",
    );
    assert.equal(r2.status, 200, r2.text);
    assert.equal(rec.url, target);
  });
});

describe("request hygiene on the egress route", () => {
  test("URL longer than 8192 bytes -> 414 url_too_long, nothing sent", async () => {
    const r = await expectNoOutbound(() => egressRaw(`pypi.org/simple/?q=${"a".repeat(8300)}`), "long URL");
    assertError(r, 414, "url_too_long");
    assert.ok(!r.text.includes("aaaaaaaa"), "the URL is echoed in the error");
  });

  test("headers above 32 KiB -> 431 headers_too_large, nothing sent", async () => {
    const headers = {};
    for (let i = 0; i < 40; i++) headers[`x-pad-${i}`] = "p".repeat(1000);
    const r = await expectNoOutbound(() => egressRaw("pypi.org/simple/", { headers }), "big headers");
    assertError(r, 431, "headers_too_large");
  });

  test("encoded traversal in the egress path never changes the host", async (t) => {
    const paths = [
      "pypi.org/%2e%2e/evil.example/x",
      "pypi.org/..%2fevil.example%2fx",
      "pypi.org/%2e%2e%2f%2e%2e%2fevil.example/x",
      "pypi.org/a/../../evil.example/x",
    ];
    for (const p of paths) {
      const before = net.count();
      const r = await egressRaw(p);
      await sleep(20);
      const sent = net.since(before);
      t.diagnostic(`/e/${p} -> ${r.status} ${r.json?.error?.code ?? ""} ${sent.map((x) => x.url).join(" ")}`);
      for (const x of sent) {
        assert.equal(x.hostname, "pypi.org", `/e/${p} went to ${x.url}`);
        assert.ok(!/(^|\/)\.\.?(\/|$)/.test(x.pathname), `dot segment went out: ${x.url}`);
      }
    }
  });
});

describe("audit of egress requests", () => {
  test("exactly one line each, reason = response code; no token or query value in any output", async () => {
    const QMARK = `qmark${Date.now().toString(36)}`;
    const sends = [
      ["allowed", () => egressRaw(`pypi.org/simple/?token=${QMARK}`)],
      ["not allowed", () => egressRaw(`evil-mirror.io/?q=${QMARK}`)],
      ["no egress", () => egressRaw(`pypi.org/?q=${QMARK}`, { token: noEgress.token })],
      ["forbidden", () => egressRaw(`169.254.169.254/latest/?q=${QMARK}`)],
      ["invalid", () => egressRaw(`user@pypi.org/?q=${QMARK}`)],
    ];
    for (const [label, send] of sends) {
      const r = await send();
      const lines = await h.auditFor(r.headers["x-airlock-request-id"]);
      assert.equal(lines.length, 1, `${label}: ${lines.length} audit lines`);
      const a = lines[0];
      if (r.status === 200) {
        assert.equal(a.decision, "allow", label);
        assert.equal(a.reason, "ok", label);
        assert.equal(a.upstream_status, 200, label);
      } else {
        assert.equal(a.reason, r.json?.error?.code, `${label}: reason`);
        assert.equal(a.decision, "deny", `${label}: decision`);
        assert.equal(a.upstream_status, null, label);
      }
      // Who tried to reach a forbidden or unlisted host is the point of the line.
      if (["allowed", "not allowed", "forbidden"].includes(label)) {
        assert.equal(a.session_id, egress.session_id, `${label}: session_id`);
      }
    }
    const everything = h.stdout.join("\n") + h.stderr.join("\n");
    for (const [name, v] of [["query value", QMARK], ["token", egress.token], ["token mac", egress.token.split(".")[3]]]) {
      assert.ok(!everything.includes(v), `${name} in workerd output`);
    }
  });
});

describe("a policy without an egress section", () => {
  test("an egress session gets 403 egress_not_allowed for every host", async () => {
    await h.restart({ policy: (echoUrl) => testPolicy(echoUrl) });
    for (const target of ["pypi.org/simple/", "files.pythonhosted.org/x", "mirror.example.com:8080/x"]) {
      const r = await expectNoOutbound(() => egressRaw(target), target);
      assertError(r, 403, "egress_not_allowed", target);
    }
  });
});
