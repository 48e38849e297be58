//! The `authwatch` command line: run the daemon, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use authwatch::app::App;
use authwatch::config::Config;
use authwatch::server::{self, Server};
use authwatch::web::{Authenticator, WebConfig};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Outside the exporters' range 9100–9999, which the Prometheus default-port allocations page
/// lists as full; neither that page nor IANA's registry (`/etc/services`) names 19868.
pub const DEFAULT_LISTEN: &str = ":19868";

/// `--version` as every Prometheus component prints it.
fn version_block() -> String {
    format!(
        "authwatch, version {} (branch: {}, revision: {})\n  build user:       {}\n  build date:       {}\n  rustc version:    {}\n  platform:         {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("AUTHWATCH_BRANCH"),
        env!("AUTHWATCH_REVISION"),
        env!("AUTHWATCH_BUILD_USER"),
        env!("AUTHWATCH_BUILD_DATE"),
        env!("AUTHWATCH_RUSTC_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

#[derive(Debug, Parser)]
#[command(
    name = "authwatch",
    disable_version_flag = true,
    about = "Probes what Clerk authentication depends on and exports Prometheus metrics."
)]
struct Cli {
    /// Print version information and exit.
    #[arg(long, global = true)]
    version: bool,
    /// Configuration file (YAML). Without it the embedded default config is used.
    #[arg(long = "config.file", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Address to serve /metrics on; ":19868" means every interface.
    #[arg(long = "web.listen-address", global = true, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// Web configuration (exporter-toolkit format): TLS certificate and basic-auth users.
    #[arg(long = "web.config.file", global = true, value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Let `/probe` target any host, not only those in probe_allowlist.
    #[arg(long = "probe.allow-any-target", global = true)]
    allow_any_target: bool,
    /// Connections served at once; a full table closes its oldest idle connection for a new
    /// one, and answers 503 when all are busy.
    #[arg(long = "web.max-connections", global = true, default_value_t = authwatch::limits::Limits::defaults().0, value_name = "N")]
    max_connections: usize,
    /// `/probe` runs at once; beyond it a request gets 429.
    #[arg(long = "probe.max-concurrent", global = true, default_value_t = authwatch::limits::Limits::defaults().1, value_name = "N")]
    max_probe_runs: usize,
    /// Log level.
    #[arg(long = "log.level", global = true, default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    log_level: String,
    /// Log format: logfmt (as Prometheus components write it; `text` is an alias) or json.
    #[arg(long = "log.format", global = true, default_value = "logfmt", value_parser = ["logfmt", "text", "json"])]
    log_format: String,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        global = true,
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,
    /// The URL under which authwatch is reached from outside (behind a reverse proxy); its path
    /// is the default route prefix.
    #[arg(long = "web.external-url", global = true, value_name = "URL")]
    external_url: Option<String>,
    /// Prefix of every endpoint; defaults to the path of --web.external-url.
    #[arg(long = "web.route-prefix", global = true, value_name = "PATH")]
    route_prefix: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration file and exit (non-zero with file:line:column on error).
    CheckConfig,
}

/// Go-style `:port` means every interface, as in other Prometheus exporters.
fn listen_address(s: &str) -> String {
    match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    }
}

/// What the configuration leaves unwatched of the user's Clerk instance and API.
fn coverage_gaps(c: &Config) -> Vec<String> {
    authwatch::diagnosis::coverage_evidence(authwatch::diagnosis::coverage_of(c.probes.iter()))
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

fn check_config(cli: &Cli) -> ExitCode {
    if let Some(web) = &cli.web_config_file
        && let Err(e) = WebConfig::load(web)
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match Config::load(cli.config_file.as_deref()) {
        Ok(c) => {
            // A generated config of thousands of probes would print one line of megabytes.
            const LISTED: usize = 20;
            let mut names: Vec<&str> = c
                .probes
                .iter()
                .take(LISTED)
                .map(|p| p.name.as_str())
                .collect();
            let more = c.probes.len().saturating_sub(LISTED);
            let more = format!("… and {more} more");
            if c.probes.len() > LISTED {
                names.push(&more);
            }
            println!(
                "{}: OK, {} probes: {}",
                c.source,
                c.probes.len(),
                names.join(", ")
            );
            for gap in coverage_gaps(&c) {
                eprintln!("{}: warning: not watched: {gap}", c.source);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let paths = server::Paths::new(
        cli.route_prefix.as_deref(),
        cli.external_url.as_deref(),
        &cli.telemetry_path,
    )
    .map_err(anyhow::Error::msg)?;
    let config = Config::load(cli.config_file.as_deref())?;
    let web = match &cli.web_config_file {
        Some(p) => WebConfig::load(p)?,
        None => WebConfig::default(),
    };
    let listener = server::bind(&listen_address(&cli.listen), web.tls.is_some())
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = env!("AUTHWATCH_REVISION"),
        config = %config.source,
        probes = config.probes.len(),
        "starting authwatch"
    );
    for gap in coverage_gaps(&config) {
        tracing::warn!(gap = %gap, "not watched");
    }
    let fd_limit = authwatch::limits::raise_fd_limit();
    let (limits, cut) =
        authwatch::limits::Limits::plan(fd_limit, cli.max_connections, cli.max_probe_runs);
    if let Some(cut) = cut {
        tracing::warn!("{cut}");
    }
    tracing::info!(
        fd_limit,
        max_connections = limits.connections,
        max_probe_runs = limits.probe_runs,
        "limits"
    );
    let app = App::start(config, cli.config_file.clone());
    let srv = Arc::new(Server::new(
        app.clone(),
        Authenticator::new(web.users),
        web.tls.map(TlsAcceptor::from),
        cli.allow_any_target,
        limits,
        paths,
    ));
    let serving = tokio::spawn(server::serve(listener, srv));
    let reloader = tokio::spawn(reload_on_hangup(app.clone()));
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.shutdown();
    serving.abort();
    reloader.abort();
    Ok(())
}

/// SIGHUP reloads the configuration, as in every Prometheus component.
async fn reload_on_hangup(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        // The result is logged by reload itself.
        let _ = app.reload();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        print!("{}", version_block());
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return check_config(&cli);
    }
    authwatch::logging::init(&cli.log_level, &cli.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Blocking work (bounded file reads, bcrypt two at a time) needs few threads; tokio's
    // default of 512 would let a flood of requests spawn hundreds.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(32)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authwatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, through the log, in the format the operator chose.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
