//! The one configuration file (TOML). Only this module knows TOML.
//!
//! Every key has a default except the folders and the sender, so a config
//! can be a dozen lines. `dpv-batch check-config` runs [`Config::inspect`]
//! (reading, then [`Config::check`]) and prints every problem at once, in
//! words an operator can act on, because a daemon that dies at 02:00 on a
//! typo is the worst kind of failure. How the file is read — every error at
//! once, environment overrides, secrets from files, systemd credentials,
//! durations — is [`load`]'s: it works on the TOML table, so a section
//! added here gets all of it without a line of its own.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod load;

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
    /// `[log]`: how log lines look (see `logging`).
    #[serde(default)]
    pub log: Log,
    /// The file this config was loaded from (for the start-up log line);
    /// not a key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    #[serde(default)]
    pub metrics: Metrics,
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
    /// `[transport.altinn3]`: the Altinn 3 Correspondence API (see altinn3 below).
    pub altinn3: Option<Altinn3Config>,
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
    /// A part handed to the transport that has no receipt this long after
    /// is overdue: listed by `status`, counted in the metrics, warned about
    /// in the log, and a WARNING for `status --check`.
    #[serde(deserialize_with = "duration")]
    pub receipt_deadline: std::time::Duration,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            poll_ms: 500,
            receipt_deadline: std::time::Duration::from_secs(2 * 3600),
        }
    }
}

/// `[metrics]`: the HTTP endpoint for monitoring (`/metrics`, `/health`),
/// off unless `listen` is given (see `metrics`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// The address to serve on, e.g. `"127.0.0.1:9464"`.
    #[serde(deserialize_with = "listen_address")]
    pub listen: Option<std::net::SocketAddr>,
}

/// An IP address and a port; a name (`localhost`) is refused with the
/// reason, since looking it up could bind somewhere unexpected.
fn listen_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "'{s}' is not an address like \"127.0.0.1:9464\" or \"[::1]:9464\" (an IP address and a port; names are not looked up)"
        ))
    })
}

impl Run {
    /// The poll interval (at least 10 ms): the daemon's timer and the
    /// pipeline's remote listings both follow it.
    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_ms.max(10))
    }
}

/// `[log]`: the format of log lines on standard error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `"text"` (key=value lines, the default) or `"json"` (one object a
    /// line, for log shippers). `--log-format` wins over it.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A duration key: `"2s"`, `"10m"`, `"2h"`, `"1h 30m"` (humantime). The one
/// parser every duration in the config goes through, so every key takes the
/// same spellings and a bad one gets the same message.
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// What [`duration`] accepts, as a plain function: the loader's
/// `NAME = "2s"` for a `NAME_ms` key, and the command line's durations
/// (`run --once --timeout 30m`), go through it too.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like \"60s\", \"10m\" or \"1h\" ({e})"))
}

/// The keys counted in milliseconds from before durations took units. Each
/// may also be written without `_ms` as a duration (`run.poll = "500ms"`);
/// giving both is a problem. New duration keys take a duration only
/// ([`duration`]).
pub const MILLIS_KEYS: &[&str] = &[
    "intake.stable_for_ms",
    "run.poll_ms",
    "transport.sftp.connect_timeout_ms",
    "transport.sftp.io_timeout_ms",
    "transport.sftp.keepalive_ms",
    "transport.sftp.retry_ms",
    "transport.sftp.retry_max_ms",
];

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

/// Everything `check-config` tells about a config file.
pub struct Inspection {
    /// The config, when it could be read (with stand-ins for missing keys
    /// when there are problems).
    pub config: Option<Config>,
    /// Every problem: reading (each with its key and line), then the checks.
    pub problems: Vec<String>,
    /// `(key, variable)`: values from `DPV_BATCH__*` environment variables.
    pub from_env: Vec<(String, String)>,
    /// `(key, file)`: values read from an `X_file`.
    pub from_files: Vec<(String, PathBuf)>,
}

