#!/usr/bin/env python3
"""Per-process CPU per request of the webhook path, on loopback (driver of bench/cpu/run.sh).

For every variant it runs a bounded wrk load (`wrk -t1 -cC -dD`, under `timeout`) and reads
utime+stime of each process on the path from /proc/<pid>/stat just before and just after, so a
figure is the CPU the process spent per request while serving that load (its idle timers
included, which are negligible at thousands of requests per second). Rounds are interleaved:
round 1 runs every variant once, then round 2, ..., so background load hits all alike.

Groups (BENCH_GROUPS, default "stages path"):
- stages: Envoy 1.40 (`--concurrency 1`, V8) in front of a second Envoy answering 200 by
  direct_response; plain Envoy, plain Envoy + buffer filter, the benchmark artifact cut after
  each stage (`WEBHOOK_BENCH_STAGE` empty/headers/buffer/hmac/full, + buffer filter), the
  shipped artifact with and without the buffer filter, and optionally another artifact
  (COMPARE_WASM, e.g. the previous build) in the shipped arrangement; plus a wrong-signature
  flood on the shipped arrangement, whose upstream must receive nothing.
- path: the whole path without Kubernetes writes: Envoy (no filter) -> the replaced stack
  (bench/baseline/app.py: FastAPI + Pydantic + HMAC under Uvicorn); Envoy + filter + buffer ->
  bmh-sidecar; Envoy (no filter) -> bmh-sidecar; and the wrong-signature flood through the
  first two. The sidecar runs against a private kube-apiserver (kube-testbench) with
  BMH_RESOURCE_TYPES naming no resource of the body, so it verifies and validates the delivery
  and skips every resource (no API call); the baseline skips them too.

Everything listens on loopback ports picked here; every process started is stopped at the end.
Output: Markdown tables on stdout, raw figures as JSON in OUT_JSON (if set).
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "8"))
GROUPS = os.environ.get("BENCH_GROUPS", "stages path").split()
ONLY = os.environ.get("VARIANTS", "").split()  # restrict to these variant names
TICK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-0123456789abcdef0123456789"
# A resourceType the body does not have: the sidecar and the baseline skip every resource.
NO_BMH_TYPE = "BenchNoSuchType"

procs = []  # (name, Popen) we started, stopped at exit
work = tempfile.mkdtemp(prefix="bench-cpu-")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads, live and exited), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def http(method, url, body=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, what, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            if http("GET", url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready ({url}); log in {work}")


def start(name, argv, env_extra, logfile, cwd=None):
    env = dict(os.environ)
    env.update(env_extra)
    out = open(os.path.join(work, logfile), "wb")
    p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                         start_new_session=True)
    procs.append((name, p))
    return p


def stop_all():
    for name, p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for name, p in reversed(procs):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def render(args, path):
    out = subprocess.run([os.environ["RENDER"], "--loopback", *args], check=True,
                         capture_output=True, text=True).stdout
    with open(path, "w") as f:
        f.write(out)


def start_envoy(name, render_args, env_extra=None):
    port, admin = free_port(), free_port()
    cfg = os.path.join(work, f"{name}.yaml")
    render(["--listener-port", str(port), "--admin-port", str(admin), *render_args], cfg)
    env = {"WEBHOOK_SECRET": SECRET}
    env.update(env_extra or {})
    p = start(name, [os.environ["ENVOY_BIN"], "-c", cfg, "--concurrency", "1",
                     "--use-dynamic-base-id", "-l", "warning"], env, f"{name}.log")
    wait_http(f"http://127.0.0.1:{admin}/ready", f"envoy {name}", p)
    return {"pid": p.pid, "port": port, "admin": admin}


def upstream_envoy():
    """The stand-in upstream: an Envoy answering 200 by itself (render-envoy-config --stub-upstream)."""
    return start_envoy("upstream", ["--stub-upstream"])


def upstream_requests(up):
    _, text = http("GET", f"http://127.0.0.1:{up['admin']}/stats?filter=^http.upstream.downstream_rq_total$")
    m = re.search(rb"downstream_rq_total: (\d+)", text)
    return int(m.group(1)) if m else -1


def body_and_scripts():
    """The ~2.6 KB signed EVENT_START (RSA-4096 key), sent now; wrk scripts good/bad."""
    import hashlib
    import hmac
    body = subprocess.run([os.path.join(ROOT, "tools/fresh-event.py"),
                           os.path.join(ROOT, "filter/core/tests/fixtures/event-start-rsa.json")],
                          check=True, capture_output=True).stdout
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    bad = "sha256=" + "0" * 64
    scripts = {}
    for kind, s in (("good", sig), ("bad", bad)):
        path = os.path.join(work, f"{kind}.lua")
        with open(path, "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write(f"wrk.body = {json.dumps(body.decode())}\n")
            f.write('wrk.headers["content-type"] = "application/json"\n')
            f.write(f'wrk.headers["x-webhook-signature"] = {json.dumps(s)}\n')
        scripts[kind] = path
    return body, sig, scripts


def run_wrk(port, script):
    """One bounded wrk run; returns (requests, non2xx, req/s, p50, p99, wrk CPU s)."""
    argv = ["timeout", str(DURATION + 30), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s",
            "--latency", "-s", script, f"http://127.0.0.1:{port}/webhook"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"wrk failed ({p.returncode}):\n{out}")
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    errs = re.search(r"Socket errors: .*", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"requests": reqs, "non2xx": non2xx, "rps": rps, "p50": lat.get("50"),
            "p99": lat.get("99"), "wrk_cpu_s": ru.ru_utime + ru.ru_stime,
            "socket_errors": errs.group(0) if errs else None}


def profile(variant):
    """perf record of the variant's Envoy during one more wrk run; returns the report by DSO
    (Envoy's binary is stripped and V8 takes no flags from Envoy, so no symbol names: the split
    is Envoy's own code, V8's generated code (the wasm module and its call wrappers, anonymous
    memory), libc/ld and the kernel)."""
    data = os.path.join(work, f"perf-{variant['name'].replace(':', '-')}.data")
    rec = subprocess.Popen(["perf", "record", "-F", "1999", "-o", data, "-p",
                            str(variant["pids"]["envoy"]), "--", "sleep", str(DURATION)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_wrk(variant["port"], variant["script"])
    rec.wait(timeout=DURATION + 30)
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso",
                          "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    rows = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]
    sym = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso,sym",
                          "--percent-limit", "1.5"], capture_output=True, text=True).stdout
    rows += ["", "top symbols (where perf can name them):"]
    rows += [l for l in sym.splitlines() if l.strip() and not l.startswith("#")][:25]
    return rows


def measure(variant):
    pids = variant["pids"]
    before = {k: cpu_ticks(pid) for k, pid in pids.items()}
    check_before = variant["check"]() if variant.get("check") else None
    r = run_wrk(variant["port"], variant["script"])
    after = {k: cpu_ticks(pid) for k, pid in pids.items()}
    n = r["requests"]
    r["cpu_us"] = {k: (after[k] - before[k]) / TICK * 1e6 / n for k in pids}
    if variant.get("check"):
        r["upstream_received"] = variant["check"]() - check_before
    return r


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    body, sig, scripts = body_and_scripts()
    variants = []  # dicts: name, port, pids {role: pid}, script, expect, roles for the table

    def add(name, group, port, pids, script="good", expect="2xx", check=None, note=""):
        if ONLY and name not in ONLY:
            return
        variants.append({"name": name, "group": group, "port": port, "pids": pids,
                         "script": scripts[script], "expect": expect, "check": check,
                         "note": note})

    shipped = os.environ["FILTER_WASM"]
    bench_wasm = os.environ.get("BENCH_WASM")
    compare = os.environ.get("COMPARE_WASM")
    wanted = lambda n: not ONLY or n in ONLY

    if "stages" in GROUPS:
        up = upstream_envoy()
        upc = lambda: upstream_requests(up)
        ua = ["--upstream", f"127.0.0.1:{up['port']}"]
        stage_variants = [
            ("plain", ["--no-filter"], {}, "Envoy, no filter"),
            ("plain+buffer", ["--buffer-only"], {}, "Envoy + buffer filter, no wasm"),
        ]
        if bench_wasm:
            for stage in ("empty", "headers", "buffer", "hmac", "full"):
                stage_variants.append((f"stage:{stage}", ["--wasm", bench_wasm, "--host-env-key",
                                       "WEBHOOK_BENCH_STAGE"], {"WEBHOOK_BENCH_STAGE": stage},
                                       f"bench artifact, stage {stage}, + buffer"))
        compare_bench = os.environ.get("COMPARE_BENCH_WASM")
        # A previous build may not read today's plugin configuration: COMPARE_PLUGIN_CONFIG.
        compare_config = os.environ.get("COMPARE_PLUGIN_CONFIG")
        compare_args = ["--plugin-config", compare_config] if compare_config else []
        if compare_bench:
            for stage in ("empty", "headers", "buffer", "hmac", "full"):
                stage_variants.append((f"compare-stage:{stage}", ["--wasm", compare_bench, *compare_args,
                                       "--host-env-key", "WEBHOOK_BENCH_STAGE"],
                                       {"WEBHOOK_BENCH_STAGE": stage},
                                       f"{os.path.basename(compare_bench)}, stage {stage}, + buffer"))
        stage_variants.append(("shipped", ["--wasm", shipped], {}, "shipped filter + buffer"))
        stage_variants.append(("shipped-nobuffer", ["--wasm", shipped, "--no-buffer"], {},
                               "shipped filter, no buffer filter"))
        if compare:
            stage_variants.append(("compare", ["--wasm", compare, *compare_args], {},
                                   f"{os.path.basename(compare)} + buffer"))
        for name, args, env, note in stage_variants:
            if not wanted(name) and not wanted(f"flood:{name}"):
                continue
            e = start_envoy(name.replace(":", "-"), ua + args, env)
            add(name, "stages", e["port"], {"envoy": e["pid"], "upstream": up["pid"]},
                check=upc, note=note)
            if name in ("shipped", "compare"):
                add(f"flood:{name}", "stages", e["port"], {"envoy": e["pid"], "upstream": up["pid"]},
                    script="bad", expect="401", check=upc, note=f"wrong signature, {note}")

    if "path" in GROUPS:
        kube = start("kube-testbench", [os.environ["KUBE_TESTBENCH"]], {}, "kube-testbench.log")
        kubeconfig = None
        deadline = time.time() + 180
        while time.time() < deadline and kubeconfig is None:
            if kube.poll() is not None:
                raise SystemExit(f"kube-testbench exited; see {work}/kube-testbench.log")
            with open(os.path.join(work, "kube-testbench.log")) as f:
                m = re.search(r"^KUBECONFIG=(.*)$", f.read(), re.M)
            if m:
                kubeconfig = m.group(1)
            time.sleep(0.5)
        if kubeconfig is None:
            raise SystemExit("kube-testbench did not start in 180 s")
        sc_port = free_port()
        sidecar = start("sidecar", [os.environ["SIDECAR_BIN"]], {
            "KUBECONFIG": kubeconfig, "K8S_NAMESPACE": "default", "WEBHOOK_SECRET": SECRET,
            "SIDECAR_ADDR": f"127.0.0.1:{sc_port}", "BMH_RESOURCE_TYPES": NO_BMH_TYPE,
            "PROVISION_IMAGE": "http://images.example.org/ubuntu-24.04.qcow2",
            "PROVISION_IMAGE_CHECKSUM": "http://images.example.org/ubuntu-24.04.qcow2.sha256sum",
            "PROVISION_IMAGE_CHECKSUM_TYPE": "sha256", "PROVISION_IMAGE_FORMAT": "qcow2",
            "LOG_LEVEL": "ERROR"}, "sidecar.log")
        wait_http(f"http://127.0.0.1:{sc_port}/readyz", "sidecar", sidecar, 120)
        py_port = free_port()
        baseline = start("baseline", [os.environ["BASELINE_PYTHON"], "-m", "uvicorn", "app:app",
                                      "--host", "127.0.0.1", "--port", str(py_port),
                                      "--log-level", "warning", "--no-access-log"],
                         {"WEBHOOK_SECRET": SECRET, "BMH_RESOURCE_TYPES": NO_BMH_TYPE},
                         "baseline.log", cwd=os.path.join(ROOT, "bench/baseline"))
        wait_http(f"http://127.0.0.1:{py_port}/healthz", "baseline (uvicorn)", baseline)

        def sidecar_requests():
            _, text = http("GET", f"http://127.0.0.1:{sc_port}/metrics")
            return sum(int(float(v)) for v in re.findall(
                rb'^bmh_sidecar_http_request_duration_seconds_count\{[^}]*path="/webhook"[^}]*\} (\S+)', text, re.M))

        py = start_envoy("py", ["--no-filter", "--upstream", f"127.0.0.1:{py_port}"])
        fs = start_envoy("filter-sidecar", ["--wasm", shipped, "--upstream", f"127.0.0.1:{sc_port}"])
        ns = start_envoy("plain-sidecar", ["--no-filter", "--upstream", f"127.0.0.1:{sc_port}"])
        if compare:
            compare_config = os.environ.get("COMPARE_PLUGIN_CONFIG")
            compare_args = ["--plugin-config", compare_config] if compare_config else []
            fc = start_envoy("compare-sidecar", ["--wasm", compare, *compare_args,
                                                 "--upstream", f"127.0.0.1:{sc_port}"])
            add("path:envoy+compare>sidecar", "path", fc["port"], {"envoy": fc["pid"], "backend": sidecar.pid},
                note=f"Envoy + {os.path.basename(compare)} + buffer -> bmh-sidecar")
            add("flood:envoy+compare>sidecar", "path", fc["port"], {"envoy": fc["pid"], "backend": sidecar.pid},
                script="bad", expect="401", check=sidecar_requests,
                note=f"wrong signature, Envoy + {os.path.basename(compare)} + buffer -> bmh-sidecar")
        add("path:envoy>fastapi", "path", py["port"], {"envoy": py["pid"], "backend": baseline.pid},
            note="Envoy (no filter) -> replaced stack (FastAPI + Pydantic + HMAC)")
        add("path:envoy+filter>sidecar", "path", fs["port"], {"envoy": fs["pid"], "backend": sidecar.pid},
            note="Envoy + filter + buffer -> bmh-sidecar")
        add("path:envoy>sidecar", "path", ns["port"], {"envoy": ns["pid"], "backend": sidecar.pid},
            note="Envoy (no filter) -> bmh-sidecar")
        add("flood:envoy>fastapi", "path", py["port"], {"envoy": py["pid"], "backend": baseline.pid},
            script="bad", expect="401", note="wrong signature, Envoy -> replaced stack")
        add("flood:envoy+filter>sidecar", "path", fs["port"], {"envoy": fs["pid"], "backend": sidecar.pid},
            script="bad", expect="401", check=sidecar_requests,
            note="wrong signature, Envoy + filter + buffer -> bmh-sidecar")

    # Sanity: each variant answers the expected status before anything is measured.
    for v in variants:
        s = sig if v["script"] == scripts["good"] else "sha256=" + "0" * 64
        code, text = http("POST", f"http://127.0.0.1:{v['port']}/webhook", body,
                          {"content-type": "application/json", "x-webhook-signature": s})
        ok = (200 <= code < 300) if v["expect"] == "2xx" else str(code) == v["expect"]
        if not ok:
            raise SystemExit(f"{v['name']}: expected {v['expect']}, got {code}: {text[:300]!r}")

    log(f"bench/cpu: {len(variants)} variants, {ROUNDS} rounds x {DURATION} s, wrk -t1 -c{CONNECTIONS}; "
        f"load average {loadavg()}")
    results = {v["name"]: [] for v in variants}
    load_start = loadavg()
    print(f"load average at start: {load_start}\n")
    print("| round | variant | req/s | requests | non-2xx | CPU µs/request by process | p50 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for rnd in range(1, ROUNDS + 1):
        for v in variants:
            r = measure(v)
            results[v["name"]].append(r)
            cpu = ", ".join(f"{k} {x:.0f}" for k, x in r["cpu_us"].items())
            print(f"| {rnd} | {v['name']} | {r['rps']:.0f} | {r['requests']} | {r['non2xx']} | "
                  f"{cpu} | {r['p50']} | {r['p99']} |", flush=True)
            if v["expect"] == "2xx" and r["non2xx"]:
                raise SystemExit(f"{v['name']}: {r['non2xx']} non-2xx answers")
            if v["expect"] != "2xx" and r["non2xx"] != r["requests"]:
                raise SystemExit(f"{v['name']}: only {r['non2xx']} of {r['requests']} refused")
            if v["expect"] != "2xx" and r.get("upstream_received"):
                raise SystemExit(f"FAIL {v['name']}: {r['upstream_received']} unauthenticated "
                                 "requests reached the upstream")
    load_end = loadavg()

    med = lambda xs: statistics.median(xs)
    print(f"\nload average at end: {load_end}\n")
    print(f"Medians over {ROUNDS} rounds (wrk -t1 -c{CONNECTIONS} -d{DURATION}s):\n")
    print("| variant | what | req/s | Envoy CPU µs/req | upstream/backend CPU µs/req | total µs/req | upstream received |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for v in variants:
        rs = results[v["name"]]
        envoy = med([r["cpu_us"]["envoy"] for r in rs])
        other_key = "backend" if "backend" in rs[0]["cpu_us"] else "upstream"
        other = med([r["cpu_us"][other_key] for r in rs])
        rps = med([r["rps"] for r in rs])
        recv = sum(r.get("upstream_received", 0) or 0 for r in rs) if v.get("check") else None
        summary[v["name"]] = {"rps": rps, "envoy_us": envoy, "other_us": other,
                              "total_us": med([sum(r["cpu_us"].values()) for r in rs])}
        recv_s = "" if recv is None or v["expect"] == "2xx" else str(recv)
        print(f"| {v['name']} | {v['note']} | {rps:.0f} | {envoy:.1f} | {other:.1f} | "
              f"{summary[v['name']]['total_us']:.1f} | {recv_s} |")
    if "plain" in summary:
        base = summary["plain"]
        print("\nExtra Envoy CPU per request over plain Envoy, and throughput ratio:\n")
        print("| variant | extra Envoy µs/req | req/s ratio |")
        print("|---|---|---|")
        for name, s in summary.items():
            if name != "plain" and not name.startswith("flood"):
                print(f"| {name} | {s['envoy_us'] - base['envoy_us']:+.1f} | {s['rps'] / base['rps']:.3f} |")
    if "path:envoy>fastapi" in summary:
        base = summary["path:envoy>fastapi"]
        print("\nWhole path, CPU per request relative to the replaced stack:\n")
        print("| variant | total µs/req | × replaced stack |")
        print("|---|---|---|")
        for name in ("path:envoy>fastapi", "path:envoy+filter>sidecar", "path:envoy>sidecar",
                     "path:envoy+compare>sidecar"):
            if name in summary:
                print(f"| {name} | {summary[name]['total_us']:.0f} | {summary[name]['total_us'] / base['total_us']:.2f} |")
        if "flood:envoy>fastapi" in summary and "flood:envoy+filter>sidecar" in summary:
            a, b = summary["flood:envoy>fastapi"], summary["flood:envoy+filter>sidecar"]
            print(f"| bad-signature flood: filter {b['total_us']:.0f} vs replaced stack "
                  f"{a['total_us']:.0f} | | {b['total_us'] / a['total_us']:.2f} |")
            if "flood:envoy+compare>sidecar" in summary:
                c = summary["flood:envoy+compare>sidecar"]
                print(f"| bad-signature flood: compared artifact {c['total_us']:.0f} | | "
                      f"{c['total_us'] / a['total_us']:.2f} |")
        if "path:envoy>sidecar" in summary:
            base = summary["path:envoy>sidecar"]
            for name in ("path:envoy+filter>sidecar", "path:envoy+compare>sidecar"):
                if name in summary:
                    s = summary[name]
                    print(f"\n{name}: extra Envoy CPU over Envoy without filter "
                          f"{s['envoy_us'] - base['envoy_us']:+.1f} µs/req, req/s ratio "
                          f"{s['rps'] / base['rps']:.3f}")
    for name in os.environ.get("PERF_VARIANTS", "").split():
        v = next((v for v in variants if v["name"] == name), None)
        if v is None:
            continue
        print(f"\nperf record -F 1999 -p <envoy of {name}> during one more {DURATION} s wrk run, by DSO:\n")
        print("```")
        print("\n".join(profile(v)))
        print("```")
    if os.environ.get("OUT_JSON"):
        with open(os.environ["OUT_JSON"], "w") as f:
            json.dump({"load_start": load_start, "load_end": load_end, "duration": DURATION,
                       "rounds": ROUNDS, "connections": CONNECTIONS,
                       "results": {k: [{kk: vv for kk, vv in r.items()} for r in rs]
                                   for k, rs in results.items()},
                       "summary": summary}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        if os.environ.get("KEEP_WORK"):
            log(f"bench/cpu: logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
