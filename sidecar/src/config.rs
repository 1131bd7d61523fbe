//! Configuration: the replaced service's environment variables (same names, same defaults) plus
//! the sidecar's additions. Parsed once by clap, then checked into a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::error::{Error, Result};

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
    #[arg(long, env = "PROVISION_IMAGE_CHECKSUM", default_value = "")]
    pub provision_image_checksum: String,

    /// `spec.image.checksumType` (md5, sha256, sha512, auto). Empty: omitted.
    #[arg(long, env = "PROVISION_IMAGE_CHECKSUM_TYPE", default_value = "")]
    pub provision_image_checksum_type: String,

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

    /// Log level: DEBUG, INFO, WARNING, ERROR (or any tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,

    /// Where provisioned/released/failed notifications are POSTed. Empty: none are sent.
    #[arg(long, env = "NOTIFY_URL", default_value = "")]
    pub notify_url: String,

    /// HMAC key of notifications. Empty: WEBHOOK_SECRET.
    #[arg(
        long,
        env = "NOTIFY_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub notify_secret: String,

    /// Seconds a host may take to reach `provisioned` before the reservation is failed.
    #[arg(long, env = "PROVISION_TIMEOUT_SECONDS", default_value_t = 1800)]
    pub provision_timeout_seconds: u64,

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
    pub log_level: String,
    pub notify_url: Option<String>,
    pub notify_secret: String,
    pub provision_timeout: Duration,
    pub release_timeout: Duration,
    pub resource_id_label: String,
    pub resource_types: Vec<String>,
    pub annotation_prefix: String,
    pub resync: Duration,
    pub replica_id: String,
}

/// What EVENT_START writes into `spec.image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub url: String,
    pub checksum: Option<String>,
    pub checksum_type: Option<String>,
    pub format: Option<String>,
}

impl ImageConfig {
    /// Checks the checksum type and format of image `var` (a variable name, for messages).
    fn checked(
        var: &str,
        url: &str,
        checksum: &str,
        checksum_type: &str,
        format: &str,
    ) -> Result<Self> {
        if let Some(t) = non_empty(checksum_type)
            && !matches!(t.as_str(), "md5" | "sha256" | "sha512" | "auto")
        {
            return Err(Error::Config(format!(
                "{var}_CHECKSUM_TYPE {t:?} is not one of md5, sha256, sha512, auto"
            )));
        }
        if let Some(f) = non_empty(format)
            && !matches!(f.as_str(), "raw" | "qcow2" | "vdi" | "vmdk" | "live-iso")
        {
            return Err(Error::Config(format!(
                "{var}_FORMAT {f:?} is not one of raw, qcow2, vdi, vmdk, live-iso"
            )));
        }
        Ok(ImageConfig {
            url: url.trim().to_owned(),
            checksum: non_empty(checksum),
            checksum_type: non_empty(checksum_type),
            format: non_empty(format),
        })
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
            return Err(Error::Config("PROVISION_IMAGE must not be empty".into()));
        }
        if a.annotation_prefix.trim().is_empty() || a.annotation_prefix.contains('/') {
            return Err(Error::Config(
                "ANNOTATION_PREFIX must be a DNS subdomain without '/'".into(),
            ));
        }
        let image = ImageConfig::checked(
            "PROVISION_IMAGE",
            &a.provision_image,
            &a.provision_image_checksum,
            &a.provision_image_checksum_type,
            &a.provision_image_format,
        )?;
        let deprovision_image = non_empty(&a.deprovision_image)
            .map(|url| {
                ImageConfig::checked(
                    "DEPROVISION_IMAGE",
                    &url,
                    &a.deprovision_image_checksum,
                    &a.deprovision_image_checksum_type,
                    &a.deprovision_image_format,
                )
            })
            .transpose()?;
        let notify_url = non_empty(&a.notify_url);
        if let Some(u) = &notify_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "NOTIFY_URL {u:?} is not an http(s) URL"
            )));
        }
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
            log_level: a.log_level,
            notify_url,
            notify_secret: non_empty(&a.notify_secret).unwrap_or_else(|| a.webhook_secret.clone()),
            provision_timeout: Duration::from_secs(a.provision_timeout_seconds),
            release_timeout: Duration::from_secs(a.release_timeout_seconds),
            resource_id_label: a.bmh_resource_id_label,
            resource_types,
            annotation_prefix: a.annotation_prefix.trim().to_owned(),
            resync: Duration::from_secs(a.resync_seconds.max(1)),
            replica_id: non_empty(&a.replica_id)
                .or_else(|| std::env::var("HOSTNAME").ok().and_then(|h| non_empty(&h)))
                .unwrap_or_else(|| format!("pid-{}", std::process::id())),
        })
    }
}

impl Config {
    /// Parses flags and environment, then checks them.
    pub fn from_env() -> Result<Self> {
        Config::try_from(Args::parse())
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Result<Self> {
        Config::try_from(Args::parse_from(["bmh-sidecar"]))
    }

    /// Whether `resource_type` names a BareMetalHost.
    pub fn is_bmh_type(&self, resource_type: &str) -> bool {
        self.resource_types.iter().any(|t| t == resource_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["bmh-sidecar"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn defaults_match_the_replaced_service() {
        let c = Config::try_from(args(&[])).unwrap();
        assert_eq!(c.namespace, "default");
        assert_eq!(c.bmh_group, "metal3.io");
        assert_eq!(c.bmh_version, "v1alpha1");
        assert_eq!(c.bmh_plural, "baremetalhosts");
        assert_eq!(c.image.url, "default-provision-image-url");
        assert_eq!(c.deprovision_image, None);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.provision_timeout, Duration::from_secs(1800));
        assert_eq!(c.resource_types, vec!["Server".to_string()]);
        assert_eq!(c.resource_id_label, "reservations.polito.it/resource-id");
    }

    #[test]
    fn notify_secret_falls_back_to_webhook_secret() {
        let c = Config::try_from(args(&["--webhook-secret", "w"])).unwrap();
        assert_eq!(c.notify_secret, "w");
        let c = Config::try_from(args(&["--webhook-secret", "w", "--notify-secret", "n"])).unwrap();
        assert_eq!(c.notify_secret, "n");
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::try_from(args(&["--provision-image-format", "iso"])).is_err());
        assert!(Config::try_from(args(&["--provision-image-checksum-type", "crc"])).is_err());
        assert!(Config::try_from(args(&["--notify-url", "ftp://x"])).is_err());
        assert!(Config::try_from(args(&["--annotation-prefix", "a/b"])).is_err());
        assert!(
            Config::try_from(args(&[
                "--deprovision-image",
                "http://wipe",
                "--deprovision-image-format",
                "tar"
            ]))
            .is_err()
        );
    }

    #[test]
    fn resource_types_are_a_comma_list() {
        let c = Config::try_from(args(&["--bmh-resource-types", "Server, GPU Server ,"])).unwrap();
        assert!(c.is_bmh_type("Server"));
        assert!(c.is_bmh_type("GPU Server"));
        assert!(!c.is_bmh_type("Database"));
    }
}