impl Config {
    /// Read and parse a config file; relative paths are taken relative to
    /// the config file's folder, so a config works from any directory.
    /// Every problem in reading it is reported at once
    /// ([`load`](self::load) tells how), with environment overrides and
    /// secrets from files applied.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, true)
    }

    /// [`Config::load`] for what reads only the folders and the journal
    /// (`status`, `status --check`): keys and other secrets are not needed,
    /// so a monitor outside the unit, without `$CREDENTIALS_DIRECTORY` or
    /// the right to read the secrets, still gets its answer.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, false)
    }

    fn load_with(path: &Path, secrets_needed: bool) -> Result<Config, ConfigError> {
        let (inspection, _, _) = Config::read(path, secrets_needed)?;
        match inspection.config {
            Some(config) if inspection.problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(
                path.to_path_buf(),
                inspection.problems,
            )),
        }
    }

    /// Load and check: the config a daemon may run with.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let inspection = Config::inspect_with(path, false)?;
        match inspection.config {
            Some(config) if inspection.problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(
                path.to_path_buf(),
                inspection.problems,
            )),
        }
    }

    /// Every problem `run` would meet: reading, [`Config::check`] and
    /// [`Config::check_writable`] at once. `Err` only when the file cannot
    /// be read or is not TOML.
    pub fn inspect(path: &Path) -> Result<Inspection, ConfigError> {
        Config::inspect_with(path, true)
    }

    fn inspect_with(path: &Path, writable: bool) -> Result<Inspection, ConfigError> {
        let (mut inspection, stand_ins, secrets) = Config::read(path, true)?;
        if let Some(config) = &inspection.config {
            // A check about a key that was missing (and got a stand-in)
            // would only repeat that problem, in stranger words.
            let markers: Vec<String> = stand_ins
                .iter()
                .map(|k| {
                    k.rsplit_once('.')
                        .map_or(k.as_str(), |(s, _)| s)
                        .to_string()
                })
                .collect();
            let repeats = |p: &String| {
                markers
                    .iter()
                    .any(|m| p.contains(&format!("{m}.")) || p.contains(&format!("[{m}]")))
            };
            let mut checks = config.check();
            if writable {
                checks.extend(config.check_writable());
            }
            inspection.problems.extend(
                checks
                    .into_iter()
                    .filter(|p| !repeats(p))
                    .map(|p| load::redact(&p, &secrets)),
            );
        }
        Ok(inspection)
    }

    /// The config as read, the keys that got stand-ins, and the values
    /// never to show (see [`load::Loaded::secrets`]).
    #[allow(clippy::type_complexity)]
    fn read(
        path: &Path,
        secrets_needed: bool,
    ) -> Result<(Inspection, Vec<String>, Vec<(String, String)>), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut outside = load::Outside::from_process(base);
        outside.secrets_needed = secrets_needed;
        let loaded = load::load::<Config>(&text, &outside, MILLIS_KEYS).map_err(|e| {
            ConfigError::Parse(
                path.to_path_buf(),
                format!(
                    "{e}(a TOML syntax error: only the first one can be found; fix it and \
                     check again)"
                ),
            )
        })?;
        let config = loaded.value.map(|mut c| {
            c.resolve(base);
            c.source = Some(path.to_path_buf());
            c
        });
        Ok((
            Inspection {
                config,
                problems: loaded.problems,
                from_env: loaded.from_env,
                from_files: loaded.from_files,
            },
            loaded.stand_ins,
            loaded.secrets,
        ))
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
        if let Some(a3) = self.transport.altinn3.as_mut() {
            fix(&mut a3.private_key);
            if let Some(p) = a3.certificate_chain.as_mut() {
                fix(p);
            }
            a3.fill_defaults();
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
            TransportKind::Altinn3 => match &self.transport.altinn3 {
                None => problems.push("transport.kind is \"altinn3\" but there is no [transport.altinn3] section (client_id, private_key, key_id, resources; see docs/altinn3.md)".into()),
                Some(a3) => problems.extend(a3.check()),
            },
        }
        problems
    }
}

impl Config {
    /// Folders `run` writes that cannot be created or written, for
    /// `check-config` (really tried, see `folder_problem`). Not part of
    /// [`Config::check`]: `run` starts anyway and rides such an outage out
    /// (a read-only outbox delays receipts; tests/keep_running.rs), so that
    /// it goes on by itself once the folder is writable again.
    pub fn check_writable(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p = &self.paths;
        for (key, dir) in [
            ("paths.inbox", &p.inbox),
            ("paths.outbox", &p.outbox),
            ("paths.failed", &p.failed),
            ("paths.archive", &p.archive),
            ("paths.state", &p.state),
        ] {
            // One that exists but is no folder is `check`'s problem.
            if !dir.exists() || dir.is_dir() {
                if let Some(why) = folder_problem(dir) {
                    problems.push(format!("{key} ({}) {why}", dir.display()));
                }
            }
        }
        // The local transport writes upload/ and takes files out of
        // receipts/ and confirmations/ under its root.
        if let (TransportKind::Local, Some(local)) = (self.transport.kind, &self.transport.local) {
            for sub in ["upload", "receipts", "confirmations"] {
                let dir = local.root.join(sub);
                if let Some(why) = folder_problem(&dir) {
                    problems.push(format!("transport.local.root: {} {why}", dir.display()));
                }
            }
        }
        problems
    }
}

