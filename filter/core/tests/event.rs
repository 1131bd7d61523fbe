//! Reservation messages: every shape the real senders use reads into the one model, every rule
//! refuses with the right JSON path, and nothing a sender legitimately writes is refused.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use std::borrow::Cow;

use common::*;
use serde_json::{Value, json};
use webhook_core::event::{
    self, Action, EventType, KeyProblem, Reason, ReservationMessage, Shape, ValidationError,
};

fn read(body: &[u8]) -> ReservationMessage<'_> {
    event::validate(body).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn refused(body: &[u8]) -> ValidationError {
    match event::validate(body) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e,
    }
}

fn assert_refused(body: &[u8], path: &str, reason: Reason) {
    let e = refused(body);
    assert_eq!((e.path.as_str(), e.reason), (path, reason), "{e}");
}

/// `fixture` (JSON) with `edit` applied.
fn edit(fixture: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(fixture).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}

// === the shapes ===

#[test]
fn the_readme_batch_reads_into_the_model() {
    let m = read(START);
    assert_eq!((m.event_type, m.shape), (EventType::Start, Shape::Batch));
    assert_eq!(m.event_type.action(), Action::Start);
    assert_eq!(m.reservations.len(), 3);
    assert_eq!(m.reservations[2].resource_id, 5);
    assert_eq!(m.user.username.as_deref(), Some("giovanni.mirarchi"));
    assert_eq!(m.webhook_id, None, "the README's sample has no webhookId");
    assert_eq!(read(END).event_type.action(), Action::Release);
    assert!(event::validate(START_RSA).is_ok());
}

#[test]
fn the_processor_0115_batch_with_its_webhook_id_and_active_resources() {
    let m = read(BATCH_0115);
    assert_eq!(m.shape, Shape::Batch);
    assert_eq!(m.webhook_id.as_deref(), Some("12"));
    assert_eq!(m.reservations.len(), 2);
    assert_eq!(m.reservations[1].resource_type, "Switch Port");
    assert_eq!(m.reservations[0].site_name.as_deref(), Some("polito"));
    assert_eq!(m.reservations[1].site_name, None);
}

#[test]
fn the_flat_event_of_processor_0118_and_0117() {
    let m = read(FLAT_START);
    assert_eq!((m.event_type, m.shape), (EventType::Start, Shape::Flat));
    assert_eq!(m.webhook_id.as_deref(), Some("12"), "a number on the wire");
    let r = &m.reservations[..];
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].event_id, "318");
    assert_eq!(r[0].resource_id, 21);
    assert_eq!(r[0].resource_name, "srv-lab-07");
    assert_eq!(r[0].end.as_deref(), Some("2026-03-02T13:00:00Z"));
    assert_eq!(
        r[0].resource_specs.as_deref(),
        Some("2x EPYC 9124, 256 GB\nIP 10.20.0.7")
    );
    // 0.1.17 sent no webhookId at all.
    let no_id = edit(FLAT_START, |v| remove(v, "webhookId"));
    assert_eq!(read(&no_id).webhook_id, None);
    // Its END names the same reservation.
    let end = edit(FLAT_START, |v| v["eventType"] = json!("EVENT_END"));
    let m = read(&end);
    assert_eq!(
        (m.event_type.action(), m.shape),
        (Action::Release, Shape::Flat)
    );
}

#[test]
fn reservation_be_deleted_and_updated_read_their_data() {
    let m = read(DELETED);
    assert_eq!(
        (m.event_type, m.shape),
        (EventType::Deleted, Shape::Envelope)
    );
    assert_eq!(m.event_type.action(), Action::Release);
    assert_eq!(m.webhook_id.as_deref(), Some("12"));
    assert_eq!(
        m.user.user_id.as_deref(),
        Some("7f3c2a10-9b4e-4d21-8c55-0e6a1b2c3d4e")
    );
    let r = &m.reservations[0];
    assert_eq!(r.event_id, "318", "data.id is a number on the wire");
    assert_eq!((r.resource_id, &*r.resource_name), (21, "srv-lab-07"));
    assert_eq!(r.resource_type, "Server");
    let m = read(UPDATED);
    assert_eq!(m.event_type.action(), Action::Update);
    let r = &m.reservations[0];
    assert_eq!(r.end.as_deref(), Some("2026-03-02T15:00:00Z"));
    assert_eq!(r.updated_at.as_deref(), Some("2026-03-02T11:04:59.87Z"));
}

