//! All Kubernetes I/O: reading and patching BMHs (as `DynamicObject`s of the configured
//! group/version/plural) and the userData Secrets. Nothing here decides anything.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams, Preconditions,
};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::model::{Host, Keys};
use crate::plan::{ExistingSecret, SecretAction, secret_action};

/// Field manager recorded in managedFields for every write.
pub const FIELD_MANAGER: &str = "bmh-sidecar";

/// Kind of the BMH custom resource.
pub const BMH_KIND: &str = "BareMetalHost";

/// Label every Secret the sidecar writes carries (value [`FIELD_MANAGER`]). The sidecar never
/// changes or deletes a Secret without it, and the shipped ValidatingAdmissionPolicy
/// (`k8s/base/secret-policy.yaml`) holds its ServiceAccount to the same rule.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// How writing the userData Secret ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretState {
    /// The Secret holds the holder's userData.
    Ready,
    /// Nothing written: the Secret changed meanwhile, or this copy of the host is stale. Look
    /// again after the host's next version.
    Stale,
}

/// How a conditional write ended.
#[derive(Debug)]
pub enum Write {
    /// Applied; the host as the API server returned it.
    Done(Box<DynamicObject>),
    /// The resourceVersion precondition failed: re-read and decide again.
    Conflict,
    /// The object no longer exists.
    Gone,
    /// The API server refused the write for good (4xx other than 404/409: Metal3's
    /// validating webhook, RBAC, schema validation): retrying the same write cannot help.
    Refused(String),
}

/// Typed access to the BMHs and Secrets of the configured namespace.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    bmh: Api<DynamicObject>,
    secrets: Api<Secret>,
    resource: ApiResource,
    namespace: String,
    /// Annotation on each userData Secret naming the reservation (eventId) it was written for,
    /// so a release never deletes the Secret of the reservation that took the host next.
    secret_holder_key: String,
    /// Deadline of one API call made while a webhook request waits.
    call_timeout: Duration,
}

