//! Secrets are never logged: the whole system at its most verbose (Envoy
//! `-l trace`, the filter's VM included; the sidecar `LOG_LEVEL=trace`, hyper and kube
//! included; the stand-in operator, the notification sink and the kube client in this process
//! at TRACE), driven through every path: accepted START and END, every rejection at the edge,
//! rejections by the sidecar itself, the previous secret of a rotation, notifications refused
//! then retried, a failed provisioning and a release. Then every line of every log is searched
//! for the webhook secrets, the notification secret and the SSH public keys of the events.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Stack, StackOptions, fixture, fresh, post_webhook, sign};
use envoy_harness::http;
use kube::api::{Patch, PatchParams};
use kube_harness::{bmh_api, wait_for_state};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// Distinctive values, so a hit is never a coincidence.
const SECRET: &str = "log-probe-current-secret-7f3a9c2e51d84b06";
const PREVIOUS: &str = "log-probe-previous-secret-c41e8d7b2a9f6053";
const NOTIFY_SECRET: &str = "log-probe-notify-secret-93b1f0e7d6c2a845";

/// A second user's key (the 4096-bit RSA key of the core fixtures).
const RSA_EVENT: &[u8] = include_bytes!("../../../filter/core/tests/fixtures/event-start-rsa.json");

/// Everything logged in this process (stand-in operator, sink, kube client), at TRACE.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The key's base64 blob: what must not appear, in any quoting.
fn key_blob(key: &str) -> String {
    key.split_whitespace().nth(1).unwrap_or(key).to_owned()
}

