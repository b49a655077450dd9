//! Telemetry: logging setup (`tracing`, human-readable by default or JSON lines
//! with `--log-format=json`), the Prometheus metric families ([`metrics`]) and the
//! audit-log sink ([`audit`]).
//!
//! Must not know HTTP: the `api` module serves `/metrics` from
//! [`Metrics::render`] and builds [`AuditEvent`]s. May use only `clock` and
//! `wellknown` from this crate.

use tracing_subscriber::EnvFilter;

pub(crate) mod audit;
pub(crate) mod metrics;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber, writing to stderr. The level comes from
/// `TOKENWARDEN_LOG` (an `EnvFilter` directive such as `debug` or
/// `tokenwarden=debug`), `info` by default.
pub(crate) fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("TOKENWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
