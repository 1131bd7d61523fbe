//! Event validation: the fixtures pass, every rule refuses with the right JSON path.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::*;
use serde_json::json;
use webhook_core::event::{self, EventType, Reason, ValidationError};

fn refused(body: &[u8]) -> ValidationError {
    match event::validate(body) {
        Ok(ev) => panic!("accepted: {ev:?}"),
        Err(e) => e,
    }
}

fn assert_refused(body: &[u8], path: &str, reason: Reason) {
    let e = refused(body);
    assert_eq!((e.path.as_str(), e.reason), (path, reason), "{e}");
}

#[test]
fn fixtures_are_valid() {
    let s = event::validate(START).unwrap();
    assert_eq!(s.event_type, EventType::Start);
    assert_eq!(s.events.len(), 3);
    assert_eq!(s.events[2].resource_id, 5);
    assert_eq!(event::validate(END).unwrap().event_type, EventType::End);
    assert!(event::validate(START_RSA).is_ok());
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let body = edited(|v| {
        v["schemaVersion"] = json!(2);
        v["events"][0]["extra"] = json!({"x": [1, 2]});
    });
    assert!(event::validate(&body).is_ok());
}

#[test]
fn malformed_json_is_reported_at_the_root() {
    for body in [
        &b"{"[..],
        b"not json",
        b"",
        b"{\"eventType\":\"EVENT_START\",}",
        &START[..START.len() - 3],
    ] {
        assert_refused(body, "$", Reason::MalformedJson);
    }
    let mut trailing = START.to_vec();
    trailing.extend_from_slice(b" {}");
    assert_refused(&trailing, "$", Reason::MalformedJson);
}

#[test]
fn truncated_readme_key_is_refused_at_ssh_public_key() {
    let body = edited(|v| v["sshPublicKey"] = json!("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC..."));
    let e = refused(&body);
    assert_eq!(e.path, "$.sshPublicKey");
    assert_eq!(e.reason, Reason::BadSshKeyBlob);
}

#[test]
fn ssh_key_injection_attempts_are_refused() {
    let good = start_json()["sshPublicKey"].as_str().unwrap().to_owned();
    let (kind_blob, _) = good.rsplit_once(' ').unwrap();
    let cases: Vec<(String, Reason)> = vec![
        (
            format!("{good}\nssh-ed25519 AAAA attacker"),
            Reason::ControlCharacter,
        ),
        (
            format!("{kind_blob} x\"\nruncmd: [rm]"),
            Reason::ControlCharacter,
        ),
        (format!("{kind_blob} a'b"), Reason::BadSshKeyComment),
        (format!("{kind_blob} a\"b"), Reason::BadSshKeyComment),
        (format!("{kind_blob} #comment"), Reason::BadSshKeyComment),
        (format!("{kind_blob} {{x: y}}"), Reason::BadSshKeyComment),
        (format!("{kind_blob} $(reboot)"), Reason::BadSshKeyComment),
        (
            format!("{kind_blob}  double-space"),
            Reason::BadSshKeyComment,
        ),
        (format!("{kind_blob}\tx"), Reason::ControlCharacter),
        (
            format!("command=\"rm -rf /\" {kind_blob}"),
            Reason::UnknownSshKeyType,
        ),
        (
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP".to_owned(),
            Reason::UnknownSshKeyType,
        ),
        ("ssh-ed25519".to_owned(), Reason::BadSshKeyFormat),
        (String::new(), Reason::BadSshKeyFormat),
        // Valid ed25519 blob announced as RSA: embedded type differs.
        (
            good.replacen("ssh-ed25519", "ssh-rsa", 1),
            Reason::BadSshKeyBlob,
        ),
        ("ssh-ed25519 !!!notbase64".to_owned(), Reason::BadSshKeyBlob),
        (format!("ssh-ed25519 {}", "A".repeat(5000)), Reason::TooLong),
    ];
    for (key, reason) in cases {
        let body = edited(|v| v["sshPublicKey"] = json!(key));
        let e = refused(&body);
        assert_eq!(
            (e.path.as_str(), e.reason),
            ("$.sshPublicKey", reason),
            "key {key:?}"
        );
    }
}

