//! The journal in one SQLite file. Only this module speaks SQL.
//!
//! SQLite in WAL mode with `synchronous = FULL` gives durable, atomic
//! transactions in one local file: nothing else to run or back up. Each
//! [`Journal`] method is one statement or one transaction, so a crash
//! leaves either all of a step or none of it.
//!
//! The schema's version lives in the file (`PRAGMA user_version`). A journal
//! written by a newer dpv-batch is refused rather than misread; an older one
//! is migrated in place, in one transaction, when it is opened:
//! - v1 (up to schema v1 the only version; a v1 file written before the
//!   version was recorded says 0) → v2: parts learn where they are
//!   locally (a letter's folder for Altinn 3); letters learn the Altinn 3
//!   columns (idempotent key, correspondence id, last status and its text,
//!   refusal, next poll); reads move from `letters.event_id` into
//!   `letter_events`, beside the new kinds of news; events learn their kind;
//!   `notes` holds what the transport goes through; `meta` (the
//!   installation id, the name epoch) is created if the v1 file lacks it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::{
    Answer, EventLetter, EventRow, FileRow, FileState, JournalError, LetterEvent, LetterRow,
    NewPart, Outcome, OverdueReceipt, OverdueRow, PartRow, PartState, PollRow, Probe, Refusal,
    ReplayRow, Result, StateCount, StatusUpdate, Store, LETTER_OK, LETTER_REJECTED,
};

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError(e.to_string())
    }
}

