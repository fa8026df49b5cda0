//! HAProxy (Debian's `haproxy`) as a real L4 balancer in front of several gales: started in the
//! foreground with a config the test writes, its log (server state changes included) on stderr.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::output::{Captured, drain};

/// A running `haproxy -db -f FILE`; killed when dropped.
pub struct HaProxy {
    child: Child,
    stderr: Captured,
    _dir: TempDir,
}

impl HaProxy {
    /// Why HAProxy cannot be run here, if it cannot (not installed).
    pub fn unavailable() -> Option<String> {
        match Command::new("haproxy").arg("-v").output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!("`haproxy -v` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Some(format!("haproxy is not installed ({e}); scripts/setup.sh installs it as root")),
        }
    }

    /// Checks `config` (`haproxy -c`), then starts HAProxy with it, in the network namespace at
    /// `netns` if given. Panics with HAProxy's output if the config is refused.
    #[track_caller]
    pub fn start(config: &str, netns: Option<&Path>) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).expect("write haproxy.cfg");
        let check = Command::new("haproxy").arg("-c").arg("-f").arg(&file).output().expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refused the config:\n{config}\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut command = Command::new("haproxy");
        if let Some(netns) = netns {
            crate::netns::join_on_spawn(&mut command, netns);
        }
        command
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = crate::process::spawn(command).expect("spawn haproxy");
        let (stderr, _) = drain(child.stderr.take().expect("piped stderr"));
        HaProxy { child, stderr, _dir: dir }
    }

    /// What HAProxy logged so far.
    pub fn log(&self) -> String {
        self.stderr.text()
    }

    /// Waits until its log contains `needle`; panics with the log after `timeout`, or if HAProxy
    /// exits.
    #[track_caller]
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait().expect("try_wait haproxy") {
                panic!("haproxy exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "haproxy did not log {needle:?} within {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
