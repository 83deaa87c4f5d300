//! Logging set-up of `serve`: JSON lines for log collectors, or readable text on a terminal.

use std::io::IsTerminal;

/// Logs to standard error, filtered by `RUST_LOG` (default `info`). `format` is `LOG_FORMAT`:
/// `json` or `pretty`; without it, pretty on a terminal and JSON otherwise. A second call
/// (tests that start the app twice) keeps the first set-up.
pub fn init(format: Option<&str>) {
    init_at(format, "info");
}

/// [`init`] for a command that runs once (`refresh`): without `RUST_LOG`, only its warnings
/// and errors, as what it did is printed on standard output.
pub fn init_at(format: Option<&str>, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
