//! Prometheus metrics (prometheus-client), exposed as OpenMetrics text on `GET /metrics`.
//!
//! Counters say how often something happened; the three histograms say how long it took:
//!
//! | metric | labels | what it times |
//! |---|---|---|
//! | `bmh_sidecar_http_request_duration_seconds` | `path`, `code` | one HTTP request, from routing to the answer |
//! | `bmh_sidecar_reconcile_duration_seconds` | `step`, `result` | one reconcile of one host (the step it chose and carried out) |
//! | `bmh_sidecar_notification_duration_seconds` | `outcome`, `delivery` | one delivery round to `NOTIFICATION_ENDPOINT` (its bounded retries included) |
//! | `bmh_sidecar_notification_delay_seconds` | `outcome` | from the phase's start (`phase-since`) to the receiver's 2xx |
//!
//! Label values come from closed sets ([`Route`], [`StepKind`], [`Phase`], ...), never from
//! request data, so an attacker cannot grow the number of series.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::Phase;
use crate::plan::{ResourceOutcome, Step};

/// Buckets of the HTTP and reconcile histograms: 2.5 ms to 10 s. A webhook answer takes a few
/// milliseconds to tens of milliseconds (one API server round trip per resource); 5–10 s means
/// the API server is timing out.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the notification histograms: 10 ms to 30 min. A delivery round is bounded
/// (about 30 s of retries); the delay after a phase begins spans a healthy receiver (below a
/// second) to one that was down for a while.
pub const NOTIFICATION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0, 1800.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn notification_histogram() -> Histogram {
    Histogram::new(NOTIFICATION_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The routes of the HTTP server, as the `path` label (anything else is `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Webhook,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

impl Route {
    /// The route of a request path.
    pub fn of(path: &str) -> Route {
        match path {
            "/webhook" => Route::Webhook,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        }
    }

    /// The label value (the path itself for known routes).
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Webhook => "/webhook",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }
}

/// Labels of `bmh_sidecar_http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub path: Route,
    /// The HTTP status code of the answer.
    pub code: u16,
}

/// What one reconcile did, as the `step` label: the kind of [`Step`] it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    Provision,
    Release,
    Stop,
    FinishRelease,
    Transition,
    Notify,
    Wait,
    Idle,
}

impl StepKind {
    /// The kind of `step`.
    pub fn of(step: &Step) -> StepKind {
        match step {
            Step::Provision(_) => StepKind::Provision,
            Step::Release(_) => StepKind::Release,
            Step::Stop(_) => StepKind::Stop,
            Step::FinishRelease(_) => StepKind::FinishRelease,
            Step::Transition(_) => StepKind::Transition,
            Step::Notify(_) => StepKind::Notify,
            Step::Wait(_) => StepKind::Wait,
            Step::Idle => StepKind::Idle,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Provision => "provision",
            StepKind::Release => "release",
            StepKind::Stop => "stop",
            StepKind::FinishRelease => "finish_release",
            StepKind::Transition => "transition",
            StepKind::Notify => "notify",
            StepKind::Wait => "wait",
            StepKind::Idle => "idle",
        }
    }
}

/// Whether a reconcile returned normally (`ok`) or with an error that is retried (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    Ok,
    Error,
}

impl ReconcileResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Ok => "ok",
            ReconcileResult::Error => "error",
        }
    }
}

/// Label values of the typed label sets: each type's `as_str`, never request data.
macro_rules! label_values {
    ($($label:ty),+) => {$(
        impl EncodeLabelValue for $label {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )+};
}
label_values!(
    Route,
    StepKind,
    ReconcileResult,
    Phase,
    Delivery,
    ResourceOutcome,
    LogKind,
    LogDelivery
);

/// Labels of `bmh_sidecar_webhook_results_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabels {
    /// The message's type (`EVENT_START`, ...; `OTHER` for one the model does not know).
    pub event_type: &'static str,
    pub result: ResourceOutcome,
}

