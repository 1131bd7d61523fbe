//! Configuration: the replaced service's environment variables (same names, same defaults) plus
//! the sidecar's additions. Parsed once by clap, then checked into a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::error::{ConfigError, Error, Result};

/// A [`ConfigError::Invalid`].
fn invalid(what: String) -> Error {
    ConfigError::Invalid { what }.into()
}

/// Command-line flags and environment variables (each flag has an env var of the same meaning).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bmh-sidecar",
    version,
    about = "Reservation events to Metal3 BareMetalHosts"
)]
pub struct Args {
    /// Namespace holding the BareMetalHosts (and where userData Secrets are written).
    #[arg(long, env = "K8S_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// API group of the BareMetalHost custom resource.
    #[arg(long, env = "BMH_API_GROUP", default_value = "metal3.io")]
    pub bmh_api_group: String,

    /// API version of the BareMetalHost custom resource.
    #[arg(long, env = "BMH_API_VERSION", default_value = "v1alpha1")]
    pub bmh_api_version: String,

    /// Plural (resource) name of the BareMetalHost custom resource.
    #[arg(long, env = "BMH_PLURAL", default_value = "baremetalhosts")]
    pub bmh_plural: String,

    /// Image URL written to `spec.image.url` on EVENT_START.
    #[arg(
        long,
        env = "PROVISION_IMAGE",
        default_value = "default-provision-image-url"
    )]
    pub provision_image: String,

    /// `spec.image.checksum` (a hash or the URL of a checksum file). Empty: omitted.
    #[arg(long, env = "PROVISION_CHECKSUM")]
    pub provision_checksum: Option<String>,

    /// Former name of PROVISION_CHECKSUM, still read.
    #[arg(long, env = "PROVISION_IMAGE_CHECKSUM", hide = true)]
    pub provision_image_checksum: Option<String>,

    /// `spec.image.checksumType` (md5, sha256, sha512, auto). Empty: omitted.
    #[arg(long, env = "PROVISION_CHECKSUM_TYPE")]
    pub provision_checksum_type: Option<String>,

    /// Former name of PROVISION_CHECKSUM_TYPE, still read.
    #[arg(long, env = "PROVISION_IMAGE_CHECKSUM_TYPE", hide = true)]
    pub provision_image_checksum_type: Option<String>,

    /// `spec.image.format` (raw, qcow2, vdi, vmdk, live-iso). Empty: omitted.
    #[arg(long, env = "PROVISION_IMAGE_FORMAT", default_value = "")]
    pub provision_image_format: String,

    /// When set, EVENT_END provisions this image instead of removing the image.
    #[arg(long, env = "DEPROVISION_IMAGE", default_value = "")]
    pub deprovision_image: String,

    /// `spec.image.checksum` of DEPROVISION_IMAGE. Empty: omitted.
    #[arg(long, env = "DEPROVISION_IMAGE_CHECKSUM", default_value = "")]
    pub deprovision_image_checksum: String,

    /// `spec.image.checksumType` of DEPROVISION_IMAGE. Empty: omitted.
    #[arg(long, env = "DEPROVISION_IMAGE_CHECKSUM_TYPE", default_value = "")]
    pub deprovision_image_checksum_type: String,

    /// `spec.image.format` of DEPROVISION_IMAGE. Empty: omitted.
    #[arg(long, env = "DEPROVISION_IMAGE_FORMAT", default_value = "")]
    pub deprovision_image_format: String,

    /// Shared secret of inbound webhooks (verified by the filter); signs notifications unless
    /// NOTIFY_SECRET is set.
    #[arg(
        long,
        env = "WEBHOOK_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub webhook_secret: String,

    /// Public port the reservation system talks to (Envoy's listener). Informational here.
    #[arg(long, env = "PORT", default_value_t = 5001)]
    pub port: u16,

    /// The sidecar's own bind address (loopback beside Envoy; the pod IP under Istio).
    #[arg(long, env = "SIDECAR_ADDR", default_value = "127.0.0.1:8080")]
    pub sidecar_addr: SocketAddr,

    /// Admin listener for probes and Prometheus (`/healthz`, `/readyz`, `/metrics`; never
    /// `/webhook`), e.g. `0.0.0.0:9090` in a pod. When set, `/metrics` leaves SIDECAR_ADDR.
    #[arg(long, env = "ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log level: DEBUG, INFO, WARNING, ERROR (or any tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,

    /// Where provisioned/released/failed notifications are POSTed (reservation-be's
    /// `/api/notifications/webhook`). Empty: none are sent.
    #[arg(long, env = "NOTIFICATION_ENDPOINT")]
    pub notification_endpoint: Option<String>,

    /// Former name of NOTIFICATION_ENDPOINT, still read.
    #[arg(long, env = "NOTIFY_URL", hide = true)]
    pub notify_url: Option<String>,

    /// Seconds one notification attempt may take.
    #[arg(long, env = "NOTIFICATION_TIMEOUT", default_value_t = 5)]
    pub notification_timeout: u64,

    /// The notification body: `reservation-be` (what its `/api/notifications/webhook` accepts)
    /// or `generic` (the sidecar's own body, `sha256=<hex>` signature, for other receivers).
    #[arg(long, env = "NOTIFICATION_FORMAT", default_value = "reservation-be")]
    pub notification_format: String,

    /// Where webhook logs are POSTed (reservation-be's `/api/webhooks/log`). Empty: none.
    #[arg(long, env = "WEBHOOK_LOG_ENDPOINT", default_value = "")]
    pub webhook_log_endpoint: String,

    /// Seconds one webhook-log attempt may take.
    #[arg(long, env = "WEBHOOK_LOG_TIMEOUT", default_value_t = 5)]
    pub webhook_log_timeout: u64,

    /// reservation-be's id of the webhook, for notifications and logs of deliveries that carry
    /// none (processor 0.1.17). Empty: only the delivery's own id is used.
    #[arg(long, env = "WEBHOOK_ID", default_value = "")]
    pub webhook_id: String,

    /// HMAC key of notifications and logs. Empty: WEBHOOK_SECRET (reservation-be checks them
    /// with the webhook's secret).
    #[arg(
        long,
        env = "NOTIFY_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub notify_secret: String,

    /// Seconds a host may take to reach `provisioned` before the reservation is failed.
    #[arg(long, env = "PROVISIONING_TIMEOUT")]
    pub provisioning_timeout: Option<u64>,

    /// Former name of PROVISIONING_TIMEOUT, still read.
    #[arg(long, env = "PROVISION_TIMEOUT_SECONDS", hide = true)]
    pub provision_timeout_seconds: Option<u64>,

    /// Seconds after a reservation's end when a host that got no EVENT_END or EVENT_DELETED
    /// is released by the sidecar itself. 0: never.
    #[arg(long, env = "RELEASE_GRACE_SECONDS", default_value_t = 600)]
    pub release_grace_seconds: u64,

    /// The account the reservation's user logs in to, with their SSH key (the site's users
    /// are told to use `prognose`).
    #[arg(long, env = "LOGIN_USER", default_value = "prognose")]
    pub login_user: String,

    /// An operator account on every provisioned server (e.g. `restart.admin`). Empty: none.
    #[arg(long, env = "OPERATOR_USER", default_value = "")]
    pub operator_user: String,

    /// The operator account's SSH public keys, one per line (from a Secret). Required with
    /// OPERATOR_USER; never a password.
    #[arg(
        long,
        env = "OPERATOR_SSH_AUTHORIZED_KEYS",
        default_value = "",
        hide_env_values = true
    )]
    pub operator_ssh_authorized_keys: String,

    /// Seconds a host may take to become `available` again after EVENT_END.
    #[arg(long, env = "RELEASE_TIMEOUT_SECONDS", default_value_t = 1800)]
    pub release_timeout_seconds: u64,

    /// Label on a BMH whose value is the reservation system's `resourceId`.
    #[arg(
        long,
        env = "BMH_RESOURCE_ID_LABEL",
        default_value = "reservations.polito.it/resource-id"
    )]
    pub bmh_resource_id_label: String,

    /// Comma-separated `resourceType` values that are BareMetalHosts; others are skipped.
    #[arg(long, env = "BMH_RESOURCE_TYPES", default_value = "Server")]
    pub bmh_resource_types: String,

    /// Prefix (a domain you own) of the sidecar's annotations on BMHs.
    #[arg(
        long,
        env = "ANNOTATION_PREFIX",
        default_value = "reservations.polito.it"
    )]
    pub annotation_prefix: String,

    /// This replica's name in notification claims (set it to the pod name). Empty: `HOSTNAME`,
    /// else `pid-<process id>`.
    #[arg(long, env = "REPLICA_ID", default_value = "")]
    pub replica_id: String,

    /// Seconds between re-checks of hosts with unfinished work (besides watch events).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 30)]
    pub resync_seconds: u64,

    /// The previous inbound secret during a rotation (both verify while it is set).
    #[arg(
        long,
        env = "WEBHOOK_SECRET_PREVIOUS",
        default_value = "",
        hide_env_values = true
    )]
    pub webhook_secret_previous: String,

    /// Verify the inbound signature here too, behind the edge filter (defence in depth: a pod
    /// reached without the filter must not provision). `false` only for development.
    #[arg(long, env = "VERIFY_SIGNATURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_signature: bool,

    /// Shortest inbound secret accepted, in bytes (the filter's `min_secret_bytes`).
    #[arg(long, env = "MIN_SECRET_BYTES", default_value_t = 32)]
    pub min_secret_bytes: usize,

    /// Status code of an accepted delivery: 200 (the replaced service's) or 202.
    #[arg(long, env = "SUCCESS_STATUS_CODE", default_value_t = 200)]
    pub success_status_code: u16,

    /// What a release does to `spec.automatedCleaningMode`: `metadata` sets it, so the next
    /// tenant never sees the previous tenant's disks even on a host with cleaning disabled;
    /// `keep` leaves the host's setting alone.
    #[arg(long, env = "RELEASE_CLEANING", default_value = "metadata")]
    pub release_cleaning: String,
}

