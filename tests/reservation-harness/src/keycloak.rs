//! A Keycloak stub answering exactly what reservation-event-processor asks Keycloak's admin API
//! (its `KeycloakService`, through `keycloak-admin-client` 16.1.1: a new client-credentials
//! client per lookup, so one token request before every user or group read).
//!
//! ```text
//!  processor ── POST /realms/{realm}/protocol/openid-connect/token ──▶ 200 access token JSON
//!            │     (form: grant_type=client_credentials, client_id, client_secret)
//!            ├─ GET /admin/realms/{realm}/users/{id}   ──▶ 200 UserRepresentation | 404
//!            └─ GET /admin/realms/{realm}/groups/{id}  ──▶ 200 GroupRepresentation | 404
//!  reservation-be (dev profile) needs a jwk-set-uri to start:
//!               GET /realms/{realm}/protocol/openid-connect/certs ──▶ {"keys":[]} (never called)
//!  anything else ──▶ 404
//! ```
//!
//! The test registers users ([`KeycloakStub::add_user`]) and groups (sites) at run time, with the
//! ids reservation-be's dev Keycloak mock gave them: a user the stub does not know makes the
//! processor omit `username` and `email` (its lookup fails with 404 and is logged). Every request
//! is recorded ([`KeycloakStub::requests`]). Any realm, client and secret are accepted.
//!
//! The server runs on a thread of its own with its own tokio runtime, so one stub outlives the
//! runtime of whichever test started it (`KeycloakStub::shared()` is one per test binary).
//! Dropping it stops the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The realm the harness configures (`KEYCLOAK_REALM`); the stub answers any.
pub const REALM: &str = "reservations";
/// The client id the harness gives the processor (`KEYCLOAK_CLIENT_ID`).
pub const CLIENT_ID: &str = "reservation-event-processor";
/// Its client secret (`KEYCLOAK_CLIENT_SECRET`).
pub const CLIENT_SECRET: &str = "stub-client-secret";

/// A user as Keycloak stores it (what the processor reads: `username`, `email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeycloakUser {
    /// The user id (reservation-be's `keycloakId` of the user's events).
    pub id: String,
    /// `username` (the processor sends it as `username`).
    pub username: String,
    /// `email`; `None`: a Keycloak user without one (the processor then omits `email`).
    pub email: Option<String>,
    /// `firstName`.
    pub first_name: String,
    /// `lastName`.
    pub last_name: String,
}

impl KeycloakUser {
    /// The admin API's `UserRepresentation` of this user (only fields Keycloak 16 has).
    pub fn representation(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "createdTimestamp": 1_750_000_000_000_u64,
            "username": self.username,
            "enabled": true,
            "totp": false,
            "emailVerified": self.email.is_some(),
            "firstName": self.first_name,
            "lastName": self.last_name,
            "disableableCredentialTypes": [],
            "requiredActions": [],
            "notBefore": 0,
            "access": {"manageGroupMembership": true, "view": true, "mapRoles": true,
                       "impersonate": false, "manage": true},
        });
        if let Some(e) = &self.email {
            v["email"] = json!(e);
        }
        v
    }
}

/// One request the stub answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRequest {
    /// Method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    users: HashMap<String, KeycloakUser>,
    groups: HashMap<String, String>,
    requests: Vec<StubRequest>,
}

/// The running stub. Stops when dropped.
pub struct KeycloakStub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

static SHARED: std::sync::OnceLock<std::result::Result<KeycloakStub, String>> =
    std::sync::OnceLock::new();

