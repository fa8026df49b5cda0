//! nginx-upload-module's directives -> a location's `upload = { ... }` and,
//! when its fields differ from gale's built-in policy, the `upload-fields`
//! plugin (docs/uploads.md).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::emit::{self, lit, lit_list};
use super::parse::Directive;
use super::report::Fate;
use super::translate::{Scope, Seen, Translator, Use};

/// What a location's `upload_*` directives say.
#[derive(Default)]
pub(super) struct Upload<'a> {
    pub pass: Option<Seen<'a>>,
    store: Option<Seen<'a>>,
    access: Option<String>,
    set: Vec<&'static str>,
    aggregate: Vec<&'static str>,
    pass_fields: Vec<String>,
    cleanup: Option<Vec<String>>,
    max_form: Option<String>,
    /// The `upload-fields` attachment, when one is needed.
    pub plugin: Option<String>,
}

/// The built-in field policy (uploads.md): what needs no plugin.
const SET: [&str; 3] = ["name", "content_type", "path"];
const AGGREGATE: [&str; 2] = ["md5", "size"];
const PASS: &str = "somearg";

/// `$upload_field_name.X` (or `${upload_field_name}.X`) -> `X`.
fn field_suffix(name: &str) -> Option<&str> {
    name.strip_prefix("$upload_field_name.").or_else(|| name.strip_prefix("${upload_field_name}."))
}

/// The gale field a module variable becomes, and whether it is an aggregate.
fn field_kind(value: &str) -> Option<(&'static str, bool)> {
    let v = value.trim_start_matches('$').trim_start_matches('{').trim_end_matches('}');
    Some(match v {
        "upload_file_name" => ("name", false),
        "upload_content_type" => ("content_type", false),
        "upload_tmp_path" => ("path", false),
        "upload_file_md5" | "upload_file_md5_uc" => ("md5", true),
        "upload_file_size" => ("size", true),
        "upload_file_sha256" | "upload_file_sha256_uc" => ("sha256", true),
        _ => return None,
    })
}

/// `user:rw group:r all:r` -> `0644`; `None` if malformed.
fn access_mode(args: &[String]) -> Option<u32> {
    let mut mode = 0;
    for a in args {
        let (who, perms) = a.split_once(':')?;
        let shift = match who {
            "user" => 6,
            "group" => 3,
            "all" => 0,
            _ => return None,
        };
        for p in perms.chars() {
            mode |= match p {
                'r' => 4,
                'w' => 2,
                'x' => 0,
                _ => return None,
            } << shift;
        }
    }
    Some(mode)
}

