//! The store (D10, D11), the sweeper (D12) and the cleanup table.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn open(path: &Path, mode: u32, create: bool) -> Result<Store, StoreConfigError> {
    Store::open(path, &StoreOptions { mode, create })
}

#[test]
fn d10_random_names_and_exact_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in [0o600, 0o640, 0o660, 0o666] {
        let store = open(dir.path(), mode, false).expect("store");
        let (name, _file) = store.create_file().expect("create");
        assert!(is_store_name(&name), "{name}");
        // Exactly the configured mode, whatever the umask.
        assert_eq!(mode_of(&store.file_path(&name)), mode, "{mode:o}");
        store.remove(&name).expect("remove");
    }
    let store = open(dir.path(), 0o600, false).expect("store");
    let a = store.create_file().expect("a").0;
    let b = store.create_file().expect("b").0;
    assert_ne!(a, b);
}

#[test]
fn d10_planted_symlink_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("victim");
    fs::write(&target, b"precious").expect("victim");
    let store = open(dir.path(), 0o600, false).expect("store");
    let name = "0123456789abcdef0123456789abcdef";
    std::os::unix::fs::symlink(&target, store.file_path(name)).expect("plant");
    let err = store.open_new(name).expect_err("must not open through a symlink");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    // A dangling symlink must not be followed to create its target either.
    let dangling = outside.path().join("created-through-link");
    let name2 = "fedcba9876543210fedcba9876543210";
    std::os::unix::fs::symlink(&dangling, store.file_path(name2)).expect("plant");
    assert!(store.open_new(name2).is_err());
    assert!(!dangling.exists());
    assert_eq!(fs::read(&target).expect("victim"), b"precious");
}

#[test]
fn d11_store_checks_never_chmod() {
    let base = tempfile::tempdir().expect("tempdir");
    let missing = base.path().join("spool");
    assert!(matches!(open(&missing, 0o600, false), Err(StoreConfigError::Missing(_))));
    let store = open(&missing, 0o600, true).expect("created");
    assert_eq!(mode_of(&missing), 0o700);
    assert_eq!(store.path(), fs::canonicalize(&missing).expect("canon"));

    for unsafe_mode in [0o777, 0o1777, 0o770, 0o720] {
        fs::set_permissions(&missing, fs::Permissions::from_mode(unsafe_mode)).expect("chmod");
        assert!(matches!(open(&missing, 0o600, true), Err(StoreConfigError::Unsafe { .. })), "{unsafe_mode:o}");
        assert_eq!(mode_of(&missing), unsafe_mode, "never chmod an existing dir");
    }
    fs::set_permissions(&missing, fs::Permissions::from_mode(0o750)).expect("chmod");
    open(&missing, 0o600, false).expect("0750 is fine");
    assert_eq!(mode_of(&missing), 0o750);

    assert!(matches!(open(Path::new("relative/store"), 0o600, true), Err(StoreConfigError::NotAbsolute(_))));
    let plain = base.path().join("file");
    fs::write(&plain, b"").expect("file");
    assert!(matches!(open(&plain, 0o600, false), Err(StoreConfigError::NotADirectory(_))));
    assert!(matches!(open(base.path(), 0o700, false), Err(StoreConfigError::BadMode(0o700))));
    assert!(std::fs::read_dir(&missing).expect("dir").next().is_none(), "probe removed");
}

fn age(path: &Path, by: Duration) {
    let f = fs::File::open(path).expect("open");
    f.set_modified(SystemTime::now() - by).expect("set mtime");
}

#[test]
fn d12_sweep_removes_only_old_store_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 0o600, false).expect("store");
    let hour = Duration::from_secs(3600);
    let old = store.create_file().expect("old").0;
    age(&store.file_path(&old), 2 * hour);
    let fresh = store.create_file().expect("fresh").0;
    let foreign = dir.path().join("keep.txt");
    fs::write(&foreign, b"").expect("foreign");
    age(&foreign, 2 * hour);
    let dir_like = dir.path().join("00000000000000000000000000000000");
    fs::create_dir(&dir_like).expect("dir");
    age(&dir_like, 2 * hour);

    let report = store.sweep(hour).expect("sweep");
    assert_eq!(report, SweepReport { removed: 1, failed: 0 });
    assert!(!store.file_path(&old).exists());
    assert!(store.file_path(&fresh).exists());
    assert!(foreign.exists() && dir_like.exists());
    assert_eq!(sweep_interval(hour), Duration::from_secs(600));
    assert_eq!(sweep_interval(Duration::from_secs(2)), Duration::from_secs(1));
    assert_eq!(sweep_interval(Duration::from_secs(400)), Duration::from_secs(100));
}

