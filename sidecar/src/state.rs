//! What every handler and the reconciler share.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::model::Keys;
use crate::notify::Notifier;

/// Shared state: configuration, Kubernetes access, notifier, metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub kube: Kube,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Builds the state around a Kubernetes client.
    pub fn new(config: Config, client: kube::Client) -> Result<Self> {
        let notifier = Notifier::new(config.notify_url.as_deref(), &config.notify_secret)?;
        Ok(AppState {
            keys: Arc::new(Keys::new(&config.annotation_prefix)),
            kube: Kube::new(client, &config),
            notifier,
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
        })
    }
}
