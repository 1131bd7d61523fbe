//! The reservation tier: the REAL reservation system (reservation-be 1.9.5 and
//! reservation-event-processor 0.1.18, and 0.1.15 for the batch format, on PostgreSQL) drives
//! the filter in a real Envoy, the real sidecar and the real baremetal-operator. Bookings are
//! created, edited and deleted through reservation-be's REST API as its admin UI does; EVENT_START
//! and EVENT_END come from the processor's scheduler (every 10 s here, 60 s in production); no
//! body is built by hand. Assertions are what users and admins see: HTTP answers, the
//! BareMetalHost's spec and annotations, the userData Secret's cloud-config, reservation-be's
//! `notifications` and `webhook_logs` rows, and what the processor logged about its deliveries.
//!
//! Every scenario has its own resource, webhook (scoped to that resource, so it receives only
//! its own messages), namespace, BMO, host, sidecar and Envoy, so they all run at once: the
//! processor's clock sets the pace (a booking starts ~45 s after it is made and lasts a minute or
//! two), and the tier takes a few minutes, not the sum of its scenarios.
//!
//! # The runner
//! `harness = false`: libtest would run two scenarios at a time on a 2-core machine. This
//! `main` runs every selected scenario concurrently on one tokio runtime and reports each like
//! libtest (`test <name> ... ok|FAILED`, a summary, exit code 101 on failure). Arguments as
//! libtest: name filters (substring; `--exact` for whole names), `--skip <filter>`, `--list`;
//! other flags (`--nocapture`, `--test-threads`, ...) are accepted and ignored. The
//! `no_failed_delivery_in_webhook_logs` check runs after the others.
//!
//! When the real system cannot run here (no Java, no jars, no PostgreSQL, no baremetal-operator)
//! the tier is skipped with a loud message; under `CI=true` that fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use reservation_harness::scenario::{EVENT_END_ANNOTATION, IMAGE_CHECKSUM, IMAGE_URL, LOGIN_USER};
use reservation_harness::scenario::{annotation, is_provisioned, is_released, is_untouched};
use reservation_harness::{
    Delivery, Event, ProcessorVersion, Requirements, ReservationSystem, Scenario, ScenarioOptions,
    Scope, User, UserSpec, WebhookLogRow,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Timing

/// A booking starts this long after it is made (the processor sends START at its next tick).
const LEAD: i64 = 45;
/// How long the host may take from START to `provisioned` (BMO's fixture: ~10 s) on a busy
/// machine.
const PROVISION: Duration = Duration::from_secs(150);
/// How long a release may take after its trigger (END, a deletion, the grace period).
const RELEASE: Duration = Duration::from_secs(150);
/// Bound on one scenario.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// Time left until `t` (zero when past).
fn until(t: Timestamp) -> Duration {
    let d = t.duration_since(Timestamp::now());
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

async fn sleep_until(t: Timestamp) {
    tokio::time::sleep(until(t)).await;
}

// ---------------------------------------------------------------------------------------------
// The bench, once per binary

struct Bench {
    req: &'static Requirements,
    server: &'static kube_harness::ApiServer,
}

static BENCH: tokio::sync::OnceCell<Bench> = tokio::sync::OnceCell::const_new();

async fn bench() -> &'static Bench {
    BENCH
        .get_or_init(|| async {
            let req = reservation_harness::requirements()
                .unwrap()
                .expect("checked in main");
            let server = kube_harness::metal3_server().await.unwrap();
            Bench { req, server }
        })
        .await
}

async fn system(version: ProcessorVersion) -> &'static ReservationSystem {
    let b = bench().await;
    ReservationSystem::shared(b.req, version).await.unwrap()
}

async fn scenario<'a>(sys: &'a ReservationSystem, opts: ScenarioOptions) -> Scenario<'a> {
    Scenario::start(sys, bench().await.server, opts)
        .await
        .unwrap_or_else(|e| panic!("setting the scenario up: {e}"))
}

static NEXT_USER: AtomicU32 = AtomicU32::new(100_001);

/// A fresh username in the style of the university's (`s123456`).
fn username() -> String {
    format!("s{}", NEXT_USER.fetch_add(1, Ordering::SeqCst))
}

/// Seven real ed25519 public keys (their private halves were thrown away).
const KEYS: [&str; 7] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIp/A5OhWu9VezI8kdNLqgxWK9ga1O5pf6Ix9AazTUsp user1@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINnwW9zXzD/pcsbFIM6TmU8GRvXxV4+ewNgNmGN/n/yF user2@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP5G2VoWcr5m1ikDgXYq5nYaFsIhto7jg3c3EJ343aBb user3@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBspkoaIwfu6io9MdJTr0K0C7fvpM2ZXX9wcti4rVHym user4@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBZXN5RBARS3pu35cXcWUvUlcZoBn58UQWcnYCl09Vr user5@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIlAO8bHW/7/WmbcYEw35OUchNDfqgnyAjPAqxriqEI user6@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHpGENiDuGPRp/epJ+Twy1yjhx7smZ+Xu0nlPsWeofE user7@laptop",
];

