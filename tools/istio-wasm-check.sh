#!/usr/bin/env bash
# Runs Istio's own Wasm module cache (istio.io/istio pkg/wasm, what istio-agent runs for a
# WasmPlugin) against out/images/filter.oci.tar through an in-memory registry on loopback.
# The Istio module is the one tools/fetch-crds.sh pins (checked); the binary is cached by that
# version and the program's hash (cold: a few hundred MB of modules, about two minutes to build).
# Checks: the archive pushed unchanged keeps its digest; Istio's LocalFileCache.Get with the url
# and sha256 that out/deploy/istio sets returns plugin.wasm byte for byte; a wrong sha256 is
# refused (what a buildx index digest would cause).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
archive=out/images/filter.oci.tar
[ -f "$archive" ] || { echo "istio-wasm-check: no $archive (make images)" >&2; exit 1; }
istio=$(awk '$1 == "istio.io/istio" {print $2}' tools/istio-wasm-check/go.mod)
pinned=$(sed -n 's/^ISTIO_MODULE_VERSION=//p' tools/fetch-crds.sh)
[ "$istio" = "$pinned" ] || { echo "istio-wasm-check: go.mod has istio.io/istio $istio, tools/fetch-crds.sh pins $pinned" >&2; exit 1; }
bin=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/istio-wasm-check-$istio-$(sha256sum tools/istio-wasm-check/main.go | cut -c1-12)/istio-wasm-check
if [ ! -x "$bin" ]; then
  echo "istio-wasm-check: building against istio.io/istio $istio (first run only)" >&2
  mkdir -p "$(dirname "$bin")"
  (cd tools/istio-wasm-check && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" . && mv "$bin.tmp" "$bin")
fi
# out/webhook_filter.wasm: the module the image must carry, byte for byte.
"$bin" "$archive" out/webhook_filter.wasm
