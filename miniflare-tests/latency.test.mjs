// A rough latency figure (printed, not asserted): N sequential GETs through
// Airlock vs the same GET straight to the echo origin, from the same client.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { percentile, startAirlock } from "./helpers.mjs";

const N = Number(process.env.AIRLOCK_LATENCY_N || 200);

let h;

before(async () => {
  h = await startAirlock();
});

after(async () => {
  await h?.close();
});

async function timeGets(url, headers) {
  const times = [];
  for (let i = 0; i < N + 20; i++) {
    const t0 = process.hrtime.bigint();
    const resp = await fetch(url, { headers });
    await resp.arrayBuffer();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(resp.status, 200);
    if (i >= 20) times.push(ms); // first 20 are warm-up
  }
  return times.sort((a, b) => a - b);
}

test(`latency: p50 of ${N} sequential GETs, brokered vs direct`, async () => {
  const { token } = await h.mint({ echo: "read" });
  const direct = await timeGets(`${h.echo.url}/latency?x=1`, {});
  const brokered = await timeGets(new URL("/t/echo/latency?x=1", h.url), {
    authorization: `Bearer ${token}`,
  });
  const fmt = (t) =>
    `p50 ${percentile(t, 50).toFixed(2)} ms, p90 ${percentile(t, 90).toFixed(2)} ms, p99 ${percentile(t, 99).toFixed(2)} ms`;
  console.log(`[latency] direct to echo origin: ${fmt(direct)}`);
  console.log(`[latency] through Airlock:       ${fmt(brokered)}`);
  console.log(
    `[latency] added by Airlock (p50): ${(percentile(brokered, 50) - percentile(direct, 50)).toFixed(2)} ms over ${N} requests`,
  );
});
