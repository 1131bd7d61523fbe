#!/usr/bin/env bash
# `make run`: builds what is needed and starts the whole system (tests/e2e/src/bin/devstack.rs).
# By default a local kube-apiserver with sample BareMetalHosts and a Metal3 operator: the REAL
# baremetal-operator with its fixture provisioner when tools/build-bmo.sh could build it (no
# machine is touched), else the stand-in simulation. A set KUBECONFIG is NOT enough to touch a
# cluster: only `make run CLUSTER=1` (BMH_WEBHOOK_USE_CLUSTER=1) uses your cluster (KUBECONFIG,
# namespace K8S_NAMESPACE) and its real Metal3.
# Envoy listens on PORT (5001); WEBHOOK_SECRET defaults to a development value it prints.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -n "${CLUSTER:-}" ]; then
  export BMH_WEBHOOK_USE_CLUSTER="$CLUSTER"
fi
eval "$(tools/bootstrap.sh)"
FILTER_WASM=$(filter/build.sh)
export FILTER_WASM
cargo build --locked -p bmh-sidecar -p e2e --bin bmh-sidecar --bin devstack
target=${CARGO_TARGET_DIR:-$root/target}
export SIDECAR_BIN="$target/debug/bmh-sidecar"
exec "$target/debug/devstack"
