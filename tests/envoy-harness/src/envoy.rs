//! A real Envoy as a subprocess: start on a rendered config, wait for `/ready`, read stats,
//! stop on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::EnvoyConfig;
use crate::{Error, Result, http};

/// How long Envoy may take to load the wasm module and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a tools/ script that prints a path on its last stdout line.
fn script_output(script: &str) -> Result<PathBuf> {
    let out = Command::new(workspace_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Missing(format!("cannot run {script}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), stdout.lines().last()) {
        (true, Some(line)) if !line.trim().is_empty() => Ok(PathBuf::from(line.trim())),
        _ => Err(Error::Missing(format!("{script} failed ({})", out.status))),
    }
}

fn existing(var: &str, path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing(format!(
            "{var}={} does not exist",
            path.display()
        )))
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else what `tools/envoy-venv.sh` installs. Never silently
/// absent: an error says what is missing.
pub fn envoy_bin() -> Result<PathBuf> {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) => existing("ENVOY_BIN", PathBuf::from(p)),
        None => existing(
            "ENVOY_BIN (from tools/envoy-venv.sh)",
            script_output("tools/envoy-venv.sh")?,
        ),
    }
}

/// The optimised filter artifact: `$FILTER_WASM`, else what `filter/build.sh` builds.
pub fn filter_wasm() -> Result<PathBuf> {
    match std::env::var_os("FILTER_WASM") {
        Some(p) => existing("FILTER_WASM", PathBuf::from(p)),
        None => existing(
            "FILTER_WASM (from filter/build.sh)",
            script_output("filter/build.sh")?,
        ),
    }
}

/// The filter artifact with JSON Schema support (`filter/build.sh` builds it next to the
/// default one): `$FILTER_WASM_JSONSCHEMA`, else `webhook_filter_jsonschema.wasm` beside
/// [`filter_wasm`].
pub fn filter_wasm_jsonschema() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FILTER_WASM_JSONSCHEMA") {
        return existing("FILTER_WASM_JSONSCHEMA", PathBuf::from(p));
    }
    let default = filter_wasm()?;
    existing(
        "webhook_filter_jsonschema.wasm next to FILTER_WASM (run filter/build.sh)",
        default.with_file_name("webhook_filter_jsonschema.wasm"),
    )
}

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Io("bind a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Io("read local address", e))
}

/// What [`Envoy::spawn`] needs beside the bootstrap.
struct Options<'a> {
    listener_port: u16,
    admin_port: u16,
    log_level: &'a str,
    component_log_level: &'a str,
    concurrency: u32,
}

/// A running Envoy; killed and reaped on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    listener: SocketAddr,
    admin: SocketAddr,
}

impl Envoy {
    /// Starts Envoy (`--concurrency 1 --use-dynamic-base-id`) on `config` with extra
    /// environment variables (the secrets), and waits until admin `/ready` answers `LIVE`.
    /// If Envoy exits (e.g. the filter refused its configuration) the error holds its log.
    pub fn start(config: &EnvoyConfig, env: &[(&str, &str)]) -> Result<Envoy> {
        Self::start_with(&envoy_bin()?, config, env, 1)
    }

    /// Like [`Envoy::start`] with an explicit binary and worker count.
    pub fn start_with(
        bin: &Path,
        config: &EnvoyConfig,
        env: &[(&str, &str)],
        concurrency: u32,
    ) -> Result<Envoy> {
        let options = Options {
            listener_port: config.listener_port,
            admin_port: config.admin_port,
            log_level: &config.log_level,
            component_log_level: &config.component_log_level,
            concurrency,
        };
        Self::spawn(bin, &config.render(), &options, env)
    }

    /// Starts Envoy on a bootstrap written by the caller (`yaml`, whose admin listens on
    /// 127.0.0.1:`admin_port` and whose main listener is 127.0.0.1:`listener_port`), for
    /// layouts [`EnvoyConfig`] does not render: dynamic filter configuration (ECDS), other code
    /// sources. Waits for `/ready` like [`Envoy::start`].
    pub fn start_bootstrap(
        yaml: &str,
        listener_port: u16,
        admin_port: u16,
        env: &[(&str, &str)],
    ) -> Result<Envoy> {
        let options = Options {
            listener_port,
            admin_port,
            log_level: "info",
            component_log_level: "",
            concurrency: 1,
        };
        Self::spawn(&envoy_bin()?, yaml, &options, env)
    }

