//! `outpost-controller demo` (owned by the integrator; placeholder until filled in).

/// Arguments of `outpost-controller demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Exit after this long and print a summary, e.g. `20s`.
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Address for the dashboard and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

/// Runs the demo. Returns the process exit code.
pub async fn run(_args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::bail!("demo not built yet")
}
