//! proxy-wasm adapter of the webhook edge filter: reads headers and body from Envoy, asks
//! [`webhook_core::flow`] for a decision, and performs it (forward, or a JSON local reply plus a
//! counter). All rules live in `webhook-core`; this crate only does host I/O.
//!
//! # Request flow
//! ```text
//! VM start ─▶ Root::on_configure: CompiledConfig::from_json(plugin config, std::env::var)
//!               ├─ error: log at error, return false (Envoy refuses the configuration)
//!               └─ ok: define the counters of webhook_filter_requests_total{webhook,
//!                  outcome}; share Rc<Shared> with every request
//! request  ─▶ on_http_request_headers: strip x-webhook-* headers we own, decide on headers
//!               Pass ─▶ Continue · Reject ─▶ local reply
//!               Inspect ─▶ set x-webhook-name/-verified/-delivery-id, Continue (see below)
//!          ─▶ on_http_request_body: Pause (Envoy buffers) until end of stream, 413 as soon as
//!               the buffered size passes the cap; at the end Pending::finish (verify +
//!               validate), then Verified::admit (replay cache on: the delivery id into shared
//!               data through [`HostSharedData`]), record the matched secret id as filter state
//!               and Continue, or send the local reply
//! response ─▶ on_http_response_headers / on_log: a delivery id admitted for a request the
//!               upstream did not answer 2xx is forgotten again, so the sender's retry passes
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
//! - [`HostSharedData`]: the core's replay-cache store over proxy-wasm shared data.
//! - `main!`: log level, panic hook (logs at critical), root context factory.

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{
    self, HeadersDecision, OWNED_HEADERS, Pending, Rejection, SECRET_ID_PROPERTY,
};
use webhook_core::metrics::{Outcome, requests_metric};
use webhook_core::replay::{self, Admission, CasMismatch, Delivery, SharedData};

use bench::Stage;

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
    /// How much of the request path runs (benchmark builds only, see [`bench`]).
    #[cfg(feature = "bench-stages")]
    stage: Stage,
    /// Counter ids of `webhook_filter_requests_total{webhook, outcome}`: one row per webhook
    /// (configuration order), then one row for paths no webhook guards; one column per
    /// counted outcome ([`Outcome::COUNTED`]). `None` where no such series exists.
    counters: Vec<[Option<u32>; Outcome::COUNTED.len()]>,
}

fn define(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(e) => {
            warn!("webhook filter: cannot define {name}: {e:?}");
            None
        }
    }
}

/// Defines the counter of every (webhook, outcome) series (see [`Shared::counters`]).
fn define_counters(config: &CompiledConfig) -> Vec<[Option<u32>; Outcome::COUNTED.len()]> {
    let webhooks = config.webhooks.iter().map(|w| Some(w.name.as_str()));
    webhooks
        .chain(std::iter::once(None))
        .map(|webhook| {
            let mut row = [None; Outcome::COUNTED.len()];
            for (slot, outcome) in row.iter_mut().zip(Outcome::COUNTED) {
                // Guarded outcomes carry the webhook; `passed` and `not_found` never do.
                if outcome.per_webhook() == webhook.is_some() {
                    *slot = define(&requests_metric(webhook, outcome));
                }
            }
            row
        })
        .collect()
}

impl Shared {
    /// Whether the request path stops after `stage`: benchmark builds only ([`bench`]); a
    /// constant `false` in the shipped artifact, where the compiler removes every such branch.
    #[inline(always)]
    fn stops_after(&self, stage: Stage) -> bool {
        #[cfg(feature = "bench-stages")]
        return self.stage == stage;
        #[cfg(not(feature = "bench-stages"))]
        {
            let _ = stage;
            false
        }
    }

