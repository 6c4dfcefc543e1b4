//! The journal: one SQLite file that owns all pipeline state. Only this
//! module speaks SQL.
//!
//! Why a journal: the promise is "nothing lost, nothing sent twice, whatever
//! happens". That holds only if every state change is durable *before* the
//! side effect that depends on it, and if a restart can tell exactly where
//! each file was. SQLite in WAL mode with `synchronous = FULL` gives durable,
//! atomic transactions in one local file; nothing else to run or back up.
//!
//! The model, top down:
//! - `files`: one row per input file, moving through [`FileState`];
//! - `parts`: the batch files we upload (a large input is split), each with
//!   its own [`PartState`], ShipmentReference and SequenceNo;
//! - `letters`: every letter (SendersReference) of every part, with the
//!   status Altinn gave it and when it was read;
//! - `sequences`: the last SequenceNo used per SystemUserCode;
//! - `events`: later news (letters read) written to the outbox as new files;
//! - `meta` and `name_epochs`: the installation id, and each start's epoch
//!   for remote names (see `installation`).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

pub type Result<T> = std::result::Result<T, JournalError>;

/// A journal failure. These are not expected in normal operation (disk full,
/// a corrupt file); the daemon stops rather than carry on without a journal.
#[derive(Debug)]
pub struct JournalError(pub String);

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "journal: {}", self.0)
    }
}

impl std::error::Error for JournalError {}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError(e.to_string())
    }
}

/// Where an input file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Journalled, still in the inbox: the move into staging comes next.
    Received,
    /// In staging, hashed: validation comes next.
    Staged,
    /// Parts written and journalled (with their SequenceNos): upload next.
    Packaged,
    /// Every part uploaded: waiting for Altinn's receipts.
    Submitted,
    /// Outcome known: receipt to write, input to move.
    Finishing,
    /// Receipt in the outbox, input archived or failed.
    Done,
}

/// The final verdict on an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Accepted,
    PartiallyAccepted,
    Rejected,
    Failed,
}

/// Where a part is on its way to Altinn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartState {
    Packaged,
    /// Upload started: after a crash, look at the remote side before uploading again.
    Uploading,
    Uploaded,
    Receipted,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident),* }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => stringify!($v)),* }
            }
            fn parse(s: &str) -> rusqlite::Result<Self> {
                match s {
                    $(stringify!($v) => Ok(Self::$v),)*
                    other => Err(rusqlite::Error::InvalidColumnType(0, other.to_string(), rusqlite::types::Type::Text)),
                }
            }
        }
    };
}
text_enum!(FileState {
    Received,
    Staged,
    Packaged,
    Submitted,
    Finishing,
    Done
});
text_enum!(Outcome {
    Accepted,
    PartiallyAccepted,
    Rejected,
    Failed
});
text_enum!(PartState {
    Packaged,
    Uploading,
    Uploaded,
    Receipted
});

#[derive(Debug, Clone, Serialize)]
pub struct FileRow {
    pub id: i64,
    pub name: String,
    pub sha256: Option<String>,
    pub size: i64,
    pub state: FileState,
    pub outcome: Option<Outcome>,
    /// A one-line reason for the outcome, or the last error while in flight.
    pub reason: Option<String>,
    pub letters: i64,
    pub received_at: String,
    pub updated_at: String,
    /// The validation report (JSON) when the file was rejected by validation.
    #[serde(skip)]
    pub report_json: Option<String>,
    pub receipt_name: Option<String>,
    /// Where the input was (or will be) moved when done.
    pub moved_to: Option<String>,
    /// Seconds since the file last changed state.
    pub idle_seconds: i64,
    /// The receipt is written under its temporary name (and maybe published).
    #[serde(skip)]
    pub receipt_staged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartRow {
    pub id: i64,
    pub file_id: i64,
    pub part_no: i64,
    pub remote_name: String,
    pub shipment_reference: String,
    pub sequence_no: Option<i64>,
    pub letters: i64,
    pub bytes: i64,
    pub state: PartState,
    pub status: Option<String>,
    pub text: Option<String>,
    pub system_user_code: String,
    /// Where the SequenceNo goes in the part file, when dpv-batch numbers.
    pub sequence_slot: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LetterRow {
    pub part_no: i64,
    pub senders_reference: String,
    pub reportee: String,
    pub status: Option<String>,
    pub text: Option<String>,
    pub read_at: Option<String>,
}

/// A part about to be journalled by [`Journal::record_parts`].
pub struct NewPart {
    pub part_no: i64,
    pub remote_name: String,
    pub shipment_reference: String,
    /// The input's own SequenceNo (when dpv-batch does not number).
    pub sequence_no: Option<i64>,
    /// Where dpv-batch writes the SequenceNo it assigns at upload time.
    pub sequence_slot: Option<i64>,
    pub bytes: i64,
    /// (SendersReference, Reportee) of each letter in the part.
    pub letters: Vec<(String, String)>,
}

/// A read-event file to be written to the outbox.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub file_id: i64,
    pub outbox_name: String,
    /// Written under its temporary name already (maybe published too).
    pub staged: bool,
}

/// What [`Journal::probe`] found, without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Some row anywhere: an earlier run used it. False for a missing or
    /// empty (0 bytes) file, or one with tables but not a single row:
    /// those cannot be told from a new journal.
    pub holds_state: bool,
    /// The installation it belongs to (None: from before ids, or new).
    pub installation_id: Option<String>,
    /// Any input file was ever journalled.
    pub has_files: bool,
}

