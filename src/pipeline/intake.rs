//! Intake: which files in the inbox are complete and may be taken.
//!
//! A fagsystem writes a batch over seconds or minutes; taking it half-way is
//! the classic watcher bug. Three ways to know a file is complete, chosen in
//! the config (`intake.ready`):
//! - `stable`: its size and mtime have not changed for `stable_for_ms`;
//! - `done-file`: a marker `NAME.done` exists (written after NAME);
//! - `rename`: the writer writes under a temporary name and renames, so every
//!   other name is complete.
//!
//! In every mode, hidden files and temporary names (`.*`, `*.tmp`, `*.part`)
//! are never taken. This module only decides; the pipeline moves the files.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Intake as IntakeConfig, Ready};
use crate::transport::is_temporary;

const DONE_SUFFIX: &str = ".done";

/// What a scan remembers about a file it has seen but not yet taken.
struct Seen {
    size: u64,
    mtime: SystemTime,
    since: Instant,
}

pub struct Intake {
    config: IntakeConfig,
    seen: HashMap<String, Seen>,
}

/// A file in the inbox, ready to be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFile {
    pub name: String,
    pub size: u64,
}

impl Intake {
    pub fn new(config: IntakeConfig) -> Intake {
        Intake {
            config,
            seen: HashMap::new(),
        }
    }

    /// Is `name` one we never take (temporary, hidden, or a done marker)?
    pub fn ignored(&self, name: &str) -> bool {
        is_temporary(name) || (self.config.ready == Ready::DoneFile && name.ends_with(DONE_SUFFIX))
    }

    /// The marker of `name` in done-file mode.
    pub fn marker(&self, name: &str) -> Option<String> {
        (self.config.ready == Ready::DoneFile).then(|| format!("{name}{DONE_SUFFIX}"))
    }

    /// Candidate names in the inbox: regular files we would take once ready.
    pub fn candidates(&self, inbox: &Path) -> io::Result<Vec<(String, fs::Metadata)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(inbox)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: reported by status as unknown; never taken
            };
            if self.ignored(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                out.push((name, meta));
            }
        }
        // Oldest first, as the fagsystem wrote them; the name breaks ties.
        out.sort_by_key(|(name, meta)| (meta.modified().ok(), name.clone()));
        Ok(out)
    }

    /// The files that are complete now, by the configured rule.
    pub fn scan(&mut self, inbox: &Path) -> io::Result<Vec<ReadyFile>> {
        let now = Instant::now();
        let stable_for = Duration::from_millis(self.config.stable_for_ms);
        let candidates = self.candidates(inbox)?;
        let mut ready = Vec::new();
        let mut still_there = HashSet::with_capacity(candidates.len());
        for (name, meta) in candidates {
            let size = meta.len();
            let is_ready = match self.config.ready {
                Ready::Rename => true,
                Ready::DoneFile => inbox.join(format!("{name}{DONE_SUFFIX}")).exists(),
                Ready::Stable => {
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    match self.seen.get(&name) {
                        Some(s) if s.size == size && s.mtime == mtime => {
                            now.duration_since(s.since) >= stable_for
                        }
                        _ => {
                            self.seen.insert(
                                name.clone(),
                                Seen {
                                    size,
                                    mtime,
                                    since: now,
                                },
                            );
                            false
                        }
                    }
                }
            };
            still_there.insert(name.clone());
            if is_ready {
                ready.push(ReadyFile { name, size });
            }
        }
        self.seen.retain(|name, _| still_there.contains(name));
        Ok(ready)
    }

    /// Forget a file once it has been taken.
    pub fn taken(&mut self, name: &str) {
        self.seen.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(ready: Ready, stable_for_ms: u64) -> Intake {
        Intake::new(IntakeConfig {
            ready,
            stable_for_ms,
        })
    }

    fn names(r: Vec<ReadyFile>) -> Vec<String> {
        r.into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn temporary_and_hidden_names_are_never_taken() {
        let dir = tempfile::tempdir().unwrap();
        for n in [".hidden.xml", "a.xml.tmp", "b.xml.part", "c.xml"] {
            fs::write(dir.path().join(n), "x").unwrap();
        }
        let mut i = intake(Ready::Rename, 0);
        assert_eq!(names(i.scan(dir.path()).unwrap()), vec!["c.xml"]);
    }

    #[test]
    fn done_file_mode_waits_for_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.xml"), "x").unwrap();
        let mut i = intake(Ready::DoneFile, 0);
        assert!(i.scan(dir.path()).unwrap().is_empty());
        fs::write(dir.path().join("a.xml.done"), "").unwrap();
        assert_eq!(names(i.scan(dir.path()).unwrap()), vec!["a.xml"]);
    }

    #[test]
    fn stable_mode_needs_two_identical_looks_and_restarts_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.xml");
        fs::write(&f, "x").unwrap();
        // stable_for 0: the second identical look is enough, the first never is.
        let mut i = intake(Ready::Stable, 0);
        assert!(i.scan(dir.path()).unwrap().is_empty());
        fs::write(&f, "xy").unwrap();
        assert!(
            i.scan(dir.path()).unwrap().is_empty(),
            "changed since the first look"
        );
        assert_eq!(names(i.scan(dir.path()).unwrap()), vec!["a.xml"]);
        // A long stability window is not met by two quick looks.
        let mut slow = intake(Ready::Stable, 60_000);
        assert!(slow.scan(dir.path()).unwrap().is_empty());
        assert!(slow.scan(dir.path()).unwrap().is_empty());
    }
}
