"""Benchmark baseline: the replaced Python service's request path, rebuilt from its README.

What the replaced service documents, and what this keeps:
- FastAPI + Pydantic v2 models + Uvicorn ("standard": uvloop, httptools), one process;
- POST /webhook with `X-Webhook-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw body
  with WEBHOOK_SECRET, compared in constant time (`hmac.compare_digest`), required when
  WEBHOOK_SECRET is set;
- the body parsed into the documented payload model (eventType, timestamp, eventCount, userId,
  username, email, sshPublicKey, events[] with eventId ... siteName);
- each event handed to the BareMetalHost step, then a JSON answer in the documented shape;
  errors as {"detail", "error_type", "resource_name", "timestamp"};
- GET /healthz.

What it leaves out, on purpose: the Kubernetes calls. The benchmark compares the request path
without Kubernetes writes on either side (the sidecar runs with `BMH_RESOURCE_TYPES` naming no
resource of the body, so it skips every resource; this skips them too).

Run: `uvicorn app:app --host 127.0.0.1 --port P` from this folder, in the bench-only venv
(bench/baseline/venv.sh). Used by bench/cpu/run.sh only; never part of the project.
"""

import hashlib
import hmac
import os
from datetime import datetime, timezone
from typing import List, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")
# Resource types managed as BareMetalHosts (none of the benchmark body's, see above).
BMH_RESOURCE_TYPES = {
    t for t in os.environ.get("BMH_RESOURCE_TYPES", "Server").split(",") if t
}


class Event(BaseModel):
    eventId: str
    eventTitle: str
    eventDescription: str
    eventStart: datetime
    eventEnd: datetime
    resourceId: int
    resourceName: str
    resourceType: str
    resourceSpecs: str
    resourceLocation: str
    siteId: str
    siteName: str


class WebhookPayload(BaseModel):
    eventType: Literal["EVENT_START", "EVENT_END"]
    timestamp: datetime
    eventCount: int
    userId: str
    username: str
    email: str
    sshPublicKey: str
    events: List[Event]


class WebhookSecurity:
    """HMAC-SHA256 signature check, constant time (the replaced service's WebhookSecurity)."""

    def __init__(self, secret: str):
        self.secret = secret.encode()

    def verify(self, body: bytes, header: str) -> bool:
        if not self.secret:
            return True
        if not header or not header.startswith("sha256="):
            return False
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header[len("sha256="):])


security = WebhookSecurity(WEBHOOK_SECRET)
app = FastAPI(title="replaced-service baseline")


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def error(status: int, detail: str, error_type: str, resource_name=None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "detail": detail,
            "error_type": error_type,
            "resource_name": resource_name,
            "timestamp": now(),
        },
    )


@app.get("/healthz")
async def healthz():
    return {"status": "ok", "timestamp": now()}


@app.post("/webhook")
async def webhook(request: Request):
    body = await request.body()
    if not security.verify(body, request.headers.get("x-webhook-signature", "")):
        return error(401, "Invalid webhook signature", "AuthenticationError")
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as e:
        return error(422, str(e.errors()[:1]), "ValidationError")
    results = []
    for event in payload.events:
        if event.resourceType not in BMH_RESOURCE_TYPES:
            results.append({"resourceName": event.resourceName, "status": "skipped"})
            continue
        # The Kubernetes step (BMH patch, userData Secret) is out of the benchmark.
        results.append({"resourceName": event.resourceName, "status": "success"})
    return {
        "status": "success",
        "message": f"Processed {len(results)} event(s)",
        "resourceName": payload.events[0].resourceName if payload.events else None,
        "eventType": payload.eventType,
        "timestamp": now(),
        "results": results,
    }
