//! The filter configuration (`CompiledConfig::from_json`) on arbitrary documents, with an
//! environment holding usable, short, empty and Standard Webhooks secrets. Properties: no
//! panic; no secret value in an error or a warning (both are logged); a compiled
//! configuration routes each webhook's path to it, names counters that Envoy's tag extraction
//! splits into their two labels, and decides a first request on every path without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision};
use webhook_core::metrics::{Outcome, REQUESTS_METRIC, requests_metric};
use webhook_fuzz::{ALL_SECRETS, check_rejection, clock, env};

fuzz_target!(|data: &[u8]| {
    let cfg = match CompiledConfig::from_json(data, env) {
        Ok(cfg) => cfg,
        Err(e) => {
            let text = e.to_string();
            for s in ALL_SECRETS {
                assert!(
                    !text.contains(s),
                    "a secret in a configuration error: {text}"
                );
            }
            return;
        }
    };
    for w in &cfg.warnings {
        for s in ALL_SECRETS {
            assert!(!w.contains(s), "a secret in a warning: {w}");
        }
    }
    let (now, _) = clock(0);
    for (i, hook) in cfg.webhooks.iter().enumerate() {
        assert_eq!(cfg.route(&hook.path).map(|(j, _)| j), Some(i));
        // Envoy's tag extraction must cut each counter name into exactly its two labels.
        for outcome in Outcome::COUNTED.into_iter().filter(|o| o.per_webhook()) {
            let name = requests_metric(Some(&hook.name), outcome);
            let webhook = format!("webhook=.={}", hook.name);
            let outcome = format!("outcome=.={}", outcome.label());
            assert_eq!(
                name.split(";.;").collect::<Vec<_>>(),
                [webhook.as_str(), outcome.as_str(), REQUESTS_METRIC],
                "counter name does not split into its labels: {name}"
            );
        }
        let method = hook.methods.first().cloned().unwrap_or_default();
        let header = |name: &str| (name == "content-type").then(|| "application/json".to_owned());
        match flow::on_request_headers(&cfg, &method, &hook.path, header) {
            HeadersDecision::Pass => panic!("a guarded path passed unchecked"),
            HeadersDecision::Reject(r) => check_rejection(&cfg, &r, now),
            HeadersDecision::Inspect(p) => {
                for body in [&b""[..], b"{}", b"null"] {
                    if let Err(r) = p.finish(&cfg, body, now) {
                        check_rejection(&cfg, &r, now);
                    } else {
                        assert!(hook.allow_unsigned, "accepted without a signature");
                    }
                }
            }
        }
    }
});
