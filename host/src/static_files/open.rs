//! Opening a file under the base directory with the configured symlink policy.
//!
//! `path.rs` guarantees that the names only walk down (no `..`, no separators). What can still
//! leave the base directory is a symbolic link, so:
//! - `never`: every name is opened with `O_NOFOLLOW` relative to its parent's descriptor
//!   (`openat`), so no link is ever followed, and nothing can be swapped between check and use;
//! - `inside_root`: the same walk first (the common case, no links, costs one `openat` per name);
//!   on meeting a link, the path is resolved with `realpath`, must lie under the resolved base,
//!   and is then walked again with `O_NOFOLLOW` from the resolved base. A link changed in between
//!   makes the second walk fail; it can never make it leave the base;
//! - `always`: one plain `open` of the joined path (nginx's default `disable_symlinks off`).
//!
//! All of this blocks, so the caller runs it on the blocking pool.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::config::FollowSymlinks;

/// What an opened name turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file: can be served.
    File,
    /// A directory: its index may be served.
    Dir,
    /// A FIFO, socket or device: never served (nginx: "is not a regular file", 404).
    Other,
}

/// An opened name with the facts the response needs.
#[derive(Debug)]
pub(crate) struct Opened {
    pub file: File,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
}

/// Why a name could not be opened, already sorted by the answer it gets.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Missing, not a directory where one was needed, or refused by the symlink policy.
    NotFound,
    /// The file system denied access (nginx answers 403 too).
    Forbidden,
    /// Anything else: an internal error.
    Io(std::io::Error),
}

/// The walk met a symbolic link it did not follow.
enum Walk {
    Symlink,
    Failed(OpenError),
}

impl From<OpenError> for Walk {
    fn from(e: OpenError) -> Self {
        Walk::Failed(e)
    }
}

/// Opens `base/names...` under `policy`. `names` are plain names from `path.rs`.
pub(crate) fn open(base: &Path, names: &[OsString], policy: FollowSymlinks) -> Result<Opened, OpenError> {
    match policy {
        FollowSymlinks::Always => open_following(base, names),
        FollowSymlinks::Never => walk(base, names).map_err(refuse_links),
        FollowSymlinks::InsideRoot => match walk(base, names) {
            Err(Walk::Symlink) => open_resolved(base, names),
            other => other.map_err(refuse_links),
        },
    }
}

fn refuse_links(walk: Walk) -> OpenError {
    match walk {
        Walk::Symlink => OpenError::NotFound,
        Walk::Failed(e) => e,
    }
}

/// `inside_root` after meeting a link: resolve everything, check containment, walk again.
/// Every failure here is `NotFound`: a dangling link to outside and a link to an existing file
/// outside must look the same, or the answer would reveal what exists outside the base.
fn open_resolved(base: &Path, names: &[OsString]) -> Result<Opened, OpenError> {
    let real_base = std::fs::canonicalize(base).map_err(|_| OpenError::NotFound)?;
    let real_path = std::fs::canonicalize(joined(base, names)).map_err(|_| OpenError::NotFound)?;
    let inside = real_path.strip_prefix(&real_base).map_err(|_| OpenError::NotFound)?;
    let mut real_names = Vec::new();
    for component in inside.components() {
        match component {
            Component::Normal(name) => real_names.push(name.to_owned()),
            _ => return Err(OpenError::NotFound),
        }
    }
    walk(&real_base, &real_names).map_err(refuse_links)
}

/// Opens `base`, then each name relative to its parent without following links.
fn walk(base: &Path, names: &[OsString]) -> Result<Opened, Walk> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Some((last, parents)) = names.split_last() else {
        return Ok(open_base(base)?);
    };
    // The base itself is the operator's choice: links in it are followed.
    let mut dir = rustix::fs::openat(CWD, base, dir_flags, Mode::empty()).map_err(classify)?;
    for name in parents {
        dir = match rustix::fs::openat(&dir, name, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR | Errno::LOOP) if is_symlink(&dir, name) => {
                return Err(Walk::Symlink);
            }
            Err(e) => return Err(classify(e).into()),
        };
    }
    match rustix::fs::openat(&dir, last, file_flags() | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(describe(fd)?),
        // With O_NOFOLLOW, ELOOP means the last name is a link.
        Err(Errno::LOOP) => Err(Walk::Symlink),
        Err(e) => Err(classify(e).into()),
    }
}

/// The base itself, which may be a directory or (an `alias` to one file) a regular file.
fn open_base(base: &Path) -> Result<Opened, OpenError> {
    let fd = rustix::fs::openat(CWD, base, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(classify)?;
    let opened = describe(fd)?;
    if opened.kind != Kind::File {
        return Ok(opened);
    }
    let fd = rustix::fs::openat(CWD, base, file_flags(), Mode::empty()).map_err(classify)?;
    describe(fd)
}

/// `always`: the kernel follows every link.
fn open_following(base: &Path, names: &[OsString]) -> Result<Opened, OpenError> {
    let fd = rustix::fs::openat(CWD, joined(base, names), file_flags(), Mode::empty()).map_err(classify)?;
    describe(fd)
}

/// Read-only; non-blocking so that opening a FIFO cannot hang a thread; no controlling tty.
fn file_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

fn joined(base: &Path, names: &[OsString]) -> PathBuf {
    let mut path = base.to_path_buf();
    path.extend(names);
    path
}

fn is_symlink(dir: &OwnedFd, name: &OsString) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

fn describe(fd: OwnedFd) -> Result<Opened, OpenError> {
    let st = rustix::fs::fstat(&fd).map_err(classify)?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        _ => Kind::Other,
    };
    let mtime = u64::try_from(st.st_mtime).map(|secs| UNIX_EPOCH + Duration::from_secs(secs)).unwrap_or(UNIX_EPOCH);
    Ok(Opened { file: File::from(fd), kind, size: u64::try_from(st.st_size).unwrap_or(0), mtime })
}

