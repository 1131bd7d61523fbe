//! reservation-be (1.9.5) as a child process on its own PostgreSQL database, and a client for
//! the parts of its REST API the scenarios use, as its admin UI calls them.
//!
//! ```text
//!  java -Dfile.encoding=UTF-8 -jar reservation-be.jar          cwd: <tmp>/reservation-be-XXXX
//!     SPRING_PROFILES_ACTIVE=dev   in-memory Keycloak mock, permit-all, current user `admin1`
//!     --server.port=<free>                       (context path /api)
//!     --spring.datasource.*=postgres <db>        (org.postgresql.Driver, PostgreSQLDialect;
//!                                                 Hibernate ddl-auto update creates the schema)
//!     --spring.security.oauth2.resourceserver.jwt.jwk-set-uri=<Keycloak stub>   (needed to start)
//!     --management.endpoint.health.probes.enabled=true
//!  ready = GET /api/actuator/health/readiness 200: after the dev data seeder has run
//!  then:  DELETE FROM webhook_logs, webhook_configs, events   (the seeder's sample webhooks point
//!         at outside URLs; its sample events would be sent to them)
//! ```
//!
//! `-Dfile.encoding=UTF-8` matters: reservation-be signs with the platform charset (Java 18+
//! defaults to UTF-8; this machine's Java 17 does not). `TZ=UTC` like the container images.
//!
//! The dev profile's Keycloak mock lives in reservation-be's memory: users and sites created
//! here ([`BackendClient::create_user`], [`BackendClient::create_site`]) exist only there; the
//! processor's Keycloak is the stub ([`crate::keycloak`]), which the test tells about them.
//! Restarting reservation-be would lose them (and its seeder deletes every resource, event and
//! webhook at start), so it is never restarted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::http::{Answer, JsonClient};
use crate::jars::Requirements;
use crate::postgres::{Postgres, SUPERUSER};
use crate::process::{Service, temp_dir};

/// How long reservation-be may take to be ready (Spring Boot + Hibernate on a busy 2-core
/// machine: ~30–60 s; three JVMs may be starting at once).
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);

/// JVM options of the harness's Java processes: a bounded heap and a quick start (C1 only) on a
/// shared 2-core machine. None changes what the services do.
pub(crate) const JVM_OPTIONS: &[&str] = &[
    "-Dfile.encoding=UTF-8",
    "-Xmx512m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
];

