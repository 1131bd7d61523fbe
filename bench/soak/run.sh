#!/usr/bin/env bash
# Load and soak of the filter inside Envoy, loopback only, bounded in count and time
# (figures in BENCHMARKS.md, "## Load and soak"):
#   1. valid events: Envoy without the filter vs Envoy + filter (the shipped arrangement),
#      ROUNDS interleaved wrk runs of DURATION s each, in front of the same upstream (a second
#      Envoy answering 200 by direct_response): req/s and the ratio, in the same run;
#   2. a flood of bad signatures (wrk, 8 connections, DURATION s): every reply 401, the
#      upstream's request counter does not move, Envoy's RSS before/after;
#   3. duplicate deliveries against a webhook with a replay cache (GitHub scheme, same delivery
#      id): the first forwarded, every repeat 409, the upstream sees exactly one;
#   4. the soak: SOAK_REQUESTS (default 1,000,000) requests through the filter, half valid and
#      half with a wrong signature, in wrk runs of 30 s until the count is reached (at most
#      SOAK_MAX_SECONDS); Envoy's RSS, its heap (admin /memory) and the V8 wasm memory
#      resident (the VM's linear memory: the Rss of V8's >= 1 GiB wasm reservation in
#      /proc/PID/smaps) sampled after a warm-up and every run. It fails if RSS grows by more
#      than RSS_BOUND_MIB (default 16) or the wasm memory by more than WASM_BOUND_MIB
#      (default 2) between the warm-up and the end.
# Usage: bench/soak/run.sh [DURATION=10] [ROUNDS=3]; SOAK_REQUESTS=0 skips the soak.
# Needs wrk, openssl, python3, curl; uses ENVOY_BIN / FILTER_WASM if set.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
DURATION=${1:-10}
ROUNDS=${2:-3}
SOAK_REQUESTS=${SOAK_REQUESTS:-1000000}
SOAK_MAX_SECONDS=${SOAK_MAX_SECONDS:-1200}
RSS_BOUND_MIB=${RSS_BOUND_MIB:-16}
WASM_BOUND_MIB=${WASM_BOUND_MIB:-2}
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
# Eight distinct free loopback ports at once (sockets held until all are picked).
read -r -a free < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
echo "soak: $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

secret=soak-secret-0123456789abcdef0123456789
tools/fresh-event.py filter/core/tests/fixtures/event-start.json --end-hours 6 > "$work/body.json"
sig=sha256=$(openssl dgst -sha256 -hmac "$secret" -r < "$work/body.json" | cut -d' ' -f1)
bad=sha256=$(printf '0%.0s' {1..64})
# wrk scripts: one request shape each, or (mix) valid and wrong signature alternately.
lua() { # $1 = mode (good | bad | mix | dup), $2 = good signature
  python3 - "$work/body.json" "$1" "$2" "$bad" <<'PY'
import json, sys
body, mode, good, bad = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
if mode == "dup":
    body = '{"action":"opened","number":1}'
q = json.dumps
print('local body = %s' % q(body))
print('local function req(sig)')
print('  local h = {["Host"] = "localhost", ["content-type"] = "application/json"}')
if mode == "dup":
    print('  h["x-hub-signature-256"] = sig; h["x-github-delivery"] = "soak-delivery-1"')
else:
    print('  h["x-webhook-signature"] = sig')
print('  return wrk.format("POST", "/webhook", h, body)')
print('end')
print('local good, bad = req(%s), req(%s)' % (q(good), q(bad)))
print('local n = 0')
print('request = function()')
print('  n = n + 1')
if mode == "good" or mode == "dup":
    print('  return good')
elif mode == "bad":
    print('  return bad')
else:
    print('  if n % 2 == 0 then return good else return bad end')
print('end')
PY
}
lua good "$sig" > "$work/good.lua"
lua bad "$sig" > "$work/bad.lua"
lua mix "$sig" > "$work/mix.lua"
dup_body='{"action":"opened","number":1}'
dup_sig=sha256=$(printf '%s' "$dup_body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
lua dup "$dup_sig" > "$work/dup.lua"

up_port=${free[0]}; up_admin=${free[1]}
"$render" --stub-upstream --listener-port "$up_port" --admin-port "$up_admin" > "$work/upstream.yaml"
declare -A port admin pid
start_envoy() { # $1 = name, $2 = config file, $3 = admin port
  WEBHOOK_SECRET=$secret "$envoy" -c "$2" --concurrency 1 --use-dynamic-base-id -l error \
    > "$2.log" 2>&1 &
  pids+=($!); pid[$1]=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$3/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "envoy $1 did not become ready:" >&2; tail -20 "$2.log" >&2; exit 1
}
up_rq() { curl -s "http://127.0.0.1:$up_admin/stats?filter=^http.upstream.downstream_rq_total$" | awk '{print $2}'; }
start_envoy upstream "$work/upstream.yaml" "$up_admin"
dup_config='{"webhooks":[{"name":"github","path":"/webhook","scheme":{"type":"github"},"secrets":[{"env":"WEBHOOK_SECRET"}],"schema":"json","replay_cache":{}}]}'
i=2
for variant in nofilter filter replay; do
  p=${free[i]}; a=${free[i + 1]}; i=$((i + 2)); port[$variant]=$p; admin[$variant]=$a
  args=(--loopback --listener-port "$p" --admin-port "$a" --upstream "127.0.0.1:$up_port" --wasm "$wasm")
  case $variant in
    nofilter) args+=(--no-filter);;
    replay) args+=(--plugin-config "$dup_config");;
  esac
  "$render" "${args[@]}" > "$work/$variant.yaml"
  start_envoy "$variant" "$work/$variant.yaml" "$a"
