//! `status --state STATE --since DURATION|DATE --file NAME|ID`: which rows
//! to show, and for one file (`--file`) its parts and letters.
//!
//! `--since` takes a duration back from now (`2h`, `7d`, humantime) or a
//! UTC date or time (`2026-11-28`, `2026-11-28T12:00:00Z`); it compares with
//! when the file was received. `--file` matches a journal id (digits only),
//! or a name as shown: the input's name, its name in failed/ or archive/, or
//! its receipt's name.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::journal::{self, FileRow, FileState, LetterRow, PartRow, ReplayRow};
use crate::names;
use crate::outbox;
use crate::pipeline::JOURNAL_FILE;

/// The filters given on the command line (all optional).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub state: Option<FileState>,
    /// An xs:dateTime in UTC, as the journal writes them.
    pub since: Option<String>,
    pub file: Option<String>,
}

/// `--state`: a file state, any case (`done`, `Submitted`).
pub fn parse_state(s: &str) -> Result<FileState, String> {
    FileState::ALL
        .iter()
        .copied()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "'{s}' is not a state: received, staged, packaged, submitted, finishing or done"
            )
        })
}

/// `--since`: a duration back from now, or a UTC date or time; the result
/// is an xs:dateTime with milliseconds, comparable with the journal's.
pub fn parse_since(s: &str) -> Result<String, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        // Never before 1970: `checked_sub` gives such a time (it fits in a
        // SystemTime), and writing it as a date panics.
        let at = SystemTime::now()
            .checked_sub(d)
            .filter(|t| *t >= SystemTime::UNIX_EPOCH)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        return Ok(humantime::format_rfc3339_millis(at).to_string());
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .map_err(|_| {
            format!("'{s}' is neither a duration (2h, 7d) nor a UTC date or time (2026-11-28, 2026-11-28T12:00:00Z)")
        })
}

/// Keep the rows the filter lets through (`rows` newest first).
pub fn apply(rows: Vec<FileRow>, f: &Filter) -> Vec<FileRow> {
    rows.into_iter()
        .filter(|r| f.state.is_none_or(|s| r.state == s))
        .filter(|r| {
            f.since
                .as_deref()
                .is_none_or(|since| r.received_at.as_str() >= since)
        })
        .filter(|r| f.file.as_deref().is_none_or(|n| matches_file(r, n)))
        .collect()
}

/// Does `--file NAME|ID` name this row?
fn matches_file(r: &FileRow, target: &str) -> bool {
    if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        return target.parse::<i64>().is_ok_and(|id| id == r.id);
    }
    r.name == target
        || r.moved_to.as_deref() == Some(target)
        || r.receipt_name.as_deref() == Some(target)
}

/// One file in full: what `status --file` shows when it names one file.
#[derive(Debug, Serialize)]
pub struct Detail {
    pub file: FileRow,
    pub parts: Vec<PartRow>,
    pub letters: Vec<LetterView>,
    /// The replay request this file came from.
    pub replay_of: Option<ReplayRow>,
    /// Replays of this file.
    pub replays: Vec<ReplayRow>,
}

/// A letter as `status` shows it: the journal's row and the status the
/// fagsystem's receipt gives it.
#[derive(Debug, Serialize)]
pub struct LetterView {
    #[serde(flatten)]
    pub row: LetterRow,
    pub receipt_status: &'static str,
}

/// The detail of file `id` (read-only, like `status`).
pub fn detail(cfg: &Config, id: i64) -> Result<Detail, journal::JournalError> {
    let j = journal::open_read_only(&cfg.paths.state.join(JOURNAL_FILE))?;
    let file = j.file(id)?;
    let letters = j
        .letters_of(id)?
        .into_iter()
        .map(|row| LetterView {
            receipt_status: outbox::letter_status(&row, false),
            row,
        })
        .collect();
    Ok(Detail {
        parts: j.parts_of(id)?,
        letters,
        replay_of: j.replay_of(id)?,
        replays: j.replays_of(id)?,
        file,
    })
}

/// The detail for people.
pub fn detail_text(d: &Detail) -> String {
    let mut out = String::new();
    let f = &d.file;
    let _ = writeln!(out, "file {}: {}", f.id, names::text(&f.name));
    let _ = writeln!(out, "  state     {}", f.state.as_str());
    let _ = writeln!(out, "  outcome   {}", f.outcome.map_or("-", |o| o.as_str()));
    let _ = writeln!(
        out,
        "  reason    {}",
        names::text(f.reason.as_deref().unwrap_or(""))
    );
    let _ = writeln!(out, "  received  {}", f.received_at);
    let _ = writeln!(out, "  updated   {}", f.updated_at);
    let _ = writeln!(out, "  sha256    {}", f.sha256.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "  letters   {}", f.letters);
    let _ = writeln!(
        out,
        "  receipt   {}",
        f.receipt_name.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "  moved to  {}", f.moved_to.as_deref().unwrap_or("-"));
    if let Some(r) = &d.replay_of {
        let _ = writeln!(
            out,
            "  replay of file {} (request {}{})",
            r.of_file_id,
            r.id,
            if r.force {
                ", forced past the duplicate check"
            } else {
                ""
            }
        );
    }
    for r in &d.replays {
        let _ = writeln!(
            out,
            "  replayed: request {} {}{}{}",
            r.id,
            r.state,
            r.file_id
                .map_or(String::new(), |id| format!(" as file {id}")),
            if r.force { " (forced)" } else { "" }
        );
    }
    if !d.parts.is_empty() {
        let _ = writeln!(out, "\nparts:");
        let _ = writeln!(
            out,
            "  {:>5}  {:<10}  {:<10}  {:>7}  REMOTE NAME",
            "PART", "STATE", "STATUS", "LETTERS"
        );
        for p in &d.parts {
            let _ = writeln!(
                out,
                "  {:>5}  {:<10}  {:<10}  {:>7}  {}",
                p.part_no,
                p.state.as_str(),
                p.status.as_deref().unwrap_or("-"),
                p.letters,
                p.remote_name
            );
        }
    }
    if !d.letters.is_empty() {
        let _ = writeln!(out, "\nletters:");
        for l in &d.letters {
            let r = &l.row;
            let _ = write!(
                out,
                "  {}  to {}  {}",
                names::text(&r.senders_reference),
                names::text(&r.reportee),
                l.receipt_status
            );
            if let Some(id) = &r.correspondence_id {
                let _ = write!(out, "  correspondence {id}");
            }
            if let Some(s) = &r.altinn_status {
                let _ = write!(out, "  altinn {s}");
            }
            if let Some(refusal) = &r.refusal {
                let _ = write!(
                    out,
                    "  refused {}: {}",
                    refusal.code.as_deref().unwrap_or("-"),
                    names::text(&refusal.detail)
                );
            } else if let Some(t) = r.text.as_deref().filter(|t| !t.is_empty()) {
                let _ = write!(out, "  {}", names::text(t));
            }
            out.push('\n');
        }
    }
    out
}
