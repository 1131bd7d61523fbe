#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Seeds are the core tests' payloads (filter/core/tests/fixtures), the senders' published test
vectors (filter/core/tests/schemes.rs), hostile shapes (duplicate keys, huge numbers, deep
nesting, BOM, invalid UTF-8) and the documented configurations. Deterministic: the clock of a
seed is an offset from the fixtures' timestamp, so seeds never go stale. Framing of the
`request` and `scheme_headers` inputs: fuzz/src/lib.rs. Run from anywhere; rewrites the folder.
"""
import base64, hashlib, hmac, json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "filter", "core", "tests", "fixtures")
FIXTURE_TS = 1_749_385_800
SECRET = "fuzz-secret-0123456789abcdef0123456789"
PREVIOUS = "fuzz-previous-9876543210fedcba987654"
SVIX_SECRET = "whsec_ZnV6ei1zdml4LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"

def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()

START, END, START_RSA = fixture("event-start.json"), fixture("event-end.json"), fixture("event-start-rsa.json")
# The real senders' other shapes: processor 0.1.18's flat event, 0.1.15's batch, reservation-be's envelopes.
SHAPES = {n: fixture(f + ".json") for n, f in [
    ("flat", "flat-start"), ("batch-0115", "batch-start-0115"), ("deleted", "envelope-deleted"),
    ("updated", "envelope-updated"), ("test", "envelope-test"), ("resource-created", "envelope-resource-created")]}

# The senders' published vectors (filter/core/tests/schemes.rs cites the sources).
GITHUB = ("It's a Secret to Everybody", b"Hello, World!",
          "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
SLACK = (1_531_420_618, b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&command=%2Fwebhook-collect&text=",
         "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
SVIX = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, b'{"test": 2432232314}',
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
STRIPE = (1_492_774_577, b'{\n  "id": "evt_test_webhook",\n  "object": "event"\n}',
          "c2f890decbc5ede7c5060bb9a6d31e0626a4342bacb9aeae2adb1bcea72f9812")
SHOPIFY = (b'{"foo":"bar"}', "1kjVjZBASoDr0j4pTeXLurkG6u87OrkQXzf+h707p2w=")

def mac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()

def frame(selector, flags, offset, method, path, headers, body):
    head = f"{method} {path}\n".encode()
    for k, v in headers:
        head += k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\n"
    return bytes([selector, flags]) + struct.pack("<i", offset) + head + b"\n" + body

def signed(path, body, t=FIXTURE_TS, secret=SECRET):
    """The headers a correct sender adds for the fuzz configuration's webhook at `path`."""
    key = secret.encode()
    if path == "/webhook":
        # As the real senders sign: standard Base64, no prefix.
        return [("content-type", "application/json"), ("x-webhook-signature", base64.b64encode(mac(key, body)).decode())]
    if path == "/w8":
        return [("content-type", "application/json"), ("x-webhook-signature", "sha256=" + mac(key, body).hex())]
    if path in ("/w1", "/w7"):
        return [("content-type", "application/json"), ("x-hub-signature-256", "sha256=" + mac(key, body).hex()),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")]
    if path == "/w2":
        return [("content-type", "application/json"),
                ("stripe-signature", f"t={t},v1=" + mac(key, f"{t}.".encode() + body).hex())]
    if path == "/w3":
        return [("content-type", "application/x-www-form-urlencoded"),
                ("x-slack-signature", "v0=" + mac(key, f"v0:{t}:".encode() + body).hex()),
                ("x-slack-request-timestamp", str(t))]
    if path == "/w4":
        k = base64.b64decode(SVIX_SECRET[len("whsec_"):])
        sig = base64.b64encode(mac(k, f"msg_1.{t}.".encode() + body)).decode()
        return [("content-type", "application/json"), ("webhook-id", "msg_1"),
                ("webhook-timestamp", str(t)), ("webhook-signature", f"v1,{sig}")]
    if path == "/w5":
        return [("content-type", "application/json"), ("x-shopify-hmac-sha256", base64.b64encode(mac(key, body)).decode()),
                ("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")]
    if path == "/w6":
        return [("content-type", "application/json"), ("x-sig", mac(key, body).hex()), ("x-delivery", "d-1")]
    return [("content-type", "application/json")]

# Hostile bodies (also in the Envoy corpus, tests/envoy-harness/tests/hostile.rs).
def hostile_bodies():
    ev = json.loads(START)
    out = {
        "dup-keys": START.replace(b'"eventType": "EVENT_START",', b'"eventType": "EVENT_START", "eventType": "EVENT_END",', 1),
        "bom": b"\xef\xbb\xbf" + START,
        "invalid-utf8": START.replace(b"giovanni.mirarchi", b"giovanni\xff\xfemirarchi", 1),
        "lone-surrogate": START.replace(b'"eventTitle": "', b'"eventTitle": "\\ud800', 1),
        "huge-number": START.replace(b'"resourceId": 1,', b'"resourceId": 1' + b"0" * 400 + b",", 1),
        "float-id": START.replace(b'"resourceId": 1,', b'"resourceId": 1e400,', 1),
        "neg-id": START.replace(b'"resourceId": 1,', b'"resourceId": -1,', 1),
        "deep-array": b"[" * 200 + b"]" * 200,
        "deep-object": b'{"a":' * 200 + b"1" + b"}" * 200,
        "not-json": b"{\"eventType\":",
        "empty": b"",
        "null": b"null",
        "nul-bytes": START.replace(b"Lab Server A1", b"Lab\x00Server A1", 1),
        "escaped-newline-key": START.replace(b'"sshPublicKey": "ssh-ed25519', b'"sshPublicKey": "\\nruncmd: [reboot]\\nssh-ed25519', 1),
        "truncated-key": json.dumps(dict(ev, sshPublicKey="ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC...")).encode(),
        "root": json.dumps(dict(ev, username="root")).encode(),
        "count-mismatch": json.dumps(dict(ev, eventCount=7)).encode(),
        "end-before-start": START.replace(b'"eventEnd": "2025-06-08T18:00:00+02:00"', b'"eventEnd": "2025-06-08T08:00:00+02:00"', 1),
        "year-9999": START.replace(b"2025-06-08T14:30:00+02:00", b"9999-12-31T23:59:60+23:59", 1),
        "leap-second": START.replace(b"2025-06-08T14:30:00+02:00", b"2025-06-30T23:59:60Z", 1),
    }
    return out

def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def main():
    shutil.rmtree(os.path.join(HERE, "seeds"), ignore_errors=True)
    bodies = dict({"start": START, "end": END, "start-rsa": START_RSA}, **SHAPES)
    hostile = hostile_bodies()

    # event_validate: raw bodies.
    for n, b in list(bodies.items()) + list(hostile.items()):
        write("event_validate", n, b)

    # json_schema: selector byte (0 reservation schema, 1 keywords schema) + body.
    for n, b in list(bodies.items()) + list(hostile.items()):
        write("json_schema", "r-" + n, b"\x00" + b)
    for n, doc in {
        "all": {"id": "abc", "email": "a@b.example", "when": "2025-06-08T14:30:00Z", "host": "a.example",
                "ip": "::1", "url": "https://a.example/x?y#z", "uuid": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "re": "^(a+)+$", "amount": 12.34, "count": 18446744073709551614, "tags": ["x", "y"],
                "node": {"next": {"next": {"v": 1}}}, "x-extra": "short"},
        "bad": {"id": "-x", "email": "no", "when": "2025-13-40", "amount": 1e309, "tags": ["x", "x"]},
    }.items():
        write("json_schema", "k-" + n, b"\x01" + json.dumps(doc).encode())

    # request: the whole decision, every webhook, signed by the driver (flag 1) or by hand.
    paths = ["/webhook", "/w1", "/w2", "/w3", "/w4", "/w5", "/w6", "/w7", "/w8"]
    json_bodies = {"github": b'{"zen":"Hello, World!"}', "stripe": STRIPE[1], "svix": SVIX[2], "shopify": SHOPIFY[0]}
    reservation_paths = ("/webhook", "/w6", "/w7", "/w8")
    for p in paths:
        tag = p.strip("/").replace("/", "_")
        mine = bodies if p in reservation_paths else dict(json_bodies, start=START)
        for n, b in mine.items():
            # Driver-signed (flag 1), and signed by hand: the fuzzer mutates real headers.
            write("request", f"{tag}-{n}-auto", frame(0, 1, 0, "POST", p, [("content-type", "application/json")], b))
            write("request", f"{tag}-{n}-hand", frame(0, 0, 0, "POST", p, signed(p, b), b))
        # In 16-byte chunks (flags bits 4-7 = 4), ended by trailers, unmatched paths rejected.
        write("request", f"{tag}-start-chunked", frame(1, 1 | 2 | 0x40, 0, "POST", p, [("content-type", "application/json")], START))
        write("request", f"{tag}-unsigned", frame(0, 0, 0, "POST", p, [("content-type", "application/json")], START))
        write("request", f"{tag}-get", frame(1, 4, 0, "GET", p, [], b""))
    for n, b in hostile.items():
        write("request", f"webhook-hostile-{n}", frame(0, 1, 0, "POST", "/webhook", [("content-type", "application/json")], b))
    write("request", "webhook-replayed-later", frame(0, 1, 10 * 365 * 86400, "POST", "/webhook", [("content-type", "application/json")], START))
    write("request", "webhook-query", frame(0, 0, 0, "POST", "/webhook?x=1#f", signed("/webhook", START), START))
    write("request", "healthz", frame(1, 4, 0, "GET", "/healthz", [("x-webhook-verified", "true")], b""))
    write("request", "webhook-too-large", frame(0, 0x01, 0, "POST", "/webhook", [("content-type", "application/json"), ("content-length", "65537")], START))

    # scheme_headers: selector = webhook index (0..6) of the fuzz configuration; the published
    # vectors' headers (keyed with the senders' secrets, so they parse but do not verify).
    vectors = {
        1: ("gh", 0, [("x-hub-signature-256", GITHUB[2]), ("x-github-delivery", "d1")], GITHUB[1]),
        3: ("slack", SLACK[0] - FIXTURE_TS, [("x-slack-signature", SLACK[2]), ("x-slack-request-timestamp", str(SLACK[0]))], SLACK[1]),
        4: ("svix", SVIX[1] - FIXTURE_TS, [("svix-id", SVIX[0]), ("svix-timestamp", str(SVIX[1])), ("svix-signature", SVIX[3] + " v1a,xyz v1,bad")], SVIX[2]),
        2: ("stripe", STRIPE[0] - FIXTURE_TS, [("stripe-signature", f"t={STRIPE[0]},v1={STRIPE[2]},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")], STRIPE[1]),
        5: ("shopify", 0, [("x-shopify-hmac-sha256", SHOPIFY[1]), ("x-shopify-webhook-id", "w1")], SHOPIFY[0]),
    }
    for sel, (n, off, hs, b) in vectors.items():
        write("scheme_headers", f"vector-{n}", frame(sel, 0, off, "POST", "delivery-1", hs, b))
    for sel, p in enumerate(["/webhook", "/w1", "/w2", "/w3", "/w4", "/w5", "/w6"]):
        write("scheme_headers", f"ours-{sel}", frame(sel, 1, 0, "POST", "msg_2", [(k, v) for k, v in signed(p, START) if k != "content-type"], START))

    # config: the documented configurations and the fuzz one.
    reservations = {"preset": "reservation_system",
                    "secrets": [{"env": "SECRET", "id": "current"}, {"env": "PREVIOUS", "id": "previous", "optional": True}]}
    senders = [
        {"name": "github", "path": "/hooks/github", "scheme": {"type": "github"}, "secrets": [{"env": "SECRET", "id": "github-2026"}],
         "schema": "json", "max_body_bytes": 1048576, "replay_cache": {"ttl_seconds": 86400, "max_entries": 2048}},
        {"name": "stripe", "path": "/hooks/stripe", "scheme": {"type": "stripe", "tolerance_seconds": 300}, "secrets": [{"env": "SECRET"}], "schema": "json"},
        {"name": "slack", "path": "/hooks/slack", "scheme": {"type": "slack"}, "secrets": [{"env": "SECRET"}], "schema": "none"},
        {"name": "svix", "path": "/hooks/svix", "scheme": {"type": "standard_webhooks"}, "secrets": [{"env": "SVIX"}], "schema": "json", "replay_cache": {"ttl_seconds": 600}},
        {"name": "shopify", "path": "/hooks/shopify", "scheme": {"type": "shopify"}, "secrets": [{"env": "SECRET"}], "schema": "json", "replay_cache": {}},
        {"name": "orders", "path": "/hooks/orders", "scheme": {"type": "github"}, "secrets": [{"env": "SECRET"}],
         "schema": {"json_schema": {"type": "object", "required": ["action"], "properties": {"action": {"type": "string"}}}}},
        {"name": "short", "path": "/s", "secrets": [{"env": "SHORT"}], "min_secret_bytes": 15},
        {"name": "dev", "path": "/dev", "allow_unsigned": True, "replay_window_seconds": 600},
    ]
    write("config", "deployment", json.dumps({"webhooks": [reservations], "unmatched": "pass"}).encode())
    write("config", "all-senders", json.dumps({"webhooks": [reservations] + senders, "unmatched": "reject"}).encode())
    for s in senders:
        write("config", "sender-" + s["name"], json.dumps({"webhooks": [s]}).encode())
    write("config", "minimal", b'{"webhooks":[{"name":"r","path":"/webhook","secrets":[{"env":"SECRET"}]}]}')
    write("config", "preset-overridden", b'{"webhooks":[{"preset":"reservation_system","path":"/p","max_body_bytes":4096,"secrets":[{"env":"SECRET"}]}]}')
    write("config", "legacy-hex", json.dumps({"webhooks": [{"name": "r", "path": "/webhook", "scheme": {"type": "hmac_sha256_hex", "header": "x-webhook-signature", "prefix": "sha256="}, "secrets": [{"env": "SECRET"}]}]}).encode())
    write("config", "typo", b'{"webhooks":[{"name":"r","path":"/webhook","max_body":1,"secrets":[{"env":"SECRET"}]}]}')
    write("config", "short-secret", b'{"webhooks":[{"name":"r","path":"/webhook","secrets":[{"env":"SHORT"}]}]}')

if __name__ == "__main__":
    main()
