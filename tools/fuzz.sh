#!/usr/bin/env bash
# Bounded fuzzing of the filter core (fuzz/, cargo-fuzz + libFuzzer, nightly), one target after
# the other, each for SECONDS; prints executions per target. Exits non-zero on a crash (the
# input is in fuzz/artifacts/<target>/; add it as a regression test in filter/core/tests/).
#
#   tools/fuzz.sh [SECONDS=20] [TARGET...]      CI: 20 s x 5 targets (tools/test.sh)
#   tools/fuzz.sh 3600                          the documented long run (docs/testing.md)
#
# Each target starts from its committed seeds (fuzz/seeds/<target>, from fuzz/make-seeds.py)
# and keeps what it finds in fuzz/corpus/<target> (git-ignored), so later runs go deeper.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(scheme_headers event_validate json_schema config request)

cargo_fuzz=${CARGO_FUZZ:-$("$root/tools/install-cargo-fuzz.sh")}
export RUSTUP_TOOLCHAIN=nightly
# Outside the repository, so a fresh checkout (CI) only rebuilds what changed.
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/bmh-webhook/fuzz-target}
cd "$root/fuzz"
echo "fuzz: building ${targets[*]} (nightly, address sanitizer, debug assertions)" >&2
build_start=$(date +%s)
"$cargo_fuzz" fuzz build --target-dir "$target_dir" >&2
echo "fuzz: built in $(( $(date +%s) - build_start ))s" >&2

dict() {
  case "$1" in
    scheme_headers) echo "$root/fuzz/dicts/http.dict" ;;
    request) cat dicts/http.dict dicts/json.dict >"$target_dir/request.dict"; echo "$target_dir/request.dict" ;;
    *) echo "$root/fuzz/dicts/json.dict" ;;
  esac
}

summary=()
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$target_dir/fuzz-$t.log"
  echo "fuzz: $t for ${secs}s" >&2
  if "$cargo_fuzz" fuzz run --target-dir "$target_dir" "$t" "$root/fuzz/corpus/$t" "$root/fuzz/seeds/$t" -- \
      -max_total_time="$secs" -dict="$(dict "$t")" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (fuzz/artifacts/$t/, log $log)"
    status=1
    tail -60 "$log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  summary+=("$(printf '%-16s %12s execs %8s/s  cov %6s  corpus %5s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$(ls "corpus/$t" | wc -l)" "$result")")
done
printf '\nfuzz summary (%ss per target, %s):\n' "$secs" "$(date -u +%FT%TZ)"
printf '  %s\n' "${summary[@]}"
exit $status
