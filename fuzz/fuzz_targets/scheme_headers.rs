//! Every sender scheme's header parsing (`Scheme::present`), its timestamp check and HMAC
//! verification, on arbitrary header values (bytes made text as the adapter does); and the
//! round trip: what each `sign_*` produces for an arbitrary body, delivery id and clock is
//! parsed and verified (a sender following the scheme is never refused). Also
//! `signature::parse_hex_signature` with each configured prefix. Framing: `fuzz/src/lib.rs`
//! (selector = scheme; the request line's path is the delivery id of the round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_core::Error;
use webhook_core::signature::parse_hex_signature;
use webhook_fuzz::{clock, configs, parse, secret_of, signed_headers};

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else {
        return;
    };
    let cfg = &configs()[0];
    let Some(hook) = cfg.webhooks.get(usize::from(input.selector) % 7) else {
        return;
    };
    let (_, unix) = clock(input.offset);

    // Arbitrary headers: a clear 401 kind or a candidate set, never a panic.
    let lookup = |name: &str| {
        input
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    match hook.scheme.present(&lookup) {
        Ok(p) => {
            assert!(!p.candidates.is_empty() && p.candidates.len() <= 8);
            let _ = p.check_time(hook.scheme.tolerance(), unix);
            match p.verify(&hook.secrets, input.body) {
                Ok(i) => assert!(i < hook.secrets.len()),
                Err(e) => assert!(matches!(e, Error::BadSignature), "{e:?}"),
            }
        }
        Err(e) => assert!(
            matches!(e, Error::MissingSignature | Error::MalformedSignature),
            "{e:?}"
        ),
    }
    for (_, v) in &input.headers {
        let v = String::from_utf8_lossy(v);
        for prefix in ["sha256=", "", "v0="] {
            if let Ok(tag) = parse_hex_signature(&v, prefix) {
                let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(
                    parse_hex_signature(&format!("{prefix}{hex}"), prefix).ok(),
                    Some(tag)
                );
            }
        }
    }

    // Round trip: a correct sender is accepted, whatever its body, id and clock.
    let id = input.path.trim();
    let id = if id.is_empty() { "id" } else { id };
    if id.contains(['\r', '\n']) {
        return;
    }
    let Some(signed) = signed_headers(&hook.scheme, secret_of(hook), input.body, unix, id) else {
        return;
    };
    let lookup = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let p = hook
        .scheme
        .present(&lookup)
        .unwrap_or_else(|e| panic!("a correct sender's headers refused: {e:?} {signed:?}"));
    p.check_time(hook.scheme.tolerance(), unix)
        .unwrap_or_else(|e| panic!("a timestamp of now refused: {e:?}"));
    p.verify(&hook.secrets, input.body)
        .unwrap_or_else(|e| panic!("a correct signature refused: {e:?} {signed:?}"));
});
