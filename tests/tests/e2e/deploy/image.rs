//! deploy/Containerfile built with buildah, where buildah runs (skipped, saying why, elsewhere).
//!
//! The base images of the Containerfile cannot be pulled in every CI (the network may reach
//! package registries only), so the test builds the final stage as a release does, with the two
//! things a registry would give replaced by local stand-ins: the `build` stage by a directory
//! holding the gale under test and the bundled plugins (`--build-context build=DIR`), and the
//! distroless base by an image made here of exactly what distroless/cc gives gale (the libraries
//! `ldd` lists, a `nonroot` user 65532). Then it checks the image: its user, entry point and
//! files, no shell, and that its gale runs there as that user and loads its plugins.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gale_tests::paths;

use super::{COMMAND_TIMEOUT, SHIPPED};

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; panics if it hangs.
#[track_caller]
fn run(command: &mut Command) -> Output {
    let what = format!("{command:?}");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let owned = std::mem::replace(command, Command::new("true"));
    let mut child = gale_tests::process::spawn(owned).unwrap_or_else(|e| panic!("start {what}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[track_caller]
fn ok(command: &mut Command) -> String {
    let what = format!("{command:?}");
    let out = run(command);
    assert!(out.status.success(), "{what}: {}\n{}", out.status, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Images and containers this test made, removed when it ends, pass or fail.
struct Buildah {
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = run(Command::new("buildah").args(["rm", c]));
        }
        for i in &self.images {
            let _ = run(Command::new("buildah").args(["rmi", "--force", i]));
        }
    }
}

/// Why buildah cannot build here, if it cannot: not installed, or a trivial build fails (no user
/// namespaces, no storage driver). Not root: the test also runs the image's gale with chroot.
fn cannot_build(work: &Path, buildah: &mut Buildah) -> Option<String> {
    match Command::new("buildah").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("`buildah --version` failed: {}", text(&out))),
        Err(e) => return Some(format!("buildah is not installed ({e}); scripts/setup.sh installs it as root")),
    }
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the image's gale is run with chroot)".into());
    }
    let probe = work.join("probe");
    std::fs::create_dir_all(&probe).expect("mkdir");
    std::fs::write(probe.join("Containerfile"), "FROM scratch\nCOPY Containerfile /probe\n").expect("write");
    let tag = format!("localhost/gale-test-probe-{}", std::process::id());
    buildah.images.push(tag.clone());
    let out = run(Command::new("buildah").args(["bud", "--isolation", "chroot", "-t", &tag]).arg(&probe));
    (!out.status.success()).then(|| format!("buildah cannot build here: {}", text(&out)))
}

/// A stand-in for gcr.io/distroless/cc-debian12:nonroot: the libraries gale links (as `ldd`
/// lists them) and the `nonroot` user, nothing else.
fn runtime_base(work: &Path, gale: &Path, tag: &str) {
    let dir = work.join("runtime");
    let root = dir.join("rootfs");
    let ldd = ok(Command::new("ldd").arg(gale));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let source = std::fs::canonicalize(lib).unwrap_or_else(|e| panic!("{lib}: {e}"));
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&source, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    }
    std::fs::create_dir_all(root.join("etc")).expect("mkdir etc");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir tmp");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
    std::fs::write(dir.join("Containerfile"), "FROM scratch\nCOPY rootfs/ /\n").expect("write");
    ok(Command::new("buildah").args(["bud", "--isolation", "chroot", "-t", tag]).arg(&dir));
}

/// The file system the `build` stage would leave: /out with the gale under test and the shipped
/// plugins. Returns the stage's root.
fn build_stage(work: &Path) -> PathBuf {
    let stage = work.join("stage");
    let out = stage.join("out");
    std::fs::create_dir_all(out.join("plugins")).expect("mkdir");
    std::fs::copy(paths::gale_bin(), out.join("gale")).expect("copy gale");
    let built = paths::repo_root().join("target/plugins");
    for plugin in SHIPPED {
        let from = built.join(plugin);
        assert!(from.is_file(), "{} is missing: run scripts/build-plugins.sh", from.display());
        std::fs::copy(&from, out.join("plugins").join(plugin)).expect("copy plugin");
    }
    stage
}

