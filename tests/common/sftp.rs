//! A throwaway OpenSSH sshd for the SFTP tests (scripts/sftp-server): one
//! per test, on 127.0.0.1, stopped (sessions killed, files removed) on drop.
//! Shared by tests/sftp.rs (the transport) and tests/pipeline_sftp.rs (the
//! pipeline over SFTP).
//!
//! Needs root and openssh-server/openssh-client (scripts/test installs
//! them). Without them [`server`] FAILS with the reason; DPV_SKIP_SFTP=1
//! makes it return `None` instead (and say so on stderr).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dpv_batch::config::SftpTransport;

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sftp-server");

/// A running test server; stopped (sessions killed, files removed) on drop.
pub struct Server {
    pub envfile: PathBuf,
    pub env: HashMap<String, String>,
}

/// Start a server for `test` (its name, for the skip note); `None` (with a
/// note on stderr) when DPV_SKIP_SFTP=1.
pub fn server(test: &str) -> Option<Server> {
    if std::env::var("DPV_SKIP_SFTP").as_deref() == Ok("1") {
        // Straight to stderr: the test harness would swallow eprintln!.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: DPV_SKIP_SFTP=1 (needs root and openssh-server)"
        );
        return None;
    }
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("start")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
    assert!(
        out.status.success(),
        "the SFTP test server did not start (set DPV_SKIP_SFTP=1 to skip these tests \
         on a machine without root or openssh-server):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envfile = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut s = Server {
        envfile,
        env: HashMap::new(),
    };
    s.reload();
    Some(s)
}

impl Server {
    pub fn reload(&mut self) {
        let text = fs::read_to_string(&self.envfile).expect("server env file");
        self.env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    pub fn get(&self, key: &str) -> String {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}", self.envfile.display()))
            .clone()
    }

    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.get(key))
    }

    /// The SFTP account's login folder on disk (inside the chroot).
    pub fn account(&self) -> PathBuf {
        self.path("SFTP_ACCOUNT")
    }

    pub fn port(&self) -> u16 {
        self.get("SFTP_PORT").parse().expect("port")
    }

    /// A config for this server: its key, its known_hosts, quick retries.
    pub fn cfg(&self) -> SftpTransport {
        let mut c = SftpTransport::new(
            &self.get("SFTP_HOST"),
            self.port(),
            &self.get("SFTP_USER"),
            self.path("SFTP_KEY"),
        );
        c.known_hosts = Some(self.path("SFTP_KNOWN_HOSTS"));
        c.retry_ms = 50;
        c.retry_max_ms = 200;
        c.connect_timeout_ms = 5000;
        c.io_timeout_ms = 20_000;
        c
    }

    /// `scripts/sftp-server CMD ENV` (kill, restart, stop); panics on failure.
    pub fn script(&mut self, cmd: &str) {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(cmd)
            .arg(&self.envfile)
            .output()
            .expect("run sftp-server");
        assert!(
            out.status.success(),
            "sftp-server {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.reload();
    }

    /// A directory in the account, owned by the test user like the others.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let dir = self.account().join(name);
        fs::create_dir(&dir).unwrap();
        let meta = fs::metadata(self.account()).unwrap();
        std::os::unix::fs::chown(&dir, Some(meta.uid()), Some(meta.gid())).unwrap();
        dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .arg("stop")
            .arg(&self.envfile)
            .output();
    }
}

/// `ssh-keygen -lf PUB`'s fingerprint (an independent oracle for ours).
pub fn keygen_fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("ssh-keygen -lf {}: {text}", pubkey.display()))
        .to_string()
}