/// The journal's schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    outcome TEXT,
    reason TEXT,
    letters INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    report_json TEXT,
    receipt_name TEXT,
    moved_to TEXT,
    receipt_staged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_state ON files(state);
CREATE INDEX IF NOT EXISTS files_sha ON files(sha256);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    part_no INTEGER NOT NULL,
    remote_name TEXT NOT NULL UNIQUE,
    shipment_reference TEXT NOT NULL,
    sequence_no INTEGER,
    letters INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    status TEXT,
    text TEXT,
    system_user_code TEXT NOT NULL DEFAULT '',
    sequence_slot INTEGER,
    UNIQUE (file_id, part_no)
);
CREATE INDEX IF NOT EXISTS parts_state ON parts(state);
CREATE INDEX IF NOT EXISTS parts_shipment ON parts(shipment_reference);
CREATE TABLE IF NOT EXISTS letters (
    id INTEGER PRIMARY KEY,
    part_id INTEGER NOT NULL REFERENCES parts(id),
    senders_reference TEXT NOT NULL,
    reportee TEXT NOT NULL,
    status TEXT,
    text TEXT,
    read_at TEXT,
    event_id INTEGER
);
CREATE INDEX IF NOT EXISTS letters_part ON letters(part_id);
CREATE INDEX IF NOT EXISTS letters_ref ON letters(senders_reference);
CREATE TABLE IF NOT EXISTS sequences (
    system_user_code TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    outbox_name TEXT NOT NULL,
    written INTEGER NOT NULL DEFAULT 0 -- 0 planned, 1 staged, 2 published
);
-- Facts about the installation itself, as key/value pairs:
-- 'installation_id' (also kept in state/installation-id).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per start: files from first_file_id on carry that start's epoch
-- in their remote names (see installation.rs).
CREATE TABLE IF NOT EXISTS name_epochs (
    epoch INTEGER PRIMARY KEY,
    first_file_id INTEGER NOT NULL
);
"#;

const FILE_COLS: &str = "id, name, sha256, size, state, outcome, reason, letters, received_at, \
                         updated_at, report_json, receipt_name, moved_to, \
                         CAST((julianday('now') - julianday(updated_at)) * 86400 AS INTEGER), \
                         receipt_staged";
const PART_COLS: &str = "id, file_id, part_no, remote_name, shipment_reference, sequence_no, \
                         letters, bytes, state, status, text, system_user_code, sequence_slot";

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        name: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get(3)?,
        state: FileState::parse(&r.get::<_, String>(4)?)?,
        outcome: r
            .get::<_, Option<String>>(5)?
            .map(|s| Outcome::parse(&s))
            .transpose()?,
        reason: r.get(6)?,
        letters: r.get(7)?,
        received_at: r.get(8)?,
        updated_at: r.get(9)?,
        report_json: r.get(10)?,
        receipt_name: r.get(11)?,
        moved_to: r.get(12)?,
        idle_seconds: r.get(13)?,
        receipt_staged: r.get::<_, i64>(14)? != 0,
    })
}

fn part_row(r: &Row<'_>) -> rusqlite::Result<PartRow> {
    Ok(PartRow {
        id: r.get(0)?,
        file_id: r.get(1)?,
        part_no: r.get(2)?,
        remote_name: r.get(3)?,
        shipment_reference: r.get(4)?,
        sequence_no: r.get(5)?,
        letters: r.get(6)?,
        bytes: r.get(7)?,
        state: PartState::parse(&r.get::<_, String>(8)?)?,
        status: r.get(9)?,
        text: r.get(10)?,
        system_user_code: r.get(11)?,
        sequence_slot: r.get(12)?,
    })
}

pub struct Journal {
    conn: Connection,
}

/// `file:PATH?immutable=1`, the path percent-encoded (SQLite's URI names).
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

