//! reservation-event-processor as a child process: 0.1.18 (one flat event per webhook) or 0.1.15
//! (one batch per user, `events[]`), reading the database of its reservation-be.
//!
//! ```text
//!  java -Dfile.encoding=UTF-8 -jar reservation-event-processor-<v>.jar --event.processor.rate=<ms>
//!     SPRING_PROFILES_ACTIVE=pro,postgres   DB_URL DB_USER DB_PASSWORD SERVER_PORT
//!     KEYCLOAK_AUTH_SERVER_URL=<stub> KEYCLOAK_REALM KEYCLOAK_CLIENT_ID KEYCLOAK_CLIENT_SECRET
//!  ready = GET /actuator/health 200
//!
//!  every <rate> ms, two jobs (a pool of 2 scheduler threads):
//!    START: events with startNotifiedAt NULL and now ≤ start ≤ now+5 min → POST to each relevant
//!           webhook; startNotifiedAt = now (committed, even if the POST failed)
//!    END:   events with endNotifiedAt NULL and now−1 min ≤ end ≤ now → POST; the transaction is
//!           read-only, so endNotifiedAt is never written
//! ```
//!
//! What the shorter rate of a test means (production: 60 000 ms): START arrives at the first
//! tick after a booking enters the 5-minute window, i.e. up to 5 minutes *before* the start
//! (within one tick of creating a booking that starts sooner). END is re-sent on *every* tick
//! while the end lies in the last minute: with 10 000 ms that is about six ENDs per reservation
//! (with 60 000 ms, one — or two or none, by scheduler jitter). A client must answer duplicates
//! like the first. Deliveries run synchronously inside the job, without timeouts, and are never
//! retried.
//!
//! The processor's `ddl-auto: update` (profile `pro`) would create tables of its own on an empty
//! database: [`crate::ReservationSystem`] starts it only after reservation-be made the schema.
//! Never run two processors on one database: every event would be sent twice.
//!
//! Its log is the only record of what it sent and what it was answered (it writes no
//! `webhook_logs` rows): [`Processor::deliveries`] reads it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::JsonClient;
use crate::jars::Requirements;
use crate::keycloak::{CLIENT_ID, CLIENT_SECRET, REALM};
use crate::postgres::{Postgres, SUPERUSER};
use crate::process::{Service, temp_dir};

/// How long the processor may take to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The scheduler rate the harness gives the processor unless told otherwise
/// (`RESERVATION_EP_RATE_MS` overrides it).
pub const DEFAULT_RATE: Duration = Duration::from_secs(10);

/// The DEBUG line the START job logs on every tick.
pub const TICK_LINE: &str = "Checking for events starting between";

/// Which processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessorVersion {
    /// 0.1.18 (2025-07-03, the real system's current one): one flat JSON object per event and
    /// webhook, `webhookId` a number.
    Flat0118,
    /// 0.1.15 (2025-06-14): the batch format, every event of one user in one poll in `events[]`,
    /// sent to every webhook relevant to any of them; `webhookId` a string.
    Batch0115,
}

impl ProcessorVersion {
    /// `0.1.18` / `0.1.15`.
    pub fn version(self) -> &'static str {
        match self {
            ProcessorVersion::Flat0118 => "0.1.18",
            ProcessorVersion::Batch0115 => "0.1.15",
        }
    }

    /// Its jar.
    pub fn jar(self, req: &Requirements) -> &Path {
        match self {
            ProcessorVersion::Flat0118 => &req.processor_0118_jar,
            ProcessorVersion::Batch0115 => &req.processor_0115_jar,
        }
    }
}

impl std::fmt::Display for ProcessorVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reservation-event-processor {}", self.version())
    }
}

