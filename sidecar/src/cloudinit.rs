//! The userData document: a `#cloud-config` that puts the reservation's SSH key on the site's
//! login account (`LOGIN_USER`, `prognose` by default: what the site's users are told to log in
//! as), plus the optional operator account with its keys from a Secret. Rendered from a struct
//! by a YAML serializer, so no user input can change the document's structure. The Keycloak
//! username is not an account: it is metadata only.

use serde::Serialize;

use crate::config::OperatorAccount;
use crate::error::{Error, Result};
use crate::model::Reservation;

/// The parts of cloud-config the sidecar writes.
#[derive(Debug, Serialize)]
struct CloudConfig<'a> {
    users: Vec<User<'a>>,
    ssh_pwauth: bool,
}

/// A cloud-init `users` entry.
#[derive(Debug, Serialize)]
struct User<'a> {
    name: &'a str,
    gecos: &'a str,
    shell: &'static str,
    sudo: &'static str,
    groups: &'static str,
    lock_passwd: bool,
    ssh_authorized_keys: Vec<&'a str>,
}

/// The `gecos` (comment) of the account: the reservation system's userId, with `:` replaced
/// by `_` (`useradd` refuses a comment holding `:`, the passwd field separator, and cloud-init
/// would then create no account at all).
pub fn gecos(user_id: &str) -> String {
    user_id.replace(':', "_")
}

/// Renders the userData for `holder`: its key on `login_user`, and the operator account.
pub fn render(
    holder: &Reservation,
    login_user: &str,
    operator: Option<&OperatorAccount>,
) -> Result<String> {
    let gecos = gecos(&holder.user_id);
    let account = |name, gecos, keys| User {
        name,
        gecos,
        shell: "/bin/bash",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        groups: "sudo",
        lock_passwd: true,
        ssh_authorized_keys: keys,
    };
    let mut users = vec![account(
        login_user,
        &gecos,
        vec![holder.ssh_public_key.trim()],
    )];
    if let Some(op) = operator {
        users.push(account(
            &op.name,
            "operator",
            op.keys.iter().map(|k| k.trim()).collect(),
        ));
    }
    let doc = CloudConfig {
        users,
        ssh_pwauth: false,
    };
    // Plain scalars only: a long SSH key must stay on one line, not become a folded block.
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.prefer_block_scalars = false;
    let body = serde_saphyr::to_string_with_options(&doc, opts).map_err(Error::Render)?;
    Ok(format!("#cloud-config\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::holder;

    #[test]
    fn renders_a_cloud_config_that_parses_back() {
        let mut h = holder("1", "u1");
        h.username = "Giovanni Mirarchi (admin)".into();
        let s = render(&h, "prognose", None).unwrap();
        assert!(s.starts_with("#cloud-config\n"));
        let v: serde_json::Value = serde_saphyr::from_str(&s).unwrap();
        assert_eq!(
            v["users"][0]["name"], "prognose",
            "the username is metadata only"
        );
        assert_eq!(v["users"].as_array().unwrap().len(), 1);
        assert_eq!(v["users"][0]["ssh_authorized_keys"][0], h.ssh_public_key);
        assert_eq!(v["users"][0]["lock_passwd"], true);
        assert_eq!(v["ssh_pwauth"], false);
    }

    #[test]
    fn a_long_key_stays_on_one_line() {
        let mut h = holder("1", "u1");
        h.ssh_public_key = format!("ssh-rsa {} someone@example.com", "A".repeat(700));
        let s = render(&h, "prognose", None).unwrap();
        assert!(
            s.lines().any(|l| l == format!("  - {}", h.ssh_public_key)),
            "{s}"
        );
    }

    #[test]
    fn hostile_input_stays_a_string() {
        let mut h = holder("1", "u1");
        h.user_id = "evil\nruncmd: [rm -rf /]".into();
        h.ssh_public_key = "ssh-ed25519 AAAA o'brien (lab) #1 x\"\n- injected".into();
        let v: serde_json::Value =
            serde_saphyr::from_str(&render(&h, "prognose", None).unwrap()).unwrap();
        assert_eq!(v["users"][0]["gecos"], "evil\nruncmd_ [rm -rf /]");
        assert_eq!(v["users"][0]["ssh_authorized_keys"][0], h.ssh_public_key);
        assert!(v.get("runcmd").is_none());
        assert_eq!(v["users"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_operator_account_gets_its_own_keys_only() {
        let h = holder("1", "u1");
        let op = OperatorAccount {
            name: "restart.admin".into(),
            keys: vec![
                "ssh-ed25519 AAAAops ops@a".into(),
                "ssh-ed25519 AAAAops2 ops@b".into(),
            ],
        };
        let v: serde_json::Value =
            serde_saphyr::from_str(&render(&h, "prognose", Some(&op)).unwrap()).unwrap();
        assert_eq!(v["users"][1]["name"], "restart.admin");
        assert_eq!(
            v["users"][1]["ssh_authorized_keys"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(v["users"][0]["ssh_authorized_keys"][0], h.ssh_public_key);
        for user in v["users"].as_array().unwrap() {
            assert_eq!(user["lock_passwd"], true);
            assert!(user.get("passwd").is_none() && user.get("hashed_passwd").is_none());
        }
    }
}