/// Labels of `bmh_sidecar_phase_transitions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: Phase,
}

/// Labels of `bmh_sidecar_reconcile_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error's `error_type` (`crate::Error::error_type`).
    pub error_type: &'static str,
}

/// Which webhook log: of a delivery handled, or of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Delivery,
    Outcome,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Delivery => "delivery",
            LogKind::Outcome => "outcome",
        }
    }
}

/// Whether a webhook log reached a 2xx (`delivered`) or not within its round (`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogDelivery {
    Delivered,
    Failed,
}

impl LogDelivery {
    pub fn as_str(self) -> &'static str {
        match self {
            LogDelivery::Delivered => "delivered",
            LogDelivery::Failed => "failed",
        }
    }
}

/// Labels of `bmh_sidecar_webhook_logs_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LogLabels {
    pub kind: LogKind,
    pub delivery: LogDelivery,
}

/// Labels of `bmh_sidecar_reconcile_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub step: StepKind,
    pub result: ReconcileResult,
}

/// Whether a delivery round reached a 2xx (`delivered`), will be tried again (`retrying`), or
/// was refused for good with a 4xx (`rejected`: a wrong secret or webhook id, a body the
/// receiver does not take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    Delivered,
    Retrying,
    Rejected,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retrying => "retrying",
            Delivery::Rejected => "rejected",
        }
    }
}

/// Labels of `bmh_sidecar_notification_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `provisioned`, `released` or `failed`.
    pub outcome: Phase,
    pub delivery: Delivery,
}

/// Labels of `bmh_sidecar_notification_delay_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Phase,
}