/// Checked configuration shared by every part of the sidecar.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub bmh_group: String,
    pub bmh_version: String,
    pub bmh_plural: String,
    pub image: ImageConfig,
    pub deprovision_image: Option<ImageConfig>,
    pub addr: SocketAddr,
    /// The admin listener (probes and metrics), when configured.
    pub admin_addr: Option<SocketAddr>,
    pub log_level: String,
    /// Where notifications go (`NOTIFICATION_ENDPOINT`), when anywhere.
    pub notify_url: Option<String>,
    pub notify_secret: String,
    /// One notification attempt's deadline.
    pub notification_timeout: Duration,
    pub notification_format: NotificationFormat,
    /// Where webhook logs go (`WEBHOOK_LOG_ENDPOINT`), when anywhere.
    pub webhook_log_url: Option<String>,
    /// One webhook-log attempt's deadline.
    pub webhook_log_timeout: Duration,
    /// The fallback webhook id (`WEBHOOK_ID`).
    pub webhook_id: Option<String>,
    /// The login account carrying the user's key.
    pub login_user: String,
    /// The operator account and its keys, when configured.
    pub operator: Option<OperatorAccount>,
    /// Release a host this long after its reservation's end without END (`None`: never).
    pub release_grace: Option<Duration>,
    pub provision_timeout: Duration,
    pub release_timeout: Duration,
    pub resource_id_label: String,
    pub resource_types: Vec<String>,
    pub annotation_prefix: String,
    pub resync: Duration,
    pub replica_id: String,
    /// Inbound secrets, current first (empty strings dropped).
    pub webhook_secrets: Vec<String>,
    pub verify_signature: bool,
    pub min_secret_bytes: usize,
    pub success_status: u16,
    /// A release sets `automatedCleaningMode: metadata`.
    pub release_cleaning: bool,
}