/// nginx's mapping: missing or not-a-directory is 404, denied is 403.
fn classify(e: Errno) -> OpenError {
    match e {
        Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG | Errno::LOOP => OpenError::NotFound,
        Errno::ACCESS | Errno::PERM => OpenError::Forbidden,
        other => OpenError::Io(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    /// root/{a.txt, sub/b.txt, in_link -> sub/b.txt, dir_link -> sub, abs_in -> <root>/sub,
    /// out_file -> ../outside/secret.txt, out_dir -> ../outside, abs_out -> <outside>,
    /// dangling_out -> ../outside/missing, loop -> loop}; outside/secret.txt.
    fn tree() -> Tree {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(root.join("a.txt"), "a").expect("write");
        std::fs::write(root.join("sub/b.txt"), "bb").expect("write");
        std::fs::write(outside.join("secret.txt"), "SECRET").expect("write");
        symlink("sub/b.txt", root.join("in_link")).expect("symlink");
        symlink("sub", root.join("dir_link")).expect("symlink");
        symlink(root.join("sub"), root.join("abs_in")).expect("symlink");
        symlink("../outside/secret.txt", root.join("out_file")).expect("symlink");
        symlink("../outside", root.join("out_dir")).expect("symlink");
        symlink(&outside, root.join("abs_out")).expect("symlink");
        symlink("../outside/missing", root.join("dangling_out")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");
        Tree { _tmp: tmp, root, outside }
    }

    fn names(path: &str) -> Vec<OsString> {
        path.split('/').filter(|s| !s.is_empty()).map(OsString::from).collect()
    }

    fn size(t: &Tree, path: &str, policy: FollowSymlinks) -> Result<u64, String> {
        match open(&t.root, &names(path), policy) {
            Ok(o) => Ok(o.size),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    #[test]
    fn plain_files_and_dirs_open_under_every_policy() {
        let t = tree();
        for policy in [FollowSymlinks::InsideRoot, FollowSymlinks::Always, FollowSymlinks::Never] {
            assert_eq!(size(&t, "a.txt", policy), Ok(1));
            assert_eq!(size(&t, "sub/b.txt", policy), Ok(2));
            let dir = open(&t.root, &names("sub"), policy).expect("dir");
            assert_eq!(dir.kind, Kind::Dir);
            let base = open(&t.root, &[], policy).expect("base");
            assert_eq!(base.kind, Kind::Dir);
            assert_eq!(size(&t, "missing", policy), Err("NotFound".into()));
            assert_eq!(size(&t, "a.txt/x", policy), Err("NotFound".into()));
            assert_eq!(size(&t, "missing/x", policy), Err("NotFound".into()));
        }
    }

    #[test]
    fn inside_root_follows_links_that_stay_inside() {
        let t = tree();
        let p = FollowSymlinks::InsideRoot;
        assert_eq!(size(&t, "in_link", p), Ok(2));
        assert_eq!(size(&t, "dir_link/b.txt", p), Ok(2));
        assert_eq!(size(&t, "abs_in/b.txt", p), Ok(2));
    }

    #[test]
    fn inside_root_never_leaves_root() {
        let t = tree();
        let p = FollowSymlinks::InsideRoot;
        for path in ["out_file", "out_dir/secret.txt", "abs_out/secret.txt", "dangling_out", "loop"] {
            assert_eq!(size(&t, path, p), Err("NotFound".into()), "{path}");
        }
    }

    #[test]
    fn never_refuses_every_link() {
        let t = tree();
        let p = FollowSymlinks::Never;
        for path in ["in_link", "dir_link/b.txt", "abs_in/b.txt", "out_file", "out_dir/secret.txt", "loop"] {
            assert_eq!(size(&t, path, p), Err("NotFound".into()), "{path}");
        }
    }

    #[test]
    fn always_follows_every_link() {
        let t = tree();
        let p = FollowSymlinks::Always;
        assert_eq!(size(&t, "in_link", p), Ok(2));
        assert_eq!(size(&t, "out_file", p), Ok(6));
        assert_eq!(size(&t, "loop", p), Err("NotFound".into()));
    }

    #[test]
    fn a_base_that_is_itself_a_link_is_followed() {
        let t = tree();
        let link = t.outside.join("root_link");
        symlink(&t.root, &link).expect("symlink");
        for policy in [FollowSymlinks::InsideRoot, FollowSymlinks::Never] {
            let o = open(&link, &names("sub/b.txt"), policy).expect("served");
            assert_eq!(o.size, 2);
        }
        assert_eq!(open(&link, &names("in_link"), FollowSymlinks::InsideRoot).expect("in").size, 2);
    }

    #[test]
    fn a_base_that_is_a_file_is_served_for_an_empty_path() {
        let t = tree();
        for policy in [FollowSymlinks::InsideRoot, FollowSymlinks::Always, FollowSymlinks::Never] {
            let o = open(&t.root.join("a.txt"), &[], policy).expect("file");
            assert_eq!((o.kind, o.size), (Kind::File, 1));
            let mut buf = [0u8; 1];
            std::os::unix::fs::FileExt::read_at(&o.file, &mut buf, 0).expect("readable");
        }
    }

    #[test]
    fn fifos_are_not_files_and_do_not_block() {
        let t = tree();
        rustix::fs::mknodat(CWD, t.root.join("fifo"), FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).expect("mkfifo");
        let o = open(&t.root, &names("fifo"), FollowSymlinks::InsideRoot).expect("opened");
        assert_eq!(o.kind, Kind::Other);
    }
}
