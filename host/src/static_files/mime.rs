//! Content types by file extension: the same answers as nginx's stock `conf/mime.types`.
//!
//! A static table (not a crate) because the point is nginx compatibility, not completeness: an
//! operator moving from nginx must see the same `Content-Type` for the same file. Lookup is
//! case-insensitive, like nginx, which lowercases the extension before looking it up.

/// Extension (lowercase) → media type, sorted by extension for binary search.
/// Entries follow mainline nginx's `conf/mime.types`, which keeps `js` as `application/javascript`
/// (freenginx and RFC 9239 say `text/javascript`; nginx declared its table frozen).
static TABLE: &[(&str, &str)] = &[
    ("3gp", "video/3gpp"),
    ("3gpp", "video/3gpp"),
    ("7z", "application/x-7z-compressed"),
    ("ai", "application/postscript"),
    ("asf", "video/x-ms-asf"),
    ("asx", "video/x-ms-asf"),
    ("atom", "application/atom+xml"),
    ("avi", "video/x-msvideo"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/x-ms-bmp"),
    ("cco", "application/x-cocoa"),
    ("crt", "application/x-x509-ca-cert"),
    ("css", "text/css"),
    ("deb", "application/octet-stream"),
    ("der", "application/x-x509-ca-cert"),
    ("dll", "application/octet-stream"),
    ("dmg", "application/octet-stream"),
    ("doc", "application/msword"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("ear", "application/java-archive"),
    ("eot", "application/vnd.ms-fontobject"),
    ("eps", "application/postscript"),
    ("exe", "application/octet-stream"),
    ("flv", "video/x-flv"),
    ("gif", "image/gif"),
    ("hqx", "application/mac-binhex40"),
    ("htc", "text/x-component"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("ico", "image/x-icon"),
    ("img", "application/octet-stream"),
    ("iso", "application/octet-stream"),
    ("jad", "text/vnd.sun.j2me.app-descriptor"),
    ("jar", "application/java-archive"),
    ("jardiff", "application/x-java-archive-diff"),
    ("jng", "image/x-jng"),
    ("jnlp", "application/x-java-jnlp-file"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "application/javascript"),
    ("json", "application/json"),
    ("kar", "audio/midi"),
    ("kml", "application/vnd.google-earth.kml+xml"),
    ("kmz", "application/vnd.google-earth.kmz"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("m4a", "audio/x-m4a"),
    ("m4v", "video/x-m4v"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("mml", "text/mathml"),
    ("mng", "video/x-mng"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("msi", "application/octet-stream"),
    ("msm", "application/octet-stream"),
    ("msp", "application/octet-stream"),
    ("odg", "application/vnd.oasis.opendocument.graphics"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("ogg", "audio/ogg"),
    ("pdb", "application/x-pilot"),
    ("pdf", "application/pdf"),
    ("pem", "application/x-x509-ca-cert"),
    ("pl", "application/x-perl"),
    ("pm", "application/x-perl"),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("prc", "application/x-pilot"),
    ("ps", "application/postscript"),
    ("ra", "audio/x-realaudio"),
    ("rar", "application/x-rar-compressed"),
    ("rpm", "application/x-redhat-package-manager"),
    ("rss", "application/rss+xml"),
    ("rtf", "application/rtf"),
    ("run", "application/x-makeself"),
    ("sea", "application/x-sea"),
    ("shtml", "text/html"),
    ("sit", "application/x-stuffit"),
    ("svg", "image/svg+xml"),
    ("svgz", "image/svg+xml"),
    ("swf", "application/x-shockwave-flash"),
    ("tcl", "application/x-tcl"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("tk", "application/x-tcl"),
    ("ts", "video/mp2t"),
    ("txt", "text/plain"),
    ("war", "application/java-archive"),
    ("wasm", "application/wasm"),
    ("wbmp", "image/vnd.wap.wbmp"),
    ("webm", "video/webm"),
    ("webp", "image/webp"),
    ("wml", "text/vnd.wap.wml"),
    ("wmlc", "application/vnd.wap.wmlc"),
    ("wmv", "video/x-ms-wmv"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xls", "application/vnd.ms-excel"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("xml", "text/xml"),
    ("xpi", "application/x-xpinstall"),
    ("xspf", "application/xspf+xml"),
    ("zip", "application/zip"),
];

/// Longest extension in the table: longer ones cannot match, so they skip the lowercase copy.
const MAX_EXTENSION: usize = 7;

/// The media type nginx would send for this file name, or `None` (the caller then uses the
/// location's `default_type`). The extension is what follows the last `.` of the last name, like
/// nginx; a name without a dot, or ending in one, has none.
pub fn lookup(file_name: &[u8]) -> Option<&'static str> {
    let dot = file_name.iter().rposition(|b| *b == b'.')?;
    let ext = &file_name[dot + 1..];
    if ext.is_empty() || ext.len() > MAX_EXTENSION {
        return None;
    }
    let mut lower = [0u8; MAX_EXTENSION];
    for (dst, src) in lower.iter_mut().zip(ext) {
        *dst = src.to_ascii_lowercase();
    }
    let ext = std::str::from_utf8(&lower[..ext.len()]).ok()?;
    TABLE.binary_search_by(|(e, _)| (*e).cmp(ext)).ok().map(|i| TABLE[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lowercase() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (ext, ty) in TABLE {
            assert_eq!(*ext, ext.to_ascii_lowercase());
            assert!(ext.len() <= MAX_EXTENSION, "{ext}");
            assert!(ty.contains('/'), "{ty}");
        }
    }

    #[test]
    fn common_types_match_nginx() {
        let cases: &[(&str, Option<&str>)] = &[
            ("index.html", Some("text/html")),
            ("a.htm", Some("text/html")),
            ("site.css", Some("text/css")),
            ("app.js", Some("application/javascript")),
            ("data.json", Some("application/json")),
            ("feed.xml", Some("text/xml")),
            ("feed.atom", Some("application/atom+xml")),
            ("logo.png", Some("image/png")),
            ("photo.JPG", Some("image/jpeg")),
            ("photo.Jpeg", Some("image/jpeg")),
            ("icon.svg", Some("image/svg+xml")),
            ("favicon.ico", Some("image/x-icon")),
            ("font.woff2", Some("font/woff2")),
            ("doc.pdf", Some("application/pdf")),
            ("readme.txt", Some("text/plain")),
            ("movie.mp4", Some("video/mp4")),
            ("module.wasm", Some("application/wasm")),
            ("archive.tar.zip", Some("application/zip")),
            ("setup.exe", Some("application/octet-stream")),
            ("Makefile", None),
            ("archive.tar.gz", None),
            ("trailing.", None),
            (".hidden", None),
            ("weird.verylongext", None),
            ("noext", None),
            ("bytes.\u{e9}", None),
        ];
        for (name, expected) in cases {
            assert_eq!(lookup(name.as_bytes()), *expected, "{name}");
        }
        assert_eq!(lookup(b"x.\xff"), None);
    }
}
