//! `dpv-batch status`: every input file with its state, age and last word,
//! read from the journal (read-only, so it works while the daemon runs).
//!
//! One row per file whatever its name: names are kept as shown (escaped,
//! see `names`) and reasons are escaped here, so no newline or terminal
//! escape sequence reaches the table.

use std::fmt::Write as _;

use crate::config::Config;
use crate::journal::{FileRow, FileState, Journal, JournalError, Outcome};
use crate::names;
use crate::pipeline::JOURNAL_FILE;

pub fn rows(cfg: &Config) -> Result<Vec<FileRow>, JournalError> {
    let path = cfg.paths.state.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    Journal::open_read_only(&path)?.all_files()
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
