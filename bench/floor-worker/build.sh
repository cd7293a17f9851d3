#!/usr/bin/env bash
# Builds the Rust floor worker into bench/floor-worker/build/ (index.js +
# *.wasm) with the pinned toolchain, like scripts/build does for Airlock.
#
#   bash bench/floor-worker/build.sh            build (incremental)
#   bash bench/floor-worker/build.sh --if-stale skip when build/ is newer than
#                                               src/, Cargo.toml and Cargo.lock
#
# Resolves offline by default (CARGO_NET_OFFLINE=true; set it to false to let
# cargo fetch): Cargo.lock pins the same versions as the root crate's, all of
# them in the local registry cache once the root crate has been built for
# wasm32. The build goes to bench/floor-worker/target and build/, never to
# the root crate's target/ or build/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

if [[ "${1:-}" == --if-stale ]]; then
  if [[ -f build/index.js ]] && compgen -G 'build/*.wasm' >/dev/null \
    && [[ -z "$(find src Cargo.toml Cargo.lock build.sh -newer build/index.js -print -quit 2>/dev/null)" ]]; then
    exit 0
  fi
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$CARGO_BIN/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}"
for bin in "$CARGO_BIN/worker-build" "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
  if [[ ! -x "$bin" ]]; then
    echo "[floor-worker] missing $bin: run bash scripts/setup" >&2
    exit 1
  fi
done

# A build/ left half-written by an interrupted build must not look fresh:
# remove the script first; worker-build writes it again at the end.
rm -f build/index.js
echo "[floor-worker] building bench/floor-worker (worker-build --release, one to two minutes from clean, seconds after a small change)" >&2
CARGO_NET_OFFLINE="${CARGO_NET_OFFLINE:-true}" exec "$CARGO_BIN/worker-build" --release
