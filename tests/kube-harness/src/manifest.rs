//! Multi-document YAML manifests, applied like `kubectl apply --server-side -n NS`.
//!
//! Each document becomes a `DynamicObject`; its kind is looked up through discovery, namespaced
//! objects are put into the given namespace (overriding one in the manifest, as kustomize's
//! `namespace:` does), and the object is sent as a server-side apply patch with field manager
//! `kube-harness` (force, so re-applying is idempotent). With `dry_run` the API server runs full
//! validation, admission and defaulting but stores nothing. Server-side apply rejects unknown
//! fields, so a typo in a manifest fails here instead of being dropped silently.

use std::path::Path;

use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::Value;

use crate::apiserver::{ApiServer, repo_root};
use crate::error::{Error, Result};

/// Field manager used for every apply.
pub const FIELD_MANAGER: &str = "kube-harness";

/// Parses multi-document YAML into JSON objects, skipping empty documents.
pub fn parse_documents(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(yaml)?;
    docs.into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .map(|d| {
            if d.is_object() {
                Ok(d)
            } else {
                Err(Error::Manifest(format!(
                    "a YAML document is not a mapping: {d}"
                )))
            }
        })
        .collect()
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Applies every document of `yaml` with `client`. Returns the objects as the server answered
/// (for a dry run: as they would be stored).
pub async fn apply_documents(
    client: &Client,
    yaml: &str,
    namespace: &str,
    dry_run: bool,
) -> Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for doc in parse_documents(yaml)? {
        let mut obj: DynamicObject = serde_json::from_value(doc)?;
        let types = obj
            .types
            .clone()
            .ok_or_else(|| Error::Manifest("a document has no apiVersion/kind".into()))?;
        let (group, version) = split_api_version(&types.api_version);
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let (ar, caps) = discovery::pinned_kind(client, &gvk).await?;
        let name = obj
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::Manifest(format!("a {} has no metadata.name", types.kind)))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                obj.metadata.namespace = Some(namespace.to_string());
                Api::namespaced_with(client.clone(), namespace, &ar)
            }
            Scope::Cluster => {
                obj.metadata.namespace = None;
                Api::all_with(client.clone(), &ar)
            }
        };
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        pp.dry_run = dry_run;
        let applied = api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
        out.push(applied);
    }
    Ok(out)
}

impl ApiServer {
    /// Applies multi-document YAML text as admin (see the module docs).
    pub async fn apply_yaml(
        &self,
        yaml: &str,
        namespace: &str,
        dry_run: bool,
    ) -> Result<Vec<DynamicObject>> {
        apply_documents(&self.client().await?, yaml, namespace, dry_run).await
    }

    /// Applies a manifest file as admin. A relative path is taken from the repository root,
    /// so `apply_file("k8s/base/rbac.yaml", &ns, false)` works from any test crate.
    pub async fn apply_file(
        &self,
        path: impl AsRef<Path>,
        namespace: &str,
        dry_run: bool,
    ) -> Result<Vec<DynamicObject>> {
        let path = repo_root().join(path.as_ref());
        let yaml = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        self.apply_yaml(&yaml, namespace, dry_run).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_documents_and_skips_empty_ones() {
        let docs = parse_documents(
            "# comment only\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Role");
    }

    #[test]
    fn rejects_a_scalar_document() {
        assert!(parse_documents("just text").is_err());
    }

    #[test]
    fn splits_core_and_group_versions() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(
            split_api_version("metal3.io/v1alpha1"),
            ("metal3.io", "v1alpha1")
        );
    }
}
