//! The whole request decision: headers, then body chunks (413 as soon as the cap passes), then
//! the end of stream or trailers, through `webhook_core::flow` as the proxy-wasm adapter drives
//! it, against one filter guarding a webhook of every scheme. Input framing: `fuzz/src/lib.rs`.
//! Properties: no panic; every rejection a documented status with a JSON body and no secret;
//! every accepted request within the cap, signed by a configured secret, and (reservation
//! events) accepted by the sidecar's own validation too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_fuzz::{configs, drive, parse};

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else {
        return;
    };
    let cfg = &configs()[usize::from(input.selector & 1)];
    drive(cfg, &input);
});
