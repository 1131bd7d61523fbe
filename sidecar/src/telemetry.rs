//! JSON logs via tracing-subscriber; the level comes from `LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

/// Maps the replaced service's level names (DEBUG, INFO, WARNING, ERROR, CRITICAL) to tracing
/// filter directives; anything else is passed through as a directive (e.g. `bmh_sidecar=debug`).
pub fn directive(level: &str) -> String {
    match level.trim().to_ascii_uppercase().as_str() {
        "" | "INFO" => "info".into(),
        "DEBUG" => "debug".into(),
        "TRACE" => "trace".into(),
        "WARNING" | "WARN" => "warn".into(),
        "ERROR" | "CRITICAL" | "FATAL" => "error".into(),
        _ => level.trim().to_owned(),
    }
}

/// Installs the global JSON subscriber (once; later calls are ignored).
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(directive(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_level_names() {
        assert_eq!(directive("WARNING"), "warn");
        assert_eq!(directive("debug"), "debug");
        assert_eq!(directive("CRITICAL"), "error");
        assert_eq!(directive("bmh_sidecar=debug"), "bmh_sidecar=debug");
    }
}
