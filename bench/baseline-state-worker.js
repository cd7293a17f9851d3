// The "do it yourself" baseline with a session-state check: the JS baseline
// (bench/baseline-worker.js) plus the least a Worker can do to make
// revocation take effect on the very next request, which Airlock must do:
// one call per request to a SQLite-backed Durable Object (native JS RPC, the
// cheapest call the runtime offers) that reads the session's row, refuses a
// revoked one and counts the request. Nothing else: no token check, no
// policy, no proof, rate limit, redaction or audit record.
//
// It is the floor for "forward + a consistent state check" on this runtime;
// see docs/performance.md.
//
// Bindings: ORIGIN, TOKEN (the credential), STATE (the class below).

import { DurableObject } from "cloudflare:workers";

export class SessionState extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS session (id INTEGER PRIMARY KEY, revoked INTEGER NOT NULL, requests INTEGER NOT NULL)",
    );
  }

  /** True when the session may go on; counts the request. */
  admit() {
    const sql = this.ctx.storage.sql;
    const row = sql.exec("SELECT revoked FROM session WHERE id = 1").toArray()[0];
    if (row?.revoked) return false;
    sql.exec(
      "INSERT INTO session (id, revoked, requests) VALUES (1, 0, 1) ON CONFLICT(id) DO UPDATE SET requests = requests + 1",
    );
    return true;
  }
}

export default {
  async fetch(request, env) {
    // One object per session; the bearer token names it.
    const stub = env.STATE.getByName(request.headers.get("authorization") ?? "");
    if (!(await stub.admit())) return new Response("session revoked\n", { status: 401 });
    const url = new URL(request.url);
    const upstream = new Request(env.ORIGIN + url.pathname + url.search, request);
    upstream.headers.set("authorization", `Bearer ${env.TOKEN}`);
    return fetch(upstream);
  },
};
