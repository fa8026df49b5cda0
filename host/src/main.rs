//! The `gale` command: `run`, `check`, `reload`, `upgrade`, `restart`, `status`, `import`, `--version`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Subcommand};

use gale::config::{self, Config, LogLevel, LogTarget};
use gale::plugin::{PluginRuntime, RuntimeOptions};
use gale::plugin_runner::cli as plugin_cli;
use gale::site::Site;
use gale::supervised;
use gale::supervisor;

// mimalloc: fewer cycles per request than glibc malloc for the many small,
// short-lived allocations of a proxy (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser)]
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
        /// Also resolve every upstream server given by DNS name: one that
        /// does not resolve is an error (without it, `gale run` starts and
        /// keeps asking).
        #[arg(long)]
        strict: bool,
        /// Also print what was loaded: servers with their listeners and
        /// names, locations with their kind, plugins with their worlds,
        /// upstreams.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Validate a config file, then tell the running gale (pid_file) to
    /// reload it (SIGHUP). The running gale keeps its old config on any error.
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Rolling restart of an upstream's `process` children in the running
    /// gale (found through the config's pid_file): one at a time, no request
    /// lost. Prints each step as it happens; exits 1 if a new child fails to start.
    Restart {
        /// The upstream whose children are replaced.
        upstream: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Replace the running gale (found through the config's pid_file) by the
    /// gale binary on disk, without refusing a connection: the new one takes
    /// over the listening sockets, then the old one drains and exits. Exits 1
    /// if the new binary fails to start or to become ready; the running gale
    /// then serves on.
    Upgrade {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the state of every supervised child of the running gale.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Translate an nginx configuration into a gale config, with a report of
    /// every directive's fate (docs/migrating-from-nginx.md).
    Import(gale::import::ImportArgs),
    /// Plugin tools.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List the plugins of a plugin directory: name, file, size, the world
    /// each component exports, what its hooks declare under its default
    /// config (NAME.toml beside it). Exits 1 when a component is refused
    /// (listed with the reason), 2 when the directory cannot be read.
    List {
        #[command(flatten)]
        from: PluginDirArg,
    },
    /// Print the server, location, tenant and plugin chain (file, on_error,
    /// config) a request for HOST and PATH gets. Exits 1 if a plugin of the
    /// chain cannot be found or loaded, or rejects its config.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// The request's host (a Host header value; the port is ignored).
        #[arg(long)]
        host: String,
        /// The request path (a query is ignored).
        #[arg(long)]
        path: String,
        /// Consider only this listener (default: the first whose server
        /// names match HOST, else the first).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin without a server, under the limits `gale run` applies
    /// by default, and print what it decides: a header policy on one
    /// request (and optionally one backend response), a cache policy on
    /// the file the request names, an upload-fields policy on the parts
    /// given. Exits 0, 1 when a hook fails (trap, time or memory limit,
    /// invalid answer) or reads an undeclared input (--check-inputs), 2
    /// when it cannot run (bad arguments, plugin not found or of no gale
    /// world, config rejected).
    Call {
        /// A plugin name in --plugin-dir, or a path to a .wasm file.
        plugin: String,
        #[command(flatten)]
        from: PluginDirArg,
        /// The plugin's config, as TOML: `{ deny = [...] }` or `deny = [...]`
        /// (merged over `<name>.toml` beside the plugin, like an
        /// attachment's `config`).
        #[arg(long)]
        config: Option<String>,
        /// The request line: METHOD /path[?query].
        #[arg(long, default_value = "GET /")]
        request: String,
        /// A header, `Name: value`; repeatable. Given after --response, it
        /// is a response header.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// A backend response status; on-response then runs on it (with
        /// the -H given after this flag as its headers).
        #[arg(long)]
        response: Option<String>,
        /// The client's address (`$remote_addr`, `$remote_port`).
        #[arg(long, default_value = "127.0.0.1:40000")]
        remote: std::net::SocketAddr,
        /// Also call each hook that declared its inputs with the whole
        /// request, and report an input it reads but did not declare.
        #[arg(long)]
        check_inputs: bool,
        #[command(flatten)]
        parts: Box<plugin_cli::PartsArgs>,
    },
    /// Run a plugin (of any world) on every case of a cases file (see
    /// docs/plugins.md, "Running a plugin locally"); prints a diff per
    /// failing case. Exits 0 when every case passes, 1 when one fails, 2
    /// when it cannot run (bad cases file, plugin not found, ...).
    Test {
        /// A plugin name in --plugin-dir, or a path to a .wasm file.
        plugin: String,
        #[command(flatten)]
        from: PluginDirArg,
        /// The cases file.
        #[arg(long, default_value = "cases.toml")]
        cases: PathBuf,
        /// Also call each hook that declared its inputs with the whole
        /// request, and fail a case whose answer then differs.
        #[arg(long)]
        check_inputs: bool,
    },
    /// Build a plugin crate into its component (cargo, release,
    /// wasm32-wasip2) and check it as `gale run` will load it: the one gale
    /// world it exports, what it declares with its default config
    /// (NAME.toml), its size. Exits 1 when cargo fails or the component is
    /// refused, 2 when there is nothing to build.
    Build {
        /// The plugin crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Copy the component (as NAME.wasm) and NAME.toml into this plugin
        /// directory.
        #[arg(long)]
        install: Option<PathBuf>,
    },
    /// Create a plugin crate on the SDK crate gale-plugin: Cargo.toml,
    /// src/lib.rs (a worked example with unit tests), NAME.toml, README.md
    /// (see docs/plugins.md, "Starting a plugin"). It builds as it is, outside
    /// gale's sources. Exits 2, creating nothing, for a bad NAME, an unknown
    /// world, a non-empty DIR or a missing SDK.
    New {
        /// The crate's (and plugin's) name: a lower-case ASCII letter, then
        /// letters, digits, `-`, `_`.
        name: String,
        /// header-policy, cache-policy or upload-fields.
        #[arg(long)]
        world: String,
        /// Where to create the crate (default: ./NAME); must not exist or
        /// be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK crate's folder, which the crate depends on by path
        /// (default: plugins/gale-plugin in the sources gale was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct PluginDirArg {
    /// Where plugins are looked up by name (default: `plugins`, as
    /// `[global] plugin_dir`).
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    gale::heap::use_small_pages();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Check { config, strict, verbose } => {
            match load(config.as_deref()).map_err(|e| e.to_string()).and_then(|cfg| {
                let file = config.as_deref().map_or("<built-in config>".into(), |p| p.display().to_string());
                check_plugins(&cfg, &file)?;
                if strict {
                    check_names(&cfg, &file, config.as_deref())?;
                }
                if verbose {
                    print!("{}", gale::check_report::report(&cfg)?);
                }
                Ok(())
            }) {
                Ok(()) => {
                    println!("OK");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Command::Import(args) => gale::import::run(args),
        Command::Restart { upstream, config } => control(&config, Control::Restart(&upstream)),
        Command::Status { config } => control(&config, Control::Status),
        Command::Upgrade { config } => control(&config, Control::Upgrade),
        Command::Plugins { command: PluginsCommand::Explain { config, host, path, listen, json } } => {
            explain(&config, &host, &path, listen, json)
        }
        Command::Plugins {
            command:
                PluginsCommand::Call { plugin, from, config, request, headers, response, remote, check_inputs, parts },
        } => {
            // -H after --response names a response header: clap keeps
            // each value's position on the command line.
            let call = matches.subcommand_matches("plugins").and_then(|m| m.subcommand_matches("call"));
            let response_at = call.and_then(|m| m.index_of("response"));
            let positions: Vec<usize> =
                call.and_then(|m| m.indices_of("headers")).map(Iterator::collect).unwrap_or_default();
            let (mut request_headers, mut response_headers) = (Vec::new(), Vec::new());
            for (i, h) in headers.into_iter().enumerate() {
                match (response_at, positions.get(i)) {
                    (Some(r), Some(&at)) if at > r => response_headers.push(h),
                    _ => request_headers.push(h),
                }
            }
            let args = plugin_cli::CallArgs {
                plugin,
                plugin_dir: from.plugin_dir,
                config,
                request,
                request_headers,
                response,
                response_headers,
                remote,
                check_inputs,
                parts,
            };
            plugin_cli::call(args)
        }
        Command::Plugins { command: PluginsCommand::Test { plugin, from, cases, check_inputs } } => {
            plugin_cli::test(&plugin, from.plugin_dir, &cases, check_inputs)
        }
        Command::Plugins { command: PluginsCommand::List { from } } => gale::plugin_list::run(from.plugin_dir),
        Command::Plugins { command: PluginsCommand::Build { dir, install } } => {
            gale::plugin_build::run(&gale::plugin_build::BuildArgs { dir, install })
        }
        Command::Plugins { command: PluginsCommand::New { name, world, dir, sdk } } => {
            gale::plugin_new::run(gale::plugin_new::NewArgs { name, world, dir, sdk })
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

/// `gale plugins explain`.
fn explain(path: &Path, host: &str, target: &str, listen: Option<std::net::SocketAddr>, json: bool) -> ExitCode {
    let cfg = match load(Some(path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match gale::explain::explain(&cfg, listen, host, target) {
        Ok(mut e) => {
            // Each plugin found is loaded so that its `configure` judges
            // its config, as at startup.
            let configured = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async {
                        e.configure(&plugin_runtime(&cfg)?).await;
                        anyhow::Ok(())
                    })
                });
            if let Err(error) = configured {
                eprintln!("gale: error: {error:#}");
                return ExitCode::FAILURE;
            }
            if json {
                println!("{:#}", e.to_json());
            } else {
                print!("{}", e.to_text());
            }
            if e.all_resolved() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("gale: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command for the running gale's control socket.
enum Control<'a> {
    Restart(&'a str),
    Status,
    Upgrade,
}

/// `gale restart` / `gale status` / `gale upgrade`: one command over the control socket.
fn control(path: &Path, command: Control<'_>) -> ExitCode {
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
    if let Control::Restart(name) = command
        && !cfg.upstreams.iter().any(|u| u.name == name && u.process.is_some())
    {
        eprintln!("gale: error: {}: no upstream `{name}` with a `process` section", path.display());
        return ExitCode::FAILURE;
    }
    let (line, what) = match command {
        Control::Restart(name) => (format!("restart {name}"), ""),
        Control::Status => ("status".to_owned(), ""),
        Control::Upgrade => ("upgrade".to_owned(), "upgrade failed, the running gale serves on: "),
    };
    match supervisor::request(pid_file, &line, |line| println!("{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gale: error: {what}{e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    gale::daemon::load(path)
}

fn init_logging(target: &LogTarget, level: LogLevel) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, filter::LevelFilter, fmt};
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    // Warnings and errors also go to the status page's recent errors,
    // whatever the log level and target.
    let recent = gale::recent_errors::Layer.with_filter(LevelFilter::WARN);
    let registry = tracing_subscriber::registry().with(recent);
    let layer = fmt::layer().with_target(false);
    match target {
        LogTarget::Off => registry.init(),
        LogTarget::Stdout => registry
            .with(layer.with_ansi(std::io::stdout().is_terminal()).with_writer(std::io::stdout).with_filter(level))
            .init(),
        LogTarget::Stderr => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).with_filter(level))
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
            registry.with(layer.with_ansi(false).with_writer(Mutex::new(file)).with_filter(level)).init();
        }
    }
    Ok(())
}

fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging(&cfg.global.error_log, cfg.global.log_level)?;
    // One thread (nginx's `worker_processes 1`) runs a single-threaded
    // scheduler: no work stealing, no cross-thread wake-ups.
    let runtime = if cfg.global.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.global.threads).enable_all().build()
    }
    .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let signals = gale::signals::watch().context("cannot install signal handlers")?;
        // Started by an upgrade: the old gale's listening sockets, to accept on instead of binding.
        let inherited = gale::upgrade::inherit()?;
        let plugins = plugin_runtime(&cfg)?;
        let site = Site::build(cfg, None, &plugins).await?;
        // Supervised backends start before the listeners accept; each is in
        // rotation once its port accepts. After an upgrade, the old gale's
        // children serve until this gale replaces them.
        let handover = inherited.as_ref().and_then(|i| i.handover(&site.config));
        let children = supervised::start(&site, handover.as_ref()).await?;
        let served = gale::daemon::serve(site, signals, &children, plugins, path, inherited).await;
        // Client requests have drained (or gale never served): the children go now.
        children.shutdown().await;
        served
    })?;
    // Connections still open after shutdown_timeout are dropped here.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
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

/// `gale check --strict`: every upstream server name must resolve now.
fn check_names(cfg: &Config, file: &str, path: Option<&Path>) -> Result<(), String> {
    if cfg.upstreams.iter().all(|u| u.named.is_empty()) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let text = path.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let errors = rt.block_on(gale::upstream::unresolved(cfg, file, &text));
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}