impl KeycloakStub {
    /// The stub shared by every processor of this test binary, started on first use.
    pub fn shared() -> Result<&'static KeycloakStub> {
        SHARED
            .get_or_init(|| KeycloakStub::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Unexpected(format!("starting the Keycloak stub: {e}")))
    }

    /// Binds 127.0.0.1 on a free port and serves on a thread of its own.
    pub fn start() -> Result<KeycloakStub> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::io("binding the Keycloak stub", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the stub address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the stub listener non-blocking", e))?;
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("building the stub's runtime", e))?;
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("keycloak-stub".into())
            .spawn(move || rt.block_on(serve(listener, st, rx)))
            .map_err(|e| Error::io("starting the stub thread", e))?;
        Ok(KeycloakStub {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: the processor's `KEYCLOAK_AUTH_SERVER_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A jwk-set-uri under the stub (reservation-be's dev profile needs one to start).
    pub fn jwk_set_uri(&self) -> String {
        format!(
            "{}/realms/{REALM}/protocol/openid-connect/certs",
            self.url()
        )
    }

    /// Registers (or replaces) a user.
    pub fn add_user(&self, user: KeycloakUser) {
        if let Ok(mut s) = self.state.lock() {
            s.users.insert(user.id.clone(), user);
        }
    }

    /// Forgets a user (lookups answer 404 from now on).
    pub fn remove_user(&self, id: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.users.remove(id);
        }
    }

    /// Registers a group (a reservation-be site: the processor reads its `name` as `siteName`).
    pub fn add_group(&self, id: &str, name: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.groups.insert(id.to_string(), name.to_string());
        }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for KeycloakStub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    shutdown: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    kube_harness::sink::serve_http1(listener, move |req| handle(req, state.clone()), async {
        let _ = shutdown.await;
    })
    .await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> std::result::Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    // The token request's form is read and ignored: any client and secret are accepted.
    let _ = body.collect().await?;
    let path = parts.uri.path().to_string();
    let (status, body) = match state.lock() {
        Ok(s) => answer(parts.method.as_str(), &path, &s),
        Err(_) => (500, json!({"error": "stub state poisoned"})),
    };
    if let Ok(mut s) = state.lock() {
        s.requests.push(StubRequest {
            method: parts.method.to_string(),
            path,
            status,
        });
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// What the stub answers to `method path`: (status, JSON body). Pure.
fn answer(method: &str, path: &str, s: &State) -> (u16, Value) {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, seg.as_slice()) {
        ("POST", ["realms", _, "protocol", "openid-connect", "token"]) => (
            200,
            json!({
                "access_token": "stub-access-token",
                "expires_in": 300,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }),
        ),
        ("GET", ["realms", _, "protocol", "openid-connect", "certs"]) => (200, json!({"keys": []})),
        ("GET", ["admin", "realms", _, "users", id]) => match s.users.get(*id) {
            Some(u) => (200, u.representation()),
            None => (404, json!({"error": "User not found"})),
        },
        ("GET", ["admin", "realms", _, "groups", id]) => match s.groups.get(*id) {
            Some(name) => (
                200,
                json!({"id": id, "name": name, "path": format!("/{name}"),
                       "attributes": {}, "realmRoles": [], "clientRoles": {}, "subGroups": []}),
            ),
            None => (404, json!({"error": "Could not find group by id"})),
        },
        _ => (404, json!({"error": "not served by the Keycloak stub"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State::default();
        s.users.insert(
            "u1".into(),
            KeycloakUser {
                id: "u1".into(),
                username: "s123456".into(),
                email: Some("s123456@studenti.polito.it".into()),
                first_name: "A".into(),
                last_name: "B".into(),
            },
        );
        s.groups.insert("g1".into(), "polito".into());
        s
    }

    #[test]
    fn answers_what_the_processor_asks() {
        let s = state();
        let (st, tok) = answer("POST", "/realms/r/protocol/openid-connect/token", &s);
        assert_eq!((st, tok["token_type"].as_str()), (200, Some("Bearer")));
        let (st, u) = answer("GET", "/admin/realms/r/users/u1", &s);
        assert_eq!(st, 200);
        assert_eq!(u["username"], "s123456");
        assert_eq!(u["email"], "s123456@studenti.polito.it");
        assert_eq!(answer("GET", "/admin/realms/r/users/nobody", &s).0, 404);
        let (st, g) = answer("GET", "/admin/realms/r/groups/g1", &s);
        assert_eq!((st, g["name"].as_str()), (200, Some("polito")));
        assert_eq!(answer("GET", "/admin/realms/r/groups/g2", &s).0, 404);
        assert_eq!(answer("GET", "/admin/realms/r/users", &s).0, 404);
    }

    #[test]
    fn a_user_without_email_has_no_email_field() {
        let u = KeycloakUser {
            id: "u2".into(),
            username: "x".into(),
            email: None,
            first_name: "A".into(),
            last_name: "B".into(),
        };
        assert!(u.representation().get("email").is_none());
    }
}