#[test]
fn ssh_key_without_comment_and_with_spaced_comment_pass() {
    let good = start_json()["sshPublicKey"].as_str().unwrap().to_owned();
    let (kind_blob, _) = good.rsplit_once(' ').unwrap();
    for key in [
        kind_blob.to_owned(),
        format!("{kind_blob} Giovanni M. lab-key 2025"),
    ] {
        assert!(event::check_ssh_key(&key).is_ok(), "{key}");
    }
}

#[test]
fn weak_rsa_key_is_refused() {
    // Wire blob: "ssh-rsa", e = 65537, n = 1024-bit modulus.
    use base64::Engine as _;
    let mut blob = Vec::new();
    for part in [&b"ssh-rsa"[..], &[1, 0, 1], &[0xC5; 128]] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(part);
    }
    let key = format!(
        "ssh-rsa {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    assert_eq!(
        event::check_ssh_key(&key).unwrap_err().reason,
        Reason::WeakSshKey
    );
}

#[test]
fn username_rules() {
    for ok in [
        "giovanni.mirarchi",
        "_svc",
        "a",
        "user-1",
        "a2345678901234567890123456789012",
    ] {
        assert!(event::check_username(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "-rf",
        "Root",
        "1user",
        ".hidden",
        "a b",
        "user\n",
        "user:x",
        "a23456789012345678901234567890123",
        "giovanni$",
        "ü",
    ] {
        assert_eq!(
            event::check_username(bad).unwrap_err().reason,
            Reason::BadUsername,
            "{bad:?}"
        );
    }
    for reserved in ["root", "daemon", "nobody", "sshd", "systemd-coredump"] {
        assert_eq!(
            event::check_username(reserved).unwrap_err().reason,
            Reason::ReservedUsername
        );
    }
    let body = edited(|v| v["username"] = json!("root"));
    assert_refused(&body, "$.username", Reason::ReservedUsername);
}

#[test]
fn email_rules() {
    for ok in [
        "a@b.it",
        "giovanni.mirarchi@example.com",
        "x+tag@sub.example-lab.org",
    ] {
        assert!(event::check_email(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "a",
        "a@b",
        "@b.it",
        "a@.it",
        "a@b..it",
        ".a@b.it",
        "a..b@c.it",
        "a b@c.it",
        "a@b.it\n",
        "a@-b.it",
        "\"q\"@b.it",
        "a@b@c.it",
    ] {
        assert!(event::check_email(bad).is_err(), "{bad:?}");
    }
    assert_refused(
        &edited(|v| v["email"] = json!("nope")),
        "$.email",
        Reason::BadEmail,
    );
}

#[test]
fn event_type_must_be_one_of_two() {
    assert_refused(
        &edited(|v| v["eventType"] = json!("EVENT_MAYBE")),
        "$.eventType",
        Reason::WrongType,
    );
}

#[test]
fn missing_field_names_the_field() {
    assert_refused(
        &edited(|v| {
            v.as_object_mut().unwrap().remove("email");
        }),
        "$.email",
        Reason::Missing,
    );
    assert_refused(
        &edited(|v| {
            v["events"][1].as_object_mut().unwrap().remove("eventStart");
        }),
        "$.events[1].eventStart",
        Reason::Missing,
    );
}

#[test]
fn wrong_types_name_the_field() {
    assert_refused(
        &edited(|v| v["events"][2]["resourceId"] = json!("5")),
        "$.events[2].resourceId",
        Reason::WrongType,
    );
    assert_refused(
        &edited(|v| v["eventCount"] = json!(-1)),
        "$.eventCount",
        Reason::WrongType,
    );
    assert_refused(
        &edited(|v| v["events"] = json!({})),
        "$.events",
        Reason::WrongType,
    );
}

#[test]
fn timestamps_must_be_rfc3339_and_end_after_start() {
    assert_refused(
        &edited(|v| v["timestamp"] = json!("2025-06-08 14:30")),
        "$.timestamp",
        Reason::NotRfc3339,
    );
    assert_refused(
        &edited(|v| v["events"][0]["eventStart"] = json!("yesterday")),
        "$.events[0].eventStart",
        Reason::NotRfc3339,
    );
    assert_refused(
        &edited(|v| v["events"][1]["eventEnd"] = json!("2025-06-08T15:30:00.000+02:00")),
        "$.events[1].eventEnd",
        Reason::EndNotAfterStart,
    );
    // Same instant written in another offset is still "not after".
    assert_refused(
        &edited(|v| v["events"][0]["eventEnd"] = json!("2025-06-08T13:00:00Z")),
        "$.events[0].eventEnd",
        Reason::EndNotAfterStart,
    );
}

#[test]
fn events_must_be_non_empty_bounded_and_counted() {
    assert_refused(
        &edited(|v| {
            v["events"] = json!([]);
            v["eventCount"] = json!(0);
        }),
        "$.events",
        Reason::NoEvents,
    );
    assert_refused(
        &edited(|v| v["eventCount"] = json!(2)),
        "$.eventCount",
        Reason::CountMismatch,
    );
    let many = edited(|v| {
        let one = v["events"][0].clone();
        v["events"] = json!(vec![one; event::MAX_EVENTS + 1]);
        v["eventCount"] = json!(event::MAX_EVENTS + 1);
    });
    assert_refused(&many, "$.events", Reason::TooLong);
}

#[test]
fn strings_are_bounded_and_single_line() {
    assert_refused(
        &edited(|v| v["userId"] = json!("")),
        "$.userId",
        Reason::Empty,
    );
    assert_refused(
        &edited(|v| v["events"][0]["resourceName"] = json!("a\u{0}b")),
        "$.events[0].resourceName",
        Reason::ControlCharacter,
    );
    assert_refused(
        &edited(|v| v["events"][0]["eventTitle"] = json!("x".repeat(300))),
        "$.events[0].eventTitle",
        Reason::TooLong,
    );
    assert_refused(
        &edited(|v| v["events"][0]["eventId"] = json!("1\n2")),
        "$.events[0].eventId",
        Reason::ControlCharacter,
    );
    // Descriptions may span lines.
    assert!(
        event::validate(&edited(
            |v| v["events"][0]["eventDescription"] = json!("a\nb\tc")
        ))
        .is_ok()
    );
}

/// The last `eventEnd` of the START and END fixtures (2025-06-08T18:00:00+02:00).
const LAST_END: i64 = FIXTURE_TS + 3 * 3600 + 1800;
const DAY: i64 = 86_400;

#[test]
fn an_end_is_accepted_at_any_age() {
    // Idempotent and owner-checked by the sidecar: an outage longer than any window must not
    // leave a host provisioned with the user's key. Even with a replay window set.
    for window in [0, 3600] {
        assert!(event::check_body(END, FIXTURE_TS + 30 * DAY, window, 300).is_ok());
        assert!(event::check_body(END, LAST_END + 365 * DAY, window, 300).is_ok());
    }
}

#[test]
fn a_start_is_accepted_until_its_last_event_end_plus_the_skew() {
    // A START retried during its reservation is honoured, whatever the age of its timestamp.
    assert!(event::check_body(START, LAST_END - 60, 0, 300).is_ok());
    assert!(event::check_body(START, LAST_END + 300, 0, 300).is_ok());
    let e = event::check_body(START, LAST_END + 301, 0, 300).unwrap_err();
    assert_eq!(e.path, "$.events");
    assert!(
        e.to_string().contains("eventEnd has passed"),
        "clear reason: {e}"
    );
    // One resource still reserved keeps the START acceptable (the sidecar skips the others).
    let mixed = edited(|v| v["events"][1]["eventEnd"] = json!("2025-06-09T18:00:00+02:00"));
    assert!(event::check_body(&mixed, LAST_END + 3600, 0, 300).is_ok());
    assert!(event::check_body(&mixed, LAST_END + DAY + 301, 0, 300).is_err());
}

#[test]
fn a_timestamp_from_the_future_is_refused_for_both_event_types() {
    for body in [START, END] {
        assert!(event::check_body(body, FIXTURE_TS - 300, 0, 300).is_ok());
        let e = event::check_body(body, FIXTURE_TS - 301, 0, 300).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.reason),
            ("$.timestamp", Reason::FromTheFuture)
        );
    }
}

#[test]
fn the_optional_replay_window_bounds_only_the_start_timestamp() {
    assert!(event::check_body(START, FIXTURE_TS + 3600, 3600, 300).is_ok());
    let e = event::check_body(START, FIXTURE_TS + 3601, 3600, 300).unwrap_err();
    assert_eq!((e.path.as_str(), e.reason), ("$.timestamp", Reason::Stale));
    // Off (the default): only the reservation's end bounds a START.
    assert!(event::check_body(START, FIXTURE_TS + 3601, 0, 300).is_ok());
}

#[test]
fn check_freshness_applies_the_same_rule_to_a_parsed_event() {
    let start = event::validate(START).unwrap();
    let end = event::validate(END).unwrap();
    assert!(event::check_freshness(&start, LAST_END + 300, 0, 300).is_ok());
    assert_eq!(
        event::check_freshness(&start, LAST_END + 301, 0, 300)
            .unwrap_err()
            .path,
        "$.events"
    );
    assert!(event::check_freshness(&end, LAST_END + 365 * DAY, 3600, 300).is_ok());
}

#[test]
fn start_expired_is_the_per_resource_rule_for_the_sidecar() {
    let end = "2025-06-08T18:00:00+02:00";
    assert!(!event::start_expired(end, LAST_END - 1, 0));
    assert!(!event::start_expired(end, LAST_END, 0));
    assert!(event::start_expired(end, LAST_END + 1, 0));
    assert!(!event::start_expired(end, LAST_END + 300, 300));
    assert!(event::start_expired(end, LAST_END + 301, 300));
    // Fail closed: an end that cannot be read never lets a START provision.
    assert!(event::start_expired("tomorrow", LAST_END - DAY, 300));
    // No overflow at the edges.
    assert!(!event::start_expired(end, i64::MIN, u64::MAX));
    assert!(event::start_expired(end, i64::MAX, 0));
}

#[test]
fn serde_shape_round_trips() {
    let ev = event::validate(START).unwrap();
    let back: serde_json::Value = serde_json::to_value(&ev).unwrap();
    assert_eq!(back["eventType"], "EVENT_START");
    assert_eq!(back["sshPublicKey"], start_json()["sshPublicKey"]);
    assert_eq!(back["events"][0]["resourceId"], 1);
}

#[test]
fn unicode_control_characters_are_refused_everywhere_single_line() {
    for c in [
        '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}', '\n', '\r', '\t',
    ] {
        let body = edited(|v| v["events"][0]["siteName"] = json!(format!("a{c}b")));
        assert_refused(&body, "$.events[0].siteName", Reason::ControlCharacter);
    }
    // Non-control non-ASCII text is fine (U+00A0 and U+00E8 share the 0xC2/0xC3 lead bytes).
    let body = edited(|v| v["events"][0]["siteName"] = json!("Politecnico\u{a0}di Torino è"));
    assert!(event::validate(&body).is_ok());
    let body = edited(|v| v["events"][0]["eventDescription"] = json!("x\u{85}y"));
    assert_refused(
        &body,
        "$.events[0].eventDescription",
        Reason::ControlCharacter,
    );
}

#[test]
fn check_body_applies_the_same_rules_and_the_replay_rule() {
    assert!(event::check_body(START, FIXTURE_TS, 3600, 300).is_ok());
    let bad = edited(|v| v["username"] = json!("root"));
    assert_eq!(
        event::check_body(&bad, FIXTURE_TS, 3600, 300).unwrap_err(),
        refused(&bad)
    );
    assert_eq!(
        event::check_body(b"{", FIXTURE_TS, 0, 0)
            .unwrap_err()
            .reason,
        Reason::MalformedJson
    );
}

#[test]
fn a_negative_resource_id_is_refused() {
    // It would become the label selector `...resource-id=-1`, which the API server refuses.
    let e = refused(&edited(|v| v["events"][1]["resourceId"] = json!(-1)));
    assert_eq!(e.path, "$.events[1].resourceId");
    assert!(event::validate(&edited(|v| v["events"][1]["resourceId"] = json!(0))).is_ok());
    assert!(event::validate(&edited(|v| v["events"][1]["resourceId"] = json!(i64::MAX))).is_ok());
}
