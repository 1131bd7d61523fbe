#!/usr/bin/env bash
# `make test-unit`: the pure tests, in seconds once built, with nothing to install and no root:
# no API server, no Envoy, no network, no containers. Runs
#   - natively: the filter core (webhook-core: signature schemes, event rules, configuration,
#     request flow) and the sidecar's unit tests (planning, patches, cloud-config, metrics, ...);
#   - in wasm32-unknown-unknown under Node: the same core tests, when the rust target, Node and
#     wasm-bindgen-test-runner are already there (`make bootstrap` installs them once);
#     otherwise it says which is missing, skips them and still passes. `make test` always runs them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*" >&2; }

step "native: webhook-core, bmh-sidecar unit tests"
cargo test --locked -p webhook-core
cargo test --locked -p bmh-sidecar --lib

step "wasm32-unknown-unknown (Node): webhook-core"
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
runner=${WASM_BINDGEN_DIR:-${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/wasm-bindgen-$version/bin}/wasm-bindgen-test-runner
missing=""
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || missing="the rust target wasm32-unknown-unknown"
command -v node >/dev/null || missing="${missing:+$missing, }Node"
[ -x "$runner" ] || missing="${missing:+$missing, }wasm-bindgen-test-runner $version"
if [ -n "$missing" ]; then
  echo "test-unit: SKIPPED the wasm32 run: no $missing here (make bootstrap installs them once)" >&2
  exit 0
fi
# Without debug info: wasm-bindgen-test-runner rewrites each test module, and debug modules
# (tens of MB each) take it a minute; these take seconds (built once, kept beside the others).
CARGO_PROFILE_DEV_DEBUG=0 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner" \
  cargo test --locked -p webhook-core --target wasm32-unknown-unknown