done
for variant in nofilter filter; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -H "x-webhook-signature: $sig" --data-binary @"$work/body.json" "http://127.0.0.1:${port[$variant]}/webhook")
  [ "$code" = 200 ] || { echo "signed request got $code from $variant" >&2; exit 1; }
done

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# The VMs' wasm linear memory: V8 maps each as a read-write region directly followed by its
# 8 GiB guard reservation (---p); the region's size is the memory's current size (it only
# grows, with memory.grow), its Rss what was touched. Prints "size KiB, resident KiB", all VMs.
wasm_kib() {
  python3 - "/proc/$1/smaps" <<'PY'
import re, sys
maps, cur = [], None
for line in open(sys.argv[1]):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
    if m:
        cur = [int(m.group(1), 16), int(m.group(2), 16), m.group(3), 0]
        maps.append(cur)
    elif cur and line.startswith("Rss:"):
        cur[3] = int(line.split()[1])
guards = {a for a, b, perm, _ in maps if perm == "---p" and b - a >= 1 << 30}
linear = [(b - a) // 1024 for a, b, perm, _ in maps if perm == "rw-p" and b in guards]
rss = [r for a, b, perm, r in maps if perm == "rw-p" and b in guards]
print(f"{sum(linear)} {sum(rss)}")
PY
}
heap() { curl -s "http://127.0.0.1:$1/memory" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(int(m.get("allocated", 0))//1024, int(m.get("heap_size", 0))//1024)'; }
counter() { # $1 = variant, $2 = counter name
  curl -s "http://127.0.0.1:${admin[$1]}/stats/prometheus" | awk -v n="$2" '$1 == n || $1 == n "{}" {print $2}'
}
mem() { # $1 = variant: "rss KiB, wasm linear KiB, wasm resident KiB, allocated KiB, heap KiB"
  local h; h=$(heap "${admin[$1]}")
  echo "$(rss_kib "${pid[$1]}") $(wasm_kib "${pid[$1]}") $h"
}
run_wrk() { # $1 = variant, $2 = lua, $3 = seconds, $4 = connections
  timeout $(( $3 + 30 )) wrk -t1 -c"$4" -d"$3s" --latency -s "$2" "http://127.0.0.1:${port[$1]}/webhook"
}
field() { awk "$1" <<<"$2"; }
mean() { tr ' ' '\n' <<<"$1" | awk 'NF {s+=$1; n++} END {printf "%.0f", s/n}'; }

echo
echo "## 1. valid events, ${ROUNDS} x ${DURATION}s per variant, wrk -t1 -c2"
echo "| round | variant | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
declare -A rps
for round in $(seq 1 "$ROUNDS"); do
  for variant in nofilter filter; do
    out=$(run_wrk "$variant" "$work/good.lua" "$DURATION" 2)
    r=$(field '/Requests\/sec/ {print $2}' "$out")
    echo "| $round | $variant | $r | $(field '$1=="50%" {print $2}' "$out") | $(field '$1=="99%" {print $2}' "$out") | $(field '/Non-2xx/ {print $NF}' "$out") |"
    rps[$variant]="${rps[$variant]:-} $r"
  done
done
nf=$(mean "${rps[nofilter]}"); f=$(mean "${rps[filter]}")
awk -v a="$f" -v b="$nf" 'BEGIN {printf "mean req/s: nofilter %d, filter %d; ratio filter/nofilter %.3f\n", b, a, a/b}'

echo
echo "## 2. bad-signature flood, ${DURATION}s, wrk -t1 -c8"
read -r rss0 wasm0 wres0 alloc0 heap0 <<<"$(mem filter)"
before=$(up_rq); inv0=$(counter filter 'webhook_filter_requests_total{webhook="github",outcome="invalid_signature"}')
out=$(run_wrk filter "$work/bad.lua" "$DURATION" 8)
after=$(up_rq); inv1=$(counter filter 'webhook_filter_requests_total{webhook="github",outcome="invalid_signature"}')
read -r rss1 wasm1 wres1 alloc1 heap1 <<<"$(mem filter)"
total=$(field '/requests in/ {print $1}' "$out"); non2xx=$(field '/Non-2xx/ {print $NF}' "$out")
echo "filter: $(field '/Requests\/sec/ {print $2}' "$out") req/s, $non2xx of $total answered non-2xx, $((inv1 - inv0)) counted InvalidSignature (401); upstream requests during it: $((after - before)) (must be 0)"
echo "filter Envoy RSS ${rss0} -> ${rss1} KiB, wasm linear memory ${wasm0} -> ${wasm1} KiB (resident ${wres0} -> ${wres1}), heap allocated ${alloc0} -> ${alloc1} KiB"
out=$(run_wrk nofilter "$work/bad.lua" "$DURATION" 8)
echo "nofilter (forwards them): $(field '/Requests\/sec/ {print $2}' "$out") req/s"
[ "$after" = "$before" ] || { echo "FAIL: unauthenticated requests reached the upstream" >&2; exit 1; }
[ "$non2xx" = "$total" ] && [ $(( total - (inv1 - inv0) )) -le 8 ] \
  || { echo "FAIL: the flood was not answered 401 InvalidSignature" >&2; exit 1; }

echo
echo "## 3. duplicate deliveries (replay cache), ${DURATION}s, wrk -t1 -c2"
before=$(up_rq)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -H "x-hub-signature-256: $dup_sig" -H 'x-github-delivery: soak-delivery-1' --data-binary "$dup_body" \
  "http://127.0.0.1:${port[replay]}/webhook")
out=$(run_wrk replay "$work/dup.lua" "$DURATION" 2)
after=$(up_rq)
total=$(field '/requests in/ {print $1}' "$out"); non2xx=$(field '/Non-2xx/ {print $NF}' "$out")
replayed=$(counter replay 'webhook_filter_requests_total{webhook="github",outcome="replayed_delivery"}')
echo "first delivery: $code; then $(field '/Requests\/sec/ {print $2}' "$out") req/s, $non2xx of $total non-2xx, replayed counter $replayed; upstream requests: $((after - before)) (must be 1)"
[ "$code" = 200 ] && [ $((after - before)) = 1 ] && [ "$non2xx" = "$total" ] \
  || { echo "FAIL: duplicates were forwarded" >&2; exit 1; }

[ "$SOAK_REQUESTS" -gt 0 ] || exit 0
echo
echo "## 4. soak: $SOAK_REQUESTS requests through the filter, half valid, half wrong signature"
rq() { curl -s "http://127.0.0.1:${admin[filter]}/stats?filter=^http.webhook.downstream_rq_total$" | awk '{print $2}'; }
run_wrk filter "$work/mix.lua" 10 2 >/dev/null # warm-up
read -r rss0 wasm0 wres0 alloc0 heap0 <<<"$(mem filter)"
accepted() { counter filter 'webhook_filter_requests_total{webhook="github",outcome="accepted"}'; }
start_rq=$(rq); up_start=$(up_rq); acc_start=$(accepted); t0=$(date +%s); runs=0
echo "| requests | seconds | Envoy RSS KiB | wasm linear memory KiB | wasm resident KiB | heap allocated KiB | heap size KiB |"
echo "|---|---|---|---|---|---|---|"
echo "| 0 (after warm-up) | 0 | $rss0 | $wasm0 | $wres0 | $alloc0 | $heap0 |"
while :; do
  done_rq=$(( $(rq) - start_rq ))
  [ "$done_rq" -ge "$SOAK_REQUESTS" ] && break
  [ $(( $(date +%s) - t0 )) -lt "$SOAK_MAX_SECONDS" ] || { echo "FAIL: $done_rq requests in ${SOAK_MAX_SECONDS}s" >&2; exit 1; }
  out=$(run_wrk filter "$work/mix.lua" 30 4); runs=$((runs + 1))
  errors=$(field '/Socket errors/ {print}' "$out")
  read -r rss wasm wres alloc hp <<<"$(mem filter)"
  echo "| $(( $(rq) - start_rq )) | $(( $(date +%s) - t0 )) | $rss | $wasm | $wres | $alloc | $hp |${errors:+ $errors}"
done
read -r rss1 wasm1 wres1 alloc1 heap1 <<<"$(mem filter)"
n=$(( $(rq) - start_rq )); up_n=$(( $(up_rq) - up_start )); secs=$(( $(date +%s) - t0 ))
acc=$(( $(accepted) - acc_start ))
echo "soak: $n requests in ${secs}s ($((n / (secs > 0 ? secs : 1))) req/s, $runs wrk runs); accepted $acc, upstream received $up_n (must be equal, and about half)"
echo "soak memory, after warm-up -> end: Envoy RSS $rss0 -> $rss1 KiB ($(( rss1 - rss0 )) KiB); wasm linear memory (all VMs) $wasm0 -> $wasm1 KiB ($(( wasm1 - wasm0 )) KiB), resident $wres0 -> $wres1 KiB; heap allocated $alloc0 -> $alloc1 KiB"
# wrk closes its connections at the end of each run: a request accepted just then may be cut
# before the upstream counts it (at most one per connection and run).
[ $(( acc - up_n )) -le $(( 4 * runs )) ] && [ "$up_n" -le "$acc" ] \
  || { echo "FAIL: upstream saw $up_n requests, the filter accepted $acc" >&2; exit 1; }
slack=$(( runs + 8 ))
[ $(( acc - n / 2 )) -le $slack ] && [ $(( n / 2 - acc )) -le $slack ] || { echo "FAIL: $acc of $n accepted, expected half" >&2; exit 1; }
[ $(( rss1 - rss0 )) -le $(( RSS_BOUND_MIB * 1024 )) ] || { echo "FAIL: RSS grew beyond ${RSS_BOUND_MIB} MiB" >&2; exit 1; }
[ $(( wasm1 - wasm0 )) -le $(( WASM_BOUND_MIB * 1024 )) ] || { echo "FAIL: wasm memory grew beyond ${WASM_BOUND_MIB} MiB" >&2; exit 1; }
echo "soak: within bounds (RSS +${RSS_BOUND_MIB} MiB, wasm +${WASM_BOUND_MIB} MiB)"
