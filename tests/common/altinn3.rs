//! The real `dpv-batch sim-altinn3` for the pipeline's tests: started on a
//! free port, its `sim.toml` read, restarted on the same port, and what it
//! created counted from `DIR/correspondences/*.json`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, root};

pub struct SimA3 {
    child: Child,
    pub root: PathBuf,
    pub port: u16,
    /// The four lines of sim.toml.
    pub toml: String,
    args: Vec<String>,
}

impl SimA3 {
    /// Start on any free port with `extra` arguments (faults, registers).
    pub fn start(root: &Path, extra: &[&str]) -> SimA3 {
        Self::start_on(root, 0, extra.iter().map(|s| s.to_string()).collect())
    }

    fn start_on(dir: &Path, port: u16, args: Vec<String>) -> SimA3 {
        fs::create_dir_all(dir).expect("sim root");
        let _ = fs::remove_file(dir.join("sim.toml"));
        let child = Command::new(bin())
            .arg("sim-altinn3")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(dir)
            .arg("--client-key")
            .arg(root().join("tests/fixtures/altinn3/client.pub.pem"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim-altinn3");
        let started = Instant::now();
        let toml = loop {
            if let Ok(t) = fs::read_to_string(dir.join("sim.toml")) {
                if t.lines().count() >= 4 {
                    break t;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sim-altinn3 never wrote sim.toml"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let api = toml
            .lines()
            .find_map(|l| l.strip_prefix("api_base = \""))
            .expect("api_base");
        let port = api
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("port in api_base");
        SimA3 {
            child,
            root: dir.to_path_buf(),
            port,
            toml,
            args,
        }
    }

    /// Stop it (SIGKILL) and start it again on the same port and root.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        // The port is free once the old process is gone; a new bind may
        // still race a TIME_WAIT on some kernels, so try for a while.
        let next = Self::start_on(&self.root.clone(), port, self.args.clone());
        *self = next;
    }

    /// Like [`SimA3::restart`], with other arguments.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.args = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A `[transport.altinn3]` section for this simulator, with the test key
    /// copied into `dir` (mode 0600), and `extra` keys.
    pub fn section(&self, dir: &Path, extra: &str) -> String {
        let key = dir.join("client.pem");
        fs::copy(root().join("tests/fixtures/altinn3/client.pem"), &key).expect("key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
        format!(
            "[transport.altinn3]\nenvironment = \"custom\"\nroute = \"direct\"\n{}\
             client_id = \"dpv-batch-test\"\nprivate_key = \"{}\"\nkey_id = \"test\"\n\
             poll_interval = \"1s\"\n{extra}\n\
             [transport.altinn3.resources]\n\"4255\" = \"eformidling-dpv-administrasjon\"\n\
             \"5504\" = {{ resource = \"eformidling-dpv-taushetsbelagt\", confidential = true }}\n",
            self.toml,
            key.display()
        )
    }

    /// Every correspondence it created (its stored JSON).
    pub fn created(&self) -> Vec<serde_json::Value> {
        let dir = self.root.join("correspondences");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                // A file being rewritten may be caught half-written: skip it
                // (callers count after the runs are over).
                fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
            })
            .collect()
    }

    /// SendersReference -> how many correspondences were created with it.
    pub fn refs(&self) -> BTreeMap<String, usize> {
        let mut refs = BTreeMap::new();
        for c in self.created() {
            let r = c["correspondence"]["sendersReference"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *refs.entry(r).or_insert(0) += 1;
        }
        refs
    }

    /// The recipient reads a published letter (the simulator's test hook).
    pub fn mark_read(&self, correspondence_id: &str) -> bool {
        Command::new(bin())
            .args(["sim-altinn3", "--root"])
            .arg(&self.root)
            .args(["--mark-read", correspondence_id])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for SimA3 {
    fn drop(&mut self) {
        self.kill();
    }
}
