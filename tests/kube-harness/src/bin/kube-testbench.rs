//! `kube-testbench [--bmo]`: starts a private etcd + kube-apiserver (the same bench the tests
//! use), prints where to reach it, and runs until Ctrl-C / SIGTERM; then stops everything it
//! started and removes its temp dirs. For the local run without a cluster.
//!
//! Without flags the server has the project's BareMetalHost CRD. With `--bmo` it has every CRD
//! of the baremetal-operator source (`BMO_SRC`), and the REAL baremetal-operator (fixture
//! provisioner: no machine is touched) runs for a new namespace, with its validating webhook.
//!
//! Output (stdout, one `KEY=value` per line, then nothing until shutdown):
//! `KUBECONFIG=<admin kubeconfig>`, `KUBE_URL=<https://127.0.0.1:port>`, `KUBE_CA=<ca path>`,
//! `KUBE_DIR=<temp dir with logs>`; with `--bmo` also `BMO_NAMESPACE=`, `BMO_PID=`,
//! `BMO_DIR=<its temp dir>`, `BMO_LOG=`. Progress and errors go to stderr.

use std::io::Write;
use std::process::ExitCode;

use kube_harness::{ApiServer, BmoProcess, Crds, bmo_build};

const USAGE: &str = "usage: kube-testbench [--bmo]   (KUBE_TESTBIN selects the API server \
                     binaries; BMO_BIN/BMO_SRC the baremetal-operator)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_bmo = match args.as_slice() {
        [] => false,
        [flag] if flag == "--bmo" => true,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(with_bmo).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-testbench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(with_bmo: bool) -> Result<(), Box<dyn std::error::Error>> {
    let build = if with_bmo {
        Some(bmo_build()?.ok_or("--bmo: the baremetal-operator is not available (see above)")?)
    } else {
        None
    };
    eprintln!("kube-testbench: starting etcd + kube-apiserver ...");
    let server = match build {
        Some(b) => ApiServer::start_with(Crds::Bmo(b.src.clone())).await?,
        None => ApiServer::start().await?,
    };
    let mut lines = vec![
        format!("KUBECONFIG={}", server.admin_kubeconfig().display()),
        format!("KUBE_URL={}", server.url()),
        format!("KUBE_CA={}", server.ca_cert_path().display()),
        format!("KUBE_DIR={}", server.dir().display()),
    ];
    let mut bmo = None;
    if let Some(b) = build {
        let ns = server.create_namespace("bmo").await?;
        eprintln!(
            "kube-testbench: starting baremetal-operator {} for namespace {ns} ...",
            b.short_commit()
        );
        let p = BmoProcess::start(b, &server, &ns, 5).await?;
        lines.push(format!("BMO_NAMESPACE={ns}"));
        lines.push(format!("BMO_PID={}", p.pid()));
        lines.push(format!("BMO_DIR={}", p.dir().display()));
        lines.push(format!("BMO_LOG={}", p.log_path().display()));
        bmo = Some(p);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", lines.join("\n"))?;
    out.flush()?;
    drop(out);
    eprintln!("kube-testbench: ready; Ctrl-C or SIGTERM stops it");
    kube_harness::shutdown_signal().await;
    eprintln!("kube-testbench: stopping");
    if let Some(p) = bmo
        && let Err(e) = p.stop().await
    {
        eprintln!("kube-testbench: stopping baremetal-operator: {e}");
    }
    drop(server);
    Ok(())
}