/// The body notifications are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationFormat {
    /// reservation-be's `WebhookNotificationRequestDTO`, Base64 signature: the user sees it.
    ReservationBe,
    /// The sidecar's own body and `sha256=<hex>` signature (plus Standard Webhooks headers).
    Generic,
}

/// The operator account put on every provisioned server besides the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAccount {
    pub name: String,
    /// OpenSSH public keys.
    pub keys: Vec<String>,
}

/// Default of PROVISIONING_TIMEOUT, in seconds: the real deployment's 45 minutes.
pub const DEFAULT_PROVISIONING_TIMEOUT_SECONDS: u64 = 2700;

/// A value given under its documented name or its former one: both at once must agree.
fn renamed<T: PartialEq + std::fmt::Debug>(
    documented: (&str, Option<T>),
    former: (&str, Option<T>),
) -> Result<Option<T>> {
    match (documented.1, former.1) {
        (Some(a), Some(b)) if a != b => Err(invalid(format!(
            "{} and its former name {} are both set, to different values; keep {}",
            documented.0, former.0, documented.0
        ))),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// A login name cloud-init can create: `^[a-z_][a-z0-9_.-]{0,31}$`, and not root.
fn check_login_name(var: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some('a'..='z' | '_'));
    let rest_ok = chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > 32 || name == "root" {
        return Err(invalid(format!(
            "{var} {name:?} is not a login name cloud-init can create (^[a-z_][a-z0-9_.-]{{0,31}}$, not root)"
        )));
    }
    Ok(())
}

/// What EVENT_START writes into `spec.image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub url: String,
    pub checksum: Option<String>,
    pub checksum_type: Option<String>,
    pub format: Option<String>,
}

