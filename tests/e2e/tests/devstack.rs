//! `make run`'s program decides which Kubernetes to use before starting anything
//! (`devstack --plan`): a set `KUBECONFIG` never selects a real cluster without the explicit
//! opt-in, and the run says so.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output};

fn plan(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devstack"));
    cmd.arg("--plan")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_kubeconfig_without_the_opt_in_plans_a_local_api_server_and_says_so() {
    let o = plan(&[
        ("KUBECONFIG", "/nonexistent/prod.kubeconfig"),
        ("K8S_NAMESPACE", "metal3"),
    ]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with("plan: kubernetes=local (a private kube-apiserver + etcd on loopback)\n"),
        "{out}"
    );
    assert!(
        out.contains("note: KUBECONFIG is set (/nonexistent/prod.kubeconfig), but make run uses a local API server"),
        "{out}"
    );
    assert!(out.contains("make run CLUSTER=1"), "{out}");
}

#[test]
fn the_opt_in_plans_the_cluster() {
    let o = plan(&[
        ("BMH_WEBHOOK_USE_CLUSTER", "1"),
        ("KUBECONFIG", "/nonexistent/prod.kubeconfig"),
        ("K8S_NAMESPACE", "metal3"),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "plan: kubernetes=cluster kubeconfig=/nonexistent/prod.kubeconfig namespace=metal3 (your cluster and its Metal3)\n"
    );
}

#[test]
fn an_unclear_opt_in_stops_before_anything_starts() {
    let o = plan(&[("BMH_WEBHOOK_USE_CLUSTER", "maybe"), ("KUBECONFIG", "/k")]);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BMH_WEBHOOK_USE_CLUSTER=\"maybe\""), "{err}");
}
