#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the tests and the local run use, from the Go module
# proxy with the machine's Go, into a cache outside the repository keyed by version:
#   ${TESTBIN_CACHE:-$HOME/.cache/bmh-webhook/testbin}/k8s-<K8S_VERSION>-etcd-<ETCD_VERSION>/{kube-apiserver,etcd}
# A second run finds the binaries and returns at once. Prints the directory on stdout.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
# with ./staging paths, so `go install` refuses it; tools/k8s-testbin/go.mod replaces each staging
# module with its published v0.<minor>.<patch>. etcd's server module has relative replaces too, and
# requiring it from a wrapper module (tools/etcd-testbin) sidesteps them.
set -euo pipefail

K8S_VERSION=1.36.3
ETCD_VERSION=3.6.16

here=$(cd "$(dirname "$0")" && pwd)
cache=${TESTBIN_CACHE:-$HOME/.cache/bmh-webhook/testbin}
out="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-testbin: Go is needed to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

if [ ! -x "$out/etcd" ]; then
  echo "build-testbin: building etcd v$ETCD_VERSION (first run only)" >&2
  (cd "$here/etcd-testbin" &&
    go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 &&
    mv "$out/etcd.tmp" "$out/etcd")
fi

if [ ! -x "$out/kube-apiserver" ]; then
  echo "build-testbin: building kube-apiserver v$K8S_VERSION (first run only, several minutes)" >&2
  minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  (cd "$here/k8s-testbin" &&
    go build -trimpath -tags selinux,notest \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver &&
    mv "$out/kube-apiserver.tmp" "$out/kube-apiserver")
fi
echo "$out"
