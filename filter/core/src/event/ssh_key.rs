//! The `sshPublicKey` rule: one line `<type> <base64> [comment]`, a known type, a comment of
//! harmless characters, and a blob parsed far enough to refuse a truncated, mistyped or weak
//! key (it ends up in `authorized_keys` on a provisioned server).

use base64::Engine as _;

use super::fields::has_control;
use super::{Reason, ValidationError};

/// Upper bound on the whole `sshPublicKey` line, in bytes (a 16384-bit RSA key fits).
pub const MAX_SSH_KEY_LEN: usize = 4096;
/// Upper bound on the SSH key comment, in characters.
pub const MAX_SSH_COMMENT: usize = 128;
/// Smallest RSA modulus accepted in `sshPublicKey`, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// SSH public key types accepted in `sshPublicKey`.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One line `<type> <base64> [comment]`; see the module docs. Refusals are at `$.sshPublicKey`.
pub fn check_ssh_key(key: &str) -> Result<(), ValidationError> {
    let err = |reason| ValidationError::at("$.sshPublicKey", reason);
    if key.len() > MAX_SSH_KEY_LEN {
        return Err(err(Reason::TooLong));
    }
    if has_control(key, false) {
        return Err(err(Reason::ControlCharacter));
    }
    let mut parts = key.splitn(3, ' ');
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
        return Err(err(Reason::BadSshKeyFormat));
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(err(Reason::UnknownSshKeyType));
    }
    if let Some(comment) = parts.next() {
        let ok = !comment.is_empty()
            && comment.len() <= MAX_SSH_COMMENT
            && !comment.starts_with(' ')
            && comment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " @._+=:,/-".contains(c));
        if !ok {
            return Err(err(Reason::BadSshKeyComment));
        }
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| err(Reason::BadSshKeyBlob))?;
    check_ssh_blob(kind, &blob).map_err(err)
}

/// Reads SSH wire-format strings (`u32` big-endian length, then bytes).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Result<&'a [u8], Reason> {
        let (len, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(Reason::BadSshKeyBlob)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Reason::BadSshKeyBlob)?;
        if rest.len() < len {
            return Err(Reason::BadSshKeyBlob);
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    fn done(&self) -> Result<(), Reason> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Reason::BadSshKeyBlob)
        }
    }
}

fn check_ssh_blob(kind: &str, blob: &[u8]) -> Result<(), Reason> {
    let mut w = Wire(blob);
    if w.string()? != kind.as_bytes() {
        return Err(Reason::BadSshKeyBlob);
    }
    match kind {
        "ssh-ed25519" => {
            if w.string()?.len() != 32 {
                return Err(Reason::BadSshKeyBlob);
            }
        }
        "ssh-rsa" => {
            let e = w.string()?;
            let n = w.string()?;
            if e.is_empty() || n.is_empty() {
                return Err(Reason::BadSshKeyBlob);
            }
            // mpint: a leading zero byte keeps the number positive.
            let n = n.strip_prefix(&[0]).unwrap_or(n);
            let bits =
                (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
            if bits < MIN_RSA_BITS {
                return Err(Reason::WeakSshKey);
            }
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            let curve = w.string()?;
            if kind.strip_prefix("ecdsa-sha2-").map(str::as_bytes) != Some(curve) {
                return Err(Reason::BadSshKeyBlob);
            }
            let point = w.string()?;
            if point.first() != Some(&4) || point.len() < 65 {
                return Err(Reason::BadSshKeyBlob);
            }
        }
        "sk-ssh-ed25519@openssh.com" => {
            if w.string()?.len() != 32 {
                return Err(Reason::BadSshKeyBlob);
            }
            w.string()?; // application, e.g. "ssh:"
        }
        _ => {
            // sk-ecdsa-sha2-nistp256@openssh.com: curve, point, application.
            if w.string()? != b"nistp256" {
                return Err(Reason::BadSshKeyBlob);
            }
            w.string()?;
            w.string()?;
        }
    }
    w.done()
}
