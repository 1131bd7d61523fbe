//! Signing and verification: known vectors, header parsing, rotation.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use webhook_core::Error;
use webhook_core::scheme::Scheme;
use webhook_core::signature::{self, SecretKey};

#[test]
fn sign_hex_matches_rfc4231_test_case_2() {
    assert_eq!(
        signature::sign_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn header_value_has_sha256_prefix_and_lowercase_hex() {
    let v = signature::signature_header_value(b"k", b"{}");
    assert!(v.starts_with("sha256="));
    assert_eq!(v.len(), 7 + 64);
    assert!(
        v[7..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
}

#[test]
fn parse_accepts_prefix_any_case_and_uppercase_hex() {
    let hex = signature::sign_hex(b"k", b"body");
    let want = signature::parse_hex_signature(&format!("sha256={hex}"), "sha256=").unwrap();
    let upper = format!("SHA256={}", hex.to_uppercase());
    assert_eq!(
        signature::parse_hex_signature(&upper, "sha256=").unwrap(),
        want
    );
    assert_eq!(
        signature::parse_hex_signature(&format!(" sha256={hex} "), "sha256=").unwrap(),
        want
    );
}

#[test]
fn parse_rejects_malformed_values() {
    let hex = signature::sign_hex(b"k", b"body");
    for bad in [
        hex.clone(),                      // no prefix
        format!("md5={hex}"),             // other scheme
        format!("sha256={}", &hex[..62]), // short
        format!("sha256={hex}00"),        // long
        format!("sha256={}zz", &hex[..62]),
        "sha256=".to_owned(),
        String::new(),
    ] {
        assert!(
            matches!(
                signature::parse_hex_signature(&bad, "sha256="),
                Err(Error::MalformedSignature)
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn verify_reports_which_secret_matched_and_rejects_others() {
    let keys = [
        SecretKey::new("current", b"new-secret"),
        SecretKey::new("previous", b"old-secret"),
    ];
    let body = b"{\"a\":1}";
    // The filter's own path: the scheme reads the header, then verifies the body.
    let scheme = Scheme::HmacSha256Hex {
        header: "x-webhook-signature".into(),
        prefix: "sha256=".into(),
        delivery_id_header: None,
    };
    let presented = |k: &[u8]| {
        let value = signature::signature_header_value(k, body);
        scheme
            .present(&|name: &str| (name == "x-webhook-signature").then(|| value.clone()))
            .unwrap()
    };
    assert_eq!(presented(b"new-secret").verify(&keys, body).unwrap(), 0);
    assert_eq!(presented(b"old-secret").verify(&keys, body).unwrap(), 1);
    assert!(matches!(
        presented(b"other").verify(&keys, body),
        Err(Error::BadSignature)
    ));
    // Same signature, body altered by one byte.
    assert!(matches!(
        presented(b"new-secret").verify(&keys, b"{\"a\":2}"),
        Err(Error::BadSignature)
    ));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let k = SecretKey::new("current", b"super-secret-value");
    let dbg = format!("{k:?}");
    assert!(dbg.contains("current"));
    assert!(!dbg.contains("super-secret-value"));
}
