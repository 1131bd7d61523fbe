//! The userData document: a `#cloud-config` that creates the reservation's user with its SSH
//! key. Rendered from a struct by a YAML serializer, so no user input can change the document's
//! structure.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Holder;

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

/// Renders the userData for `holder`.
pub fn render(holder: &Holder) -> Result<String> {
    let gecos = gecos(&holder.user_id);
    let doc = CloudConfig {
        users: vec![User {
            name: &holder.username,
            gecos: &gecos,
            shell: "/bin/bash",
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            groups: "sudo",
            lock_passwd: true,
            ssh_authorized_keys: vec![holder.ssh_public_key.trim()],
        }],
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
        h.username = "giovanni.mirarchi".into();
        let s = render(&h).unwrap();
        assert!(s.starts_with("#cloud-config\n"));
        let v: serde_json::Value = serde_saphyr::from_str(&s).unwrap();
        assert_eq!(v["users"][0]["name"], "giovanni.mirarchi");
        assert_eq!(v["users"][0]["ssh_authorized_keys"][0], h.ssh_public_key);
        assert_eq!(v["users"][0]["lock_passwd"], true);
        assert_eq!(v["ssh_pwauth"], false);
    }

    #[test]
    fn a_long_key_stays_on_one_line() {
        let mut h = holder("1", "u1");
        h.ssh_public_key = format!("ssh-rsa {} someone@example.com", "A".repeat(700));
        let s = render(&h).unwrap();
        assert!(
            s.lines().any(|l| l == format!("  - {}", h.ssh_public_key)),
            "{s}"
        );
    }

    #[test]
    fn hostile_input_stays_a_string() {
        let mut h = holder("1", "u1");
        h.username = "evil\nruncmd: [rm -rf /]".into();
        h.ssh_public_key = "ssh-ed25519 AAAA x\"\n- injected".into();
        let v: serde_json::Value = serde_saphyr::from_str(&render(&h).unwrap()).unwrap();
        assert_eq!(v["users"][0]["name"], "evil\nruncmd: [rm -rf /]");
        assert!(v.get("runcmd").is_none());
        assert_eq!(v["users"].as_array().unwrap().len(), 1);
    }
}
