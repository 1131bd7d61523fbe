//! `kube-testbench`: starts a private etcd + kube-apiserver with the project's BMH CRD (the same
//! bench the tests use), prints where to reach it, and runs until Ctrl-C / SIGTERM; then stops
//! both processes and removes its temp dir. For the local run without a cluster.
//!
//! Output (stdout, one `KEY=value` per line, then nothing until shutdown):
//! `KUBECONFIG=<admin kubeconfig>`, `KUBE_URL=<https://127.0.0.1:port>`, `KUBE_CA=<ca path>`,
//! `KUBE_DIR=<temp dir with logs>`. Progress and errors go to stderr.

use std::io::Write;
use std::process::ExitCode;

use kube_harness::ApiServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: kube-testbench   (no arguments; KUBE_TESTBIN selects the binaries)");
        return ExitCode::from(2);
    }
    eprintln!("kube-testbench: starting etcd + kube-apiserver ...");
    let server = match ApiServer::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-testbench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let printed = writeln!(
        out,
        "KUBECONFIG={}\nKUBE_URL={}\nKUBE_CA={}\nKUBE_DIR={}",
        server.admin_kubeconfig().display(),
        server.url(),
        server.ca_cert_path().display(),
        server.dir().display()
    )
    .and_then(|()| out.flush());
    drop(out);
    if let Err(e) = printed {
        eprintln!("kube-testbench: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("kube-testbench: ready (BareMetalHost CRD installed); Ctrl-C or SIGTERM stops it");
    kube_harness::shutdown_signal().await;
    eprintln!("kube-testbench: stopping");
    drop(server);
    ExitCode::SUCCESS
}
