//! Logging set-up of `serve`: JSON lines for log collectors, or readable text on a terminal.

use std::io::IsTerminal;

/// Logs to standard error, filtered by `RUST_LOG` (default `info`). `format` is `LOG_FORMAT`:
/// `json` or `pretty`; without it, pretty on a terminal and JSON otherwise. A second call
/// (tests that start the app twice) keeps the first set-up.
pub fn init(format: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
