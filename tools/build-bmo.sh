#!/usr/bin/env bash
# Builds the real Metal3 baremetal-operator (BMO) for the test bench's BMO tier and the local run,
# with the machine's Go and the Go module proxy, into a cache outside the repository:
#   ${BMO_CACHE:-$HOME/.cache/bmh-webhook/bmo}/<commit>-<content hash>/baremetal-operator
# A second run finds the binary and returns at once (about a second to hash the source).
#
# Where the source comes from (no package registry serves BMO):
#   1. BMO_SRC, when set (any folder holding BMO's main.go and go.mod);
#   2. <repo root>/../shared/third_party/baremetal-operator, when that folder exists (the copy
#      provided beside this project: the ONE use of ../shared at build and test time);
#   3. otherwise a git clone of $BMO_REPO at the pinned $BMO_COMMIT into the cache (machines with
#      internet).
# The cache key is the commit (git HEAD of a checkout; the pinned commit for a folder without
# git, like the provided copy) plus a hash of every source file, since BMO_SRC may be any folder.
#
# Prints on stdout, for `eval`-style use by tools/bootstrap.sh and the test harness:
#   BMO_SRC=<absolute source dir>
#   BMO_BIN=<absolute binary path>
# When no source or no Go can be had, it prints a LOUD message on stderr and empty values (the BMO
# tier is then skipped), except under CI=true, where it exits 1 so CI cannot pass without it.
set -euo pipefail

BMO_REPO=https://github.com/metal3-io/baremetal-operator
BMO_COMMIT=02aa5059e3482f9dc3b5115c3a45cec4b000ae16

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${BMO_CACHE:-$HOME/.cache/bmh-webhook/bmo}

unavailable() {
  {
    echo
    echo "################################################################################"
    echo "## build-bmo: the real Metal3 baremetal-operator is NOT available:"
    echo "##   $1"
    echo "## Tests against the real operator (the BMO tier) will be SKIPPED and \`make run\`"
    echo "## falls back to the stand-in simulation. Set BMO_SRC to a baremetal-operator"
    echo "## source tree (commit $BMO_COMMIT) to enable them."
    echo "################################################################################"
    echo
  } >&2
  if [ "${CI:-}" = true ]; then
    echo "build-bmo: CI=true: a missing baremetal-operator fails the run" >&2
    exit 1
  fi
  echo "BMO_SRC="
  echo "BMO_BIN="
  exit 0
}

is_bmo_tree() { [ -f "$1/main.go" ] && [ -f "$1/go.mod" ] && grep -q '^module github.com/metal3-io/baremetal-operator$' "$1/go.mod"; }

# 1. The source tree.
if [ -n "${BMO_SRC:-}" ]; then
  src=$BMO_SRC
  is_bmo_tree "$src" || unavailable "BMO_SRC=$src holds no baremetal-operator source (main.go, go.mod)"
elif [ -d "$root/../shared/third_party/baremetal-operator" ]; then
  src=$root/../shared/third_party/baremetal-operator
  is_bmo_tree "$src" || unavailable "$src holds no baremetal-operator source (main.go, go.mod)"
else
  src=$cache/src-$BMO_COMMIT
  if ! is_bmo_tree "$src"; then
    command -v git >/dev/null || unavailable "no BMO_SRC, no ../shared copy, and git is not installed to clone it"
    echo "build-bmo: cloning $BMO_REPO at $BMO_COMMIT into $src" >&2
    rm -rf "$src.tmp"
    mkdir -p "$cache"
    if git clone --quiet "$BMO_REPO" "$src.tmp" >&2 &&
      git -C "$src.tmp" -c advice.detachedHead=false checkout --quiet "$BMO_COMMIT" >&2; then
      rm -rf "$src" && mv "$src.tmp" "$src"
    else
      rm -rf "$src.tmp"
      unavailable "no BMO_SRC, no ../shared copy, and cloning $BMO_REPO failed (no internet?)"
    fi
  fi
fi
src=$(cd "$src" && pwd -P)

# 2. The cache key: commit + content hash.
if top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) && [ "$(cd "$top" && pwd -P)" = "$src" ]; then
  commit=$(git -C "$src" rev-parse HEAD)
else
  commit=$BMO_COMMIT
fi
hash=$(cd "$src" && find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z |
  xargs -0 sha256sum | sha256sum | cut -c1-16)
out=$cache/${commit:0:12}-$hash
bin=$out/baremetal-operator

if [ ! -x "$bin" ]; then
  command -v go >/dev/null || unavailable "Go is not installed (needed to build it from $src)"
  mkdir -p "$out"
  exec 9>"$out/.lock"
  flock 9 2>/dev/null || true # another build of the same key finishes first
  if [ ! -x "$bin" ]; then
    echo "build-bmo: building baremetal-operator ${commit:0:12} from $src (first run only, ~5 min cold)" >&2
    start=$(date +%s)
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/metal3-io/baremetal-operator/pkg/version.Commit=$commit" \
      -o "$bin.tmp" .) >&2 || { rm -f "$bin.tmp"; echo "build-bmo: go build failed" >&2; exit 1; }
    mv "$bin.tmp" "$bin"
    echo "$commit" >"$out/commit"
    echo "$src" >"$out/source"
    echo "build-bmo: built in $(($(date +%s) - start)) s: $bin" >&2
  fi
fi
echo "BMO_SRC=$src"
echo "BMO_BIN=$bin"