/// URL schemes Metal3's validating webhook accepts for `spec.image.url`
/// (`internal/webhooks/metal3.io/v1alpha1/common_validation.go`, `validateURL`).
const IMAGE_URL_SCHEMES: [&str; 5] = ["http", "https", "ftp", "gopher", "oci"];

impl ImageConfig {
    /// `oci://` images carry their own checksum (Metal3's `Image.IsOCI`).
    pub fn is_oci(&self) -> bool {
        self.url.to_ascii_lowercase().starts_with("oci://")
    }

    /// A live ISO boots from memory: Ironic builds no config drive for it, so no userData
    /// (and no SSH key) ever reaches the host.
    pub fn is_live_iso(&self) -> bool {
        self.format.as_deref() == Some("live-iso")
    }

    /// Checks image `var` (a variable name, for messages) against the rules Metal3's
    /// validating webhook applies to `spec.image` (`validateImage`, `Image.GetChecksum` in
    /// `apis/metal3.io/v1alpha1/baremetalhost_types.go`), so a host is never left with a spec
    /// write the API server refuses.
    fn checked(
        vars: [&str; 4],
        url: &str,
        checksum: &str,
        checksum_type: &str,
        format: &str,
    ) -> Result<Self> {
        let [var, checksum_var, type_var, format_var] = vars;
        let url = url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let rest_ok = url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.chars().any(char::is_whitespace));
        if !(scheme
            .as_deref()
            .is_some_and(|s| IMAGE_URL_SCHEMES.contains(&s))
            && rest_ok)
        {
            return Err(invalid(format!(
                "{var} {url:?} is not an absolute URL with scheme {}: Metal3 refuses it",
                IMAGE_URL_SCHEMES.join(", ")
            )));
        }
        if let Some(t) = non_empty(checksum_type)
            && !matches!(t.as_str(), "md5" | "sha256" | "sha512" | "auto")
        {
            return Err(invalid(format!(
                "{type_var} {t:?} is not one of md5, sha256, sha512, auto"
            )));
        }
        if let Some(f) = non_empty(format)
            && !matches!(f.as_str(), "raw" | "qcow2" | "vdi" | "vmdk" | "live-iso")
        {
            return Err(invalid(format!(
                "{format_var} {f:?} is not one of raw, qcow2, vdi, vmdk, live-iso"
            )));
        }
        let image = ImageConfig {
            url: url.to_owned(),
            checksum: non_empty(checksum),
            checksum_type: non_empty(checksum_type),
            format: non_empty(format),
        };
        if image.is_oci() && image.checksum.is_some() {
            return Err(invalid(format!(
                "{checksum_var} must be empty for an oci:// image (it carries its own checksum): Metal3 refuses it"
            )));
        }
        if !image.is_oci() && !image.is_live_iso() && image.checksum.is_none() {
            return Err(invalid(format!(
                "{checksum_var} is required (a hash or the URL of a checksum file) unless the format is live-iso or the URL is oci://: Metal3 refuses an image without it"
            )));
        }
        Ok(image)
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Self> {
        if a.provision_image.trim().is_empty() {
            return Err(invalid("PROVISION_IMAGE must not be empty".into()));
        }
        if a.annotation_prefix.trim().is_empty() || a.annotation_prefix.contains('/') {
            return Err(invalid(
                "ANNOTATION_PREFIX must be a DNS subdomain without '/'".into(),
            ));
        }
        let checksum = renamed(
            ("PROVISION_CHECKSUM", a.provision_checksum),
            ("PROVISION_IMAGE_CHECKSUM", a.provision_image_checksum),
        )?;
        let checksum_type = renamed(
            ("PROVISION_CHECKSUM_TYPE", a.provision_checksum_type),
            (
                "PROVISION_IMAGE_CHECKSUM_TYPE",
                a.provision_image_checksum_type,
            ),
        )?;
        let image = ImageConfig::checked(
            [
                "PROVISION_IMAGE",
                "PROVISION_CHECKSUM",
                "PROVISION_CHECKSUM_TYPE",
                "PROVISION_IMAGE_FORMAT",
            ],
            &a.provision_image,
            checksum.as_deref().unwrap_or_default(),
            checksum_type.as_deref().unwrap_or_default(),
            &a.provision_image_format,
        )?;
        if image.is_live_iso() {
            return Err(invalid(
                "PROVISION_IMAGE_FORMAT live-iso cannot carry the user's SSH key: Metal3 builds no config drive for a live ISO, so userData never reaches the host".into(),
            ));
        }
        let deprovision_image = non_empty(&a.deprovision_image)
            .map(|url| {
                ImageConfig::checked(
                    [
                        "DEPROVISION_IMAGE",
                        "DEPROVISION_IMAGE_CHECKSUM",
                        "DEPROVISION_IMAGE_CHECKSUM_TYPE",
                        "DEPROVISION_IMAGE_FORMAT",
                    ],
                    &url,
                    &a.deprovision_image_checksum,
                    &a.deprovision_image_checksum_type,
                    &a.deprovision_image_format,
                )
            })
            .transpose()?;
        let notify_url = renamed(
            ("NOTIFICATION_ENDPOINT", a.notification_endpoint),
            ("NOTIFY_URL", a.notify_url),
        )?
        .as_deref()
        .and_then(non_empty);
        let webhook_log_url = non_empty(&a.webhook_log_endpoint);
        for (var, url) in [
            ("NOTIFICATION_ENDPOINT", &notify_url),
            ("WEBHOOK_LOG_ENDPOINT", &webhook_log_url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(invalid(format!("{var} {u:?} is not an http(s) URL")));
            }
        }
        let provision_timeout = renamed(
            ("PROVISIONING_TIMEOUT", a.provisioning_timeout),
            ("PROVISION_TIMEOUT_SECONDS", a.provision_timeout_seconds),
        )?
        .unwrap_or(DEFAULT_PROVISIONING_TIMEOUT_SECONDS);
        let notification_format = match a.notification_format.trim() {
            "reservation-be" => NotificationFormat::ReservationBe,
            "generic" => NotificationFormat::Generic,
            other => {
                return Err(invalid(format!(
                    "NOTIFICATION_FORMAT {other:?} is not reservation-be or generic"
                )));
            }
        };
        let login_user = a.login_user.trim().to_owned();
        check_login_name("LOGIN_USER", &login_user)?;
        let operator = match (
            non_empty(&a.operator_user),
            non_empty(&a.operator_ssh_authorized_keys),
        ) {
            (None, None) => None,
            (Some(name), Some(keys)) => {
                check_login_name("OPERATOR_USER", &name)?;
                if name == login_user {
                    return Err(invalid(
                        "OPERATOR_USER must differ from LOGIN_USER".to_owned(),
                    ));
                }
                let keys: Vec<String> = keys.lines().filter_map(non_empty).collect();
                for (i, key) in keys.iter().enumerate() {
                    if let Err(problem) = webhook_core::event::check_ssh_key(Some(key)) {
                        return Err(invalid(format!(
                            "OPERATOR_SSH_AUTHORIZED_KEYS line {}: {problem}",
                            i + 1
                        )));
                    }
                }
                Some(OperatorAccount { name, keys })
            }
            _ => {
                return Err(invalid(
                    "OPERATOR_USER and OPERATOR_SSH_AUTHORIZED_KEYS go together: set both or neither"
                        .to_owned(),
                ));
            }
        };
        let webhook_secrets: Vec<String> = [&a.webhook_secret, &a.webhook_secret_previous]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        if a.verify_signature {
            if webhook_secrets.is_empty() {
                return Err(invalid(
                    "WEBHOOK_SECRET is required to verify inbound signatures (VERIFY_SIGNATURE=false only for development)".into(),
                ));
            }
            if webhook_secrets.iter().any(|s| s.len() < a.min_secret_bytes) {
                return Err(invalid(format!(
                    "WEBHOOK_SECRET and WEBHOOK_SECRET_PREVIOUS must be at least {} bytes (MIN_SECRET_BYTES)",
                    a.min_secret_bytes
                )));
            }
        }
        if !matches!(a.success_status_code, 200 | 202) {
            return Err(invalid(format!(
                "SUCCESS_STATUS_CODE {} is not 200 or 202",
                a.success_status_code
            )));
        }
        let release_cleaning = match a.release_cleaning.trim() {
            "metadata" => true,
            "keep" => false,
            other => {
                return Err(invalid(format!(
                    "RELEASE_CLEANING {other:?} is not metadata or keep"
                )));
            }
        };
        let resource_types: Vec<String> = a
            .bmh_resource_types
            .split(',')
            .filter_map(non_empty)
            .collect();
        Ok(Config {
            namespace: a.namespace,
            bmh_group: a.bmh_api_group,
            bmh_version: a.bmh_api_version,
            bmh_plural: a.bmh_plural,
            image,
            deprovision_image,
            addr: a.sidecar_addr,
            admin_addr: a.admin_addr,
            log_level: a.log_level,
            notify_url,
            notify_secret: non_empty(&a.notify_secret).unwrap_or_else(|| a.webhook_secret.clone()),
            notification_timeout: Duration::from_secs(a.notification_timeout.max(1)),
            notification_format,
            webhook_log_url,
            webhook_log_timeout: Duration::from_secs(a.webhook_log_timeout.max(1)),
            webhook_id: non_empty(&a.webhook_id),
            login_user,
            operator,
            release_grace: (a.release_grace_seconds > 0)
                .then(|| Duration::from_secs(a.release_grace_seconds)),
            provision_timeout: Duration::from_secs(provision_timeout),
            release_timeout: Duration::from_secs(a.release_timeout_seconds),
            resource_id_label: a.bmh_resource_id_label,
            resource_types,
            annotation_prefix: a.annotation_prefix.trim().to_owned(),
            resync: Duration::from_secs(a.resync_seconds.max(1)),
            replica_id: non_empty(&a.replica_id)
                .or_else(|| std::env::var("HOSTNAME").ok().and_then(|h| non_empty(&h)))
                .unwrap_or_else(|| format!("pid-{}", std::process::id())),
            webhook_secrets,
            verify_signature: a.verify_signature,
            min_secret_bytes: a.min_secret_bytes,
            success_status: a.success_status_code,
            release_cleaning,
        })
    }
}