impl Kube {
    /// Wraps `client` for the configured namespace and BMH resource.
    pub fn new(client: Client, cfg: &Config) -> Self {
        let gvk = GroupVersionKind::gvk(&cfg.bmh_group, &cfg.bmh_version, BMH_KIND);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &cfg.bmh_plural);
        Kube {
            bmh: Api::namespaced_with(client.clone(), &cfg.namespace, &resource),
            secrets: Api::namespaced(client.clone(), &cfg.namespace),
            client,
            resource,
            namespace: cfg.namespace.clone(),
            secret_holder_key: Keys::new(&cfg.annotation_prefix).event_id,
            call_timeout: Duration::from_secs(10),
        }
    }

    /// The BMH API (for the watcher).
    pub fn bmh_api(&self) -> Api<DynamicObject> {
        self.bmh.clone()
    }

    /// The BMH resource description.
    pub fn resource(&self) -> ApiResource {
        self.resource.clone()
    }

    async fn timed<T>(
        &self,
        name: Option<&str>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>> {
        tokio::time::timeout(self.call_timeout, fut)
            .await
            .map_err(|_| Error::ApiTimeout {
                after: self.call_timeout,
                name: name.map(str::to_owned),
            })
    }

    /// The API server answers (`GET /version`).
    pub async fn ping(&self) -> Result<()> {
        let r = self.timed(None, self.client.apiserver_version()).await?;
        r.map(|_| ()).map_err(|e| Error::kube(e, None))
    }

    /// The BMHs labelled `label=value` (none when `value` cannot be a label value, such as a
    /// negative number: the selector would be refused).
    pub async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<DynamicObject>> {
        if !is_label_value(value) {
            return Ok(Vec::new());
        }
        let lp = ListParams::default().labels(&format!("{label}={value}"));
        let r = self.timed(None, self.bmh.list(&lp)).await?;
        r.map(|l| l.items).map_err(|e| Error::kube(e, None))
    }

    /// The BMH named `name`, if it exists.
    pub async fn get_bmh(&self, name: &str) -> Result<Option<DynamicObject>> {
        match self.timed(Some(name), self.bmh.get(name)).await? {
            Ok(o) => Ok(Some(o)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::kube(e, Some(name))),
        }
    }

    /// JSON merge patch of a BMH; a `metadata.resourceVersion` in `patch` is a precondition.
    pub async fn patch_bmh(&self, name: &str, patch: &Value) -> Result<Write> {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match self
            .timed(Some(name), self.bmh.patch(name, &pp, &Patch::Merge(patch)))
            .await?
        {
            Ok(o) => Ok(Write::Done(Box::new(o))),
            Err(e) if is_conflict(&e) => Ok(Write::Conflict),
            Err(e) if is_not_found(&e) => Ok(Write::Gone),
            Err(kube::Error::Api(status)) if is_refusal(status.code) => {
                Ok(Write::Refused(status.message))
            }
            Err(e) => Err(Error::kube(e, Some(name))),
        }
    }

    /// Creates the userData Secret of `host`'s holder, or brings an existing one to
    /// `user_data` ([`secret_action`] decides). [`SecretState::Stale`] when the Secret was
    /// written for another reservation and `host` is no longer the current version of the
    /// host: this replica's snapshot is stale, and the Secret may be the next holder's.
    pub async fn ensure_secret(&self, host: &Host, user_data: &str) -> Result<SecretState> {
        let name = host.secret_name();
        let data: BTreeMap<String, ByteString> = [(
            "userData".to_owned(),
            ByteString(user_data.as_bytes().to_vec()),
        )]
        .into();
        let holder_event = host
            .holder
            .as_ref()
            .map(|h| h.event_id.clone())
            .unwrap_or_default();
        let annotations = BTreeMap::from([(self.secret_holder_key.clone(), holder_event.clone())]);
        let owner_references = vec![OwnerReference {
            api_version: self.resource.api_version.clone(),
            kind: self.resource.kind.clone(),
            name: host.name.clone(),
            uid: host.uid.clone(),
            ..OwnerReference::default()
        }];
        let existing = match self.timed(Some(&name), self.secrets.get_opt(&name)).await? {
            Ok(s) => s,
            Err(e) => return Err(Error::kube(e, Some(&name))),
        };
        let facts = existing.as_ref().map(|s| ExistingSecret {
            managed: is_managed(s),
            written_for: s.annotations().get(&self.secret_holder_key).cloned(),
            up_to_date: s.data.as_ref().and_then(|d| d.get("userData")) == data.get("userData")
                && s.owner_references().iter().any(|o| o.uid == host.uid),
        });
        let action = secret_action(&holder_event, facts.as_ref());
        if matches!(
            action,
            SecretAction::CreateIfCurrent | SecretAction::OverwriteIfCurrent
        ) {
            let current = self
                .get_bmh(&host.name)
                .await?
                .and_then(|o| o.metadata.resource_version);
            if current.as_deref() != Some(host.resource_version.as_str()) {
                tracing::info!(secret = %name, "this copy of the host is stale; the userData Secret is left alone");
                return Ok(SecretState::Stale);
            }
        }
        match (action, existing) {
            (SecretAction::Keep, _) => Ok(SecretState::Ready),
            (SecretAction::Foreign, _) => Err(Error::ForeignSecret { name }),
            (SecretAction::CreateIfCurrent, _) | (_, None) => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.namespace.clone()),
                        annotations: Some(annotations),
                        labels: Some(
                            [(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned())].into(),
                        ),
                        owner_references: Some(owner_references),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..Secret::default()
                };
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                };
                match self
                    .timed(Some(&name), self.secrets.create(&pp, &secret))
                    .await?
                {
                    Ok(_) => Ok(SecretState::Ready),
                    // Written by someone else meanwhile: decide again on the next run.
                    Err(e) if is_conflict(&e) => Ok(SecretState::Stale),
                    Err(e) => Err(Error::kube(e, Some(&name))),
                }
            }
            (_, Some(existing)) => {
                let patch = serde_json::json!({
                    "metadata": {
                        "resourceVersion": existing.resource_version(),
                        "ownerReferences": owner_references,
                        "annotations": annotations,
                    },
                    "data": { "userData": ByteString(user_data.as_bytes().to_vec()) },
                });
                let pp = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                match self
                    .timed(
                        Some(&name),
                        self.secrets.patch(&name, &pp, &Patch::Merge(&patch)),
                    )
                    .await?
                {
                    Ok(_) => Ok(SecretState::Ready),
                    Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(SecretState::Stale),
                    Err(e) => Err(Error::kube(e, Some(&name))),
                }
            }
        }
    }

    /// Deletes the userData Secret of `host`'s holder (absent is fine).
    ///
    /// Only the Secret written for that reservation, and only as it was read: a replica acting
    /// on a stale copy of the host (the host already released and handed to the next
    /// reservation, whose Secret now has the same name) must not delete the new holder's
    /// Secret. So the Secret is read first, left alone when it names another reservation, and
    /// deleted with a uid + resourceVersion precondition (409: it changed meanwhile, so it is
    /// no longer ours to delete).
    pub async fn delete_secret(&self, host: &Host) -> Result<()> {
        let name = host.secret_name();
        let existing = match self.timed(Some(&name), self.secrets.get_opt(&name)).await? {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Error::kube(e, Some(&name))),
        };
        if !is_managed(&existing) {
            tracing::warn!(secret = %name, "a Secret of this name is not managed by bmh-sidecar; left in place");
            return Ok(());
        }
        let written_for = existing.annotations().get(&self.secret_holder_key);
        let releasing = host.holder.as_ref().map(|h| &h.event_id);
        if let (Some(written_for), Some(releasing)) = (written_for, releasing)
            && written_for != releasing
        {
            tracing::info!(secret = %name, %written_for, %releasing, "userData Secret belongs to another reservation; left in place");
            return Ok(());
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: existing.resource_version(),
                uid: existing.uid(),
            }),
            ..DeleteParams::default()
        };
        match self
            .timed(Some(&name), self.secrets.delete(&name, &dp))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(Error::kube(e, Some(&name))),
        }
    }
}