/// The sidecar's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Per-resource webhook results by event type and result.
    results: Family<ResultLabels, Counter>,
    /// Phase changes written by the reconciler, by phase.
    transitions: Family<PhaseLabels, Counter>,
    /// Webhook logs by kind and delivery.
    webhook_logs: Family<LogLabels, Counter>,
    /// Reconcile errors by error type.
    reconcile_errors: Family<ErrorLabels, Counter>,
    /// Time to answer one HTTP request.
    pub request_duration: HistogramFamily<RequestLabels>,
    /// Time of one reconcile of one host.
    pub reconcile_duration: HistogramFamily<ReconcileLabels>,
    /// Time of one delivery round to NOTIFICATION_ENDPOINT.
    pub notification_duration: HistogramFamily<NotificationLabels>,
    /// From the start of a phase to the delivery of its notification.
    pub notification_delay: HistogramFamily<OutcomeLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `bmh_sidecar` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("bmh_sidecar");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            results: Family::default(),
            transitions: Family::default(),
            webhook_logs: Family::default(),
            reconcile_errors: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            reconcile_duration: Family::new_with_constructor(latency_histogram),
            notification_duration: Family::new_with_constructor(notification_histogram),
            notification_delay: Family::new_with_constructor(notification_histogram),
        };
        r.register(
            "webhook_results",
            "Per-resource webhook results",
            m.results.clone(),
        );
        r.register(
            "phase_transitions",
            "Host phase changes",
            m.transitions.clone(),
        );
        r.register(
            "webhook_logs",
            "Webhook logs posted to WEBHOOK_LOG_ENDPOINT, by kind and delivery",
            m.webhook_logs.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile errors by type",
            m.reconcile_errors.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer one HTTP request, by path and status",
            m.request_duration.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile of one host, by the step it carried out and its result",
            m.reconcile_duration.clone(),
        );
        r.register(
            "notification_duration_seconds",
            "Time of one delivery round to NOTIFICATION_ENDPOINT (bounded retries included), by outcome and delivery",
            m.notification_duration.clone(),
        );
        r.register(
            "notification_delay_seconds",
            "From the start of a phase to the delivery of its notification, by outcome",
            m.notification_delay.clone(),
        );
        Metrics {
            registry: Mutex::new(r),
            ..m
        }
    }

    /// OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }

    /// Counts one per-resource result of a delivery.
    pub fn count_result(&self, event_type: &'static str, result: ResourceOutcome) {
        self.results
            .get_or_create(&ResultLabels { event_type, result })
            .inc();
    }

    /// Counts one phase change written by the reconciler.
    pub fn count_transition(&self, phase: Phase) {
        self.transitions.get_or_create(&PhaseLabels { phase }).inc();
    }

    /// Counts one reconcile that ended in an error (retried).
    pub fn count_reconcile_error(&self, error_type: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { error_type })
            .inc();
    }

    /// Counts one webhook log posted.
    pub fn count_webhook_log(&self, kind: LogKind, delivery: LogDelivery) {
        self.webhook_logs
            .get_or_create(&LogLabels { kind, delivery })
            .inc();
    }

    /// Records one answered HTTP request (its `_count` is the request counter).
    pub fn observe_request(&self, path: &str, code: u16, took: Duration) {
        self.request_duration
            .get_or_create(&RequestLabels {
                path: Route::of(path),
                code,
            })
            .observe(took.as_secs_f64());
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, step: StepKind, ok: bool, took: Duration) {
        let result = if ok {
            ReconcileResult::Ok
        } else {
            ReconcileResult::Error
        };
        self.reconcile_duration
            .get_or_create(&ReconcileLabels { step, result })
            .observe(took.as_secs_f64());
    }

    /// Records one delivery round, and for a delivered one how long after `phase_since` the
    /// receiver got it (when the phase's start is known and not in the future).
    pub fn observe_notification(
        &self,
        outcome: Phase,
        delivery: Delivery,
        took: Duration,
        since_phase: Option<Duration>,
    ) {
        self.notification_duration
            .get_or_create(&NotificationLabels { outcome, delivery })
            .observe(took.as_secs_f64());
        if let (Delivery::Delivered, Some(d)) = (delivery, since_phase) {
            self.notification_delay
                .get_or_create(&OutcomeLabels { outcome })
                .observe(d.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.count_result("EVENT_START", ResourceOutcome::Skipped);
        let text = m.render();
        assert!(
            text.contains(
                "bmh_sidecar_webhook_results_total{event_type=\"EVENT_START\",result=\"skipped\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    /// What a dashboard query reads: `_bucket{le=...}`, `_sum`, `_count` per typed label set.
    #[test]
    fn renders_histograms_with_typed_labels() {
        let m = Metrics::new();
        m.observe_request("/webhook", 200, Duration::from_millis(12));
        m.observe_request("/webhook/../etc", 404, Duration::from_millis(1));
        m.observe_reconcile(StepKind::Provision, true, Duration::from_millis(30));
        m.observe_reconcile(StepKind::Notify, false, Duration::from_secs(3));
        m.observe_notification(
            Phase::Provisioned,
            Delivery::Delivered,
            Duration::from_millis(40),
            Some(Duration::from_secs(2)),
        );
        m.observe_notification(
            Phase::Failed,
            Delivery::Retrying,
            Duration::from_secs(31),
            Some(Duration::from_secs(40)),
        );
        let text = m.render();
        for line in [
            "# TYPE bmh_sidecar_http_request_duration_seconds histogram",
            "bmh_sidecar_http_request_duration_seconds_bucket{le=\"0.01\",path=\"/webhook\",code=\"200\"} 0",
            "bmh_sidecar_http_request_duration_seconds_bucket{le=\"0.025\",path=\"/webhook\",code=\"200\"} 1",
            "bmh_sidecar_http_request_duration_seconds_count{path=\"/webhook\",code=\"200\"} 1",
            // A path an attacker chose is never a label value.
            "bmh_sidecar_http_request_duration_seconds_count{path=\"other\",code=\"404\"} 1",
            "bmh_sidecar_reconcile_duration_seconds_count{step=\"provision\",result=\"ok\"} 1",
            "bmh_sidecar_reconcile_duration_seconds_bucket{le=\"2.5\",step=\"notify\",result=\"error\"} 0",
            "bmh_sidecar_reconcile_duration_seconds_bucket{le=\"5.0\",step=\"notify\",result=\"error\"} 1",
            "bmh_sidecar_notification_duration_seconds_count{outcome=\"provisioned\",delivery=\"delivered\"} 1",
            "bmh_sidecar_notification_duration_seconds_count{outcome=\"failed\",delivery=\"retrying\"} 1",
            "bmh_sidecar_notification_delay_seconds_sum{outcome=\"provisioned\"} 2.0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // A round that is still retrying has no delivery delay yet.
        assert!(
            !text.contains("bmh_sidecar_notification_delay_seconds_count{outcome=\"failed\"}"),
            "{text}"
        );
    }

    /// Every metric the shipped PrometheusRule and Grafana dashboard query exists: the
    /// sidecar's in this registry (histograms by their `_bucket`/`_sum`/`_count` series), the
    /// filter's among the counters the filter defines (webhook-core). A renamed metric fails
    /// here instead of leaving an alert that never fires.
    #[test]
    fn monitoring_queries_name_metrics_that_exist() {
        let m = Metrics::new();
        m.observe_request("/webhook", 200, Duration::ZERO);
        m.observe_reconcile(StepKind::Idle, true, Duration::ZERO);
        m.observe_notification(
            Phase::Released,
            Delivery::Delivered,
            Duration::ZERO,
            Some(Duration::ZERO),
        );
        m.count_result("EVENT_START", ResourceOutcome::Skipped);
        m.count_transition(Phase::Failed);
        m.count_reconcile_error("KubernetesError");
        m.count_webhook_log(LogKind::Outcome, LogDelivery::Delivered);
        let exposed = m.render();
        let outcomes: Vec<&str> = webhook_core::metrics::Outcome::COUNTED
            .iter()
            .map(|o| o.label())
            .collect();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/components/monitoring");
        let mut checked = 0;
        for file in ["prometheusrule.yaml", "dashboard.json"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for name in metric_names(&text) {
                checked += 1;
                if name.starts_with("webhook_filter_") {
                    assert_eq!(
                        name,
                        webhook_core::metrics::REQUESTS_METRIC,
                        "{file}: no filter metric {name}"
                    );
                } else {
                    assert!(
                        exposed.contains(&format!("\n{name}{{"))
                            || exposed.contains(&format!("\n{name} ")),
                        "{file}: the sidecar exposes no {name}"
                    );
                }
            }
        }
        assert!(checked > 10, "only {checked} metric names found");
        for file in ["prometheusrule.yaml", "dashboard.json"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for (i, _) in text.match_indices("outcome=") {
                let value: String = text[i + "outcome=".len()..]
                    .trim_start_matches(['\\', '"'])
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    outcomes.contains(&value.as_str()),
                    "{file}: the filter counts no outcome {value:?}"
                );
            }
        }
    }

    /// Identifiers starting with `bmh_sidecar_` or `webhook_filter_` in `text`.
    fn metric_names(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["bmh_sidecar_", "webhook_filter_"] {
            let mut rest = text;
            while let Some(i) = rest.find(prefix) {
                let word: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let before = rest[..i].chars().last();
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push(word.clone());
                }
                rest = &rest[i + word.len()..];
            }
        }
        out
    }

    #[test]
    fn every_step_has_a_kind() {
        assert_eq!(StepKind::of(&Step::Idle).as_str(), "idle");
        assert_eq!(
            StepKind::of(&Step::Wait(Duration::from_secs(1))).as_str(),
            "wait"
        );
        assert_eq!(
            StepKind::of(&Step::Notify(Phase::Released)).as_str(),
            "notify"
        );
    }
}
