//! `bmh-sidecar`: parse configuration, start JSON logs, run.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match bmh_sidecar::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bmh-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    bmh_sidecar::telemetry::init(&config.log_level);
    match bmh_sidecar::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "bmh-sidecar failed");
            ExitCode::FAILURE
        }
    }
}
