//! deploy/: the Kubernetes manifests validated against the Kubernetes schemas (the
//! `kubernetes-validate` package, which ships them: no network) and checked against gale's own
//! rules (probes on the admin listener, a grace period longer than the stop, the config mounted so
//! updates reach it); the ConfigMap's gale.toml passes `gale check`; and deploy/Containerfile built
//! with buildah where buildah runs (deploy/image.rs).

#[path = "deploy/image.rs"]
mod image;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gale_tests::{paths, run_gale};
use serde_json::Value;

/// The Kubernetes versions the manifests are checked against: the oldest one whose schema has
/// everything they use (the preStop `sleep` action of tornado.yaml), and the package's newest.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn manifests() -> Vec<PathBuf> {
    let dir = paths::repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the manifests in {}: {files:?}", dir.display());
    files
}

/// `kubernetes-validate` from the virtualenv `scripts/setup.sh` makes (scripts/requirements.txt).
fn validator() -> PathBuf {
    let bin = paths::python().with_file_name("kubernetes-validate");
    assert!(bin.is_file(), "{} is missing: run scripts/setup.sh (scripts/requirements.txt pins it)", bin.display());
    bin
}

/// Runs the validator in strict mode (unknown fields are errors): its exit status and output.
fn validate(version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(validator())
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    for version in KUBERNETES_VERSIONS {
        let (ok, text) = validate(version, &files);
        assert!(ok, "deploy/kubernetes does not validate against Kubernetes {version}:\n{text}");
        for file in &files {
            let name = file.file_name().expect("file name").to_string_lossy().into_owned();
            assert!(text.contains(&format!("{name} passed")), "{name} not validated against {version}:\n{text}");
        }
    }
}

/// The validator rejects what is wrong: a misspelt field (strict mode) and a wrong type.
#[test]
fn the_validator_rejects_a_broken_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(paths::repo_root().join("deploy/kubernetes/gale.yaml")).expect("read");
    for (what, from, to) in
        [("a misspelt field", "readinessProbe:", "readinesProbe:"), ("a wrong type", "replicas: 2", "replicas: two")]
    {
        assert!(source.contains(from), "gale.yaml has no {from:?}");
        let broken = dir.path().join("gale.yaml");
        std::fs::write(&broken, source.replacen(from, to, 1)).expect("write");
        let (ok, text) = validate(KUBERNETES_VERSIONS[1], &[broken]);
        assert!(!ok, "kubernetes-validate accepted {what}:\n{text}");
    }
}

/// Every document of the manifests, as JSON (PyYAML from the virtualenv reads the YAML).
fn documents() -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
                  print(json.dumps(docs))";
    let out = Command::new(paths::python()).arg("-c").arg(script).args(manifests()).output().expect("run python");
    assert!(out.status.success(), "reading the manifests: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the manifests as JSON")
}

#[track_caller]
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

/// `"5s"`, `"500ms"`, `"2m"` in seconds.
#[track_caller]
fn seconds(duration: &str) -> f64 {
    let split = duration.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(duration.len());
    let (n, unit) = duration.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("bad duration {duration:?}"));
    match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => panic!("bad duration unit in {duration:?}"),
    }
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {listen:?}"))
}

/// The ConfigMap's gale.toml, parsed.
fn gale_toml(docs: &[Value]) -> (String, toml::Table) {
    let text = find(docs, "ConfigMap", "gale-config")["data"]["gale.toml"].as_str().expect("data.gale.toml").to_owned();
    let table = text.parse::<toml::Table>().unwrap_or_else(|e| panic!("the ConfigMap's gale.toml: {e}"));
    (text, table)
}

