//! Log setup shared by both binaries: `--log-format text|json` and the
//! filter from `OUTPOST_LOG` or `RUST_LOG`.
//!
//! `OUTPOST_LOG` is an alias of `RUST_LOG` (tracing-subscriber's
//! `EnvFilter` directives, e.g. `info,outpost_probe::scheduler=debug`);
//! when both are set and non-empty, `OUTPOST_LOG` wins. Neither set: `info`.
//! An invalid filter is reported on stderr and `info` is used instead, so a
//! typo cannot silence the logs of a running service.
//!
//! JSON is one object per line on stderr (`timestamp`, `level`, `target`,
//! `fields` with `message`, and the current span and its parents), for log
//! shippers that read JSON lines. With `[telemetry]` on, a line emitted
//! inside a traced check run is inside the scheduler's `run` span, so it
//! carries the run's ids as `span.trace_id` and `span.span_id` (the
//! exported trace and its `check` span; see [`crate::telemetry`]).

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter directives and the variable they came from: `OUTPOST_LOG`
/// if set and non-empty, else `RUST_LOG`, else `("info", None)`.
pub fn filter_source(
    outpost_log: Option<&str>,
    rust_log: Option<&str>,
) -> (String, Option<&'static str>) {
    let set = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(v) = set(outpost_log) {
        (v, Some("OUTPOST_LOG"))
    } else if let Some(v) = set(rust_log) {
        (v, Some("RUST_LOG"))
    } else {
        ("info".to_owned(), None)
    }
}

/// Installs the global subscriber writing to stderr; does nothing when one
/// is installed already (tests).
pub fn init(format: LogFormat) {
    let outpost = std::env::var("OUTPOST_LOG").ok();
    let rust = std::env::var("RUST_LOG").ok();
    let (directives, from) = filter_source(outpost.as_deref(), rust.as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!(
            "{}={directives:?} is not a valid log filter ({e}); using \"info\"",
            from.unwrap_or("log filter")
        );
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignored: a subscriber set before (a test harness) keeps its own.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpost_log_wins_over_rust_log_and_empty_means_unset() {
        assert_eq!(
            filter_source(Some("debug"), Some("warn")),
            ("debug".to_owned(), Some("OUTPOST_LOG"))
        );
        assert_eq!(
            filter_source(Some(" "), Some("warn")),
            ("warn".to_owned(), Some("RUST_LOG"))
        );
        assert_eq!(
            filter_source(None, Some("outpost_probe=trace")),
            ("outpost_probe=trace".to_owned(), Some("RUST_LOG"))
        );
        assert_eq!(filter_source(None, None), ("info".to_owned(), None));
    }
}
