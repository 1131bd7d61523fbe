//! Prints an Envoy configuration. Without arguments: the deployment configuration committed as
//! `envoy/envoy.yaml`. The benchmark script renders its variants with options:
//!
//! ```text
//! render-envoy-config [--loopback] [--listener-port P] [--admin-port A] [--upstream IP:PORT]
//!                     [--wasm PATH | --no-filter] [--no-buffer] [--plugin-config JSON]
//!                     [--buffer-only] [--host-env-key NAME]... [--stats-port S]
//! render-envoy-config --stub-upstream --listener-port P --admin-port A
//! ```
//! `--loopback` also drops the metrics listener (`--stats-port` puts it back on loopback).
//! `--buffer-only`: no wasm filter, the buffer filter alone (prices it). `--host-env-key`
//! exposes one more variable of Envoy's environment to the VM (the benchmark artifact's
//! `WEBHOOK_BENCH_STAGE`). `--stub-upstream`: instead, the benchmarks' upstream, an Envoy that
//! answers 200 by itself on loopback P (`envoy_harness::stub_upstream`).

use std::path::PathBuf;
use std::process::ExitCode;

use envoy_harness::{EnvoyConfig, stub_upstream};

fn main() -> ExitCode {
    let mut cfg = EnvoyConfig::deployment();
    let mut stub = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        let ok = match arg.as_str() {
            "--loopback" => {
                // A local run (benchmarks): no metrics listener unless --stats-port follows.
                cfg.listener_address = "127.0.0.1".into();
                cfg.stats_port = None;
                true
            }
            "--stats-port" => value().parse().map(|p| cfg.stats_port = Some(p)).is_ok(),
            "--listener-port" => value().parse().map(|p| cfg.listener_port = p).is_ok(),
            "--admin-port" => value().parse().map(|p| cfg.admin_port = p).is_ok(),
            "--upstream" => value().parse().map(|a| cfg.upstream = a).is_ok(),
            "--wasm" => {
                cfg.wasm_path = Some(PathBuf::from(value()));
                true
            }
            "--no-filter" => {
                cfg.wasm_path = None;
                true
            }
            "--buffer-only" => {
                cfg.wasm_path = None;
                cfg.buffer_without_filter = true;
                true
            }
            "--no-buffer" => {
                cfg.buffer_after_filter = false;
                true
            }
            "--host-env-key" => {
                cfg.host_env_keys.push(value());
                true
            }
            "--stub-upstream" => {
                stub = true;
                true
            }
            "--plugin-config" => {
                cfg.plugin_config = value();
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("render-envoy-config: bad argument {arg:?} (see the source for usage)");
            return ExitCode::from(2);
        }
    }
    if stub {
        print!("{}", stub_upstream(cfg.listener_port, cfg.admin_port));
    } else {
        print!("{}", cfg.render());
    }
    ExitCode::SUCCESS
}
