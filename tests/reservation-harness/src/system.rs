//! One reservation system: a database on the shared PostgreSQL cluster, reservation-be on it,
//! and ONE processor of a chosen version on the same database, asking the shared Keycloak stub.
//!
//! ```text
//!  Postgres::shared() ── CREATE DATABASE rs_<version>_<n>
//!  KeycloakStub::shared()
//!  Backend::start(db)      schema (Hibernate), seeder data, then webhooks/events cleared
//!     └─ site `bench-<n>` (group registered in the stub), resource type `Server` in it
//!  Processor::start(version, db)   only now: the schema exists
//! ```
//!
//! Two systems never share a database (two processors on one database would send every event
//! twice): [`ReservationSystem::shared`] is one per processor version per test binary, and a
//! scenario that stops its processor takes a private one ([`ReservationSystem::start`]).
//!
//! The system also reads what reservation-be stores and shows its users, straight from its
//! tables: [`ReservationSystem::webhook_logs`], [`ReservationSystem::notifications`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use crate::backend::{Backend, BackendClient, Resource, ResourceType, Site, User};
use crate::error::{Error, Result};
use crate::jars::Requirements;
use crate::keycloak::{KeycloakStub, KeycloakUser};
use crate::postgres::{Postgres, literal};
use crate::processor::{Processor, ProcessorVersion, rate_from_env};

/// Names databases and sites apart within one test binary.
static NEXT: AtomicU32 = AtomicU32::new(1);

/// A `webhook_logs` row: what reservation-be recorded of one of its own deliveries (or of a log
/// a client posted to `/api/webhooks/log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookLogRow {
    /// Row id.
    pub id: i64,
    /// `EVENT_CREATED`, `EVENT_UPDATED`, `EVENT_DELETED`, `RESOURCE_CREATED`, `ALL` (the Test
    /// button), or what a client posted.
    pub event_type: String,
    /// Whether the client answered 2xx.
    pub success: bool,
    /// The client's status code (absent when the request failed before an answer: reservation-be
    /// records a non-2xx as an exception, without its status).
    pub status_code: Option<u16>,
    /// The client's answer body, or `Request failed: <exception>`.
    pub response: String,
    /// The JSON sent.
    pub payload: String,
    /// Retry count of this row.
    pub retry_count: i64,
}

/// A `notifications` row: what a user sees in reservation-be's bell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Row id.
    pub id: i64,
    /// `INFO`, `SUCCESS`, `WARNING`, `ERROR`.
    pub kind: String,
    /// The message.
    pub message: String,
}

/// How a user is set up for a scenario.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    /// The SSH public key reservation-be stores for the user (`ssh_keys`); `None`: no key.
    pub ssh_key: Option<String>,
    /// Whether the processor's Keycloak (the stub) knows the user; `false`: the processor's
    /// lookup fails (404) and it omits `username` and `email`.
    pub known_to_processor: bool,
}

/// A running reservation system.
pub struct ReservationSystem {
    version: ProcessorVersion,
    pg: &'static Postgres,
    keycloak: &'static KeycloakStub,
    db: String,
    site: Site,
    server_type: ResourceType,
    // Field order is drop order: the processor stops before reservation-be.
    processor: Mutex<Processor>,
    backend: Backend,
}

static SHARED_FLAT: tokio::sync::OnceCell<ReservationSystem> = tokio::sync::OnceCell::const_new();
static SHARED_BATCH: tokio::sync::OnceCell<ReservationSystem> = tokio::sync::OnceCell::const_new();

