#!/usr/bin/env python3
"""Prints a sample reservation message with its times moved to now.

    tools/fresh-event.py PAYLOAD.json [--end-hours N] > body.json

"timestamp" becomes now; every reservation in it (the flat event, each of a batch's "events",
an envelope's "data") starts an hour ago and ends in N hours (default 2): the filter refuses an
EVENT_START whose every eventEnd has passed, and the samples' dates are in 2025. Every other
field stays as written. The one place the tools and benchmarks move a sample to now (the Rust
tests have envoy_harness::sample::at_now).
"""
import argparse
import datetime
import json
import sys


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def at_now(message, end_hours=2, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start, end = iso(now - datetime.timedelta(hours=1)), iso(now + datetime.timedelta(hours=end_hours))
    if "timestamp" in message:
        message["timestamp"] = iso(now)
    # Each time that is there is moved; none is added.
    def move(r, start_key, end_key):
        for key, time in ((start_key, start), (end_key, end)):
            if key in r:
                r[key] = time
    for r in [message] + list(message.get("events") or []):
        move(r, "eventStart", "eventEnd")
    if isinstance(message.get("data"), dict):
        move(message["data"], "start", "end")
    return message


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("payload")
    args.add_argument("--end-hours", type=float, default=2)
    a = args.parse_args()
    with open(a.payload) as f:
        message = json.load(f)
    sys.stdout.write(json.dumps(at_now(message, a.end_hours), indent=2))


if __name__ == "__main__":
    main()
