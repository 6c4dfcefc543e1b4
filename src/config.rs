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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTransport {
    /// A folder standing in for Altinn's SFTP account.
    pub root: PathBuf,
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
        for (i, (key, a)) in folders.iter().enumerate() {
            for (other, b) in &folders[i + 1..] {
                if a == b {
                    problems.push(format!(
                        "{key} and {other} are the same folder ({}); each needs its own",
                        a.display()
                    ));
                }
            }
            if a.exists() && !a.is_dir() {
                problems.push(format!(
                    "{key} ({}) exists but is not a folder",
                    a.display()
                ));
            }
        }
        if let (Some(inbox_dev), Some(state_dev)) = (device(&p.inbox), device(&p.state)) {
            if inbox_dev != state_dev {
                problems.push(format!(
                    "paths.inbox ({}) and paths.state ({}) are on different filesystems; they must \
                     share one so that taking a file in is an atomic rename",
                    p.inbox.display(),
                    p.state.display()
                ));
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
            TransportKind::Sftp | TransportKind::Altinn3 => problems.push(format!(
                "transport.kind {:?} is not available in this version; use \"local\"",
                self.transport.kind
            )),
        }
        problems
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
