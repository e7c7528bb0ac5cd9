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
    /// Override one config key after the file and the OUTPOST_* variables,
    /// e.g. `--set server.grpc_listen=0.0.0.0:7443` or `--set store.retention='"30d"'`
    /// (a TOML value; anything else is a string). Repeatable; the last wins;
    /// kept for SIGHUP reloads.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
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
    /// Print the JSON Schema of controller.toml, for editors; the same as
    /// deploy/schema/controller.schema.json.
    Schema,
    /// Read a password on stdin (one line) and print its argon2id PHC string
    /// for `[[auth.users]] password_hash`.
    HashPassword,
    /// Print a new random API token and its argon2id PHC string for
    /// `[[auth.tokens]] hash`; the token is shown once, keep it in a secret store.
    GenerateToken,
    /// The probe CA for per-probe client certificates (`[server] probe_ca`).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Probe identities: enroll (one-time token) and revoke.
    Probe {
        #[command(subcommand)]
        command: ProbeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Write a new probe CA (ECDSA P-256, 10 years) as DIR/ca.pem and
    /// DIR/ca.key (0600, in a 0700 directory); refuses to overwrite one.
    Init {
        /// Directory for ca.pem and ca.key.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ProbeCommand {
    /// Print a one-time enrollment token for probe NAME (stored hashed;
    /// redeemable once on any replica sharing the store).
    Enroll {
        /// The probe's `[[probes]] name`.
        name: String,
        /// The probe's `[[probes]] region` (must match the config).
        #[arg(long)]
        region: String,
        /// Path of controller.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// How long the token stays usable, e.g. "1h", "30m".
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Revoke every client certificate of probe NAME and its unused
    /// enrollment tokens (its next connection is refused).
    Revoke {
        /// The probe's name.
        name: String,
        /// Path of controller.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
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

async fn run(config_path: PathBuf, sets: &[String]) -> ExitCode {
    let config = match config::load_with(&config_path, sets) {
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

fn check_config(file: PathBuf, sets: &[String]) -> ExitCode {
    match config::load_with(&file, sets) {
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

fn ca_init(dir: &std::path::Path) -> ExitCode {
    match outpost_controller::identity::init_ca(dir, time::OffsetDateTime::now_utc()) {
        Ok(files) => {
            println!("cert_file = {:?}", files.cert_file.display().to_string());
            println!("key_file = {:?}", files.key_file.display().to_string());
            eprintln!(
                "put these in [server] probe_ca = {{ cert_file = …, key_file = … }} on every replica; keep the key 0600"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn probe_enroll(name: &str, region: &str, path: &std::path::Path, ttl: &str) -> ExitCode {
    use outpost_controller::identity;
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let ttl = match outpost_probe::config::duration::parse_duration(ttl) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!("error: --ttl {ttl:?} is not a duration such as \"1h\" or \"30m\"");
            return exit(ConfigError::EXIT_CODE);
        }
    };
    if config.probe_ca.is_none() {
        eprintln!(
            "error: {} has no [server] probe_ca: create one with `outpost-controller ca init --dir DIR` first",
            path.display()
        );
        return exit(ConfigError::EXIT_CODE);
    }
    match config.probe(name) {
        Some(p) if p.region == region => {}
        Some(p) => {
            eprintln!(
                "error: probe {name:?} is in region {:?} in {}, not {region:?}",
                p.region,
                path.display()
            );
            return exit(ConfigError::EXIT_CODE);
        }
        None => {
            eprintln!(
                "error: no [[probes]] entry named {name:?} in {}: add it (token is optional with probe_ca) and reload first",
                path.display()
            );
            return exit(ConfigError::EXIT_CODE);
        }
    }
    let result = async {
        let store = outpost_controller::store::Store::connect(&config.store).await?;
        let now = outpost_probe::clock::Clock::system().unix_ms();
        let token = identity::new_enrollment(&store, name, region, now, ttl).await?;
        store.close().await;
        anyhow::Ok(token)
    }
    .await;
    match result {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "one-time enrollment token for probe {name:?}, valid {}: give it to the probe as [controller] enrollment_token (or `outpost-probe enroll --token`); it is not shown again",
                outpost_probe::config::Dur(ttl)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn probe_revoke(name: &str, path: &std::path::Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let result = async {
        let store = outpost_controller::store::Store::connect(&config.store).await?;
        let now = outpost_probe::clock::Clock::system().unix_ms();
        let n = store.revoke_probe(name, now).await?;
        store.close().await;
        anyhow::Ok(n)
    }
    .await;
    match result {
        Ok(n) => {
            println!("revoked {n} certificate(s) of probe {name:?}");
            if config.probe(name).is_some_and(|p| p.token.is_some()) {
                eprintln!(
                    "probe {name:?} still has a bearer token in [[probes]]: remove or rotate it too to lock it out"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(file, &cli.set),
        Command::Schema => {
            print!("{}", config::schema::render());
            ExitCode::SUCCESS
        }
        Command::HashPassword => hash_password(),
        Command::GenerateToken => generate_token(),
        Command::Ca {
            command: CaCommand::Init { dir },
        } => ca_init(&dir),
        Command::Probe {
            command:
                ProbeCommand::Enroll {
                    name,
                    region,
                    config,
                    ttl,
                },
        } => probe_enroll(&name, &region, &config, &ttl).await,
        Command::Probe {
            command: ProbeCommand::Revoke { name, config },
        } => probe_revoke(&name, &config).await,
        Command::Run { config } => {
            outpost_probe::logging::init(cli.log_format);
            run(config, &cli.set).await
        }
    }
}
