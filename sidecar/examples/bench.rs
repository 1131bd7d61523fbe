//! Benchmark driver for `bench/sidecar/run.sh`: runs the built sidecar binary (`SIDECAR_BIN`)
//! against a private real kube-apiserver and prints its figures as Markdown table rows.
//!
//! Measures: start-to-ready, idle RSS, POST /webhook → 200 latency for 3-resource events,
//! RSS with 1,000 BMHs and 100 reservations (300 hosts) in flight, and `provisioned` →
//! notification latency (the driver writes the status, as Metal3 would).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube_harness::{ApiServer, NotificationSink, create_bmh, set_bmh_status};
use serde_json::{Value, json};

const HOSTS: usize = 1000;
const EVENTS: usize = 100;
const NOTIFY_SAMPLES: usize = 50;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn event(template: &Value, k: usize) -> Value {
    let mut ev = template.clone();
    ev["userId"] = json!(format!("bench-user-{k}"));
    for j in 0..3 {
        let id = (3 * k + j) as i64;
        ev["events"][j]["eventId"] = json!(format!("bench-{k}-{j}"));
        ev["events"][j]["resourceId"] = json!(id);
        ev["events"][j]["resourceName"] = json!(format!("bench host {id}"));
        ev["events"][j]["resourceType"] = json!("Server");
        ev["events"][j]["eventStart"] = json!("2025-06-08T15:00:00Z");
        ev["events"][j]["eventEnd"] = json!(END.to_string());
    }
    ev
}

/// Every benchmark reservation ends a day after the run starts.
static END: std::sync::LazyLock<jiff::Timestamp> =
    std::sync::LazyLock::new(|| jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24));

/// The inbound secret (the sidecar verifies every delivery, as behind the filter).
const SECRET: &str = "bench-secret-0123456789abcdef-0123";