/// A running reservation-be.
pub struct Backend {
    service: Service,
    port: u16,
    db: String,
    client: BackendClient,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Backend {
    /// Starts reservation-be on database `db` of `pg` (created by the caller), waits until it is
    /// ready (bounded by [`READY_TIMEOUT`]) and clears the dev seeder's webhooks and events.
    pub async fn start(
        req: &Requirements,
        pg: &Postgres,
        db: &str,
        jwk_set_uri: &str,
    ) -> Result<Backend> {
        let dir = temp_dir("reservation-be")?;
        let port = envoy_harness::free_port()?;
        let mut cmd = Command::new(&req.java);
        cmd.args(JVM_OPTIONS)
            .arg("-jar")
            .arg(&req.backend_jar)
            .arg(format!("--server.port={port}"))
            .arg("--server.address=127.0.0.1")
            .arg(format!("--spring.datasource.url={}", pg.jdbc_url(db)))
            .arg(format!("--spring.datasource.username={SUPERUSER}"))
            .arg("--spring.datasource.password=unused")
            .arg("--spring.datasource.driver-class-name=org.postgresql.Driver")
            .arg("--spring.datasource.hikari.maximum-pool-size=8")
            .arg("--spring.jpa.database-platform=org.hibernate.dialect.PostgreSQLDialect")
            .arg("--spring.jpa.show-sql=false")
            .arg("--spring.jpa.properties.hibernate.format_sql=false")
            .arg(format!(
                "--spring.security.oauth2.resourceserver.jwt.jwk-set-uri={jwk_set_uri}"
            ))
            .arg("--management.endpoint.health.probes.enabled=true")
            .env("SPRING_PROFILES_ACTIVE", "dev")
            .env("TZ", "UTC")
            .current_dir(dir.path());
        let log = dir.path().join("reservation-be.log");
        let service = Service::spawn(
            "reservation-be",
            cmd,
            &log,
            dir.path(),
            Duration::from_secs(10),
        )?;
        let mut be = Backend {
            service,
            port,
            db: db.to_string(),
            client: BackendClient::new(port),
            dir,
        };
        be.wait_ready().await?;
        // The seeder's sample webhooks (outside URLs) and events go; its sites, users, resource
        // types and resources stay (nothing subscribes to them).
        pg.execute(
            db,
            "DELETE FROM webhook_logs; DELETE FROM webhook_configs; DELETE FROM events;",
        )
        .await?;
        Ok(be)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.service.check_alive()?;
            if let Ok(a) = self.client.http.get("/actuator/health/readiness").await
                && a.status == 200
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!(
                        "reservation-be readiness on port {}; log tail:\n{}",
                        self.port,
                        self.service.log_tail()
                    ),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Its port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/api`.
    pub fn api_url(&self) -> String {
        self.client.http.base().to_string()
    }

    /// Where a webhook client posts notifications: `.../api/notifications/webhook`.
    pub fn notification_endpoint(&self) -> String {
        format!("{}/notifications/webhook", self.api_url())
    }

    /// Where a webhook client posts webhook logs: `.../api/webhooks/log`.
    pub fn webhook_log_endpoint(&self) -> String {
        format!("{}/webhooks/log", self.api_url())
    }

    /// Its database.
    pub fn database(&self) -> &str {
        &self.db
    }

    /// The REST client.
    pub fn client(&self) -> &BackendClient {
        &self.client
    }

    /// Its log file (Spring's console output).
    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }

    /// Its temp dir (log, `logs/application.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A site (a Keycloak group in the dev mock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Group id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// A resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// Id.
    pub id: i64,
    /// Name (the processor's `resourceType`).
    pub name: String,
    /// Its site.
    pub site_id: String,
}

/// A resource (a server, a switch ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Id (the processor's `resourceId`; the BareMetalHost's resource-id label).
    pub id: i64,
    /// Name (`resourceName`).
    pub name: String,
    /// Its type.
    pub type_id: i64,
    /// Its site.
    pub site_id: String,
}

/// A user of the dev Keycloak mock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Keycloak id (the events' `keycloakId`, the processor's `userId`).
    pub id: String,
    /// Username.
    pub username: String,
    /// E-mail.
    pub email: String,
}

/// A reservation (an "event").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Id (`eventId`).
    pub id: i64,
    /// Resource.
    pub resource_id: i64,
    /// Owner.
    pub user_id: String,
    /// Start.
    pub start: jiff::Timestamp,
    /// End.
    pub end: jiff::Timestamp,
}

/// What a webhook subscribes to (one of reservation-be's scopes; see
/// `findRelevantWebhooksForResourceEvent`). The processor's own query treats a webhook with
/// neither a resource nor a type as global, so a scenario never creates a site-wide one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One resource.
    Resource(i64),
    /// Every resource of one type.
    ResourceType(i64),
}

/// A webhook as created: its id and the secret reservation-be generated (returned once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Id (`webhookId`).
    pub id: i64,
    /// Name (the processor logs deliveries by webhook name).
    pub name: String,
    /// The generated secret (44 characters of Base64; its ASCII bytes are the HMAC key).
    pub secret: String,
    /// Its URL.
    pub url: String,
}

/// reservation-be's REST API (context path `/api`), as the dev profile's current user `admin1`
/// (a global admin) calls it.
#[derive(Debug, Clone)]
pub struct BackendClient {
    http: JsonClient,
}

/// reservation-be's time format for event start/end (`@JsonFormat` of `EventDTO`):
/// `yyyy-MM-dd'T'HH:mm:ss.SSSX`, e.g. `2025-07-10T08:00:00.000Z`.
pub fn event_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%3fZ").to_string()
}

fn id_of(v: &Value, what: &str) -> Result<i64> {
    v.get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::Unexpected(format!("{what}: no numeric id in {v}")))
}

