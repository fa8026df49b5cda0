//! Rendering gale configs for tests: one upstream pool, one server, one `location /`.
//!
//! Most tests need exactly that shape with a key or two changed; tests with several servers
//! or pools write their TOML by hand.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::gale::Gale;

/// The name of the pool the builder renders.
pub const POOL: &str = "tornadoes";

/// A config: `[global]`, `[http]`, `[upstream.tornadoes]` and one `[[server]]` on
/// `127.0.0.1:0` whose `location /` proxies to the pool.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    global: Vec<(String, String)>,
    http: Vec<(String, String)>,
    servers: Vec<String>,
    upstream: Vec<(String, String)>,
    server: Vec<(String, String)>,
    locations: Vec<String>,
    admin: bool,
}

/// A value written into the TOML: strings are quoted, numbers and booleans are not.
pub trait TomlValue {
    /// The TOML text of the value.
    fn toml(&self) -> String;
}

impl TomlValue for &str {
    fn toml(&self) -> String {
        // A JSON string is a valid TOML basic string.
        serde_json::to_string(self).expect("string to JSON")
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

macro_rules! plain_toml {
    ($($t:ty),*) => {$(
        impl TomlValue for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
plain_toml!(bool, u16, u32, u64, usize, i32, i64);

/// A raw TOML expression (an array, an inline table), written as is.
#[derive(Clone, Debug)]
pub struct Raw(pub String);

impl TomlValue for Raw {
    fn toml(&self) -> String {
        self.0.clone()
    }
}

impl ConfigBuilder {
    /// A config balancing over `backends` (equal weights, gale's defaults for everything else
    /// except `threads = 2`).
    pub fn new(backends: impl IntoIterator<Item = SocketAddr>) -> Self {
        ConfigBuilder {
            global: vec![("threads".into(), "2".into())],
            http: Vec::new(),
            servers: backends.into_iter().map(|addr| format!("\"{addr}\"")).collect(),
            upstream: Vec::new(),
            server: Vec::new(),
            locations: Vec::new(),
            admin: false,
        }
    }

    /// Adds a backend with a weight.
    pub fn weighted(mut self, addr: SocketAddr, weight: u32) -> Self {
        self.servers.push(format!("{{ address = \"{addr}\", weight = {weight} }}"));
        self
    }

    /// Adds a backend given by DNS name (`"app.test:8000"`), with a weight.
    pub fn named(mut self, name_port: &str, weight: u32) -> Self {
        self.servers.push(format!("{{ address = \"{name_port}\", weight = {weight} }}"));
        self
    }

    /// Adds `[admin] listen = "127.0.0.1:0"` (find it with `admin::admin_addr`).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Sets a `[global]` key.
    pub fn global(mut self, key: &str, value: impl TomlValue) -> Self {
        set(&mut self.global, key, value);
        self
    }

    /// Sets an `[http]` key.
    pub fn http(mut self, key: &str, value: impl TomlValue) -> Self {
        set(&mut self.http, key, value);
        self
    }

    /// Sets an `[upstream.tornadoes]` key (`next_upstream`, `read_timeout`, ...).
    pub fn upstream(mut self, key: &str, value: impl TomlValue) -> Self {
        set(&mut self.upstream, key, value);
        self
    }

    /// Sets a `[[server]]` key (`listen`, `server_name`).
    pub fn server(mut self, key: &str, value: impl TomlValue) -> Self {
        set(&mut self.server, key, value);
        self
    }

    /// Adds a `[[server.location]]` whose body is `toml` (key = value lines), rendered before
    /// the default `location /`.
    pub fn location(mut self, toml: &str) -> Self {
        self.locations.push(toml.to_owned());
        self
    }

    /// The config text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        section(&mut out, "[global]", &self.global);
        section(&mut out, "[http]", &self.http);
        if self.admin {
            out.push_str("[admin]\nlisten = \"127.0.0.1:0\"\n\n");
        }
        let mut upstream = vec![("servers".to_owned(), format!("[{}]", self.servers.join(", ")))];
        upstream.extend(self.upstream.iter().cloned());
        section(&mut out, &format!("[upstream.{POOL}]"), &upstream);
        let mut server = self.server.clone();
        if !server.iter().any(|(k, _)| k == "listen") {
            server.insert(0, ("listen".into(), "[\"127.0.0.1:0\"]".into()));
        }
        section(&mut out, "[[server]]", &server);
        for location in &self.locations {
            let _ = writeln!(out, "[[server.location]]\n{}\n", location.trim());
        }
        let _ = writeln!(out, "[[server.location]]\npath = \"/\"\nproxy = {{ pass = \"{POOL}\" }}");
        out
    }

    /// Starts gale with this config.
    #[track_caller]
    pub fn start(&self) -> Gale {
        Gale::start(&self.render())
    }
}

fn set(entries: &mut Vec<(String, String)>, key: &str, value: impl TomlValue) {
    entries.retain(|(k, _)| k != key);
    entries.push((key.to_owned(), value.toml()));
}

fn section(out: &mut String, header: &str, entries: &[(String, String)]) {
    let _ = writeln!(out, "{header}");
    for (key, value) in entries {
        let _ = writeln!(out, "{key} = {value}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_shape() {
        let a: SocketAddr = "127.0.0.1:8000".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:8001".parse().expect("addr");
        let text = ConfigBuilder::new([a])
            .weighted(b, 2)
            .upstream("next_upstream", "error")
            .upstream("max_fails", 3u32)
            .render();
        assert_eq!(
            text,
            "[global]\nthreads = 2\n\n[http]\n\n[upstream.tornadoes]\n\
             servers = [\"127.0.0.1:8000\", { address = \"127.0.0.1:8001\", weight = 2 }]\n\
             next_upstream = \"error\"\nmax_fails = 3\n\n\
             [[server]]\nlisten = [\"127.0.0.1:0\"]\n\n\
             [[server.location]]\npath = \"/\"\nproxy = { pass = \"tornadoes\" }\n"
        );
    }
}
