//! Prometheus metrics (prometheus-client), exposed as text on `GET /metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The sidecar's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// HTTP requests by path and status code.
    pub requests: Family<Labels, Counter>,
    /// Per-resource webhook results by event type and result.
    pub results: Family<Labels, Counter>,
    /// Phase changes written by the reconciler, by phase.
    pub transitions: Family<Labels, Counter>,
    /// Notifications by outcome and delivery (`delivered` / `retrying`).
    pub notifications: Family<Labels, Counter>,
    /// Reconcile errors by error type.
    pub reconcile_errors: Family<Labels, Counter>,
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
            requests: Family::default(),
            results: Family::default(),
            transitions: Family::default(),
            notifications: Family::default(),
            reconcile_errors: Family::default(),
        };
        r.register(
            "http_requests",
            "HTTP requests by path and status",
            m.requests.clone(),
        );
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
            "notifications",
            "Notification attempts",
            m.notifications.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile errors by type",
            m.reconcile_errors.clone(),
        );
        Metrics {
            registry: Mutex::new(r),
            ..m
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// Shorthand to increment `family{labels}`.
pub fn inc(family: &Family<Labels, Counter>, labels: &[(&'static str, &str)]) {
    let l: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    family.get_or_create(&l).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        inc(
            &m.results,
            &[("event_type", "EVENT_START"), ("result", "skipped")],
        );
        let text = m.render();
        assert!(
            text.contains(
                "bmh_sidecar_webhook_results_total{event_type=\"EVENT_START\",result=\"skipped\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