#[test]
fn messages_nobody_acts_on_are_valid_with_nothing_to_do() {
    for (body, ty) in [
        (TEST_WEBHOOK, EventType::Test),
        (RESOURCE_CREATED, EventType::ResourceCreated),
    ] {
        let m = read(body);
        assert_eq!((m.event_type, m.event_type.action()), (ty, Action::Nothing));
        assert!(m.reservations.is_empty());
    }
    for name in [
        "EVENT_CREATED",
        "RESOURCE_UPDATED",
        "RESOURCE_STATUS_CHANGED",
        "RESOURCE_DELETED",
    ] {
        let body = edit(RESOURCE_CREATED, |v| v["eventType"] = json!(name));
        let m = read(&body);
        assert_eq!(m.event_type.as_str(), name);
        assert_eq!(m.event_type.action(), Action::Nothing);
    }
    // A type a later sender adds: still answered 2xx, its name kept for the reply.
    let body = edit(TEST_WEBHOOK, |v| v["eventType"] = json!("EVENT_REMINDER"));
    let m = read(&body);
    assert_eq!(
        (m.event_type, &*m.event_name),
        (EventType::Other, "EVENT_REMINDER")
    );
    // reservation-be writes a string when it cannot serialise the entity.
    let body = edit(DELETED, |v| {
        v["data"] =
            json!("Payload serialization failed due to detached entity. Event type: EVENT_DELETED")
    });
    let m = read(&body);
    assert_eq!(m.event_type, EventType::Deleted);
    assert!(m.reservations.is_empty());
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_body() {
    let m = read(FLAT_START);
    assert!(matches!(m.reservations[0].resource_name, Cow::Borrowed(_)));
    assert!(matches!(m.user.user_id, Some(Cow::Borrowed(_))));
    let owned = m.clone().into_owned();
    assert_eq!(owned, m);
}

// === what each action needs, and what it does not ===

#[test]
fn a_user_without_key_name_or_email_is_valid() {
    for body in [START, FLAT_START, BATCH_0115] {
        let body = edit(body, |v| {
            for k in ["sshPublicKey", "username", "email"] {
                remove(v, k);
            }
        });
        let m = read(&body);
        assert_eq!(m.user.ssh_public_key, None);
        assert_eq!(m.user.username, None);
        assert_eq!(m.user.email, None);
    }
    // `null` reads as absent.
    let body = edit(FLAT_START, |v| v["sshPublicKey"] = Value::Null);
    assert_eq!(read(&body).user.ssh_public_key, None);
}

#[test]
fn an_end_needs_only_the_reservation_and_its_resource() {
    let end = edit(FLAT_START, |v| {
        v["eventType"] = json!("EVENT_END");
        for k in [
            "userId",
            "username",
            "email",
            "sshPublicKey",
            "eventStart",
            "eventTitle",
            "siteId",
        ] {
            remove(v, k);
        }
        v["eventEnd"] = json!("not a date");
    });
    let m = read(&end);
    assert_eq!(m.user.user_id, None);
    assert_eq!(m.reservations[0].event_id, "318");
    for k in ["eventId", "resourceId", "resourceName", "resourceType"] {
        let body = edit(&end, |v| remove(v, k));
        assert_refused(&body, &format!("$.{k}"), Reason::Missing);
    }
    let deleted = edit(DELETED, |v| {
        let d = v["data"].as_object_mut().unwrap();
        for k in ["start", "end", "keycloakId", "title"] {
            d.remove(k);
        }
    });
    assert!(event::validate(&deleted).is_ok());
    assert_refused(
        &edit(DELETED, |v| {
            remove(&mut v["data"]["resource"]["type"], "name")
        }),
        "$.data.resource.type.name",
        Reason::Missing,
    );
    assert_refused(
        &edit(DELETED, |v| remove(v, "data")),
        "$.data",
        Reason::Missing,
    );
}

#[test]
fn a_start_needs_its_user_and_both_times() {
    assert_refused(
        &edit(FLAT_START, |v| remove(v, "userId")),
        "$.userId",
        Reason::Missing,
    );
    assert_refused(
        &edit(START, |v| remove(v, "userId")),
        "$.userId",
        Reason::Missing,
    );
    assert_refused(
        &edit(FLAT_START, |v| remove(v, "eventEnd")),
        "$.eventEnd",
        Reason::Missing,
    );
    assert_refused(
        &edit(START, |v| remove(&mut v["events"][1], "eventStart")),
        "$.events[1].eventStart",
        Reason::Missing,
    );
    assert_refused(
        &edit(UPDATED, |v| remove(&mut v["data"], "end")),
        "$.data.end",
        Reason::Missing,
    );
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let body = edit(START, |v| {
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
    // JSON, but not an object: serde would read a struct from an array, field by field.
    let v: Value = serde_json::from_slice(FLAT_START).unwrap();
    let as_array: Vec<Value> = v.as_object().unwrap().values().cloned().collect();
    assert_refused(
        &serde_json::to_vec(&as_array).unwrap(),
        "$",
        Reason::WrongType,
    );
    assert_refused(b" 42", "$", Reason::WrongType);
    // Invalid UTF-8 where nobody reads it (found by fuzzing: serde_json skips it unchecked).
    let mut hidden = TEST_WEBHOOK.to_vec();
    let at = hidden.windows(4).position(|w| w == b"test").unwrap();
    hidden[at] = 0x92;
    assert_refused(&hidden, "$", Reason::MalformedJson);
}

#[test]
fn wrong_types_name_the_field() {
    assert_refused(
        &edit(START, |v| v["eventType"] = json!(7)),
        "$.eventType",
        Reason::WrongType,
    );
    assert_refused(
        &edit(START, |v| v["events"][2]["resourceId"] = json!("5")),
        "$.events[2].resourceId",
        Reason::WrongType,
    );
    assert_refused(
        &edit(START, |v| v["eventCount"] = json!(-1)),
        "$.eventCount",
        Reason::WrongType,
    );
    assert_refused(
        &edit(START, |v| v["events"] = json!({})),
        "$.events",
        Reason::WrongType,
    );
    assert_refused(
        &edit(FLAT_START, |v| v["webhookId"] = json!([12])),
        "$.webhookId",
        Reason::WrongType,
    );
    assert_refused(
        &edit(DELETED, |v| v["data"]["resource"]["id"] = json!("21")),
        "$.data.resource.id",
        Reason::WrongType,
    );
    assert_refused(
        &edit(START, |v| v["username"] = json!(["a"])),
        "$.username",
        Reason::WrongType,
    );
}

#[test]
fn a_starts_times_must_read_and_end_after_start() {
    assert_refused(
        &edit(START, |v| v["timestamp"] = json!("2025-06-08 14:30")),
        "$.timestamp",
        Reason::NotRfc3339,
    );
    assert_refused(
        &edit(START, |v| v["events"][0]["eventStart"] = json!("yesterday")),
        "$.events[0].eventStart",
        Reason::NotRfc3339,
    );
    assert_refused(
        &edit(START, |v| {
            v["events"][1]["eventEnd"] = json!("2025-06-08T15:30:00.000+02:00")
        }),
        "$.events[1].eventEnd",
        Reason::EndNotAfterStart,
    );
    // Same instant written in another offset is still "not after".
    assert_refused(
        &edit(START, |v| {
            v["events"][0]["eventEnd"] = json!("2025-06-08T13:00:00Z")
        }),
        "$.events[0].eventEnd",
        Reason::EndNotAfterStart,
    );
    assert_refused(
        &edit(UPDATED, |v| v["data"]["end"] = json!("soon")),
        "$.data.end",
        Reason::NotRfc3339,
    );
    // Another character for `T` (RFC 3339's "readability" note, which the `time` crate reads):
    // not what the senders write, nor what the JSON Schema allows (found by fuzzing).
    for bad in [
        "2025-06-08D15:00:00.000+02:00",
        "2025-06-08 15:00:00.000+02:00",
    ] {
        assert_refused(
            &edit(START, |v| v["events"][0]["eventStart"] = json!(bad)),
            "$.events[0].eventStart",
            Reason::NotRfc3339,
        );
    }
    assert!(
        event::validate(&edit(START, |v| {
            v["events"][0]["eventStart"] = json!("2025-06-08t15:00:00.000+02:00")
        }))
        .is_ok()
    );
    // Nine fractional digits and `Z`, as Jackson may write them.
    let body = edit(FLAT_START, |v| {
        v["timestamp"] = json!("2026-03-02T08:56:10.123456789Z")
    });
    assert!(event::validate(&body).is_ok());
}

#[test]
fn a_batch_is_bounded_and_counted_and_may_be_empty() {
    let empty = edit(START, |v| {
        v["events"] = json!([]);
        v["eventCount"] = json!(0);
    });
    assert!(
        read(&empty).reservations.is_empty(),
        "nothing to do, not a 422"
    );
    assert_refused(
        &edit(START, |v| v["eventCount"] = json!(2)),
        "$.eventCount",
        Reason::CountMismatch,
    );
    assert!(event::validate(&edit(START, |v| remove(v, "eventCount"))).is_ok());
    let many = edit(START, |v| {
        let one = v["events"][0].clone();
        v["events"] = json!(vec![one; event::MAX_EVENTS + 1]);
        v["eventCount"] = json!(event::MAX_EVENTS + 1);
    });
    assert_refused(&many, "$.events", Reason::TooLong);
}

// === field rules ===

#[test]
fn what_reservation_be_accepts_is_accepted() {
    // Keycloak usernames of any pattern up to BE's 50 characters, e-mail addresses beyond ASCII,
    // multi-line titles, descriptions and specs, key comments with quotes, `(`, `#`, non-ASCII.
    let key = start_json()["sshPublicKey"].as_str().unwrap().to_owned();
    let (kind_blob, _) = key.rsplit_once(' ').unwrap();
    for (field, value) in [
        (
            "username",
            json!("Root.Admin@Lab-2 with spaces, 50 characters long!!"),
        ),
        ("username", json!("admin")),
        ("username", json!("1user")),
        ("email", json!("giò.rossi@polito.it")),
        (
            "sshPublicKey",
            json!(format!("{kind_blob} o'brien (lab) #2 è")),
        ),
        ("sshPublicKey", json!(format!("{kind_blob}\n"))),
        (
            "sshPublicKey",
            json!("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC..."),
        ),
    ] {
        let body = edit(FLAT_START, |v| v[field] = value.clone());
        assert!(event::validate(&body).is_ok(), "{field} = {value}");
    }
    for (field, value) in [
        ("eventTitle", "Line one\nline two"),
        ("eventDescription", "a\r\nb\tc"),
        ("resourceSpecs", "CPU: 2x\nRAM: 256 GB"),
        ("resourceName", "Server\nA"),
        ("siteName", "Politecnico\u{a0}di Torino è"),
    ] {
        let body = edit(FLAT_START, |v| v[field] = json!(value));
        assert!(event::validate(&body).is_ok(), "{field} = {value:?}");
    }
}

#[test]
fn identifiers_are_one_bounded_line() {
    assert_refused(
        &edit(START, |v| v["userId"] = json!("")),
        "$.userId",
        Reason::Empty,
    );
    assert_refused(
        &edit(START, |v| v["events"][0]["eventId"] = json!("1\n2")),
        "$.events[0].eventId",
        Reason::ControlCharacter,
    );
    assert_refused(
        &edit(FLAT_START, |v| v["username"] = json!("a\nb")),
        "$.username",
        Reason::ControlCharacter,
    );
    assert_refused(
        &edit(FLAT_START, |v| {
            v["resourceType"] = json!("x".repeat(event::MAX_SHORT + 1))
        }),
        "$.resourceType",
        Reason::TooLong,
    );
    assert_refused(
        &edit(DELETED, |v| v["data"]["keycloakId"] = json!("u\u{1b}[2J")),
        "$.data.keycloakId",
        Reason::ControlCharacter,
    );
    assert_refused(
        &edit(FLAT_START, |v| v["webhookId"] = json!("")),
        "$.webhookId",
        Reason::Empty,
    );
}

#[test]
fn free_text_is_bounded_and_free_of_terminal_controls() {
    for c in ['\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
        let body = edit(START, |v| {
            v["events"][0]["siteName"] = json!(format!("a{c}b"))
        });
        assert_refused(&body, "$.events[0].siteName", Reason::ControlCharacter);
    }
    assert_refused(
        &edit(START, |v| {
            v["events"][0]["eventTitle"] = json!("x".repeat(event::MAX_TEXT + 1))
        }),
        "$.events[0].eventTitle",
        Reason::TooLong,
    );
    assert_refused(
        &edit(START, |v| v["events"][0]["resourceName"] = json!(" ")),
        "$.events[0].resourceName",
        Reason::Empty,
    );
    assert_refused(
        &edit(UPDATED, |v| v["data"]["description"] = json!("a\u{0}")),
        "$.data.description",
        Reason::ControlCharacter,
    );
}

#[test]
fn the_key_is_only_bounded_at_the_edge() {
    assert_refused(
        &edit(START, |v| {
            v["sshPublicKey"] = json!(format!(
                "ssh-ed25519 {}",
                "A".repeat(event::MAX_SSH_KEY_LEN)
            ))
        }),
        "$.sshPublicKey",
        Reason::TooLong,
    );
}

#[test]
fn a_negative_resource_id_is_refused_in_every_shape() {
    // It would become the label selector `...resource-id=-1`, which the API server refuses.
    assert_refused(
        &edit(START, |v| v["events"][1]["resourceId"] = json!(-1)),
        "$.events[1].resourceId",
        Reason::Negative,
    );
    assert_refused(
        &edit(FLAT_START, |v| v["resourceId"] = json!(-1)),
        "$.resourceId",
        Reason::Negative,
    );
    assert_refused(
        &edit(DELETED, |v| v["data"]["resource"]["id"] = json!(-1)),
        "$.data.resource.id",
        Reason::Negative,
    );
    assert!(event::validate(&edit(START, |v| v["events"][1]["resourceId"] = json!(0))).is_ok());
}

// === the key, as the sidecar judges it ===

#[test]
fn usable_keys() {
    let good = start_json()["sshPublicKey"].as_str().unwrap().to_owned();
    let (kind_blob, _) = good.rsplit_once(' ').unwrap();
    let (kind, blob) = kind_blob.split_once(' ').unwrap();
    for key in [
        good.clone(),
        kind_blob.to_owned(),
        format!("{kind_blob} Giovanni M. lab-key 2025"),
        format!("{kind_blob} o'brien \"(lab)\" #2 {{x: y}} $(reboot) è"),
        format!("  {good}\r\n"),
        format!("{kind}  \t{blob}   two  spaces"),
    ] {
        assert_eq!(event::check_ssh_key(Some(&key)), Ok(()), "{key:?}");
    }
    let rsa: Value = serde_json::from_slice(START_RSA).unwrap();
    assert_eq!(event::check_ssh_key(rsa["sshPublicKey"].as_str()), Ok(()));
}

#[test]
fn unusable_keys_say_why() {
    let good = start_json()["sshPublicKey"].as_str().unwrap().to_owned();
    let (kind_blob, _) = good.rsplit_once(' ').unwrap();
    let cases: Vec<(Option<String>, KeyProblem)> = vec![
        (None, KeyProblem::Missing),
        (Some(" \n".into()), KeyProblem::Missing),
        (
            Some(format!("{good}\nssh-ed25519 AAAA attacker")),
            KeyProblem::NotOneLine,
        ),
        (
            Some(format!("{kind_blob} a\u{1b}b")),
            KeyProblem::NotOneLine,
        ),
        (Some("ssh-ed25519".into()), KeyProblem::Format),
        (
            Some(format!("command=\"rm -rf /\" {kind_blob}")),
            KeyProblem::UnknownType,
        ),
        (
            Some("ssh-dss AAAAB3NzaC1kc3MAAACBAP".into()),
            KeyProblem::UnknownType,
        ),
        // The replaced service's README sample: a truncated key.
        (
            Some("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC...".into()),
            KeyProblem::BadBlob,
        ),
        // A valid ed25519 blob announced as RSA: the embedded type differs.
        (
            Some(good.replacen("ssh-ed25519", "ssh-rsa", 1)),
            KeyProblem::BadBlob,
        ),
        (Some(weak_rsa_key()), KeyProblem::WeakRsa),
    ];
    for (key, problem) in cases {
        assert_eq!(
            event::check_ssh_key(key.as_deref()),
            Err(problem),
            "{key:?}"
        );
        assert!(!problem.to_string().is_empty());
    }
}

/// An `ssh-rsa` key with e = 65537 and a 1024-bit modulus.
fn weak_rsa_key() -> String {
    use base64::Engine as _;
    let mut blob = Vec::new();
    for part in [&b"ssh-rsa"[..], &[1, 0, 1], &[0xC5; 128]] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-rsa {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    )
}

// === the replay rule ===

/// The last `eventEnd` of the START and END fixtures (2025-06-08T18:00:00+02:00).
const LAST_END: i64 = FIXTURE_TS + 3 * 3600 + 1800;
const DAY: i64 = 86_400;
/// `eventEnd` of the flat and 0.1.15 fixtures (2026-03-02T13:00:00Z).
const FLAT_END: i64 = 1_772_456_400;

#[test]
fn every_message_but_a_start_is_accepted_at_any_age() {
    // An END or DELETED only ever releases what that reservation holds: an outage longer
    // than any window must not leave a host provisioned with the user's key.
    for window in [0, 3600] {
        assert!(event::check_body(END, FIXTURE_TS + 30 * DAY, window, 300).is_ok());
        assert!(event::check_body(END, LAST_END + 365 * DAY, window, 300).is_ok());
        for body in [DELETED, UPDATED, TEST_WEBHOOK] {
            assert!(event::check_body(body, FLAT_END + 365 * DAY, window, 300).is_ok());
        }
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
    let mixed = edit(START, |v| {
        v["events"][1]["eventEnd"] = json!("2025-06-09T18:00:00+02:00")
    });
    assert!(event::check_body(&mixed, LAST_END + 3600, 0, 300).is_ok());
    assert!(event::check_body(&mixed, LAST_END + DAY + 301, 0, 300).is_err());
    // The flat event names its own field.
    let e = event::check_body(FLAT_START, FLAT_END + 301, 0, 300).unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.reason),
        ("$.eventEnd", Reason::ReservationEnded)
    );
    // A batch with nothing in it has nothing to be late for.
    let empty = edit(START, |v| {
        v["events"] = json!([]);
        v["eventCount"] = json!(0);
    });
    assert!(event::check_body(&empty, LAST_END + DAY, 0, 300).is_ok());
}

#[test]
fn a_timestamp_from_the_future_is_refused_for_every_message() {
    for body in [START, END] {
        assert!(event::check_body(body, FIXTURE_TS - 300, 0, 300).is_ok());
        let e = event::check_body(body, FIXTURE_TS - 301, 0, 300).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.reason),
            ("$.timestamp", Reason::FromTheFuture)
        );
    }
    let sent = 1_772_448_087; // DELETED's timestamp, 2026-03-02T10:41:27Z
    assert!(event::check_body(DELETED, sent - 300, 0, 300).is_ok());
    assert!(event::check_body(DELETED, sent - 301, 0, 300).is_err());
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
fn check_freshness_applies_the_same_rule_to_a_read_message() {
    let start = read(START);
    let end = read(END);
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
fn check_body_returns_the_message_validate_reads() {
    assert_eq!(
        event::check_body(FLAT_START, FLAT_END - 3600, 0, 300).unwrap(),
        read(FLAT_START)
    );
    let bad = edit(START, |v| v["userId"] = json!(""));
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
