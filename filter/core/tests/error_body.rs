//! The error reply body, byte for byte: the filter's replies and the sidecar's share
//! [`ErrorBody`], and neither may change shape or member order.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::{Duration, SystemTime};

use webhook_core::error::{Error, ErrorBody};
use webhook_core::event::{Reason, ValidationError};
use webhook_core::flow::Rejection;
use webhook_core::metrics::Outcome;

/// 2025-06-08T12:31:00Z.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_749_385_860)
}

fn reply(error: Error) -> String {
    String::from_utf8(Rejection::from(error).body(now())).unwrap()
}

fn invalid(path: &str, reason: Reason) -> ValidationError {
    ValidationError {
        path: path.into(),
        reason,
    }
}

#[test]
fn a_filter_reply_is_detail_error_type_timestamp() {
    assert_eq!(
        reply(Error::BadSignature),
        r#"{"detail":"invalid signature","error_type":"InvalidSignature","timestamp":"2025-06-08T12:31:00Z"}"#
    );
}

#[test]
fn a_refused_body_adds_field_last() {
    assert_eq!(
        reply(invalid("$.userId", Reason::Missing).into()),
        r#"{"detail":"$.userId: required field is missing","error_type":"ValidationError","timestamp":"2025-06-08T12:31:00Z","field":"$.userId"}"#
    );
    assert_eq!(
        reply(invalid("$", Reason::MalformedJson).into()),
        r#"{"detail":"$: body is not valid JSON","error_type":"MalformedJson","timestamp":"2025-06-08T12:31:00Z","field":"$"}"#
    );
}

#[test]
fn strings_are_escaped() {
    let body = ErrorBody::new("a \"quoted\"\nline".into(), "X", "t".into()).to_json();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"detail":"a \"quoted\"\nline","error_type":"X","timestamp":"t"}"#
    );
}

#[test]
fn resource_name_comes_before_timestamp_as_the_sidecar_always_wrote_it() {
    let body = ErrorBody::new("d".into(), "Contended", "t".into())
        .with_resource_name(Some("host-1"))
        .to_json();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"detail":"d","error_type":"Contended","resource_name":"host-1","timestamp":"t"}"#
    );
}

#[test]
fn a_validation_error_answers_the_same_on_its_own_and_inside_the_error() {
    for reason in [
        Reason::MalformedJson,
        Reason::Missing,
        Reason::Stale,
        Reason::ReservationEnded,
    ] {
        let v = invalid("$.timestamp", reason);
        let e = Error::from(v.clone());
        assert_eq!((v.status(), v.outcome()), (e.status(), e.outcome()));
    }
    let v = invalid("$", Reason::MalformedJson);
    assert_eq!((v.status(), v.outcome()), (400, Outcome::MalformedJson));
    let v = invalid("$.timestamp", Reason::FromTheFuture);
    assert_eq!((v.status(), v.outcome()), (422, Outcome::StaleEvent));
}
