#!/usr/bin/env bash
# Installs what the fuzz targets need, idempotently, and prints the cargo-fuzz binary's path:
#   - the nightly toolchain (rustup; libFuzzer's sanitizer flags need it; only fuzz/ uses it,
#     the project itself builds on stable);
#   - cargo-fuzz, built once with `cargo install --locked` into a cache outside the repository
#     keyed by version: ${FUZZ_CACHE:-~/.cache/bmh-webhook}/cargo-fuzz-<version>/bin/cargo-fuzz.
# A second run costs nothing (no download, no build).
set -euo pipefail
version=0.13.2
cache=${FUZZ_CACHE:-$HOME/.cache/bmh-webhook}/cargo-fuzz-$version
log() { echo "install-cargo-fuzz: $*" >&2; }

if ! rustup toolchain list | grep -q '^nightly-'; then
  log "rustup toolchain install nightly (minimal profile)"
  rustup toolchain install nightly --profile minimal >&2
fi
if [ ! -x "$cache/bin/cargo-fuzz" ]; then
  log "cargo install cargo-fuzz $version into $cache (once per machine, ~2 min)"
  cargo install --locked --root "$cache" --version "$version" cargo-fuzz >&2
fi
echo "$cache/bin/cargo-fuzz"
