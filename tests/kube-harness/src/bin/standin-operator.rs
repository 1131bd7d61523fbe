//! `standin-operator --kubeconfig PATH --namespace NS [--step-delay-ms N]`
//!
//! Runs the stand-in Metal3 operator (a SIMULATION, see `kube_harness::operator`) against any
//! API server until Ctrl-C / SIGTERM. Used by the local demo run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kube_harness::{StandInConfig, StandInOperator, client_from_kubeconfig};

const USAGE: &str = "usage: standin-operator --kubeconfig PATH --namespace NS [--step-delay-ms N]";

struct Args {
    kubeconfig: PathBuf,
    namespace: String,
    step_delay: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut kubeconfig = None;
    let mut namespace = None;
    let mut step_delay = kube_harness::operator::DEFAULT_STEP_DELAY;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = Some(value()?),
            "--step-delay-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|_| format!("bad --step-delay-ms {v}"))?;
                step_delay = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.ok_or(USAGE)?,
        namespace: namespace.ok_or(USAGE)?,
        step_delay,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    eprintln!(
        "standin-operator: SIMULATION of the Metal3 baremetal-operator. No hardware is touched:\n\
         it only moves BareMetalHost status in namespace {:?} (available -> provisioning -> \n\
         provisioned -> deprovisioning -> available), step delay {:?}.",
        args.namespace, args.step_delay
    );
    let client = match client_from_kubeconfig(&args.kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("standin-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _operator = StandInOperator::start_with(
        client,
        &args.namespace,
        StandInConfig {
            step_delay: args.step_delay,
            ..StandInConfig::default()
        },
    );
    kube_harness::shutdown_signal().await;
    eprintln!("standin-operator: stopping");
    ExitCode::SUCCESS
}