/// The journal's schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// "Now" as the journal writes it.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

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
    local TEXT,
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
    idempotent_key TEXT,
    resource_id TEXT,
    correspondence_id TEXT,
    altinn_status TEXT,
    altinn_status_text TEXT,
    published_at TEXT,
    publish_at TEXT,
    refusal_http INTEGER,
    refusal_error_code INTEGER,
    refusal_code TEXT,
    refusal_detail TEXT,
    refusal_trace_id TEXT,
    created_at TEXT,
    next_poll_at TEXT
);
CREATE INDEX IF NOT EXISTS letters_part ON letters(part_id);
CREATE INDEX IF NOT EXISTS letters_ref ON letters(senders_reference);
CREATE INDEX IF NOT EXISTS letters_poll ON letters(next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS letter_events (
    id INTEGER PRIMARY KEY,
    letter_id INTEGER NOT NULL REFERENCES letters(id),
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    text TEXT,
    event_id INTEGER -- NULL: not reported yet; 0: in the receipt; else events(id)
);
CREATE INDEX IF NOT EXISTS letter_events_letter ON letter_events(letter_id);
CREATE INDEX IF NOT EXISTS letter_events_event ON letter_events(event_id);
CREATE TABLE IF NOT EXISTS sequences (
    system_user_code TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    outbox_name TEXT NOT NULL,
    written INTEGER NOT NULL DEFAULT 0, -- 0 planned, 1 staged, 2 published
    kind TEXT NOT NULL DEFAULT 'Read'
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
CREATE TABLE IF NOT EXISTS notes (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
"#;

/// Tables added after v2 without changing what v2 readers see (an older
/// dpv-batch ignores them): created if missing on every read-write open.
/// - `replays`: `dpv-batch replay` requests (see `ops::replay`): which
///   file is sent again, forced past the duplicate check or not, where the
///   request is (`preparing`: the copy is being placed; `ready`: placed, for
///   the pipeline to take in; `taken`: `file_id` is the new input;
///   `abandoned`: a killed request, never taken);
/// - `purged_hashes`: the content hash of each sent file whose rows
///   `dpv-batch purge` removed, so the duplicate check still knows it.
const ADDITIONS: &str = r#"
CREATE TABLE IF NOT EXISTS replays (
    id INTEGER PRIMARY KEY,
    of_file_id INTEGER NOT NULL,
    force INTEGER NOT NULL,
    state TEXT NOT NULL,
    file_id INTEGER,
    requested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX IF NOT EXISTS replays_file ON replays(file_id);
CREATE INDEX IF NOT EXISTS replays_of ON replays(of_file_id);
CREATE TABLE IF NOT EXISTS purged_hashes (
    sha256 TEXT PRIMARY KEY,
    file_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    received_at TEXT NOT NULL
);
"#;

/// When each part was handed to the transport (first journalled in flight),
/// for overdue receipts. A table of its own, created on every open, so a v2
/// journal gains it without a version bump (a read-only `status` on a
/// journal no daemon of this version has opened yet finds none, and sees no
/// overdue receipts). No foreign key: rows of purged parts are harmless.
const HANDOVERS: &str = r#"
CREATE TABLE IF NOT EXISTS handovers (
    part_id INTEGER PRIMARY KEY,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
"#;

/// Remember when a part leaves Packaged (the first time only).
fn note_handover(conn: &Connection, part_id: i64, state: PartState) -> Result<()> {
    if matches!(state, PartState::Uploading | PartState::Uploaded) {
        conn.prepare_cached("INSERT OR IGNORE INTO handovers (part_id) VALUES (?1)")?
            .execute([part_id])?;
    }
    Ok(())
}

/// v1 → v2, in one transaction with the version bump (see the module doc).
const MIGRATE_1_TO_2: &str = r#"
ALTER TABLE parts ADD COLUMN local TEXT;
ALTER TABLE letters ADD COLUMN idempotent_key TEXT;
ALTER TABLE letters ADD COLUMN resource_id TEXT;
ALTER TABLE letters ADD COLUMN correspondence_id TEXT;
ALTER TABLE letters ADD COLUMN altinn_status TEXT;
ALTER TABLE letters ADD COLUMN altinn_status_text TEXT;
ALTER TABLE letters ADD COLUMN published_at TEXT;
ALTER TABLE letters ADD COLUMN publish_at TEXT;
ALTER TABLE letters ADD COLUMN refusal_http INTEGER;
ALTER TABLE letters ADD COLUMN refusal_error_code INTEGER;
ALTER TABLE letters ADD COLUMN refusal_code TEXT;
ALTER TABLE letters ADD COLUMN refusal_detail TEXT;
ALTER TABLE letters ADD COLUMN refusal_trace_id TEXT;
ALTER TABLE letters ADD COLUMN created_at TEXT;
ALTER TABLE letters ADD COLUMN next_poll_at TEXT;
CREATE INDEX letters_poll ON letters(next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE TABLE letter_events (
    id INTEGER PRIMARY KEY,
    letter_id INTEGER NOT NULL REFERENCES letters(id),
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    text TEXT,
    event_id INTEGER
);
CREATE INDEX letter_events_letter ON letter_events(letter_id);
CREATE INDEX letter_events_event ON letter_events(event_id);
INSERT INTO letter_events (letter_id, kind, at, event_id)
    SELECT id, 'Read', read_at, event_id FROM letters WHERE read_at IS NOT NULL ORDER BY id;
ALTER TABLE letters DROP COLUMN event_id;
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'Read';
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS name_epochs (
    epoch INTEGER PRIMARY KEY,
    first_file_id INTEGER NOT NULL
);
CREATE TABLE notes (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
"#;

const FILE_COLS: &str = "id, name, sha256, size, state, outcome, reason, letters, received_at, \
                         updated_at, report_json, receipt_name, moved_to, \
                         CAST((julianday('now') - julianday(updated_at)) * 86400 AS INTEGER), \
                         receipt_staged";
const PART_COLS: &str = "id, file_id, part_no, remote_name, shipment_reference, sequence_no, \
                         letters, bytes, state, status, text, system_user_code, sequence_slot, \
                         coalesce(local, remote_name)";
const LETTER_COLS: &str = "l.id, l.part_id, p.part_no, l.senders_reference, l.reportee, l.status, \
                           l.text, l.read_at, l.idempotent_key, l.resource_id, l.correspondence_id, \
                           l.altinn_status, l.altinn_status_text, l.published_at, l.publish_at, \
                           l.refusal_http, l.refusal_error_code, l.refusal_code, l.refusal_detail, \
                           l.refusal_trace_id";

/// A stored text that is not one of an enum's values.
fn bad_text(what: &str, value: String) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, format!("{what} {value}"), rusqlite::types::Type::Text)
}

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    let state: String = r.get(4)?;
    let outcome: Option<String> = r.get(5)?;
    Ok(FileRow {
        id: r.get(0)?,
        name: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get(3)?,
        state: FileState::parse(&state).ok_or_else(|| bad_text("file state", state.clone()))?,
        outcome: match outcome {
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| bad_text("outcome", o.clone()))?),
            None => None,
        },
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
    let state: String = r.get(8)?;
    Ok(PartRow {
        id: r.get(0)?,
        file_id: r.get(1)?,
        part_no: r.get(2)?,
        remote_name: r.get(3)?,
        shipment_reference: r.get(4)?,
        sequence_no: r.get(5)?,
        letters: r.get(6)?,
        bytes: r.get(7)?,
        state: PartState::parse(&state).ok_or_else(|| bad_text("part state", state.clone()))?,
        status: r.get(9)?,
        text: r.get(10)?,
        system_user_code: r.get(11)?,
        sequence_slot: r.get(12)?,
        local: r.get(13)?,
    })
}

fn letter_row(r: &Row<'_>) -> rusqlite::Result<LetterRow> {
    let detail: Option<String> = r.get(18)?;
    let refusal = match detail {
        Some(detail) => Some(Refusal {
            http: r.get::<_, Option<i64>>(15)?.map(|h| h as u16),
            error_code: r.get(16)?,
            code: r.get(17)?,
            detail,
            trace_id: r.get(19)?,
        }),
        None => None,
    };
    Ok(LetterRow {
        id: r.get(0)?,
        part_id: r.get(1)?,
        part_no: r.get(2)?,
        senders_reference: r.get(3)?,
        reportee: r.get(4)?,
        status: r.get(5)?,
        text: r.get(6)?,
        read_at: r.get(7)?,
        idempotent_key: r.get(8)?,
        resource_id: r.get(9)?,
        correspondence_id: r.get(10)?,
        altinn_status: r.get(11)?,
        altinn_status_text: r.get(12)?,
        published_at: r.get(13)?,
        publish_at: r.get(14)?,
        refusal,
    })
}

/// A duration as an SQLite date modifier: `+12.500 seconds`.
fn later(d: Duration) -> String {
    format!("+{:.3} seconds", d.as_secs_f64())
}

pub struct SqliteJournal {
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

impl SqliteJournal {
    /// Open (or create) the journal at `path`, migrating an older schema.
    pub fn open(path: &Path) -> Result<SqliteJournal> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(JournalError(format!(
                "{} was written by a newer dpv-batch (journal version {version}, this one knows {SCHEMA_VERSION}); \
                 run that version, or restore a matching binary",
                path.display()
            )));
        }
        let has_files: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files')",
            [],
            |r| r.get(0),
        )?;
        if version == 0 && has_files {
            // Written before the version was recorded: that was v1.
            version = 1;
        }
        // IMMEDIATE, like every writing transaction here (see `tx`).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if version == 1 {
            tx.execute_batch(MIGRATE_1_TO_2)?;
        } else {
            tx.execute_batch(SCHEMA)?;
        }
        tx.execute_batch(ADDITIONS)?;
        tx.execute_batch(HANDOVERS)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(SqliteJournal { conn })
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
    pub fn open_read_only(path: &Path) -> Result<SqliteJournal> {
        use rusqlite::OpenFlags;
        let plain =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).and_then(|conn| {
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                // Opening is lazy: this first read is what needs the index.
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                Ok(conn)
            });
        let conn = match plain {
            Ok(conn) => conn,
            Err(first) => {
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
                Connection::open_with_flags(
                    immutable_uri(path),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
                )?
            }
        };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(JournalError(format!(
                "{} has journal version {version}, this dpv-batch reads {SCHEMA_VERSION} \
                 (the daemon migrates it when it starts)",
                path.display()
            )));
        }
        Ok(SqliteJournal { conn })
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

    /// Does the journal have table `name`? A journal last opened for
    /// writing by an older dpv-batch lacks the `ADDITIONS`, and `status`
    /// opens it read-only, so it cannot add them.
    fn has_table(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    fn replays_where(&self, cond: &str, value: &dyn rusqlite::ToSql) -> Result<Vec<ReplayRow>> {
        if !self.has_table("replays")? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, of_file_id, force, state, file_id, requested_at FROM replays \
             WHERE {cond} ORDER BY id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([value], |r| {
            Ok(ReplayRow {
                id: r.get(0)?,
                of_file_id: r.get(1)?,
                force: r.get::<_, i64>(2)? != 0,
                state: r.get(3)?,
                file_id: r.get(4)?,
                requested_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A transaction through `&self`: every method is one atomic step, and
    /// nothing else holds the connection meanwhile.
    ///
    /// A writing transaction, IMMEDIATE: it takes the write lock first
    /// (waiting up to the busy timeout). A deferred one reads first, and
    /// if another process (`replay`, `purge`) commits before its first
    /// write, SQLite refuses that write at once ("database is locked"),
    /// without waiting.
    fn tx(&self) -> Result<Transaction<'_>> {
        Ok(Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?)
    }
}

impl Store for SqliteJournal {
    // ---- the installation --------------------------------------------------

    fn installation_id(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'installation_id'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_installation_id(&self, id: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('installation_id', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [id],
        )?;
        Ok(())
    }

    fn begin_epoch(&self, now: i64) -> Result<i64> {
        let tx = self.tx()?;
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

    fn name_epoch(&self, id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT coalesce((SELECT max(epoch) FROM name_epochs WHERE first_file_id <= ?1), \
                             (SELECT min(epoch) FROM name_epochs), 0)",
            [id],
            |r| r.get(0),
        )?)
    }

    // ---- files -------------------------------------------------------------

    fn add_file(&self, name: &str, size: u64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO files (name, size, state) VALUES (?1, ?2, 'Received')",
            params![name, size as i64],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn file(&self, id: i64) -> Result<FileRow> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], file_row)?)
    }

    fn find_file(&self, id: i64) -> Result<Option<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], file_row).optional()?)
    }

    fn files_in(&self, state: FileState) -> Result<Vec<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE state = ?1 ORDER BY id");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([state.as_str()], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn all_files(&self) -> Result<Vec<FileRow>> {
        let sql = format!("SELECT {FILE_COLS} FROM files ORDER BY id DESC");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn max_file_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM files", [], |r| r.get(0))?)
    }

    fn open_files_upto(&self, max_id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM files WHERE state != 'Done' AND id <= ?1",
            [max_id],
            |r| r.get(0),
        )?)
    }

    fn open_files(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM files WHERE state != 'Done'",
            [],
            |r| r.get(0),
        )?)
    }

    fn set_staged(&self, id: i64, sha256: Option<&str>, size: u64) -> Result<()> {
        self.conn.execute(
            &format!("UPDATE files SET state = 'Staged', sha256 = ?2, size = ?3, updated_at = {NOW} WHERE id = ?1"),
            params![id, sha256, size as i64],
        )?;
        Ok(())
    }

    fn set_sha(&self, id: i64, sha256: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET sha256 = ?2 WHERE id = ?1",
            params![id, sha256],
        )?;
        Ok(())
    }

    fn forget_received(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "DELETE FROM files WHERE id = ?1 AND state = 'Received'",
            [id],
        )?;
        Ok(())
    }

    fn set_reason(&self, id: i64, reason: &str) -> Result<()> {
        self.conn.execute(
            &format!("UPDATE files SET reason = ?2, updated_at = {NOW} WHERE id = ?1"),
            params![id, reason],
        )?;
        Ok(())
    }

    fn submitted_duplicate(&self, sha256: &str, id: i64) -> Result<Option<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLS} FROM files WHERE sha256 = ?1 AND id != ?2 AND \
             (state IN ('Packaged', 'Submitted') OR outcome IN ('Accepted', 'PartiallyAccepted')) \
             ORDER BY id LIMIT 1"
        );
        if let Some(row) = self
            .conn
            .query_row(&sql, params![sha256, id], file_row)
            .optional()?
        {
            return Ok(Some(row));
        }
        // Sent once, its rows purged since: the hash is all that is left.
        if !self.has_table("purged_hashes")? {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT file_id, name, received_at FROM purged_hashes WHERE sha256 = ?1",
                [sha256],
                |r| {
                    Ok(FileRow {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        sha256: Some(sha256.to_string()),
                        size: 0,
                        state: FileState::Done,
                        outcome: Some(Outcome::Accepted),
                        reason: Some("purged from the journal".into()),
                        letters: 0,
                        received_at: r.get(2)?,
                        updated_at: r.get(2)?,
                        report_json: None,
                        receipt_name: None,
                        moved_to: None,
                        idle_seconds: 0,
                        receipt_staged: true,
                    })
                },
            )
            .optional()?)
    }

    fn set_outcome(
        &self,
        id: i64,
        outcome: Outcome,
        reason: &str,
        report_json: Option<&str>,
        letters: i64,
    ) -> Result<()> {
        self.conn.execute(
            &format!("UPDATE files SET state = 'Finishing', outcome = ?2, reason = ?3, report_json = coalesce(?4, report_json), \
             letters = max(letters, ?5), updated_at = {NOW} WHERE id = ?1"),
            params![id, outcome.as_str(), reason, report_json, letters],
        )?;
        Ok(())
    }

    fn reserve_names(&self, id: i64, receipt_name: &str, moved_to: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE files SET receipt_name = ?2, moved_to = ?3 WHERE id = ?1",
            params![id, receipt_name, moved_to],
        )?;
        Ok(())
    }

    fn name_reserved(&self, name: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM files \
             WHERE (receipt_name = ?1 AND state != 'Done') OR moved_to = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    fn pending_moved_names(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT moved_to FROM files WHERE moved_to IS NOT NULL AND state != 'Done'",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_receipt_staged(&self, id: i64) -> Result<()> {
        let tx = self.tx()?;
        // News up to now is in the receipt (event 0): not reported again.
        tx.execute(
            "UPDATE letter_events SET event_id = 0 WHERE event_id IS NULL AND letter_id IN \
             (SELECT l.id FROM letters l JOIN parts p ON p.id = l.part_id WHERE p.file_id = ?1)",
            [id],
        )?;
        tx.execute("UPDATE files SET receipt_staged = 1 WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    fn set_done(&self, id: i64) -> Result<()> {
        self.conn.execute(
            &format!("UPDATE files SET state = 'Done', updated_at = {NOW} WHERE id = ?1"),
            [id],
        )?;
        Ok(())
    }

    fn set_submitted(&self, file_id: i64) -> Result<()> {
        self.conn.execute(
            &format!("UPDATE files SET state = 'Submitted', reason = NULL, updated_at = {NOW} WHERE id = ?1"),
            [file_id],
        )?;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn counts(&self) -> Result<(Vec<(String, String, i64)>, Vec<(String, i64)>)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, coalesce(outcome, ''), count(*) FROM files GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let files = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        // A letter sent to Altinn 3 counts by its last Altinn status.
        let mut stmt = self.conn.prepare_cached(
            "SELECT CASE WHEN status = 'OK' THEN coalesce(altinn_status, status) \
             ELSE coalesce(status, 'pending') END, count(*) FROM letters GROUP BY 1 ORDER BY 1",
        )?;
        let letters = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((files, letters))
    }

    // ---- parts -------------------------------------------------------------

    fn record_parts(&self, file_id: i64, system_user_code: &str, parts: &[NewPart]) -> Result<()> {
        let tx = self.tx()?;
        let mut letters_total = 0i64;
        let mut answers = Vec::new();
        for p in parts {
            tx.execute(
                "INSERT INTO parts (file_id, part_no, remote_name, shipment_reference, sequence_no, \
                 letters, bytes, state, system_user_code, sequence_slot, local) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'Packaged', ?8, ?9, ?10)",
                params![
                    file_id,
                    p.part_no,
                    p.remote_name,
                    p.shipment_reference,
                    p.sequence_no,
                    p.letters.len() as i64,
                    p.bytes,
                    system_user_code,
                    p.sequence_slot,
                    (p.local != p.remote_name).then_some(&p.local),
                ],
            )?;
            let part_id = tx.last_insert_rowid();
            let mut stmt = tx.prepare_cached(
                "INSERT INTO letters (part_id, senders_reference, reportee, idempotent_key, \
                 resource_id, publish_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in &p.letters {
                stmt.execute(params![
                    part_id,
                    l.senders_reference,
                    l.reportee,
                    l.idempotent_key,
                    l.resource_id,
                    l.publish_at
                ])?;
            }
            letters_total += p.letters.len() as i64;
            if let Some(a) = &p.answer {
                answers.push((part_id, a.clone()));
            }
        }
        record_answers_in(&tx, &answers, Duration::ZERO)?;
        tx.execute(
            &format!("UPDATE files SET state = 'Packaged', letters = ?2, reason = NULL, updated_at = {NOW} WHERE id = ?1"),
            params![file_id, letters_total],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn parts_of(&self, file_id: i64) -> Result<Vec<PartRow>> {
        let sql = format!("SELECT {PART_COLS} FROM parts WHERE file_id = ?1 ORDER BY part_no");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([file_id], part_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn parts_pending(&self, file_id: i64, limit: usize) -> Result<Vec<PartRow>> {
        let sql = format!(
            "SELECT {PART_COLS} FROM parts WHERE file_id = ?1 \
             AND state IN ('Packaged', 'Uploading') ORDER BY part_no LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![file_id, limit as i64], part_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_part_state(&self, part_id: i64, state: PartState) -> Result<()> {
        let tx = self.tx()?;
        tx.execute(
            "UPDATE parts SET state = ?2 WHERE id = ?1",
            params![part_id, state.as_str()],
        )?;
        note_handover(&tx, part_id, state)?;
        tx.commit()?;
        Ok(())
    }

    fn set_parts_state(&self, part_ids: &[i64], state: PartState) -> Result<()> {
        let tx = self.tx()?;
        {
            let mut stmt = tx.prepare_cached("UPDATE parts SET state = ?2 WHERE id = ?1")?;
            for id in part_ids {
                stmt.execute(params![id, state.as_str()])?;
                note_handover(&tx, *id, state)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn numbered_in_flight(&self, system_user_code: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM parts WHERE system_user_code = ?1 \
             AND sequence_slot IS NOT NULL AND state IN ('Uploading', 'Uploaded'))",
            [system_user_code],
            |r| r.get(0),
        )?)
    }

    fn assign_sequence(&self, part_id: i64, system_user_code: &str, first: i64) -> Result<i64> {
        let tx = self.tx()?;
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
        note_handover(&tx, part_id, PartState::Uploading)?;
        tx.commit()?;
        Ok(n)
    }

    fn release_sequence(&self, system_user_code: &str, n: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE sequences SET last = ?2 - 1 WHERE system_user_code = ?1 AND last = ?2",
            params![system_user_code, n],
        )?;
        Ok(())
    }

    fn last_sequence(&self, system_user_code: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT last FROM sequences WHERE system_user_code = ?1",
                [system_user_code],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ---- answers -----------------------------------------------------------

    fn part_awaiting_receipt(
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

    fn record_receipt(
        &self,
        part_id: i64,
        status: &str,
        text: &str,
        letters: &[(String, String, String)],
    ) -> Result<()> {
        let tx = self.tx()?;
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

    fn record_answers(&self, answers: &[(i64, Answer)], first_poll: Duration) -> Result<()> {
        let tx = self.tx()?;
        record_answers_in(&tx, answers, first_poll)?;
        tx.commit()?;
        Ok(())
    }

    fn letters_of(&self, file_id: i64) -> Result<Vec<LetterRow>> {
        let sql = format!(
            "SELECT {LETTER_COLS} FROM letters l JOIN parts p ON p.id = l.part_id \
             WHERE p.file_id = ?1 ORDER BY l.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([file_id], letter_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn letters_of_part(&self, part_id: i64) -> Result<Vec<LetterRow>> {
        let sql = format!(
            "SELECT {LETTER_COLS} FROM letters l JOIN parts p ON p.id = l.part_id \
             WHERE l.part_id = ?1 ORDER BY l.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([part_id], letter_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- later news --------------------------------------------------------

    fn letters_known(&self, refs: &[&str]) -> Result<usize> {
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

    fn record_reads(&self, reads: &[(String, String)]) -> Result<usize> {
        let tx = self.tx()?;
        let mut n = 0;
        {
            let mut find = tx.prepare_cached(
                "SELECT id FROM letters WHERE senders_reference = ?1 AND read_at IS NULL AND status = 'OK'",
            )?;
            let mut read = tx.prepare_cached("UPDATE letters SET read_at = ?2 WHERE id = ?1")?;
            let mut news = tx.prepare_cached(
                "INSERT INTO letter_events (letter_id, kind, at) VALUES (?1, 'Read', ?2)",
            )?;
            for (sref, at) in reads {
                let ids: Vec<i64> = find
                    .query_map([sref], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for id in ids {
                    read.execute(params![id, at])?;
                    news.execute(params![id, at])?;
                    n += 1;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn letters_to_poll(&self, limit: usize) -> Result<Vec<PollRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, correspondence_id, altinn_status, published_at, read_at, \
             CAST((julianday('now') - julianday(coalesce(created_at, {NOW}))) * 86400 AS INTEGER) \
             FROM letters WHERE next_poll_at IS NOT NULL AND next_poll_at <= {NOW} \
             AND correspondence_id IS NOT NULL ORDER BY next_poll_at LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(PollRow {
                letter_id: r.get(0)?,
                correspondence_id: r.get(1)?,
                altinn_status: r.get(2)?,
                published_at: r.get(3)?,
                read_at: r.get(4)?,
                age_seconds: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn record_statuses(&self, updates: &[StatusUpdate]) -> Result<()> {
        let tx = self.tx()?;
        {
            let mut set = tx.prepare_cached(
                "UPDATE letters SET altinn_status = ?2, altinn_status_text = ?3, \
                 published_at = coalesce(published_at, ?4), read_at = coalesce(read_at, ?5), \
                 next_poll_at = CASE WHEN ?6 IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?6) END \
                 WHERE id = ?1",
            )?;
            let mut news = tx.prepare_cached(
                "INSERT INTO letter_events (letter_id, kind, at, text) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for u in updates {
                set.execute(params![
                    u.letter_id,
                    u.status,
                    u.status_text,
                    u.published_at,
                    u.read_at,
                    u.next_poll.map(later)
                ])?;
                for (kind, at, text) in &u.events {
                    news.execute(params![u.letter_id, kind.as_str(), at, text])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn plan_events(&self, taken: &dyn Fn(&str) -> bool) -> Result<()> {
        let tx = self.tx()?;
        let due: Vec<(i64, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT p.file_id, f.name, e.kind FROM letter_events e \
                 JOIN letters l ON l.id = e.letter_id JOIN parts p ON p.id = l.part_id \
                 JOIN files f ON f.id = p.file_id \
                 WHERE e.event_id IS NULL AND f.state = 'Done' \
                 ORDER BY p.file_id, CASE e.kind WHEN 'Reserved' THEN 0 WHEN 'Published' THEN 1 \
                 WHEN 'Failed' THEN 2 ELSE 3 END",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (file_id, name, kind) in due {
            let kind_ = LetterEvent::parse(&kind)
                .ok_or_else(|| JournalError(format!("unknown letter event {kind}")))?;
            tx.execute(
                "INSERT INTO events (file_id, outbox_name, kind) VALUES (?1, '', ?2)",
                params![file_id, kind],
            )?;
            let event = tx.last_insert_rowid();
            let outbox_name = free_event_name(&tx, &name, kind_, event, taken)?;
            tx.execute(
                "UPDATE events SET outbox_name = ?2 WHERE id = ?1",
                params![event, outbox_name],
            )?;
            tx.execute(
                "UPDATE letter_events SET event_id = ?1 WHERE event_id IS NULL AND kind = ?3 \
                 AND letter_id IN (SELECT l.id FROM letters l JOIN parts p ON p.id = l.part_id \
                 WHERE p.file_id = ?2)",
                params![event, file_id, kind],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn rename_event(&self, event_id: i64, taken: &dyn Fn(&str) -> bool) -> Result<String> {
        let tx = self.tx()?;
        let (name, current, kind): (String, String, String) = tx.query_row(
            "SELECT f.name, e.outbox_name, e.kind FROM events e JOIN files f ON f.id = e.file_id WHERE e.id = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let kind = LetterEvent::parse(&kind)
            .ok_or_else(|| JournalError(format!("unknown letter event {kind}")))?;
        // The current name counts as taken (that is why we are here).
        let taken = |n: &str| n == current || taken(n);
        let outbox_name = free_event_name(&tx, &name, kind, event_id, &taken)?;
        tx.execute(
            "UPDATE events SET outbox_name = ?2, written = 0 WHERE id = ?1",
            params![event_id, outbox_name],
        )?;
        tx.commit()?;
        Ok(outbox_name)
    }

    fn unwritten_events(&self) -> Result<Vec<EventRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, file_id, outbox_name, written, kind FROM events WHERE written < 2 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(4)?;
            Ok(EventRow {
                id: r.get(0)?,
                file_id: r.get(1)?,
                outbox_name: r.get(2)?,
                staged: r.get::<_, i64>(3)? >= 1,
                kind: LetterEvent::parse(&kind).ok_or_else(|| bad_text("event kind", kind))?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn event_letters(&self, event_id: i64) -> Result<Vec<EventLetter>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.senders_reference, l.reportee, l.correspondence_id, e.at, e.text \
             FROM letter_events e JOIN letters l ON l.id = e.letter_id \
             WHERE e.event_id = ?1 ORDER BY l.id, e.id",
        )?;
        let rows = stmt.query_map([event_id], |r| {
            Ok(EventLetter {
                senders_reference: r.get(0)?,
                reportee: r.get(1)?,
                correspondence_id: r.get(2)?,
                at: r.get(3)?,
                text: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_event_written(&self, event_id: i64, level: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE events SET written = ?2 WHERE id = ?1",
            params![event_id, level],
        )?;
        Ok(())
    }

    fn overdue_letters(&self, overdue_after: Duration, limit: usize) -> Result<Vec<OverdueRow>> {
        // Still polled (no final status yet) and not published: overdue once
        // the requested publish time (or, without one, the creation) is
        // `overdue_after` past.
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.id, f.name, l.senders_reference, l.correspondence_id, l.altinn_status, \
             coalesce(l.publish_at, l.created_at) AS due FROM letters l \
             JOIN parts p ON p.id = l.part_id JOIN files f ON f.id = p.file_id \
             WHERE l.correspondence_id IS NOT NULL AND l.published_at IS NULL \
             AND l.next_poll_at IS NOT NULL \
             AND julianday(coalesce(l.publish_at, l.created_at)) + ?1 / 86400.0 < julianday('now') \
             ORDER BY julianday(due) LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![overdue_after.as_secs_f64(), limit as i64], |r| {
            Ok(OverdueRow {
                file_id: r.get(0)?,
                file: r.get(1)?,
                senders_reference: r.get(2)?,
                correspondence_id: r.get(3)?,
                altinn_status: r.get(4)?,
                due: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- operator commands -------------------------------------------------

    fn request_replay(&self, of_file_id: i64, force: bool) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO replays (of_file_id, force, state) VALUES (?1, ?2, 'preparing')",
            params![of_file_id, i64::from(force)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn replay_ready(&self, replay_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE replays SET state = 'ready' WHERE id = ?1 AND state = 'preparing'",
            [replay_id],
        )?;
        Ok(())
    }

    fn abandon_replay(&self, replay_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE replays SET state = 'abandoned' WHERE id = ?1 AND state = 'preparing'",
            [replay_id],
        )?;
        Ok(())
    }

    fn replays_in(&self, state: &str) -> Result<Vec<ReplayRow>> {
        self.replays_where("state = ?1", &state)
    }

    fn take_replay(&self, replay_id: i64, name: &str, size: u64) -> Result<i64> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO files (name, size, state) VALUES (?1, ?2, 'Received')",
            params![name, size as i64],
        )?;
        let id = tx.last_insert_rowid();
        let changed = tx.execute(
            "UPDATE replays SET state = 'taken', file_id = ?2 WHERE id = ?1 AND state = 'ready'",
            params![replay_id, id],
        )?;
        if changed != 1 {
            return Err(JournalError(format!(
                "replay request {replay_id} is not ready to be taken in"
            )));
        }
        tx.commit()?;
        Ok(id)
    }

    fn replay_of(&self, file_id: i64) -> Result<Option<ReplayRow>> {
        Ok(self.replays_where("file_id = ?1", &file_id)?.pop())
    }

    fn replays_of(&self, file_id: i64) -> Result<Vec<ReplayRow>> {
        self.replays_where("of_file_id = ?1", &file_id)
    }

    fn done_files_named(&self, name: &str) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLS} FROM files WHERE state = 'Done' \
             AND (name = ?1 OR moved_to = ?1 OR receipt_name = ?1) ORDER BY id DESC"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([name], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn done_before(&self, older_than: Duration) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLS} FROM files WHERE state = 'Done' \
             AND julianday(updated_at) < julianday('now', ?1) ORDER BY id"
        );
        let back = format!("-{:.3} seconds", older_than.as_secs_f64());
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([back], file_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn published_events_of(&self, file_id: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT outbox_name FROM events WHERE file_id = ?1 AND written = 2 ORDER BY id",
        )?;
        let rows = stmt.query_map([file_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn news_pending(&self, file_id: i64) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM letters l JOIN parts p ON p.id = l.part_id \
                            WHERE p.file_id = ?1 AND l.next_poll_at IS NOT NULL) \
                 OR EXISTS (SELECT 1 FROM events WHERE file_id = ?1 AND written < 2) \
                 OR EXISTS (SELECT 1 FROM letter_events e JOIN letters l ON l.id = e.letter_id \
                            JOIN parts p ON p.id = l.part_id \
                            WHERE p.file_id = ?1 AND e.event_id IS NULL)",
            [file_id],
            |r| r.get(0),
        )?)
    }

    fn state_overview(&self) -> Result<Vec<StateCount>> {
        // Cheap however long the journal: the open files through the state
        // index, and Done as all files (SQLite counts a table without
        // reading its rows) less the open ones.
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*), \
             CAST((julianday('now') - min(julianday(received_at))) * 86400 AS INTEGER), \
             CAST((julianday('now') - max(julianday(updated_at))) * 86400 AS INTEGER) \
             FROM files WHERE state IN ('Received', 'Staged', 'Packaged', 'Submitted', 'Finishing') \
             GROUP BY state",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (state, files, oldest, idle) = row?;
            if let Some(state) = FileState::parse(&state) {
                out.push(StateCount {
                    state,
                    files,
                    oldest_seconds: oldest.unwrap_or(0).max(0),
                    idle_seconds: idle.unwrap_or(0).max(0),
                });
            }
        }
        let all: i64 = self
            .conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get(0))?;
        let done = all - out.iter().map(|s| s.files).sum::<i64>();
        if done > 0 {
            out.push(StateCount {
                state: FileState::Done,
                files: done,
                oldest_seconds: 0,
                idle_seconds: 0,
            });
        }
        Ok(out)
    }

    fn quiet_seconds(&self) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT CAST((julianday('now') - max(julianday(updated_at))) * 86400 AS INTEGER) FROM files",
            [],
            |r| r.get(0),
        )?)
    }

    fn purge_file(&self, file_id: i64) -> Result<bool> {
        // IMMEDIATE: the write lock first, so the daemon cannot add news
        // between the look below and the deletes.
        let tx = Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        if self.news_pending(file_id)? {
            return Ok(false);
        }
        // A replay of it under way (asked for, or taken in and not yet
        // finished), looked at here too: `purge` plans before it removes,
        // and a `replay` may come in between. Its rows go with the file
        // otherwise: a ready request would find its file gone and be
        // abandoned, and a replay taken in would lose its link (where its
        // copy waits; whether it was forced).
        let replay_under_way: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM replays r LEFT JOIN files n ON n.id = r.file_id \
             WHERE r.of_file_id = ?1 AND (r.state IN ('preparing', 'ready') \
             OR (r.state = 'taken' AND n.state IS NOT 'Done')))",
            [file_id],
            |r| r.get(0),
        )?;
        if replay_under_way {
            return Ok(false);
        }
        // Kept when the duplicate check would match it: the same rule as
        // `submitted_duplicate` (letters Altinn accepted).
        tx.execute(
            "INSERT OR IGNORE INTO purged_hashes (sha256, file_id, name, received_at) \
             SELECT sha256, id, name, received_at FROM files WHERE id = ?1 AND sha256 IS NOT NULL \
             AND outcome IN ('Accepted', 'PartiallyAccepted')",
            [file_id],
        )?;
        tx.execute(
            "DELETE FROM letter_events WHERE letter_id IN \
             (SELECT l.id FROM letters l JOIN parts p ON p.id = l.part_id WHERE p.file_id = ?1)",
            [file_id],
        )?;
        tx.execute(
            "DELETE FROM letters WHERE part_id IN (SELECT id FROM parts WHERE file_id = ?1)",
            [file_id],
        )?;
        tx.execute("DELETE FROM events WHERE file_id = ?1", [file_id])?;
        tx.execute(
            "DELETE FROM handovers WHERE part_id IN (SELECT id FROM parts WHERE file_id = ?1)",
            [file_id],
        )?;
        tx.execute("DELETE FROM parts WHERE file_id = ?1", [file_id])?;
        tx.execute(
            "DELETE FROM replays WHERE (file_id = ?1 OR of_file_id = ?1) \
             AND state IN ('taken', 'abandoned')",
            [file_id],
        )?;
        tx.execute("DELETE FROM files WHERE id = ?1", [file_id])?;
        tx.commit()?;
        Ok(true)
    }

    fn backdate_file(&self, file_id: i64, by: Duration) -> Result<()> {
        let back = format!("-{:.3} seconds", by.as_secs_f64());
        self.conn.execute(
            "UPDATE files SET \
             received_at = strftime('%Y-%m-%dT%H:%M:%fZ', received_at, ?2), \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', updated_at, ?2) WHERE id = ?1",
            params![file_id, back],
        )?;
        Ok(())
    }

    fn overdue_receipts(&self, deadline: Duration) -> Result<Vec<OverdueReceipt>> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'handovers')",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(Vec::new());
        }
        // Driven by the parts' state index: only parts on their way are
        // looked at, however many were ever sent.
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.id, f.name, count(*), min(p.remote_name), min(h.at), \
             CAST((julianday('now') - julianday(min(h.at))) * 86400 AS INTEGER) \
             FROM parts p JOIN handovers h ON h.part_id = p.id JOIN files f ON f.id = p.file_id \
             WHERE p.state IN ('Uploading', 'Uploaded') \
             AND julianday(h.at) + ?1 / 86400.0 <= julianday('now') \
             GROUP BY f.id ORDER BY min(h.at), f.id",
        )?;
        let rows = stmt.query_map([deadline.as_secs_f64()], |r| {
            Ok(OverdueReceipt {
                file_id: r.get(0)?,
                file: r.get(1)?,
                parts: r.get(2)?,
                first_part: r.get(3)?,
                handed_over: r.get(4)?,
                age_seconds: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- notes -------------------------------------------------------------

    fn set_note(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.conn.execute(
                &format!(
                    "INSERT INTO notes (key, value) VALUES (?1, ?2) \
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = {NOW} \
                     WHERE value != excluded.value"
                ),
                params![key, v],
            )?,
            None => self
                .conn
                .execute("DELETE FROM notes WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    fn note(&self, key: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row("SELECT value, at FROM notes WHERE key = ?1", [key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }
}

/// The event file name for news of `kind` about input `input_name`: the
/// first N from `from` that is neither `taken` nor planned for another event.
fn free_event_name(
    tx: &Transaction<'_>,
    input_name: &str,
    kind: LetterEvent,
    from: i64,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String> {
    let mut planned =
        tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE outbox_name = ?1)")?;
    for n in from.max(1).. {
        let candidate = crate::outbox::event_name(input_name, kind, n);
        if !taken(&candidate) && !planned.query_row([&candidate], |r| r.get::<_, bool>(0))? {
            return Ok(candidate);
        }
    }
    Err(JournalError("no free name for an event file".into()))
}

/// Altinn's answers for one-letter parts, inside a transaction.
fn record_answers_in(
    tx: &Transaction<'_>,
    answers: &[(i64, Answer)],
    first_poll: Duration,
) -> Result<()> {
    let mut part = tx.prepare_cached(
        "UPDATE parts SET state = 'Receipted', status = ?2, text = ?3 WHERE id = ?1",
    )?;
    let mut created = tx.prepare_cached(&format!(
        "UPDATE letters SET status = '{LETTER_OK}', text = NULL, correspondence_id = ?2, \
         altinn_status = ?3, created_at = {NOW}, \
         next_poll_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4) WHERE part_id = ?1"
    ))?;
    let mut refused = tx.prepare_cached(&format!(
        "UPDATE letters SET status = '{LETTER_REJECTED}', text = ?2, refusal_http = ?3, \
         refusal_error_code = ?4, refusal_code = ?5, refusal_detail = ?6, refusal_trace_id = ?7, \
         next_poll_at = NULL WHERE part_id = ?1"
    ))?;
    for (part_id, answer) in answers {
        match answer {
            Answer::Created {
                correspondence_id,
                status,
            } => {
                part.execute(params![part_id, LETTER_OK, Option::<String>::None])?;
                created.execute(params![
                    part_id,
                    correspondence_id,
                    status,
                    later(first_poll)
                ])?;
            }
            Answer::Refused(r) => {
                let text = r.text();
                part.execute(params![part_id, LETTER_REJECTED, text])?;
                refused.execute(params![
                    part_id,
                    text,
                    r.http.map(i64::from),
                    r.error_code,
                    r.code,
                    r.detail,
                    r.trace_id
                ])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewLetter;

    fn part(no: i64, seq: Option<i64>, refs: &[&str]) -> NewPart {
        NewPart {
            part_no: no,
            remote_name: format!("r-{no}-{}.xml", seq.unwrap_or(0)),
            shipment_reference: format!("S-{no}"),
            sequence_no: None,
            sequence_slot: seq.map(|_| 100),
            bytes: 100,
            local: format!("r-{no}-{}.xml", seq.unwrap_or(0)),
            letters: refs
                .iter()
                .map(|r| NewLetter::new(r, "974760673"))
                .collect(),
            answer: None,
        }
    }

    #[test]
    fn sequence_numbers_are_given_at_upload_one_in_flight_and_given_back_on_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
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
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        assert_eq!(j.last_sequence("ABC").unwrap(), Some(7));
        assert_eq!(j.parts_of(f).unwrap()[1].sequence_no, Some(7));
    }

    #[test]
    fn overdue_receipts_are_parts_handed_over_past_the_deadline_without_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&path).unwrap();
        let f = j.add_file("a.xml", 10).unwrap();
        j.set_staged(f, Some("aa"), 10).unwrap();
        j.record_parts(f, "ABC", &[part(1, None, &["x"]), part(2, None, &["y"])])
            .unwrap();
        let parts = j.parts_of(f).unwrap();
        // Not handed over yet: never overdue.
        assert!(j.overdue_receipts(Duration::ZERO).unwrap().is_empty());
        j.set_parts_state(&[parts[0].id, parts[1].id], PartState::Uploading)
            .unwrap();
        j.set_part_state(parts[0].id, PartState::Uploaded).unwrap();
        assert!(j
            .overdue_receipts(Duration::from_secs(3600))
            .unwrap()
            .is_empty());
        let o = j.overdue_receipts(Duration::ZERO).unwrap();
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!((o[0].file_id, o[0].parts), (f, 2));
        assert_eq!(o[0].first_part, parts[0].remote_name);
        // An answered part is no longer overdue.
        j.record_receipt(parts[0].id, "OK", "", &[]).unwrap();
        assert_eq!(j.overdue_receipts(Duration::ZERO).unwrap()[0].parts, 1);
        let states = j.state_overview().unwrap();
        assert_eq!(states.len(), 1, "{states:?}");
        assert_eq!((states[0].state, states[0].files), (FileState::Packaged, 1));
        // Done is counted as all files less the open ones.
        let g = j.add_file("g.xml", 1).unwrap();
        j.set_outcome(g, Outcome::Rejected, "no", None, 0).unwrap();
        j.set_done(g).unwrap();
        j.add_file("h.xml", 1).unwrap();
        let counts: Vec<(FileState, i64)> = j
            .state_overview()
            .unwrap()
            .iter()
            .map(|s| (s.state, s.files))
            .collect();
        assert_eq!(
            counts,
            [
                (FileState::Packaged, 1),
                (FileState::Received, 1),
                (FileState::Done, 1)
            ]
        );
        assert!(j.quiet_seconds().unwrap().is_some_and(|s| s < 60));

        // A journal no daemon of this version opened has no handovers
        // table: read-only, nothing is overdue (and nothing fails).
        j.conn.execute_batch("DROP TABLE handovers").unwrap();
        drop(j);
        let ro = SqliteJournal::open_read_only(&path).unwrap();
        assert!(ro.overdue_receipts(Duration::ZERO).unwrap().is_empty());
    }

    #[test]
    fn a_journal_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        drop(SqliteJournal::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteJournal::open(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("newer dpv-batch"), "{err}");
    }

    #[test]
    fn receipts_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
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

    #[test]
    fn a_v1_journal_is_migrated_in_place() {
        // Written by dpv-batch with schema v1 (tests/fixtures/journal-v1/make.sh).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/journal-v1/ws/state/journal.sqlite"
            ),
            &path,
        )
        .unwrap();
        let j = SqliteJournal::open(&path).unwrap();
        let version: i64 = j
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let files = j.all_files().unwrap();
        let names: Vec<(&str, FileState)> =
            files.iter().map(|f| (f.name.as_str(), f.state)).collect();
        assert_eq!(
            names,
            vec![
                ("b.xml", FileState::Submitted),
                ("bad.xml", FileState::Done),
                ("a.xml", FileState::Done)
            ]
        );
        // a.xml's reads were reported in a.xml.read-1.xml: never again.
        let a = j.letters_of(1).unwrap();
        assert_eq!(a.len(), 4);
        assert!(a
            .iter()
            .all(|l| l.read_at.is_some() && l.status.as_deref() == Some("OK")));
        assert_eq!(j.event_letters(1).unwrap().len(), 4);
        j.plan_events(&|_| false).unwrap();
        assert!(j.unwritten_events().unwrap().is_empty());
        // b.xml's part still waits for its receipt, where it was.
        let b = j.parts_of(3).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].state, PartState::Uploaded);
        assert_eq!(b[0].local, b[0].remote_name);
        assert_eq!(
            j.part_awaiting_receipt(Some(&b[0].remote_name), &b[0].shipment_reference)
                .unwrap()
                .unwrap()
                .id,
            b[0].id
        );
        assert_eq!(j.last_sequence("BRG-4601").unwrap(), Some(1));
        // A v1 journal has no installation id yet (`installation` gives it one).
        assert_eq!(j.installation_id().unwrap(), None);
        j.set_installation_id("0123456789abcdef").unwrap();
        let id = j.installation_id().unwrap();
        // A later read of b is reported as before, in b's own read file.
        j.record_receipt(b[0].id, "OK", "", &[]).unwrap();
        assert_eq!(
            j.record_reads(&[("VLF-SAMF-2026-1702".into(), "2026-12-01T10:00:00Z".into())])
                .unwrap(),
            1
        );
        j.set_done(3).unwrap();
        j.plan_events(&|_| false).unwrap();
        let events = j.unwritten_events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].outbox_name,
            format!("b.xml.read-{}.xml", events[0].id)
        );
        assert!(events[0].id > 1);
        // Opening again changes nothing.
        drop(j);
        let j = SqliteJournal::open(&path).unwrap();
        assert_eq!(j.installation_id().unwrap(), id);
        assert_eq!(j.letters_of(1).unwrap().len(), 4);
    }

    #[test]
    fn letters_answered_polled_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        let f = j.add_file("a.xml", 10).unwrap();
        j.set_staged(f, Some("aa"), 10).unwrap();
        let letter = |no: i64, sref: &str, answer: Option<Answer>| NewPart {
            part_no: no,
            remote_name: format!("a-L{no:05}"),
            local: format!("00001/L{no:05}"),
            shipment_reference: "S".into(),
            sequence_no: None,
            sequence_slot: None,
            bytes: 1,
            letters: vec![NewLetter {
                idempotent_key: Some(format!("key-{no}")),
                resource_id: Some("res".into()),
                ..NewLetter::new(sref, "974760673")
            }],
            answer,
        };
        let ours = Refusal {
            http: None,
            error_code: None,
            code: Some("A3004".into()),
            detail: "title too long".into(),
            trace_id: None,
        };
        j.record_parts(
            f,
            "ABC",
            &[
                letter(1, "x", None),
                letter(2, "y", None),
                letter(3, "z", Some(Answer::Refused(ours.clone()))),
            ],
        )
        .unwrap();
        let parts = j.parts_of(f).unwrap();
        assert_eq!(parts[0].local, "00001/L00001");
        assert_eq!(parts[2].state, PartState::Receipted);
        let l = j.letters_of(f).unwrap();
        assert_eq!(l[0].idempotent_key.as_deref(), Some("key-1"));
        assert_eq!(l[2].refusal.as_ref(), Some(&ours));
        assert_eq!(l[2].status.as_deref(), Some(LETTER_REJECTED));

        j.set_parts_state(&[parts[0].id, parts[1].id], PartState::Uploading)
            .unwrap();
        let altinn = Refusal {
            http: Some(404),
            error_code: Some(1029),
            code: Some("CORR-01029".into()),
            detail: "Recipient not found".into(),
            trace_id: Some("00-abc".into()),
        };
        j.record_answers(
            &[
                (
                    parts[0].id,
                    Answer::Created {
                        correspondence_id: "c-1".into(),
                        status: "Initialized".into(),
                    },
                ),
                (parts[1].id, Answer::Refused(altinn.clone())),
            ],
            Duration::ZERO,
        )
        .unwrap();
        let l = j.letters_of(f).unwrap();
        assert_eq!(l[0].correspondence_id.as_deref(), Some("c-1"));
        assert_eq!(l[0].status.as_deref(), Some(LETTER_OK));
        assert_eq!(l[1].refusal.as_ref(), Some(&altinn));
        assert!(l[1].text.as_deref().unwrap().contains("CORR-01029"));
        // Only the created letter is polled; overdue at once with no grace.
        let due = j.letters_to_poll(10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].correspondence_id, "c-1");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(j.overdue_letters(Duration::ZERO, 10).unwrap().len(), 1);
        assert!(j
            .overdue_letters(Duration::from_secs(60), 10)
            .unwrap()
            .is_empty());
        // Published before the receipt: in the receipt, not in an event file.
        j.record_statuses(&[StatusUpdate {
            letter_id: due[0].letter_id,
            status: "Published".into(),
            status_text: None,
            published_at: Some("2026-12-01T10:00:00Z".into()),
            read_at: None,
            events: vec![(LetterEvent::Published, "2026-12-01T10:00:00Z".into(), None)],
            next_poll: Some(Duration::from_secs(60)),
        }])
        .unwrap();
        assert!(
            j.letters_to_poll(10).unwrap().is_empty(),
            "next look in a minute"
        );
        assert!(
            j.overdue_letters(Duration::ZERO, 10).unwrap().is_empty(),
            "published"
        );
        j.set_receipt_staged(f).unwrap();
        j.set_done(f).unwrap();
        j.plan_events(&|_| false).unwrap();
        assert!(j.unwritten_events().unwrap().is_empty());
        // Read after the receipt: a read event file.
        j.record_statuses(&[StatusUpdate {
            letter_id: due[0].letter_id,
            status: "Read".into(),
            status_text: None,
            published_at: None,
            read_at: Some("2026-12-02T09:00:00Z".into()),
            events: vec![(LetterEvent::Read, "2026-12-02T09:00:00Z".into(), None)],
            next_poll: None,
        }])
        .unwrap();
        j.plan_events(&|_| false).unwrap();
        let events = j.unwritten_events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, LetterEvent::Read);
        assert_eq!(
            events[0].outbox_name,
            format!("a.xml.read-{}.xml", events[0].id)
        );
        let news = j.event_letters(events[0].id).unwrap();
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].correspondence_id.as_deref(), Some("c-1"));
        j.set_event_written(events[0].id, 2).unwrap();
        j.plan_events(&|_| false).unwrap();
        assert!(j.unwritten_events().unwrap().is_empty());
        let l = j.letters_of(f).unwrap();
        assert_eq!(l[0].altinn_status.as_deref(), Some("Read"));
        assert_eq!(l[0].published_at.as_deref(), Some("2026-12-01T10:00:00Z"));
        // Notes.
        j.set_note("transport", Some("throttled")).unwrap();
        assert_eq!(j.note("transport").unwrap().unwrap().0, "throttled");
        j.set_note("transport", None).unwrap();
        assert!(j.note("transport").unwrap().is_none());
    }

    #[test]
    fn probe_tells_a_used_journal_from_a_new_one_without_changing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let new = |p: &Path| !SqliteJournal::probe(p).unwrap().holds_state;
        assert!(new(&path) && !path.exists(), "missing: not created");
        std::fs::write(&path, b"").unwrap();
        assert!(new(&path), "0 bytes");
        drop(SqliteJournal::open(&path).unwrap());
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
        let p = SqliteJournal::probe(&path).unwrap();
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
        std::fs::write(dir.path().join("junk.sqlite"), b"not a database at all").unwrap();
        let err = SqliteJournal::probe(&dir.path().join("junk.sqlite")).unwrap_err();
        assert!(err.to_string().contains("junk.sqlite"), "{err}");
    }

    #[test]
    fn name_epochs_only_go_forward_and_stay_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
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
    fn events_take_the_next_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        for (no, reference) in [(1, "x"), (2, "y")] {
            let f = j.add_file("a.xml", 1).unwrap();
            j.record_parts(f, "ABC", &[part(no, None, &[reference])])
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
        j.plan_events(&|n| n == "a.xml.read-1.xml").unwrap();
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
    fn a_replay_is_taken_once_and_a_purged_sent_file_stays_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        let a = j.add_file("a.xml", 10).unwrap();
        j.set_staged(a, Some("same"), 10).unwrap();
        j.record_parts(a, "ABC", &[part(1, None, &["x"])]).unwrap();
        let p = &j.parts_of(a).unwrap()[0];
        j.set_part_state(p.id, PartState::Uploaded).unwrap();
        j.record_receipt(p.id, "OK", "", &[("x".into(), "OK".into(), String::new())])
            .unwrap();
        j.set_outcome(a, Outcome::Accepted, "ok", None, 1).unwrap();
        j.reserve_names(a, "a.xml.receipt.xml", "a.xml").unwrap();
        assert!(j.name_reserved("a.xml.receipt.xml").unwrap(), "in flight");
        j.set_done(a).unwrap();
        assert!(
            !j.name_reserved("a.xml.receipt.xml").unwrap(),
            "done: the outbox decides"
        );
        assert!(
            j.name_reserved("a.xml").unwrap(),
            "archive names stay unique"
        );

        // A replay: not taken while preparing, taken exactly once when ready.
        let r = j.request_replay(a, true).unwrap();
        assert!(j.replays_in("ready").unwrap().is_empty());
        assert!(j.take_replay(r, "a.xml", 10).is_err());
        j.replay_ready(r).unwrap();
        let b = j.take_replay(r, "a.xml", 10).unwrap();
        assert!(j.take_replay(r, "a.xml", 10).is_err(), "never twice");
        assert_eq!(j.files_in(FileState::Received).unwrap().len(), 1);
        let link = j.replay_of(b).unwrap().unwrap();
        assert_eq!(
            (link.of_file_id, link.force, link.state.as_str()),
            (a, true, "taken")
        );
        assert_eq!(j.replays_of(a).unwrap().len(), 1);

        // Not purged while a replay of it is under way (taken in, not
        // finished): the replay's link to it would go with its rows.
        j.backdate_file(a, Duration::from_secs(100 * 86_400))
            .unwrap();
        assert!(!j.purge_file(a).unwrap(), "its replay is in flight");
        assert!(j.replay_of(b).unwrap().is_some());
        // Asked for and not yet taken in: kept too.
        let r2 = j.request_replay(a, false).unwrap();
        j.replay_ready(r2).unwrap();
        j.set_outcome(b, Outcome::Rejected, "replayed", None, 0)
            .unwrap();
        j.set_done(b).unwrap();
        assert!(!j.purge_file(a).unwrap(), "a replay is ready");
        assert!(j.find_file(a).unwrap().is_some());
        let c = j.take_replay(r2, "a.xml", 10).unwrap();
        j.set_outcome(c, Outcome::Rejected, "replayed", None, 0)
            .unwrap();
        j.set_done(c).unwrap();

        // Purged: rows gone, the hash still a duplicate.
        let old = j.done_before(Duration::from_secs(90 * 86_400)).unwrap();
        assert_eq!(old.iter().map(|f| f.id).collect::<Vec<_>>(), vec![a]);
        assert!(!j.news_pending(a).unwrap());
        assert!(j.purge_file(a).unwrap());
        assert!(j.find_file(a).unwrap().is_none());
        assert!(j.letters_of(a).unwrap().is_empty());
        assert_eq!(j.submitted_duplicate("same", b).unwrap().unwrap().id, a);
        assert!(j.submitted_duplicate("other", b).unwrap().is_none());
    }
}