/// The scheduler rate: `RESERVATION_EP_RATE_MS` when set, else [`DEFAULT_RATE`].
pub fn rate_from_env() -> Duration {
    std::env::var("RESERVATION_EP_RATE_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms >= 1000)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_RATE)
}

/// A running processor.
pub struct Processor {
    version: ProcessorVersion,
    service: Service,
    port: u16,
    rate: Duration,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Processor {
    /// Starts processor `version` on database `db` of `pg` (whose schema reservation-be made),
    /// asking the Keycloak at `keycloak_url`, ticking every `rate`; waits until it is ready.
    pub async fn start(
        req: &Requirements,
        version: ProcessorVersion,
        pg: &Postgres,
        db: &str,
        keycloak_url: &str,
        rate: Duration,
    ) -> Result<Processor> {
        let dir = temp_dir(&format!("reservation-ep-{}", version.version()))?;
        let port = envoy_harness::free_port()?;
        let (java, jar, cwd) = (
            req.java.clone(),
            version.jar(req).to_path_buf(),
            dir.path().to_path_buf(),
        );
        let (db_url, keycloak_url) = (pg.jdbc_url(db), keycloak_url.to_string());
        let rate_ms = rate.as_millis().to_string();
        let command = move || {
            let mut cmd = Command::new(&java);
            cmd.args(crate::backend::JVM_OPTIONS)
                .arg("-jar")
                .arg(&jar)
                .arg(format!("--event.processor.rate={rate_ms}"))
                .arg("--server.address=127.0.0.1")
                .arg("--spring.datasource.hikari.maximum-pool-size=4")
                // Profile `pro` logs the processor at INFO; DEBUG adds each tick and the 0.1.15
                // batch bodies (0.1.18 logs its bodies at INFO). Only logging changes.
                .arg("--logging.level.it.polito.cloudresources.eventprocessor=DEBUG")
                .env("SPRING_PROFILES_ACTIVE", "pro,postgres")
                .env("DB_URL", &db_url)
                .env("DB_USER", SUPERUSER)
                .env("DB_PASSWORD", "unused")
                .env("SERVER_PORT", port.to_string())
                .env("KEYCLOAK_AUTH_SERVER_URL", &keycloak_url)
                .env("KEYCLOAK_REALM", REALM)
                .env("KEYCLOAK_CLIENT_ID", CLIENT_ID)
                .env("KEYCLOAK_CLIENT_SECRET", CLIENT_SECRET)
                .env("TZ", "UTC")
                .current_dir(&cwd);
            cmd
        };
        let log = dir.path().join("reservation-event-processor.log");
        let service = Service::spawn(
            format!("reservation-event-processor {}", version.version()),
            command(),
            &log,
            dir.path(),
            Duration::from_secs(10),
        )?;
        let mut p = Processor {
            version,
            service,
            port,
            rate,
            command: Box::new(command),
            dir,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = JsonClient::new(format!("http://127.0.0.1:{}", self.port));
        let start = Instant::now();
        loop {
            self.service.check_alive()?;
            if let Ok(a) = client.get("/actuator/health").await
                && a.status == 200
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!(
                        "{} health on port {}; log tail:\n{}",
                        self.version,
                        self.port,
                        self.service.log_tail()
                    ),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Which processor this is.
    pub fn version(&self) -> ProcessorVersion {
        self.version
    }

    /// Its scheduler rate.
    pub fn rate(&self) -> Duration {
        self.rate
    }

    /// Kills it at once (SIGKILL: a crashed or evicted pod; nothing is sent any more).
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        self.service.is_running()
    }

    /// Starts it again after [`Processor::kill`] (same port, database, log) and waits until it
    /// is ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.service.respawn((self.command)())?;
        self.wait_ready().await
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.service.log_path()).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }

    /// Its temp dir.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// How many scheduler ticks it logged (the START job's DEBUG line of every tick).
    pub fn ticks(&self) -> usize {
        self.log().matches(TICK_LINE).count()
    }

    /// Waits (bounded) for the next tick: bookings made right after it are all found by the
    /// same later poll.
    pub async fn wait_tick(&self, timeout: Duration) -> Result<()> {
        let before = self.ticks();
        let start = Instant::now();
        while self.ticks() == before {
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: format!("a tick of {}; log tail:\n{}", self.version, self.log_tail()),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Every delivery it logged, in order (see [`parse_deliveries`]).
    pub fn deliveries(&self) -> Vec<Delivery> {
        parse_deliveries(&self.log())
    }
}

/// One POST the processor logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook's name.
    pub webhook: String,
    /// `EVENT_START` or `EVENT_END`.
    pub event_type: String,
    /// Events in it (1 for the flat format).
    pub events: usize,
    /// The JSON body as logged (flat: INFO; batch: DEBUG).
    pub body: Option<String>,
    /// The answer, once logged.
    pub outcome: Option<Outcome>,
}

/// What a delivery came to, as the processor logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx (the status as logged, e.g. `200 OK`).
    Sent(String),
    /// An exception: a non-2xx answer (`401 Unauthorized: "…"`), a refused connection, ...
    Failed(String),
}

impl Delivery {
    /// True once it was answered 2xx.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Sent(_)))
    }
}

/// The thread of a Spring Boot console log line (`... --- [app] [thread] logger : msg`: the last
/// bracket before ` : `) and its message.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let (head, msg) = line.split_once(" : ")?;
    let open = head.rfind('[')?;
    let close = head[open..].find(']')? + open;
    Some((head[open + 1..close].trim(), msg))
}

