//! The cloud-config the sidecar writes, loaded by cloud-init's own YAML loader (PyYAML's
//! `safe_load`, in the test bench's venv: `tools/envoy-venv.sh`): hostile field values stay the
//! strings they were and never change the document's structure. YAML 1.1 gives `=` (the
//! "value" tag), `yes`, `~`, U+2028 (a line break) and others meanings a plain scalar would
//! take on; the serializer must quote or escape each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use bmh_sidecar::cloudinit::render;
use bmh_sidecar::model::Reservation;
use serde_json::{Value, json};

/// Loads each document with `yaml.safe_load` and returns what it became, as JSON.
fn safe_load_all(docs: &[String]) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = json.load(sys.stdin)\n\
                  out = []\n\
                  for d in docs:\n\
                  \x20   assert d.startswith('#cloud-config\\n')\n\
                  \x20   out.append(yaml.safe_load(d))\n\
                  json.dump(out, sys.stdout)\n";
    let out = common::venv_python(script, &serde_json::to_value(docs).unwrap());
    assert!(
        out.status.success(),
        "PyYAML refused a document: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn hostile_values_load_back_unchanged_with_cloud_inits_loader() {
    // userId is free text in the reservation system (it becomes `gecos`), and so is the SSH
    // key's comment (reservation-be accepts any): both are tried with every value.
    let user_ids = [
        "=",
        "a\u{2028}b",
        "c\u{2029}d",
        "x\u{85}y",
        "yes",
        "No",
        "on",
        "~",
        "null",
        "1e3",
        "0x1F",
        "0o17",
        "1_000",
        "2026-11-30",
        "12:30:00",
        "- x",
        "? x",
        "a: b",
        "#x",
        "&a",
        "*a",
        "!!python/object/apply:os.system ['id']",
        "'q'",
        "\"d\"",
        "@x",
        "`x",
        "%x",
        "|",
        ">",
        "{a: 1}",
        "[1]",
        " lead",
        "trail ",
        "tab\there",
        "\u{feff}bom",
        "keycloak-user-id-123",
        "e\u{301}",
        "\u{1F600}",
        "a:b:c",
    ];
    let holders: Vec<Reservation> = user_ids
        .iter()
        .map(|id| Reservation {
            event_id: "101".into(),
            user_id: (*id).into(),
            username: "giovanni.mirarchi".into(),
            ssh_public_key: format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9RIMklGKNChy25ZekbXY0Z7xeB8MBBmOwiz1ztNtk {id}"
            ),
            resource_id: 1,
            resource_name: "Lab Server A1".into(),
            event_end: None,
            webhook_id: None,
            updated_at: None,
        })
        .collect();
    let docs: Vec<String> = holders
        .iter()
        .map(|h| render(h, "prognose", None).unwrap())
        .collect();
    let loaded = safe_load_all(&docs);
    for ((h, doc), got) in holders.iter().zip(&docs).zip(&loaded) {
        let want = json!({
            "users": [{
                "name": "prognose",
                "gecos": bmh_sidecar::cloudinit::gecos(&h.user_id),
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "groups": "sudo",
                "lock_passwd": true,
                "ssh_authorized_keys": [h.ssh_public_key.trim()],
            }],
            "ssh_pwauth": false,
        });
        assert_eq!(got, &want, "userId {:?} rendered as:\n{doc}", h.user_id);
        assert!(!got["users"][0]["gecos"].as_str().unwrap().contains(':'));
    }
    // Apart from `:`, the comment is the userId exactly.
    assert_eq!(loaded[0]["users"][0]["gecos"], "=");
    assert_eq!(loaded[1]["users"][0]["gecos"], "a\u{2028}b");
}