/// What the schemas cannot see: the manifests and the ConfigMap's gale.toml agree with each other
/// and with how gale stops, reloads and is probed.
#[test]
fn the_manifests_fit_gale() {
    let docs = documents();
    let (_, config) = gale_toml(&docs);
    let global = config["global"].as_table().expect("[global]");
    let admin = config["admin"].as_table().expect("[admin]");
    assert_eq!(global.get("watch_config").and_then(toml::Value::as_bool), Some(true), "watch_config = true");

    let deployment = find(&docs, "Deployment", "gale");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // Probes on the admin listener's port, by name.
    let port_named = |name: &str| -> u64 {
        container["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port_named("admin"), port_of(admin["listen"].as_str().expect("admin listen")));
    assert_eq!(
        admin.get("allow_remote").and_then(toml::Value::as_bool),
        Some(true),
        "the kubelet probes from off the pod"
    );
    let server_listen = config["server"][0]["listen"][0].as_str().expect("server listen");
    assert_eq!(port_named("http"), port_of(server_listen));
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/live")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    // The stop: no preStop hook, and the grace period outlasts shutdown_delay + shutdown_timeout.
    assert!(container["lifecycle"]["preStop"].is_null(), "gale needs no preStop hook: {}", container["lifecycle"]);
    let stop = seconds(global["shutdown_delay"].as_str().expect("shutdown_delay"))
        + seconds(global["shutdown_timeout"].as_str().expect("shutdown_timeout"));
    let grace = pod["terminationGracePeriodSeconds"].as_f64().expect("terminationGracePeriodSeconds");
    assert!(
        grace > stop,
        "terminationGracePeriodSeconds {grace} must exceed shutdown_delay + shutdown_timeout ({stop})"
    );

    // The config: the args name the mounted file; the ConfigMap is mounted whole (a subPath
    // mount is never updated, so watch_config would never see a change).
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args, ["run", "--config", "/etc/gale/gale.toml"]);
    let volume = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["configMap"]["name"] == "gale-config"))
        .expect("a volume of the ConfigMap gale-config");
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume["name"]))
        .expect("the ConfigMap volume mounted");
    assert_eq!(mount["mountPath"], "/etc/gale");
    assert!(mount["subPath"].is_null(), "a subPath mount never sees ConfigMap updates");

    // The user the image runs as, and writable volumes where the config writes.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "the Containerfile's USER");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mounted =
        |path: &str| {
            container["volumeMounts"].as_array().into_iter().flatten().any(|m| {
                m["mountPath"].as_str().is_some_and(|dir| Path::new(path).starts_with(dir) && dir != "/etc/gale")
            })
        };
    for key in ["pid_file", "plugin_cache_dir"] {
        let path = global[key].as_str().unwrap_or_else(|| panic!("{key}"));
        assert!(mounted(path), "{key} = {path:?} is not on a writable volume");
    }

    // The pool is the headless Service, by name and port.
    let tornado = find(&docs, "Service", "tornado");
    assert_eq!(tornado["spec"]["clusterIP"], "None", "the Tornado Service must be headless (one A record per pod)");
    let upstream = config["upstream"].as_table().and_then(|u| u.values().next()).expect("an upstream");
    let server = upstream["servers"][0].as_str().expect("servers[0]");
    assert_eq!(server, format!("tornado:{}", tornado["spec"]["ports"][0]["port"]));

    // The Service and the PodDisruptionBudget select the Deployment's pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = find(&docs, "Service", "gale");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let pdb = find(&docs, "PodDisruptionBudget", "gale");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    assert!(pdb["spec"]["minAvailable"].as_u64().is_some_and(|m| m < replicas), "the PDB must allow one disruption");
}

/// The ConfigMap's gale.toml is a config gale accepts (without --strict: the Service name does not
/// resolve outside the cluster).
#[test]
fn the_configmap_config_passes_gale_check() {
    let (text, _) = gale_toml(&documents());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gale.toml");
    std::fs::write(&file, text).expect("write gale.toml");
    let out = run_gale(&["check", "--config", file.to_str().expect("utf-8 path")], Some(dir.path()));
    assert_eq!(out.code(), Some(0), "gale check on the ConfigMap's gale.toml:\n{}{}", out.stdout, out.stderr);
}

/// The plugins the image ships: every plugin crate under plugins/ but the SDK and the test
/// fixtures (`test-*`).
const SHIPPED: [&str; 3] = ["header_policy.wasm", "static_cache.wasm", "upload_fields.wasm"];

/// A plugin added to plugins/ is shipped in the image too: the Containerfile copies exactly the
/// plugin crates that are not test fixtures.
#[test]
fn the_containerfile_ships_every_bundled_plugin() {
    let repo = paths::repo_root();
    let mut crates: Vec<String> = std::fs::read_dir(repo.join("plugins"))
        .expect("read plugins/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|name| name != "gale-plugin" && !name.starts_with("test-"))
        .map(|name| format!("{}.wasm", name.replace('-', "_")))
        .collect();
    crates.sort();
    assert_eq!(crates, SHIPPED, "the bundled plugins under plugins/");
    let containerfile = std::fs::read_to_string(repo.join("deploy/Containerfile")).expect("read deploy/Containerfile");
    let mut copied: Vec<&str> = containerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/plugins/"))
        .filter(|w| w.ends_with(".wasm"))
        .collect();
    copied.sort_unstable();
    assert_eq!(copied, SHIPPED, "the plugins deploy/Containerfile copies into the image");
}

/// How long one buildah or chroot command may take before the test calls it a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
