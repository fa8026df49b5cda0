//! The plugin of issue 20 written with the SDK crate `gale-plugin` (its example `tagger`, built
//! by `scripts/build-plugins.sh` as `target/plugins/tagger.wasm`) through the real binary: it
//! tags every response with its configured name and answers 403 to banned user agents, whatever
//! the case of the header's name; a config it rejects fails `gale check` with its message.

use gale_tests::http::Request;
use gale_tests::plugins::{self, TAGGER};
use gale_tests::{ConfigBuilder, Gale, Tornado, run_gale};

const TAGGER_CONFIG: &str = r#"[{ name = "tagger", config = { name = "edge-1", banned_agents = ["BadBot"] } }]"#;

/// One Tornado and the config text with `plugins` on `location /`.
fn site(plugins: &str) -> (Tornado, String) {
    assert!(plugins::wasm(TAGGER).is_file());
    let tornado = Tornado::spawn("tornado-0");
    let builder = plugins::enable(ConfigBuilder::new([tornado.addr()]), &plugins::built_dir());
    let text = plugins::on_root(&builder.render(), plugins);
    (tornado, text)
}

fn hits(tornado: &Tornado) -> u64 {
    tornado.stats().hits.values().sum()
}

#[test]
fn the_sdk_example_tags_responses_and_denies_banned_agents() {
    let (tornado, text) = site(TAGGER_CONFIG);
    let gale = Gale::start(&text);

    let ok = gale.send(&Request::get("/whoami").header("User-Agent", "curl/8.5"));
    ok.expect_status(200);
    assert_eq!(ok.header_all("x-served-by"), vec!["edge-1"], "{ok}");
    assert_eq!(hits(&tornado), 1);

    for agent_header in ["User-Agent", "user-agent", "USER-AGENT"] {
        let denied = gale.send(&Request::get("/whoami").header(agent_header, "Mozilla/5.0 BadBot/2"));
        assert_eq!(denied.status, 403, "{agent_header}:\n{denied}");
        assert_eq!(denied.text(), "banned\n", "{denied}");
        assert_eq!(denied.header("x-served-by"), Some("edge-1"), "response hooks run on local answers:\n{denied}");
    }
    assert_eq!(hits(&tornado), 1, "a banned agent reached Tornado: {:?}", tornado.stats().hits);
}

#[test]
fn a_config_the_sdk_plugin_rejects_fails_gale_check_with_its_message() {
    let (_tornado, text) = site(r#"[{ name = "tagger", config = { banned_agents = ["BadBot"] } }]"#);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, &text).expect("write config");
    let out = run_gale(&["check", "--config", path.to_str().expect("utf-8 path")], Some(dir.path()));
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("plugin `tagger` rejected its config"), "{}", out.stderr);
    assert!(out.stderr.contains("missing field `name`"), "{}", out.stderr);
}
