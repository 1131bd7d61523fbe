#!/usr/bin/env bash
# `make images`: builds the three images as OCI archives under out/images/, without a daemon
# (buildah, vfs storage, chroot isolation, FROM scratch: no base image is pulled), prints each
# digest, and writes the deployable kustomizations that reference them by digest:
#
#   out/images/filter.oci.tar    the wasm module, one layer holding plugin.wasm (Istio WasmPlugin)
#   out/images/sidecar.oci.tar   static bmh-sidecar (musl) + CA bundle, user 65532
#   out/images/envoy.oci.tar     Envoy 1.40 + the filter + envoy.yaml (Envoy overlay)
#   out/images/images.json       name -> archive, manifest digest, reference to push to
#   out/deploy/<overlay>/kustomization.yaml   k8s/overlays/<overlay> + these digests
#
# The checked-in overlays name the images `registry.invalid/bmh-webhook/*` (a domain that never
# resolves): they cannot pull anything until this script's kustomizations replace the names with
# IMAGE_REGISTRY and the digests just built. Push the archives unchanged (docs/deploy.md) so the
# registry serves the same digests, then `kubectl apply -k out/deploy/<overlay>`.
#
# Environment:
#   IMAGE_REGISTRY  where you will push (default registry.example.org/bmh-webhook)
#   IMAGE_TAG       tag recorded in the archives (default: the sidecar's Cargo version)
#   ENVOY_BIN       the Envoy binary (default: tools/envoy-venv.sh)
# Images are built with --timestamp 0: the same inputs give the same digests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { echo "build-images: $*" >&2; }
die() { log "$*"; exit 1; }

IMAGE_REGISTRY=${IMAGE_REGISTRY:-registry.example.org/bmh-webhook}
IMAGE_REGISTRY=${IMAGE_REGISTRY%/}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' sidecar/Cargo.toml | head -n 1)
IMAGE_TAG=${IMAGE_TAG:-$version}
MUSL_TARGET=x86_64-unknown-linux-musl
# The names the checked-in overlays use (k8s/base, k8s/overlays/*): never pullable.
UNBUILT=registry.invalid/bmh-webhook

command -v buildah >/dev/null || die "buildah not found (apt-get install buildah; tools/bootstrap.sh does it)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
[ "$(id -u)" = 0 ] || die "buildah with --isolation chroot and vfs storage needs root here"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle (apt-get install ca-certificates)"
rustup target list --installed | grep -qx "$MUSL_TARGET" ||
  die "rust target $MUSL_TARGET missing (rustup target add $MUSL_TARGET; tools/bootstrap.sh does it)"

out="$root/out/images"
mkdir -p "$out"
rm -rf "$out/ctx"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"

# --- the artifacts -------------------------------------------------------------------------
log "filter: filter/build.sh"
wasm=$(filter/build.sh)
log "sidecar: cargo build --release --target $MUSL_TARGET"
cargo build --quiet --release --locked -p bmh-sidecar --target "$MUSL_TARGET" >&2
sidecar_bin="${CARGO_TARGET_DIR:-$root/target}/$MUSL_TARGET/release/bmh-sidecar"
# A static binary has no program interpreter: nothing of the build machine is needed at run time.
if readelf -l "$sidecar_bin" | grep -q 'program interpreter'; then
  die "$sidecar_bin is dynamically linked"
fi
ENVOY_BIN=${ENVOY_BIN:-$(tools/envoy-venv.sh)}
[ -x "$ENVOY_BIN" ] || die "no Envoy binary at $ENVOY_BIN"

# --- build contexts --------------------------------------------------------------------------
stage() { mkdir -p "$out/ctx/$1/rootfs"; echo "$out/ctx/$1/rootfs"; }

r=$(stage filter)
install -m 0644 "$wasm" "$r/plugin.wasm"

r=$(stage sidecar)
install -m 0755 "$sidecar_bin" "$r/bmh-sidecar"
install -D -m 0644 "$ca_bundle" "$r/etc/ssl/certs/ca-certificates.crt"