    /// Increments the one counter of this request: `outcome` on `webhook` (`None`: a path no
    /// webhook guards). One host call.
    fn count(&self, outcome: Outcome, webhook: Option<usize>) {
        let Some(slot) = Outcome::COUNTED.iter().position(|o| *o == outcome) else {
            return;
        };
        let row = webhook.unwrap_or(self.config.webhooks.len());
        if let Some(Some(id)) = self.counters.get(row).and_then(|r| r.get(slot)) {
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
        #[cfg(feature = "bench-stages")]
        let (config, stage) = bench::configure(config);
        let counters = define_counters(&config);
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        info!("webhook filter: configured, guarding {}", names.join(", "));
        self.shared = Some(Rc::new(Shared {
            config,
            #[cfg(feature = "bench-stages")]
            stage,
            counters,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            shared: self.shared.clone(),
            state: State::Idle,
            buffered: 0,
            admitted: None,
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
    /// Replay cache entry admitted for this request and not yet confirmed by a 2xx from the
    /// upstream.
    admitted: Option<Delivery>,
}

/// The replay caches' store: proxy-wasm shared data (one per Envoy process and VM id).
///
/// The SDK itself panics on a host status other than `Ok`/`NotFound` (get) or `Ok`/`CasMismatch`
/// (set), which Envoy does not answer for these keys; this code adds no panic of its own: a
/// failed read is read as nothing stored, a failed write as a lost race (docs/filter.md, "Host
/// calls that can panic").
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }
}

impl Context for Filter {}

impl Filter {
    fn reject(&mut self, shared: &Shared, rejection: &Rejection) -> Action {
        shared.count(rejection.outcome(), rejection.webhook);
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
        if shared.stops_after(Stage::Buffer) {
            std::hint::black_box(&body);
            self.state = State::Idle;
            return Action::Continue;
        }
        let now = self.get_current_time();
        let verified = match pending.finish(&shared.config, &body, now) {
            Ok(verified) => verified,
            Err(rejection) => return self.reject(shared, &rejection),
        };
        match verified.admit(&HostSharedData, now) {
            Err(rejection) => return self.reject(shared, &rejection),
            Ok(Some((delivery, Admission::Recorded))) => self.admitted = Some(delivery.clone()),
            Ok(Some((delivery, Admission::Busy))) => {
                let key = &delivery.key;
                warn!("webhook filter: replay cache busy ({key}); delivery not recorded");
            }
            Ok(None) => {}
        }
        // Headers are read-only after the headers callback (Envoy answers NotFound, and the
        // SDK's wrappers panic on any non-Ok status), so the matched secret travels as filter
        // state, which the route turns into x-webhook-secret-id. Envoy accepts filter state
        // here; the rotation test in tests/envoy-harness exercises it. proxy-wasm 0.2.5's
        // `hostcalls::set_property` itself panics on a non-Ok status rather than returning it,
        // so the warning below is only reached with an SDK that reports the error.
        // With a single secret the header was set with the others (no call here).
        if let Some(id) = verified.secret_id_for_filter_state()
            && hostcalls::set_property(vec![SECRET_ID_PROPERTY], Some(id.as_bytes())).is_err()
        {
            warn!("webhook filter: cannot record the matched secret id");
        }
        shared.count(Outcome::Accepted, Some(pending.webhook_index()));
        self.state = State::Idle;
        Action::Continue
    }

    /// For the body and trailers callbacks: the guarded request being inspected, taken out of
    /// the state (the caller puts it back to wait for more, or `finish`/`reject` set the next
    /// state); `Err` with what to answer when there is none (hold back after a local reply).
    fn take_inspecting(&mut self) -> Result<(Rc<Shared>, Pending), Action> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (&self.shared, state) {
            (Some(shared), State::Inspecting(pending)) => Ok((Rc::clone(shared), pending)),
            (_, state) => {
                let action = match state {
                    State::Rejected => Action::Pause,
                    _ => Action::Continue,
                };
                self.state = state;
                Err(action)
            }
        }
    }

    /// Forgets the admitted delivery id (the upstream did not take the delivery).
    fn forget_admitted(&mut self) {
        if let Some(delivery) = self.admitted.take()
            && !replay::forget(&HostSharedData, &delivery)
        {
            let key = &delivery.key;
            warn!("webhook filter: replay cache busy ({key}); delivery id not forgotten");
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self
            .shared
            .as_ref()
            .is_some_and(|s| s.stops_after(Stage::Empty))
        {
            return Action::Continue;
        }
        // One hostcall for all headers instead of one per lookup. The `_bytes` variant: the
        // `String` one unwraps `from_utf8` on every value inside the SDK, so one obs-text byte
        // in any header (legal HTTP/1.1) would abort the VM. Names are tokens (ASCII), checked
        // by Envoy's codecs before we see them.
        let headers = self.get_http_request_headers_bytes();
        for name in OWNED_HEADERS {
            if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                self.set_http_request_header(name, None);
            }
        }
        // Values the core reads are text; a byte that is not UTF-8 becomes U+FFFD, which no
        // signature, content type, length or delivery id accepts, so such a header is refused
        // as malformed rather than mistaken for absent.
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
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
                shared.count(Outcome::Passed, None);
                Action::Continue
            }
            HeadersDecision::Reject(rejection) => self.reject(&shared, &rejection),
            HeadersDecision::Inspect(pending) => {
                // Set before the verdict: they leave Envoy only if the body is accepted. Added,
                // not replaced: inbound copies were removed above.
                for (name, value) in pending.upstream_headers(&shared.config) {
                    self.add_http_request_header(name, &value);
                }
                if shared.stops_after(Stage::Headers) {
                    return Action::Continue;
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
        let (shared, pending) = match self.take_inspecting() {
            Ok(inspecting) => inspecting,
            Err(action) => return action,
        };
        self.buffered = body_size;
        if let Err(rejection) = pending.check_size(&shared.config, body_size) {
            return self.reject(&shared, &rejection);
        }
        if !end_of_stream {
            self.state = State::Inspecting(pending);
            return Action::Pause;
        }
        self.finish(&shared, &pending)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.take_inspecting() {
            Ok((shared, pending)) => self.finish(&shared, &pending),
            Err(action) => action,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.admitted.is_some() {
            let ok = self
                .get_http_response_header_bytes(":status")
                .is_some_and(|s| s.first() == Some(&b'2'));
            if ok {
                self.admitted = None;
            } else {
                self.forget_admitted();
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // No response from the upstream at all (reset, timeout): let the sender retry.
        self.forget_admitted();
    }
}

/// Benchmark builds only (`--features bench-stages`, used by `bench/cpu/run.sh`; the shipped
/// artifact has none of this): the request path cut after a stage, chosen per VM by the
/// environment variable `WEBHOOK_BENCH_STAGE` (`empty`, `headers`, `buffer`, `hmac`, `full`),
/// so the benchmark can price each stage inside a real Envoy.
mod bench {
    #[cfg(feature = "bench-stages")]
    use webhook_core::config::{CompiledConfig, Schema};

    /// Each stage runs everything of the one before it, and more. Named in the shipped
    /// artifact too, where no request ever stops at one (`Shared::stops_after`).
    #[cfg_attr(not(feature = "bench-stages"), allow(dead_code))]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stage {
        /// Every callback continues at once: the price of proxy-wasm itself.
        Empty,
        /// Header map read, owned headers stripped, header checks, upstream headers set; the
        /// body is not held.
        Headers,
        /// `headers`, then the body held until end of stream (`Pause`) and copied into the VM.
        Buffer,
        /// `buffer`, then the decision without body validation: clock, sender timestamp, HMAC,
        /// matched secret recorded (with several secrets), counter.
        Hmac,
        /// `hmac` plus JSON and schema validation: the shipped request path.
        Full,
    }

    /// The stage from `WEBHOOK_BENCH_STAGE` (default `full`) and the configuration it runs
    /// (`hmac`: every webhook's schema set to `none`).
    #[cfg(feature = "bench-stages")]
    pub fn configure(mut config: CompiledConfig) -> (CompiledConfig, Stage) {
        let stage = match std::env::var("WEBHOOK_BENCH_STAGE").as_deref() {
            Ok("empty") => Stage::Empty,
            Ok("headers") => Stage::Headers,
            Ok("buffer") => Stage::Buffer,
            Ok("hmac") => Stage::Hmac,
            _ => Stage::Full,
        };
        if stage == Stage::Hmac {
            for w in &mut config.webhooks {
                w.schema = Schema::None;
            }
        }
        log::warn!("webhook filter: BENCHMARK BUILD, stage {stage:?}");
        (config, stage)
    }
}
