//! reservation-harness: the REAL reservation system this project serves — reservation-be and
//! reservation-event-processor (Java, Spring Boot, built from source with Maven) on a private
//! PostgreSQL — started on loopback against the filter in a real Envoy, the real sidecar and the
//! real baremetal-operator, so scenario tests see exactly the messages, signatures, timing,
//! duplicates and retries of the real senders, and what the real backend accepts back.
//!
//! ```text
//!   test ── REST (as the admin UI) ──▶ reservation-be :<free>/api  (dev profile: Keycloak mock,
//!    │        users, SSH keys, bookings,      │        permit-all, admin1)
//!    │        webhooks, Test button           │ EVENT_CREATED/UPDATED/DELETED, RESOURCE_*,
//!    │                                        │ test (ALL); retries from webhook_logs
//!    │                 PostgreSQL (private    │
//!    │                 cluster, one database ─┤
//!    │                 per system)            │
//!    │                        ▲ reads events, ssh_keys, webhook_configs
//!    │  reservation-event-processor 0.1.18 | 0.1.15  (scheduler every 10 s in tests)
//!    │        │ EVENT_START / EVENT_END      └── user/group lookups ──▶ Keycloak stub (Rust)
//!    │        ▼                                                         (users registered by
//!    │  POST http://127.0.0.1:<envoy>/webhook, X-Webhook-Signature       the test)
//!    │        ▼
//!    │  Envoy + webhook filter ──▶ sidecar ──▶ kube-apiserver ◀── baremetal-operator (fixture)
//!    │                               │            BareMetalHost, userData Secret
//!    │                               └── notifications, webhook logs ──▶ reservation-be
//!    └── asserts: HTTP answers, BMH spec/annotations, Secret (cloud-config), reservation-be's
//!        notifications and webhook_logs rows, the processor's delivery log
//! ```
//!
//! # Layout
//! - [`jars`]: what the tier needs ([`requirements`]): the jars from
//!   `tools/build-reservation.sh`, Java 17+, PostgreSQL; skip loudly, or fail under `CI=true`.
//! - [`postgres`]: [`Postgres`], a private cluster; `create_database`, `execute`, `query`.
//! - [`keycloak`]: [`KeycloakStub`], the three admin-API calls the processor makes.
//! - [`backend`]: [`Backend`] (reservation-be as a child process) and [`BackendClient`] (sites,
//!   resource types, resources, users, SSH keys, bookings, webhooks, the Test button).
//! - [`processor`]: [`Processor`] of a [`ProcessorVersion`]; its delivery log
//!   ([`processor::parse_deliveries`]).
//! - [`system`]: [`ReservationSystem`] = database + reservation-be + one processor;
//!   `shared(version)` per test binary; reads `webhook_logs` and `notifications`.
//! - [`scenario`]: [`Scenario`]: one namespace, BMO, host, sidecar, Envoy and webhook.
//! - [`http`]: the small async JSON client; [`process`]: child processes, logs, watchdogs.
//! - [`error`]: the crate's [`Error`].
//!
//! Everything started is stopped on drop (also when a test panics); watchdog processes stop
//! PostgreSQL and the Java processes if the test binary dies without dropping them. Logs go to
//! files in temp dirs (`RESERVATION_HARNESS_KEEP=1` keeps them); errors carry their tails.
//!
//! Environment: `RESERVATION_BE_JAR`, `RESERVATION_EP_JAR`, `RESERVATION_EP_0115_JAR` (else
//! `tools/build-reservation.sh` runs, reading `RESERVATION_SRC`), `PG_BIN`,
//! `RESERVATION_EP_RATE_MS` (the processor's scheduler rate, default 10000), `CI`, plus what
//! the bench reads (`KUBE_TESTBIN`, `BMO_BIN`, `BMO_SRC`, `ENVOY_BIN`, `FILTER_WASM`,
//! `SIDECAR_BIN`).

pub mod backend;
pub mod error;
pub mod http;
pub mod jars;
pub mod keycloak;
pub mod postgres;
pub mod process;
pub mod processor;
pub mod scenario;
pub mod system;

pub use backend::{
    Backend, BackendClient, Event, Resource, ResourceType, Scope, Site, User, Webhook, event_time,
};
pub use error::{Error, Result};
pub use http::{Answer, JsonClient};
pub use jars::{Requirements, is_ci, requirements};
pub use keycloak::{KeycloakStub, KeycloakUser};
pub use postgres::Postgres;
pub use processor::{Delivery, Outcome, Processor, ProcessorVersion};
pub use scenario::{Scenario, ScenarioOptions};
pub use system::{NotificationRow, ReservationSystem, UserSpec, WebhookLogRow};
