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
//! are never taken (nor, in done-file mode, the markers).
//!
//! Everything else in the inbox is taken, whatever its name or type, so
//! that each gets one receipt: a regular file with a name that is shown as
//! it is goes on to validation; anything else is *refused* (a receipt says
//! why, and the entry moves to `failed/` untouched): a name that would be
//! shown escaped (not UTF-8, control characters, a backslash: see `names`),
//! a name too long for its `.done` marker, and every entry that is not a
//! regular file (symbolic link, folder, FIFO, socket, device). Entries are
//! looked at with `lstat` only: a link is never followed, a FIFO never
//! opened. Refused entries are ready as soon as a file would be (in
//! done-file mode at once: no marker could make them acceptable).
//!
//! This module only decides; the pipeline moves the entries.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Intake as IntakeConfig, Ready};
use crate::names;
use crate::outbox::NAME_MAX;
use crate::transport::is_temporary;

const DONE_SUFFIX: &str = ".done";

/// What a scan remembers about an entry it has seen but not yet taken.
struct Seen {
    size: u64,
    mtime: SystemTime,
    since: Instant,
}

pub struct Intake {
    config: IntakeConfig,
    seen: HashMap<OsString, Seen>,
    /// Entries that could not be taken in and were logged once already.
    troubled: HashSet<OsString>,
}

/// An entry in the inbox that will be taken once ready.
pub struct Candidate {
    /// Its name as it is on disk.
    pub raw: OsString,
    /// Its name as shown (and journalled): see `names`.
    pub name: String,
    /// From `lstat`: never the target of a link.
    pub meta: fs::Metadata,
}

/// An entry in the inbox, ready to be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFile {
    pub raw: OsString,
    pub name: String,
    pub size: u64,
}

impl Intake {
    pub fn new(config: IntakeConfig) -> Intake {
        Intake {
            config,
            seen: HashMap::new(),
            troubled: HashSet::new(),
        }
    }

    /// Is `raw` one we never take (temporary, hidden, or a done marker)?
    pub fn ignored(&self, raw: &OsStr) -> bool {
        is_temporary(&raw.to_string_lossy())
            || (self.config.ready == Ready::DoneFile
                && raw.as_bytes().ends_with(DONE_SUFFIX.as_bytes()))
    }

    /// The marker of `raw` in done-file mode.
    pub fn marker(&self, raw: &OsStr) -> Option<OsString> {
        (self.config.ready == Ready::DoneFile).then(|| {
            let mut m = raw.to_os_string();
            m.push(DONE_SUFFIX);
            m
        })
    }

    /// Why an input is refused, decided from its name as shown (and
    /// journalled) alone, so that a restart decides the same.
    pub fn refused_name(&self, name: &str) -> Option<String> {
        let raw = names::raw(name);
        if !names::is_plain(&raw) {
            let what = if std::str::from_utf8(raw.as_bytes()).is_err() {
                "is not UTF-8 (bytes that are not UTF-8 are shown as \\xHH)"
            } else {
                "holds characters that are shown escaped (control characters, bidirectional controls or a backslash)"
            };
            return Some(format!(
                "not taken in: the file name {what}; dpv-batch takes in only names it can show as they are: rename the file and drop it again"
            ));
        }
        if self.config.ready == Ready::DoneFile && raw.len() + DONE_SUFFIX.len() > NAME_MAX {
            return Some(format!(
                "not taken in: the file name is too long for its marker (NAME{DONE_SUFFIX} would be longer than {NAME_MAX} bytes); in done-file mode names are at most {} bytes",
                NAME_MAX - DONE_SUFFIX.len()
            ));
        }
        None
    }

