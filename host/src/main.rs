//! The `gale` command: `run`, `check`, `--version`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand};

use gale::access_log::AccessLog;
use gale::config::{self, Config, LogLevel, LogTarget};
use gale::pipeline::Site;
use gale::supervisor::{self, Rotation, Supervisor};
use gale::upstream;

#[derive(Parser)]
#[command(
    name = "gale",
    version,
    about = "A reverse proxy and load balancer for Tornado pools, with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve. Without --config, runs the built-in config: 127.0.0.1:8080 in
    /// front of 127.0.0.1:8000-8003.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file: prints OK, or every error as FILE:LINE:COL: message.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Rolling restart of an upstream's children in the running gale (found
    /// through the config's pid_file): one at a time, no request lost.
    Restart {
        /// The upstream whose `process` children are replaced.
        upstream: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the state of every supervised child of the running gale.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(config.as_deref()) {
            Ok(_) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Restart { upstream, config } => control(&config, Some(&upstream)),
        Command::Status { config } => control(&config, None),
        Command::Run { config } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gale: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `gale restart` / `gale status`: one command over the control socket.
fn control(path: &Path, restart: Option<&str>) -> ExitCode {
    let cfg = match load(Some(path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid_file) = &cfg.global.pid_file else {
        eprintln!(
            "gale: error: {}: set [global] pid_file: it is how this command finds the running gale",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    if let Some(name) = restart
        && !cfg.upstreams.iter().any(|u| u.name == name && u.process.is_some())
    {
        eprintln!(
            "gale: error: {}: no upstream `{name}` with a `process` section",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let command = restart.map_or_else(|| "status".to_owned(), |name| format!("restart {name}"));
    match supervisor::request(pid_file, &command, |line| println!("{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gale: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The supervisor's hook into a pool backend: in rotation only while its
/// child accepts; a fresh child starts with a clean health record and
/// without the idle connections to its predecessor.
struct PoolRotation(Arc<upstream::Backend>);

impl Rotation for PoolRotation {
    fn set_in_rotation(&self, on: bool) {
        if on && !self.0.in_rotation() {
            self.0.health.reset();
            self.0.conns.clear_idle();
        }
        self.0.set_in_rotation(on);
    }

    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
}

fn load(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None => config::parse("<built-in config>", config::DEFAULT_CONFIG, Path::new(".")),
    }
}

fn init_logging(target: &LogTarget, level: LogLevel) -> anyhow::Result<()> {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_target(false);
    match target {
        LogTarget::Off => {}
        LogTarget::Stdout => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        LogTarget::Stderr => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        LogTarget::File(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open error_log {}", path.display()))?;
            builder.with_ansi(false).with_writer(Mutex::new(file)).init();
        }
    }
    Ok(())
}

fn run(cfg: Config) -> anyhow::Result<()> {
    init_logging(&cfg.global.error_log, cfg.global.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.global.threads)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let access_log = AccessLog::open(&cfg.global.access_log, cfg.global.access_log_format)
            .with_context(|| format!("cannot open access_log {:?}", cfg.global.access_log))?;
        let pid_file = cfg.global.pid_file.clone();
        let site = Arc::new(Site::new(cfg, access_log));
        let listeners = gale::server::bind(&site)?;
        // Children start after the ports are ours and before they accept.
        let children = Supervisor::start(&site.config, |u, i| {
            Arc::new(PoolRotation(site.upstreams[u].backends[i].clone())) as Arc<dyn Rotation>
        })
        .await?;
        let addrs: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        if let Some(pid) = &pid_file {
            write_pid(pid)?;
        }
        let _control = match &pid_file {
            Some(pid) if !children.is_empty() => Some(children.listen_control(pid)?),
            _ => None,
        };
        let shutdown = gale::shutdown::watch_signals().context("cannot install signal handlers")?;
        site.access_log.spawn_flusher(std::time::Duration::from_secs(1));
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "gale: listening on {}", addrs.join(" "))?;
            out.flush()?;
        }
        tracing::info!("gale {} listening on {}", env!("CARGO_PKG_VERSION"), addrs.join(" "));
        gale::server::serve(site, listeners, shutdown).await;
        // Client requests have drained: now the children may go.
        children.shutdown().await;
        if let Some(pid) = &pid_file {
            let _ = std::fs::remove_file(pid);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Connections still open after shutdown_timeout are dropped here.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

fn write_pid(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write pid_file {}", path.display()))
}
