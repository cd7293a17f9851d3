// Request hygiene on every route: URL and header size limits, `;` path
// parameters, Connection-listed and hop-by-hop headers, hostile headers,
// Transfer-Encoding games, duplicated Authorization and odd token spellings.
// Every refusal is checked against the origins' hit counts.
//
// fetch() normalizes URLs and refuses some headers, so most requests here go
// through node:http (h.raw) or a bare TCP socket where the exact bytes matter.
// This suite has no egress policy and never calls /e/: nothing here may leave
// the machine.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { assertError, sleep, startAirlock, testPolicy } from "./helpers.mjs";

let h;
let reader; // echo:read, params:read
let writer; // echo:write
let invalidSessionBody;

before(async () => {
  h = await startAirlock({
    policy: (echoUrl) => {
      const p = testPolicy(echoUrl, {
        extraTools: {
          params: {
            origin: echoUrl,
            allow_http: true,
            allow_path_params: true,
            credential: { secret: "ECHO_API_TOKEN", inject: "bearer" },
            rules: [{ methods: ["GET"], path: "/**", level: "read" }],
          },
        },
      });
      p.tools.echo.forward_headers = ["x-echo-mode", "x-extra"];
      return p;
    },
  });
  reader = await h.mint({ echo: "read", params: "read", private: "read" }, { agent: "agent-hyg", user: "user-hyg" });
  writer = await h.mint({ echo: "write" });
});

after(async () => {
  await h?.close();
});

const auth = (t = reader.token) => ({ authorization: `Bearer ${t}` });

/** h.raw plus the echo hits it caused. */
async function rawHits(opts) {
  const before = h.echo.hits.length;
  const privBefore = (await h.privateHits()).count;
  const r = await h.raw(opts);
  await sleep(30);
  return { r, hits: h.echo.hits.slice(before), privHits: (await h.privateHits()).count - privBefore };
}

async function expectRefused(opts, status, code, label) {
  const { r, hits, privHits } = await rawHits(opts);
  assertError(r, status, code, label);
  assert.deepEqual(hits.map((x) => x.url.slice(0, 80)), [], `${label}: origin received a request`);
  assert.equal(privHits, 0, `${label}: private origin received a request`);
  return r;
}

describe("URL length (414 url_too_long above 8192 bytes)", () => {
  const prefix = "/t/echo/long?q=";
  test("just under the limit is served", async () => {
    // ~8100 bytes of path+query: under 8192 even counting "http://127.0.0.1:NNNNN".
    const { r, hits } = await rawHits({ path: prefix + "a".repeat(8100 - prefix.length), headers: auth() });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(hits.length, 1);
  });

  const cases = [
    ["long query", () => ({ path: prefix + "a".repeat(8300), headers: auth() })],
    ["long path", () => ({ path: `/t/echo/${"b".repeat(8300)}`, headers: auth() })],
    ["very long query", () => ({ path: prefix + "c".repeat(60000), headers: auth() })],
    ["mint", () => ({ method: "POST", path: `/v1/sessions?x=${"d".repeat(8300)}`, headers: { ...auth(h.secrets.AIRLOCK_ADMIN_KEY), "content-type": "application/json" }, body: JSON.stringify({ agent: "a", user: "u", tools: { echo: "read" } }) })],
    ["health", () => ({ path: `/v1/health?x=${"e".repeat(8300)}` })],
    ["private tool", () => ({ path: `/t/private/x?q=${"f".repeat(8300)}`, headers: auth() })],
  ];
  for (const [label, make] of cases) {
    test(`${label} -> 414, nothing forwarded, URL not echoed`, async () => {
      const r = await expectRefused(make(), 414, "url_too_long", label);
      assert.ok(r.text.length < 1000, `error body of ${r.text.length} bytes`);
      assert.equal(r.json?.token, undefined, "minted despite 414");
    });
  }
});

