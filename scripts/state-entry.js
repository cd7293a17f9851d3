// The entry module of the airlock-state worker script (copied to
// build/state/index.js by scripts/build; worker-build's own output becomes
// build/state/glue.mjs).
//
// The Airlock worker calls the session-state Durable Object over JS RPC
// (`stub.run(command)`), which the runtime offers only on classes deriving
// from DurableObject. worker-build exports the Rust class AirlockState as a
// plain class; this module puts DurableObject in its prototype chain, as
// worker-build itself does for its other output formats. `run` answers a
// command that is one synchronous step (most of them: an admission, a read)
// with `runNow`, without a promise and a future to drive in Wasm, and leaves
// the others (a held request's wait, alarms) to the asynchronous `run`.
// `fetch` and `alarm` are the Rust methods as before.
import { DurableObject } from "cloudflare:workers";
import worker, { AirlockState } from "./glue.mjs";

Object.setPrototypeOf(AirlockState.prototype, DurableObject.prototype);
Object.setPrototypeOf(AirlockState, DurableObject);

AirlockState.prototype.runLater = AirlockState.prototype.run;
AirlockState.prototype.run = function run(command) {
  return this.runNow(command) ?? this.runLater(command);
};

// The rows of a one-column query as strings, read in one call from Wasm
// (edge/object.rs, SqlStore::values): no row object per row to decode.
globalThis.airlockSqlValues = (sql, query, bindings) =>
  sql.exec(query, ...bindings).raw().toArray().map((row) => String(row[0]));

export { AirlockState };
export default worker;