pub use altinn3::{Altinn3Config, Environment, ReceiptAfter, ResourceEntry, Route};

/// `[transport.altinn3]`: the Altinn 3 Correspondence API. The keys are a
/// contract (issue 8; tests outside the project write them); everything but
/// `client_id`, `private_key`, a key id or certificate, and the resources
/// table has a default. See docs/altinn3.md.
pub mod altinn3 {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use serde::Deserialize;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
    #[serde(rename_all = "lowercase")]
    pub enum Environment {
        /// Altinn's test environment (TT02) and Maskinporten's test.
        #[default]
        Tt02,
        Production,
        /// Every URL given in the config (the simulator, a proxy of your own).
        Custom,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
    #[serde(rename_all = "kebab-case")]
    pub enum Route {
        /// Through Digdir's eFormidling DPV proxy (scope eformidling:dpv, an
        /// access list entry); Digdir is the service owner in Altinn.
        #[default]
        EformidlingProxy,
        /// Straight to Altinn with a Correspondence resource of your own.
        Direct,
    }

    /// When a file's receipt is written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
    #[serde(rename_all = "lowercase")]
    pub enum ReceiptAfter {
        /// Once Altinn has answered for every letter (created or refused).
        #[default]
        Created,
        /// Once every created letter is Published or Failed.
        Published,
    }

    /// A value of `[transport.altinn3.resources]`: a resource id, or a
    /// table `{ resource, confidential }`.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(untagged)]
    pub enum ResourceEntry {
        Id(String),
        Table {
            resource: String,
            #[serde(default)]
            confidential: bool,
        },
    }

    impl ResourceEntry {
        pub fn resource(&self) -> &str {
            match self {
                ResourceEntry::Id(r) | ResourceEntry::Table { resource: r, .. } => r,
            }
        }
        pub fn confidential(&self) -> bool {
            matches!(
                self,
                ResourceEntry::Table {
                    confidential: true,
                    ..
                }
            )
        }
    }

    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Altinn3Config {
        #[serde(default)]
        pub environment: Environment,
        #[serde(default)]
        pub route: Route,
        /// What `/correspondence` and `/attachment` are appended to. Empty:
        /// the environment's URL for the route.
        #[serde(default)]
        pub api_base: String,
        /// Maskinporten's token endpoint. Empty: the environment's.
        #[serde(default)]
        pub token_url: String,
        /// Maskinporten's issuer id (`aud` of the grant). Empty: the environment's.
        #[serde(default)]
        pub audience: String,
        /// Altinn's token exchange. Not given: the environment's; `""`: send
        /// the Maskinporten token itself (direct route only).
        #[serde(default)]
        pub exchange_url: Option<String>,
        pub client_id: String,
        /// The RS256 private key (PEM) the grant is signed with; mode 0600.
        pub private_key: PathBuf,
        /// The key's id as registered with Maskinporten (`kid`)...
        #[serde(default)]
        pub key_id: Option<String>,
        /// ...or the business certificate chain (PEM), sent as `x5c`.
        #[serde(default)]
        pub certificate_chain: Option<PathBuf>,
        /// Not given: the route's (`eformidling:dpv`, or
        /// `altinn:serviceowner altinn:correspondence.write`).
        #[serde(default)]
        pub scopes: Vec<String>,
        /// Letters in flight at once.
        #[serde(default = "default_concurrency")]
        pub concurrency: usize,
        /// Our own limit of calls per second (0: none; 429s are honoured anyway).
        #[serde(default)]
        pub max_requests_per_second: u32,
        /// Status polling of sent letters; backs off as they age.
        #[serde(default = "default_poll_interval", deserialize_with = "duration")]
        pub poll_interval: Duration,
        /// ServiceCode/ServiceEdition (`"4255/10"`, or `"4255"` for any
        /// edition) → Altinn 3 resource.
        #[serde(default)]
        pub resources: BTreeMap<String, ResourceEntry>,
        /// The body of a letter without MessageBody (Altinn 3 requires one).
        #[serde(default = "default_body")]
        pub default_body: String,
        /// `messageSender`: the name shown as sender (the batch has no such field).
        #[serde(default)]
        pub message_sender: Option<String>,
        /// Subject of notification e-mails (Altinn II's DPV templates had a fixed one).
        #[serde(default = "default_email_subject")]
        pub email_subject: String,
        /// Attachments larger than this (bytes) go through the attachment API
        /// (`POST /attachment`, upload, wait for Published); smaller ones in
        /// the multipart `POST /correspondence/upload`.
        #[serde(default = "default_upload_threshold")]
        pub attachment_upload_threshold: u64,
        #[serde(default)]
        pub receipt_after: ReceiptAfter,
        /// A letter still unpublished this long after its requested publish
        /// time shows as overdue in `status`.
        #[serde(default = "default_overdue_after", deserialize_with = "duration")]
        pub overdue_after: Duration,
        /// Longest wait for one HTTP call (an attachment upload included).
        #[serde(default = "default_request_timeout", deserialize_with = "duration")]
        pub request_timeout: Duration,
        #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
        pub connect_timeout: Duration,
    }

