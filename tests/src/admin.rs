//! gale's admin listener from a test: where it is (`gale: admin on ADDR`, printed on stdout
//! before the `listening` line), `/metrics` parsed into samples, `/status` as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::gale::Gale;
use crate::http;

/// The line gale prints once the admin listener is bound.
const ADMIN: &str = "gale: admin on ";

/// The admin address gale printed; panics if it printed none (no `[admin] listen`).
#[track_caller]
pub fn admin_addr(gale: &Gale) -> SocketAddr {
    // gale prints the admin line before the listening line, and `Gale::start` returns once
    // it has read the latter, so the line is already in the captured stdout.
    let stdout = gale.stdout();
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(ADMIN))
        .unwrap_or_else(|| panic!("gale printed no `{ADMIN}ADDR` line; stdout:\n{stdout}"));
    line.trim().parse().unwrap_or_else(|e| panic!("bad admin address {line:?}: {e}"))
}

/// One sample of the Prometheus text format: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`gale_requests_total`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A `/metrics` page, parsed.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The page as served.
    pub text: String,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text exposition format (comments skipped; label values unescaped).
    pub fn parse(text: &str) -> Result<Metrics, String> {
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            samples.push(parse_sample(line).ok_or_else(|| format!("bad metrics line {line:?}"))?);
        }
        Ok(Metrics { text: text.to_owned(), samples })
    }

    /// The value of the series `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|s| s.value)
    }

    /// Like [`Metrics::get`], panicking with the whole page when the series is missing.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in /metrics:\n{}", self.text))
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `a="x",b="y\"z"` into a map.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// GET `/metrics` on the admin listener, parsed; panics unless it is a 200 in the text format.
#[track_caller]
pub fn metrics(admin: SocketAddr) -> Metrics {
    let response = http::get(admin, "/metrics");
    response.expect_status(200);
    let ctype = response.header("content-type").unwrap_or_default();
    assert!(ctype.starts_with("text/plain"), "/metrics has Content-Type {ctype:?}");
    Metrics::parse(&response.text()).unwrap_or_else(|e| panic!("{e}\n{response}"))
}

/// GET `/status` on the admin listener, as JSON.
#[track_caller]
pub fn status(admin: SocketAddr) -> serde_json::Value {
    let response = http::get(admin, "/status");
    response.expect_status(200);
    response.json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_escapes() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE x counter\nplain 3\n\
             gale_requests_total{server=\"a\\\"b\",status=\"200\"} 7\n\
             h_bucket{upstream=\"u\",le=\"+Inf\"} 2\n",
        )
        .expect("parse");
        assert_eq!(m.get("plain", &[]), Some(3.0));
        assert_eq!(m.get("gale_requests_total", &[("server", "a\"b"), ("status", "200")]), Some(7.0));
        assert_eq!(m.get("gale_requests_total", &[("server", "a\"b")]), None, "labels must match exactly");
        assert_eq!(m.get("h_bucket", &[("upstream", "u"), ("le", "+Inf")]), Some(2.0));
    }
}
