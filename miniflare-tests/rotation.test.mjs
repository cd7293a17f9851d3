// Signing-key rotation: the FIRST key in AIRLOCK_SIGNING_KEYS signs, ALL verify.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { assertError, signingKey, startAirlock } from "./helpers.mjs";

const K1 = signingKey("k1");
const K2 = signingKey("k2");

let h;

before(async () => {
  h = await startAirlock({ secrets: { AIRLOCK_SIGNING_KEYS: K1 } });
});

after(async () => {
  await h?.close();
});

const kidOf = (token) => token.split(".")[1];

async function works(token, label) {
  const before = h.echo.hits.length;
  const r = await h.call("echo", "/rotation", { token });
  assert.equal(r.status, 200, `${label}: ${r.status} ${r.text}`);
  assert.equal(h.echo.hits.length - before, 1, label);
}

async function rejected(token, label) {
  const r = await h.expectNoOriginHits(() => h.call("echo", "/rotation", { token }), label);
  assertError(r, 401, "invalid_session", label);
}

test("rotation k1 -> k2,k1 -> k2", async () => {
  // 1. Only k1.
  const old = await h.mint({ echo: "read" });
  assert.equal(kidOf(old.token), "k1");
  await works(old.token, "k1 token under [k1]");

  // 2. k2 added in front: new tokens use k2, old k1 tokens still verify.
  await h.restart({ secrets: { AIRLOCK_SIGNING_KEYS: `${K2},${K1}` } });
  await works(old.token, "k1 token under [k2,k1]");
  const fresh = await h.mint({ echo: "read" });
  assert.equal(kidOf(fresh.token), "k2", "the first key signs new tokens");
  await works(fresh.token, "k2 token under [k2,k1]");

  // 3. k1 retired: its tokens are rejected, k2 tokens still work.
  await h.restart({ secrets: { AIRLOCK_SIGNING_KEYS: K2 } });
  await rejected(old.token, "k1 token under [k2]");
  await works(fresh.token, "k2 token under [k2]");

  // 4. A k2 token does not verify under a different key that reuses the kid.
  await h.restart({ secrets: { AIRLOCK_SIGNING_KEYS: signingKey("k2") } });
  await rejected(fresh.token, "k2 token under a new key named k2");
});

test("a 33-byte key (base64 without padding) listed first signs new tokens", async () => {
  const unpadded = `k3:${Buffer.alloc(33, 7).toString("base64")}`; // 33 bytes -> no '=' padding
  await h.restart({ secrets: { AIRLOCK_SIGNING_KEYS: `${unpadded},${K2}` } });
  const s = await h.mint({ echo: "read" });
  assert.equal(kidOf(s.token), "k3");
  await works(s.token, "k3 token");
});
