#!/usr/bin/env bash
# Signs a payload file exactly like the reservation system does and POSTs it.
#   tools/send-event.sh PAYLOAD.json [URL]      (URL defaults to http://127.0.0.1:5001/webhook)
# The secret comes from WEBHOOK_SECRET. The signature is the lowercase hex HMAC-SHA256 of the raw
# file bytes, sent as `X-Webhook-Signature: sha256=<hex>`.
set -euo pipefail
payload=${1:?usage: tools/send-event.sh PAYLOAD.json [URL]}
url=${2:-http://127.0.0.1:5001/webhook}
: "${WEBHOOK_SECRET:?set WEBHOOK_SECRET to the shared secret}"
sig=$(openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r < "$payload" | cut -d' ' -f1)
curl -sS -X POST "$url" \
  -H 'Content-Type: application/json' \
  -H "X-Webhook-Signature: sha256=$sig" \
  --data-binary @"$payload" \
  -w '\nHTTP %{http_code}\n'
