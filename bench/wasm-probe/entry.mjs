// Bench only (bench/soak.mjs --probe): the entry module the soak gives
// workerd instead of a worker script's index.js, copied beside it. It loads
// the Wasm probe first (ES modules evaluate in import order), then exports
// exactly what the script exports.
import "./bench-wasm-probe.mjs";
export * from "./index.js";
export { default } from "./index.js";
