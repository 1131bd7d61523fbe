#!/usr/bin/env bash
# Filter benchmark, one run on loopback (numbers go to BENCHMARKS.md, "## Filter"):
#   1. Envoy without the filter vs Envoy + filter (+ buffer filter, the shipped arrangement),
#      + filter without the buffer filter (to price the zero-bytes arrangement), and
#      + filter + buffer with the webhook on another path ("passthru": the filter only strips
#      headers and passes, which prices proxy-wasm itself apart from our checks),
#      all in front of the same upstream: a second Envoy answering 200 by direct_response.
#      wrk, 1 thread, 2 connections, DURATION seconds per run, ROUNDS rounds interleaved;
#      body: the ~2 KB signed EVENT_START fixture with a fresh timestamp.
#   2. Zero unauthenticated bytes: wrk with a wrong signature against Envoy + filter, and
#      the upstream's received-bytes counter must not move.
#   3. Native criterion benchmark of headers+verify+validate (webhook-core), JSON Schema and
#      other schemes included.
#   4. Size of the optimised .wasm.
# Usage: bench/filter/run.sh [DURATION=10] [ROUNDS=3]. Needs wrk, wasm-opt, openssl.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
DURATION=${1:-10}
ROUNDS=${2:-3}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

envoy=${ENVOY_BIN:-$(tools/envoy-venv.sh 2>/dev/null)}
wasm=${FILTER_WASM:-$(filter/build.sh)}
cargo build -q --locked -p envoy-harness --bin render-envoy-config
render="${CARGO_TARGET_DIR:-$root/target}/debug/render-envoy-config"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# At least 32 bytes: the filter refuses shorter secrets (min_secret_bytes).
secret=bench-secret-0123456789abcdef0123456789
# The fixture sent now, its reservations running (a START whose every eventEnd has passed
# is refused with 422).
tools/fresh-event.py filter/core/tests/fixtures/event-start-rsa.json > "$work/body.json"
sig=$(openssl dgst -sha256 -hmac "$secret" -r < "$work/body.json" | cut -d' ' -f1)
body_len=$(stat -c %s "$work/body.json")
lua() { # $1 = signature header value
  python3 - "$work/body.json" "$1" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
print('wrk.method = "POST"')
print('wrk.body = %s' % json.dumps(body))
print('wrk.headers["content-type"] = "application/json"')
print('wrk.headers["x-webhook-signature"] = %s' % json.dumps(sys.argv[2]))
PY
}
lua "sha256=$sig" > "$work/good.lua"
lua "sha256=$(printf '0%.0s' {1..64})" > "$work/bad.lua"

# Upstream: Envoy answering 200 itself; its admin counts received bytes.
up_port=$(free_port); up_admin=$(free_port)
"$render" --stub-upstream --listener-port "$up_port" --admin-port "$up_admin" > "$work/upstream.yaml"
start_envoy() { # $1 = config file, $2 = admin port; env WEBHOOK_SECRET passed through
  WEBHOOK_SECRET=$secret "$envoy" -c "$1" --concurrency 1 --use-dynamic-base-id -l error \
    > "$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$2/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "envoy with $1 did not become ready:" >&2; tail -20 "$1.log" >&2; exit 1
}
up_rx() { curl -s "http://127.0.0.1:$up_admin/stats?filter=^http.upstream.downstream_rq_total$" | awk '{print $2}'; }
start_envoy "$work/upstream.yaml" "$up_admin"

# "jsonschema": the second artifact validating the same body against
# schemas/reservation-event.schema.json instead of the Rust rules (prices JSON Schema).
wasm_js="$(dirname "$wasm")/webhook_filter_jsonschema.wasm"
js_config=$(python3 - <<'PY'
import json
cfg = {"webhooks": [{"name": "reservations", "path": "/webhook",
                     "secrets": [{"env": "WEBHOOK_SECRET"}],
                     "schema": {"json_schema": json.load(open("schemas/reservation-event.schema.json"))}}]}
print(json.dumps(cfg, separators=(",", ":")))
PY
)
declare -A port
variants=${VARIANTS:-"nofilter passthru filter nobuffer jsonschema"}
for variant in $variants; do
  p=$(free_port); a=$(free_port); port[$variant]=$p
  args=(--loopback --listener-port "$p" --admin-port "$a" --upstream "127.0.0.1:$up_port" --wasm "$wasm")
  case $variant in
    nofilter) args+=(--no-filter);;
    nobuffer) args+=(--no-buffer);;
    jsonschema) args+=(--wasm "$wasm_js" --plugin-config "$js_config");;
    passthru) args+=(--plugin-config '{"webhooks":[{"name":"other","path":"/elsewhere","secrets":[{"env":"WEBHOOK_SECRET"}]}]}');;
  esac
  "$render" "${args[@]}" > "$work/$variant.yaml"
  start_envoy "$work/$variant.yaml" "$a"
done

# Sanity: the signed body passes every filter variant.
for variant in $variants; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -H "x-webhook-signature: sha256=$sig" --data-binary @"$work/body.json" "http://127.0.0.1:${port[$variant]}/webhook")
  [ "$code" = 200 ] || { echo "signed request got $code from $variant" >&2; exit 1; }
done

run_wrk() { # $1 = variant, $2 = lua
  timeout $((DURATION + 20)) wrk -t1 -c2 -d"${DURATION}s" --latency -s "$2" "http://127.0.0.1:${port[$1]}/webhook"
}
declare -A rps p50 p99
echo "| round | variant | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for variant in $variants; do
    out=$(run_wrk "$variant" "$work/good.lua")
    r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    l50=$(awk '$1=="50%" {print $2}' <<<"$out"); l99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    echo "| $round | $variant | $r | $l50 | $l99 | $non2xx |"
    rps[$variant]="${rps[$variant]:-} $r"
  done
done
mean() { tr ' ' '\n' <<<"$1" | awk 'NF {s+=$1; n++} END {printf "%.0f", s/n}'; }
echo
for variant in $variants; do echo "mean req/s $variant: $(mean "${rps[$variant]}")"; done
if [ -n "${rps[nofilter]:-}" ]; then
  base=$(mean "${rps[nofilter]}")
  for variant in $variants; do
    awk -v a="$(mean "${rps[$variant]}")" -v b="$base" -v v="$variant" 'BEGIN {printf "ratio %s / nofilter: %.3f\n", v, a/b}'
  done
fi

before=$(up_rx)
bad=$(run_wrk filter "$work/bad.lua")
after=$(up_rx)
echo
echo "wrong-signature load on filter+buffer: $(awk '/Requests\/sec/ {print $2}' <<<"$bad") req/s, all non-2xx: $(awk '/Non-2xx/ {print $NF}' <<<"$bad") of $(awk '/requests in/ {print $1}' <<<"$bad")"
echo "upstream requests received during it: $((after - before)) (must be 0)"
[ "$after" = "$before" ] || { echo "FAIL: unauthenticated requests reached the upstream" >&2; exit 1; }

echo
echo "wasm size: $(stat -c %s "$wasm") bytes ($wasm); body: $body_len bytes"
echo "wasm size with JSON Schema: $(stat -c %s "$wasm_js") bytes ($wasm_js)"
echo
cargo bench -q --locked -p webhook-core --bench verify_validate 2>&1 | grep -E "time:|^[a-z].*KB" || true
