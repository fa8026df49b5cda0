//! `/metrics` read back: the status page is built from the very text
//! `/metrics` serves, so the two never disagree. Parses the exposition
//! format gale writes (`name{k="v",...} value`, `#` lines skipped, label
//! values unescaped) and derives what a person reads: sums, status classes,
//! percentiles from histogram buckets.

use std::collections::BTreeMap;

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key` ("" when absent).
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// Every sample of a `/metrics` text; a line that does not parse is skipped
/// (gale wrote it, so there is none, but a page must not fail on one).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let value_text = if let Some(mut rest) = rest.strip_prefix('{') {
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                break after;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = value_text.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name: name.to_owned(), labels, value })
}

/// The samples of series `name`.
pub fn series<'a>(all: &'a [Sample], name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    all.iter().filter(move |s| s.name == name)
}

/// The sum of series `name` over the samples whose labels include `with`.
pub fn sum(all: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    series(all, name).filter(|s| with.iter().all(|(k, v)| s.label(k) == *v)).map(|s| s.value).sum()
}

/// Responses by status class (index 0: 1xx ... 4: 5xx) of each server, from
/// `gale_requests_total`.
pub fn status_classes(all: &[Sample]) -> BTreeMap<String, [u64; 5]> {
    let mut out: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    for s in series(all, "gale_requests_total") {
        let class = s.label("status").parse::<usize>().map_or(0, |c| c / 100);
        if (1..=5).contains(&class) {
            out.entry(s.label("server").to_owned()).or_default()[class - 1] += s.value as u64;
        }
    }
    out
}

/// A histogram's cumulative buckets (`le` upper bound, count), in order,
/// for the samples of `name`_bucket whose labels include `with`.
pub fn buckets(all: &[Sample], name: &str, with: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut out: Vec<(f64, f64)> = series(all, &bucket)
        .filter(|s| with.iter().all(|(k, v)| s.label(k) == *v))
        .filter_map(|s| {
            let le = s.label("le");
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, s.value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile (0..1) of cumulative `buckets`, interpolated within the
/// bucket as Prometheus' `histogram_quantile` does; `None` without
/// observations. A quantile in the `+Inf` bucket is the last finite bound
/// (the page shows it as "more than").
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<Quantile> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(Quantile::Above(lower.0));
            }
            let in_bucket = count - lower.1;
            let frac = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
            return Some(Quantile::At(lower.0 + (bound - lower.0) * frac));
        }
        lower = (bound, count);
    }
    Some(Quantile::Above(lower.0))
}

/// A quantile read from buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// About this many seconds.
    At(f64),
    /// Beyond the largest finite bucket, this many seconds.
    Above(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_escaped_labels() {
        let text = "# HELP x y\ngale_requests_total{server=\"a\\\"b\\\\c\\nd\",status=\"200\"} 3\ngale_connections_open 2\nbad line\n";
        let all = parse(text);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].label("server"), "a\"b\\c\nd");
        assert_eq!(all[0].label("status"), "200");
        assert_eq!(all[0].value, 3.0);
        assert_eq!(all[1].name, "gale_connections_open");
        assert_eq!(all[1].value, 2.0);
        assert!(parse("x{a=\"unterminated} 1").is_empty());
    }

    #[test]
    fn classes_and_quantiles_come_from_the_series() {
        let text = "gale_requests_total{server=\"s\",status=\"200\"} 5\n\
                    gale_requests_total{server=\"s\",status=\"204\"} 1\n\
                    gale_requests_total{server=\"s\",status=\"502\"} 2\n\
                    h_bucket{b=\"x\",le=\"0.01\"} 50\n\
                    h_bucket{b=\"x\",le=\"0.1\"} 90\n\
                    h_bucket{b=\"x\",le=\"+Inf\"} 100\n";
        let all = parse(text);
        assert_eq!(status_classes(&all)["s"], [0, 6, 0, 0, 2]);
        let b = buckets(&all, "h", &[("b", "x")]);
        assert_eq!(quantile(&b, 0.5), Some(Quantile::At(0.01)));
        let Some(Quantile::At(p75)) = quantile(&b, 0.75) else { panic!("p75") };
        assert!((p75 - 0.0663).abs() < 0.001, "{p75}");
        assert_eq!(quantile(&b, 0.99), Some(Quantile::Above(0.1)));
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
