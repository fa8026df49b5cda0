//! Request and response header facts gzip depends on. Pure.

use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL};

/// Whether the client accepts gzip (RFC 9110 §12.5.3): an explicit `gzip` or `x-gzip` with a
/// q-value above zero, or else a `*` above zero. `gzip;q=0` refuses; no header refuses.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut explicit: Option<u16> = None;
    let mut star: Option<u16> = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, v)| qvalue(v.trim()))
                .unwrap_or(0); // an unreadable q-value refuses that coding
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                explicit = Some(explicit.map_or(q, |e| e.max(q)));
            } else if coding == "*" {
                star = Some(star.map_or(q, |s| s.max(q)));
            }
        }
    }
    explicit.or(star).is_some_and(|q| q > 0)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether any `Cache-Control` line of `headers` has the directive `name` (case-insensitive,
/// with or without a value).
pub(crate) fn has_cache_directive(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.split('=').next().unwrap_or("").trim().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accepts(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_str(v).expect("value"));
        }
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_table() {
        let table: &[(&[&str], bool)] = &[
            (&[], false),
            (&[""], false),
            (&["gzip"], true),
            (&["GZIP"], true),
            (&["x-gzip"], true),
            (&["gzip, deflate, br"], true),
            (&["br;q=1.0, gzip;q=0.8, *;q=0.1"], true),
            (&["gzip;q=0"], false),
            (&["gzip;q=0.0"], false),
            (&["gzip;q=0.000"], false),
            (&["gzip; q=0"], false),
            (&["gzip;Q=0"], false),
            (&["gzip;q=0.001"], true),
            (&["gzip;q=1"], true),
            (&["gzip;q=1.000"], true),
            (&["gzip;q=1.5"], false),
            (&["gzip;q=abc"], false),
            (&["gzip;q=0.0001"], false),
            (&["deflate, br"], false),
            (&["identity"], false),
            (&["*"], true),
            (&["*;q=0"], false),
            (&["gzip;q=0, *"], false),
            (&["*;q=0, gzip"], true),
            (&["deflate", "gzip"], true),
            (&["gzipped"], false),
            (&["  gzip  ;  q=0.5 "], true),
        ];
        for (values, expected) in table {
            assert_eq!(accepts(values), *expected, "{values:?}");
        }
    }

    #[test]
    fn cache_directives() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=10, No-Transform"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("private=\"x\""));
        assert!(has_cache_directive(&h, "no-transform"));
        assert!(has_cache_directive(&h, "private"));
        assert!(has_cache_directive(&h, "max-age"));
        assert!(!has_cache_directive(&h, "no-store"));
    }
}