/// Carries the sidecar's managed-by label.
fn is_managed(secret: &Secret) -> bool {
    secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER)
}

/// A 4xx answer that retrying the same request cannot change (404 and 409 have their own
/// meaning here; 429 means "later").
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 404 | 409 | 429)
}

/// A valid Kubernetes label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending with an alphanumeric (or empty).
pub fn is_label_value(v: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.is_empty()
        || (v.len() <= 63
            && alnum(v.chars().next())
            && alnum(v.chars().last())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
}

#[cfg(test)]
mod tests {
    //! The exact requests of this module, against a scripted API server (tower-test).

    use super::*;
    use crate::model::{Phase, fixtures};
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn kube() -> (Kube, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "ns");
        let mut cfg = crate::config::fixtures::config(&[]).unwrap();
        cfg.namespace = "ns".into();
        (Kube::new(client, &cfg), handle)
    }

    fn reply(status: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn status(code: u16, reason: &str) -> serde_json::Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
               "reason": reason, "message": reason})
    }

    async fn next(
        handle: &mut Handle,
    ) -> (
        Request<serde_json::Value>,
        mock::SendResponse<Response<Body>>,
    ) {
        let (req, send) =
            tokio::time::timeout(std::time::Duration::from_secs(1), handle.next_request())
                .await
                .expect("no request within 1s")
                .expect("service dropped");
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let v = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (Request::from_parts(parts, v), send)
    }

    #[tokio::test]
    async fn patch_is_a_merge_patch_with_our_field_manager_and_409_is_a_conflict() {
        let (k, mut h) = kube();
        let patch = json!({"metadata": {"resourceVersion": "7", "annotations": {"a/b": "c"}}});
        let call = tokio::spawn({
            let k = k.clone();
            let patch = patch.clone();
            async move { k.patch_bmh("host-1", &patch).await }
        });
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.uri().to_string(),
            "/apis/metal3.io/v1alpha1/namespaces/ns/baremetalhosts/host-1?&fieldManager=bmh-sidecar"
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(req.body(), &patch);
        send.send_response(reply(409, status(409, "Conflict")));
        assert!(matches!(call.await.unwrap(), Ok(Write::Conflict)));
    }

    /// A Secret as the API server returns it, written for `event` (None: no annotation), with
    /// or without the managed-by label.
    fn stored_secret(event: Option<&str>, managed: bool) -> serde_json::Value {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "lab-server-a1-userdata", "namespace": "ns", "resourceVersion": "42",
                         "uid": "secret-uid"},
            "data": {"userData": "b2xk"}
        });
        if managed {
            v["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "bmh-sidecar"});
        }
        if let Some(e) = event {
            v["metadata"]["annotations"] = json!({"reservations.polito.it/event-id": e});
        }
        v
    }

    /// Starts `ensure_secret` for the fixture host held by reservation 101 (resourceVersion
    /// 10) and answers its read of the Secret with `existing` (None: 404).
    async fn ensure_with(
        k: &Kube,
        h: &mut Handle,
        existing: Option<serde_json::Value>,
    ) -> tokio::task::JoinHandle<Result<SecretState>> {
        let host = fixtures::host().held(&fixtures::holder("101", "u"), Phase::Provisioning);
        let call = tokio::spawn({
            let k = k.clone();
            async move { k.ensure_secret(&host, "#cloud-config\n").await }
        });
        let (req, send) = next(h).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/ns/secrets/lab-server-a1-userdata"
        );
        match existing {
            Some(v) => send.send_response(reply(200, v)),
            None => send.send_response(reply(404, status(404, "NotFound"))),
        }
        call
    }

    async fn no_more_requests(h: &mut Handle, what: &str) {
        let more =
            tokio::time::timeout(std::time::Duration::from_millis(200), h.next_request()).await;
        assert!(more.is_err(), "{what}");
    }

    /// Answers the fresh read of the host with resourceVersion `rv`.
    async fn host_is_at(h: &mut Handle, rv: &str) {
        let (req, send) = next(h).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/apis/metal3.io/v1alpha1/namespaces/ns/baremetalhosts/lab-server-a1"
        );
        send.send_response(reply(
            200,
            json!({
                "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                "metadata": {"name": "lab-server-a1", "namespace": "ns", "resourceVersion": rv}
            }),
        ));
    }

    #[tokio::test]
    async fn a_stale_copy_creates_no_secret() {
        let (k, mut h) = kube();
        let call = ensure_with(&k, &mut h, None).await;
        host_is_at(&mut h, "12").await;
        assert_eq!(call.await.unwrap().unwrap(), SecretState::Stale);
        no_more_requests(&mut h, "a stale replica created a Secret").await;
    }

    #[tokio::test]
    async fn a_missing_secret_is_created_labelled_owned_and_annotated() {
        let (k, mut h) = kube();
        let call = ensure_with(&k, &mut h, None).await;
        host_is_at(&mut h, "10").await;
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/ns/secrets");
        let meta = &req.body()["metadata"];
        assert_eq!(meta["name"], "lab-server-a1-userdata");
        assert_eq!(
            meta["labels"],
            json!({"app.kubernetes.io/managed-by": "bmh-sidecar"})
        );
        assert_eq!(
            meta["annotations"],
            json!({"reservations.polito.it/event-id": "101"})
        );
        assert_eq!(
            meta["ownerReferences"],
            json!([{"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                    "name": "lab-server-a1", "uid": "uid-1"}])
        );
        assert_eq!(req.body()["data"]["userData"], "I2Nsb3VkLWNvbmZpZwo=");
        send.send_response(reply(201, stored_secret(Some("101"), true)));
        assert_eq!(call.await.unwrap().unwrap(), SecretState::Ready);
    }

    #[tokio::test]
    async fn the_holders_secret_with_other_content_is_patched_conditionally() {
        let (k, mut h) = kube();
        let call = ensure_with(&k, &mut h, Some(stored_secret(Some("101"), true))).await;
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(req.body()["metadata"]["resourceVersion"], "42");
        assert_eq!(req.body()["data"]["userData"], "I2Nsb3VkLWNvbmZpZwo=");
        send.send_response(reply(200, stored_secret(Some("101"), true)));
        assert_eq!(call.await.unwrap().unwrap(), SecretState::Ready);
    }

    #[tokio::test]
    async fn a_secret_of_that_name_written_by_someone_else_is_never_overwritten() {
        let (k, mut h) = kube();
        let call = ensure_with(&k, &mut h, Some(stored_secret(None, false))).await;
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::ForeignSecret { name }) if name == "lab-server-a1-userdata"
        ));
        no_more_requests(&mut h, "a foreign Secret was written").await;
    }

    #[tokio::test]
    async fn a_stale_copy_never_overwrites_the_next_holders_secret() {
        let (k, mut h) = kube();
        // The Secret names reservation 202: either a leftover, or the NEXT holder's while this
        // replica still sees 101. The host is read again: it moved on (resourceVersion 11).
        let call = ensure_with(&k, &mut h, Some(stored_secret(Some("202"), true))).await;
        host_is_at(&mut h, "11").await;
        assert_eq!(call.await.unwrap().unwrap(), SecretState::Stale);
        no_more_requests(
            &mut h,
            "a stale replica overwrote another reservation's Secret",
        )
        .await;
    }

    #[tokio::test]
    async fn an_earlier_reservations_leftover_is_overwritten_when_the_copy_is_current() {
        let (k, mut h) = kube();
        let call = ensure_with(&k, &mut h, Some(stored_secret(Some("99"), true))).await;
        host_is_at(&mut h, "10").await;
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.body()["metadata"]["annotations"],
            json!({"reservations.polito.it/event-id": "101"})
        );
        send.send_response(reply(200, stored_secret(Some("101"), true)));
        assert_eq!(call.await.unwrap().unwrap(), SecretState::Ready);
    }

    #[tokio::test]
    async fn a_refused_bmh_write_is_terminal_not_retried() {
        let (k, mut h) = kube();
        let call = tokio::spawn({
            let k = k.clone();
            async move {
                k.patch_bmh("host-1", &json!({"spec": {"online": true}}))
                    .await
            }
        });
        let (_, send) = next(&mut h).await;
        send.send_response(reply(
            403,
            status(403, "admission webhook \"baremetalhost.metal3.io\" denied the request: checksum is required for normal images"),
        ));
        match call.await.unwrap() {
            Ok(Write::Refused(m)) => assert!(m.contains("checksum is required"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn label_values() {
        for ok in ["1", "42", "a.b_c-d", ""] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-1", "a b", "x-", &"9".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn deleting_a_missing_secret_is_fine() {
        let (k, mut h) = kube();
        let call = tokio::spawn({
            let k = k.clone();
            async move { k.delete_secret(&fixtures::host()).await }
        });
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/ns/secrets/lab-server-a1-userdata"
        );
        send.send_response(reply(404, status(404, "NotFound")));
        call.await.unwrap().unwrap();
    }

    fn secret_for(event: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "lab-server-a1-userdata", "namespace": "ns",
                         "uid": "secret-uid", "resourceVersion": "77",
                         "labels": {"app.kubernetes.io/managed-by": "bmh-sidecar"},
                         "annotations": {"reservations.polito.it/event-id": event}},
            "data": {"userData": "b2xk"}
        })
    }

    /// Starts `delete_secret` for a host held by reservation 101 and answers its read of the
    /// Secret with one written for `owner`.
    async fn release_reading_secret_of(
        k: &Kube,
        h: &mut Handle,
        owner: &str,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let host = fixtures::host().held(&fixtures::holder("101", "u"), Phase::Deprovisioning);
        let call = tokio::spawn({
            let k = k.clone();
            async move { k.delete_secret(&host).await }
        });
        let (req, send) = next(h).await;
        assert_eq!(req.method(), "GET");
        send.send_response(reply(200, secret_for(owner)));
        call
    }

    #[tokio::test]
    async fn the_holders_secret_is_deleted_only_as_it_was_read() {
        let (k, mut h) = kube();
        let call = release_reading_secret_of(&k, &mut h, "101").await;
        let (req, send) = next(&mut h).await;
        assert_eq!(req.method(), "DELETE");
        assert_eq!(
            req.body()["preconditions"],
            json!({"resourceVersion": "77", "uid": "secret-uid"})
        );
        // Changed between the read and the delete: no longer ours, not an error.
        send.send_response(reply(409, status(409, "Conflict")));
        call.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_release_never_deletes_the_next_reservations_secret() {
        let (k, mut h) = kube();
        // A stale copy of the host: still held by 101, while 202 already owns the Secret.
        let call = release_reading_secret_of(&k, &mut h, "202").await;
        call.await.unwrap().unwrap();
        // No DELETE follows.
        let more =
            tokio::time::timeout(std::time::Duration::from_millis(200), h.next_request()).await;
        assert!(
            more.is_err(),
            "a DELETE was sent for another reservation's Secret"
        );
    }
}
