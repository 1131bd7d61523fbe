#!/usr/bin/env bash
# Builds what the Istio tier runs (tests/e2e/tests/istio.rs, docs/testbench.md "The Istio tier"):
# istiod (pilot-discovery), istio-agent (pilot-agent) and crane (the loopback OCI registry and
# its client), from the istio.io/istio module that tools/fetch-crds.sh pins, plus two files of
# that module: Istio's Envoy bootstrap template and the `istio-sidecar-injector` ConfigMap that
# `helm template` renders from its istio-discovery chart (istiod reads its `kube-gateway`
# template to create a Gateway's Deployment and Service). Helm itself is built from the same
# module graph for that one render and not kept.
#
#   ${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/istio-<module version>/
#     pilot-discovery pilot-agent crane envoy_bootstrap_tmpl.json istio-sidecar-injector.yaml
#     VERSION (the module's, e.g. 1.31) .stamp
#
# A second run finds them and returns at once. Cold: about 15 minutes on 2 cores (pilot-discovery
# dominates), a private Go build cache (~2.5 GiB) and module cache (~1 GiB) under
# ${TOOLS_CACHE}/istio-go/, module zips taken from the machine's own Go download cache first
# (GOPROXY=file://...,<its proxy>) when it has one.
#
# Prints ISTIO_TESTBIN=<dir> on stdout. When Go is missing it prints a LOUD message and
# ISTIO_TESTBIN= (the Istio tier is then skipped), except under CI=true, where it exits 1.
#
# Why a wrapper module (tools/istio-testbin): istio.io/istio is not `go install`able at a
# pseudo-version with its own requirements; the wrapper requires it with exactly its require
# block (go.sum copied, `go mod tidy` with `tool` directives added only what helm and crane
# need, no version of Istio's changed) and builds with -mod=readonly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { echo "build-istio: $*" >&2; }

# Bump when the outputs change without the module changing (flags, files, render options).
RECIPE=1

unavailable() {
  {
    echo
    echo "################################################################################"
    echo "## build-istio: istiod / istio-agent are NOT available:"
    echo "##   $1"
    echo "## The Istio tier (tests/e2e/tests/istio.rs) will be SKIPPED."
    echo "################################################################################"
    echo
  } >&2
  if [ "${CI:-}" = true ]; then
    log "CI=true: a missing Istio build fails the run"
    exit 1
  fi
  echo "ISTIO_TESTBIN="
  exit 0
}

version=$(sed -n 's/^ISTIO_MODULE_VERSION=//p' tools/fetch-crds.sh)
wrapped=$(awk '$1 == "require" && $2 == "istio.io/istio" {print $3}' tools/istio-testbin/go.mod)
[ -n "$version" ] && [ "$version" = "$wrapped" ] ||
  { log "tools/istio-testbin/go.mod requires istio.io/istio $wrapped, tools/fetch-crds.sh pins $version"; exit 1; }

cache_root=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}
out=$cache_root/istio-$version
stamp=$(cat tools/istio-testbin/go.mod tools/istio-testbin/go.sum <(echo "recipe $RECIPE") | sha256sum | cut -c1-16)
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "ISTIO_TESTBIN=$out"
  exit 0
fi
command -v go >/dev/null || unavailable "Go is not installed"

command -v jq >/dev/null || { log "jq is needed (apt-get install jq; tools/bootstrap.sh does it)"; exit 1; }

# Module zips: the machine's own download cache first (no network for what it has), then the
# proxy Go is configured with.
proxy=$(go env GOPROXY)
machine_dl=$(go env GOMODCACHE)/cache/download
export GOMODCACHE=$cache_root/istio-go/mod GOCACHE=$cache_root/istio-go/build
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
if [ -d "$machine_dl" ] && [ "$machine_dl" != "$GOMODCACHE/cache/download" ]; then
  export GOPROXY="file://$machine_dl,$proxy"
fi

log "building pilot-discovery, pilot-agent, crane, helm from istio.io/istio $version (first run only; ~15 min cold)"
start=$(date +%s)
tmp=$out.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
istio_dir=$(cd tools/istio-testbin && go mod download -json istio.io/istio | jq -r .Dir)
[ -f "$istio_dir/VERSION" ] || { log "go mod download istio.io/istio@$version gave no module directory"; exit 1; }
# Stamped like Istio's own builds (common/scripts/report_build_info.sh): proxies report
# ISTIO_VERSION from it, and istiod gates version-dependent xDS on it.
ldflags="-s -w"
for kv in "buildVersion=$(cat "$istio_dir/VERSION")-dev" "buildGitRevision=${version##*-}" \
  buildStatus=Clean "buildTag=$version" buildHub=local; do
  ldflags="$ldflags -X istio.io/istio/pkg/version.$kv"
done
(cd tools/istio-testbin &&
  nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    istio.io/istio/pilot/cmd/pilot-discovery istio.io/istio/pilot/cmd/pilot-agent \
    github.com/google/go-containerregistry/cmd/crane helm.sh/helm/v4/cmd/helm) >&2

cp "$istio_dir/VERSION" "$tmp/VERSION"
# What the istio-proxy image carries at /var/lib/istio/envoy/envoy_bootstrap_tmpl.json.
cp "$istio_dir/tools/packaging/common/envoy_bootstrap.json" "$tmp/envoy_bootstrap_tmpl.json"
# The chart's injector ConfigMap, default values (what `helm install istiod` creates).
helm_home=$(mktemp -d)
trap 'rm -rf "$helm_home"' EXIT
HELM_CACHE_HOME=$helm_home HELM_CONFIG_HOME=$helm_home HELM_DATA_HOME=$helm_home \
  "$tmp/helm" template istiod "$istio_dir/manifests/charts/istio-control/istio-discovery" \
  --namespace istio-system --show-only templates/istiod-injector-configmap.yaml \
  >"$tmp/istio-sidecar-injector.yaml"
grep -q '^  name: istio-sidecar-injector$' "$tmp/istio-sidecar-injector.yaml" ||
  { log "helm rendered no istio-sidecar-injector ConfigMap"; exit 1; }
grep -q 'kube-gateway' "$tmp/istio-sidecar-injector.yaml" ||
  { log "the rendered injector ConfigMap has no kube-gateway template"; exit 1; }
rm -f "$tmp/helm"
chmod -R u+w "$tmp"
echo "$stamp" >"$tmp/.stamp"
rm -rf "$out"
mv "$tmp" "$out"
log "done in $(($(date +%s) - start)) s: $out"
echo "ISTIO_TESTBIN=$out"