/// The text between the first `'` and the next one, and what follows.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let a = s.find('\'')?;
    let rest = &s[a + 1..];
    let b = rest.find('\'')?;
    Some((&rest[..b], &rest[b + 1..]))
}

/// Deliveries in a processor log (both versions' messages from `WebhookNotifierService`):
///
/// - flat: `Sending webhook 'W' for event type T to URL: U with body: B`, then
///   `Webhook 'W' sent successfully for event ID I. Status: S` or
///   `Failed to send webhook 'W' for event ID I: M`;
/// - batch: `Batch payload JSON for webhook W: B` (DEBUG, which the harness turns on),
///   `Sending batch webhook 'W' for event type T with N events to URL: U`, then
///   `Batch webhook 'W' sent successfully for N events. Status: S` or
///   `Failed to send batch webhook 'W' for N events: M`.
///
/// An answer belongs to the last unanswered delivery of the same webhook on the same scheduler
/// thread (the two jobs run on two threads).
pub fn parse_deliveries(log: &str) -> Vec<Delivery> {
    let mut out: Vec<(String, Delivery)> = Vec::new();
    let mut batch_body: Vec<(String, String, String)> = Vec::new();
    let answer = |out: &mut Vec<(String, Delivery)>, thread: &str, name: &str, o: Outcome| {
        if let Some((_, d)) = out
            .iter_mut()
            .rev()
            .find(|(t, d)| t == thread && d.webhook == name && d.outcome.is_none())
        {
            d.outcome = Some(o);
        }
    };
    // `" for event type EVENT_START ..."` after the webhook's quoted name.
    let event_type_of = |rest: &str| -> String {
        rest.strip_prefix(" for event type ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_owned()
    };
    for line in log.lines() {
        let Some((thread, msg)) = split_line(line) else {
            continue;
        };
        if let Some(rest) = msg.strip_prefix("Batch payload JSON for webhook ") {
            if let Some((name, body)) = rest.split_once(": ") {
                batch_body.push((thread.into(), name.into(), body.into()));
            }
        } else if let Some(rest) = msg.strip_prefix("Sending batch webhook ") {
            let Some((name, rest)) = quoted(rest) else {
                continue;
            };
            let event_type = event_type_of(rest);
            let events = rest
                .split(" with ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = batch_body
                .iter()
                .rposition(|(t, n, _)| t == thread && n == name)
                .map(|i| batch_body.remove(i).2);
            out.push((
                thread.into(),
                Delivery {
                    webhook: name.into(),
                    event_type,
                    events,
                    body,
                    outcome: None,
                },
            ));
        } else if let Some(rest) = msg.strip_prefix("Sending webhook ") {
            let Some((name, rest)) = quoted(rest) else {
                continue;
            };
            let event_type = event_type_of(rest);
            let body = rest.split_once(" with body: ").map(|(_, b)| b.to_string());
            out.push((
                thread.into(),
                Delivery {
                    webhook: name.into(),
                    event_type,
                    events: 1,
                    body,
                    outcome: None,
                },
            ));
        } else if let Some(rest) = msg
            .strip_prefix("Webhook ")
            .or_else(|| msg.strip_prefix("Batch webhook "))
        {
            if let Some((name, rest)) = quoted(rest)
                && rest.starts_with(" sent successfully")
            {
                let status = rest.rsplit("Status: ").next().unwrap_or_default();
                answer(&mut out, thread, name, Outcome::Sent(status.trim().into()));
            }
        } else if let Some(rest) = msg
            .strip_prefix("Failed to send webhook ")
            .or_else(|| msg.strip_prefix("Failed to send batch webhook "))
            && let Some((name, rest)) = quoted(rest)
        {
            let why = rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest);
            answer(&mut out, thread, name, Outcome::Failed(why.trim().into()));
        }
    }
    out.into_iter().map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = "\
2026-12-01T10:00:00.123Z  INFO 7 --- [reservation-event-processor] [event-processor-task-1] i.p.c.e.service.WebhookNotifierService   : Sending webhook 'scn-a' for event type EVENT_START to URL: http://127.0.0.1:1/webhook with body: {\"eventType\":\"EVENT_START\",\"eventId\":\"4\"}
2026-12-01T10:00:00.200Z  INFO 7 --- [reservation-event-processor] [event-processor-task-2] i.p.c.e.service.WebhookNotifierService   : Sending webhook 'scn-a' for event type EVENT_END to URL: http://127.0.0.1:1/webhook with body: {\"eventType\":\"EVENT_END\"}
2026-12-01T10:00:00.300Z ERROR 7 --- [reservation-event-processor] [event-processor-task-1] i.p.c.e.service.WebhookNotifierService   : Failed to send webhook 'scn-a' for event ID 4: 401 Unauthorized: \"{\"error\":\"x\"}\"
2026-12-01T10:00:00.400Z  INFO 7 --- [reservation-event-processor] [event-processor-task-2] i.p.c.e.service.WebhookNotifierService   : Webhook 'scn-a' sent successfully for event ID 4. Status: 200 OK
";

    #[test]
    fn flat_deliveries_and_their_answers() {
        let d = parse_deliveries(FLAT);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].webhook, "scn-a");
        assert_eq!(d[0].event_type, "EVENT_START");
        assert_eq!(
            d[0].body.as_deref(),
            Some("{\"eventType\":\"EVENT_START\",\"eventId\":\"4\"}")
        );
        assert_eq!(
            d[0].outcome,
            Some(Outcome::Failed(
                "401 Unauthorized: \"{\"error\":\"x\"}\"".into()
            ))
        );
        assert_eq!(d[1].event_type, "EVENT_END");
        assert!(d[1].succeeded());
    }

    #[test]
    fn batch_deliveries_take_the_debug_body() {
        let log = "\
x DEBUG 7 --- [ep] [event-processor-task-1] i.p.c.e.s.WebhookNotifierService : Batch payload JSON for webhook scn-b: {\"eventCount\":2}
x  INFO 7 --- [ep] [event-processor-task-1] i.p.c.e.s.WebhookNotifierService : Sending batch webhook 'scn-b' for event type EVENT_START with 2 events to URL: http://x/webhook
x  INFO 7 --- [ep] [event-processor-task-1] i.p.c.e.s.WebhookNotifierService : Batch webhook 'scn-b' sent successfully for 2 events. Status: 200 OK
";
        let d = parse_deliveries(log);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].events, 2);
        assert_eq!(d[0].body.as_deref(), Some("{\"eventCount\":2}"));
        assert_eq!(d[0].outcome, Some(Outcome::Sent("200 OK".into())));
    }
}
