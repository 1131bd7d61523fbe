//! A test binary that dies without running destructors (SIGKILL) leaves no etcd or
//! kube-apiserver behind: the watchdog kills them and removes the temp dir.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: &str) -> bool {
    // A killed child of the dead process is reaped by init; until then it is a zombie ("Z").
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[test]
fn killed_owner_leaves_no_processes_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-testbench"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut dir = None;
    for line in lines.by_ref().take(4) {
        let line = line.unwrap();
        if let Some(d) = line.strip_prefix("KUBE_DIR=") {
            dir = Some(PathBuf::from(d));
        }
    }
    let dir = dir.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("kube-testbench printed no KUBE_DIR")
    });
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver pids: {pids:?}");
    assert!(pids.iter().all(|p| alive(p)));

    child.kill().unwrap(); // SIGKILL: no Drop runs in the owner
    child.wait().unwrap();

    let start = Instant::now();
    while (pids.iter().any(|p| alive(p)) || dir.exists())
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !pids.iter().any(|p| alive(p)),
        "etcd/kube-apiserver survived their owner"
    );
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
}