async fn user(sys: &ReservationSystem, key: Option<&str>, known: bool) -> User {
    sys.new_user(
        &username(),
        &UserSpec {
            ssh_key: key.map(str::to_string),
            known_to_processor: known,
        },
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Assertions shared by the scenarios

/// The `authorized_keys` cloud-init gives `account` in a `#cloud-config` document.
fn authorized_keys(cloud_config: &str, account: &str) -> Vec<String> {
    assert!(
        cloud_config.starts_with("#cloud-config"),
        "userData is not a cloud-config:\n{cloud_config}"
    );
    let doc: Value = serde_saphyr::from_str(cloud_config)
        .unwrap_or_else(|e| panic!("userData is not YAML ({e}):\n{cloud_config}"));
    doc["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == account)
        .flat_map(|u| {
            u["ssh_authorized_keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|k| k.as_str().map(|k| k.trim().to_string()))
        .collect()
}

/// Every delivery was answered 2xx.
async fn assert_all_succeeded(s: &Scenario<'_>, what: &str, deliveries: &[Delivery]) {
    let failed: Vec<String> = deliveries
        .iter()
        .filter(|d| !d.succeeded())
        .map(|d| format!("{} -> {:?}", d.event_type, d.outcome))
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: the processor's deliveries to {} were refused: {failed:#?}\n{}",
        s.webhook.name,
        s.context().await
    );
}

/// reservation-be logged no failed delivery to the scenario's webhook.
async fn assert_no_failed_logs(s: &Scenario<'_>) {
    let rows = s.webhook_logs().await.unwrap();
    let failed: Vec<&WebhookLogRow> = rows.iter().filter(|r| !r.success).collect();
    assert!(
        failed.is_empty(),
        "reservation-be logged failed deliveries to {}: {:#?}\n{}",
        s.webhook.name,
        failed
            .iter()
            .map(|r| format!("{} {:?} {}", r.event_type, r.status_code, r.response))
            .collect::<Vec<_>>(),
        s.context().await
    );
}

/// Waits (bounded) for reservation-be's delivery of `event_type` and asserts it succeeded 2xx.
async fn assert_be_delivered(s: &Scenario<'_>, event_type: &str) {
    let rows = s
        .wait_webhook_log(event_type, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.success && r.status_code.is_some_and(|c| (200..300).contains(&c))),
        "reservation-be's {event_type} to {} was not answered 2xx: {:#?}\n{}",
        s.webhook.name,
        rows.iter()
            .map(|r| format!("success={} {:?} {}", r.success, r.status_code, r.response))
            .collect::<Vec<_>>(),
        s.context().await
    );
}

/// Waits for the processor's `event_type` deliveries and asserts every one was answered 2xx.
async fn assert_ep_delivered(
    s: &Scenario<'_>,
    event_type: &str,
    timeout: Duration,
) -> Vec<Delivery> {
    let got = s.wait_delivery(event_type, timeout).await.unwrap();
    assert_all_succeeded(s, event_type, &got).await;
    got
}

/// `u` books the scenario's host from `start` to `end` through reservation-be's API; the
/// processor's START (delivered 2xx) provisions it with `key`. Returns the booking and the
/// userData Secret's name.
async fn book_and_provision(
    s: &Scenario<'_>,
    u: &User,
    title: &str,
    key: &str,
    (start, end): (Timestamp, Timestamp),
) -> (Event, String) {
    let ev = s
        .system()
        .client()
        .create_event(title, &s.resource, u, start, end)
        .await
        .unwrap();
    assert_ep_delivered(s, "EVENT_START", until(start) + Duration::from_secs(30)).await;
    let bmh = s.wait_provisioned(until(start) + PROVISION).await.unwrap();
    let secret = assert_provisioned_for(s, &bmh, key, end).await;
    (ev, secret)
}

/// The host is provisioned for `key`: image, checksum, power on, a userData Secret whose
/// cloud-config gives the `prognose` account exactly that key; its end annotation is `end`.
async fn assert_provisioned_for(
    s: &Scenario<'_>,
    bmh: &Value,
    key: &str,
    end: Timestamp,
) -> String {
    assert!(is_provisioned(bmh), "not provisioned: {bmh}");
    assert_eq!(bmh["spec"]["image"]["url"], IMAGE_URL);
    assert_eq!(bmh["spec"]["image"]["checksum"], IMAGE_CHECKSUM);
    assert_eq!(bmh["spec"]["online"], true);
    let ud = s
        .user_data(bmh)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the host points at no userData Secret: {}", bmh["spec"]));
    assert_eq!(
        authorized_keys(&ud, LOGIN_USER),
        vec![key.to_string()],
        "the `{LOGIN_USER}` account must hold the user's key, and only it:\n{ud}"
    );
    let got_end: Timestamp = annotation(bmh, EVENT_END_ANNOTATION)
        .unwrap_or_else(|| panic!("no {EVENT_END_ANNOTATION} annotation: {}", bmh["metadata"]))
        .parse()
        .unwrap();
    assert_eq!(got_end, end, "{EVENT_END_ANNOTATION}");
    bmh["spec"]["userData"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Released, and its userData Secret gone.
async fn assert_released(s: &Scenario<'_>, bmh: &Value, secret: &str) {
    assert!(is_released(bmh), "not released: {bmh}");
    assert!(
        s.secret(secret).await.unwrap().is_none(),
        "the userData Secret {secret} outlived the release\n{}",
        s.context().await
    );
}

/// Waits (bounded) until `user` has at least `n` notifications and returns them all.
async fn wait_notifications(
    s: &Scenario<'_>,
    user: &User,
    n: usize,
    timeout: Duration,
) -> Vec<reservation_harness::NotificationRow> {
    let start = Instant::now();
    loop {
        let rows = s.system().notifications(user).await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        if start.elapsed() > timeout {
            panic!(
                "{} has {} notification(s) in reservation-be, expected {n}: {rows:#?}\n{}",
                user.username,
                rows.len(),
                s.context().await
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A user's notifications after a provisioning and a release: one SUCCESS naming the host,
/// then one release notification naming it (never an ERROR).
async fn assert_provisioned_and_released_notifications(s: &Scenario<'_>, user: &User) {
    let host = s.host_name().unwrap().to_string();
    let rows = wait_notifications(s, user, 2, Duration::from_secs(60)).await;
    let success: Vec<_> = rows.iter().filter(|r| r.kind == "SUCCESS").collect();
    assert_eq!(success.len(), 1, "one SUCCESS notification: {rows:#?}");
    assert!(
        success[0].message.contains(&host),
        "the SUCCESS notification names the host {host}: {rows:#?}"
    );
    assert!(
        rows.iter().all(|r| r.kind != "ERROR"),
        "no ERROR notification: {rows:#?}"
    );
    let later: Vec<_> = rows.iter().filter(|r| r.id > success[0].id).collect();
    assert_eq!(
        later.len(),
        1,
        "one release notification after it: {rows:#?}"
    );
    assert!(
        later[0].message.contains(&host),
        "the release notification names the host {host}: {rows:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A user with an SSH key: provisioned with the key on `prognose` from START to END, released
/// after; one SUCCESS and one release notification.
async fn a_user_with_a_key_gets_the_host_until_the_end() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("keyed")).await;
    let u = user(sys, Some(KEYS[0]), true).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 60));
    sys.client()
        .create_event("Thesis experiments", &s.resource, &u, start, end)
        .await
        .unwrap();

    let got = assert_ep_delivered(&s, "EVENT_START", until(start) + Duration::from_secs(30)).await;
    let body: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["sshPublicKey"], KEYS[0],
        "what the processor sent: {body}"
    );
    let bmh = s.wait_provisioned(until(start) + PROVISION).await.unwrap();
    let secret = assert_provisioned_for(&s, &bmh, KEYS[0], end).await;

    let bmh = s.wait_released(until(end) + RELEASE).await.unwrap();
    assert_released(&s, &bmh, &secret).await;
    assert_ep_delivered(&s, "EVENT_END", Duration::from_secs(60)).await;
    assert_provisioned_and_released_notifications(&s, &u).await;
    assert_be_delivered(&s, "EVENT_CREATED").await;
    assert_client_logs(&s, &host_name(&s)).await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// The scenario's host name (the BMH is named after the scenario's namespace).
fn host_name(s: &Scenario<'_>) -> String {
    s.resource.name.clone()
}

/// The client's own entries in the webhook's logs, as admins see them: reservation-be itself
/// logs only what it sends (EVENT_CREATED and the like), so EVENT_START and EVENT_END rows are
/// the sidecar's. One per delivery handled (the START, at least one END) and one per outcome
/// (provisioned, released), naming the host, all successful.
async fn assert_client_logs(s: &Scenario<'_>, host: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = s.webhook_logs().await.unwrap();
        let ours = |ty: &'static str| rows.iter().filter(move |r| r.event_type == ty);
        let outcome = |ty: &'static str, word: &str| {
            ours(ty).any(|r| r.payload.contains(word) && r.payload.contains(host))
        };
        let handled = |ty: &'static str| ours(ty).any(|r| r.payload.contains("\"results\""));
        let complete = handled("EVENT_START")
            && handled("EVENT_END")
            && outcome("EVENT_START", "provisioned")
            && outcome("EVENT_END", "released");
        if complete {
            assert!(
                ours("EVENT_START")
                    .chain(ours("EVENT_END"))
                    .all(|r| r.success),
                "{rows:#?}"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client's webhook logs are not all there: {:#?}\n{}",
            rows.iter()
                .map(|r| format!("{} {} {}", r.event_type, r.success, r.payload))
                .collect::<Vec<_>>(),
            s.context().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A user without an SSH key: nothing is provisioned, and the user gets one ERROR notification
/// saying there is no SSH key.
async fn a_user_without_a_key_gets_an_error_notification_and_no_host() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("keyless")).await;
    let u = user(sys, None, true).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 30));
    sys.client()
        .create_event("No key yet", &s.resource, &u, start, end)
        .await
        .unwrap();
    let got = s
        .wait_delivery("EVENT_START", until(start) + Duration::from_secs(30))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert!(body.get("sshPublicKey").is_none(), "sent: {body}");

    let rows = wait_notifications(&s, &u, 1, Duration::from_secs(60)).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].kind, "ERROR", "{rows:#?}");
    assert!(
        {
            let m = rows[0].message.to_lowercase();
            m.contains("ssh") && m.contains("key")
        },
        "the ERROR notification says there is no SSH key: {rows:#?}"
    );
    // Through the end (and its duplicate ENDs) nothing touches the host.
    s.wait_delivery("EVENT_END", until(end) + Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(sys.rate().await * 2).await;
    let bmh = s.bmh().await.unwrap();
    assert!(is_untouched(&bmh), "the host was touched: {bmh}");
    assert!(
        s.secrets_containing("#cloud-config")
            .await
            .unwrap()
            .is_empty(),
        "a userData Secret was written"
    );
    let rows = s.system().notifications(&u).await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "still one notification after the END: {rows:#?}"
    );
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// A user the processor's Keycloak does not know (its lookup fails: no `username`, no `email`
/// in the message): still provisioned with the key, which comes from reservation-be's
/// `ssh_keys` table.
async fn a_user_unknown_to_keycloak_still_gets_the_host_with_the_key() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("unknown")).await;
    let u = user(sys, Some(KEYS[1]), false).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 45));
    sys.client()
        .create_event("Lookup fails", &s.resource, &u, start, end)
        .await
        .unwrap();
    let got = assert_ep_delivered(&s, "EVENT_START", until(start) + Duration::from_secs(30)).await;
    let body: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert!(
        body.get("username").is_none() && body.get("email").is_none(),
        "the processor's lookup should have failed: {body}"
    );
    assert_eq!(body["sshPublicKey"], KEYS[1]);
    let bmh = s.wait_provisioned(until(start) + PROVISION).await.unwrap();
    let secret = assert_provisioned_for(&s, &bmh, KEYS[1], end).await;
    let bmh = s.wait_released(until(end) + RELEASE).await.unwrap();
    assert_released(&s, &bmh, &secret).await;
    assert_ep_delivered(&s, "EVENT_END", Duration::from_secs(60)).await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// A reservation deleted while active (`DELETE /api/events/{id}`): reservation-be sends
/// EVENT_DELETED and no END ever comes; the host is released.
async fn a_reservation_deleted_while_active_releases_the_host() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("deleted-active")).await;
    let u = user(sys, Some(KEYS[2]), true).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 600));
    let (ev, secret) = book_and_provision(&s, &u, "Cut short", KEYS[2], (start, end)).await;
    sleep_until(start + secs(2)).await;

    sys.client().delete_event(&ev).await.unwrap();
    assert_be_delivered(&s, "EVENT_DELETED").await;
    let bmh = s.wait_released(RELEASE).await.unwrap();
    assert_released(&s, &bmh, &secret).await;
    assert!(
        s.deliveries()
            .await
            .iter()
            .all(|d| d.event_type != "EVENT_END"),
        "no END for a deleted booking"
    );
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// A reservation deleted before its START was sent: the host is never touched, and
/// reservation-be's delivery log shows EVENT_CREATED and EVENT_DELETED answered 2xx.
async fn a_reservation_deleted_before_it_starts_leaves_the_host_alone() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("deleted-early")).await;
    let u = user(sys, Some(KEYS[3]), true).await;
    // Beyond the processor's 5-minute window: no START until 8 − 5 = 3 minutes from now.
    let (start, end) = (now() + secs(8 * 60), now() + secs(20 * 60));
    let ev = sys
        .client()
        .create_event("Changed my mind", &s.resource, &u, start, end)
        .await
        .unwrap();
    assert_be_delivered(&s, "EVENT_CREATED").await;
    sys.client().delete_event(&ev).await.unwrap();
    assert_be_delivered(&s, "EVENT_DELETED").await;
    tokio::time::sleep(sys.rate().await * 2 + Duration::from_secs(5)).await;
    let bmh = s.bmh().await.unwrap();
    assert!(is_untouched(&bmh), "the host was touched: {bmh}");
    assert!(s.secrets_containing(KEYS[3]).await.unwrap().is_empty());
    assert!(
        s.deliveries().await.is_empty(),
        "the processor sent nothing"
    );
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// A reservation extended while active (PUT with a later end): the end annotation follows, the
/// host stays provisioned past the old end and is released after the new one.
async fn a_reservation_extended_while_active_keeps_the_host_until_the_new_end() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("extended")).await;
    let u = user(sys, Some(KEYS[4]), true).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 60));
    let (ev, secret) = book_and_provision(&s, &u, "Need more time", KEYS[4], (start, end)).await;
    sleep_until(start + secs(2)).await;
    assert!(
        Timestamp::now() < end,
        "setup took past the end; nothing to extend"
    );

    let new_end = end + secs(90);
    sys.client()
        .update_event(&ev, start, new_end)
        .await
        .unwrap();
    assert_be_delivered(&s, "EVENT_UPDATED").await;
    let bmh = s
        .wait_host(
            "the end annotation to follow",
            Duration::from_secs(60),
            |b| {
                annotation(b, EVENT_END_ANNOTATION).and_then(|v| v.parse::<Timestamp>().ok())
                    == Some(new_end)
            },
        )
        .await
        .unwrap();
    assert!(is_provisioned(&bmh));

    // Past the old end (and any END the processor would have sent for it).
    sleep_until(end + secs(30)).await;
    let bmh = s.bmh().await.unwrap();
    assert!(is_provisioned(&bmh), "released at the old end: {bmh}");
    assert_eq!(
        s.user_data(&bmh)
            .await
            .unwrap()
            .map(|ud| authorized_keys(&ud, LOGIN_USER)),
        Some(vec![KEYS[4].to_string()])
    );
    assert!(
        s.deliveries()
            .await
            .iter()
            .all(|d| d.event_type != "EVENT_END"),
        "the processor sent an END for the old end"
    );

    let bmh = s.wait_released(until(new_end) + RELEASE).await.unwrap();
    assert_released(&s, &bmh, &secret).await;
    assert!(Timestamp::now() >= new_end, "released before the new end");
    assert_ep_delivered(&s, "EVENT_END", Duration::from_secs(60)).await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// Processor 0.1.15 (the batch format): one user's two reservations starting together — the
