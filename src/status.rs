//! `dpv-batch status`: every input file with its state, age and last word,
//! read from the journal (read-only, so it works while the daemon runs);
//! above them, what the transport is going through (throttled by Altinn,
//! stopped, and why) and the letters Altinn has not published long after
//! it was asked to (overdue).
//!
//! One row per file whatever its name: names are kept as shown (escaped,
//! see `names`) and reasons are escaped here, so no newline or terminal
//! escape sequence reaches the table.

pub mod filter;

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Config;
use crate::journal::{self, FileRow, FileState, JournalError, Outcome, OverdueRow};
use crate::names;
use crate::pipeline::JOURNAL_FILE;

/// Overdue letters listed by name (all are counted).
const OVERDUE_LISTED: usize = 20;

/// Everything `status` says.
pub struct Report {
    pub files: Vec<FileRow>,
    /// What the transport is going through, and since when.
    pub transport: Option<(String, String)>,
    pub overdue: Vec<OverdueRow>,
}

pub fn rows(cfg: &Config) -> Result<Vec<FileRow>, JournalError> {
    Ok(report(cfg)?.files)
}

pub fn report(cfg: &Config) -> Result<Report, JournalError> {
    let path = cfg.paths.state.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(Report {
            files: Vec::new(),
            transport: None,
            overdue: Vec::new(),
        });
    }
    let j = journal::open_read_only(&path)?;
    Ok(Report {
        files: j.all_files()?,
        transport: j.note(journal::notes::TRANSPORT)?,
        overdue: j.overdue_letters(overdue_after(cfg), OVERDUE_LISTED + 1)?,
    })
}

/// How long after its requested publish time an unpublished letter is overdue.
fn overdue_after(cfg: &Config) -> Duration {
    crate::transport::altinn3::overdue_after(cfg)
}

/// What the transport goes through and overdue letters, for people.
pub fn header(r: &Report) -> String {
    let mut out = String::new();
    if let Some((what, since)) = &r.transport {
        let _ = writeln!(out, "transport: {what} (since {since})");
    }
    if !r.overdue.is_empty() {
        let more = if r.overdue.len() > OVERDUE_LISTED {
            " (the first listed)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "overdue: letters Altinn has not published long after their requested publish time{more}:"
        );
        for o in r.overdue.iter().take(OVERDUE_LISTED) {
            let _ = writeln!(
                out,
                "  {} in {}: {} since {} (correspondence {})",
                o.senders_reference,
                o.file,
                o.altinn_status.as_deref().unwrap_or("not published"),
                o.due,
                o.correspondence_id.as_deref().unwrap_or("-")
            );
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A table for people: newest first.
pub fn text(rows: &[FileRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no files yet\n");
        return out;
    }
    let done = rows.iter().filter(|r| r.state == FileState::Done).count();
    let count = |o: Outcome| rows.iter().filter(|r| r.outcome == Some(o)).count();
    let _ = writeln!(
        out,
        "{} file(s): {} in progress, {done} done ({} accepted, {} partially accepted, {} rejected, {} failed)\n",
        rows.len(),
        rows.len() - done,
        count(Outcome::Accepted),
        count(Outcome::PartiallyAccepted),
        count(Outcome::Rejected),
        count(Outcome::Failed)
    );
    let width = rows
        .iter()
        .map(|r| names::text(&r.name).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let _ = writeln!(
        out,
        "{:>6}  {:<width$}  {:<10}  {:<17}  {:>7}  {:>5}  REASON",
        "ID", "FILE", "STATE", "OUTCOME", "LETTERS", "IDLE"
    );
    for r in rows {
        let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("-");
        let _ = writeln!(
            out,
            "{:>6}  {:<width$}  {:<10}  {:<17}  {:>7}  {:>5}  {}",
            r.id,
            names::text(&r.name),
            r.state.as_str(),
            outcome,
            r.letters,
            age(r.idle_seconds),
            names::text(r.reason.as_deref().unwrap_or(""))
        );
    }
    out
}
