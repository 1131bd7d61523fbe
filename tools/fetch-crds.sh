#!/usr/bin/env bash
# Fetches the real CRDs the deployment manifests are dry-run against, from pinned Go modules on
# the Go module proxy (`go mod download` checks each against the checksum database and the
# h1: sums pinned here), and keeps only the CRD files in a cache outside the repository keyed by
# version. Prints the cache directory on stdout; a second run costs nothing.
#
#   istio/crd-all.gen.yaml        istio.io/istio manifests/charts/base/files/crd-all.gen.yaml
#                                 (WasmPlugin, EnvoyFilter, AuthorizationPolicy, ... with their CEL rules)
#   gateway-api/*.yaml            sigs.k8s.io/gateway-api config/crd/standard (Gateway, HTTPRoute)
#   prometheus-operator/*.yaml    PodMonitor and PrometheusRule (example/prometheus-operator-crd)
#
# istio.io/istio tags its releases without the Go `v` prefix, so the proxy serves it only as
# pseudo-versions: the pin is a commit of the 1.31 development line (VERSION file: 1.31),
# whose go.mod requires the Gateway API version pinned below.
set -euo pipefail
ISTIO_MODULE_VERSION=v0.0.0-20260827124520-eed52ebb66ad
ISTIO_MODULE_SUM=h1:ui9TJjRMAV/hb5ehQaZDq7IUGxuQP6dra9lapT/VjHI=
GATEWAY_API_VERSION=v1.6.0
GATEWAY_API_SUM=h1:735YBRj5NXFrOGX0GoSjwzUIzbz8kiEOfADsqHFmHgE=
PROMETHEUS_OPERATOR_VERSION=v0.85.0
PROMETHEUS_OPERATOR_SUM=h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=

cache=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/crds/istio-$ISTIO_MODULE_VERSION-gwapi-$GATEWAY_API_VERSION-promop-$PROMETHEUS_OPERATOR_VERSION
if [ -f "$cache/.complete" ]; then
  echo "$cache"
  exit 0
fi
command -v go >/dev/null || { echo "fetch-crds: Go is needed (the CRDs come from the Go module proxy)" >&2; exit 1; }
command -v jq >/dev/null || { echo "fetch-crds: jq is needed" >&2; exit 1; }

# Downloads one module (zip only, no dependencies), checks its sum, prints its directory.
module_dir() { # $1 = module@version, $2 = expected h1 sum
  local json sum dir
  json=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1")
  sum=$(jq -r .Sum <<<"$json")
  dir=$(jq -r .Dir <<<"$json")
  [ "$sum" = "$2" ] || { echo "fetch-crds: $1 has sum $sum, expected $2" >&2; exit 1; }
  echo "$dir"
}

echo "fetch-crds: istio.io/istio@$ISTIO_MODULE_VERSION, sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION, prometheus-operator@$PROMETHEUS_OPERATOR_VERSION (first run only)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tmp="$cache.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/istio" "$tmp/gateway-api" "$tmp/prometheus-operator"

istio=$(module_dir "istio.io/istio@$ISTIO_MODULE_VERSION" "$ISTIO_MODULE_SUM")
cp "$istio/manifests/charts/base/files/crd-all.gen.yaml" "$tmp/istio/"
cp "$istio/VERSION" "$tmp/istio/VERSION"

gw=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" "$GATEWAY_API_SUM")
for kind in gatewayclasses gateways httproutes referencegrants; do
  cp "$gw/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$tmp/gateway-api/"
done

po=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" "$PROMETHEUS_OPERATOR_SUM")
for kind in podmonitors prometheusrules servicemonitors; do
  cp "$po/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$tmp/prometheus-operator/"
done

chmod -R u+w "$tmp"
touch "$tmp/.complete"
rm -rf "$cache"
mv "$tmp" "$cache"
echo "$cache"