    fn default_concurrency() -> usize {
        16
    }
    fn default_poll_interval() -> Duration {
        Duration::from_secs(60)
    }
    /// What eFormidling sends for a DPV message without content.
    fn default_body() -> String {
        "Ingen innhold".into()
    }
    fn default_email_subject() -> String {
        "Melding mottatt i Altinn".into()
    }
    fn default_upload_threshold() -> u64 {
        50 * 1024 * 1024
    }
    fn default_overdue_after() -> Duration {
        Duration::from_secs(3600)
    }
    fn default_request_timeout() -> Duration {
        Duration::from_secs(300)
    }
    fn default_connect_timeout() -> Duration {
        Duration::from_secs(15)
    }

    use super::duration;

    /// Where an environment's services are, per route.
    struct Urls {
        api_direct: &'static str,
        api_proxy: &'static str,
        token_url: &'static str,
        audience: &'static str,
        exchange_url: &'static str,
    }

    const TT02: Urls = Urls {
        api_direct: "https://platform.tt02.altinn.no/correspondence/api/v1",
        api_proxy: "https://test.eformidling.no/altinn-proxy/correspondence/api/v1",
        token_url: "https://test.maskinporten.no/token",
        audience: "https://test.maskinporten.no/",
        exchange_url: "https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten",
    };
    const PRODUCTION: Urls = Urls {
        api_direct: "https://platform.altinn.no/correspondence/api/v1",
        api_proxy: "https://eformidling.no/altinn-proxy/correspondence/api/v1",
        token_url: "https://maskinporten.no/token",
        audience: "https://maskinporten.no/",
        exchange_url: "https://platform.altinn.no/authentication/api/v1/exchange/maskinporten",
    };

    /// A resource id as Altinn accepts it (`ResourceIdentifierAttribute`).
    pub fn is_resource_id(id: &str) -> bool {
        let bare = id.strip_prefix("urn:altinn:resource:").unwrap_or(id);
        !bare.is_empty() && bare.chars().count() <= 255 && !bare.contains(':')
    }

    impl Altinn3Config {
        /// A section with every default (tests, tools): `custom` URLs left empty.
        pub fn new(client_id: &str, private_key: PathBuf) -> Altinn3Config {
            Altinn3Config {
                environment: Environment::Tt02,
                route: Route::EformidlingProxy,
                api_base: String::new(),
                token_url: String::new(),
                audience: String::new(),
                exchange_url: None,
                client_id: client_id.into(),
                private_key,
                key_id: None,
                certificate_chain: None,
                scopes: Vec::new(),
                concurrency: default_concurrency(),
                max_requests_per_second: 0,
                poll_interval: default_poll_interval(),
                resources: BTreeMap::new(),
                default_body: default_body(),
                message_sender: None,
                email_subject: default_email_subject(),
                attachment_upload_threshold: default_upload_threshold(),
                receipt_after: ReceiptAfter::Created,
                overdue_after: default_overdue_after(),
                request_timeout: default_request_timeout(),
                connect_timeout: default_connect_timeout(),
            }
        }

        /// Fill what was not given from the environment and route.
        pub fn fill_defaults(&mut self) {
            let urls = match self.environment {
                Environment::Tt02 => Some(&TT02),
                Environment::Production => Some(&PRODUCTION),
                Environment::Custom => None,
            };
            if let Some(u) = urls {
                let fill = |v: &mut String, d: &str| {
                    if v.trim().is_empty() {
                        *v = d.to_string();
                    }
                };
                let api = match self.route {
                    Route::Direct => u.api_direct,
                    Route::EformidlingProxy => u.api_proxy,
                };
                fill(&mut self.api_base, api);
                fill(&mut self.token_url, u.token_url);
                fill(&mut self.audience, u.audience);
                if self.exchange_url.is_none() {
                    self.exchange_url = Some(u.exchange_url.to_string());
                }
            }
            if self.scopes.is_empty() {
                self.scopes = match self.route {
                    Route::EformidlingProxy => vec!["eformidling:dpv".into()],
                    Route::Direct => vec![
                        "altinn:serviceowner".into(),
                        "altinn:correspondence.write".into(),
                    ],
                };
            }
            while self.api_base.ends_with('/') {
                self.api_base.pop();
            }
        }

