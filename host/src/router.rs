//! Routing: pick the server block for a request's host on the listener it
//! came in on, then the location for its path. Pure functions over the
//! validated config; no I/O.

use crate::config::{Config, Location, PathMatch, Server, ServerName};

/// Lookup tables for one listener.
#[derive(Debug, Clone)]
pub struct ListenerRoutes {
    /// Indices into `Config::servers`; the first is the default server.
    servers: Vec<usize>,
}

impl ListenerRoutes {
    /// Routes for a listener serving `servers` (default first).
    pub fn new(servers: Vec<usize>) -> Self {
        Self { servers }
    }

    /// The server for `host` (already lower-cased, port removed): an exact
    /// name first, then the longest matching `*.` wildcard, then the
    /// listener's default server — the order nginx uses.
    pub fn server<'c>(&self, cfg: &'c Config, host: &str) -> (usize, &'c Server) {
        let mut best_wild: Option<(usize, usize)> = None;
        for &i in &self.servers {
            for name in &cfg.servers[i].names {
                match name {
                    ServerName::Exact(n) if n == host => return (i, &cfg.servers[i]),
                    ServerName::Wildcard(suffix) => {
                        if host.len() > suffix.len()
                            && host.ends_with(suffix.as_str())
                            && best_wild.is_none_or(|(_, len)| suffix.len() > len)
                        {
                            best_wild = Some((i, suffix.len()));
                        }
                    }
                    ServerName::Exact(_) => {}
                }
            }
        }
        let i = best_wild.map_or(self.servers[0], |(i, _)| i);
        (i, &cfg.servers[i])
    }
}

/// The location for `path`, which must be the request path in normal form
/// (`crate::uri_path`) so that every spelling of a path finds the same
/// location: an exact match wins; otherwise the longest matching prefix,
/// byte for byte (case-sensitive, as in nginx). `None` means 404.
pub fn location<'s>(server: &'s Server, path: &str) -> Option<(usize, &'s Location)> {
    let mut best: Option<(usize, &Location)> = None;
    for (i, loc) in server.locations.iter().enumerate() {
        match &loc.matcher {
            PathMatch::Exact(p) if p == path => return Some((i, loc)),
            PathMatch::Prefix(p)
                if path.starts_with(p.as_str()) && best.is_none_or(|(_, b)| b.matcher.path().len() < p.len()) =>
            {
                best = Some((i, loc));
            }
            _ => {}
        }
    }
    best
}

/// Normalises a Host header value for matching: lower case, no port, no
/// trailing dot. `[::1]:80` keeps its brackets.
pub fn host_for_matching(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;

    fn cfg() -> Config {
        let text = r#"
[upstream.a]
servers = ["127.0.0.1:1"]
[[server]]
listen = ["127.0.0.1:80"]
server_name = ["first.test"]
[[server.location]]
path = "/"
proxy = { pass = "a" }
[[server]]
listen = ["127.0.0.1:80"]
server_name = ["www.example.org", "*.example.org", "*.deep.example.org"]
[[server.location]]
path = "/"
proxy = { pass = "a" }
[[server.location]]
path = "/static/"
proxy = { pass = "a" }
[[server.location]]
path = "/static/img/"
proxy = { pass = "a" }
[[server.location]]
path = "= /static/"
proxy = { pass = "a" }
"#;
        config::parse("t", text, Path::new(".")).expect("valid")
    }

    #[test]
    fn exact_name_then_longest_wildcard_then_default() {
        let cfg = cfg();
        let r = ListenerRoutes::new(cfg.listeners[0].servers.clone());
        assert_eq!(r.server(&cfg, "www.example.org").0, 1);
        assert_eq!(r.server(&cfg, "a.example.org").0, 1);
        assert_eq!(r.server(&cfg, "x.deep.example.org").0, 1);
        // The bare domain does not match `*.example.org`.
        assert_eq!(r.server(&cfg, "example.org").0, 0);
        assert_eq!(r.server(&cfg, "unknown.test").0, 0);
        assert_eq!(r.server(&cfg, "first.test").0, 0);
    }

    #[test]
    fn exact_location_beats_longest_prefix() {
        let cfg = cfg();
        let s = &cfg.servers[1];
        let p = |path: &str| location(s, path).map(|(_, l)| l.matcher.clone());
        assert_eq!(p("/static/"), Some(PathMatch::Exact("/static/".into())));
        assert_eq!(p("/static/a.css"), Some(PathMatch::Prefix("/static/".into())));
        assert_eq!(p("/static/img/a.png"), Some(PathMatch::Prefix("/static/img/".into())));
        assert_eq!(p("/other"), Some(PathMatch::Prefix("/".into())));
    }

    #[test]
    fn no_location_is_none() {
        let text = r#"
[upstream.a]
servers = ["127.0.0.1:1"]
[[server]]
listen = ["127.0.0.1:80"]
[[server.location]]
path = "/api/"
proxy = { pass = "a" }
"#;
        let cfg = config::parse("t", text, Path::new(".")).expect("valid");
        assert!(location(&cfg.servers[0], "/").is_none());
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(host_for_matching("WWW.Example.org:8080"), "www.example.org");
        assert_eq!(host_for_matching("example.org."), "example.org");
        assert_eq!(host_for_matching("[::1]:8080"), "[::1]");
        assert_eq!(host_for_matching("127.0.0.1"), "127.0.0.1");
    }
}