describe("header size (431 headers_too_large above 32768 bytes)", () => {
  const pad = (total, each = 1000) => {
    const out = {};
    for (let i = 0; total > 0; i++) {
      const v = "p".repeat(Math.min(each, total));
      out[`x-pad-${String(i).padStart(3, "0")}`] = v;
      total -= v.length + 9;
    }
    return out;
  };

  test("about 30000 bytes of headers are served", async () => {
    const { r, hits } = await rawHits({ path: "/t/echo/hdr", headers: { ...auth(), ...pad(29000) } });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(hits.length, 1);
    assert.equal(hits[0].headers["x-pad-000"], undefined, "padding headers are not on the allowlist");
  });

  const cases = [
    ["one 40 KB header", () => ({ path: "/t/echo/hdr", headers: { ...auth(), "x-big": "q".repeat(40000) } })],
    ["many small headers", () => ({ path: "/t/echo/hdr", headers: { ...auth(), ...pad(36000, 80) } })],
    ["a huge allowed header", () => ({ path: "/t/echo/hdr", headers: { ...auth(), "user-agent": "u".repeat(34000) } })],
    ["a huge Authorization", () => ({ path: "/t/echo/hdr", headers: { authorization: `Bearer ${reader.token}${"A".repeat(34000)}` } })],
    ["mint", () => ({ method: "POST", path: "/v1/sessions", headers: { ...auth(h.secrets.AIRLOCK_ADMIN_KEY), "content-type": "application/json", ...pad(36000) }, body: JSON.stringify({ agent: "a", user: "u", tools: { echo: "read" } }) })],
    ["health", () => ({ path: "/v1/health", headers: pad(36000) })],
  ];
  for (const [label, make] of cases) {
    test(`${label} -> 431, nothing forwarded`, async () => {
      const r = await expectRefused(make(), 431, "headers_too_large", label);
      assert.equal(r.json?.token, undefined, "minted despite 431");
    });
  }
});

describe("';' path parameters", () => {
  const refused = [
    "/t/echo/a;b",
    "/t/echo/items;x=1/y",
    "/t/echo/a/b;jsessionid=abc",
    "/t/echo/;/x",
    "/t/echo/a;",
    "/t/private/things;v=1",
  ];
  for (const path of refused) {
    test(`GET ${path} -> 400 invalid_path`, () => expectRefused({ path, headers: auth() }, 400, "invalid_path", path));
  }

  test("';' that reaches the origin only through a tool with allow_path_params", async () => {
    const { r, hits } = await rawHits({ path: "/t/params/a;v=1/b;x?q=1", headers: auth() });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(hits.map((x) => x.url), ["/a;v=1/b;x?q=1"]);
  });

  test("';' in the query is not a path parameter", async () => {
    const { r, hits } = await rawHits({ path: "/t/echo/hello?a=1;b=2", headers: auth() });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(hits.map((x) => x.query), ["a=1;b=2"]);
  });

  test("an encoded ';' (%3B) never reaches the origin as a literal ';'", async (t) => {
    for (const path of ["/t/echo/a%3Bb", "/t/echo/a%3bb=1/c"]) {
      const { r, hits } = await rawHits({ path, headers: auth() });
      t.diagnostic(`${path} -> ${r.status} ${r.json?.error?.code ?? ""} origin=${JSON.stringify(hits.map((x) => x.url))}`);
      assert.ok(r.status === 200 || (r.status === 400 && r.json?.error?.code === "invalid_path"), `${r.status} ${r.text}`);
      for (const x of hits) assert.ok(!x.path.includes(";"), `origin received ${x.path}`);
    }
  });
});

