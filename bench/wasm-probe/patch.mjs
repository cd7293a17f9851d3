// Bench only (bench/soak.mjs --probe): never part of a built or deployed
// script. Imported before the worker's own module, it wraps
// WebAssembly.Instance so that the linear memory of every Wasm instance the
// isolate creates is kept in globalThis.__airlockBenchWasm; the soak reads
// its size through the inspector (Runtime.evaluate). Linear memory only
// grows, so its size is the high-water mark of the Rust heap.
const memories = (globalThis.__airlockBenchWasm ??= []);
const Original = WebAssembly.Instance;
function Instance(module, imports) {
  const instance = new Original(module, imports);
  for (const value of Object.values(instance.exports)) {
    if (value instanceof WebAssembly.Memory) memories.push(value);
  }
  return instance;
}
Instance.prototype = Original.prototype;
WebAssembly.Instance = Instance;