/// scenario's Server and a Switch of the same site — arrive as ONE batch of two events, sent to
/// the Server's webhook because one of its resources is the Server. The Server's host is
/// provisioned and released; the Switch is not a host (one BMH per BMO: the Switch item is the
/// one a client must answer as skipped, not as a failure of the batch).
async fn two_reservations_of_one_user_in_one_batch() {
    let sys = system(ProcessorVersion::Batch0115).await;
    let s = scenario(sys, ScenarioOptions::new("batch")).await;
    let switch_type = sys
        .client()
        .create_resource_type(sys.site(), "Switch")
        .await
        .unwrap();
    let switch = sys
        .client()
        .create_resource(
            &switch_type,
            &format!("{}-sw", s.resource.name),
            "48x 10GbE",
            "Lab 1",
        )
        .await
        .unwrap();
    let u = user(sys, Some(KEYS[5]), true).await;
    // Both bookings right after a processor tick, so one poll finds both (one batch).
    sys.processor()
        .await
        .wait_tick(Duration::from_secs(60))
        .await
        .unwrap();
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 60));
    for r in [&s.resource, &switch] {
        sys.client()
            .create_event("Server and its switch", r, &u, start, end)
            .await
            .unwrap();
    }
    let got = assert_ep_delivered(&s, "EVENT_START", until(start) + Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "one batch: {got:#?}");
    assert_eq!(got[0].events, 2, "both reservations in it");
    let body: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body["eventCount"], 2, "{body}");
    assert_eq!(
        body["webhookId"],
        s.webhook.id.to_string(),
        "a string in 0.1.15"
    );
    let types: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resourceType"].as_str())
        .collect();
    assert!(
        types.contains(&"Server") && types.contains(&"Switch"),
        "{body}"
    );

    let bmh = s.wait_provisioned(until(start) + PROVISION).await.unwrap();
    let secret = assert_provisioned_for(&s, &bmh, KEYS[5], end).await;
    let bmh = s.wait_released(until(end) + RELEASE).await.unwrap();
    assert_released(&s, &bmh, &secret).await;
    let ends = assert_ep_delivered(&s, "EVENT_END", Duration::from_secs(60)).await;
    assert!(ends.iter().all(|d| d.events == 2), "{ends:#?}");
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// What the host showed at one moment.
#[derive(Debug)]
struct Sample {
    at: Timestamp,
    state: String,
    keys: Vec<String>,
}

