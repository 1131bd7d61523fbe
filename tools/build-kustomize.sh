#!/usr/bin/env bash
# Builds kustomize (pinned) from the Go module proxy into a cache outside the repository and prints
# the binary's path. The manifest tests render k8s/overlays/* with it and dry-run the result
# against the real kube-apiserver.
set -euo pipefail
KUSTOMIZE_VERSION=5.7.1
dest=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/kustomize-$KUSTOMIZE_VERSION
if [ ! -x "$dest/kustomize" ]; then
  echo "build-kustomize: building kustomize v$KUSTOMIZE_VERSION (first run only)" >&2
  mkdir -p "$dest"
  GOBIN="$dest" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION" >&2
fi
echo "$dest/kustomize"
