//! `gale run` once the config is loaded and the supervised children run:
//! the listeners (bound, or handed over by an upgrade), the admin listener,
//! the pid file and control socket, systemd's READY=1, and the loops that
//! answer signals: reload (SIGHUP, or a changed file with `watch_config`),
//! upgrade (SIGUSR2), stop (the stop
//! sequence in `lifecycle.rs`). Returns once the drain is over.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::{self, Config};
use crate::plugin::PluginRuntime;
use crate::server::Running;
use crate::site::Site;
use crate::supervised;
use crate::supervisor::{self, Supervisor};

/// The config file at `path`, or the built-in one.
pub fn load(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None => config::parse("<built-in config>", config::DEFAULT_CONFIG, Path::new(".")),
    }
}

/// Serves `site` until the drain after a stop (or an upgrade) is over.
pub async fn serve(
    site: Site,
    signals: crate::signals::Signals,
    children: &Arc<Supervisor>,
    plugins: PluginRuntime,
    path: Option<PathBuf>,
    inherited: Option<crate::upgrade::Inherited>,
) -> anyhow::Result<()> {
    let crate::signals::Signals { shutdown: stop, reload: mut reloads, reload_sender, upgrade: mut upgrades } = signals;
    if let (Some(interval), Some(file)) = (site.config.global.watch_config, &path) {
        crate::config_watch::spawn(file.clone(), interval, reload_sender);
    }
    let pid_file = site.config.global.pid_file.clone();
    let admin = site.config.admin;
    let (listeners, mut admin_inherited, handover) = match inherited {
        Some(mut i) => (std::mem::take(&mut i.listeners), i.admin.take(), Some(i)),
        None => (Vec::new(), None, None),
    };
    // The drain starts after the stop sequence (lifecycle.rs), not at the signal itself.
    let (drain, draining) = tokio::sync::watch::channel(false);
    let running = Running::start(site, draining, listeners)?;
    tokio::spawn(crate::lifecycle::stop_sequence(stop, running.clone(), drain.clone()));
    crate::tenancy::publish();
    supervised::publish(children);
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let mut admin_socket = None;
    if let Some(addr) = admin {
        let listener = match admin_inherited.take().filter(|(a, _)| *a == addr) {
            Some((_, l)) => crate::listeners::adopt(l),
            None => crate::admin::bind(addr).await,
        }
        .with_context(|| format!("cannot listen on {addr} (admin)"))?;
        let bound = listener.local_addr()?;
        admin_socket = Some((addr, listener.as_fd().try_clone_to_owned()?));
        tokio::spawn(crate::admin::serve(listener, running.clone(), admin_stopped));
        tracing::info!("admin endpoints on http://{bound}/metrics, /status, /ready and /live");
        announce(&format!("gale: admin on {bound}"))?;
    }
    let addrs: Vec<String> = running.bound_addrs().iter().map(|a| a.to_string()).collect();
    // After an upgrade the old gale stops accepting once this one does; then the pid file
    // and the control socket are this one's.
    let roll = match handover {
        Some(handover) => handover.ready(&running.current().config, children).await,
        None => None,
    };
    if let Some(pid) = &pid_file {
        crate::lifecycle::write_pid(pid)?;
    }
    let upgrader = Arc::new(crate::upgrade::Upgrader::new(
        running.clone(),
        pid_file.clone(),
        drain,
        admin_socket,
        admin_stop,
        children.clone(),
    ));
    // `gale restart`, `gale status` and `gale upgrade` talk to the socket next to the pid file.
    let mut control = match &pid_file {
        Some(pid) => {
            let upgrader = upgrader.clone();
            let hook: supervisor::UpgradeHook = Arc::new(move || {
                let upgrader = upgrader.clone();
                Box::pin(async move { upgrader.upgrade().await.map_err(|e| e.to_string()) })
            });
            Some(children.listen_control(pid, Some(hook))?)
        }
        None => None,
    };
    announce(&format!("gale: listening on {}", addrs.join(" ")))?;
    tracing::info!("gale {} listening on {}", env!("CARGO_PKG_VERSION"), addrs.join(" "));
    crate::systemd::ready();
    // After an upgrade: once the old gale has drained, its children are replaced one at a time,
    // as `gale restart` does.
    if let Some(roll) = roll {
        tokio::spawn(roll);
    }

    let reloader = running.clone();
    let supervised = children.clone();
    tokio::spawn(async move {
        while reloads.recv().await.is_some() {
            crate::systemd::reloading();
            reload(&reloader, &supervised, &plugins, path.as_deref()).await;
            // Reloaded or not, gale serves: systemd's reload is over either way.
            crate::systemd::ready();
        }
    });
    let signalled = upgrader.clone();
    tokio::spawn(async move {
        // SIGUSR2: the outcome is logged (`gale upgrade` also prints it).
        while upgrades.recv().await.is_some() {
            let _ = signalled.upgrade().await;
        }
    });
    running.wait().await;
    // Handed over with supervised children: they serve the new gale until it replaces them.
    upgrader.finish().await;
    if upgrader.handed_over()
        && let Some(control) = control.as_mut()
    {
        control.replaced();
    }
    if let Some(pid) = &pid_file {
        crate::lifecycle::remove_pid(pid);
    }
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
/// Supervised upstreams keep their children: the new pools are attached to
/// them, and an upstream whose `process` changed gets a rolling restart.
async fn reload(running: &Arc<Running>, children: &Arc<Supervisor>, plugins: &PluginRuntime, path: Option<&Path>) {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload failed, keeping the old config:\n{e}");
            return;
        }
    };
    let rolls = match children.plan_reload(&cfg) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("reload failed, keeping the old config: {e}");
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
    // The new pools learn which children accept before they serve.
    supervised::attach(children, &site, Some(&old));
    match running.reload(site) {
        Ok(()) => {
            tracing::info!(
                "reloaded; listening on {}",
                running.bound_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
            );
            for (upstream, spec) in rolls {
                let children = children.clone();
                tokio::spawn(async move {
                    if let Err(e) = children.roll(&upstream, Some(spec), |_| {}).await {
                        tracing::error!("rolling restart after reload: {e}");
                    }
                });
            }
        }
        Err(e) => {
            supervised::attach(children, &old, None);
            tracing::error!("reload failed, keeping the old config: {e}");
        }
    }
}
