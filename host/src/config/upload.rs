//! `upload = { ... }` on a location -> the upload leaf's validated config.

use std::path::Path;

use toml::Spanned;

use super::diagnostics::Collector;
use super::raw;
use super::runtime::{Handler, UploadRoute};
use super::units::{ByteSize, parse_duration};
use super::validate::{int_in, path_from, size, upstream_ref};

pub(super) fn upload_route(
    up: Spanned<raw::RawUpload>,
    upstreams: &[String],
    body_limit: u64,
    base: &Path,
    c: &mut Collector<'_>,
) -> Option<Handler> {
    use crate::upload::{UploadConfig, UploadSettings, parse_mode};
    let span = up.span();
    let up = up.into_inner();
    let upstream = upstream_ref(&up.pass, upstreams, c);
    let mut settings = UploadSettings::reference(path_from(base, up.store.get_ref()));
    settings.create_store = up.create;
    settings.limits.max_body_bytes = body_limit;
    let mut ok = upstream.is_some();
    if let Some(access) = &up.access {
        match parse_mode(access.get_ref()) {
            Ok(mode) => settings.mode = mode,
            Err(e) => {
                c.error(Some(access.span()), e.to_string());
                ok = false;
            }
        }
    }
    if let Some(list) = &up.cleanup {
        settings.cleanup.clear();
        for item in list.get_ref() {
            let text = &item.0;
            let range = match text.split_once('-') {
                Some((a, b)) => a.trim().parse::<u16>().ok().zip(b.trim().parse::<u16>().ok()).map(|(a, b)| a..=b),
                None => text.trim().parse::<u16>().ok().map(|s| s..=s),
            };
            match range {
                Some(r) => settings.cleanup.push(r),
                None => {
                    c.error(
                        Some(list.span()),
                        format!("cleanup: `{text}` is not a status or a range like \"500-505\""),
                    );
                    ok = false;
                }
            }
        }
    }
    match &up.sweep_ttl {
        Some(v) if v.get_ref().0 == "off" => settings.sweep_ttl = None,
        Some(v) => match parse_duration(&v.get_ref().0) {
            Ok(d) => settings.sweep_ttl = Some(d),
            Err(e) => {
                c.error(Some(v.span()), e);
                ok = false;
            }
        },
        None => {}
    }
    let limits = &mut settings.limits;
    for (value, slot, name) in [
        (&up.max_parts, &mut limits.max_parts, "max_parts"),
        (&up.max_files, &mut limits.max_files, "max_files"),
        (&up.max_part_header_bytes, &mut limits.max_part_header_bytes, "max_part_header_bytes"),
        (&up.max_header_line, &mut limits.max_header_line, "max_header_line"),
    ] {
        if let Some(v) = value {
            match int_in(Some(v.clone()), 0, 1, 1 << 30, name, c) {
                Some(n) => *slot = n as usize,
                None => ok = false,
            }
        }
    }
    if let Some(v) = up.max_form_bytes.clone() {
        match size(Some(v), ByteSize(0), c) {
            Some(s) => limits.max_form_bytes = s.bytes() as usize,
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    match UploadConfig::from_settings(&settings) {
        Ok(config) => Some(Handler::Upload(UploadRoute { config, upstream: upstream? })),
        Err(e) => {
            c.error(Some(span), format!("upload: {e}"));
            None
        }
    }
}
