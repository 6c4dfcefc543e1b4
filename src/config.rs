//! The one configuration file (TOML). Only this module knows TOML.
//!
//! Every key has a default except the folders and the sender, so a config
//! can be a dozen lines. `dpv-batch check-config` runs [`Config::load`] and
//! [`Config::check`] and prints every problem at once, in words an operator
//! can act on, because a daemon that dies at 02:00 on a typo is the worst
//! kind of failure.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub paths: Paths,
    #[serde(default)]
    pub intake: Intake,
    pub sender: Sender,
    #[serde(default)]
    pub package: Package,
    #[serde(default)]
    pub validate: Validate,
    pub transport: Transport,
    #[serde(default)]
    pub run: Run,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// Where the fagsystem drops files.
    pub inbox: PathBuf,
    /// Where receipts appear for the fagsystem.
    pub outbox: PathBuf,
    /// Rejected inputs, each with NAME.errors.txt beside it.
    pub failed: PathBuf,
    /// Inputs whose letters reached Altinn.
    pub archive: PathBuf,
    /// Journal (SQLite) and staging; same filesystem as the inbox.
    pub state: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ready {
    /// Size and mtime unchanged for `stable_for_ms`.
    Stable,
    /// A marker `NAME.done` says NAME is complete.
    DoneFile,
    /// The writer renames from a temporary name: every other name is complete.
    Rename,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intake {
    pub ready: Ready,
    pub stable_for_ms: u64,
}

impl Default for Intake {
    fn default() -> Self {
        Intake {
            ready: Ready::Stable,
            stable_for_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub system_user_code: String,
    /// When true, dpv-batch assigns SequenceNo itself, gapless per SystemUserCode.
    #[serde(default)]
    pub sequence_numbers: bool,
    /// The first SequenceNo to use for a SystemUserCode dpv-batch has not
    /// numbered before (Altinn's counter may already be further on).
    #[serde(default = "one")]
    pub first_sequence_no: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Package {
    /// A part is closed before it would pass this many bytes (a letter larger
    /// than this on its own makes a part of its own).
    pub max_part_bytes: u64,
    /// Most letters in one part.
    pub max_part_letters: u64,
}

impl Default for Package {
    fn default() -> Self {
        Package {
            max_part_bytes: 100 * 1024 * 1024,
            max_part_letters: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Validate {
    pub max_attachment_bytes: u64,
}

impl Default for Validate {
    fn default() -> Self {
        Validate {
            max_attachment_bytes: 100 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Local,
    Sftp,
    Altinn3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    pub kind: TransportKind,
    pub local: Option<LocalTransport>,
    pub sftp: Option<SftpTransport>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTransport {
    /// A folder standing in for Altinn's SFTP account.
    pub root: PathBuf,
}

/// `[transport.sftp]`: an SFTP account (Altinn's batch area). Local paths
/// (keys, known_hosts) are relative to the config file; the remote folders
/// are relative to the account's login folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpTransport {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key file (OpenSSH or PEM format). Key authentication only.
    pub private_key: PathBuf,
    /// A file holding the key's passphrase (first line). Without it, the
    /// passphrase comes from the environment variable `DPV_SFTP_PASSPHRASE`
    /// when that is set. Never in this file.
    #[serde(default)]
    pub private_key_passphrase_file: Option<PathBuf>,
    /// OpenSSH known_hosts file with the server's key (plain or hashed).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Pinned host key fingerprints, `SHA256:...` as `ssh-keygen -lf` prints.
    #[serde(default)]
    pub host_key_fingerprints: Vec<String>,
    #[serde(default = "default_upload_dir")]
    pub upload_dir: String,
    #[serde(default = "default_receipt_dir")]
    pub receipt_dir: String,
    #[serde(default = "default_confirmation_dir")]
    pub confirmation_dir: String,
    /// When set, inbound files are moved here once journalled instead of deleted.
    #[serde(default)]
    pub processed_receipt_dir: Option<String>,
    /// Ask the server to flush an upload to its disk (fsync@openssh.com,
    /// when offered) before it gets its final name, so a server crash
    /// cannot leave a truncated batch under that name. Costs a few percent
    /// of throughput on a large file.
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// TCP connect and SSH handshake limit.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for any one answer from the server (0: none; not advised).
    #[serde(default = "default_io_timeout_ms")]
    pub io_timeout_ms: u64,
    /// SSH keepalive interval (0: off).
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u64,
    /// Tries per operation on transient errors (the pipeline retries later).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// First pause between tries; doubled each time, with jitter, up to `retry_max_ms`.
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_upload_dir() -> String {
    "upload".into()
}
fn default_receipt_dir() -> String {
    "receipts".into()
}
fn default_confirmation_dir() -> String {
    "confirmations".into()
}
fn default_true() -> bool {
    true
}
fn default_connect_timeout_ms() -> u64 {
    15_000
}
fn default_io_timeout_ms() -> u64 {
    60_000
}
fn default_keepalive_ms() -> u64 {
    30_000
}
fn default_tries() -> u32 {
    3
}
fn default_retry_ms() -> u64 {
    500
}
fn default_retry_max_ms() -> u64 {
    5_000
}

impl SftpTransport {
    /// A section with every default, for `host`/`user`/`private_key` (tests, tools).
    pub fn new(host: &str, port: u16, user: &str, private_key: PathBuf) -> SftpTransport {
        SftpTransport {
            host: host.into(),
            port,
            user: user.into(),
            private_key,
            private_key_passphrase_file: None,
            known_hosts: None,
            host_key_fingerprints: Vec::new(),
            upload_dir: default_upload_dir(),
            receipt_dir: default_receipt_dir(),
            confirmation_dir: default_confirmation_dir(),
            processed_receipt_dir: None,
            fsync: true,
            connect_timeout_ms: default_connect_timeout_ms(),
            io_timeout_ms: default_io_timeout_ms(),
            keepalive_ms: default_keepalive_ms(),
            tries: default_tries(),
            retry_ms: default_retry_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }

    /// Every problem with this section (prefixed `transport.sftp.`).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push("transport.sftp.host is empty".into());
        }
        if self.port == 0 {
            problems.push("transport.sftp.port is 0".into());
        }
        if self.user.trim().is_empty() {
            problems.push("transport.sftp.user is empty".into());
        }
        let readable = |key: &str, path: &Path, problems: &mut Vec<String>| {
            if let Err(e) = std::fs::File::open(path) {
                problems.push(format!(
                    "transport.sftp.{key} ({}) cannot be read: {e}",
                    path.display()
                ));
                false
            } else {
                true
            }
        };
        readable("private_key", &self.private_key, &mut problems);
        if let Some(p) = &self.private_key_passphrase_file {
            readable("private_key_passphrase_file", p, &mut problems);
        }
        let has_known_hosts = match &self.known_hosts {
            Some(p) => readable("known_hosts", p, &mut problems),
            None => false,
        };
        if self.known_hosts.is_none() && self.host_key_fingerprints.is_empty() {
            problems.push(
                "transport.sftp has neither known_hosts nor host_key_fingerprints: the server's \
                 host key must be pinned (no key is trusted on first use); get it with \
                 `ssh-keyscan -p PORT HOST > known_hosts` and compare its fingerprint \
                 (`ssh-keygen -lf known_hosts`) with the one Altinn gave you"
                    .into(),
            );
        }
        let known_hosts = if has_known_hosts {
            self.known_hosts.as_deref()
        } else {
            None
        };
        match crate::transport::hostkey::Pins::load(
            known_hosts,
            &self.host_key_fingerprints,
            &self.host,
            self.port,
        ) {
            Err(e) => problems.push(format!("transport.sftp: {e}")),
            Ok(pins) => {
                if let (Some(path), true) = (known_hosts, pins.keys.is_empty()) {
                    if self.host_key_fingerprints.is_empty() {
                        problems.push(format!(
                            "transport.sftp.known_hosts ({}) has no key for {}; add one \
                             (`ssh-keyscan -p {} {}`) or set host_key_fingerprints",
                            path.display(),
                            if self.port == 22 {
                                self.host.clone()
                            } else {
                                format!("[{}]:{}", self.host, self.port)
                            },
                            self.port,
                            self.host
                        ));
                    }
                }
            }
        }
        let dirs = [
            ("upload_dir", Some(&self.upload_dir)),
            ("receipt_dir", Some(&self.receipt_dir)),
            ("confirmation_dir", Some(&self.confirmation_dir)),
            ("processed_receipt_dir", self.processed_receipt_dir.as_ref()),
        ];
        for (i, (key, dir)) in dirs.iter().enumerate() {
            let Some(dir) = dir else { continue };
            if dir.trim().is_empty() {
                problems.push(format!("transport.sftp.{key} is empty"));
            }
            for (other, b) in &dirs[i + 1..] {
                if Some(dir) == b.as_ref() {
                    problems.push(format!(
                        "transport.sftp.{key} and transport.sftp.{other} are the same folder ({dir})"
                    ));
                }
            }
        }
        if self.tries == 0 {
            problems.push("transport.sftp.tries is 0; use 1 or more (3 is the default)".into());
        }
        if self.connect_timeout_ms == 0 {
            problems.push("transport.sftp.connect_timeout_ms is 0; use 15000".into());
        }
        problems
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Run {
    /// How often the pipeline looks at the inbox (file events wake it
    /// sooner; the look is what counts, since events get lost on network
    /// shares) and polls for receipts and confirmations.
    pub poll_ms: u64,
}

impl Default for Run {
    fn default() -> Self {
        Run { poll_ms: 500 }
    }
}

impl Run {
    /// The poll interval (at least 10 ms): the daemon's timer and the
    /// pipeline's remote listings both follow it.
    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_ms.max(10))
    }
}

/// Why a config cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    Read(PathBuf, std::io::Error),
    Parse(PathBuf, String),
    Invalid(PathBuf, Vec<String>),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "config {} is not valid: {e}", p.display()),
            ConfigError::Invalid(p, problems) => {
                write!(
                    f,
                    "config {} has {} problem(s):",
                    p.display(),
                    problems.len()
                )?;
                for problem in problems {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and parse a config file; relative paths are taken relative to
    /// the config file's folder, so a config works from any directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(config)
    }

    /// Load and check: the config a daemon may run with.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::load(path)?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(path.to_path_buf(), problems))
        }
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.paths.inbox);
        fix(&mut self.paths.outbox);
        fix(&mut self.paths.failed);
        fix(&mut self.paths.archive);
        fix(&mut self.paths.state);
        if let Some(local) = self.transport.local.as_mut() {
            fix(&mut local.root);
        }
        if let Some(sftp) = self.transport.sftp.as_mut() {
            fix(&mut sftp.private_key);
            if let Some(p) = sftp.private_key_passphrase_file.as_mut() {
                fix(p);
            }
            if let Some(p) = sftp.known_hosts.as_mut() {
                fix(p);
            }
        }
    }

    /// Every problem with this config, in words an operator can act on.
    /// Folders that do not exist yet are created by `run`; a folder that
    /// cannot be created is a problem.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p = &self.paths;
        let folders = [
            ("paths.inbox", &p.inbox),
            ("paths.outbox", &p.outbox),
            ("paths.failed", &p.failed),
            ("paths.archive", &p.archive),
            ("paths.state", &p.state),
        ];
        // Compared as the filesystem sees them: `inbox/../inbox`, a symlink
        // to the inbox, and the inbox are one folder. Nested folders are
        // refused too: a receipt in an outbox inside the inbox would be
        // taken in as a batch, and an archive there would be listed as input.
        let real: Vec<PathBuf> = folders.iter().map(|(_, p)| real_path(p)).collect();
        // "inbox/../inbox, really /srv/inbox" when the two differ.
        let shown = |k: usize| {
            let (given, real) = (folders[k].1, &real[k]);
            if given == real {
                given.display().to_string()
            } else {
                format!("{}, really {}", given.display(), real.display())
            }
        };
        for i in 0..folders.len() {
            for j in i + 1..folders.len() {
                let (key, other) = (folders[i].0, folders[j].0);
                let nested = if real[i].starts_with(&real[j]) {
                    Some((i, j))
                } else if real[j].starts_with(&real[i]) {
                    Some((j, i))
                } else {
                    None
                };
                match nested {
                    Some(_) if real[i] == real[j] => problems.push(format!(
                        "{key} and {other} are the same folder ({} and {}); each needs its own",
                        shown(i),
                        shown(j)
                    )),
                    Some((inner, outer)) => problems.push(format!(
                        "{} ({}) is inside {} ({}); these folders must not be nested: give \
                         each its own place, side by side",
                        folders[inner].0,
                        shown(inner),
                        folders[outer].0,
                        shown(outer)
                    )),
                    None => {}
                }
            }
        }
        for (key, a) in folders {
            if a.exists() && !a.is_dir() {
                problems.push(format!(
                    "{key} ({}) exists but is not a folder",
                    a.display()
                ));
            }
        }
        // Files move by rename: inbox -> state/staging -> archive or failed.
        // A rename cannot cross filesystems, so all four must share one.
        if let Some(state_dev) = device(&p.state) {
            for (key, dir) in [
                ("paths.inbox", &p.inbox),
                ("paths.archive", &p.archive),
                ("paths.failed", &p.failed),
            ] {
                if device(dir).is_some_and(|d| d != state_dev) {
                    problems.push(format!(
                        "{key} ({}) and paths.state ({}) are on different filesystems; they must \
                         share one so that files move by atomic rename",
                        dir.display(),
                        p.state.display()
                    ));
                }
            }
        }
        let code = &self.sender.system_user_code;
        let ok = code.len() >= 3
            && code.len() <= 50
            && code.as_bytes()[..3].iter().all(u8::is_ascii_alphabetic);
        if !ok {
            problems.push(format!(
                "sender.system_user_code '{code}' must start with the agency's three-letter code, e.g. 'ABC-123'"
            ));
        }
        if self.intake.ready == Ready::Stable && self.intake.stable_for_ms == 0 {
            problems.push("intake.stable_for_ms is 0: a file still being written would be taken; use 2000 or more".into());
        }
        if self.package.max_part_letters == 0 || self.package.max_part_bytes < 64 * 1024 {
            problems.push("package.max_part_letters must be at least 1 and package.max_part_bytes at least 65536".into());
        }
        match self.transport.kind {
            TransportKind::Local => {
                if self.transport.local.is_none() {
                    problems.push("transport.kind is \"local\" but there is no [transport.local] section with root = \"...\"".into());
                }
            }
            TransportKind::Sftp => match &self.transport.sftp {
                None => problems.push("transport.kind is \"sftp\" but there is no [transport.sftp] section (host, user, private_key, known_hosts)".into()),
                Some(sftp) => problems.extend(sftp.check()),
            },
            TransportKind::Altinn3 => problems.push(format!(
                "transport.kind {:?} is not available in this version; use \"local\" or \"sftp\"",
                self.transport.kind
            )),
        }
        problems
    }
}

/// `path` as the filesystem resolves it: its nearest existing ancestor
/// canonicalised (symlinks and `..` resolved), the rest (folders `run`
/// will create) appended with `.` and `..` taken literally.
fn real_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if path.is_relative() {
        std::env::current_dir().unwrap_or_default().join(path)
    } else {
        path.to_path_buf()
    };
    for base in absolute.ancestors() {
        let Ok(mut real) = base.canonicalize() else {
            continue;
        };
        let rest = absolute.strip_prefix(base).unwrap_or(Path::new(""));
        for c in rest.components() {
            match c {
                Component::ParentDir => {
                    real.pop();
                }
                Component::Normal(n) => real.push(n),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return real;
    }
    absolute
}

/// The device a path (or its nearest existing ancestor) lives on.
fn device(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .find_map(|a| std::fs::metadata(a).ok())
        .map(|m| m.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[paths]
inbox = "in"
outbox = "out"
failed = "failed"
archive = "archive"
state = "state"
[sender]
system_user_code = "ABC-123"
[transport]
kind = "local"
[transport.local]
root = "altinn"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load_checked(&path).unwrap();
        assert_eq!(c.paths.inbox, dir.path().join("in"));
        assert_eq!(c.intake.ready, Ready::Stable);
        assert_eq!(c.intake.stable_for_ms, 2000);
        assert!(!c.sender.sequence_numbers);
        assert_eq!(c.transport.local.unwrap().root, dir.path().join("altinn"));
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        let text = MINIMAL
            .replace("outbox = \"out\"", "outbox = \"in\"")
            .replace("ABC-123", "1")
            .replace("[transport.local]\nroot = \"altinn\"\n", "");
        std::fs::write(&path, text).unwrap();
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("3 problem(s)"), "{err}");
        assert!(
            err.contains("paths.inbox and paths.outbox are the same folder"),
            "{err}"
        );
        assert!(err.contains("system_user_code '1'"), "{err}");
        assert!(err.contains("no [transport.local] section"), "{err}");
    }

    #[test]
    fn folders_are_compared_as_the_filesystem_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        let problems = |text: String| {
            std::fs::write(&path, text).unwrap();
            Config::load(&path).unwrap().check()
        };
        // Not created yet, and created: `in/../in` is `in`.
        for create in [false, true] {
            if create {
                std::fs::create_dir(dir.path().join("in")).unwrap();
            }
            let p = problems(MINIMAL.replace("outbox = \"out\"", "outbox = \"in/../in\""));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with("paths.inbox and paths.outbox are the same folder")
                    && p[0].contains("in/../in, really "),
                "{p:?}"
            );
        }
        // A symlink to the inbox is the inbox.
        std::os::unix::fs::symlink(dir.path().join("in"), dir.path().join("link")).unwrap();
        let p = problems(MINIMAL.replace("failed = \"failed\"", "failed = \"link\""));
        assert!(
            p.len() == 1 && p[0].starts_with("paths.inbox and paths.failed are the same folder"),
            "{p:?}"
        );
        // Nested either way round, existing or not.
        let p = problems(
            MINIMAL
                .replace("archive = \"archive\"", "archive = \"in/./archive\"")
                .replace("state = \"state\"", "state = \"out/state\"")
                .replace("outbox = \"out\"", "outbox = \"out/state/../\""),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("paths.archive (")
                && p[0].contains("is inside paths.inbox (")
                && p[0].contains("must not be nested"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("paths.state (") && p[1].contains("is inside paths.outbox"),
            "{p:?}"
        );
        // Names that only share a prefix are not nested.
        let p = problems(MINIMAL.replace("outbox = \"out\"", "outbox = \"in-out\""));
        assert!(p.is_empty(), "{p:?}");
    }

    fn sftp_config(dir: &Path, section: &str) -> PathBuf {
        let path = dir.join("dpv.toml");
        let text = MINIMAL
            .replace("kind = \"local\"", "kind = \"sftp\"")
            .replace("[transport.local]\nroot = \"altinn\"\n", section);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn sftp_section_gets_defaults_and_local_paths_resolved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id_ed25519"), "key").unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            "[sftp.example.org]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        )
        .unwrap();
        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"sftp.example.org\"\nport = 2222\nuser = \"abc\"\n\
             private_key = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n",
        );
        let c = Config::load_checked(&path).unwrap();
        let s = c.transport.sftp.unwrap();
        assert_eq!(s.private_key, dir.path().join("id_ed25519"));
        assert_eq!(s.known_hosts, Some(dir.path().join("known_hosts")));
        // Remote folders stay as written: they are paths on the server.
        assert_eq!(s.upload_dir, "upload");
        assert_eq!(s.receipt_dir, "receipts");
        assert_eq!(s.confirmation_dir, "confirmations");
        assert_eq!(s.processed_receipt_dir, None);
        assert_eq!(
            (s.connect_timeout_ms, s.io_timeout_ms, s.keepalive_ms),
            (15_000, 60_000, 30_000)
        );
        assert_eq!(s.tries, 3);
        assert!(s.fsync);
    }

    #[test]
    fn sftp_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        // No section at all.
        let path = sftp_config(dir.path(), "");
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("no [transport.sftp] section"), "{err}");

        // No key file, no pinned host key, a bad fingerprint elsewhere.
        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"missing\"\n",
        );
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("transport.sftp.private_key"), "{err}");
        assert!(
            err.contains("neither known_hosts nor host_key_fingerprints"),
            "{err}"
        );

        std::fs::write(dir.path().join("key"), "key").unwrap();
        std::fs::write(
            dir.path().join("kh"),
            "other.example.org ssh-ed25519 AAAA\n",
        )
        .unwrap();
        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"key\"\n\
             known_hosts = \"kh\"\nreceipt_dir = \"upload\"\n",
        );
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("has no key for h"), "{err}");
        assert!(
            err.contains("upload_dir and transport.sftp.receipt_dir are the same"),
            "{err}"
        );

        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"key\"\n\
             host_key_fingerprints = [\"SHA256:nope\"]\n",
        );
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("SHA256:nope"), "{err}");

        // A passphrase belongs in a file or the environment, never here.
        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"key\"\n\
             passphrase = \"secret\"\n",
        );
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("passphrase"), "{err}");
    }

    #[test]
    fn open_builds_the_configured_transport() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load_checked(&path).unwrap();
        let t = crate::transport::open(&c)
            .map_err(|e| e.to_string())
            .unwrap();
        assert!(t.describe().starts_with("local "));

        std::fs::write(dir.path().join("key"), "key").unwrap();
        let path = sftp_config(
            dir.path(),
            "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"key\"\n\
             host_key_fingerprints = [\"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"]\n",
        );
        let c = Config::load_checked(&path).unwrap();
        let t = crate::transport::open(&c)
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(t.describe(), "sftp u@h:22/upload");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        std::fs::write(
            &path,
            MINIMAL.replace("[sender]", "[intake]\nready = \"soon\"\n[sender]"),
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("soon"), "{err}");
        std::fs::write(&path, MINIMAL.replace("[sender]", "[sender]\ncolour = 1")).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
