//! `gale check` (and `gale run`) on bad configs: `FILE:LINE:COL: message` with a hint, exit 1.

use std::path::PathBuf;

use gale_tests::{ConfigBuilder, Finished, dead_addr, run_gale};
use tempfile::TempDir;

/// Writes `text` to a config file and runs `gale COMMAND --config FILE`.
fn gale_on(command: &str, text: &str) -> (Finished, String, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("gale.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let out = run_gale(&[command, "--config", &path], Some(dir.path()));
    (out, path, dir)
}

#[test]
fn a_valid_config_prints_ok() {
    let text = ConfigBuilder::new([dead_addr()]).render();
    let (out, _, _dir) = gale_on("check", &text);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "OK", "{out:?}");
}

#[test]
fn a_typo_key_points_at_file_line_col_and_suggests_the_key() {
    let text = "[global]\nthreads = 2\n\n[http]\nclient_max_body_sise = \"1M\"\n";
    let (out, path, _dir) = gale_on("check", text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:5:1:")), "expected {path}:5:1: in:\n{}", out.stderr);
    assert!(out.stderr.contains("did you mean `client_max_body_size`?"), "no hint in:\n{}", out.stderr);
    assert!(!out.stdout.contains("OK"), "{out:?}");
}

#[test]
fn a_bad_value_points_at_its_line() {
    let text = ConfigBuilder::new([dead_addr()]).http("client_max_body_size", "100Q").render();
    let line = text.lines().position(|l| l.starts_with("client_max_body_size")).expect("the key is rendered") + 1;
    let (out, path, _dir) = gale_on("check", &text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:{line}:")), "expected {path}:{line}: in:\n{}", out.stderr);
}

#[test]
fn an_unknown_upstream_suggests_the_right_name() {
    let text = ConfigBuilder::new([dead_addr()]).render().replace("pass = \"tornadoes\"", "pass = \"tornados\"");
    let (out, path, _dir) = gale_on("check", &text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:")), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `tornadoes`?"), "no hint in:\n{}", out.stderr);
}

#[test]
fn every_error_in_the_file_is_reported() {
    // Two bad values in two sections: both reported, not just the first.
    let text = "[http]\nclient_max_body_size = \"1Q\"\n\n[global]\nthreads = 2\nshutdown_timeout = \"soon\"\n";
    let (out, path, _dir) = gale_on("check", text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    for line in [2, 6] {
        assert!(
            out.stderr.contains(&format!("{path}:{line}:")),
            "expected an error at line {line} in:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_syntax_error_points_at_its_position() {
    let text = "[http]\nkeepalive_timeout = \"65s\n";
    let (out, path, _dir) = gale_on("check", text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:2:")), "{}", out.stderr);
}

#[test]
fn run_refuses_a_bad_config_the_same_way() {
    let text = "[http]\nclient_max_body_sise = \"1M\"\n";
    let (out, path, _dir) = gale_on("run", text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:2:1:")), "{}", out.stderr);
    assert!(!out.stdout.contains("listening"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

/// The admin listener on a public listener's socket (the same address, or a wildcard on the
/// same port) is an error at the admin `listen`; other ports, or the other address family's
/// wildcard (gale binds IPv6 v6-only), are fine.
#[test]
fn an_admin_listen_overlapping_a_public_listen_is_an_error_at_its_position() {
    let config = |admin: &str, public: &str| {
        format!(
            "[admin]\nlisten = \"{admin}\"\n\n[[server]]\nlisten = [\"{public}\"]\n\
             [[server.location]]\npath = \"/\"\nstatic = {{ root = \".\" }}\n"
        )
    };
    for (admin, public) in
        [("127.0.0.1:18080", "127.0.0.1:18080"), ("127.0.0.1:18080", "0.0.0.0:18080"), ("[::1]:18080", "[::]:18080")]
    {
        let (out, path, _dir) = gale_on("check", &config(admin, public));
        assert_eq!(out.code(), Some(1), "admin {admin}, public {public}: {out:?}");
        assert!(out.stderr.contains(&format!("{path}:2:10: admin listener")), "{}", out.stderr);
        assert!(out.stderr.contains(&format!("overlaps the public listener {public}")), "{}", out.stderr);
    }
    for (admin, public) in [("127.0.0.1:18081", "127.0.0.1:18080"), ("[::1]:18080", "0.0.0.0:18080")] {
        let (out, _, _dir) = gale_on("check", &config(admin, public));
        assert_eq!(out.code(), Some(0), "admin {admin}, public {public}: {out:?}");
    }
}
