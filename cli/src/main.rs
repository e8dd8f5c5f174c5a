//! The `rollcall` command: the CLI and the daemon around the facade library.

mod api;
mod auth;
mod dns;
mod errors;
mod fanout;
mod health;
mod logging;
mod reload;
mod scrape;
mod serve;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rollcall::config::Config;
use rollcall::{Health, Roster, SourceStatus};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "rollcall",
    version,
    about = "Find every peer of a cluster and keep one deduplicated, current roster."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Discover, print the roster, exit.
    Peers {
        /// Configuration file (TOML); without it, only `ROLLCALL__...` variables configure rollcall.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Longest wait for every source's first sync ("2s", "500ms").
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Print the roster JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The daemon: run the sources and serve the HTTP API until SIGINT/SIGTERM.
    Run {
        /// Configuration file (TOML); without it, only `ROLLCALL__...` variables configure rollcall.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Listen address of the HTTP API (overrides `[api] listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Follow the roster live: a table marking joins, changes and leaves, or JSON lines.
    Watch {
        /// Run the sources of this config file here.
        #[arg(short, long, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// Follow a running `rollcall run` instead, e.g. http://127.0.0.1:7373.
        #[arg(long)]
        url: Option<String>,
        /// Bearer token for `--url` (or ROLLCALL_TOKEN).
        #[arg(long, env = "ROLLCALL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// One JSON event per line instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Announce [local] through the configured sources until SIGINT/SIGTERM, then say goodbye.
    Agent {
        /// Configuration file (TOML); without it, only `ROLLCALL__...` variables configure rollcall.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Measure discovery completeness per backend on real infrastructure.
    Compare {
        /// Scenario file (TOML), e.g. examples/scenarios/local-nats.toml.
        #[arg(long)]
        scenario: PathBuf,
        /// Write the result JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot of found agents over time here.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Validate configuration files; exit non-zero with a clear message on the first error.
    CheckConfig {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Peers { .. } | Command::CheckConfig { .. } | Command::Watch { .. } => "warn",
        Command::Agent { .. } | Command::Compare { .. } | Command::Run { .. } => "info",
    };
    logging::init(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Peers { config, wait, json } => peers(config.as_deref(), wait, json).await,
            Command::Agent { config } => agent(config.as_deref()).await,
            Command::Run { config, listen } => run(config.as_deref(), listen).await,
            Command::CheckConfig { files } => check_config(&files),
            Command::Watch {
                config,
                url,
                token,
                json,
            } => {
                let feed = match url {
                    Some(u) => watch::Feed::Url(u, token),
                    None => watch::Feed::Config(Box::new(load(config.as_deref())?)),
                };
                watch::run(feed, json).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Compare {
                scenario,
                json,
                plot,
            } => rollcall_compare::run(rollcall_compare::CompareOpts {
                scenario,
                json,
                plot,
            })
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() }),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Serialize)]
struct PeersOutput<'a> {
    version: u64,
    peers: &'a [std::sync::Arc<rollcall::Peer>],
    sources: &'a [SourceStatus],
}

fn load(path: Option<&std::path::Path>) -> Result<Config, rollcall::config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::from_toml_str("(environment)", "", None),
    }
}

