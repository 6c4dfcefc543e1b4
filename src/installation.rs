//! Who we are, and what we must never forget: the installation id, the
//! remote names built from it, and the check that refuses to start on a
//! lost journal.
//!
//! Why: the journal is the only memory of what was sent. If it is lost (a
//! deleted or truncated `journal.sqlite`) and dpv-batch quietly starts a new
//! one, staged inputs are orphaned and remote names start again at file 1,
//! so a new batch can look "already delivered" (same name, same size) and is
//! never sent. Two installations on one Altinn account had the same
//! problem with each other's names. So:
//!
//! - Every installation has an id: 16 random hex digits, created once,
//!   written atomically to `state/installation-id` and recorded in the
//!   journal. The file is a witness kept *beside* the journal: when the
//!   journal is gone, the file (or staged work) says there was one.
//! - Remote names are `dpv-<id>-<epoch>-<file id>-<part>.xml`. The epoch
//!   (milliseconds since 1970 at a start, 12 hex digits, strictly
//!   increasing per journal) is that of the start the file was taken in
//!   under, so a file's names never change (an upload interrupted by a
//!   crash is resumed under the same name), and a journal restored from a
//!   backup, whose file ids start again below ones already used, still
//!   never repeats a name: only a clock set back past the restored
//!   journal's last start could. Names sort by installation, then by
//!   start, then by file: upload order.
//! - [`earlier_work`] and [`lost_journal`]: a missing or empty journal with
//!   anything in the state folder that only a run with a journal leaves
//!   behind stops the start, with the way back in plain words.
//!
//! When the journal and the id file disagree, one function decides
//! ([`plan`]): the journal is the truth about work, the file is the witness
//! that this folder is the journal's home. A missing file beside a journal
//! that has never taken a file in is written from the journal (the first
//! start stopped between the two); a journal from before ids takes the
//! file's id; when neither has one, a new id is made. Anything else (a
//! journal with files whose id file is missing, an id file that is damaged,
//! unreadable or names another installation) may mean a journal copied
//! from another installation, and two installations sharing an id would
//! take each other's receipts: dpv-batch stops and says how to settle it;
//! it never guesses.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::durable;
use crate::journal::{Journal, JournalError, Probe};

/// The id file's name inside the state folder.
pub const ID_FILE: &str = "installation-id";

/// Hex digits in an installation id (64 random bits).
const ID_LEN: usize = 16;

