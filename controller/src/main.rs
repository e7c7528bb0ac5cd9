//! `outpost-controller`: CLI and exit codes; wiring only.
//!
//! Exit codes: 0 clean, 78 config error (printed to stderr with key paths),
//! 1 runtime failure.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use outpost_controller::config;
use outpost_probe::{config::ConfigError, logging::LogFormat};

/// Outpost controller: gRPC ingest, store, alerting, dashboard.
#[derive(Debug, Parser)]
#[command(name = "outpost-controller", version, about)]
struct Cli {
    /// Log line format on stderr. The filter comes from OUTPOST_LOG, or
    /// RUST_LOG when OUTPOST_LOG is unset (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run {
        /// Path of controller.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file without touching the network; exit 78 on problems.
    CheckConfig {
        /// Path of controller.toml.
        file: PathBuf,
    },
    /// Read a password on stdin (one line) and print its argon2id PHC string
    /// for `[[auth.users]] password_hash`.
    HashPassword,
    /// Print a new random API token and its argon2id PHC string for
    /// `[[auth.tokens]] hash`; the token is shown once, keep it in a secret store.
    GenerateToken,
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprint!("{e}");
    exit(ConfigError::EXIT_CODE)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

async fn run(config_path: PathBuf) -> ExitCode {
    let config = match config::load(&config_path) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    match outpost_controller::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "controller failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: PathBuf) -> ExitCode {
    match config::load(&file) {
        Ok(c) => {
            println!(
                "ok: {} probes, {} checks, {} sinks",
                c.probes.len(),
                c.checks.len(),
                c.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e),
    }
}

fn hash_password() -> ExitCode {
    use outpost_controller::auth::password;
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let secret = line.strip_suffix('\n').unwrap_or(&line);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.chars().count() < password::MIN_PASSWORD_CHARS {
        eprintln!(
            "error: the password has {} characters; use at least {} (e.g. four random words)",
            secret.chars().count(),
            password::MIN_PASSWORD_CHARS
        );
        return exit(ConfigError::EXIT_CODE);
    }
    match password::hash(secret.as_bytes()) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate_token() -> ExitCode {
    match outpost_controller::auth::password::generate_token() {
        Ok((token, phc)) => {
            println!("token: {token}");
            println!("hash:  {phc}");
            eprintln!(
                "put the hash in [[auth.tokens]] hash = \"…\"; give the token to the client (sent as `Authorization: Bearer <token>`); it is not shown again"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(file),
        Command::HashPassword => hash_password(),
        Command::GenerateToken => generate_token(),
        Command::Run { config } => {
            outpost_probe::logging::init(cli.log_format);
            run(config).await
        }
    }
}