/// Back-to-back users: A's booking ends at T, B's starts right after (reservation-be refuses
/// bookings that touch: its overlap check is inclusive, so B starts at T + 1 s). B's START comes
/// minutes before A's END. B gets the host only after A's release; A's key is never on the host
/// while B holds it, and never together with B's.
async fn back_to_back_users_on_one_host() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("back-to-back")).await;
    let a = user(sys, Some(KEYS[6]), true).await;
    let b = user(sys, Some(KEYS[0]), true).await;
    let (start_a, t) = (now() + secs(LEAD), now() + secs(LEAD + 60));
    let (start_b, end_b) = (t + secs(1), t + secs(61));
    let c = sys.client();
    c.create_event("A's slot", &s.resource, &a, start_a, t)
        .await
        .unwrap();
    c.create_event("B's slot", &s.resource, &b, start_b, end_b)
        .await
        .unwrap();
    // Both STARTs come at once (both bookings are within the processor's 5 minutes), B's while
    // A does not even have the host yet.
    let starts = s
        .wait_delivery("EVENT_START", until(start_a) + Duration::from_secs(30))
        .await
        .unwrap();
    assert_all_succeeded(&s, "START of A and B", &starts).await;

    // Sample the host once a second until B is released.
    let mut samples: Vec<Sample> = Vec::new();
    let deadline = Instant::now() + until(end_b) + RELEASE;
    let mut b_released = false;
    while Instant::now() < deadline && !b_released {
        let bmh = s.bmh().await.unwrap();
        let keys = match s.user_data(&bmh).await.unwrap() {
            Some(ud) => authorized_keys(&ud, LOGIN_USER),
            None => Vec::new(),
        };
        let state = kube_harness::provisioning_state(&bmh).to_string();
        let had_b = samples
            .iter()
            .any(|x| x.keys.contains(&KEYS[0].to_string()));
        b_released = had_b && is_released(&bmh) && Timestamp::now() > end_b;
        samples.push(Sample {
            at: Timestamp::now(),
            state,
            keys,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let trace = samples
        .iter()
        .map(|x| format!("{} {} {:?}", x.at, x.state, x.keys))
        .collect::<Vec<_>>()
        .join("\n");
    let (ka, kb) = (KEYS[6].to_string(), KEYS[0].to_string());
    let first_a = samples.iter().position(|x| x.keys.contains(&ka));
    let first_b = samples.iter().position(|x| x.keys.contains(&kb));
    let (Some(first_a), Some(first_b)) = (first_a, first_b) else {
        panic!(
            "A and B must each get the host (A: {first_a:?}, B: {first_b:?}):\n{trace}\n{}",
            s.context().await
        );
    };
    assert!(first_a < first_b, "A first:\n{trace}");
    assert!(
        samples
            .iter()
            .all(|x| !(x.keys.contains(&ka) && x.keys.contains(&kb))),
        "A's and B's keys together:\n{trace}"
    );
    assert!(
        samples[first_b..].iter().all(|x| !x.keys.contains(&ka)),
        "A's key came back while B held the host:\n{trace}"
    );
    assert!(
        samples[first_a..first_b]
            .iter()
            .any(|x| x.keys.is_empty() && x.state != "provisioned"),
        "no release of A's host before B's provisioning:\n{trace}"
    );
    assert!(
        samples[first_b].at >= t,
        "B got the host before A's end at {t}:\n{trace}"
    );
    assert!(
        b_released,
        "B's host was not released:\n{trace}\n{}",
        s.context().await
    );
    assert!(
        s.secrets_containing(&ka).await.unwrap().is_empty(),
        "A's key outlived A's booking in a Secret"
    );
    assert_all_succeeded(&s, "back to back", &s.deliveries().await).await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// The admin's Test button: reservation-be answers 200 "Test webhook sent successfully" only
/// when the client answered its test message (`eventType` `ALL`) with a 2xx.
async fn the_admins_test_button_succeeds() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let s = scenario(sys, ScenarioOptions::new("test-button").without_host()).await;
    let a = sys.client().test_webhook(&s.webhook).await.unwrap();
    assert_eq!(
        (
            a.status,
            a.body["success"].as_bool(),
            a.body["message"].as_str()
        ),
        (200, Some(true), Some("Test webhook sent successfully")),
        "{}\n{}",
        a.text,
        s.context().await
    );
    assert_be_delivered(&s, "ALL").await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// A resource created through reservation-be's API: RESOURCE_CREATED goes to the webhooks of
/// its type (and of its site); the client answers 2xx.
async fn a_new_resource_is_answered_2xx() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let ty = sys
        .client()
        .create_resource_type(sys.site(), &format!("Storage-{}", username()))
        .await
        .unwrap();
    let s = scenario(
        sys,
        ScenarioOptions::new("resource-created")
            .without_host()
            .scope(Scope::ResourceType(ty.id)),
    )
    .await;
    sys.client()
        .create_resource(&ty, &format!("nas-{}", s.namespace), "100TB, SSD", "Lab 2")
        .await
        .unwrap();
    assert_be_delivered(&s, "RESOURCE_CREATED").await;
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

/// The processor stopped across a reservation's end (killed before it, restarted after): no END
/// is ever sent, the sidecar releases the host itself `RELEASE_GRACE_SECONDS` after `eventEnd`,
/// and the user is notified. A late END after the restart, if one comes, is answered 2xx and
/// changes nothing. On a system of its own (its processor is stopped).
async fn a_stopped_processor_leaves_the_release_to_the_grace_period() {
    let b = bench().await;
    let sys = ReservationSystem::start(b.req, ProcessorVersion::Flat0118)
        .await
        .unwrap();
    let grace = Duration::from_secs(30);
    let s = scenario(
        &sys,
        ScenarioOptions::new("ep-stopped").release_grace(grace),
    )
    .await;
    let u = user(&sys, Some(KEYS[1]), true).await;
    let (start, end) = (now() + secs(LEAD), now() + secs(LEAD + 90));
    let (_, secret) =
        book_and_provision(&s, &u, "Processor goes away", KEYS[1], (start, end)).await;
    assert!(
        Timestamp::now() + secs(10) < end,
        "provisioning took until the end; the processor can no longer miss it"
    );
    sys.processor().await.kill();

    sleep_until(end).await;
    let bmh = s.bmh().await.unwrap();
    assert!(is_provisioned(&bmh), "released before the end: {bmh}");
    let bmh = s.wait_released(until(end) + grace + RELEASE).await.unwrap();
    let grace_end = end + SignedDuration::try_from(grace).unwrap();
    assert!(
        Timestamp::now() >= grace_end,
        "released before the grace period was over"
    );
    assert_released(&s, &bmh, &secret).await;
    assert!(
        s.deliveries()
            .await
            .iter()
            .all(|d| d.event_type != "EVENT_END"),
        "an END was sent by a stopped processor?"
    );
    assert_provisioned_and_released_notifications(&s, &u).await;

    sys.processor().await.restart().await.unwrap();
    tokio::time::sleep(sys.rate().await * 2).await;
    let late = s.deliveries().await;
    assert_all_succeeded(&s, "after the restart", &late).await;
    let bmh = s.bmh().await.unwrap();
    assert!(is_released(&bmh), "a late END changed the host: {bmh}");
    assert_no_failed_logs(&s).await;
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Facts about the real services (pass whatever the sidecar does)

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Base64(HMAC-SHA256(secret's ASCII bytes, body)): the real senders' `X-Webhook-Signature`.
fn real_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// reservation-be's inbound endpoints behave as the reference says: a notification signed
/// Base64(HMAC(webhook secret, body)) with its exact fields is stored for the user (200); an
/// unknown field is 400; a `sha256=<hex>` or missing signature is 401. A webhook log is 201;
/// an `eventType` outside its enum is 400.
async fn reservation_be_accepts_notifications_and_logs_as_documented() {
    let sys = system(ProcessorVersion::Flat0118).await;
    let upstream = envoy_harness::RecordingUpstream::start().unwrap();
    let resource = sys
        .new_server(&format!("proto-{}", username()))
        .await
        .unwrap();
    let hook = sys
        .client()
        .create_webhook(
            &format!("proto-{}", resource.id),
            &format!("http://{}/webhook", upstream.addr()),
            sys.site(),
            Scope::Resource(resource.id),
        )
        .await
        .unwrap();
    assert_eq!(hook.secret.len(), 44, "32 random bytes in Base64");
    let u = user(sys, Some(KEYS[2]), true).await;
    let http = sys.client().http();
    let post = |path: &'static str, body: String, sig: Option<String>| {
        let url = format!("{}{path}", http.base());
        async move {
            let mut req = hyper::Request::post(&url).header("content-type", "application/json");
            if let Some(sig) = sig {
                req = req.header("X-Webhook-Signature", sig);
            }
            let req = req
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let note = json!({
        "webhookId": hook.id.to_string(), "userId": u.id,
        "message": "Your bare metal server reservation 'srv-01' has been successfully provisioned.",
        "type": "SUCCESS", "eventId": "42", "resourceId": resource.id.to_string(),
        "eventType": "PROVISIONING_COMPLETED",
        "metadata": {"resourceType": "BareMetalHost", "resourceName": "srv-01", "namespace": "metal3"},
    })
    .to_string();
    let sig = real_signature(&hook.secret, note.as_bytes());
    let (st, body) = post("/notifications/webhook", note.clone(), Some(sig)).await;
    assert_eq!(st, 200, "{body}");
    let rows = sys.notifications(&u).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].kind, "SUCCESS");

    let mut extra: Value = serde_json::from_str(&note).unwrap();
    extra["outcome"] = json!("provisioned");
    let extra = extra.to_string();
    let sig = real_signature(&hook.secret, extra.as_bytes());
    let (st, body) = post("/notifications/webhook", extra, Some(sig)).await;
    assert_eq!(st, 400, "an unknown field: {body}");

    let hex = {
        let mut mac = HmacSha256::new_from_slice(hook.secret.as_bytes()).unwrap();
        mac.update(note.as_bytes());
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let (st, body) = post("/notifications/webhook", note.clone(), Some(hex)).await;
    assert_eq!(st, 401, "a hex signature: {body}");
    let (st, body) = post("/notifications/webhook", note.clone(), None).await;
    assert_eq!(st, 401, "no signature: {body}");
    let numeric = note.replace(
        &format!("\"webhookId\":\"{}\"", hook.id),
        &format!("\"webhookId\":{}", hook.id),
    );
    let sig = real_signature(&hook.secret, numeric.as_bytes());
    let (st, body) = post("/notifications/webhook", numeric, Some(sig)).await;
    assert_eq!(st, 200, "a numeric webhookId is coerced: {body}");

    let log = json!({
        "webhookId": hook.id.to_string(), "eventType": "EVENT_START",
        "payload": "{\"eventType\":\"EVENT_START\",\"eventId\":\"42\"}",
        "statusCode": 200, "response": "Provisioning initiated successfully", "success": true,
        "retryCount": 0, "resourceId": resource.id,
        "metadata": {"resourceType": "BareMetalHost", "namespace": "metal3"},
    })
    .to_string();
    let sig = real_signature(&hook.secret, log.as_bytes());
    let (st, body) = post("/webhooks/log", log.clone(), Some(sig)).await;
    assert_eq!(st, 201, "{body}");
    let rows = sys.webhook_logs(hook.id).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.event_type == "EVENT_START" && r.success),
        "{rows:#?}"
    );
    let mut bad: Value = serde_json::from_str(&log).unwrap();
    bad["eventType"] = json!("PROVISIONING");
    let bad = bad.to_string();
    let sig = real_signature(&hook.secret, bad.as_bytes());
    let (st, body) = post("/webhooks/log", bad, Some(sig)).await;
    assert_eq!(st, 400, "an eventType outside WebhookEventType: {body}");
}

/// Records one real message of each kind the senders produce (reservation-be: EVENT_CREATED,
/// EVENT_UPDATED, EVENT_DELETED, RESOURCE_CREATED, the Test button; the processor 0.1.18:
/// EVENT_START, EVENT_END; 0.1.15: the batch START and END) on a raw recorder answering 200,
/// checks each `X-Webhook-Signature` is Base64(HMAC-SHA256(secret, body)), and writes them with
/// their headers to `RESERVATION_CAPTURE_DIR` when set (the committed test vectors in
/// `tests/reservation-harness/captured/` were made so).
async fn the_real_senders_messages_are_captured() {
    let (flat, batch) = tokio::join!(
        system(ProcessorVersion::Flat0118),
        system(ProcessorVersion::Batch0115)
    );
    let dir = std::env::var_os("RESERVATION_CAPTURE_DIR").map(std::path::PathBuf::from);
    let (a, b) = tokio::join!(
        capture(flat, "0.1.18", true),
        capture(batch, "0.1.15", false)
    );
    let mut all = a;
    all.extend(b);
    let mut index = String::from(
        "| file | sender | message | webhook id | secret (HMAC key: its ASCII bytes) | signature checks |\n|---|---|---|---|---|---|\n",
    );
    for c in &all {
        let sig = c.head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-webhook-signature"))
                .map(|(_, v)| v.trim().to_string())
        });
        assert_eq!(
            sig.as_deref(),
            Some(real_signature(&c.secret, &c.body).as_str()),
            "{}: the real sender's signature is Base64(HMAC-SHA256(secret, body))",
            c.file
        );
        index += &format!(
            "| `{}` | {} | {} | {} | `{}` | yes |\n",
            c.file, c.sender, c.kind, c.webhook_id, c.secret
        );
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).unwrap();
            let mut bytes = c.head.clone().into_bytes();
            bytes.extend_from_slice(b"\r\n\r\n");
            bytes.extend_from_slice(&c.body);
            std::fs::write(d.join(&c.file), bytes).unwrap();
        }
    }
    if let Some(d) = &dir {
        std::fs::write(d.join("INDEX.md"), index).unwrap();
        eprintln!("captured {} messages into {}", all.len(), d.display());
    }
}

