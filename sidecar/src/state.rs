//! What every handler and the reconciler share.

use std::sync::Arc;

use kube::api::DynamicObject;
use kube::runtime::reflector::Store;

use crate::config::Config;
use crate::error::Result;
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::model::Keys;
use crate::notify::Notifier;
use crate::plan::Policy;
use crate::verify::Inbound;
use crate::webhook::MissCache;

/// Shared state: configuration, Kubernetes access, notifier, metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub kube: Kube,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    /// What planning needs from the configuration.
    pub policy: Arc<Policy>,
    /// The filter's check of every delivery, repeated here.
    pub inbound: Arc<Inbound>,
    /// Unknown resources recently looked up in the API (see [`MissCache`]).
    pub misses: Arc<MissCache>,
    /// The reconciler's watch cache of BMHs: the webhook's fast path for finding a host.
    /// Decisions made on it are only written with a resourceVersion precondition, and any
    /// answer that writes nothing is re-decided on a fresh read.
    pub cache: Option<Store<DynamicObject>>,
}

impl AppState {
    /// Builds the state around a Kubernetes client.
    pub fn new(config: Config, client: kube::Client) -> Result<Self> {
        let notifier = Notifier::new(&config)?;
        Ok(AppState {
            policy: Arc::new(Policy::new(&config, notifier.enabled())),
            inbound: Arc::new(Inbound::new(&config)?),
            misses: Arc::new(MissCache::default()),
            keys: Arc::new(Keys::new(&config.annotation_prefix)),
            kube: Kube::new(client, &config),
            notifier,
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
            cache: None,
        })
    }
}