        /// The exchange URL, or `None` when the Maskinporten token is sent as it is.
        pub fn exchange(&self) -> Option<&str> {
            self.exchange_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
        }

        /// The resource for a service, by `CODE/EDITION`, then `CODE`.
        pub fn resource_for(&self, code: &str, edition: Option<&str>) -> Option<&ResourceEntry> {
            lookup_resource(&self.resources, code, edition)
        }

        /// Every problem with this section (prefixed `transport.altinn3.`).
        pub fn check(&self) -> Vec<String> {
            let mut problems = Vec::new();
            let k = "transport.altinn3";
            for (key, value) in [
                ("api_base", &self.api_base),
                ("token_url", &self.token_url),
                ("audience", &self.audience),
            ] {
                if value.trim().is_empty() {
                    problems.push(format!(
                        "{k}.{key} is not given; with environment = \"custom\" every URL must be \
                         (api_base, token_url, audience, exchange_url)"
                    ));
                } else if let Some(p) = url_problem(value) {
                    problems.push(format!("{k}.{key} ({value}) {p}"));
                }
            }
            match &self.exchange_url {
                None => problems.push(format!(
                    "{k}.exchange_url is not given; with environment = \"custom\" give the \
                     exchange URL, or \"\" to send the Maskinporten token itself"
                )),
                Some(u) if u.trim().is_empty() => {
                    if self.route == Route::EformidlingProxy {
                        problems.push(format!(
                            "{k}.exchange_url is \"\", but the eformidling-proxy route only takes \
                             an Altinn token; give Altinn's exchange URL"
                        ));
                    }
                }
                Some(u) => {
                    if let Some(p) = url_problem(u) {
                        problems.push(format!("{k}.exchange_url ({u}) {p}"));
                    }
                }
            }
            if self.client_id.trim().is_empty() {
                problems.push(format!(
                    "{k}.client_id is empty; give the Maskinporten client's id"
                ));
            }
            if let Err(e) = private_key_problem(&self.private_key) {
                problems.push(format!("{k}.private_key: {e}"));
            } else if let Err(e) = crate::altinn3::auth::Signer::load(self) {
                // The key's content (never printed) or the certificate chain.
                if e.message.contains("private key") || e.message.contains("certificate") {
                    problems.push(format!("{k}: {}", e.message));
                }
            }
            match (&self.key_id, &self.certificate_chain) {
                (None, None) => problems.push(format!(
                    "{k} needs key_id (the kid of the key registered with Maskinporten) or \
                     certificate_chain (a PEM file with the business certificate chain)"
                )),
                (Some(_), Some(_)) => problems.push(format!(
                    "{k} has both key_id and certificate_chain; give one (key_id for a key \
                     registered with the client, certificate_chain for a business certificate)"
                )),
                (Some(kid), None) if kid.trim().is_empty() => {
                    problems.push(format!("{k}.key_id is empty"))
                }
                (None, Some(path)) => {
                    if let Err(e) = std::fs::read(path) {
                        problems.push(format!(
                            "{k}.certificate_chain ({}) cannot be read: {e}",
                            path.display()
                        ));
                    }
                }
                _ => {}
            }
            if self
                .scopes
                .iter()
                .any(|s| s.trim().is_empty() || s.contains(' '))
            {
                problems.push(format!(
                    "{k}.scopes has an empty scope or one with a space; list each scope on its own"
                ));
            }
            if self.concurrency == 0 || self.concurrency > 256 {
                problems.push(format!(
                    "{k}.concurrency is {}; use 1 to 256 (16 is the default)",
                    self.concurrency
                ));
            }
            if self.poll_interval < Duration::from_secs(1) {
                problems.push(format!("{k}.poll_interval is under a second; use 60s"));
            }
            if self.resources.is_empty() {
                problems.push(format!(
                    "{k}.resources is empty; map each ServiceCode/ServiceEdition you send to its \
                     Altinn 3 resource, e.g. \"4255/10\" = \"eformidling-dpv-administrasjon\""
                ));
            }
            for (service, entry) in &self.resources {
                let ok_key = match service.split_once('/') {
                    Some((c, e)) => is_code(c) && is_code(e),
                    None => is_code(service),
                };
                if !ok_key {
                    problems.push(format!(
                        "{k}.resources key \"{service}\" is not CODE/EDITION (e.g. \"4255/10\") or CODE"
                    ));
                }
                if !is_resource_id(entry.resource()) {
                    problems.push(format!(
                        "{k}.resources \"{service}\" = \"{}\" is not an Altinn resource id \
                         (1-255 characters, no ':' except a leading urn:altinn:resource:)",
                        entry.resource()
                    ));
                }
            }
            let body = self.default_body.trim();
            if body.is_empty() || self.default_body.chars().count() > 30_000 {
                problems.push(format!(
                    "{k}.default_body must be 1 to 30000 characters (Altinn 3 requires a body)"
                ));
            }
            if let Some(sender) = &self.message_sender {
                if sender.chars().count() > 255 {
                    problems.push(format!("{k}.message_sender is over 255 characters"));
                } else if !crate::altinn3::rules::is_plain_text(sender) {
                    problems.push(format!(
                        "{k}.message_sender must be plain text (no HTML or Markdown)"
                    ));
                }
            }
            if self.email_subject.trim().is_empty() || self.email_subject.chars().count() > 512 {
                problems.push(format!("{k}.email_subject must be 1 to 512 characters"));
            }
            if self.attachment_upload_threshold == 0 {
                problems.push(format!(
                    "{k}.attachment_upload_threshold is 0; use a size in bytes (default 52428800)"
                ));
            }
            if self.request_timeout < Duration::from_secs(1)
                || self.connect_timeout < Duration::from_secs(1)
            {
                problems.push(format!(
                    "{k}.request_timeout and connect_timeout must be at least 1s"
                ));
            }
            problems
        }
    }