struct Captured {
    file: String,
    sender: &'static str,
    kind: String,
    webhook_id: i64,
    secret: String,
    head: String,
    body: Vec<u8>,
}

async fn capture(
    sys: &ReservationSystem,
    version: &'static str,
    be_messages: bool,
) -> Vec<Captured> {
    let c = sys.client();
    let rec = envoy_harness::RecordingUpstream::start().unwrap();
    let url = format!("http://{}/webhook", rec.addr());
    let resource = sys
        .new_server(&format!("capture-{}", username()))
        .await
        .unwrap();
    let hook = c
        .create_webhook(
            &format!("capture-{}", resource.id),
            &url,
            sys.site(),
            Scope::Resource(resource.id),
        )
        .await
        .unwrap();
    let u = user(sys, Some(KEYS[3]), true).await;
    let (start, end) = (now() + secs(20), now() + secs(40));
    let ev = c
        .create_event("Thesis experiments", &resource, &u, start, end)
        .await
        .unwrap();
    let mut type_hook = None;
    if be_messages {
        c.update_event(&ev, start, end).await.unwrap();
        let later = c
            .create_event(
                "Cancelled",
                &resource,
                &u,
                now() + secs(3600),
                now() + secs(7200),
            )
            .await
            .unwrap();
        c.delete_event(&later).await.unwrap();
        c.test_webhook(&hook).await.unwrap();
        let ty = c
            .create_resource_type(sys.site(), &format!("Capture-{}", username()))
            .await
            .unwrap();
        let th = c
            .create_webhook(
                &format!("capture-type-{}", ty.id),
                &url,
                sys.site(),
                Scope::ResourceType(ty.id),
            )
            .await
            .unwrap();
        c.create_resource(&ty, "capture-switch", "48x 10GbE", "Lab 1")
            .await
            .unwrap();
        type_hook = Some(th);
    }
    let want: &[&str] = if be_messages {
        &[
            "EVENT_CREATED",
            "EVENT_UPDATED",
            "EVENT_DELETED",
            "ALL",
            "RESOURCE_CREATED",
            "EVENT_START",
            "EVENT_END",
        ]
    } else {
        &["EVENT_START", "EVENT_END"]
    };
    let deadline = Instant::now() + until(end) + Duration::from_secs(90);
    let kind = |body: &[u8]| -> String {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["eventType"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    loop {
        let got = rec.requests();
        if want.iter().all(|w| got.iter().any(|r| kind(&r.body) == *w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{version}: captured only {:?}, want {want:?}",
            got.iter().map(|r| kind(&r.body)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let got = rec.requests();
    let mut out = Vec::new();
    for w in want {
        let r = got.iter().find(|r| kind(&r.body) == *w).unwrap();
        let from_ep = w.starts_with("EVENT_START") || w.starts_with("EVENT_END");
        let (sender, prefix) = if from_ep {
            (
                if version == "0.1.18" {
                    "reservation-event-processor 0.1.18"
                } else {
                    "reservation-event-processor 0.1.15"
                },
                format!("ep-{version}"),
            )
        } else {
            ("reservation-be 1.9.5", "be-1.9.5".to_string())
        };
        let is_type_hook = *w == "RESOURCE_CREATED";
        let h = if is_type_hook {
            type_hook.as_ref().unwrap()
        } else {
            &hook
        };
        let name = if *w == "ALL" {
            "TEST_BUTTON".to_string()
        } else {
            w.to_string()
        };
        out.push(Captured {
            file: format!("{prefix}-{name}.http"),
            sender,
            kind: w.to_string(),
            webhook_id: h.id,
            secret: h.secret.clone(),
            head: r.head.clone(),
            body: r.body.clone(),
        });
    }
    // Nothing else is sent there once the bookings are over.
    c.set_webhook_enabled(&hook, sys.site(), Scope::Resource(resource.id), false)
        .await
        .unwrap();
    out
}

/// After the run: reservation-be logged no failed delivery to any webhook of the shared systems
/// (every webhook there is a scenario's: the seeder's were deleted).
async fn no_failed_delivery_in_webhook_logs() {
    for version in [ProcessorVersion::Flat0118, ProcessorVersion::Batch0115] {
        let sys = system(version).await;
        let failed = sys.failed_webhook_logs().await.unwrap();
        assert!(
            failed.is_empty(),
            "{version}: failed deliveries in reservation-be's webhook_logs: {:#?}",
            failed
                .iter()
                .map(|(w, r)| format!(
                    "webhook {w}: {} status={:?} retry={} {}",
                    r.event_type, r.status_code, r.retry_count, r.response
                ))
                .collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The runner

type Run = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), (|| Box::pin($f()) as Pin<Box<dyn Future<Output = ()> + Send>>) as Run)),*]
    };
}

fn scenarios() -> Vec<(&'static str, Run)> {
    cases![
        a_user_with_a_key_gets_the_host_until_the_end,
        a_user_without_a_key_gets_an_error_notification_and_no_host,
        a_user_unknown_to_keycloak_still_gets_the_host_with_the_key,
        a_reservation_deleted_while_active_releases_the_host,
        a_reservation_deleted_before_it_starts_leaves_the_host_alone,
        a_reservation_extended_while_active_keeps_the_host_until_the_new_end,
        two_reservations_of_one_user_in_one_batch,
        back_to_back_users_on_one_host,
        the_admins_test_button_succeeds,
        a_new_resource_is_answered_2xx,
        a_stopped_processor_leaves_the_release_to_the_grace_period,
        reservation_be_accepts_notifications_and_logs_as_documented,
        the_real_senders_messages_are_captured,
    ]
}

/// Runs after every other selected case.
const FINALLY: (&str, Run) = ("no_failed_delivery_in_webhook_logs", || {
    Box::pin(no_failed_delivery_in_webhook_logs())
});

struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        filters: Vec::new(),
        skip: Vec::new(),
        exact: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => a.list = true,
            "--exact" => a.exact = true,
            "--skip" => a.skip.extend(it.next()),
            // libtest flags taking a value.
            "--test-threads" | "--format" | "--color" | "-Z" | "--logfile" | "--report-time" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => a.filters.push(s.to_string()),
        }
    }
    a
}

