//! proxy-wasm adapter of the webhook edge filter: reads headers and body from Envoy, asks
//! [`webhook_core::flow`] for a decision, and performs it (forward, or a JSON local reply plus a
//! counter). All rules live in `webhook-core`; this crate only does host I/O.
//!
//! # Request flow
//! ```text
//! VM start ─▶ Root::on_configure: CompiledConfig::from_json(plugin config, std::env::var)
//!               ├─ error: log at error, return false (Envoy refuses the configuration)
//!               └─ ok: define one counter per Outcome; share Rc<Shared> with every request
//! request  ─▶ on_http_request_headers: strip x-webhook-* headers we own, decide on headers
//!               Pass ─▶ Continue · Reject ─▶ local reply
//!               Inspect ─▶ set x-webhook-name/-verified, Continue (see below)
//!          ─▶ on_http_request_body: Pause (Envoy buffers) until end of stream, 413 as soon as
//!               the buffered size passes the cap; at the end verify + validate, then record
//!               the matched secret id as filter state and Continue, or send the local reply
//! ```
//! Returning `Pause` from the headers callback would stop Envoy from delivering the body at
//! all (the host turns it into StopAllIteration), so the headers callback continues and
//! `envoy.filters.http.buffer` placed right after this filter holds the headers back from the
//! router until we continue with the verified body: a rejected request reaches the upstream
//! with zero bytes. See `docs/filter.md`.
//!
//! # Layout
//! - [`Root`]: configuration and metric definitions, once per VM.
//! - [`Filter`]: one per HTTP request; drives the core's state machine.
//! - `main!`: log level, panic hook (logs at critical), root context factory.

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use webhook_core::config::{CompiledConfig, OWNED_HEADERS, SECRET_ID_PROPERTY};
use webhook_core::flow::{self, HeadersDecision, Pending, Rejection};
use webhook_core::metrics::Outcome;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("webhook filter panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What every request of a VM shares: the compiled configuration and the counter ids.
pub struct Shared {
    config: CompiledConfig,
    counters: [Option<u32>; Outcome::COUNTED.len()],
}

impl Shared {
    fn count(&self, outcome: Outcome) {
        let slot = Outcome::COUNTED.iter().position(|o| *o == outcome);
        if let Some(Some(id)) = slot.and_then(|i| self.counters.get(i)) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

/// Root context: parses the configuration once per VM.
#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config = match CompiledConfig::from_json(&raw, |k| std::env::var(k).ok()) {
            Ok(config) => config,
            Err(e) => {
                error!("webhook filter: configuration refused: {e}");
                return false;
            }
        };
        for w in &config.warnings {
            warn!("webhook filter: {w}");
        }
        let mut counters = [None; Outcome::COUNTED.len()];
        for (slot, outcome) in counters.iter_mut().zip(Outcome::COUNTED) {
            match hostcalls::define_metric(MetricType::Counter, outcome.metric_name()) {
                Ok(id) => *slot = Some(id),
                Err(e) => warn!(
                    "webhook filter: cannot define {}: {e:?}",
                    outcome.metric_name()
                ),
            }
        }
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        info!("webhook filter: configured, guarding {}", names.join(", "));
        self.shared = Some(Rc::new(Shared { config, counters }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            shared: self.shared.clone(),
            state: State::Idle,
            buffered: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum State {
    /// Nothing to do (unguarded path, or before headers).
    Idle,
    /// Guarded request: buffering the body.
    Inspecting(Pending),
    /// A local reply was sent; hold everything back.
    Rejected,
}

/// One HTTP request.
pub struct Filter {
    shared: Option<Rc<Shared>>,
    state: State,
    /// Size of the body Envoy has buffered for us so far.
    buffered: usize,
}

impl Context for Filter {}

impl Filter {
    fn reject(&mut self, shared: &Shared, rejection: &Rejection) -> Action {
        shared.count(rejection.outcome());
        let headers = rejection.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = rejection.body(self.get_current_time());
        self.send_http_response(u32::from(rejection.status()), headers, Some(&body));
        self.state = State::Rejected;
        Action::Pause
    }

    /// The whole body is here (end of stream or trailers): decide.
    fn finish(&mut self, shared: &Shared, pending: &Pending) -> Action {
        let body = if self.buffered == 0 {
            Vec::new()
        } else {
            self.get_http_request_body(0, self.buffered)
                .unwrap_or_default()
        };
        match pending.finish(&shared.config, &body, self.get_current_time()) {
            Ok(accepted) => {
                // Headers are read-only after the headers callback (Envoy answers NotFound, and
                // the SDK's wrappers panic on any non-Ok status), so the matched secret travels
                // as filter state, which the route turns into x-webhook-secret-id. Envoy accepts
                // filter state here; the rotation test in tests/envoy-harness exercises it.
                if let Some(id) = &accepted.secret_id
                    && hostcalls::set_property(vec![SECRET_ID_PROPERTY], Some(id.as_bytes()))
                        .is_err()
                {
                    warn!("webhook filter: cannot record the matched secret id");
                }
                shared.count(Outcome::Accepted);
                self.state = State::Idle;
                Action::Continue
            }
            Err(rejection) => self.reject(shared, &rejection),
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One hostcall for all headers instead of one per lookup.
        let headers = self.get_http_request_headers();
        for name in OWNED_HEADERS {
            if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                self.set_http_request_header(name, None);
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let Some(shared) = self.shared.clone() else {
            // No configuration means Envoy did not start this plugin; fail closed regardless.
            self.send_http_response(503, vec![("content-type", "application/json")], None);
            return Action::Pause;
        };
        let method = header(":method").unwrap_or_default();
        let path = header(":path").unwrap_or_default();
        let decision = flow::on_request_headers(&shared.config, &method, &path, header);
        match decision {
            HeadersDecision::Pass => {
                shared.count(Outcome::Passed);
                Action::Continue
            }
            HeadersDecision::Reject(rejection) => self.reject(&shared, &rejection),
            HeadersDecision::Inspect(pending) => {
                // Set before the verdict: they leave Envoy only if the body is accepted.
                for (name, value) in pending.upstream_headers(&shared.config) {
                    self.set_http_request_header(name, Some(&value));
                }
                if end_of_stream {
                    return self.finish(&shared, &pending);
                }
                self.state = State::Inspecting(pending);
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(shared), State::Inspecting(pending)) = (self.shared.clone(), &self.state) else {
            return match self.state {
                State::Rejected => Action::Pause,
                _ => Action::Continue,
            };
        };
        let pending = pending.clone();
        self.buffered = body_size;
        if let Err(rejection) = pending.check_size(&shared.config, body_size) {
            return self.reject(&shared, &rejection);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish(&shared, &pending)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let (Some(shared), State::Inspecting(pending)) = (self.shared.clone(), &self.state) else {
            return match self.state {
                State::Rejected => Action::Pause,
                _ => Action::Continue,
            };
        };
        let pending = pending.clone();
        self.finish(&shared, &pending)
    }
}