describe("Connection-listed and hop-by-hop headers are dropped", () => {
  test("control: x-extra (in the tool's forward_headers) is forwarded when not listed", async () => {
    const { r, hits } = await rawHits({ path: "/t/echo/conn", headers: { ...auth(), "x-extra": "extra-value" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(hits[0].headers["x-extra"], "extra-value");
  });

  const cases = [
    ["close, x-extra", ["x-extra"]],
    ["close, X-Extra", ["x-extra"]],
    ["keep-alive , x-extra ,x-echo-mode", ["x-extra", "x-echo-mode"]],
    [["close", "x-extra"], ["x-extra"]], // two Connection header lines
    ["close, accept, user-agent", ["accept", "user-agent"]],
  ];
  for (const [connection, dropped] of cases) {
    test(`Connection: ${JSON.stringify(connection)} drops ${dropped.join(", ")}`, async () => {
      const sent = {
        ...auth(),
        connection,
        "x-extra": "conn-listed-extra",
        "x-echo-mode": "conn-listed-mode",
        accept: "application/x-conn-listed",
        "user-agent": "conn-listed-agent/1",
      };
      const { r, hits } = await rawHits({ path: "/t/echo/conn", headers: sent });
      assert.equal(r.status, 200, r.text);
      assert.equal(hits.length, 1);
      const got = hits[0].headers;
      for (const name of dropped) {
        assert.ok(!JSON.stringify(hits[0].rawHeaders).includes(sent[name]), `${name} (listed in Connection) reached the origin`);
      }
      for (const name of ["x-extra", "x-echo-mode", "accept", "user-agent"].filter((n) => !dropped.includes(n))) {
        assert.equal(got[name], sent[name], `${name} (not listed) is still forwarded`);
      }
    });
  }
});

describe("hostile request headers never reach the origin", () => {
  // [header, value]; every value is unique so it can be searched for.
  const rows = [
    ["x-forwarded-for", "198.51.100.1"],
    ["x-forwarded-host", "xfh-marker.example"],
    ["x-forwarded-proto", "xfp-marker"],
    ["x-forwarded-port", "48213"],
    ["x-forwarded-prefix", "/xfprefix-marker"],
    ["x-forwarded-server", "xfs-marker"],
    ["forwarded", "for=198.51.100.2;host=fwd-marker.example;proto=https"],
    ["x-real-ip", "198.51.100.3"],
    ["true-client-ip", "198.51.100.4"],
    ["x-client-ip", "198.51.100.5"],
    ["x-cluster-client-ip", "198.51.100.6"],
    ["cf-connecting-ip", "198.51.100.7"],
    ["cf-connecting-ipv6", "2001:db8::77"],
    ["cf-ipcountry", "XQ-marker"],
    ["cf-ray", "cfray-marker-0000"],
    ["cf-visitor", '{"scheme":"cfvisitor-marker"}'],
    ["cf-worker", "cfworker-marker.example"],
    ["cdn-loop", "cdnloop-marker"],
    ["via", "1.1 via-marker"],
    ["proxy-authorization", "Basic cHJveHlhdXRoLW1hcmtlcg=="],
    ["proxy-connection", "proxyconn-marker"],
    ["proxy-authenticate", "proxyauthn-marker"],
    ["cookie", "sid=cookie-marker-1"],
    ["cookie2", "$Version=1; cookie2-marker"],
    ["x-airlock-session", "xas-marker"],
    ["x-airlock-tool", "private"],
    ["x-airlock-request-id", "forged-request-id-marker"],
    ["x-airlock-admin-key", "xaak-marker"],
    ["x-original-url", "/xou-marker"],
    ["x-rewrite-url", "/xru-marker"],
    ["x-http-method-override", "DELETE"],
    ["x-http-method", "PATCH"],
    ["x-method-override", "PUT"],
    ["max-forwards", "7371"],
    ["keep-alive", "timeout=4242"],
    ["te", "trailers, te-marker"],
    // Not sent: Trailer (node:http refuses it without chunked encoding), Upgrade (node:http would turn the request into an upgrade handshake),
    // Expect (node:http would wait for 100-continue), Content-Length/Transfer-Encoding
    // (framing; see the raw-socket tests below).
  ];
  for (const [name, value] of rows) {
    test(`${name}: ${value}`, async () => {
      const { r, hits } = await rawHits({ path: `/t/echo/hostile/${name}`, headers: { ...auth(), [name]: value } });
      assert.equal(r.status, 200, `${name}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(hits.length, 1);
      const hit = hits[0];
      assert.equal(hit.method, "GET", "method overridden");
      const seen = JSON.stringify([hit.rawHeaders, hit.url, hit.body]);
      assert.ok(!seen.includes(value), `${name} value reached the origin: ${seen.slice(0, 400)}`);
      if (/^(x-forwarded-|x-airlock-|proxy-|cookie|forwarded$|x-real-ip$|via$|true-client-ip$)/.test(name)) {
        assert.equal(hit.headers[name], undefined, `${name} reached the origin`);
      }
      if (name === "x-airlock-request-id") {
        assert.notEqual(r.headers["x-airlock-request-id"], value, "forged request id echoed as Airlock's own");
      }
    });
  }

  test("Host: the origin gets its own host, not the sandbox's", async () => {
    const { r, hits } = await rawHits({ path: "/t/echo/hostile/host", headers: { ...auth(), host: "evil-host-marker.example" } });
    assert.equal(r.status, 200, r.text);
    assert.equal(hits.length, 1);
    assert.equal(hits[0].headers.host, new URL(h.echo.url).host);
    assert.ok(!JSON.stringify(hits[0].rawHeaders).includes("evil-host-marker"));
  });

  test("all of them at once, on a POST with a body", async () => {
    const headers = { ...auth(writer.token), "content-type": "application/json" };
    for (const [name, value] of rows) headers[name] = value;
    const body = JSON.stringify({ ok: true });
    const { r, hits } = await rawHits({ method: "POST", path: "/t/echo/items/hostile", headers, body });
    assert.equal(r.status, 200, r.text);
    assert.equal(hits.length, 1);
    assert.equal(hits[0].method, "POST");
    assert.equal(hits[0].body, body);
    const seen = JSON.stringify(hits[0].rawHeaders);
    for (const [name, value] of rows) assert.ok(!seen.includes(value), `${name} reached the origin`);
  });
});

describe("Transfer-Encoding and framing games (raw socket)", () => {
  /**
   * Send raw bytes to Airlock; collect what comes back until the server
   * closes, or nothing has arrived for 700 ms, or 4 s passed.
   */
  function rawSocket(bytes) {
    return new Promise((resolve) => {
      const sock = net.connect({ host: h.url.hostname, port: Number(h.url.port) });
      const chunks = [];
      let idle;
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        clearTimeout(idle);
        clearTimeout(cap);
        sock.destroy();
        resolve(Buffer.concat(chunks).toString("latin1"));
      };
      const cap = setTimeout(done, 4000);
      sock.on("data", (d) => {
        chunks.push(d);
        clearTimeout(idle);
        idle = setTimeout(done, 700);
      });
      sock.on("close", done);
      sock.on("error", () => {});
      sock.write(bytes);
    });
  }

  // A DELETE the writer's session may not make (DELETE /items/* needs admin),
  // smuggled inside a POST body with ambiguous framing.
  const smuggled = (token) =>
    `DELETE /t/echo/items/smuggled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
  const head = (token, extra) =>
    `POST /t/echo/items/te HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: text/plain\r\n${extra}`;

  const cases = [
    ["CL and TE: chunked", (t) => `${head(t, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")}0\r\n\r\n${smuggled(t)}`],
    ["TE: chunked, then CL", (t) => `${head(t, "Transfer-Encoding: chunked\r\nContent-Length: 200\r\n\r\n")}0\r\n\r\n${smuggled(t)}`],
    ["TE: xchunked + CL", (t) => `${head(t, `Transfer-Encoding: xchunked\r\nContent-Length: ${5 + smuggled(t).length}\r\n\r\n`)}0\r\n\r\n${smuggled(t)}`],
    ["TE: ' chunked' + CL", (t) => `${head(t, "Transfer-Encoding:  chunked\r\nContent-Length: 5\r\n\r\n")}0\r\n\r\n${smuggled(t)}`],
    ["TE: chunked, identity", (t) => `${head(t, "Transfer-Encoding: chunked, identity\r\n\r\n")}0\r\n\r\n${smuggled(t)}`],
    ["two TE lines", (t) => `${head(t, "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n")}0\r\n\r\n${smuggled(t)}`],
    ["two different CLs", (t) => `${head(t, "Content-Length: 5\r\nContent-Length: 90\r\n\r\n")}hello${smuggled(t)}`],
    ["chunk extension and a body that looks like a request", (t) => {
      const inner = smuggled(t);
      return `${head(t, "Transfer-Encoding: chunked\r\n\r\n")}${inner.length.toString(16)};ext=1\r\n${inner}\r\n0\r\n\r\n`;
    }],
  ];
  for (const [label, build] of cases) {
    test(`${label}: no smuggled request reaches the origin`, async (t) => {
      const inner = smuggled(writer.token);
      const before = h.echo.hits.length;
      const text = await rawSocket(build(writer.token));
      await sleep(100);
      const hits = h.echo.hits.slice(before);
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      t.diagnostic(`${label}: responses ${statuses.join(",") || "(none)"}; origin saw ${JSON.stringify(hits.map((x) => `${x.method} ${x.path} body=${x.body.length}`))}`);
      assert.ok(
        hits.every((x) => x.method !== "DELETE" && !x.path.includes("smuggled")),
        "the smuggled DELETE reached the origin",
      );
      assert.ok(hits.length <= 1, `${hits.length} origin requests from one POST`);
      for (const x of hits) {
        assert.equal(x.method, "POST");
        assert.equal(x.path, "/items/te");
        if (label.startsWith("chunk extension")) {
          // Whatever the parser makes of the extension, the origin gets the whole body or nothing.
          assert.equal(x.body, inner, "the origin got a request with a truncated body");
        }
        for (const v of ["xchunked", "identity"]) {
          assert.ok(!String(x.headers["transfer-encoding"] ?? "").includes(v), `TE ${x.headers["transfer-encoding"]} reached the origin`);
        }
      }
      assert.ok(!text.includes(h.secrets.ECHO_API_TOKEN), "credential in the raw response");
    });
  }

  test("Airlock still serves normal requests afterwards", async () => {
    const r = await h.call("echo", "/after-te", { token: reader.token });
    assert.equal(r.status, 200, r.text);
  });
});

describe("request bodies that break off", () => {
  // The sandbox starts an upload and its connection drops mid-body. The
  // origin must not receive a complete request with a truncated body (a PUT
  // that silently stores half a file); the echo origin only records requests
  // whose body ended cleanly.
  for (const framing of ["chunked", "content-length"]) {
    test(`${framing}: the origin never gets the truncated upload as a complete request`, async () => {
      const path = `/t/echo/items/upload-${framing}`;
      const before = h.echo.hits.length;
      const sock = net.connect({ host: h.url.hostname, port: Number(h.url.port) });
      sock.on("error", () => {});
      await new Promise((r) => sock.once("connect", r));
      const part = "u".repeat(1000);
      sock.write(
        `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${writer.token}\r\n` +
          `Content-Type: text/plain\r\n${framing === "chunked" ? "Transfer-Encoding: chunked" : "Content-Length: 3000"}\r\n\r\n` +
          (framing === "chunked" ? `${part.length.toString(16)}\r\n${part}\r\n` : part),
      );
      await sleep(300);
      sock.destroy();
      await sleep(1500);
      const hits = h.echo.hits.slice(before).map((x) => `${x.method} ${x.path} body=${x.body.length}`);
      assert.deepEqual(hits, [], "the origin received the broken-off upload as a complete request");
    });
  }
});

describe("Authorization sent twice -> 401 invalid_session", () => {
  test("reference invalid_session body", async () => {
    const r = await expectRefused({ path: "/t/echo/hello", headers: { authorization: "Bearer garbage" } }, 401, "invalid_session", "garbage");
    invalidSessionBody = r.text;
  });

  const cases = [
    ["same valid token twice", () => [`Bearer ${reader.token}`, `Bearer ${reader.token}`]],
    ["valid then garbage", () => [`Bearer ${reader.token}`, "Bearer garbage"]],
    ["garbage then valid", () => ["Bearer garbage", `Bearer ${reader.token}`]],
    ["valid then empty", () => [`Bearer ${reader.token}`, ""]],
    ["two different valid tokens", () => [`Bearer ${writer.token}`, `Bearer ${reader.token}`]],
    ["one line, comma-joined", () => `Bearer ${reader.token}, Bearer ${reader.token}`],
  ];
  for (const [label, make] of cases) {
    test(label, async () => {
      const r = await expectRefused({ path: "/t/echo/hello", headers: { authorization: make() } }, 401, "invalid_session", label);
      assert.equal(r.text, invalidSessionBody, `${label}: body differs from other invalid_session bodies`);
    });
  }

  test("mint with the admin key twice -> 401 invalid_admin_key, nothing minted", async () => {
    const key = h.secrets.AIRLOCK_ADMIN_KEY;
    const r = await h.raw({
      method: "POST",
      path: "/v1/sessions",
      headers: { authorization: [`Bearer ${key}`, `Bearer ${key}`], "content-type": "application/json" },
      body: JSON.stringify({ agent: "a", user: "u", tools: { echo: "read" }, ttl_seconds: 60 }),
    });
    assertError(r, 401, "invalid_admin_key", "two admin keys");
    assert.equal(r.json?.token, undefined);
  });
});

describe("token spellings -> byte-identical 401 invalid_session, no origin request", () => {
  const b64urlToStd = (s) => s.replace(/-/g, "+").replace(/_/g, "/");
  const latin1 = (s) => Buffer.from(s, "utf8").toString("latin1"); // UTF-8 bytes on the wire
  const b64u = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");

  /** A token whose claims or mac contain '-' or '_', so the std-alphabet spelling differs. */
  async function tokenWithUrlChars() {
    for (let i = 0; i < 40; i++) {
      const s = await h.mint({ echo: "read" });
      if (/[-_]/.test(s.token.split(".").slice(2).join("."))) return s.token;
    }
    return null;
  }

  test("every spelling", async (t) => {
    if (invalidSessionBody === undefined) {
      const r = await h.raw({ path: "/t/echo/hello", headers: { authorization: "Bearer garbage" } });
      invalidSessionBody = r.text;
    }
    const tok = reader.token;
    const [pfx, kid, claims, mac] = tok.split(".");
    const urlTok = await tokenWithUrlChars();
    assert.ok(urlTok, "could not mint a token containing '-' or '_'");
    const [, , uc, um] = urlTok.split(".");
    const claimsObj = (() => {
      try {
        return JSON.parse(Buffer.from(claims, "base64url").toString("utf8"));
      } catch {
        return { sub: "x" };
      }
    })();

    // Control: the genuine token works.
    const ok = await h.raw({ path: "/t/echo/hello", headers: auth(tok) });
    assert.equal(ok.status, 200, ok.text);

    const variants = [
      ["claims with '=' padding", `${pfx}.${kid}.${claims}=.${mac}`],
      ["claims with '==' padding", `${pfx}.${kid}.${claims}==.${mac}`],
      ["mac with '=' padding", `${pfx}.${kid}.${claims}.${mac}=`],
      ["mac with '==' padding", `${pfx}.${kid}.${claims}.${mac}==`],
      ["std-base64 alphabet (+ /)", `${pfx}.${kid}.${b64urlToStd(uc)}.${b64urlToStd(um)}`],
      ["std-base64 alphabet in the mac only", `${pfx}.${kid}.${uc}.${b64urlToStd(um)}`],
      ["upper-case version AL1", `AL1.${kid}.${claims}.${mac}`],
      ["mixed-case version Al1", `Al1.${kid}.${claims}.${mac}`],
      ["upper-case kid", `${pfx}.${kid.toUpperCase()}.${claims}.${mac}`],
      ["empty kid", `${pfx}..${claims}.${mac}`],
      ["33-character kid", `${pfx}.${"k".repeat(33)}.${claims}.${mac}`],
      ["kid with a bad character", `${pfx}.k!.${claims}.${mac}`],
      ["JWT, alg none", `${b64u({ alg: "none", typ: "JWT" })}.${b64u(claimsObj)}.`],
      ["JWT, alg none, genuine claims part", `${b64u({ alg: "none" })}.${claims}.`],
      ["JWT, HS256, genuine claims and mac", `${b64u({ alg: "HS256", typ: "JWT" })}.${claims}.${mac}`],
      ["JWT-looking eyJ garbage", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"],
      ["space inside", `${pfx}.${kid}. ${claims}.${mac}`],
      ["tab inside", `${pfx}.${kid}.${claims}\t.${mac}`],
      ["non-ASCII appended (UTF-8 bytes)", latin1(`${tok}é`)],
      ["non-ASCII inside (UTF-8 bytes)", latin1(`${pfx}.${kid}.${claims.slice(0, 4)}ü${claims.slice(5)}.${mac}`)],
      ["5000-byte token", `${pfx}.${kid}.${"A".repeat(5000)}.${mac}`],
      ["genuine token + 5000 bytes", `${tok}${"A".repeat(5000)}`],
      ["genuine token + '.'", `${tok}.`],
      ["genuine token with a leading '.'", `.${tok}`],
      ["genuine token with an extra empty part", `${pfx}.${kid}..${claims}.${mac}`],
      ["only dots", "..."],
    ];
    // Not sent: NUL, CR or LF inside the token (node:http refuses them before
    // anything is written).
    const basic = (userPass) => `Basic ${Buffer.from(userPass, "utf8").toString("base64")}`;
    const flipped = `${pfx}.${kid}.${claims}.${mac.slice(0, -2)}${mac.at(-2) === "A" ? "B" : "A"}${mac.at(-1)}`;
    // Whole Authorization values; the token is also accepted as a Basic password (README).
    const headerVariants = [
      ["Basic: tampered token as the password", basic(`session:${flipped}`)],
      ["Basic: token + 'x' as the password", basic(`session:${tok}x`)],
      ["Basic: token without a colon", basic(tok)],
      ["Basic: token as the password, bad base64", `Basic ${basic(`session:${tok}`).slice(6, -2)}!!`],
      ["Basic: raw token, not base64", `Basic ${tok}`],
      ["Basic: admin key as the password", basic(`admin:${h.secrets.AIRLOCK_ADMIN_KEY}`)],
      ["Bearer and Basic in one value", `Bearer ${tok}, ${basic(`session:${tok}`)}`],
      ["scheme only", "Bearer"],
      ["token without a scheme", tok],
    ];
    const okBasic = await h.raw({ path: "/t/echo/hello", headers: { authorization: basic(`session:${tok}`) } });
    assert.equal(okBasic.status, 200, `control: the token as a Basic password: ${okBasic.text}`);

    const mismatches = [];
    const rows = [...variants.map(([l, t]) => [l, `Bearer ${t}`]), ...headerVariants];
    for (const [label, value] of rows) {
      assert.notEqual(value, `Bearer ${tok}`, `${label}: variant equals the genuine token`);
      const { r, hits, privHits } = await rawHits({ path: "/t/echo/hello", headers: { authorization: value } });
      if (!r.headers["x-airlock-request-id"] && r.status === 400) {
        t.diagnostic(`${label}: refused by the runtime before Airlock (${r.status})`);
        continue;
      }
      if (hits.length || privHits) mismatches.push(`${label}: ORIGIN HIT ${r.status}`);
      else if (r.status !== 401 || r.text !== invalidSessionBody) mismatches.push(`${label}: ${r.status} ${r.text.slice(0, 120)}`);
    }
    assert.deepEqual(mismatches, [], "spellings not answered with the identical invalid_session body");
  });
});