/// Handles `x` if it is an `upload_*` directive of the module.
pub(super) fn directive<'a>(t: &mut Translator<'a>, x: &'a Directive, up: &mut Upload<'a>) -> bool {
    let fate = match (x.name.as_str(), x.args.as_slice()) {
        ("upload_pass", [target]) if target.starts_with('@') => {
            let i =
                t.report.add(x, Fate::Translated("upload = { pass = ... }: the named location's upstream".to_owned()));
            up.pass = Some((x, i));
            return true;
        }
        ("upload_pass", _) => Fate::Unsupported(
            "gale's upload passes to an upstream; name a location `@NAME` that proxy_passes to it".to_owned(),
        ),
        ("upload_store", [_, ..]) => {
            let i = t.report.add(x, Fate::Translated(String::new()));
            up.store = Some((x, i));
            return true;
        }
        ("upload_store_access", args) => match access_mode(args) {
            Some(mode) if mode & 0o111 == 0 => {
                up.access = Some(format!("{mode:04o}"));
                Fate::Translated(format!("upload.access = \"{mode:04o}\""))
            }
            _ => Fate::Unsupported("upload.access takes read/write bits (\"0600\")".to_owned()),
        },
        ("upload_set_form_field" | "upload_aggregate_form_field", [name, value]) => {
            match (field_suffix(name), field_kind(value)) {
                (Some(suffix), Some((kind, aggregate))) => {
                    if aggregate {
                        up.aggregate.push(kind);
                    } else {
                        up.set.push(kind);
                    }
                    let mut notes = Vec::new();
                    if suffix != kind {
                        notes.push(format!("gale names it `<field>.{kind}`, not `<field>.{suffix}`"));
                    }
                    if value.ends_with("_uc") || value.ends_with("_uc}") {
                        notes.push("the digest is in lower case".to_owned());
                    }
                    if notes.is_empty() {
                        Fate::Translated(format!("the `{kind}` field of each stored file"))
                    } else {
                        Fate::Changed(format!("the `{kind}` field of each stored file; {}", notes.join("; ")))
                    }
                }
                _ => Fate::Unsupported(
                    "gale's fields are `<field>.name`, `.content_type`, `.path`, `.md5`, `.size`, `.sha256` (uploads.md)"
                        .to_owned(),
                ),
            }
        }
        ("upload_pass_form_field", [re]) => match regex::bytes::Regex::new(re) {
            Ok(_) => {
                up.pass_fields.push(re.clone());
                Fate::Translated("the text fields passed to the backend".to_owned())
            }
            Err(_) => Fate::Unsupported("a regex the Rust `regex` crate compiles (no look-around)".to_owned()),
        },
        ("upload_cleanup", codes) if !codes.is_empty() => {
            let ok = codes.iter().all(|c| {
                c.split_once('-')
                    .map_or(c.parse::<u16>().is_ok(), |(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok())
            });
            if ok {
                up.cleanup = Some(codes.to_vec());
                Fate::Translated("upload.cleanup".to_owned())
            } else {
                Fate::Unsupported("upload.cleanup takes statuses and ranges (\"500-505\")".to_owned())
            }
        }
        ("upload_max_output_body_len", [size]) => match super::values::size(size) {
            Some(s) if s != "0" => {
                up.max_form = Some(s);
                Fate::Translated("upload.max_form_bytes".to_owned())
            }
            _ => Fate::Unsupported("upload.max_form_bytes takes a size".to_owned()),
        },
        (n, _) if n.starts_with("upload_") => match super::table::fixed(n) {
            Some(f) => f,
            None => Fate::Unsupported("not an nginx-upload-module directive gale knows (uploads.md)".to_owned()),
        },
        _ => return false,
    };
    t.report.add(x, fate);
    true
}

/// The `upload = { ... }` handler and, when needed, the `upload-fields` plugin.
pub(super) fn handler<'a>(
    t: &mut Translator<'a>,
    up: &mut Upload<'a>,
    named: &BTreeMap<String, String>,
    scope: &Scope<'a>,
) -> Option<(&'static str, String)> {
    let (pass_d, pass_i) = up.pass?;
    let Some(upstream) = named.get(&pass_d.args[0]) else {
        t.report.refine(
            pass_i,
            Fate::Unsupported("the named location has no `proxy_pass http://UPSTREAM` gale can use".to_owned()),
        );
        return None;
    };
    let upstream = t.upstream_for(upstream, pass_d)?;
    let Some((store_d, store_i)) = up.store else {
        t.report.refine(pass_i, Fate::Unsupported("an upload location needs upload_store".to_owned()));
        return None;
    };
    t.uses.push(Use {
        upstream: upstream.clone(),
        read_timeout: scope.read_timeout,
        connect_timeout: scope.connect_timeout,
        next_upstream: scope.next_upstream,
    });
    // nginx creates the store at start; gale does with `create`. A store
    // others can write to is refused by gale: a private folder inside it.
    let mut store = store_d.args[0].clone();
    let mut notes = Vec::new();
    if std::fs::metadata(&store).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o022 != 0) {
        store = format!("{}/gale-uploads", store.trim_end_matches('/'));
        notes.push(format!(
            "{} can be written by others, which gale refuses: the files go to {store} (created 0700)",
            store_d.args[0]
        ));
    }
    if store_d.args.len() > 1 {
        notes.push("gale's store is flat: no hashed subfolders".to_owned());
    }
    t.report.refine(
        store_i,
        if notes.is_empty() {
            Fate::Translated("upload.store, created at start as nginx creates it".to_owned())
        } else {
            Fate::Changed(format!("upload.store; {}", notes.join("; ")))
        },
    );
    let mut pairs = vec![("store", lit(&store)), ("create", "true".to_owned()), ("pass", lit(&upstream))];
    if let Some(a) = &up.access {
        pairs.push(("access", lit(a)));
    }
    if let Some(c) = &up.cleanup {
        let items: Vec<String> = c.iter().map(|s| if s.contains('-') { lit(s) } else { s.clone() }).collect();
        pairs.push(("cleanup", format!("[{}]", items.join(", "))));
    }
    if let Some(m) = &up.max_form {
        pairs.push(("max_form_bytes", lit(m)));
    }
    let default_fields = up.set.as_slice() == SET && up.aggregate.as_slice() == AGGREGATE && up.pass_fields == [PASS];
    if !default_fields {
        t.plugins_attached = true;
        let config = emit::inline(&[
            ("set", lit_list(&up.set)),
            ("aggregate", lit_list(&up.aggregate)),
            ("pass_fields", lit_list(&up.pass_fields)),
        ]);
        up.plugin = Some(emit::inline(&[("name", lit("upload-fields")), ("config", config)]));
    }
    Some(("upload", emit::inline(&pairs)))
}