fn str_of(v: &Value, key: &str, what: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Unexpected(format!("{what}: no `{key}` in {v}")))
}

impl BackendClient {
    /// A client for the reservation-be on `port`.
    pub fn new(port: u16) -> BackendClient {
        BackendClient {
            http: JsonClient::new(format!("http://127.0.0.1:{port}/api")),
        }
    }

    /// The underlying JSON client (for calls this API does not wrap).
    pub fn http(&self) -> &JsonClient {
        &self.http
    }

    /// `POST /api/sites`.
    pub async fn create_site(&self, name: &str) -> Result<Site> {
        let v = self
            .http
            .expect_ok(
                "create site",
                Method::POST,
                "/sites",
                Some(&json!({"name": name, "description": "reservation tier"})),
            )
            .await?;
        Ok(Site {
            id: str_of(&v, "id", "create site")?,
            name: str_of(&v, "name", "create site")?,
        })
    }

    /// `POST /api/resource-types`.
    pub async fn create_resource_type(&self, site: &Site, name: &str) -> Result<ResourceType> {
        let v = self
            .http
            .expect_ok(
                "create resource type",
                Method::POST,
                "/resource-types",
                Some(&json!({"name": name, "color": "#1976d2", "siteId": site.id})),
            )
            .await?;
        Ok(ResourceType {
            id: id_of(&v, "create resource type")?,
            name: name.to_string(),
            site_id: site.id.clone(),
        })
    }

    /// `POST /api/resources` (status ACTIVE): reservation-be sends RESOURCE_CREATED to the
    /// webhooks of its type and site.
    pub async fn create_resource(
        &self,
        ty: &ResourceType,
        name: &str,
        specs: &str,
        location: &str,
    ) -> Result<Resource> {
        let v = self
            .http
            .expect_ok(
                "create resource",
                Method::POST,
                "/resources",
                Some(&json!({
                    "name": name, "specs": specs, "location": location, "status": "ACTIVE",
                    "typeId": ty.id, "siteId": ty.site_id,
                })),
            )
            .await?;
        Ok(Resource {
            id: id_of(&v, "create resource")?,
            name: name.to_string(),
            type_id: ty.id,
            site_id: ty.site_id.clone(),
        })
    }

    /// `POST /api/users` (role USER) then `POST /api/sites/{site}/users/{id}` (only members of a
    /// resource's site can be booked onto it by an admin).
    pub async fn create_user(&self, site: &Site, username: &str, email: &str) -> Result<User> {
        let v = self
            .http
            .expect_ok(
                "create user",
                Method::POST,
                "/users",
                Some(&json!({
                    "username": username, "firstName": "Test", "lastName": username,
                    "email": email, "password": "unused-Passw0rd", "roles": ["USER"],
                })),
            )
            .await?;
        let user = User {
            id: str_of(&v, "id", "create user")?,
            username: username.to_string(),
            email: email.to_string(),
        };
        self.http
            .expect_ok(
                "add user to site",
                Method::POST,
                &format!("/sites/{}/users/{}", site.id, user.id),
                Some(&json!({})),
            )
            .await?;
        Ok(user)
    }

    /// Sets a user's SSH key as an admin does (`PUT /api/users/{id}` with `sshPublicKey`: stored
    /// in the `ssh_keys` table the processor reads). reservation-be answers 200 even when it
    /// refused the key (its validator failed), so the key is read back and compared.
    pub async fn set_ssh_key(&self, user: &User, key: &str) -> Result<()> {
        self.http
            .expect_ok(
                "set SSH key",
                Method::PUT,
                &format!("/users/{}", user.id),
                Some(&json!({"sshPublicKey": key})),
            )
            .await?;
        let v = self
            .http
            .expect_ok(
                "read user",
                Method::GET,
                &format!("/users/{}", user.id),
                None,
            )
            .await?;
        match v.get("sshPublicKey").and_then(Value::as_str) {
            Some(k) if k.trim() == key.trim() => Ok(()),
            other => Err(Error::Unexpected(format!(
                "reservation-be did not store the SSH key of {} (it reads back {other:?})",
                user.username
            ))),
        }
    }