impl ReservationSystem {
    /// The system of processor `version` shared by the scenarios of this test binary (each
    /// with its own resources, users and webhook), started on first use. Never stopped by a
    /// test: its processes end with the binary (watchdogs).
    pub async fn shared(
        req: &Requirements,
        version: ProcessorVersion,
    ) -> Result<&'static ReservationSystem> {
        let cell = match version {
            ProcessorVersion::Flat0118 => &SHARED_FLAT,
            ProcessorVersion::Batch0115 => &SHARED_BATCH,
        };
        cell.get_or_try_init(|| ReservationSystem::start(req, version))
            .await
    }

    /// A system of its own (a scenario that kills its processor takes one): a new database on
    /// the shared cluster, its own reservation-be and processor.
    pub async fn start(req: &Requirements, version: ProcessorVersion) -> Result<ReservationSystem> {
        let pg = Postgres::shared(req).await?;
        let keycloak = KeycloakStub::shared()?;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let db = format!("rs_{}_{n}", version.version().replace('.', ""));
        pg.create_database(&db).await?;
        let backend = Backend::start(req, pg, &db, &keycloak.jwk_set_uri()).await?;
        let client = backend.client();
        let site = client.create_site(&format!("bench-{n}")).await?;
        keycloak.add_group(&site.id, &site.name);
        let server_type = client.create_resource_type(&site, "Server").await?;
        let processor =
            Processor::start(req, version, pg, &db, &keycloak.url(), rate_from_env()).await?;
        Ok(ReservationSystem {
            version,
            pg,
            keycloak,
            db,
            site,
            server_type,
            processor: Mutex::new(processor),
            backend,
        })
    }

    /// Which processor runs.
    pub fn version(&self) -> ProcessorVersion {
        self.version
    }

    /// reservation-be.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// reservation-be's REST client.
    pub fn client(&self) -> &BackendClient {
        self.backend.client()
    }

    /// The processor (locked: a scenario that kills it holds the lock meanwhile).
    pub async fn processor(&self) -> MutexGuard<'_, Processor> {
        self.processor.lock().await
    }

    /// The scheduler rate of the processor.
    pub async fn rate(&self) -> Duration {
        self.processor.lock().await.rate()
    }

    /// The Keycloak stub.
    pub fn keycloak(&self) -> &'static KeycloakStub {
        self.keycloak
    }

    /// The PostgreSQL cluster.
    pub fn postgres(&self) -> &'static Postgres {
        self.pg
    }

    /// The database of this system.
    pub fn database(&self) -> &str {
        &self.db
    }

    /// The site every scenario's resources are in.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The `Server` resource type of the site (the sidecar's default `BMH_RESOURCE_TYPES`).
    pub fn server_type(&self) -> &ResourceType {
        &self.server_type
    }

    /// A new `Server` resource named `name` (specs name a made-up IP, as the real ones do).
    pub async fn new_server(&self, name: &str) -> Result<Resource> {
        self.client()
            .create_resource(
                &self.server_type,
                name,
                "2x Xeon, 128GB RAM, IP 192.0.2.21",
                "Lab 1, rack A",
            )
            .await
    }

    /// A new user `username` in the site, set up as `spec` says (SSH key in reservation-be;
    /// known to the processor's Keycloak or not).
    pub async fn new_user(&self, username: &str, spec: &UserSpec) -> Result<User> {
        let email = format!("{username}@studenti.polito.it");
        let user = self
            .client()
            .create_user(&self.site, username, &email)
            .await?;
        if let Some(key) = &spec.ssh_key {
            self.client().set_ssh_key(&user, key).await?;
        }
        if spec.known_to_processor {
            self.keycloak.add_user(KeycloakUser {
                id: user.id.clone(),
                username: user.username.clone(),
                email: Some(user.email.clone()),
                first_name: "Test".into(),
                last_name: username.into(),
            });
        }
        Ok(user)
    }

    /// Removes a user's SSH key. reservation-be lets only the user do that
    /// (`DELETE /api/users/me/ssh-key`), and the dev profile's current user is the admin, so it
    /// is removed from `ssh_keys` directly.
    pub async fn remove_ssh_key(&self, user: &User) -> Result<()> {
        self.pg
            .execute(
                &self.db,
                &format!("DELETE FROM ssh_keys WHERE user_id = {}", literal(&user.id)),
            )
            .await
    }

    /// The SSH key reservation-be stores for `user` (what the processor sends).
    pub async fn ssh_key(&self, user: &User) -> Result<Option<String>> {
        let rows = self
            .pg
            .query(
                &self.db,
                &format!(
                    "SELECT ssh_key FROM ssh_keys WHERE user_id = {}",
                    literal(&user.id)
                ),
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()))
    }

    /// The `webhook_logs` rows of webhook `id`, oldest first.
    pub async fn webhook_logs(&self, webhook_id: i64) -> Result<Vec<WebhookLogRow>> {
        self.webhook_logs_where(&format!("webhook_id = {webhook_id}"))
            .await
    }

    /// Every failed `webhook_logs` row of this system, oldest first.
    pub async fn failed_webhook_logs(&self) -> Result<Vec<(i64, WebhookLogRow)>> {
        let rows = self
            .pg
            .query(
                &self.db,
                "SELECT webhook_id, id, event_type, success, coalesce(status_code::text, ''), \
                 coalesce(response, ''), coalesce(payload, ''), retry_count \
                 FROM webhook_logs WHERE NOT success ORDER BY id",
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let webhook: i64 = r.first().and_then(|v| v.parse().ok()).unwrap_or(-1);
                Ok((webhook, log_row(&r[1..])?))
            })
            .collect()
    }

    async fn webhook_logs_where(&self, cond: &str) -> Result<Vec<WebhookLogRow>> {
        let rows = self
            .pg
            .query(
                &self.db,
                &format!(
                    "SELECT id, event_type, success, coalesce(status_code::text, ''), \
                     coalesce(response, ''), coalesce(payload, ''), retry_count \
                     FROM webhook_logs WHERE {cond} ORDER BY id"
                ),
            )
            .await?;
        rows.iter().map(|r| log_row(r)).collect()
    }

    /// The `notifications` rows of `user`, oldest first.
    pub async fn notifications(&self, user: &User) -> Result<Vec<NotificationRow>> {
        let rows = self
            .pg
            .query(
                &self.db,
                &format!(
                    "SELECT id, type, message FROM notifications WHERE keycloak_id = {} \
                     ORDER BY id",
                    literal(&user.id)
                ),
            )
            .await?;
        rows.into_iter()
            .map(|r| match r.as_slice() {
                [id, kind, message] => Ok(NotificationRow {
                    id: id.parse().unwrap_or(-1),
                    kind: kind.clone(),
                    message: message.clone(),
                }),
                _ => Err(Error::Unexpected(format!("notifications row {r:?}"))),
            })
            .collect()
    }
}

fn log_row(r: &[String]) -> Result<WebhookLogRow> {
    match r {
        [id, event_type, success, status, response, payload, retry] => Ok(WebhookLogRow {
            id: id.parse().unwrap_or(-1),
            event_type: event_type.clone(),
            success: success == "t",
            status_code: status.parse().ok(),
            response: response.clone(),
            payload: payload.clone(),
            retry_count: retry.parse().unwrap_or(0),
        }),
        _ => Err(Error::Unexpected(format!("webhook_logs row {r:?}"))),
    }
}