impl Config {
    /// Parses flags and environment, then checks them.
    pub fn from_env() -> Result<Self> {
        Config::try_from(Args::parse())
    }

    /// Parses `args` (the program name first) with the environment's variables behind them.
    pub fn from_args<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(args).map_err(ConfigError::from)?;
        Config::try_from(args)
    }

    /// Whether `resource_type` names a BareMetalHost.
    pub fn is_bmh_type(&self, resource_type: &str) -> bool {
        self.resource_types.iter().any(|t| t == resource_type)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// What every test configuration carries: a valid image, a long enough secret.
    pub const VALID: [&str; 9] = [
        "bmh-sidecar",
        "--provision-image",
        "http://img/ubuntu.qcow2",
        "--provision-checksum",
        "http://img/ubuntu.qcow2.sha256",
        "--webhook-secret",
        "a-webhook-secret-of-at-least-32-bytes",
        "--provision-image-format",
        "qcow2",
    ];

    /// A valid configuration with `extra` flags after the valid ones.
    pub fn config(extra: &[&str]) -> Result<Config> {
        Config::from_args(VALID.iter().chain(extra))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::config;
    use super::*;

    #[test]
    fn defaults_match_the_replaced_service() {
        let c = config(&[]).unwrap();
        assert_eq!(c.namespace, "default");
        assert_eq!(c.bmh_group, "metal3.io");
        assert_eq!(c.bmh_version, "v1alpha1");
        assert_eq!(c.bmh_plural, "baremetalhosts");
        assert_eq!(c.deprovision_image, None);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.provision_timeout, Duration::from_secs(2700));
        assert_eq!(c.login_user, "prognose");
        assert_eq!(c.notification_format, NotificationFormat::ReservationBe);
        assert_eq!(c.release_grace, Some(Duration::from_secs(600)));
        assert_eq!(c.operator, None);
        assert_eq!(c.resource_types, vec!["Server".to_string()]);
        assert_eq!(c.resource_id_label, "reservations.polito.it/resource-id");
        assert_eq!(c.success_status, 200);
        assert!(c.verify_signature);
        assert!(c.release_cleaning);
    }

    #[test]
    fn the_replaced_services_default_image_is_refused_at_start() {
        // `default-provision-image-url` is no URL: Metal3's webhook would refuse every spec
        // write, and the reservation would wait for ever.
        let e = Config::from_args(["bmh-sidecar", "--webhook-secret", &"s".repeat(32)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PROVISION_IMAGE"), "{e}");
        assert!(e.contains("not an absolute URL"), "{e}");
    }

    #[test]
    fn images_metal3_would_refuse_are_refused_at_start() {
        let base = |extra: &[&str]| {
            let mut v = vec![
                "bmh-sidecar",
                "--webhook-secret",
                "a-webhook-secret-of-at-least-32-bytes",
            ];
            v.extend_from_slice(extra);
            Config::from_args(v).map(|_| ()).map_err(|e| e.to_string())
        };
        let no_checksum = base(&["--provision-image", "http://img/u.qcow2"]).unwrap_err();
        assert!(
            no_checksum.contains("PROVISION_CHECKSUM is required"),
            "{no_checksum}"
        );
        let scheme = base(&[
            "--provision-image",
            "file:///img.qcow2",
            "--provision-checksum",
            "abc",
        ])
        .unwrap_err();
        assert!(scheme.contains("http, https, ftp, gopher, oci"), "{scheme}");
        let oci_sum = base(&[
            "--provision-image",
            "oci://quay.io/os/img:1",
            "--provision-checksum",
            "abc",
        ])
        .unwrap_err();
        assert!(
            oci_sum.contains("must be empty for an oci:// image"),
            "{oci_sum}"
        );
        let live = base(&[
            "--provision-image",
            "http://img/x.iso",
            "--provision-image-format",
            "live-iso",
        ])
        .unwrap_err();
        assert!(live.contains("live-iso"), "{live}");
        assert!(base(&["--provision-image", "oci://quay.io/os/img:1"]).is_ok());
        assert!(
            base(&[
                "--provision-image",
                "https://img/u.raw",
                "--provision-checksum",
                "0123abcd",
                "--provision-checksum-type",
                "auto"
            ])
            .is_ok()
        );
        // A live ISO is fine for the release image: it needs no userData and no checksum.
        assert!(
            base(&[
                "--provision-image",
                "https://img/u.raw",
                "--provision-checksum",
                "0123",
                "--deprovision-image",
                "http://img/wipe.iso",
                "--deprovision-image-format",
                "live-iso"
            ])
            .is_ok()
        );
        let bad_wipe = base(&[
            "--provision-image",
            "https://img/u.raw",
            "--provision-checksum",
            "0123",
            "--deprovision-image",
            "wipe",
        ])
        .unwrap_err();
        assert!(bad_wipe.contains("DEPROVISION_IMAGE"), "{bad_wipe}");
    }

    #[test]
    fn inbound_secrets_are_required_and_long_enough() {
        let e = Config::from_args(["bmh-sidecar", "--provision-image", "oci://q/i:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WEBHOOK_SECRET is required"), "{e}");
        let e = config(&["--webhook-secret-previous", "short"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 32 bytes"), "{e}");
        let c = config(&[
            "--webhook-secret-previous",
            "the-previous-secret-also-32-bytes-long",
        ])
        .unwrap();
        assert_eq!(c.webhook_secrets.len(), 2);
        let c = Config::from_args([
            "bmh-sidecar",
            "--provision-image",
            "oci://q/i:1",
            "--verify-signature",
            "false",
        ])
        .unwrap();
        assert!(!c.verify_signature);
    }

    #[test]
    fn notify_secret_falls_back_to_webhook_secret() {
        let c = config(&[]).unwrap();
        assert_eq!(c.notify_secret, "a-webhook-secret-of-at-least-32-bytes");
        let c = config(&["--notify-secret", "n"]).unwrap();
        assert_eq!(c.notify_secret, "n");
    }

    #[test]
    fn rejects_bad_values() {
        assert!(config(&["--provision-image-format", "iso"]).is_err());
        assert!(config(&["--provision-checksum-type", "crc"]).is_err());
        assert!(config(&["--notification-endpoint", "ftp://x"]).is_err());
        assert!(config(&["--webhook-log-endpoint", "ftp://x"]).is_err());
        assert!(config(&["--notification-format", "xml"]).is_err());
        assert!(config(&["--login-user", "Prognose"]).is_err());
        assert!(config(&["--login-user", "root"]).is_err());
        assert!(config(&["--operator-user", "restart.admin"]).is_err());
        assert!(config(&["--annotation-prefix", "a/b"]).is_err());
        assert!(config(&["--success-status-code", "201"]).is_err());
        assert!(config(&["--release-cleaning", "disabled"]).is_err());
        assert!(
            config(&[
                "--deprovision-image",
                "http://wipe",
                "--deprovision-image-format",
                "tar"
            ])
            .is_err()
        );
    }

    #[test]
    fn the_real_deployments_names_and_the_former_ones() {
        let c = config(&[
            "--provision-checksum-type",
            "sha512",
            "--provisioning-timeout",
            "120",
            "--notification-endpoint",
            "http://be/api/notifications/webhook",
            "--release-grace-seconds",
            "0",
        ])
        .unwrap();
        assert_eq!(c.image.checksum_type.as_deref(), Some("sha512"));
        assert_eq!(c.provision_timeout, Duration::from_secs(120));
        assert_eq!(
            c.notify_url.as_deref(),
            Some("http://be/api/notifications/webhook")
        );
        assert_eq!(c.release_grace, None);
        let c = config(&[
            "--provision-timeout-seconds",
            "60",
            "--notify-url",
            "http://n/x",
        ])
        .unwrap();
        assert_eq!(c.provision_timeout, Duration::from_secs(60));
        assert_eq!(c.notify_url.as_deref(), Some("http://n/x"));
        let e = config(&[
            "--provisioning-timeout",
            "60",
            "--provision-timeout-seconds",
            "90",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PROVISIONING_TIMEOUT and its former name PROVISION_TIMEOUT_SECONDS"),
            "{e}"
        );
    }

    #[test]
    fn the_operator_account_takes_its_keys_and_nothing_else() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9RIMklGKNChy25ZekbXY0Z7xeB8MBBmOwiz1ztNtk ops";
        let keys = format!("{key}\n\n{key} second\n");
        let c = config(&[
            "--operator-user",
            "restart.admin",
            "--operator-ssh-authorized-keys",
            &keys,
        ])
        .unwrap();
        let op = c.operator.unwrap();
        assert_eq!((op.name.as_str(), op.keys.len()), ("restart.admin", 2));
        let e = config(&[
            "--operator-user",
            "ops",
            "--operator-ssh-authorized-keys",
            "ssh-rsa AAAA",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("OPERATOR_SSH_AUTHORIZED_KEYS line 1"), "{e}");
        assert!(
            config(&[
                "--operator-user",
                "prognose",
                "--operator-ssh-authorized-keys",
                key
            ])
            .is_err()
        );
    }

    #[test]
    fn resource_types_are_a_comma_list() {
        let c = config(&["--bmh-resource-types", "Server, GPU Server ,"]).unwrap();
        assert!(c.is_bmh_type("Server"));
        assert!(c.is_bmh_type("GPU Server"));
        assert!(!c.is_bmh_type("Database"));
    }
}