async fn peers(path: Option<&std::path::Path>, wait: Duration, json: bool) -> CliResult {
    let cfg = load(path)?;
    let registry = rollcall::discover(&cfg)?;
    let all_done = registry.wait_first_sync(wait).await;
    let roster = registry.snapshot();
    let sources = registry.sources();
    registry.shutdown().await;
    if json {
        let out = PeersOutput {
            version: roster.version,
            peers: &roster.peers,
            sources: &sources,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&roster);
    }
    // A failing source is never hidden: say so on stderr, whatever the format.
    for s in &sources {
        match s.health {
            Health::Degraded => eprintln!(
                "warning: source `{}` is degraded: {}",
                s.name,
                s.last_error.as_deref().unwrap_or("unknown reason")
            ),
            Health::Starting => eprintln!(
                "warning: source `{}` did not finish its first sync within {}",
                s.name,
                humantime::format_duration(wait)
            ),
            Health::Ok => {}
        }
    }
    if !all_done {
        tracing::debug!("returned at --wait before every source synced");
    }
    // An empty roster from sources that never worked is not an answer.
    let primaries: Vec<_> = sources.iter().filter(|s| s.role == "primary").collect();
    if !primaries.is_empty() && primaries.iter().all(|s| !s.synced) {
        eprintln!("error: no primary source ever synced; the roster is not the truth:");
        for s in &primaries {
            eprintln!(
                "  source `{}`: {}",
                s.name,
                s.last_error.as_deref().unwrap_or("no sync before --wait")
            );
        }
        return Ok(ExitCode::from(EXIT_NEVER_SYNCED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `rollcall peers` exit code when no primary source completed a sync.
const EXIT_NEVER_SYNCED: u8 = 3;

fn print_table(roster: &Roster) {
    let rows: Vec<[String; 5]> = roster
        .peers
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                p.status.clone().unwrap_or_else(|| "-".into()),
                if p.addrs.is_empty() {
                    "-".into()
                } else {
                    p.addrs.join(" ")
                },
                p.sources
                    .iter()
                    .map(|s| &*s.name)
                    .collect::<Vec<_>>()
                    .join(","),
                if p.capabilities.is_empty() {
                    "-".into()
                } else {
                    p.capabilities.join(",")
                },
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "ADDRESSES", "SOURCES", "CAPABILITIES"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    println!(
        "{} peers, roster version {}",
        roster.peers.len(),
        roster.version
    );
}

async fn agent(path: Option<&std::path::Path>) -> CliResult {
    let cfg = load(path)?;
    let (registry, local) = rollcall::announce(&cfg)?;
    let stop = registry.shutdown_token();
    let health = match cfg.local.as_ref().and_then(|l| l.health_listen) {
        Some(listen) => {
            let (bound, task) = health::serve_health(listen, &local, stop.child_token()).await?;
            tracing::info!(%bound, "serving GET /health");
            Some(task)
        }
        None => None,
    };
    tracing::info!(id = %local.id, aliases = ?local.aliases, addrs = ?local.addrs, "announcing");
    wait_for_signal().await;
    tracing::info!("stopping: saying goodbye");
    registry.shutdown().await;
    if let Some(t) = health {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(path: Option<&std::path::Path>, listen: Option<std::net::SocketAddr>) -> CliResult {
    let cfg = load(path)?;
    // The recorder must be installed before the registry emits anything.
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let token = auth::load_token(&cfg.api)?;
    let tls = serve::tls_config(&cfg.api)?;
    let registry = rollcall::discover(&cfg)?;
    let listen = listen.unwrap_or(cfg.api.listen);
    if token.is_none() && serve::beyond_loopback(&listen) {
        tracing::warn!(%listen, "the HTTP API listens beyond loopback without a token: anyone who can reach it reads the roster; set [api] token_file or token_env");
    }
    let render = scrape::render(handle, registry.clone());
    let app = serve::app(registry.clone(), Some(render), token);
    let (bound, api) = serve::serve(
        listen,
        app,
        tls.clone(),
        registry.shutdown_token().child_token(),
    )
    .await?;
    tracing::info!(%bound, tls = tls.is_some(), sources = cfg.enabled_sources().count(), "rollcall running; HTTP API up");
    let dns = match &cfg.dns {
        Some(d) => {
            let (bound, task) =
                dns::serve(d, registry.clone(), registry.shutdown_token().child_token()).await?;
            tracing::info!(%bound, domain = %d.domain, "serving the roster over DNS (UDP and TCP)");
            Some(task)
        }
        None => None,
    };
    let reloads = match path {
        Some(p) => {
            let reloader = reload::Reloader::new(p, registry.clone())?;
            Some(tokio::spawn(
                reloader.run(registry.shutdown_token().child_token()),
            ))
        }
        None => None,
    };
    // A registry failure (its merge task panicked) stops the daemon too.
    let failed = registry.shutdown_token();
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = failed.cancelled() => {}
    }
    tracing::info!("stopping");
    registry.shutdown().await;
    if let Some(d) = dns {
        let _ = d.await;
    }
    if let Some(r) = reloads {
        let _ = r.await;
    }
    let _ = api.await;
    if let Some(why) = registry.failure() {
        eprintln!("error: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
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

fn check_config(files: &[PathBuf]) -> CliResult {
    for f in files {
        let cfg = Config::load(f)?;
        rollcall::builder(&cfg)?;
        let names: Vec<String> = cfg
            .sources
            .iter()
            .map(|s| {
                format!(
                    "{} ({}{})",
                    s.name,
                    s.type_name(),
                    if s.common.enabled { "" } else { ", disabled" }
                )
            })
            .collect();
        println!(
            "ok: {} — {} source(s): {}",
            f.display(),
            names.len(),
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