fn selected(a: &Args, name: &str) -> bool {
    let hit = |f: &String| {
        if a.exact {
            name == f
        } else {
            name.contains(f.as_str())
        }
    };
    (a.filters.is_empty() || a.filters.iter().any(hit))
        && !a.skip.iter().any(|s| name.contains(s.as_str()))
}

fn main() -> ExitCode {
    let args = parse_args();
    let mut cases: Vec<(&str, Run)> = scenarios();
    cases.push(FINALLY);
    if args.list {
        for (name, _) in &cases {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let cases: Vec<(&str, Run)> = cases
        .into_iter()
        .filter(|(n, _)| selected(&args, n))
        .collect();
    if cases.is_empty() {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed\n");
        return ExitCode::SUCCESS;
    }
    // What the tier needs: skip loudly, or fail under CI=true.
    match reservation_harness::requirements() {
        Ok(Some(_)) => {}
        Ok(None) => {
            println!(
                "\nrunning {} tests: SKIPPED (the reservation system is not available, see above)\n",
                cases.len()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("reservation tier: {e}");
            return ExitCode::from(101);
        }
    }
    match kube_harness::bmo_build() {
        Ok(Some(_)) => {}
        Ok(None) => {
            println!(
                "\nrunning {} tests: SKIPPED (no baremetal-operator build, see above)\n",
                cases.len()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("reservation tier: {e}");
            return ExitCode::from(101);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let failed = rt.block_on(run(cases));
    // The shared systems live in statics: their watchdogs end them once this process exits.
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

async fn run(cases: Vec<(&'static str, Run)>) -> usize {
    let started = Instant::now();
    let (last, first): (Vec<_>, Vec<_>) = cases.into_iter().partition(|(n, _)| *n == FINALLY.0);
    println!(
        "\nrunning {} tests (concurrently)",
        first.len() + last.len()
    );
    let mut results = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for (name, f) in first {
        let h = set.spawn(tokio::time::timeout(SCENARIO_TIMEOUT, f()));
        names.insert(h.id(), name);
    }
    // Reported as they finish.
    while let Some(done) = set.join_next_with_id().await {
        let (id, r) = match done {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let name = names.get(&id).copied().unwrap_or("?");
        results.push(report(name, r, started.elapsed()));
    }
    for (name, f) in last {
        let r = tokio::spawn(tokio::time::timeout(SCENARIO_TIMEOUT, f())).await;
        results.push(report(name, r, started.elapsed()));
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if !failed.is_empty() {
        println!("\nfailures:");
        for f in &failed {
            println!("    {f}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.1}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    failed.len()
}

fn report(
    name: &'static str,
    r: Result<Result<(), tokio::time::error::Elapsed>, tokio::task::JoinError>,
    total: Duration,
) -> (&'static str, bool) {
    let ok = match r {
        Ok(Ok(())) => true,
        Ok(Err(_)) => {
            println!("test {name}: timed out after {SCENARIO_TIMEOUT:?}");
            false
        }
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!("---- {name} ----\n{msg}\n");
            false
        }
        Err(e) => {
            println!("test {name}: {e}");
            false
        }
    };
    println!(
        "test {name} ... {} (at {:.0}s)",
        if ok { "ok" } else { "FAILED" },
        total.as_secs_f64()
    );
    (name, ok)
}