    /// Entries in the inbox we would take once ready, oldest first.
    pub fn candidates(&self, inbox: &Path) -> io::Result<Vec<Candidate>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(inbox)? {
            let entry = entry?;
            let raw = entry.file_name();
            if self.ignored(&raw) {
                continue;
            }
            // DirEntry::metadata is lstat: a link is looked at, not followed.
            let Ok(meta) = entry.metadata() else {
                continue; // gone since the listing
            };
            let name = names::shown(&raw);
            out.push(Candidate { raw, name, meta });
        }
        // Oldest first, as the fagsystem wrote them; the name breaks ties.
        out.sort_by(|a, b| (a.meta.modified().ok(), &a.raw).cmp(&(b.meta.modified().ok(), &b.raw)));
        Ok(out)
    }

    /// The entries that are complete now, by the configured rule.
    pub fn scan(&mut self, inbox: &Path) -> io::Result<Vec<ReadyFile>> {
        let now = Instant::now();
        let stable_for = Duration::from_millis(self.config.stable_for_ms);
        let candidates = self.candidates(inbox)?;
        let mut ready = Vec::new();
        let mut still_there = HashSet::with_capacity(candidates.len());
        for Candidate { raw, name, meta } in candidates {
            let size = meta.len();
            let refused =
                refused_kind(meta.file_type()).is_some() || self.refused_name(&name).is_some();
            let is_ready = match self.config.ready {
                Ready::Rename => true,
                Ready::DoneFile => {
                    refused
                        || self
                            .marker(&raw)
                            .is_some_and(|m| fs::symlink_metadata(inbox.join(m)).is_ok())
                }
                Ready::Stable => {
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    match self.seen.get(&raw) {
                        Some(s) if s.size == size && s.mtime == mtime => {
                            now.duration_since(s.since) >= stable_for
                        }
                        _ => {
                            self.seen.insert(
                                raw.clone(),
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
            still_there.insert(raw.clone());
            if is_ready {
                ready.push(ReadyFile { raw, name, size });
            }
        }
        self.seen.retain(|raw, _| still_there.contains(raw));
        self.troubled.retain(|raw| still_there.contains(raw));
        Ok(ready)
    }

    /// Forget an entry once it has been taken.
    pub fn taken(&mut self, raw: &OsStr) {
        self.seen.remove(raw);
        self.troubled.remove(raw);
    }

    /// An entry could not be taken in (and stays in the inbox): true the
    /// first time, so the log says so once, not on every scan.
    pub fn first_trouble(&mut self, raw: &OsStr) -> bool {
        self.troubled.insert(raw.to_os_string())
    }
}

/// Why an entry of this type is refused: anything but a regular file.
pub fn refused_kind(t: fs::FileType) -> Option<String> {
    let what = if t.is_file() {
        return None;
    } else if t.is_symlink() {
        "a symbolic link (dpv-batch never follows links; drop the file itself)"
    } else if t.is_dir() {
        "a folder (drop files, not folders; the folder was moved aside whole)"
    } else if t.is_fifo() {
        "a FIFO (named pipe), not a file"
    } else if t.is_socket() {
        "a socket, not a file"
    } else if t.is_block_device() || t.is_char_device() {
        "a device, not a file"
    } else {
        "not a regular file"
    };
    Some(format!("not taken in: it is {what}"))
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
    fn entries_to_refuse_need_no_marker_and_are_looked_at_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}.xml", "n".repeat(247)); // 251 bytes: no marker fits
        fs::write(dir.path().join(&long), "x").unwrap();
        fs::write(dir.path().join("wait.xml"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("link.xml")).unwrap();
        fs::create_dir(dir.path().join("dir.xml")).unwrap();
        let mut i = intake(Ready::DoneFile, 0);
        let mut got = names(i.scan(dir.path()).unwrap());
        got.sort();
        assert_eq!(
            got,
            vec!["dir.xml".to_string(), "link.xml".into(), long.clone()]
        );
        assert!(i.refused_name(&long).unwrap().contains("too long"));
        assert_eq!(i.refused_name("wait.xml"), None);
        let kind = |n: &str| {
            fs::symlink_metadata(dir.path().join(n))
                .unwrap()
                .file_type()
        };
        assert!(refused_kind(kind("link.xml"))
            .unwrap()
            .contains("symbolic link"));
        assert!(refused_kind(kind("dir.xml")).unwrap().contains("folder"));
        assert_eq!(refused_kind(kind("wait.xml")), None);
        // The same long name is fine where no marker is needed.
        assert_eq!(intake(Ready::Rename, 0).refused_name(&long), None);
    }

    #[test]
    fn names_shown_escaped_are_refused_and_found_again() {
        use std::os::unix::ffi::OsStringExt;
        let dir = tempfile::tempdir().unwrap();
        let raw = OsString::from_vec(b"a\nb\n\xff.xml".to_vec());
        fs::write(dir.path().join(&raw), "x").unwrap();
        let mut i = intake(Ready::Rename, 0);
        let ready = i.scan(dir.path()).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].raw, raw);
        assert_eq!(
            names::raw(&ready[0].name),
            raw,
            "the journalled name finds the entry"
        );
        assert!(i.refused_name(&ready[0].name).is_some());
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