    /// The resource for a service in a resources table.
    pub fn lookup_resource<'a>(
        table: &'a BTreeMap<String, ResourceEntry>,
        code: &str,
        edition: Option<&str>,
    ) -> Option<&'a ResourceEntry> {
        let code = code.trim();
        edition
            .and_then(|e| table.get(&format!("{code}/{}", e.trim())))
            .or_else(|| table.get(code))
    }

    fn is_code(s: &str) -> bool {
        !s.is_empty() && s.len() <= 7 && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// https everywhere; plain http only to this machine (the simulator).
    fn url_problem(url: &str) -> Option<String> {
        let rest = if let Some(r) = url.strip_prefix("https://") {
            r
        } else if let Some(r) = url.strip_prefix("http://") {
            let end = if r.starts_with('[') {
                r.find(']').map_or(r.len(), |i| i + 1)
            } else {
                r.find([':', '/']).unwrap_or(r.len())
            };
            let host = &r[..end];
            let local = host == "localhost" || host == "[::1]" || host.starts_with("127.");
            if !local {
                return Some(
                    "is plain http to another machine; use https (http is only for a local simulator)"
                        .into(),
                );
            }
            r
        } else {
            return Some("is not an http(s) URL".into());
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Some("has no host".into());
        }
        None
    }

    /// Whether `path` is in systemd's credentials folder for this unit.
    fn in_credentials(path: &Path) -> bool {
        std::env::var_os(super::load::CREDENTIALS_VAR).is_some_and(|dir| {
            let dir = Path::new(&dir);
            !dir.as_os_str().is_empty()
                && path.starts_with(dir)
                && path.parent().and_then(|p| p.canonicalize().ok()) == dir.canonicalize().ok()
        })
    }

    /// Why a private key file may not be used: unreadable, or readable by
    /// others than its owner (with the fix). The content is checked by the
    /// client (`altinn3::auth`), which never prints it.
    pub fn private_key_problem(path: &Path) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        // systemd writes a credential 0400 and lets the service's user read
        // it through an ACL entry, whose mask `stat` shows in the group bits
        // (0440) although no group can read it; the folder is the unit's
        // own, read-only. So there, group bits are the ACL and only "other"
        // bits count.
        let private = if in_credentials(path) { 0o007 } else { 0o077 };
        if mode & private != 0 {
            return Err(format!(
                "{} is readable by others (mode {mode:o}); a private key must be readable by its \
                 owner only: run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("{} cannot be read: {e}", path.display()))
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

/// Why `run` could not use `dir` as a folder it writes: an existing folder
/// must take a new file (one is really made and removed: permission bits
/// do not tell about read-only mounts, or root), and a missing one must be
/// creatable (a folder is really made and removed in its nearest existing
/// ancestor). `None` when it can. The names are hidden (`.dpv-batch-check-*`),
/// which intake and the fagsystem pass over.
fn folder_problem(dir: &Path) -> Option<String> {
    // The pid and a random part: a probe left by a check that was killed
    // (in a container every check may be pid 1) never makes the next one
    // fail with "File exists".
    let probe = |at: &Path| {
        at.join(format!(
            ".dpv-batch-check-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ))
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let file = probe(dir);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&file);
                    None
                }
                Err(e) => Some(format!("cannot be written: {e}")),
            }
        }
        Ok(_) => Some("is not a folder".into()),
        Err(_) => {
            // A relative path's last ancestor is "": the current folder.
            fn here(a: &Path) -> &Path {
                if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                }
            }
            let found = dir.ancestors().skip(1).map(here).find(|a| a.exists());
            let Some(ancestor) = found else {
                return Some("cannot be created: no part of it exists".into());
            };
            if !ancestor.is_dir() {
                return Some(format!(
                    "cannot be created: {} is a file, not a folder",
                    ancestor.display()
                ));
            }
            let trial = probe(ancestor);
            match std::fs::create_dir(&trial) {
                Ok(()) => {
                    let _ = std::fs::remove_dir(&trial);
                    None
                }
                Err(e) => Some(format!(
                    "does not exist and cannot be created: {} cannot be written: {e}",
                    ancestor.display()
                )),
            }
        }
    }
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
    fn metrics_are_off_by_default_and_listen_takes_an_ip_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpv.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load_checked(&path).unwrap();
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.run.receipt_deadline, std::time::Duration::from_secs(7200));
        let with = |extra: &str| {
            std::fs::write(&path, format!("{MINIMAL}\n{extra}\n")).unwrap();
            Config::load(&path)
        };
        let c = with("[metrics]\nlisten = \"127.0.0.1:9464\"\n[run]\nreceipt_deadline = \"90m\"")
            .unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.run.receipt_deadline, std::time::Duration::from_secs(5400));
        let err = with("[metrics]\nlisten = \"localhost:9464\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'localhost:9464' is not an address like \"127.0.0.1:9464\""),
            "{err}"
        );
        let err = with("[run]\nreceipt_deadline = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'soon' is not a duration"), "{err}");
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
        let t = crate::transport::open(&c, "0123456789abcdef")
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
        let t = crate::transport::open(&c, "0123456789abcdef")
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(t.describe(), "sftp u@h:22/upload");
    }

    fn altinn3_config(dir: &Path, section: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("maskinporten.pem");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/altinn3/client.pem"
            ),
            &key,
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("dpv.toml");
        let text = MINIMAL
            .replace("kind = \"local\"", "kind = \"altinn3\"")
            .replace("[transport.local]\nroot = \"altinn\"\n", section);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The contract of issue 8, key for key.
    #[test]
    fn altinn3_section_as_the_issue_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = altinn3_config(
            dir.path(),
            r#"[transport.altinn3]
environment = "tt02"
route = "eformidling-proxy"
api_base = "https://test.eformidling.no/altinn-proxy/correspondence/api/v1"
token_url = "https://test.maskinporten.no/token"
audience = "https://test.maskinporten.no/"
exchange_url = "https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten"
client_id = "abc"
private_key = "maskinporten.pem"
key_id = "kid-1"
scopes = ["eformidling:dpv"]
concurrency = 16
max_requests_per_second = 0
poll_interval = "60s"
[transport.altinn3.resources]
"4255/10" = "eformidling-dpv-administrasjon"
"5504/1"  = { resource = "eformidling-dpv-taushetsbelagt", confidential = true }
"#,
        );
        let c = Config::load_checked(&path).unwrap();
        let a = c.transport.altinn3.unwrap();
        assert_eq!(a.private_key, dir.path().join("maskinporten.pem"));
        assert_eq!(a.poll_interval, std::time::Duration::from_secs(60));
        assert_eq!(
            a.resource_for("4255", Some("10")).unwrap().resource(),
            "eformidling-dpv-administrasjon"
        );
        let conf = a.resource_for("5504", Some("1")).unwrap();
        assert!(conf.confidential());
        assert!(a.resource_for("4255", Some("3")).is_none());
        assert_eq!(a.receipt_after, ReceiptAfter::Created);
        assert_eq!(a.attachment_upload_threshold, 50 * 1024 * 1024);
        assert_eq!(a.default_body, "Ingen innhold");
    }

    #[test]
    fn altinn3_defaults_per_environment_and_route() {
        let dir = tempfile::tempdir().unwrap();
        let section =
            "[transport.altinn3]\nclient_id = \"c\"\nprivate_key = \"maskinporten.pem\"\n\
                       key_id = \"k\"\nroute = \"direct\"\nenvironment = \"production\"\n\
                       [transport.altinn3.resources]\n\"4255\" = \"own-resource\"\n";
        let c = Config::load_checked(&altinn3_config(dir.path(), section)).unwrap();
        let a = c.transport.altinn3.unwrap();
        assert_eq!(
            a.api_base,
            "https://platform.altinn.no/correspondence/api/v1"
        );
        assert_eq!(a.token_url, "https://maskinporten.no/token");
        assert_eq!(a.audience, "https://maskinporten.no/");
        assert_eq!(
            a.exchange(),
            Some("https://platform.altinn.no/authentication/api/v1/exchange/maskinporten")
        );
        assert_eq!(
            a.scopes,
            ["altinn:serviceowner", "altinn:correspondence.write"]
        );
        assert_eq!(
            a.resource_for("4255", Some("7")).unwrap().resource(),
            "own-resource"
        );

        let section = section
            .replace("production", "tt02")
            .replace("direct", "eformidling-proxy");
        let a = Config::load_checked(&altinn3_config(dir.path(), &section))
            .unwrap()
            .transport
            .altinn3
            .unwrap();
        assert_eq!(
            a.api_base,
            "https://test.eformidling.no/altinn-proxy/correspondence/api/v1"
        );
        assert_eq!(a.scopes, ["eformidling:dpv"]);

        // Direct without the exchange: the Maskinporten token itself.
        let direct = section.replace("eformidling-proxy", "direct") + "";
        let direct = direct.replace("key_id", "exchange_url = \"\"\nkey_id");
        let a = Config::load_checked(&altinn3_config(dir.path(), &direct))
            .unwrap()
            .transport
            .altinn3
            .unwrap();
        assert_eq!(a.exchange(), None);
    }

    #[test]
    fn altinn3_problems_are_named_in_plain_words() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = altinn3_config(dir.path(), "");
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(err.contains("no [transport.altinn3] section"), "{err}");

        let section = "[transport.altinn3]\nenvironment = \"custom\"\nclient_id = \" \"\n\
                       private_key = \"maskinporten.pem\"\napi_base = \"http://altinn.example.org/api\"\n\
                       route = \"eformidling-proxy\"\nexchange_url = \"\"\nconcurrency = 0\n\
                       [transport.altinn3.resources]\n\"42x\" = \"a:b\"\n";
        let path = altinn3_config(dir.path(), section);
        std::fs::set_permissions(
            dir.path().join("maskinporten.pem"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let err = Config::load_checked(&path).unwrap_err().to_string();
        for expected in [
            "transport.altinn3.token_url is not given",
            "transport.altinn3.audience is not given",
            "api_base (http://altinn.example.org/api) is plain http to another machine",
            "eformidling-proxy route only takes an Altinn token",
            "client_id is empty",
            "chmod 600",
            "needs key_id",
            "concurrency is 0",
            "key \"42x\" is not CODE/EDITION",
            "\"a:b\" is not an Altinn resource id",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        // A simulator on this machine may be plain http.
        let ok = section
            .replace("http://altinn.example.org/api", "http://127.0.0.1:8080/api")
            .replace(
                "exchange_url = \"\"",
                "exchange_url = \"http://localhost:8080/x\"",
            );
        let path = altinn3_config(dir.path(), &ok);
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(!err.contains("plain http"), "{err}");
        // Not a key at all.
        std::fs::write(dir.path().join("maskinporten.pem"), "not a key").unwrap();
        let err = Config::load_checked(&path).unwrap_err().to_string();
        assert!(
            err.contains("is not an RSA private key in PEM format"),
            "{err}"
        );
        assert!(!err.contains("not a key"), "{err}");
        // A bad duration is named with an example.
        let bad = "[transport.altinn3]\nclient_id = \"c\"\nprivate_key = \"maskinporten.pem\"\n\
                   key_id = \"k\"\npoll_interval = \"soon\"\n";
        let err = Config::load(&altinn3_config(dir.path(), bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'soon' is not a duration like"), "{err}");
    }

    #[test]
    fn command_line_durations_take_the_config_spellings() {
        // `run --once --timeout` goes through the same parser as the keys.
        let d = |s| parse_duration(s);
        assert_eq!(d("1h 30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(d("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert!(d("5x").unwrap_err().contains("'5x' is not a duration like"));
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