    /// `POST /api/events` (a booking for `user` by the admin): reservation-be sends
    /// EVENT_CREATED.
    pub async fn create_event(
        &self,
        title: &str,
        resource: &Resource,
        user: &User,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<Event> {
        let a = self
            .http
            .post(
                "/events",
                &json!({
                    "title": title, "description": "reservation tier scenario",
                    "start": event_time(start), "end": event_time(end),
                    "resourceId": resource.id, "userId": user.id,
                }),
            )
            .await?;
        if !a.is_success() {
            return Err(Error::Refused {
                what: "create event".into(),
                status: a.status,
                body: a.text,
            });
        }
        Ok(Event {
            id: id_of(&a.body, "create event")?,
            resource_id: resource.id,
            user_id: user.id.clone(),
            start,
            end,
        })
    }

    /// `PUT /api/events/{id}` with new start and end (reservation-be sends EVENT_UPDATED; it
    /// does not reset the processor's `startNotifiedAt`/`endNotifiedAt`).
    pub async fn update_event(
        &self,
        event: &Event,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Result<Event> {
        self.http
            .expect_ok(
                "update event",
                Method::PUT,
                &format!("/events/{}", event.id),
                Some(&json!({
                    "title": "reservation tier scenario (changed)",
                    "start": event_time(start), "end": event_time(end),
                    "resourceId": event.resource_id, "userId": event.user_id,
                })),
            )
            .await?;
        Ok(Event {
            start,
            end,
            ..event.clone()
        })
    }

    /// `DELETE /api/events/{id}` (reservation-be sends EVENT_DELETED; no START or END follows).
    pub async fn delete_event(&self, event: &Event) -> Result<()> {
        self.http
            .expect_ok(
                "delete event",
                Method::DELETE,
                &format!("/events/{}", event.id),
                None,
            )
            .await
            .map(|_| ())
    }

    /// `POST /api/webhooks` (event type ALL, enabled, reservation-be's default retries) and the
    /// generated secret from its answer.
    pub async fn create_webhook(
        &self,
        name: &str,
        url: &str,
        site: &Site,
        scope: Scope,
    ) -> Result<Webhook> {
        let mut body = json!({
            "name": name, "url": url, "eventType": "ALL", "enabled": true, "siteId": site.id,
        });
        match scope {
            Scope::Resource(id) => body["resourceId"] = json!(id),
            Scope::ResourceType(id) => body["resourceTypeId"] = json!(id),
        }
        let v = self
            .http
            .expect_ok("create webhook", Method::POST, "/webhooks", Some(&body))
            .await?;
        Ok(Webhook {
            id: id_of(&v["webhook"], "create webhook")?,
            name: name.to_string(),
            secret: str_of(&v, "clientSecret", "create webhook")?,
            url: url.to_string(),
        })
    }

    /// Enables or disables a webhook (`PUT /api/webhooks/{id}`): a finished scenario's webhook is
    /// disabled so late deliveries (duplicate ENDs) do not go to its stopped Envoy.
    pub async fn set_webhook_enabled(
        &self,
        webhook: &Webhook,
        site: &Site,
        scope: Scope,
        enabled: bool,
    ) -> Result<()> {
        let mut body = json!({
            "name": webhook.name, "url": webhook.url, "eventType": "ALL", "enabled": enabled,
            "siteId": site.id,
        });
        match scope {
            Scope::Resource(id) => body["resourceId"] = json!(id),
            Scope::ResourceType(id) => body["resourceTypeId"] = json!(id),
        }
        self.http
            .expect_ok(
                "update webhook",
                Method::PUT,
                &format!("/webhooks/{}", webhook.id),
                Some(&body),
            )
            .await
            .map(|_| ())
    }

    /// The admin's Test button: `POST /api/webhooks/{id}/test`, reservation-be's answer as it is
    /// (200 `{"success":true,"message":"Test webhook sent successfully"}` only if the client
    /// answered 2xx; else 500).
    pub async fn test_webhook(&self, webhook: &Webhook) -> Result<Answer> {
        self.http
            .post(&format!("/webhooks/{}/test", webhook.id), &json!({}))
            .await
    }
}
