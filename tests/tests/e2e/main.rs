//! End-to-end tests: the real `gale` binary in front of real Tornado processes, real clients,
//! every port OS-assigned. One test binary; one module per theme.
//!
//! Needs `scripts/setup.sh` (the Tornado virtualenv) and a built `gale` (`cargo build -p gale`);
//! `scripts/test.sh` does both, then runs this.

mod admin;
mod adversarial;
mod balancing;
mod check;
mod cli_feedback;
mod containment;
mod demo;
mod deploy;
mod discovery;
mod failover;
mod framing;
mod harness;
mod health_checks;
mod import;
mod lifecycle;
mod multihost;
mod plugin_new;
mod plugin_runner;
mod plugin_worlds;
mod plugins;
mod probes;
mod proxy;
mod reload;
mod routing;
mod sdk;
mod static_gzip;
mod status_page;
mod supervise;
mod systemd;
mod tenants;
mod tls;
mod tutorial;
mod upgrade;
mod uploads;
mod upstream_keepalive;
mod websocket;

use gale_tests::{ConfigBuilder, Gale, Tornado};

/// `n` Tornado backends and gale balancing over them, the config adjusted by `configure`.
#[track_caller]
pub fn pool(n: usize, configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> (Vec<Tornado>, Gale) {
    let tornadoes = Tornado::spawn_pool(n);
    let config = configure(ConfigBuilder::new(tornadoes.iter().map(Tornado::addr)));
    let gale = config.start();
    (tornadoes, gale)
}

/// How many requests each backend port answered, in the order of `tornadoes`.
pub fn count_by_port(tornadoes: &[Tornado], ports: &[u16]) -> Vec<usize> {
    tornadoes.iter().map(|t| ports.iter().filter(|p| **p == t.port()).count()).collect()
}
