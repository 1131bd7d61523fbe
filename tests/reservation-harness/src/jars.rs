//! What the tier needs on the machine, found once per test binary: the three jars
//! (`tools/build-reservation.sh`), a Java 17+ runtime and PostgreSQL's server binaries.
//!
//! ```text
//!  RESERVATION_BE_JAR / RESERVATION_EP_JAR / RESERVATION_EP_0115_JAR set? ── yes ─▶ use them
//!        │ no
//!        ▼
//!  tools/build-reservation.sh  (RESERVATION_SRC, default <repo>/../shared/third_party; builds a
//!        │                      copy into ~/.cache/bmh-webhook/reservation/<hash>/ once, then
//!        │                      answers at once; prints RESERVATION_*=... lines)
//!        ▼
//!  java -version ≥ 17, PG_BIN or /usr/lib/postgresql/<newest>/bin/{postgres,initdb,psql}
//! ```
//!
//! Missing pieces: outside CI the tier is skipped after ONE loud message ([`requirements`]
//! returns `Ok(None)`); under `CI=true` it is an error, so CI cannot pass without the tier (the
//! policy of `kube_harness::bmo_build`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Everything the tier needs, resolved.
#[derive(Debug, Clone)]
pub struct Requirements {
    /// reservation-be (1.9.5).
    pub backend_jar: PathBuf,
    /// reservation-event-processor 0.1.18 (one flat event per webhook).
    pub processor_0118_jar: PathBuf,
    /// reservation-event-processor 0.1.15 (the batch format, `events[]`).
    pub processor_0115_jar: PathBuf,
    /// The `java` launcher.
    pub java: PathBuf,
    /// PostgreSQL's bin directory (`postgres`, `initdb`, `psql`).
    pub pg_bin: PathBuf,
    /// The source folder the jars were built from (when the build script ran).
    pub source: Option<PathBuf>,
}

/// True when the environment says this is CI (`CI=true`): a missing piece then fails the run.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Repository root, from this crate's location at compile time.
pub fn repo_root() -> PathBuf {
    kube_harness::repo_root()
}

static RESOLVED: OnceLock<std::result::Result<Option<Requirements>, String>> = OnceLock::new();

/// The tier's requirements, resolved once per process. `Ok(None)`: skip (a loud message was
/// printed); `Err` under `CI=true`, or when an explicitly given jar path does not exist, or the
/// build failed.
pub fn requirements() -> Result<Option<&'static Requirements>> {
    match RESOLVED.get_or_init(resolve) {
        Ok(r) => Ok(r.as_ref()),
        Err(e) => Err(Error::Missing(e.clone())),
    }
}

fn resolve() -> std::result::Result<Option<Requirements>, String> {
    let java = match which("java") {
        Some(j) => j,
        None => return unavailable("java is not installed (Debian: openjdk-17-jdk-headless)"),
    };
    match java_major(&java) {
        Some(v) if v >= 17 => {}
        Some(v) => return unavailable(&format!("java is version {v}; 17 or later is needed")),
        None => return unavailable("`java -version` printed no version"),
    }
    let Some(pg_bin) = pg_bin() else {
        return unavailable(
            "no PostgreSQL server binaries (PG_BIN, or /usr/lib/postgresql/<version>/bin with \
             postgres, initdb and psql; Debian: postgresql)",
        );
    };
    let (jars, source) = match std::env::var_os("RESERVATION_BE_JAR") {
        Some(be) if !be.is_empty() => {
            let get = |k: &str| -> std::result::Result<PathBuf, String> {
                let p = PathBuf::from(std::env::var_os(k).unwrap_or_default());
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(format!("{k}={} is not a file", p.display()))
                }
            };
            let jars = [
                get("RESERVATION_BE_JAR")?,
                get("RESERVATION_EP_JAR")?,
                get("RESERVATION_EP_0115_JAR")?,
            ];
            let src = std::env::var_os("RESERVATION_SRC")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from);
            (jars, src)
        }
        Some(_) => {
            return unavailable(
                "RESERVATION_BE_JAR is set but empty (tools/bootstrap.sh found no reservation \
                 system sources)",
            );
        }
        None => match run_build_script()? {
            Some(v) => v,
            None => {
                return unavailable("tools/build-reservation.sh found no sources, Java or Maven");
            }
        },
    };
    let [backend_jar, processor_0118_jar, processor_0115_jar] = jars;
    Ok(Some(Requirements {
        backend_jar,
        processor_0118_jar,
        processor_0115_jar,
        java,
        pg_bin,
        source,
    }))
}

type Built = ([PathBuf; 3], Option<PathBuf>);

/// Runs `tools/build-reservation.sh` (it builds on first use and caches outside the repository)
/// and reads the paths it prints. `Ok(None)`: it printed empty values (nothing to build from).
fn run_build_script() -> std::result::Result<Option<Built>, String> {
    let out = kube_harness::run_tool("build-reservation.sh")?;
    if !out.status.success() {
        return Err(format!(
            "tools/build-reservation.sh failed ({})",
            out.status
        ));
    }
    let paths = [
        out.field("RESERVATION_BE_JAR"),
        out.field("RESERVATION_EP_JAR"),
        out.field("RESERVATION_EP_0115_JAR"),
    ];
    if paths.iter().any(String::is_empty) {
        return Ok(None);
    }
    let jars = paths.map(PathBuf::from);
    if let Some(missing) = jars.iter().find(|p| !p.is_file()) {
        return Err(format!(
            "tools/build-reservation.sh printed {}, which does not exist",
            missing.display()
        ));
    }
    let src = Some(out.field("RESERVATION_SRC"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(Some((jars, src)))
}

fn unavailable(why: &str) -> std::result::Result<Option<Requirements>, String> {
    if is_ci() {
        return Err(format!(
            "{why}; CI=true: the reservation tier must run in CI"
        ));
    }
    eprintln!(
        "\n################################################################################\n\
         ## reservation-harness: the real reservation system is NOT available:\n\
         ##   {why}\n\
         ## Every test of the reservation tier (reservation-be + event processor against the\n\
         ## filter, the sidecar and the real baremetal-operator) is SKIPPED.\n\
         ## Run tools/bootstrap.sh (or set RESERVATION_SRC and run tools/build-reservation.sh).\n\
         ################################################################################\n"
    );
    Ok(None)
}

/// `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The major version `java -version` reports (`17` for `openjdk version "17.0.15"`, `8` for
/// `1.8.0_392`).
fn java_major(java: &Path) -> Option<u32> {
    let out = Command::new(java).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    parse_java_major(&text)
}

/// The major version in `java -version` output.
pub fn parse_java_major(text: &str) -> Option<u32> {
    let quoted = text.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// PostgreSQL's bin directory: `PG_BIN` when set, else the newest
/// `/usr/lib/postgresql/<version>/bin` holding `postgres`, `initdb` and `psql` (Debian's layout).
pub fn pg_bin() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["postgres", "initdb", "psql"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("PG_BIN").filter(|v| !v.is_empty()) {
        let d = PathBuf::from(d);
        return complete(&d).then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions_old_and_new() {
        assert_eq!(
            parse_java_major("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"),
            Some(17)
        );
        assert_eq!(parse_java_major("java version \"1.8.0_392\""), Some(8));
        assert_eq!(
            parse_java_major("openjdk version \"23\" 2024-09-17"),
            Some(23)
        );
        assert_eq!(parse_java_major("no version here"), None);
    }
}
