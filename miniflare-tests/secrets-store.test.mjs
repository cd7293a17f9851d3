// The Airlock worker's own secrets from Cloudflare Secrets Store: the
// signing keys, the admin key and a tool's static credential are bindings
// of a store instead of worker secrets. Each is read at each request, so a
// rotation in the store reaches the next request without a redeploy; a
// secret missing from the store fails closed (500 misconfigured, nothing
// forwarded), and a credential read from the store is scrubbed like any
// other.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { REDACTED, assertError, randomSecret, signingKey, startAirlock } from "./helpers.mjs";

const STORE = "airlock-store";
let h;
const admin = {};

before(async () => {
  h = await startAirlock({
    // Not worker secrets: only the store has them.
    secrets: { AIRLOCK_ADMIN_KEY: undefined, AIRLOCK_SIGNING_KEYS: undefined, ECHO_API_TOKEN: undefined },
    secretsStore: {
      AIRLOCK_ADMIN_KEY: { store_id: STORE, secret_name: "admin-key" },
      AIRLOCK_SIGNING_KEYS: { store_id: STORE, secret_name: "signing-keys" },
      ECHO_API_TOKEN: { store_id: STORE, secret_name: "echo-token" },
    },
  });
  for (const name of ["AIRLOCK_ADMIN_KEY", "AIRLOCK_SIGNING_KEYS", "ECHO_API_TOKEN"]) {
    admin[name] = (await h.mf.getSecretsStoreSecretAPI(name, "airlock"))();
  }
});

after(async () => {
  await h?.close();
});

/** Sets `name` in the store (creating it the first time). */
const ids = {};
async function put(name, value) {
  if (ids[name]) await admin[name].update(value, ids[name]);
  else ids[name] = await admin[name].create(value);
}

function mint(adminKey, tools = { echo: "read" }) {
  return h.mintRaw({ agent: "agent-store", user: "user-store", tools, ttl_seconds: 600 }, adminKey);
}

describe("Secrets Store bindings of the Airlock worker", () => {
  test("nothing in the store yet: health and mint answer 500 misconfigured, nothing minted or forwarded", async () => {
    const hits = h.echo.hits.length;
    assertError(await h.fetch("/v1/health"), 500, "misconfigured", "health without signing keys");
    assertError(await mint("any-key"), 500, "misconfigured", "mint without an admin key");
    assert.equal(h.echo.hits.length, hits);
  });

  let adminKey;
  let session;
  let token1;
  test("signing keys, admin key and a static credential from the store: mint, call, the origin gets the store's value", async () => {
    adminKey = randomSecret("storeadmin");
    token1 = randomSecret("storetok");
    await put("AIRLOCK_SIGNING_KEYS", signingKey("k1"));
    await put("AIRLOCK_ADMIN_KEY", adminKey);
    assertError(await h.call("echo", "/before", { token: "x" }), 401, "invalid_session", "a bad token");
    // The tool's credential is not in the store yet: misconfigured, not forwarded.
    const m = await mint(adminKey);
    assert.equal(m.status, 201, m.text);
    session = m.json;
    const hits = h.echo.hits.length;
    assertError(await h.call("echo", "/unset", { token: session.token }), 500, "misconfigured", "credential not set");
    assert.equal(h.echo.hits.length, hits, "forwarded without a credential");

    await put("ECHO_API_TOKEN", token1);
    const r = await h.call("echo", "/from-store", { token: session.token });
    assert.equal(r.status, 200, r.text);
    const hit = h.echo.hits.at(-1);
    assert.equal(hit.path, "/from-store");
    assert.equal(hit.headers.authorization, `Bearer ${token1}`);
  });

  test("a credential from the store is scrubbed from what the origin echoes", async () => {
    const r = await h.call("echo", "/reflect-encodings", { token: session.token });
    assert.equal(r.status, 200, r.text);
    assert.ok(!r.text.includes(token1), "the store's credential reached the sandbox");
    assert.ok(r.text.includes(REDACTED));
    for (const [name, value] of Object.entries(r.headers)) {
      assert.ok(!String(value).includes(token1), `header ${name} carries the credential`);
    }
  });

  test("rotated in the store: the next request sends the new credential, and the new one is scrubbed", async () => {
    const token2 = randomSecret("storetok2");
    await put("ECHO_API_TOKEN", token2);
    const r = await h.call("echo", "/rotated", { token: session.token });
    assert.equal(r.status, 200, r.text);
    assert.equal(h.echo.hits.at(-1).headers.authorization, `Bearer ${token2}`);
    const echoed = await h.call("echo", "/reflect-encodings", { token: session.token });
    assert.ok(!echoed.text.includes(token2) && echoed.text.includes(REDACTED));
  });

  test("the admin key rotated in the store: the old key is refused at once, the new one mints", async () => {
    const next = randomSecret("storeadmin2");
    await put("AIRLOCK_ADMIN_KEY", next);
    assertError(await mint(adminKey), 401, "invalid_admin_key", "the old admin key");
    const m = await mint(next);
    assert.equal(m.status, 201, m.text);
    adminKey = next;
  });

  test("the signing keys rotated in the store: a token of a retired key is refused, a new session works", async () => {
    const hits = h.echo.hits.length;
    await put("AIRLOCK_SIGNING_KEYS", signingKey("k2"));
    assertError(await h.call("echo", "/old-key", { token: session.token }), 401, "invalid_session", "a token of the retired key");
    assert.equal(h.echo.hits.length, hits, "a retired key's token reached the origin");
    const m = await mint(adminKey);
    assert.equal(m.status, 201, m.text);
    const r = await h.call("echo", "/new-key", { token: m.json.token });
    assert.equal(r.status, 200, r.text);
  });
});
