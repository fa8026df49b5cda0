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
        LogTarget::Stdout => builder.with_ansi(std::io::stdout().is_terminal()).with_writer(std::io::stdout).init(),
        LogTarget::Stderr => builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init(),
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
        let addrs: Vec<String> =
            listeners.iter().filter_map(|b| b.listener.local_addr().ok()).map(|a| a.to_string()).collect();
        site.set_bound_addrs(listeners.iter().filter_map(|b| b.listener.local_addr().ok()).collect());
        if let Some(pid) = &pid_file {
            write_pid(pid)?;
        }
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