r=$(stage envoy)
install -D -m 0755 "$ENVOY_BIN" "$r/usr/local/bin/envoy"
# The program interpreter and the shared libraries Envoy links (glibc), at the paths its ELF
# headers and the loader name.
interp=$(readelf -l "$ENVOY_BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || die "$ENVOY_BIN names no program interpreter"
while read -r lib; do
  [ -n "$lib" ] || continue
  install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
done < <(echo "$interp"; ldd "$ENVOY_BIN" | awk '/=> \//{print $3}')
install -D -m 0644 "$wasm" "$r/etc/envoy/webhook_filter.wasm"
install -D -m 0644 envoy/envoy.yaml "$r/etc/envoy/config/envoy.yaml"
install -D -m 0644 "$ca_bundle" "$r/etc/ssl/certs/ca-certificates.crt"
envoy_version=$("$ENVOY_BIN" --version | sed -n 's/.*version: [^/]*\/\([0-9.]*\)\/.*/\1/p' | head -n 1)
glibc_version=$(dpkg-query -W -f '${Version}' libc6 2>/dev/null || echo unknown)

# Every file owned by root and world-readable: the image's user (65532) reads, never writes.
find "$out/ctx" -exec touch -h -d @0 {} +

# --- buildah, in a throwaway store ----------------------------------------------------------
store=$(mktemp -d "${TMPDIR:-/tmp}/bmh-buildah.XXXXXX")
cleanup() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$store"; }
trap cleanup EXIT
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

declare -A digests
build() { # $1 = image name, $2 = Dockerfile, rest = extra labels
  local name=$1 file=$2; shift 2
  local labels=(--label "org.opencontainers.image.title=bmh-webhook-$name"
    --label "org.opencontainers.image.version=$IMAGE_TAG"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.licenses=MIT")
  for l in "$@"; do labels+=(--label "$l"); done
  log "$name: buildah build -f $file"
  bh build --quiet --isolation chroot --timestamp 0 --identity-label=false \
    --platform linux/amd64 "${labels[@]}" \
    -f "$root/$file" -t "localhost/bmh-webhook-$name:build" "$out/ctx/$name" >/dev/null
  local archive="$out/$name.oci.tar"
  rm -f "$archive"
  # OCI manifest and media types, gzip layers: what Kubernetes runtimes and Istio's fetcher read.
  bh push --quiet --format oci --compression-format gzip "localhost/bmh-webhook-$name:build" \
    "oci-archive:$archive:$IMAGE_REGISTRY/$name:$IMAGE_TAG" >/dev/null
  local digest
  digest=$(tar -xOf "$archive" index.json | jq -r '.manifests[0].digest')
  [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "$name: no manifest digest in $archive"
  digests[$name]=$digest
}
build filter filter/Dockerfile "module.wasm.image/variant=compat"
build sidecar sidecar/Dockerfile
build envoy envoy/Dockerfile "envoy.version=$envoy_version" "glibc.version=$glibc_version"
rm -rf "$out/ctx"

ref() { echo "$IMAGE_REGISTRY/$1@${digests[$1]}"; }
jq -n --arg reg "$IMAGE_REGISTRY" --arg tag "$IMAGE_TAG" --arg rev "$revision" \
  --arg f "${digests[filter]}" --arg s "${digests[sidecar]}" --arg e "${digests[envoy]}" '
  def img($n; $d): {archive: "out/images/\($n).oci.tar", digest: $d,
                    tag: "\($reg)/\($n):\($tag)", reference: "\($reg)/\($n)@\($d)"};
  {registry: $reg, revision: $rev,
   images: {filter: img("filter"; $f), sidecar: img("sidecar"; $s), envoy: img("envoy"; $e)}}' \
  >"$out/images.json"

# --- deployable kustomizations ----------------------------------------------------------------
gen() { # $1 = overlay name
  local dir="$root/out/deploy/$1"
  mkdir -p "$dir"
  {
    echo "# Generated by make images (tools/build-images.sh) at $revision: k8s/overlays/$1 with"
    echo "# the images of out/images/ by digest. Push them unchanged first (docs/deploy.md)."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - ../../../k8s/overlays/$1"
    echo "images:"
    echo "  - name: $UNBUILT/sidecar"
    echo "    newName: $IMAGE_REGISTRY/sidecar"
    echo "    digest: ${digests[sidecar]}"
    echo "  - name: $UNBUILT/envoy"
    echo "    newName: $IMAGE_REGISTRY/envoy"
    echo "    digest: ${digests[envoy]}"
    if [[ $1 == istio* ]]; then
      # Istio checks the module it pulls against sha256: the image manifest's digest.
      echo "patches:"
      echo "  - target: {group: extensions.istio.io, kind: WasmPlugin}"
      echo "    patch: |-"
      echo "      - op: replace"
      echo "        path: /spec/url"
      echo "        value: oci://$(ref filter)"
      echo "      - op: add"
      echo "        path: /spec/sha256"
      echo "        value: \"${digests[filter]#sha256:}\""
    fi
  } >"$dir/kustomization.yaml"
}
for overlay in envoy istio istio-gateway; do gen "$overlay"; done

printf '%-8s %-28s %s\n' image archive digest
for n in filter sidecar envoy; do
  printf '%-8s %-28s %s\n' "$n" "out/images/$n.oci.tar" "${digests[$n]}"
done
echo "deployable: out/deploy/{envoy,istio,istio-gateway} (registry $IMAGE_REGISTRY)"
