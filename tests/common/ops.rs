//! The operator-command workspace shared by `tests/operator.rs` and
//! `tests/redteam9.rs`: a config with the local transport (`altinn/`) and
//! the folder simulator as Altinn, and the few things those tests do to it
//! (run once, a command, `status --json`, the journal, a stop point).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::{bin, drop_careful};

pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::with("")
    }

    /// A workspace whose config ends with `extra` (more sections).
    pub fn with(extra: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            r#"
[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"
[intake]
ready = "rename"
[sender]
system_user_code = "ABC-123"
sequence_numbers = true
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 50
{extra}"#
        );
        fs::write(dir.path().join("dpv.toml"), config).expect("config");
        for sub in ["inbox", "altinn"] {
            fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Workspace { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        drop_careful(&self.path("inbox"), name, bytes);
    }

    /// The folder simulator answering in `altinn/` (no confirmations).
    pub fn sim(&self) -> Killed {
        Killed(
            Command::new(bin())
                .args(["sim", "--poll-ms", "10", "--no-confirmations", "--root"])
                .arg(self.path("altinn"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sim"),
        )
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(self.path("dpv.toml"))
            .output()
            .expect("run dpv-batch")
    }

    /// A command that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn run_once(&self) {
        self.ok(&["run", "--once", "--timeout", "60s"]);
    }

    pub fn names(&self, sub: &str) -> BTreeSet<String> {
        match fs::read_dir(self.path(sub)) {
            Ok(d) => d
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn status_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["status", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).expect("status json")
    }

    /// The ids `status --json` lists with these filters.
    pub fn ids(&self, extra: &[&str]) -> Vec<i64> {
        self.status_json(extra)
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    }

    pub fn journal(&self) -> Box<dpv_batch::journal::Journal> {
        dpv_batch::journal::open(&self.path("state/journal.sqlite")).expect("journal")
    }

    /// Start `args` with a stop point (`DPV_BATCH_TEST_STOP_AT`); return
    /// once it stands there. Dropping the result kills it (SIGKILL).
    pub fn stopped_at(&self, args: &[&str], stop: &str) -> Killed {
        let mut child = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(self.path("dpv.toml"))
            .env("DPV_BATCH_TEST_STOP_AT", stop)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let reached = BufReader::new(stderr)
            .lines()
            .any(|l| l.is_ok_and(|l| l == format!("stop point: {stop}")));
        assert!(reached, "{args:?} never reached {stop}");
        Killed(child)
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn set_names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Wait (up to 60 s) until `cond` holds; false if it never did.
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Make `path` look last written `ago`.
pub fn set_mtime(path: &Path, ago: Duration) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.set_modified(SystemTime::now() - ago).expect("set mtime");
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
