//! Whether an `sshPublicKey` is a key a server can be given: one line `<type> <base64>
//! [comment]` with a known type, and a blob parsed far enough to refuse a truncated, mistyped
//! or weak key. The sidecar judges it before provisioning: a START whose key is unusable fails
//! with [`KeyProblem`]'s reason in the user's notification (a 422 at the edge would be seen by
//! nobody: the processor never retries). The key then lands in cloud-config, written by a YAML
//! serializer, so a comment may hold any printable character (quotes, `#`, non-ASCII).

use base64::Engine as _;

use super::fields::has_control;

/// Smallest RSA modulus accepted, in bits (what current OpenSSH and NIST consider the floor).
pub const MIN_RSA_BITS: usize = 2048;

/// SSH public key types accepted (reservation-be's own rule accepts the first five).
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why a key cannot be given to a server; the text is written for the key's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// No key (absent or blank): the user has not stored one in the reservation system.
    #[error("no SSH public key is stored for the user in the reservation system")]
    Missing,
    /// Several lines, or control characters.
    #[error("the SSH public key is not a single line")]
    NotOneLine,
    /// Not `<type> <base64> [comment]`.
    #[error("the SSH public key is not in OpenSSH format (<type> <base64> [comment])")]
    Format,
    /// A type outside [`SSH_KEY_TYPES`].
    #[error(
        "the SSH public key type is not supported (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521)"
    )]
    UnknownType,
    /// The base64 blob does not decode, or does not hold a well-formed key of the stated type.
    #[error("the SSH public key is truncated or damaged")]
    BadBlob,
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("the SSH public key is an RSA key shorter than 2048 bits")]
    WeakRsa,
}

/// Judges `key` as a server's `authorized_keys` would take it. Surrounding whitespace is
/// ignored (a key pasted with its line break); fields may be separated by runs of spaces or
/// tabs, as OpenSSH and reservation-be allow.
pub fn check_ssh_key(key: Option<&str>) -> Result<(), KeyProblem> {
    let key = key.map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return Err(KeyProblem::Missing);
    }
    // Tabs separate fields; every other control character, line breaks first, is refused.
    if key.contains(['\n', '\r']) || has_control(key, true) {
        return Err(KeyProblem::NotOneLine);
    }
    let (kind, rest) = next_field(key);
    let (data, _comment) = next_field(rest);
    if data.is_empty() {
        return Err(KeyProblem::Format);
    }
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(KeyProblem::UnknownType);
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| KeyProblem::BadBlob)?;
    check_ssh_blob(kind, &blob)
}

/// The text up to the first space or tab, and the rest without its leading blanks.
fn next_field(s: &str) -> (&str, &str) {
    match s.split_once([' ', '\t']) {
        Some((head, rest)) => (head, rest.trim_start()),
        None => (s, ""),
    }
}

/// Reads SSH wire-format strings (`u32` big-endian length, then bytes).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Result<&'a [u8], KeyProblem> {
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or(KeyProblem::BadBlob)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| KeyProblem::BadBlob)?;
        if rest.len() < len {
            return Err(KeyProblem::BadBlob);
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    fn done(&self) -> Result<(), KeyProblem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(KeyProblem::BadBlob)
        }
    }
}

fn check_ssh_blob(kind: &str, blob: &[u8]) -> Result<(), KeyProblem> {
    let mut w = Wire(blob);
    if w.string()? != kind.as_bytes() {
        return Err(KeyProblem::BadBlob);
    }
    match kind {
        "ssh-ed25519" => {
            if w.string()?.len() != 32 {
                return Err(KeyProblem::BadBlob);
            }
        }
        "ssh-rsa" => {
            let e = w.string()?;
            let n = w.string()?;
            if e.is_empty() || n.is_empty() {
                return Err(KeyProblem::BadBlob);
            }
            // mpint: a leading zero byte keeps the number positive.
            let n = n.strip_prefix(&[0]).unwrap_or(n);
            let bits =
                (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
            if bits < MIN_RSA_BITS {
                return Err(KeyProblem::WeakRsa);
            }
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            let curve = w.string()?;
            if kind.strip_prefix("ecdsa-sha2-").map(str::as_bytes) != Some(curve) {
                return Err(KeyProblem::BadBlob);
            }
            let point = w.string()?;
            if point.first() != Some(&4) || point.len() < 65 {
                return Err(KeyProblem::BadBlob);
            }
        }
        "sk-ssh-ed25519@openssh.com" => {
            if w.string()?.len() != 32 {
                return Err(KeyProblem::BadBlob);
            }
            w.string()?; // application, e.g. "ssh:"
        }
        _ => {
            // sk-ecdsa-sha2-nistp256@openssh.com: curve, point, application.
            if w.string()? != b"nistp256" {
                return Err(KeyProblem::BadBlob);
            }
            w.string()?;
            w.string()?;
        }
    }
    w.done()
}