/// Is `s` an installation id: exactly 16 lowercase hex digits?
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random id, from the kernel's random source.
pub fn generate() -> io::Result<String> {
    let mut bytes = [0u8; ID_LEN / 2];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

// ---- remote names ----------------------------------------------------------

/// The prefix of every remote part name of input file `file_id`, taken in
/// under `epoch`: part N is `PREFIX-NNNNN.xml` (see `package::part_name`),
/// 52 characters in all, plain ASCII: legal on any SFTP server.
pub fn name_prefix(id: &str, epoch: i64, file_id: i64) -> String {
    format!("dpv-{id}-{epoch:012x}-{file_id:08}")
}

/// The installation a remote name (or a receipt's file name) belongs to,
/// if it is one of ours in the current scheme. Names from before ids
/// (`dpv-00000001-00001.xml`) and foreign names have none.
pub fn owner_of(remote_name: &str) -> Option<&str> {
    let rest = remote_name.strip_prefix("dpv-")?;
    let id = rest.get(..ID_LEN).filter(|id| is_id(id))?;
    rest[ID_LEN..].starts_with('-').then_some(id)
}

// ---- the id file -----------------------------------------------------------

/// What `state/installation-id` holds.
#[derive(Debug)]
pub enum IdFile {
    Missing,
    Valid(String),
    /// Present but not an id; the text says what is there.
    Damaged(String),
    /// Present but cannot be read (permissions, a folder, an I/O error).
    Unreadable(io::Error),
}

pub fn id_path(state: &Path) -> PathBuf {
    state.join(ID_FILE)
}

pub fn read_id_file(state: &Path) -> IdFile {
    let path = id_path(state);
    let mut bytes = Vec::new();
    // At most a little more than an id: a huge file is damaged, not read whole.
    let read = fs::File::open(&path).and_then(|f| f.take(64).read_to_end(&mut bytes).map(|_| ()));
    match read {
        Err(e) if e.kind() == io::ErrorKind::NotFound => IdFile::Missing,
        Err(e) => IdFile::Unreadable(e),
        Ok(()) => match std::str::from_utf8(&bytes).map(str::trim_end) {
            Ok(s) if is_id(s) => IdFile::Valid(s.to_string()),
            Ok("") => IdFile::Damaged("it is empty".into()),
            _ => IdFile::Damaged(format!(
                "it holds {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            )),
        },
    }
}

/// Write the id file atomically (temporary name, fsync, rename, fsync).
pub fn write_id_file(state: &Path, id: &str) -> io::Result<()> {
    durable::write_atomic(&id_path(state), format!("{id}\n").as_bytes())
}

// ---- a lost journal --------------------------------------------------------

/// What in `state` shows that a journal was there before: the id file, and
/// anything in the folders only a running pipeline fills (staged inputs,
/// parts, fetched receipts), and a leftover write-ahead log. Each as a
/// phrase for the refusal message; empty when the folder looks new.
pub fn earlier_work(state: &Path, journal: &Path) -> Vec<String> {
    let mut found = Vec::new();
    match fs::symlink_metadata(id_path(state)) {
        Ok(_) => found.push(format!(
            "the installation id file {}",
            id_path(state).display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => found.push(format!(
            "an installation id file that cannot be examined ({e})"
        )),
    }
    for (sub, what) in [
        ("staging", "input file(s) taken in and not finished"),
        ("parts", "packaged part folder(s)"),
        ("inbound", "receipt file(s) or folder(s) from Altinn"),
    ] {
        let dir = state.join(sub);
        if let Ok(entries) = fs::read_dir(&dir) {
            let n = entries.count();
            if n > 0 {
                found.push(format!("{n} {what} in {}", dir.display()));
            }
        }
    }
    let mut wal = journal.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        found.push(format!("the journal's write-ahead log {}", wal.display()));
    }
    found
}

/// The refusal when the journal is missing or empty but `found` says
/// there was one: what we found, why we stop, how to restore, and how to
/// start afresh on purpose.
pub fn lost_journal(state: &Path, journal: &Path, found: &[String]) -> String {
    let j = journal.display();
    let s = state.display();
    let mut m = format!(
        "refusing to start: the journal {j} is missing or empty, but the state folder {s} \
         holds work from a run that had a journal:\n"
    );
    for f in found {
        m.push_str(&format!("  - {f}\n"));
    }
    m.push_str(&format!(
        "Starting with a new journal would forget those files and what was already sent to \
         Altinn (a new batch could be taken as already delivered), so nothing was touched.\n\
         To restore: put your latest backup of the journal back. With dpv-batch stopped, move \
         {j} and any {j}-wal and {j}-shm aside, copy the backup to {j}, and start again. \
         (Backups are made while running with: sqlite3 {j} \".backup /path/to/backup.sqlite\".)\n\
         To start afresh on purpose (losing that history): move the whole state folder aside, \
         e.g. mv {s} {s}.old, and start again; inputs left in {s}.old/staging were not \
         finished: drop into the inbox again those the fagsystem has no receipt for.",
    ));
    m
}

// ---- journal and id file together ------------------------------------------

/// What to do to make the journal and the id file agree (see [`plan`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// They agree.
    Use(String),
    /// The journal has its id and no files yet: the first start stopped
    /// between journal and file. Write the file.
    WriteFile(String),
    /// A journal from before ids joins the installation of its folder.
    Record(String),
    /// Neither has an id: a new installation, or an upgrade.
    Create,
}

/// Decide, from what the journal records (without changing it) and what
/// the id file holds, how to go on, or refuse with the words an operator
/// needs. See the module docs for the rules.
pub fn plan(probe: &Probe, file: IdFile, state: &Path) -> Result<Plan, String> {
    let path = id_path(state);
    let p = path.display();
    match (probe.installation_id.clone(), file) {
        (Some(j), _) if !is_id(&j) => Err(format!(
            "refusing to start: the journal's installation id is damaged ({j:?}; it should be \
             16 hex digits). Put the journal back from your backup."
        )),
        (_, IdFile::Unreadable(e)) => Err(format!(
            "refusing to start: cannot read the installation id file {p}: {e}. dpv-batch must \
             be able to read it (it holds 16 hex digits and a newline); fix its permissions."
        )),
        (Some(j), IdFile::Valid(f)) if j == f => Ok(Plan::Use(j)),
        (Some(j), IdFile::Missing) if !probe.has_files => Ok(Plan::WriteFile(j)),
        (Some(j), IdFile::Missing) => Err(format!(
            "refusing to start: the journal belongs to installation {j}, but the installation \
             id file {p} is missing. If this journal is this installation's own (moved here \
             from another machine or folder, say), write the id back: printf '{j}\\n' > {p} \
             and start again. Never start a copy of another installation's journal: two \
             installations with one id would take each other's receipts."
        )),
        (Some(j), IdFile::Valid(f)) => Err(format!(
            "refusing to start: the journal belongs to installation {j}, but {p} says this is \
             installation {f}: one of them was copied from another installation. If the \
             journal is the right one (this installation was moved here), replace the file: \
             printf '{j}\\n' > {p}. Otherwise put this installation's own journal back from \
             your backup."
        )),
        (Some(j), IdFile::Damaged(what)) => Err(format!(
            "refusing to start: the installation id file {p} is damaged ({what}; it should hold \
             16 hex digits). The journal says this is installation {j}; if that is right, write \
             it back: printf '{j}\\n' > {p}"
        )),
        (None, IdFile::Damaged(what)) => Err(format!(
            "refusing to start: the installation id file {p} is damaged ({what}; it should hold \
             16 hex digits), and the journal does not record an id. If you know this \
             installation's id, write it back; otherwise move the file aside and dpv-batch \
             makes a new id (safe: remote names then start a new series)."
        )),
        (None, IdFile::Valid(f)) => Ok(Plan::Record(f)),
        (None, IdFile::Missing) => Ok(Plan::Create),
    }
}

/// Carry out a [`plan`] on the journal (now open for writing) and the id
/// file; the id to use. A new id goes into the journal first: a crash
/// before the file is written leaves a journal with an id and no files,
/// which the next start completes ([`Plan::WriteFile`]).
pub fn apply(plan: Plan, journal: &Journal, state: &Path) -> Result<String, ApplyError> {
    let path = id_path(state);
    let write = |id: &str| write_id_file(state, id).map_err(|e| ApplyError::Io(path.clone(), e));
    match plan {
        Plan::Use(id) => Ok(id),
        Plan::WriteFile(id) => {
            write(&id)?;
            Ok(id)
        }
        Plan::Record(id) => {
            warn!(installation = %id, "the journal records no installation id (from an older dpv-batch?); it takes the one in {}", path.display());
            journal.set_installation_id(&id)?;
            Ok(id)
        }
        Plan::Create => {
            let id = generate().map_err(|e| ApplyError::Io(PathBuf::from("/dev/urandom"), e))?;
            journal.set_installation_id(&id)?;
            write(&id)?;
            info!(installation = %id, "new installation id, kept in {} and the journal", path.display());
            Ok(id)
        }
    }
}

/// Why [`apply`] failed: the journal or the id file could not be written.
#[derive(Debug)]
pub enum ApplyError {
    Journal(JournalError),
    Io(PathBuf, io::Error),
}

impl From<JournalError> for ApplyError {
    fn from(e: JournalError) -> Self {
        ApplyError::Journal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = generate().unwrap();
        assert!(is_id(&id), "{id}");
        assert_ne!(id, generate().unwrap());
        let prefix = name_prefix(&id, 0x19a_6650_a1b2, 42);
        assert_eq!(prefix, format!("dpv-{id}-019a6650a1b2-00000042"));
        assert_eq!(format!("{prefix}-00001.xml").len(), 52);
        let name = format!("{prefix}-00001.xml");
        assert_eq!(owner_of(&name), Some(id.as_str()));
        assert_eq!(owner_of(&format!("{name}.receipt.xml")), Some(id.as_str()));
        assert_eq!(owner_of("dpv-00000001-00001.xml"), None);
        assert_eq!(owner_of("dpv-0123456789ABCDEF-1-1.xml"), None);
        assert_eq!(owner_of("dpv-0123456789abcdef"), None);
        assert_eq!(owner_of("dpv-ø"), None);
        assert_eq!(owner_of("batch.xml"), None);
    }

    #[test]
    fn the_id_file_is_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_id_file(dir.path()), IdFile::Missing));
        write_id_file(dir.path(), "0123456789abcdef").unwrap();
        assert!(matches!(read_id_file(dir.path()), IdFile::Valid(s) if s == "0123456789abcdef"));
        for bad in ["", "0123456789ABCDEF\n", "0123", "\u{0}\u{1}garbage"] {
            fs::write(id_path(dir.path()), bad).unwrap();
            assert!(
                matches!(read_id_file(dir.path()), IdFile::Damaged(_)),
                "{bad:?}"
            );
        }
        fs::remove_file(id_path(dir.path())).unwrap();
        fs::create_dir(id_path(dir.path())).unwrap();
        assert!(matches!(read_id_file(dir.path()), IdFile::Unreadable(_)));
    }

    #[test]
    fn journal_and_file_agree_or_we_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let probe = |id: Option<&str>, has_files: bool| Probe {
            holds_state: true,
            installation_id: id.map(str::to_string),
            has_files,
        };
        let plan_with = |probe: Probe, file: Option<&str>| {
            match file {
                None => {
                    let _ = fs::remove_file(id_path(state));
                }
                Some(text) => fs::write(id_path(state), text).unwrap(),
            }
            plan(&probe, read_id_file(state), state)
        };
        let (j, f) = ("0123456789abcdef", "fedcba9876543210");
        // Agreement, a first start, an upgrade, an old journal.
        assert_eq!(
            plan_with(probe(Some(j), true), Some("0123456789abcdef\n")),
            Ok(Plan::Use(j.into()))
        );
        assert_eq!(plan_with(probe(None, false), None), Ok(Plan::Create));
        assert_eq!(plan_with(probe(None, true), None), Ok(Plan::Create));
        assert_eq!(
            plan_with(probe(None, true), Some(f)),
            Ok(Plan::Record(f.into()))
        );
        // The first start stopped between journal and file: completed.
        assert_eq!(
            plan_with(probe(Some(j), false), None),
            Ok(Plan::WriteFile(j.into()))
        );
        // A journal with files and a missing, other or damaged file: refused.
        let refused = |r: Result<Plan, String>| r.expect_err("refused");
        assert!(refused(plan_with(probe(Some(j), true), None)).contains("is missing"));
        assert!(refused(plan_with(probe(Some(j), true), Some(f)))
            .contains("says this is installation fedcba9876543210"));
        assert!(refused(plan_with(probe(Some(j), false), Some(f))).contains("copied"));
        assert!(refused(plan_with(probe(Some(j), true), Some("junk"))).contains("damaged"));
        assert!(refused(plan_with(probe(None, true), Some("junk"))).contains("damaged"));
        assert!(refused(plan_with(probe(Some("x'; rm -rf /"), false), None)).contains("damaged"));
        let _ = fs::remove_file(id_path(state));
        fs::create_dir(id_path(state)).unwrap();
        assert!(
            refused(plan(&probe(Some(j), true), read_id_file(state), state))
                .contains("cannot read")
        );
    }

    #[test]
    fn a_new_id_goes_into_the_journal_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let path = state.join("j.sqlite");
        assert!(!Journal::probe(&path).unwrap().holds_state);
        let j = Journal::open(&path).unwrap();
        let id = apply(Plan::Create, &j, state).unwrap();
        assert!(is_id(&id));
        assert!(matches!(read_id_file(state), IdFile::Valid(f) if f == id));
        let probe = Journal::probe(&path).unwrap();
        assert!(probe.holds_state && !probe.has_files);
        assert_eq!(probe.installation_id.as_deref(), Some(id.as_str()));
        assert_eq!(plan(&probe, read_id_file(state), state), Ok(Plan::Use(id)));
    }
}