#[tokio::test]
async fn d12_sweeper_task_sweeps_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 0o600, false).expect("store");
    let old = store.create_file().expect("old").0;
    age(&store.file_path(&old), Duration::from_secs(7200));
    let task = spawn_sweeper(store.clone(), Duration::from_secs(3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.file_path(&old).exists() {
        assert!(tokio::time::Instant::now() < deadline, "sweeper did not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}

async fn one_upload(cfg: &UploadConfig) -> ReceivedUpload {
    let data = body(&[file("file", "a.txt", "text/plain", TXT)]);
    receive(stream::iter(chunks(&data, 0)), &request(B), cfg, &NativeFieldPolicy::reference()).await.expect("upload")
}

#[tokio::test]
async fn cleanup_table() {
    let (_dir, cfg) = config();
    for (status, deleted) in [
        (200, true),
        (400, true),
        (404, true),
        (499, true),
        (201, false),
        (204, false),
        (302, false),
        (500, false),
        (502, false),
        (503, false),
        (413, false),
    ] {
        let up = one_upload(&cfg).await;
        let path = up.files.files()[0].path.clone();
        let outcome = up.files.finish(status).await;
        assert_eq!(path.exists(), !deleted, "{status}");
        let want = if deleted { CleanupOutcome::Deleted(1) } else { CleanupOutcome::Kept(1) };
        assert_eq!(outcome, want, "{status}");
        let _ = fs::remove_file(&path);
    }
}

#[tokio::test]
async fn dropping_unfinished_counts_as_499() {
    let (_dir, mut cfg) = config();
    let up = one_upload(&cfg).await;
    let path = up.files.files()[0].path.clone();
    drop(up);
    assert!(super::eventually(|| !path.exists()), "499 is in the reference configuration's list");

    cfg.cleanup = CleanupPolicy::new([200..=200]).expect("policy");
    let up = one_upload(&cfg).await;
    let path = up.files.files()[0].path.clone();
    drop(up);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(path.exists(), "499 not listed: kept");
}

#[tokio::test]
async fn backend_moved_the_file() {
    let (dir, cfg) = config();
    let up = one_upload(&cfg).await;
    let moved = dir.path().join("moved-by-backend");
    fs::rename(&up.files.files()[0].path, &moved).expect("move");
    assert_eq!(up.files.finish(200).await, CleanupOutcome::Deleted(1));
    assert!(moved.exists());
}

#[tokio::test]
async fn sink_hashes_and_writes_alike_on_one_thread_or_two() {
    use crate::upload::store::{BATCH_BYTES, FileSink, hex};
    use sha2::Digest as _;
    // Uneven chunks, with empty ones, across several batches and a short last one.
    let payload: Vec<u8> = (0..3 * BATCH_BYTES + 777).map(|i| (i * 31 % 251) as u8).collect();
    let want_sha = hex(&sha2::Sha256::digest(&payload));
    for apart in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 0o600, false).expect("store");
        let (name, file) = store.create_file().expect("create");
        let mut sink = FileSink::with_threads(file, true, apart);
        let mut rest = &payload[..];
        for size in [0, 1, 70_000, 0, 300_000, 5].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            sink.write(Bytes::copy_from_slice(chunk)).await.expect("write");
            rest = after;
        }
        let digests = sink.finish().await.expect("finish");
        assert_eq!(digests.size, payload.len() as u64, "apart={apart}");
        assert_eq!(digests.md5, hex(&md5_of(&payload)), "apart={apart}");
        assert_eq!(digests.sha256.as_deref(), Some(want_sha.as_str()), "apart={apart}");
        assert_eq!(fs::read(store.file_path(&name)).expect("read"), payload, "apart={apart}");
    }
}

#[tokio::test]
async fn sink_reports_a_full_disk_on_one_thread_or_two() {
    use crate::upload::store::{BATCH_BYTES, FileSink};
    // /dev/full fails every write with ENOSPC: the upload must end in 507, not a short file.
    for apart in [false, true] {
        let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let mut sink = FileSink::with_threads(full, false, apart);
        let mut failed = None;
        for _ in 0..4 {
            if let Err(e) = sink.write(Bytes::from(vec![7u8; BATCH_BYTES / 2])).await {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => sink.finish().await.expect_err("a full disk must fail the upload"),
        };
        assert!(err.is_no_space(), "apart={apart}: {err}");
    }
}