/// `s` as it would read inside any base64 text (the userData Secret is base64 in API requests
/// and responses): the encodings at the three byte alignments, without their edge groups.
fn base64_forms(s: &str) -> Vec<String> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..3)
        .map(|pad| {
            let bytes: Vec<u8> = std::iter::repeat_n(b'x', pad).chain(s.bytes()).collect();
            let mut out = String::new();
            for c in bytes.chunks(3) {
                let n = c
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..=c.len() {
                    out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
                }
            }
            out[4..out.len() - 4].to_owned()
        })
        .collect()
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Waits (bounded) until the sink has received a notification with this `outcome`. The sink
/// records refused deliveries too, so a retried notification appears more than once.
async fn wait_outcome(sink: &kube_harness::NotificationSink, outcome: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if sink
            .received()
            .iter()
            .any(|n| n.json().is_ok_and(|v| v["metadata"]["outcome"] == outcome))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no {outcome} notification in {WAIT:?}");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// An expected status, a body and its headers.
type Reject = (u16, Vec<u8>, Vec<(&'static str, String)>);

/// `body` sent through Envoy with `headers` (content-length added).
async fn send(stack: &Stack, body: Vec<u8>, headers: Vec<(&'static str, String)>) -> u16 {
    let addr = stack.listener();
    blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_webhook(addr, &body, &h).unwrap().status
    })
    .await
}

/// A START for resource 3 (`lab-server-a2`) only, by another user with an RSA key.
fn rsa_start_for_resource_3() -> Vec<u8> {
    let mut v = json(RSA_EVENT);
    let mut r = v["events"][0].clone();
    r["eventId"] = json!("301");
    r["resourceId"] = json!(3);
    r["resourceName"] = json!("Lab Server A2");
    r["resourceType"] = json!("Server");
    v["events"] = json!([r]);
    v["eventCount"] = json!(1);
    fresh(&serde_json::to_vec_pretty(&v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_and_no_ssh_key_is_ever_logged_at_the_most_verbose_levels() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();

    let stack = Stack::start(StackOptions {
        secret: SECRET.into(),
        previous_secret: Some(PREVIOUS.into()),
        log_level: "trace".into(),
        envoy_log_level: "trace".into(),
        sidecar_env: vec![
            ("NOTIFY_SECRET".into(), NOTIFY_SECRET.into()),
            ("RESYNC_SECONDS".into(), "2".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let admin = stack.admin.clone().unwrap();
    let ns = stack.namespace.clone();
    let sink = stack.sink.as_ref().unwrap();
    let json_ct = || ("content-type", "application/json".to_owned());

    // Accepted START (ed25519 key), signed with the current secret; the sink first refuses the
    // notification (500), so it is retried.
    sink.respond_with(500);
    let start = fresh(&fixture("event-start.json").unwrap());
    let ed_key = json(&start)["sshPublicKey"].as_str().unwrap().to_owned();
    let r = stack.send_signed(start.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_for_state(&admin, &ns, "lab-server-a1", "provisioned", WAIT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.respond_with(200);
    wait_outcome(sink, "provisioned").await;

    // The same START again, signed with the previous secret (rotation): a duplicate.
    let sig = sign(PREVIOUS, &start);
    let status = send(
        &stack,
        start.clone(),
        vec![json_ct(), ("x-webhook-signature", sig)],
    )
    .await;
    assert_eq!(status, 200);

    // Every rejection at the edge.
    let addr = stack.listener();
    let good_sig = sign(SECRET, &start);
    let head = http::head("GET", "/webhook", &[("x-webhook-signature", &good_sig)]);
    let r = blocking(move || http::send(addr, &[head.as_bytes()]).unwrap()).await;
    assert_eq!(r.status, 405);
    let rejects: Vec<Reject> = vec![
        (
            415,
            start.clone(),
            vec![
                ("content-type", "text/plain".into()),
                ("x-webhook-signature", good_sig.clone()),
            ],
        ),
        (
            413,
            vec![b' '; 70_000],
            vec![json_ct(), ("x-webhook-signature", good_sig.clone())],
        ),
        (401, start.clone(), vec![json_ct()]),
        (
            401,
            start.clone(),
            vec![json_ct(), ("x-webhook-signature", "sha256=zz".into())],
        ),
        (
            401,
            start.clone(),
            vec![
                json_ct(),
                (
                    "x-webhook-signature",
                    sign("guessed-secret-0123456789abcdef01", &start),
                ),
            ],
        ),
        (
            400,
            b"{\"eventType\":".to_vec(),
            vec![
                json_ct(),
                ("x-webhook-signature", sign(SECRET, b"{\"eventType\":")),
            ],
        ),
        {
            let mut v = json(&start);
            v["userId"] = json!("");
            let b = serde_json::to_vec(&v).unwrap();
            let s = sign(SECRET, &b);
            (422, b, vec![json_ct(), ("x-webhook-signature", s)])
        },
        {
            let b = fixture("event-start.json").unwrap(); // its reservations ended in 2025
            let s = sign(SECRET, &b);
            (422, b, vec![json_ct(), ("x-webhook-signature", s)])
        },
    ];
    for (want, body, headers) in rejects {
        assert_eq!(send(&stack, body, headers).await, want);
    }

    // Rejections by the sidecar itself (reached without the filter): unsigned, wrong secret.
    let sidecar = stack.sidecar.addr();
    let s2 = start.clone();
    let statuses = blocking(move || {
        let unsigned = post_webhook(sidecar, &s2, &[("content-type", "application/json")])
            .unwrap()
            .status;
        let wrong = sign("guessed-secret-0123456789abcdef01", &s2);
        let wrong = post_webhook(
            sidecar,
            &s2,
            &[
                ("content-type", "application/json"),
                ("x-webhook-signature", &wrong),
            ],
        )
        .unwrap()
        .status;
        (unsigned, wrong)
    })
    .await;
    assert_eq!(statuses, (401, 401));

    // A failed provisioning (the stand-in fails every attempt on lab-server-a2), notified.
    bmh_api(&admin, &ns)
        .patch(
            "lab-server-a2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                kube_harness::operator::FAIL_ANNOTATION: "disk on fire"}}})),
        )
        .await
        .unwrap();
    let rsa_start = rsa_start_for_resource_3();
    let rsa_key = json(&rsa_start)["sshPublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = stack.send_signed(rsa_start).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_outcome(sink, "failed").await;

    // The release: END of the first reservation.
    let end = fresh(&fixture("event-end.json").unwrap());
    let r = stack.send_signed(end).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_outcome(sink, "released").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Every log line of every component.
    let apiserver_log = kube_harness::ApiServer::shared()
        .await
        .unwrap()
        .dir()
        .join("kube-apiserver.log");
    let in_process = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let logs: Vec<(&str, String)> = vec![
        ("envoy", stack.envoy.log()),
        (
            "sidecar",
            std::fs::read_to_string(stack.sidecar.log_path()).unwrap(),
        ),
        ("in-process (operator, sink, kube client)", in_process),
        (
            "kube-apiserver",
            std::fs::read_to_string(apiserver_log).unwrap(),
        ),
    ];
    // The logs are really at their most verbose: each has lines only that level writes.
    assert!(logs[0].1.contains("][trace]["), "Envoy is not at trace");
    assert!(
        logs[1].1.contains("\"level\":\"TRACE\""),
        "the sidecar is not at trace"
    );
    assert!(
        logs[2].1.contains("TRACE"),
        "nothing captured at TRACE here"
    );
    // Positive control: at this level Envoy writes request headers in full (a signature value
    // is there), so a secret in any header or filter line would be seen.
    assert!(
        logs[0].1.contains(&sign(SECRET, &start)),
        "Envoy's trace log holds no request header values"
    );
    let mut needles = vec![
        ("webhook secret", SECRET.to_owned()),
        ("previous webhook secret", PREVIOUS.to_owned()),
        ("notification secret", NOTIFY_SECRET.to_owned()),
        ("SSH key (ed25519)", key_blob(&ed_key)),
        ("SSH key (RSA)", key_blob(&rsa_key)),
    ];
    for (what, key) in [
        ("SSH key (ed25519), base64", &ed_key),
        ("SSH key (RSA), base64", &rsa_key),
    ] {
        needles.extend(base64_forms(&key_blob(key)).into_iter().map(|n| (what, n)));
    }
    for (what, secret) in [
        ("webhook secret, base64", SECRET),
        ("notification secret, base64", NOTIFY_SECRET),
    ] {
        needles.extend(base64_forms(secret).into_iter().map(|n| (what, n)));
    }
    let mut hits = Vec::new();
    for (component, text) in &logs {
        for line in text.lines() {
            for (what, needle) in &needles {
                if line.contains(needle.as_str()) {
                    hits.push(format!(
                        "{component}: {what}: {}",
                        &line[..line.len().min(400)]
                    ));
                }
            }
        }
    }
    let lines: usize = logs.iter().map(|(_, t)| t.lines().count()).sum();
    eprintln!("searched {lines} log lines");
    assert!(
        hits.is_empty(),
        "{} log lines hold a secret or an SSH key:\n{}",
        hits.len(),
        hits.join("\n")
    );
}

#[test]
fn base64_forms_are_found_inside_any_encoding() {
    // "Many hands make light work." in base64, at the three alignments (Python's b64encode).
    let forms = base64_forms("Many hands make light work.");
    assert_eq!(forms[0], "eSBoYW5kcyBtYWtlIGxpZ2h0IHdv");
    assert!("TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu".contains(&forms[0]));
    assert!("YU1hbnkgaGFuZHMgbWFrZSBsaWdodCB3b3JrLg==".contains(&forms[1]));
    assert!("YWFNYW55IGhhbmRzIG1ha2UgbGlnaHQgd29yay4=".contains(&forms[2]));
}
