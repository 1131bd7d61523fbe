//! Child processes the way the rest of the bench runs them (`kube-harness`'s apiserver and BMO):
//! stdout and stderr into one log file, a bounded wait until the process serves, the last lines
//! of its log in every error, stopped on drop, and a watchdog process that kills it when the test
//! binary dies without dropping it (a shared instance in a `static`, a killed test run).
//!
//! ```text
//!   Service::spawn(cmd, log) ─▶ child (pid written to <dir>/pids)
//!                              watchdog: sh polling the test process once a second; when it is
//!                              gone: kill -9 every pid in <dir>/pids, rm -rf <dir>
//!   drop / stop ─▶ SIGTERM, up to `grace` to exit, then SIGKILL; reaped; watchdog killed
//! ```
//!
//! A watchdog process is used instead of `PR_SET_PDEATHSIG` for the reason `kube-harness` gives:
//! the death signal follows the spawning *thread*, and test and tokio threads come and go.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

/// Lines of a log shown in error messages.
const TAIL_LINES: usize = 40;

/// The last [`TAIL_LINES`] lines of `path` (for failure messages).
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A running child process with its log, its watchdog and its name for messages.
pub struct Service {
    name: String,
    child: Option<Child>,
    watchdog: Option<Child>,
    log: PathBuf,
    pids: PathBuf,
    /// How long SIGTERM may take before SIGKILL.
    grace: Duration,
}

impl Service {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `log`, records its pid in
    /// `<dir>/pids` and starts the watchdog that kills it (and removes `dir`) when the test
    /// binary dies. `grace`: how long a stop waits after SIGTERM before SIGKILL.
    pub fn spawn(
        name: impl Into<String>,
        cmd: Command,
        log: &Path,
        dir: &Path,
        grace: Duration,
    ) -> Result<Service> {
        let name = name.into();
        let child = spawn_appending(cmd, log, &format!("starting {name}"))?;
        let pids = dir.join(format!("pids-{}", child.id()));
        fs::write(&pids, child.id().to_string())
            .map_err(|e| Error::io(format!("writing {}", pids.display()), e))?;
        let watchdog = spawn_watchdog(&pids, dir)?;
        Ok(Service {
            name,
            child: Some(child),
            watchdog: Some(watchdog),
            log: log.to_path_buf(),
            pids,
            grace,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Fails with the log tail when the process has exited (or was stopped).
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Unexpected(format!("{} is stopped", self.name)));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::ProcessExited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(e) => Err(Error::io(format!("checking {}", self.name), e)),
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.check_alive().is_ok()
    }

    /// Stops the process: SIGTERM, up to the grace period to exit, then SIGKILL; reaped. The
    /// watchdog stays (it has nothing left to kill). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, self.grace);
        }
        let _ = fs::write(&self.pids, "");
    }

    /// Kills the process at once (SIGKILL, like a crashed pod) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::write(&self.pids, "");
    }

    /// Replaces a stopped process by a new one (same log, appended; same watchdog dir).
    pub fn respawn(&mut self, cmd: Command) -> Result<()> {
        self.stop();
        let child = spawn_appending(cmd, &self.log, &format!("starting {} again", self.name))?;
        fs::write(&self.pids, child.id().to_string())
            .map_err(|e| Error::io(format!("writing {}", self.pids.display()), e))?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Starts `cmd` with stdin closed and stdout/stderr appended to `log`; `what` names the start in
/// an error.
fn spawn_appending(mut cmd: Command, log: &Path, what: &str) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("duplicating a log handle", e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.spawn().map_err(|e| Error::io(what.to_owned(), e))
}

/// SIGTERM (through `kill`, no libc), wait up to `grace`, then SIGKILL; always reaped.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `kube_harness::spawn_watchdog`: SIGKILLs every pid in `pids_file` and removes `dir` once
/// this test process is gone (`dir` kept under `RESERVATION_HARNESS_KEEP`, for the logs).
pub(crate) fn spawn_watchdog(pids_file: &Path, dir: &Path) -> Result<Child> {
    let keep = std::env::var_os("RESERVATION_HARNESS_KEEP").is_some();
    Ok(kube_harness::spawn_watchdog(
        pids_file,
        (!keep).then_some(dir),
    )?)
}

/// A temp dir `<prefix>-XXXX` that the caller keeps for the life of its processes; kept after
/// drop when `RESERVATION_HARNESS_KEEP` is set (to read the logs of a run).
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let mut d = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .map_err(|e| Error::io("creating a temp dir", e))?;
    if std::env::var_os("RESERVATION_HARNESS_KEEP").is_some() {
        d.disable_cleanup(true);
    }
    Ok(d)
}
