//! The filter configuration (`CompiledConfig::from_json`) on arbitrary documents, with an
//! environment holding usable, short, empty and Standard Webhooks secrets. Properties: no
//! panic; no secret value in an error or a warning (both are logged); a compiled
//! configuration routes each webhook's path to it, names counters whose tags Envoy's stats tag
//! extraction reads back as exactly (webhook, outcome), and decides
//! a first request on every path without panicking.
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
        for outcome in Outcome::COUNTED {
            // What the stats_tags regexes `(<tag>=\.=(.*?);\.;)` cut out must be the webhook's
            // name and the outcome, and nothing may be left but the family's name.
            let name = requests_metric(Some(&hook.name), outcome);
            let rest = name
                .strip_prefix("webhook=.=")
                .and_then(|r| r.split_once(";.;"))
                .map(|(webhook, r)| (webhook.to_owned(), r.to_owned()));
            let Some((webhook, rest)) = rest else {
                panic!("no webhook tag in {name}")
            };
            assert_eq!(webhook, hook.name, "webhook tag cut short in {name}");
            let expected = format!("outcome=.={};.;{REQUESTS_METRIC}", outcome.label());
            assert_eq!(rest, expected, "tags of {name}");
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
