// The entry module of the airlock-state worker script (copied to
// build/state/index.js by scripts/build; worker-build's own output becomes
// build/state/glue.mjs).
//
// The Airlock worker calls the session-state Durable Object over JS RPC
// (`stub.run(command)`), which the runtime offers only on classes deriving
// from DurableObject. worker-build exports the Rust class AirlockState as a
// plain class; this module puts DurableObject in its prototype chain, as
// worker-build itself does for its other output formats. Nothing else
// changes: `fetch` and `alarm` are the Rust methods as before.
import { DurableObject } from "cloudflare:workers";
import worker, { AirlockState } from "./glue.mjs";

Object.setPrototypeOf(AirlockState.prototype, DurableObject.prototype);
Object.setPrototypeOf(AirlockState, DurableObject);

export { AirlockState };
export default worker;
