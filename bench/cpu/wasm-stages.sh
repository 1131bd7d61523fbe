#!/usr/bin/env bash
# The core's per-request work stage by stage (header checks, HMAC, body rules, whole decision),
# compiled to wasm32-wasip1 with the filter's release profile and timed inside V8 (Node's WASI,
# `--no-liftoff` like Envoy's V8: optimising compiler only), then natively for comparison.
# Source: filter/core/examples/wasm_stages.rs. Needs node (>= 20).
# Usage: bench/cpu/wasm-stages.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# The filter's flags (filter/build.sh); SIMD=0 builds without SIMD to compare.
if [ "${SIMD:-1}" = 1 ]; then
  export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128"
fi
cargo build --quiet --locked -p webhook-core --no-default-features --example wasm_stages \
  --profile wasm-release --target wasm32-wasip1
wasm="${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip1/wasm-release/examples/wasm_stages.wasm"
echo "== wasm in V8 (node $(node --version), --no-liftoff) =="
node --no-liftoff --no-warnings - "$wasm" <<'JS'
const fs = require('node:fs');
const { WASI } = require('node:wasi');
const wasi = new WASI({ version: 'preview1', args: ['wasm_stages'], env: {} });
(async () => {
  const mod = await WebAssembly.compile(fs.readFileSync(process.argv[2]));
  const inst = await WebAssembly.instantiate(mod, wasi.getImportObject());
  wasi.start(inst);
})().catch((e) => { console.error(e); process.exit(1); });
JS
echo "== native =="
cargo run --quiet --locked --release -p webhook-core --no-default-features --example wasm_stages