impl Journal {
    /// Open (or create) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // The schema's version lives in the file: a journal written by a
        // newer dpv-batch is refused rather than misread. A future schema
        // change adds a migration step from each older version here.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(JournalError(format!(
                "{} was written by a newer dpv-batch (journal version {version}, this one knows {SCHEMA_VERSION}); \
                 run that version, or restore a matching binary",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Journal { conn })
    }

    /// Look at the journal at `path` without changing it (nor creating it):
    /// does it hold anything an earlier run recorded, and whose is it?
    pub fn probe(path: &Path) -> Result<Probe> {
        let empty = Probe {
            holds_state: false,
            installation_id: None,
            has_files: false,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
            Err(e) => {
                return Err(JournalError(format!(
                    "cannot look at {}: {e}",
                    path.display()
                )))
            }
            Ok(m) if m.len() == 0 => return Ok(empty),
            Ok(_) => {}
        }
        // Read-write without create: a read-only connection may not be
        // able to read a WAL journal whose -shm file is missing.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let probe = Self::probe_conn(&conn)
            .map_err(|e| JournalError(format!("{}: {}", path.display(), e.0)))?;
        Ok(probe)
    }

    fn probe_conn(conn: &Connection) -> Result<Probe> {
        let has_table = |name: &str| -> Result<bool> {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [name],
                |r| r.get(0),
            )?)
        };
        let exists = |table: &str| -> Result<bool> {
            Ok(has_table(table)?
                && conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                    r.get(0)
                })?)
        };
        // A journal from before `meta` existed has no such table.
        let has_files = exists("files")?;
        let installation_id = if has_table("meta")? {
            conn.query_row(
                "SELECT value FROM meta WHERE key = 'installation_id'",
                [],
                |r| r.get(0),
            )
            .optional()?
        } else {
            None
        };
        Ok(Probe {
            holds_state: has_files
                || exists("sequences")?
                || exists("meta")?
                || exists("name_epochs")?,
            installation_id,
            has_files,
        })
    }

    /// Open read-only, for `status`: while the daemon runs, and by a user
    /// who may read the state folder but not write it.
    ///
    /// A reader of a WAL journal needs its `-shm` index; SQLite creates it
    /// if missing, which such a user cannot ("attempt to write a readonly
    /// database"). It is missing exactly when no WAL is in use: the daemon
    /// stopped cleanly and SQLite folded the WAL into the file. The file
    /// alone then holds everything, and is opened `immutable` (no index, no
    /// locks). With a WAL left behind (the daemon was killed) the file alone
    /// would be out of date, so that is refused with the reason.
    pub fn open_read_only(path: &Path) -> Result<Journal> {
        use rusqlite::OpenFlags;
        let plain =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).and_then(|conn| {
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                // Opening is lazy: this first read is what needs the index.
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                Ok(conn)
            });
        let first = match plain {
            Ok(conn) => return Ok(Journal { conn }),
            Err(e) => e,
        };
        let cannot_write = matches!(
            first.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
        );
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal_in_use = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
        if !cannot_write {
            return Err(first.into());
        }
        if wal_in_use {
            return Err(JournalError(format!(
                "{}: {first}; its write-ahead log {} holds changes that only a user who may \
                 write to that folder can read (run this as the daemon's user, or start the daemon)",
                path.display(),
                Path::new(&wal).display()
            )));
        }
        let conn = Connection::open_with_flags(
            immutable_uri(path),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )?;
        Ok(Journal { conn })
    }

    // ---- the installation --------------------------------------------------

    /// The installation id this journal belongs to (None: a journal from
    /// before ids, or one not given its id yet).
    pub fn installation_id(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'installation_id'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record the installation id (once; `installation` decides when).
    pub fn set_installation_id(&self, id: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('installation_id', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [id],
        )?;
        Ok(())
    }

    /// Start a new name epoch: `now` (milliseconds since 1970), or one more
    /// than the last epoch if that is not later, for the files taken in
    /// from now on. Committed before it is used, so no two starts of one
    /// journal share an epoch, even within a millisecond.
    pub fn begin_epoch(&mut self, now: i64) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let (last, next_file): (Option<i64>, i64) = tx.query_row(
            "SELECT (SELECT max(epoch) FROM name_epochs), \
                    (SELECT coalesce(max(id), 0) + 1 FROM files)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let epoch = last.map_or(now, |l| now.max(l + 1));
        tx.execute(
            "INSERT INTO name_epochs (epoch, first_file_id) VALUES (?1, ?2)",
            params![epoch, next_file],
        )?;
        tx.commit()?;
        Ok(epoch)
    }

    /// The epoch in the remote names of file `id`: that of the start it was
    /// taken in, so its names stay the same across restarts (a file from
    /// before epochs gets the first one).
    pub fn name_epoch(&self, id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT coalesce((SELECT max(epoch) FROM name_epochs WHERE first_file_id <= ?1), \
                             (SELECT min(epoch) FROM name_epochs), 0)",
            [id],
            |r| r.get(0),
        )?)
    }

    // ---- files -------------------------------------------------------------

    /// A new input file seen in the inbox, before it is moved.
    pub fn add_file(&self, name: &str, size: u64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO files (name, size, state) VALUES (?1, ?2, 'Received')",
            params![name, size as i64],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn file(&self, id: i64) -> Result<FileRow> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], file_row)?)
    }

    /// The file `id`, if the journal has it.
    pub fn find_file(&self, id: i64) -> Result<Option<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], file_row).optional()?)
    }

    /// Files in `state`, oldest first.
    pub fn files_in(&self, state: FileState) -> Result<Vec<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE state = ?1 ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([state.as_str()], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every file, newest first (for `status`).
    pub fn all_files(&self) -> Result<Vec<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files ORDER BY id DESC");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest file's id (0 when there is none).
    pub fn max_file_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM files", [], |r| r.get(0))?)
    }

    /// Files with id <= `max_id` not yet done.
    pub fn open_files_upto(&self, max_id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM files WHERE state != 'Done' AND id <= ?1",
            [max_id],
            |r| r.get(0),
        )?)
    }

    /// Files not yet done.
    pub fn open_files(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM files WHERE state != 'Done'",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn set_staged(&self, id: i64, sha256: Option<&str>, size: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET state = 'Staged', sha256 = ?2, size = ?3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id, sha256, size as i64],
        )?;
        Ok(())
    }

    /// The content hash of a staged file.
    pub fn set_sha(&self, id: i64, sha256: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET sha256 = ?2 WHERE id = ?1",
            params![id, sha256],
        )?;
        Ok(())
    }

    /// Drop a Received row whose file could not be moved in after all.
    pub fn forget_received(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "DELETE FROM files WHERE id = ?1 AND state = 'Received'",
            [id],
        )?;
        Ok(())
    }

    /// Record a transient problem on a file that stays where it is.
    pub fn set_reason(&self, id: i64, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET reason = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Another file with the same content that is on its way to Altinn, or
    /// whose letters Altinn accepted. A file Altinn refused outright, or that
    /// never left, does not count: sending that content again is legitimate.
    pub fn submitted_duplicate(&self, sha256: &str, id: i64) -> Result<Option<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLS} FROM files WHERE sha256 = ?1 AND id != ?2 AND \
             (state IN ('Packaged', 'Submitted') OR outcome IN ('Accepted', 'PartiallyAccepted')) \
             ORDER BY id LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![sha256, id], file_row)
            .optional()?)
    }

    /// The outcome is known: the file moves to Finishing.
    pub fn set_outcome(
        &self,
        id: i64,
        outcome: Outcome,
        reason: &str,
        report_json: Option<&str>,
        letters: i64,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET state = 'Finishing', outcome = ?2, reason = ?3, report_json = coalesce(?4, report_json), \
             letters = max(letters, ?5), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id, outcome.as_str(), reason, report_json, letters],
        )?;
        Ok(())
    }

    /// Reserve where a finishing file's receipt goes and where the input
    /// moves, before either happens, so a restart finishes the same way.
    pub fn reserve_names(&self, id: i64, receipt_name: &str, moved_to: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET receipt_name = ?2, moved_to = ?3 WHERE id = ?1",
            params![id, receipt_name, moved_to],
        )?;
        Ok(())
    }

    /// Destination names reserved by files not done yet: their
    /// `errors.txt` (named after them) may not be written yet, and its
    /// name must not be given to another file meanwhile.
    pub fn pending_moved_names(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT moved_to FROM files WHERE moved_to IS NOT NULL AND state != 'Done'",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Is `name` reserved by a file as its receipt or destination name?
    pub fn name_reserved(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM files WHERE receipt_name = ?1 OR moved_to = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    /// The receipt is staged (written under its temporary name). Reads it
    /// includes are not reported again as events (event 0 = "in the receipt").
    pub fn set_receipt_staged(&mut self, id: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE letters SET event_id = 0 WHERE read_at IS NOT NULL AND event_id IS NULL \
             AND part_id IN (SELECT id FROM parts WHERE file_id = ?1)",
            [id],
        )?;
        tx.execute("UPDATE files SET receipt_staged = 1 WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_done(&mut self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET state = 'Done', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Files per (state, outcome), and letters per status: for metrics.
    #[allow(clippy::type_complexity)]
    pub fn counts(&self) -> Result<(Vec<(String, String, i64)>, Vec<(String, i64)>)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, coalesce(outcome, ''), count(*) FROM files GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let files = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT coalesce(status, 'pending'), count(*) FROM letters GROUP BY 1 ORDER BY 1",
        )?;
        let letters = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((files, letters))
    }

    // ---- parts and sequence numbers ----------------------------------------

    /// Journal a file's parts (already written and fsynced) and their
    /// letters in one transaction; the file becomes Packaged.
    pub fn record_parts(
        &mut self,
        file_id: i64,
        system_user_code: &str,
        parts: &[NewPart],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let mut letters_total = 0i64;
        for p in parts {
            tx.execute(
                "INSERT INTO parts (file_id, part_no, remote_name, shipment_reference, sequence_no, \
                 letters, bytes, state, system_user_code, sequence_slot) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'Packaged', ?8, ?9)",
                params![
                    file_id,
                    p.part_no,
                    p.remote_name,
                    p.shipment_reference,
                    p.sequence_no,
                    p.letters.len() as i64,
                    p.bytes,
                    system_user_code,
                    p.sequence_slot
                ],
            )?;
            let part_id = tx.last_insert_rowid();
            let mut stmt = tx.prepare_cached(
                "INSERT INTO letters (part_id, senders_reference, reportee) VALUES (?1, ?2, ?3)",
            )?;
            for (sref, reportee) in &p.letters {
                stmt.execute(params![part_id, sref, reportee])?;
            }
            letters_total += p.letters.len() as i64;
        }
        tx.execute(
            "UPDATE files SET state = 'Packaged', letters = ?2, reason = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![file_id, letters_total],
        )?;
        tx.commit()?;
        Ok(())
    }

    // SequenceNos. Altinn accepts a batch only if its number is exactly the
    // previous accepted one + 1, and a refused batch does not use its number.
    // So a number is given out when a part is about to be uploaded, only one
    // numbered part per SystemUserCode is on its way at a time, and a
    // refusal gives the number back. Assigning is journalled (with the part
    // moving to Uploading) before the number is written into the file.

    /// Is a numbered part of `system_user_code` on its way (no receipt yet)?
    pub fn numbered_in_flight(&self, system_user_code: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM parts WHERE system_user_code = ?1 \
             AND sequence_slot IS NOT NULL AND state IN ('Uploading', 'Uploaded'))",
            [system_user_code],
            |r| r.get(0),
        )?)
    }

    /// Give a part the next SequenceNo of its SystemUserCode, but at least
    /// `first` (so an operator can move the counter on to where Altinn's
    /// is), and mark it Uploading, in one transaction.
    pub fn assign_sequence(
        &mut self,
        part_id: i64,
        system_user_code: &str,
        first: i64,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT last FROM sequences WHERE system_user_code = ?1",
                [system_user_code],
                |r| r.get(0),
            )
            .optional()?;
        let n = last.map_or(first, |l| (l + 1).max(first));
        tx.execute(
            "INSERT INTO sequences (system_user_code, last) VALUES (?1, ?2) \
             ON CONFLICT(system_user_code) DO UPDATE SET last = excluded.last",
            params![system_user_code, n],
        )?;
        tx.execute(
            "UPDATE parts SET sequence_no = ?2, state = 'Uploading' WHERE id = ?1",
            params![part_id, n],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Altinn refused the batch numbered `n`: the number is free again.
    pub fn release_sequence(&self, system_user_code: &str, n: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE sequences SET last = ?2 - 1 WHERE system_user_code = ?1 AND last = ?2",
            params![system_user_code, n],
        )?;
        Ok(())
    }

    /// The last SequenceNo Altinn has accepted for `system_user_code`.
    pub fn last_sequence(&self, system_user_code: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT last FROM sequences WHERE system_user_code = ?1",
                [system_user_code],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn parts_of(&self, file_id: i64) -> Result<Vec<PartRow>> {
        let sql = format!("SELECT {PART_COLS} FROM parts WHERE file_id = ?1 ORDER BY part_no");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([file_id], part_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_part_state(&self, part_id: i64, state: PartState) -> Result<()> {
        self.conn.execute(
            "UPDATE parts SET state = ?2 WHERE id = ?1",
            params![part_id, state.as_str()],
        )?;
        Ok(())
    }

    /// Mark a file Submitted once all its parts are uploaded.
    pub fn set_submitted(&self, file_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET state = 'Submitted', reason = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            [file_id],
        )?;
        Ok(())
    }

    /// The part a receipt belongs to. `remote_name` (when the receipt's file
    /// name tells it) is unique for ever, so it decides; the ShipmentReference
    /// must agree. Without a name, the oldest part on its way with that
    /// ShipmentReference. A part that already has its receipt never matches:
    /// a repeated receipt is not applied twice.
    pub fn part_awaiting_receipt(
        &self,
        remote_name: Option<&str>,
        shipment_reference: &str,
    ) -> Result<Option<PartRow>> {
        let by_name = match remote_name {
            Some(name) => {
                let sql = format!("SELECT {PART_COLS} FROM parts WHERE remote_name = ?1");
                self.conn.query_row(&sql, [name], part_row).optional()?
            }
            None => None,
        };
        let row = match by_name {
            Some(row) => Some(row),
            None => {
                let sql = format!(
                    "SELECT {PART_COLS} FROM parts WHERE shipment_reference = ?1 \
                     AND state IN ('Uploading', 'Uploaded') ORDER BY id LIMIT 1"
                );
                self.conn
                    .query_row(&sql, [shipment_reference], part_row)
                    .optional()?
            }
        };
        Ok(row.filter(|p| {
            p.shipment_reference == shipment_reference
                && matches!(p.state, PartState::Uploading | PartState::Uploaded)
        }))
    }

    /// Journal Altinn's receipt for a part: its status and each letter's.
    pub fn record_receipt(
        &mut self,
        part_id: i64,
        status: &str,
        text: &str,
        letters: &[(String, String, String)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE parts SET state = 'Receipted', status = ?2, text = ?3 WHERE id = ?1",
            params![part_id, status, text],
        )?;
        if letters.is_empty() {
            // A refused batch has no sub-receipts: every letter shares its fate.
            tx.execute(
                "UPDATE letters SET status = ?2, text = ?3 WHERE part_id = ?1",
                params![part_id, status, text],
            )?;
        } else {
            let mut stmt = tx.prepare_cached(
                "UPDATE letters SET status = ?3, text = ?4 WHERE part_id = ?1 AND senders_reference = ?2",
            )?;
            for (sref, st, tx_text) in letters {
                stmt.execute(params![part_id, sref, st, tx_text])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn letters_of(&self, file_id: i64) -> Result<Vec<LetterRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.part_no, l.senders_reference, l.reportee, l.status, l.text, l.read_at \
             FROM letters l JOIN parts p ON p.id = l.part_id WHERE p.file_id = ?1 ORDER BY l.id",
        )?;
        let rows = stmt.query_map([file_id], |r| {
            Ok(LetterRow {
                part_no: r.get(0)?,
                senders_reference: r.get(1)?,
                reportee: r.get(2)?,
                status: r.get(3)?,
                text: r.get(4)?,
                read_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- read confirmations ------------------------------------------------

    /// How many of `refs` (SendersReferences from a confirmations file)
    /// name letters this journal sent. Altinn names confirmations files by
    /// system user, not by batch, so another installation on the same
    /// account sees ours and we see theirs: a file is ours only if every
    /// letter in it is.
    pub fn letters_known(&self, refs: &[&str]) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM letters WHERE senders_reference = ?1)")?;
        let mut n = 0;
        for r in refs {
            if stmt.query_row([r], |row| row.get::<_, bool>(0))? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Journal that letters were read; returns how many letters matched.
    pub fn record_reads(&mut self, reads: &[(String, String)]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE letters SET read_at = ?2 WHERE senders_reference = ?1 AND read_at IS NULL AND status = 'OK'",
            )?;
            for (sref, at) in reads {
                n += stmt.execute(params![sref, at])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Plan event files for reads not reported yet, one per Done file:
    /// each gets an event row with its outbox name, and its letters are
    /// tied to it, in one transaction, before anything is written.
    /// Event files are named `<input name>.read-<N>.xml` (shortened by
    /// `outbox::read_event_name` where too long), N from the event
    /// id up to the first name that is free: not `taken` (the caller looks
    /// in the outbox: a file, or its temporary name, left by an earlier
    /// installation or a reset state) and not planned for another event.
    pub fn plan_read_events(&mut self, taken: &dyn Fn(&str) -> bool) -> Result<()> {
        let tx = self.conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT p.file_id FROM letters l JOIN parts p ON p.id = l.part_id \
                 JOIN files f ON f.id = p.file_id \
                 WHERE l.read_at IS NOT NULL AND l.event_id IS NULL AND f.state = 'Done' ORDER BY p.file_id",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for id in ids {
            let name: String =
                tx.query_row("SELECT name FROM files WHERE id = ?1", [id], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO events (file_id, outbox_name) VALUES (?1, '')",
                [id],
            )?;
            let event = tx.last_insert_rowid();
            let outbox_name = free_event_name(&tx, &name, event, taken)?;
            tx.execute(
                "UPDATE events SET outbox_name = ?2 WHERE id = ?1",
                params![event, outbox_name],
            )?;
            tx.execute(
                "UPDATE letters SET event_id = ?1 WHERE event_id IS NULL AND read_at IS NOT NULL \
                 AND part_id IN (SELECT id FROM parts WHERE file_id = ?2)",
                params![event, id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Someone else's file took an event's name before we could publish
    /// it: give the event the next free name, to be written afresh.
    pub fn rename_event(&mut self, event_id: i64, taken: &dyn Fn(&str) -> bool) -> Result<String> {
        let tx = self.conn.transaction()?;
        let (name, current): (String, String) = tx.query_row(
            "SELECT f.name, e.outbox_name FROM events e JOIN files f ON f.id = e.file_id WHERE e.id = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // The current name counts as taken (that is why we are here).
        let taken = |n: &str| n == current || taken(n);
        let outbox_name = free_event_name(&tx, &name, event_id, &taken)?;
        tx.execute(
            "UPDATE events SET outbox_name = ?2, written = 0 WHERE id = ?1",
            params![event_id, outbox_name],
        )?;
        tx.commit()?;
        Ok(outbox_name)
    }

    pub fn unwritten_events(&self) -> Result<Vec<EventRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, file_id, outbox_name, written FROM events WHERE written < 2 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                file_id: r.get(1)?,
                outbox_name: r.get(2)?,
                staged: r.get::<_, i64>(3)? >= 1,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Letters (SendersReference, Reportee, read at) of one event.
    pub fn event_letters(&self, event_id: i64) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT senders_reference, reportee, read_at FROM letters WHERE event_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// 1: staged under its temporary name; 2: published.
    pub fn set_event_written(&self, event_id: i64, level: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE events SET written = ?2 WHERE id = ?1",
            params![event_id, level],
        )?;
        Ok(())
    }
}

/// `<input name>.read-<N>.xml` for the first N from `from` that is neither
/// `taken` nor planned for another event.
fn free_event_name(
    tx: &rusqlite::Transaction<'_>,
    input_name: &str,
    from: i64,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String> {
    let mut planned =
        tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE outbox_name = ?1)")?;
    for n in from.max(1).. {
        let candidate = crate::outbox::read_event_name(input_name, n);
        if !taken(&candidate) && !planned.query_row([&candidate], |r| r.get::<_, bool>(0))? {
            return Ok(candidate);
        }
    }
    Err(JournalError("no free name for a read event".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(no: i64, seq: Option<i64>, refs: &[&str]) -> NewPart {
        NewPart {
            part_no: no,
            remote_name: format!("r-{no}-{}.xml", seq.unwrap_or(0)),
            shipment_reference: format!("S-{no}"),
            sequence_no: None,
            sequence_slot: seq.map(|_| 100),
            bytes: 100,
            letters: refs
                .iter()
                .map(|r| (r.to_string(), "974760673".to_string()))
                .collect(),
        }
    }

    #[test]
    fn sequence_numbers_are_given_at_upload_one_in_flight_and_given_back_on_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let f = j.add_file("a.xml", 10).unwrap();
        j.set_staged(f, Some("aa"), 10).unwrap();
        j.record_parts(
            f,
            "ABC",
            &[part(1, Some(0), &["x"]), part(2, Some(0), &["y", "z"])],
        )
        .unwrap();
        assert_eq!(j.file(f).unwrap().state, FileState::Packaged);
        assert_eq!(j.file(f).unwrap().letters, 3);
        let parts = j.parts_of(f).unwrap();
        assert!(!j.numbered_in_flight("ABC").unwrap());
        assert_eq!(j.assign_sequence(parts[0].id, "ABC", 7).unwrap(), 7);
        assert!(j.numbered_in_flight("ABC").unwrap());
        assert!(!j.numbered_in_flight("OTHER").unwrap());
        // Refused: the number is free again, and the next part gets it.
        j.set_part_state(parts[0].id, PartState::Receipted).unwrap();
        j.release_sequence("ABC", 7).unwrap();
        assert_eq!(j.last_sequence("ABC").unwrap(), Some(6));
        assert_eq!(j.assign_sequence(parts[1].id, "ABC", 1).unwrap(), 7);
        // Reopening keeps everything.
        drop(j);
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        assert_eq!(j.last_sequence("ABC").unwrap(), Some(7));
        assert_eq!(j.parts_of(f).unwrap()[1].sequence_no, Some(7));
    }

    #[test]
    fn probe_tells_a_used_journal_from_a_new_one_without_changing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let new = |p: &Path| !Journal::probe(p).unwrap().holds_state;
        assert!(new(&path) && !path.exists(), "missing: not created");
        std::fs::write(&path, b"").unwrap();
        assert!(new(&path), "0 bytes");
        drop(Journal::open(&path).unwrap());
        assert!(new(&path), "tables, no rows");
        // A journal from before ids: no meta table, one file.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE meta").unwrap();
        conn.execute(
            "INSERT INTO files (name, state) VALUES ('a.xml', 'Done')",
            [],
        )
        .unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let p = Journal::probe(&path).unwrap();
        assert_eq!(
            p,
            Probe {
                holds_state: true,
                installation_id: None,
                has_files: true
            }
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "probing writes nothing"
        );
        // Opened by this version: the table comes back, the id is kept.
        let j = Journal::open(&path).unwrap();
        j.set_installation_id("0123456789abcdef").unwrap();
        let p = Journal::probe(&path).unwrap();
        assert_eq!(p.installation_id.as_deref(), Some("0123456789abcdef"));
        std::fs::write(dir.path().join("junk.sqlite"), b"not a database at all").unwrap();
        let err = Journal::probe(&dir.path().join("junk.sqlite")).unwrap_err();
        assert!(err.to_string().contains("junk.sqlite"), "{err}");
    }

    #[test]
    fn name_epochs_only_go_forward_and_stay_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let old = j.add_file("from-before-epochs.xml", 1).unwrap();
        assert_eq!(j.begin_epoch(1000).unwrap(), 1000);
        let a = j.add_file("a.xml", 1).unwrap();
        assert_eq!(j.begin_epoch(1000).unwrap(), 1001, "same millisecond");
        assert_eq!(j.begin_epoch(5).unwrap(), 1002, "clock set back");
        let b = j.add_file("b.xml", 1).unwrap();
        assert_eq!(j.begin_epoch(2000).unwrap(), 2000);
        // Each file keeps the epoch it was taken in under, whatever came after.
        assert_eq!(j.name_epoch(old).unwrap(), 1000);
        assert_eq!(j.name_epoch(a).unwrap(), 1000);
        assert_eq!(j.name_epoch(b).unwrap(), 1002);
        assert_eq!(j.name_epoch(b + 1).unwrap(), 2000);
    }

    #[test]
    fn read_events_take_the_next_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        for (name, reference) in [("a.xml", "x"), ("a.xml", "y")] {
            let f = j.add_file(name, 1).unwrap();
            j.record_parts(f, "ABC", &[part(f, None, &[reference])])
                .unwrap();
            let p = &j.parts_of(f).unwrap()[0];
            j.set_part_state(p.id, PartState::Uploaded).unwrap();
            j.record_receipt(
                p.id,
                "OK",
                "",
                &[(reference.to_string(), "OK".to_string(), String::new())],
            )
            .unwrap();
            j.set_done(f).unwrap();
        }
        j.record_reads(&[("x".into(), "t".into()), ("y".into(), "t".into())])
            .unwrap();
        // read-1 is on disk already (a reset state left it): skipped; and
        // the second event does not take a name planned for the first.
        j.plan_read_events(&|n| n == "a.xml.read-1.xml").unwrap();
        let names: Vec<String> = j
            .unwritten_events()
            .unwrap()
            .into_iter()
            .map(|e| e.outbox_name)
            .collect();
        assert_eq!(names, vec!["a.xml.read-2.xml", "a.xml.read-3.xml"]);
        // Taken by someone else before it was published: the next free one.
        let first = j.unwritten_events().unwrap()[0].id;
        let taken = |n: &str| n == "a.xml.read-1.xml";
        assert_eq!(j.rename_event(first, &taken).unwrap(), "a.xml.read-4.xml");
    }

    #[test]
    fn a_journal_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        drop(Journal::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Journal::open(&path).err().expect("refused").to_string();
        assert!(err.contains("newer dpv-batch"), "{err}");
    }

    #[test]
    fn receipts_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let a = j.add_file("a.xml", 10).unwrap();
        j.set_staged(a, Some("same"), 10).unwrap();
        let b = j.add_file("b.xml", 10).unwrap();
        j.set_staged(b, Some("same"), 10).unwrap();
        assert!(
            j.submitted_duplicate("same", b).unwrap().is_none(),
            "a has not gone anywhere yet"
        );
        j.record_parts(a, "ABC", &[part(1, None, &["x", "y"])])
            .unwrap();
        assert_eq!(j.submitted_duplicate("same", b).unwrap().unwrap().id, a);
        let p = &j.parts_of(a).unwrap()[0];
        j.set_part_state(p.id, PartState::Uploaded).unwrap();
        assert_eq!(
            j.part_awaiting_receipt(None, "S-1").unwrap().unwrap().id,
            p.id
        );
        let by_name = j
            .part_awaiting_receipt(Some(&p.remote_name), "S-1")
            .unwrap();
        assert_eq!(by_name.unwrap().id, p.id);
        assert!(j
            .part_awaiting_receipt(Some(&p.remote_name), "OTHER")
            .unwrap()
            .is_none());
        let letters = vec![
            ("x".to_string(), "OK".to_string(), String::new()),
            ("y".to_string(), "Rejected".to_string(), "nope".to_string()),
        ];
        j.record_receipt(p.id, "OK", "", &letters).unwrap();
        assert!(j.part_awaiting_receipt(None, "S-1").unwrap().is_none());
        assert!(j
            .part_awaiting_receipt(Some(&p.remote_name), "S-1")
            .unwrap()
            .is_none());
        let l = j.letters_of(a).unwrap();
        assert_eq!(
            l.iter()
                .filter(|l| l.status.as_deref() == Some("OK"))
                .count(),
            1
        );
        // Reads only count for letters Altinn accepted.
        let reads = vec![
            ("x".to_string(), "t".to_string()),
            ("y".to_string(), "t".to_string()),
        ];
        assert_eq!(j.record_reads(&reads).unwrap(), 1);
    }
}
