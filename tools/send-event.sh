#!/usr/bin/env bash
# Signs a payload file like the reservation system does and POSTs it.
#   tools/send-event.sh PAYLOAD.json [URL]      (URL defaults to http://127.0.0.1:5001/webhook)
# The secret comes from WEBHOOK_SECRET. The signature is HMAC-SHA256 of the raw bytes sent,
# keyed with the secret's bytes, as reservation-be and the event processor send it:
# `X-Webhook-Signature: <standard Base64>`. SIGNATURE=hex sends the same MAC as
# `sha256=<lowercase hex>` (the replaced service's README form; the filter accepts both).
# The payload's times are moved to now first (tools/fresh-event.py: "timestamp" now, its
# reservations running for two more hours; the samples' dates are in 2025);
# KEEP_TIMESTAMP=1 sends the file unchanged.
set -euo pipefail
payload=${1:?usage: tools/send-event.sh PAYLOAD.json [URL]}
url=${2:-http://127.0.0.1:5001/webhook}
: "${WEBHOOK_SECRET:?set WEBHOOK_SECRET to the shared secret}"
body=$(mktemp)
trap 'rm -f "$body"' EXIT
if [ "${KEEP_TIMESTAMP:-0}" = 1 ]; then
  cp "$payload" "$body"
else
  "$(dirname "$0")/fresh-event.py" "$payload" > "$body"
fi
case "${SIGNATURE:-base64}" in
  base64) sig=$(openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -binary < "$body" | base64 -w0) ;;
  hex) sig="sha256=$(openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r < "$body" | cut -d' ' -f1)" ;;
  *) echo "SIGNATURE must be base64 or hex" >&2; exit 2 ;;
esac
curl -sS -X POST "$url" \
  -H 'Content-Type: application/json' \
  -H "X-Webhook-Signature: $sig" \
  --data-binary @"$body" \
  -w '\nHTTP %{http_code}\n'
