//! The JSON-Schema path (feature `json-schema`): arbitrary bodies through `flow` (unsigned
//! webhooks, so every body reaches the validator) against the repository's reservation-event
//! schema and a schema using the keywords and formats with the most parsing behind them
//! (regex `pattern`, `format`s, big and fractional numbers, `$ref` recursion, `uniqueItems`,
//! `unevaluatedProperties`). Byte 0 picks the webhook, the rest is the body. Properties: no
//! panic; every rejection a documented status with a JSON body; a body the Rust rules accept
//! as a reservation event is accepted by the reservation schema too (the schema is documented
//! as the same contract, minus what JSON Schema cannot say).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use webhook_core::config::CompiledConfig;
use webhook_core::event;
use webhook_fuzz::{RESERVATION_SCHEMA, check_rejection, clock, env};

const KEYWORDS_SCHEMA: &str = r##"{
  "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}},
                     "unevaluatedProperties": {"type": ["string", "number", "null", "object"]}}},
  "type": "object",
  "properties": {
    "id": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$", "minLength": 1},
    "email": {"type": "string", "format": "email"},
    "when": {"type": "string", "format": "date-time"},
    "host": {"type": "string", "format": "hostname"},
    "ip": {"type": "string", "format": "ipv6"},
    "url": {"type": "string", "format": "uri"},
    "uuid": {"type": "string", "format": "uuid"},
    "re": {"type": "string", "format": "regex"},
    "amount": {"type": "number", "multipleOf": 0.01, "minimum": -1e308, "maximum": 1e308},
    "count": {"type": "integer", "exclusiveMaximum": 18446744073709551615},
    "tags": {"type": "array", "uniqueItems": true, "maxItems": 64,
             "contains": {"const": "x"}, "minContains": 1},
    "node": {"$ref": "#/$defs/node"}
  },
  "patternProperties": {"^x-[a-z]+$": {"type": "string", "maxLength": 16}},
  "dependentRequired": {"email": ["id"]}
}"##;

fn config() -> &'static CompiledConfig {
    static CFG: OnceLock<CompiledConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let json = format!(
            r#"{{"webhooks":[
              {{"name":"reservation","path":"/r","allow_unsigned":true,"schema":{{"json_schema":{RESERVATION_SCHEMA}}}}},
              {{"name":"keywords","path":"/k","allow_unsigned":true,"schema":{{"json_schema":{KEYWORDS_SCHEMA}}}}}
            ]}}"#
        );
        CompiledConfig::from_json(json.as_bytes(), env)
            .unwrap_or_else(|e| panic!("the fuzz configuration must compile: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let cfg = config();
    let path = if selector & 1 == 0 { "/r" } else { "/k" };
    let header = |name: &str| (name == "content-type").then(|| "application/json".to_owned());
    let webhook_core::flow::HeadersDecision::Inspect(pending) =
        webhook_core::flow::on_request_headers(cfg, "POST", path, header)
    else {
        panic!("an unsigned webhook inspects the body");
    };
    let (now, _) = clock(0);
    let verdict = pending.finish(cfg, body, now);
    if let Err(r) = &verdict {
        check_rejection(cfg, r, now);
    }
    if path == "/r" && event::validate(body).is_ok() {
        assert!(
            verdict.is_ok(),
            "the Rust rules accept, the reservation schema refuses: {:?}",
            verdict.err().map(|r| r.error.to_string())
        );
    }
});