/// A config using a shipped plugin, with the paths of the Kubernetes ConfigMap.
const IMAGE_CONFIG: &str = r#"[global]
plugin_dir = "/usr/lib/gale/plugins"
plugin_cache_dir = "/var/cache/gale/plugins"

[upstream.tornado]
servers = ["127.0.0.1:8000"]

[[server]]
listen = ["127.0.0.1:0"]

[[server.location]]
path = "/"
proxy = { pass = "tornado" }
plugins = [{ name = "header-policy", config = { request = { set = { "x-via" = "gale" } } } }]
"#;

#[test]
fn the_containerfile_builds_an_image_that_runs_gale_as_nonroot() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut buildah = Buildah { images: Vec::new(), containers: Vec::new() };
    if let Some(why) = cannot_build(work.path(), &mut buildah) {
        eprintln!(
            "skipped: the container image test: {why}\n  \
             build the image where registries are reachable with: buildah build -f deploy/Containerfile -t gale ."
        );
        return;
    }
    let id = std::process::id();
    let (base, image) = (format!("localhost/gale-test-runtime-{id}"), format!("localhost/gale-test-image-{id}"));
    buildah.images.extend([base.clone(), image.clone()]);
    let stage = build_stage(work.path());
    runtime_base(work.path(), &stage.join("out/gale"), &base);

    let repo = paths::repo_root();
    ok(Command::new("buildah")
        .args(["bud", "--isolation", "chroot", "--pull=never", "-f"])
        .arg(repo.join("deploy/Containerfile"))
        .arg("--build-context")
        .arg(format!("build={}", stage.display()))
        .args(["--build-arg", &format!("RUNTIME_IMAGE={base}"), "-t", &image])
        .arg(&repo));

    // The image's settings.
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(Command::new("buildah").args(["inspect", "--type", "image", &image])))
            .expect("buildah inspect JSON");
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/gale"]), "{config}");
    assert_eq!(config["Cmd"], serde_json::json!(["run", "--config", "/etc/gale/gale.toml"]), "{config}");

    // Its files: gale, exactly the shipped plugins, no shell.
    let container = ok(Command::new("buildah").args(["from", "--pull-never", &image])).trim().to_owned();
    buildah.containers.push(container.clone());
    let mnt = PathBuf::from(ok(Command::new("buildah").args(["mount", &container])).trim());
    assert!(mnt.join("usr/local/bin/gale").is_file(), "no /usr/local/bin/gale in the image");
    let mut plugins: Vec<String> = std::fs::read_dir(mnt.join("usr/lib/gale/plugins"))
        .expect("/usr/lib/gale/plugins in the image")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    plugins.sort();
    assert_eq!(plugins, SHIPPED, "the image's plugins");
    for shell in ["bin/sh", "bin/bash", "usr/bin/sh"] {
        assert!(!mnt.join(shell).exists(), "the image has a shell at /{shell}");
    }

    // Its gale runs there as nonroot, with nothing but the image's files, and loads a plugin.
    let cache = mnt.join("var/cache/gale");
    std::fs::create_dir_all(&cache).expect("mkdir the cache volume");
    std::fs::create_dir_all(mnt.join("etc/gale")).expect("mkdir /etc/gale");
    std::fs::write(mnt.join("etc/gale/gale.toml"), IMAGE_CONFIG).expect("write the config");
    ok(Command::new("chown").args(["65532:65532"]).arg(&cache));
    let in_image = |args: &[&str]| {
        run(Command::new("chroot").arg("--userspec=65532:65532").arg(&mnt).arg("/usr/local/bin/gale").args(args))
    };
    let version = in_image(&["--version"]);
    assert!(version.status.success() && text(&version).starts_with("gale "), "gale --version: {}", text(&version));
    let check = in_image(&["check", "--config", "/etc/gale/gale.toml"]);
    assert!(check.status.success(), "gale check in the image: {}\n{}", check.status, text(&check));
    let compiled = std::fs::read_dir(cache.join("plugins")).map(|d| d.count()).unwrap_or(0);
    assert!(compiled > 0, "gale check compiled no plugin into /var/cache/gale/plugins");
}
