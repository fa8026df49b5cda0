//! The `gale` command: `run`, `check`, `--version`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use clap::{Parser, Subcommand};

use gale::config::{self, Config, LogLevel, LogTarget};
use gale::plugin::{PluginRuntime, RuntimeOptions};
use gale::server::Running;
use gale::site::Site;

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
    /// Validate a config file, then tell the running gale (pid_file) to
    /// reload it (SIGHUP). The running gale keeps its old config on any error.
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(config.as_deref()).map_err(|e| e.to_string()).and_then(|cfg| {
            check_plugins(&cfg, &config.as_deref().map_or("<built-in config>".into(), |p| p.display().to_string()))
        }) {
            Ok(()) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Reload { config } => {
            let cfg = match load(Some(&config)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(pid_file) = cfg.global.pid_file else {
                eprintln!("gale: error: {}: reload needs [global] pid_file to find the running gale", config.display());
                return ExitCode::FAILURE;
            };
            match gale::signals::send_reload(&pid_file) {
                Ok(pid) => {
                    println!("sent SIGHUP to gale (pid {pid})");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gale: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match run(cfg, config) {
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

fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging(&cfg.global.error_log, cfg.global.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.global.threads)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let mut signals = gale::signals::watch().context("cannot install signal handlers")?;
        let pid_file = cfg.global.pid_file.clone();
        let admin = cfg.admin;
        let plugins = plugin_runtime(&cfg)?;
        let site = Site::build(cfg, None, &plugins).await?;
        let running = Running::start(site, signals.shutdown.clone())?;
        if let Some(addr) = admin {
            let listener = gale::admin::bind(addr).await.with_context(|| format!("cannot listen on {addr} (admin)"))?;
            let bound = listener.local_addr()?;
            tokio::spawn(gale::admin::serve(listener, running.clone()));
            tracing::info!("admin endpoints on http://{bound}/metrics and /status");
            announce(&format!("gale: admin on {bound}"))?;
        }
        if let Some(pid) = &pid_file {
            write_pid(pid)?;
        }
        let addrs: Vec<String> = running.bound_addrs().iter().map(|a| a.to_string()).collect();
        announce(&format!("gale: listening on {}", addrs.join(" ")))?;
        tracing::info!("gale {} listening on {}", env!("CARGO_PKG_VERSION"), addrs.join(" "));

        let reloader = running.clone();
        tokio::spawn(async move {
            while signals.reload.recv().await.is_some() {
                reload(&reloader, &plugins, path.as_deref()).await;
            }
        });
        running.wait().await;
        if let Some(pid) = &pid_file {
            let _ = std::fs::remove_file(pid);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Connections still open after shutdown_timeout are dropped here.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

/// One line on stdout for whoever started gale (tests read the ports here).
fn announce(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Re-reads the config and swaps it in; on any error the old one stays.
async fn reload(running: &std::sync::Arc<Running>, plugins: &PluginRuntime, path: Option<&Path>) {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, keeping the old config:\n{e}");
            return;
        }
    };
    let old = running.current();
    let site = match Site::build(cfg, Some(&old), plugins).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("reload failed, keeping the old config: {e}");
            return;
        }
    };
    match running.reload(site) {
        Ok(()) => {
            tracing::info!(
                "reloaded; listening on {}",
                running.bound_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
            );
        }
        Err(e) => tracing::error!("reload failed, keeping the old config: {e}"),
    }
}

/// The process-wide plugin runtime (engine, compile cache, epoch ticker).
fn plugin_runtime(cfg: &Config) -> anyhow::Result<PluginRuntime> {
    let options = RuntimeOptions { cache_dir: Some(cfg.global.plugin_cache_dir.clone()), ..RuntimeOptions::default() };
    PluginRuntime::new(options).context("cannot start the plugin runtime")
}

/// `gale check`: every attached plugin must exist, be a component of the
/// right world, and accept its config.
fn check_plugins(cfg: &Config, file: &str) -> Result<(), String> {
    if cfg.servers.iter().all(|s| s.locations.iter().all(|l| l.plugins.is_empty())) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let plugins = plugin_runtime(cfg).map_err(|e| format!("gale: error: {e:#}"))?;
        match gale::site::load_plugins(cfg, &plugins).await {
            Ok(_) => Ok(()),
            Err(errors) => Err(errors.iter().map(|e| format!("{file}:{e}")).collect::<Vec<_>>().join("\n")),
        }
    })
}

fn write_pid(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write pid_file {}", path.display()))
}