    fn spawn(bin: &Path, yaml: &str, config: &Options<'_>, env: &[(&str, &str)]) -> Result<Envoy> {
        let concurrency = config.concurrency;
        let dir = std::env::temp_dir().join(format!(
            "envoy-harness-{}-{}",
            std::process::id(),
            config.listener_port
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io("create temp dir", e))?;
        let cfg_path = dir.join("envoy.yaml");
        std::fs::write(&cfg_path, yaml).map_err(|e| Error::Io("write config", e))?;
        let log = std::fs::File::create(dir.join("envoy.log"))
            .map_err(|e| Error::Io("create log file", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Io("clone log file", e))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&cfg_path)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--use-dynamic-base-id",
            ])
            .args(["-l", config.log_level, "--disable-hot-restart"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if !config.component_log_level.is_empty() {
            cmd.args(["--component-log-level", config.component_log_level]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| Error::Io("spawn envoy", e))?;
        let listener = SocketAddr::from(([127, 0, 0, 1], config.listener_port));
        let admin = SocketAddr::from(([127, 0, 0, 1], config.admin_port));
        let mut envoy = Envoy {
            child,
            dir,
            listener,
            admin,
        };
        envoy.wait_ready()?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::NotReady(format!(
                    "exited with {status}\n{}",
                    self.log_tail()
                )));
            }
            if http::get(self.admin, "/ready").is_ok_and(|r| r.status == 200)
                && self.listener_accepts()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::NotReady(format!("timeout\n{}", self.log_tail())))
    }

    fn listener_accepts(&self) -> bool {
        std::net::TcpStream::connect_timeout(&self.listener, Duration::from_secs(1)).is_ok()
    }

    /// Last lines of Envoy's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Listener address (loopback).
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// `http://127.0.0.1:<listener port>`.
    pub fn listener_url(&self) -> String {
        format!("http://{}", self.listener)
    }

    /// Admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The admin `/stats/prometheus` text.
    pub fn prometheus(&self) -> Result<String> {
        let r = http::get(self.admin, "/stats/prometheus")?;
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// The value of Envoy's own statistic `name` (counter or gauge, dotted name such as
    /// `http.webhook.downstream_cx_active`), from admin `/stats` (`None` if absent).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let r = http::get(self.admin, "/stats")?;
        let text = String::from_utf8_lossy(&r.body);
        Ok(text.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// The value of counter `name` in `/stats/prometheus` (`None` if absent).
    pub fn counter(&self, name: &str) -> Result<Option<u64>> {
        Ok(parse_counter(&self.prometheus()?, name))
    }

    /// The filter's `webhook_filter_requests_total{webhook, outcome}` sample (`webhook` `None`:
    /// the series of paths no webhook guards, which has no `webhook` label); `None` if absent.
    /// `outcome` is the label value (`accepted`, `invalid_signature`, ...).
    pub fn filter_requests(&self, webhook: Option<&str>, outcome: &str) -> Result<Option<u64>> {
        let text = self.prometheus()?;
        let mut labels = vec![("outcome", outcome)];
        if let Some(w) = webhook {
            labels.insert(0, ("webhook", w));
        }
        Ok(parse_sample(&text, FILTER_REQUESTS_METRIC, &labels))
    }
}

/// Value of the sample of `name` whose labels are exactly `labels` (in any order) in Prometheus
/// text, e.g. `webhook_filter_requests_total{webhook="github",outcome="accepted"} 3`;
/// `None` if there is no such series. Label values are compared unescaped only for plain text
/// (no `\\`, `"` or newline in them), which is all the filter's labels hold.
pub fn parse_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (got, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (inside, value) = r.split_once("} ")?;
                let mut got: Vec<String> = if inside.is_empty() {
                    Vec::new()
                } else {
                    inside.split(',').map(str::to_owned).collect()
                };
                got.sort();
                (got, value)
            }
            None => (Vec::new(), rest.strip_prefix(' ')?),
        };
        (got == want).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Sum of every sample of `name` that carries all of `labels` (others may be there too), e.g.
/// every webhook's `outcome="accepted"`; 0 if none.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (inside, value) = rest.split_once("} ")?;
            let got: Vec<&str> = inside.split(',').collect();
            want.iter()
                .all(|w| got.contains(&w.as_str()))
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Value of a label-less sample `name{} 12` or `name 12` in Prometheus text.
pub fn parse_counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix("{}").unwrap_or(rest);
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

impl Envoy {
    /// Kills Envoy at once (SIGKILL, like a crashed container) and waits for it to exit, which
    /// frees its ports; the value is then only good for dropping.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The filter's counter family (`webhook_core::metrics::REQUESTS_METRIC`; a test checks they
/// agree).
pub const FILTER_REQUESTS_METRIC: &str = "webhook_filter_requests_total";

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