#[tokio::main]
async fn main() {
    let bin = std::env::var("SIDECAR_BIN").expect("SIDECAR_BIN must point to the built sidecar");
    let server = ApiServer::start().await.unwrap();
    let admin = server.client().await.unwrap();
    let ns = server.create_namespace("bench").await.unwrap();
    server
        .apply_file("k8s/base/rbac.yaml", &ns, false)
        .await
        .unwrap();
    let kubeconfig = server
        .service_account_kubeconfig(&ns, "bmh-webhook-sidecar")
        .await
        .unwrap();
    let sink = NotificationSink::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = |method: &'static str, path: &str, body: Vec<u8>| {
        let sig = webhook_core::signature::signature_header_value(SECRET.as_bytes(), &body);
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json")
            .header("x-webhook-signature", sig)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let http = http.clone();
        async move {
            let r = http.request(req).await.ok()?;
            let status = r.status().as_u16();
            let _ = r.into_body().collect().await;
            Some(status)
        }
    };

    // Start-to-ready: spawn → first 200 on /readyz.
    let t0 = Instant::now();
    let mut child = Command::new(&bin)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("K8S_NAMESPACE", &ns)
        .env("SIDECAR_ADDR", format!("127.0.0.1:{port}"))
        .env("PROVISION_IMAGE", "http://images.example/bench.qcow2")
        .env(
            "PROVISION_IMAGE_CHECKSUM",
            "http://images.example/bench.qcow2.sha256sum",
        )
        .env("NOTIFY_URL", sink.url())
        .env("WEBHOOK_SECRET", SECRET)
        .env("LOG_LEVEL", "WARNING")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut ready = None;
    for _ in 0..4000 {
        if call("GET", "/readyz", vec![]).await == Some(200) {
            ready = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = ready.expect("sidecar never became ready");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);

    // 1,000 labelled hosts, all `available`.
    futures::stream::iter(0..HOSTS)
        .map(|i| {
            let admin = admin.clone();
            let ns = ns.clone();
            async move {
                let id = i.to_string();
                let name = format!("bench-host-{i}");
                create_bmh(
                    &admin,
                    &ns,
                    &name,
                    &[("reservations.polito.it/resource-id", &id)],
                )
                .await
                .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_1000 = rss_kib(pid);

    // POST → 200, one at a time, 3 Server resources each. Hosts 900.. warm up.
    let template: Value =
        serde_json::from_str(include_str!("../tests/fixtures/event-start.json")).unwrap();
    for k in 300..305 {
        let body = serde_json::to_vec(&event(&template, k)).unwrap();
        assert_eq!(call("POST", "/webhook", body).await, Some(200));
    }
    let mut lat = Vec::with_capacity(EVENTS);
    for k in 0..EVENTS {
        let body = serde_json::to_vec(&event(&template, k)).unwrap();
        let t = Instant::now();
        let st = call("POST", "/webhook", body).await;
        lat.push(t.elapsed());
        assert_eq!(st, Some(200));
    }
    lat.sort();
    // The same, spaced so the controller's own writes for the previous event are done
    // (deliveries of a reservation system arrive seconds apart, not back to back).
    let mut spaced = Vec::with_capacity(EVENTS);
    for k in 100..100 + EVENTS / 2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = serde_json::to_vec(&event(&template, k)).unwrap();
        let t = Instant::now();
        let st = call("POST", "/webhook", body).await;
        spaced.push(t.elapsed());
        assert_eq!(st, Some(200));
    }
    spaced.sort();

    // Baseline: the API server's own cost for the same writes (3 parallel conditional-free
    // merge patches of one annotation, as admin, on hosts nobody else touches).
    let api = kube_harness::bmh_api(&admin, &ns);
    let mut base = Vec::with_capacity(EVENTS);
    for k in 0..EVENTS {
        let t = Instant::now();
        futures::future::join_all((0..3).map(|j| {
            let api = api.clone();
            async move {
                let name = format!("bench-host-{}", 500 + 3 * (k % 100) + j);
                let patch = json!({"metadata": {"annotations": {"bench/probe": k.to_string()}}});
                api.patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
            }
        }))
        .await;
        base.push(t.elapsed());
    }
    base.sort();

    // Let the controller write every spec (nobody advances status: all stay in flight).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut busy = 0;
    for _ in 0..10 {
        busy = busy.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // provisioned → notification received.
    let mut notify = Vec::with_capacity(NOTIFY_SAMPLES);
    for i in 0..NOTIFY_SAMPLES {
        let name = format!("bench-host-{i}");
        let before = sink.received().len();
        let t = Instant::now();
        set_bmh_status(
            &admin,
            &ns,
            &name,
            json!({"provisioning": {"state": "provisioned"}}),
        )
        .await
        .unwrap();
        sink.wait_for(before + 1, Duration::from_secs(30))
            .await
            .unwrap();
        notify.push(t.elapsed());
    }
    notify.sort();

    let _ = child.kill();
    let _ = child.wait();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);

    println!("| metric | result | target |");
    println!("|---|---|---|");
    println!(
        "| POST /webhook → 200, 3 Server resources, {EVENTS} sequential events | p50 {} / p99 {} | ≤ 30 ms |",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    println!(
        "| POST /webhook → 200, 3 Server resources, {} events 300 ms apart | p50 {} / p99 {} | ≤ 30 ms |",
        EVENTS / 2,
        ms(pct(&spaced, 0.5)),
        ms(pct(&spaced, 0.99))
    );
    println!(
        "| baseline: 3 parallel merge patches straight to the API server | p50 {} / p99 {} | |",
        ms(pct(&base, 0.5)),
        ms(pct(&base, 0.99))
    );
    println!(
        "| status `provisioned` → notification received ({NOTIFY_SAMPLES} hosts) | p50 {} / p99 {} | ≤ 100 ms |",
        ms(pct(&notify, 0.5)),
        ms(pct(&notify, 0.99))
    );
    println!(
        "| RSS, {HOSTS} BMHs watched, {} reservations ({} hosts) in flight | {:.1} MiB | ≤ 50 MB |",
        EVENTS + EVENTS / 2,
        (EVENTS + EVENTS / 2) * 3,
        busy as f64 / 1024.0
    );
    println!(
        "| idle RSS (empty namespace) | {:.1} MiB | ≤ 15 MB |",
        idle as f64 / 1024.0
    );
    println!(
        "| idle RSS, {HOSTS} BMHs watched | {:.1} MiB | |",
        idle_1000 as f64 / 1024.0
    );
    println!(
        "| stripped release binary | {:.1} MiB | ≤ 15 MB |",
        size as f64 / 1024.0 / 1024.0
    );
    println!("| start → /readyz 200 | {} | ≤ 200 ms |", ms(ready));
    drop(server);
}
