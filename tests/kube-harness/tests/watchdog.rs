//! A test binary that dies without running destructors (SIGKILL) leaves no etcd,
//! kube-apiserver or baremetal-operator behind: the watchdogs kill them and remove the temp
//! dirs.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: &str) -> bool {
    // A killed child of the dead process is reaped by init; until then it is a zombie ("Z").
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

/// Starts `kube-testbench` with `args` and reads its `KEY=value` lines up to `last_key`.
fn start_bench(args: &[&str], last_key: &str) -> (Child, HashMap<String, String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-testbench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = HashMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((k, v)) = line.split_once('=') {
            seen.insert(k.to_string(), v.to_string());
            if k == last_key {
                return (child, seen);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kube-testbench {args:?} ended before printing {last_key}: {seen:?}");
}

/// SIGKILLs the bench (no Drop runs in it) and waits, bounded, for `pids` to die and `dirs`
/// to be removed.
fn kill_and_expect_cleanup(mut child: Child, pids: &[String], dirs: &[PathBuf]) {
    assert!(pids.iter().all(|p| alive(p)), "{pids:?} not all running");
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    while (pids.iter().any(|p| alive(p)) || dirs.iter().any(|d| d.exists()))
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let survivors: Vec<&String> = pids.iter().filter(|p| alive(p)).collect();
    assert!(survivors.is_empty(), "{survivors:?} survived their owner");
    for d in dirs {
        assert!(!d.exists(), "temp dir {} left behind", d.display());
    }
}

#[test]
fn killed_owner_leaves_no_processes_behind() {
    let (child, out) = start_bench(&[], "KUBE_DIR");
    let dir = PathBuf::from(&out["KUBE_DIR"]);
    let pids: Vec<String> = std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver pids: {pids:?}");
    kill_and_expect_cleanup(child, &pids, &[dir]);
}

#[test]
fn killed_owner_leaves_no_baremetal_operator_behind() {
    if kube_harness::bmo_build().unwrap().is_none() {
        eprintln!("SKIPPED: the real baremetal-operator is not available (see above)");
        return;
    }
    let (child, out) = start_bench(&["--bmo"], "BMO_LOG");
    let kube_dir = PathBuf::from(&out["KUBE_DIR"]);
    let mut pids: Vec<String> = std::fs::read_to_string(kube_dir.join("pids"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    pids.push(out["BMO_PID"].clone());
    kill_and_expect_cleanup(child, &pids, &[kube_dir, PathBuf::from(&out["BMO_DIR"])]);
}
