//! `dpv-batch status`: every input file with its state, age and last word,
//! read from the journal (read-only, so it works while the daemon runs);
//! above them, what the transport is going through (throttled by Altinn,
//! stopped, and why) and the letters Altinn has not published long after
//! it was asked to (overdue).
//!
//! Above them too: receipts overdue (parts handed over longer ago than
//! `run.receipt_deadline`, still without Altinn's answer). `status --check`
//! ([`check`]) condenses all of it into one Nagios-style line and exit code.
//!
//! One row per file whatever its name: names are kept as shown (escaped,
//! see `names`) and reasons are escaped here, so no newline or terminal
//! escape sequence reaches the table.

pub mod filter;

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Config;
use crate::journal::{
    self, FileRow, FileState, JournalError, Outcome, OverdueReceipt, OverdueRow, StateCount,
};
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
    /// Files with parts past `run.receipt_deadline` without their receipt.
    pub receipts_overdue: Vec<OverdueReceipt>,
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
            receipts_overdue: Vec::new(),
        });
    }
    let j = journal::open_read_only(&path)?;
    Ok(Report {
        files: j.all_files()?,
        transport: j.note(journal::notes::TRANSPORT)?,
        overdue: j.overdue_letters(overdue_after(cfg), OVERDUE_LISTED + 1)?,
        receipts_overdue: j.overdue_receipts(cfg.run.receipt_deadline)?,
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
    if !r.receipts_overdue.is_empty() {
        let parts: i64 = r.receipts_overdue.iter().map(|o| o.parts).sum();
        let _ = writeln!(
            out,
            "receipts overdue: {parts} part(s) of {} file(s) without Altinn's receipt past run.receipt_deadline{}:",
            r.receipts_overdue.len(),
            if r.receipts_overdue.len() > OVERDUE_LISTED {
                " (the first listed)"
            } else {
                ""
            }
        );
        for o in r.receipts_overdue.iter().take(OVERDUE_LISTED) {
            let _ = writeln!(
                out,
                "  {} (id {}): {} part(s), the first {} handed over {} ({} ago)",
                names::text(&o.file),
                o.file_id,
                o.parts,
                o.first_part,
                o.handed_over,
                age(o.age_seconds)
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

// ---- status --check ----------------------------------------------------------

/// Nagios-style verdicts, worst last: the exit code is the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// Work waiting to be taken in or validated (Received, Staged) while no
/// file in the journal has changed for this long (and at least 10 polls):
/// the daemon is not running, or stuck. Those stages need nothing from
/// outside, and each pass changes a file (or records why it could not),
/// so a live daemon never leaves them untouched this long.
pub const STALLED_AFTER: Duration = Duration::from_secs(15 * 60);

/// A transport down (every try failing, whatever the error) this long is
/// CRITICAL: no longer a blip that retrying rides out (WARNING before).
pub const DOWN_AFTER: Duration = Duration::from_secs(10 * 60);

/// `status --check`: the exit code and exactly one line, e.g.
/// `DPV-BATCH WARNING - 2 receipts overdue (oldest 3h) | files_open=5 overdue=2`.
/// - CRITICAL: the transport needs an operator (a permanent error), or it
///   has been down for [`DOWN_AFTER`] (every try failing), or local work
///   waits and the journal shows no progress (see [`STALLED_AFTER`]);
/// - WARNING: receipts overdue (`run.receipt_deadline`), letters Altinn
///   has not published long after their time (Altinn 3), or the transport
///   retrying or throttled (the `status` header's transport line);
/// - UNKNOWN: the config or the journal cannot be read (or there is none
///   yet: dpv-batch never ran with this config);
/// - OK otherwise.
///
/// Read-only, like `status`: safe while the daemon runs.
pub fn check(config: &std::path::Path) -> (Level, String) {
    let cfg = match Config::load_without_secrets(config) {
        Ok(c) => c,
        Err(e) => return verdict(Level::Unknown, &format!("cannot read the config: {e}"), ""),
    };
    let path = cfg.paths.state.join(JOURNAL_FILE);
    if !path.exists() {
        return verdict(
            Level::Unknown,
            &format!("no journal at {} (has dpv-batch run?)", path.display()),
            "",
        );
    }
    match gather(&cfg, &path) {
        Ok(facts) => judge(&facts, cfg.run.poll()),
        Err(e) => verdict(Level::Unknown, &format!("cannot read the journal: {e}"), ""),
    }
}

/// What `check` looks at, read from the journal in one go.
struct Facts {
    states: Vec<StateCount>,
    transport: Option<(String, String)>,
    permanent: Option<(String, String)>,
    /// Seconds since the transport went down, while it is.
    down_for: Option<i64>,
    receipts_overdue: Vec<OverdueReceipt>,
    letters_overdue: usize,
    /// Seconds since any file changed (`i64::MAX` without files).
    quiet: i64,
    /// Inbox entries ready to be taken in, and how long the oldest has been
    /// (seconds): a stopped daemon journals nothing, so files the fagsystem
    /// keeps dropping show only here.
    inbox_ready: usize,
    inbox_oldest: i64,
}

fn gather(cfg: &Config, path: &std::path::Path) -> Result<Facts, JournalError> {
    let j = journal::open_read_only(path)?;
    let ready = inbox_ready_ages(cfg);
    Ok(Facts {
        states: j.state_overview()?,
        transport: j.note(journal::notes::TRANSPORT)?,
        permanent: j.note(journal::notes::TRANSPORT_PERMANENT)?,
        down_for: j
            .note(journal::notes::TRANSPORT_DOWN)?
            .map(|(_, since)| seconds_since(&since)),
        receipts_overdue: j.overdue_receipts(cfg.run.receipt_deadline)?,
        letters_overdue: j
            .overdue_letters(overdue_after(cfg), OVERDUE_LISTED + 1)?
            .len(),
        // No file yet: nothing ever changed.
        quiet: j.quiet_seconds()?.unwrap_or(i64::MAX),
        inbox_ready: ready.len(),
        inbox_oldest: ready.iter().copied().max().unwrap_or(0),
    })
}

/// Seconds from a journal time (`2026-11-29T01:02:03.456Z`) to now; a time
/// that does not parse counts as now (nothing is made worse by it).
fn seconds_since(at: &str) -> i64 {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(at, &Rfc3339)
        .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0))
        .unwrap_or(0)
}

/// How long (seconds) each inbox entry has been ready to be taken in: since
/// it was written (its mtime; in done-file mode, its marker's too). A
/// done-file entry without its marker is not ready, and not counted. An
/// inbox that cannot be read counts as empty (the daemon says why).
fn inbox_ready_ages(cfg: &Config) -> Vec<i64> {
    let intake = crate::pipeline::intake::Intake::new(cfg.intake.clone());
    let inbox = &cfg.paths.inbox;
    let now = std::time::SystemTime::now();
    let age = |t: std::time::SystemTime| now.duration_since(t).map_or(0, |d| d.as_secs() as i64);
    let Ok(candidates) = intake.candidates(inbox) else {
        return Vec::new();
    };
    candidates
        .iter()
        .filter_map(|c| {
            let written = c.meta.modified().ok()?;
            let since = match intake.marker(&c.raw) {
                None => written,
                Some(m) => std::fs::symlink_metadata(inbox.join(m))
                    .and_then(|m| m.modified())
                    .map(|marked| marked.max(written))
                    .ok()?,
            };
            Some(age(since))
        })
        .collect()
}

fn judge(f: &Facts, poll: Duration) -> (Level, String) {
    let count = |s: FileState| {
        f.states
            .iter()
            .find(|r| r.state == s)
            .map_or(0, |r| r.files)
    };
    let open: i64 = f
        .states
        .iter()
        .filter(|r| r.state != FileState::Done)
        .map(|r| r.files)
        .sum();
    let overdue: i64 = f.receipts_overdue.iter().map(|o| o.parts).sum();
    let perf = format!(
        "files_open={open} overdue={overdue} letters_overdue={}",
        f.letters_overdue
    );
    let waiting_locally = count(FileState::Received) + count(FileState::Staged);
    let quiet = f.quiet;
    let stalled_after = STALLED_AFTER.max(poll * 10).as_secs() as i64;
    if let Some((why, since)) = &f.permanent {
        return verdict(
            Level::Critical,
            &format!("transport stopped since {since}, an operator must act: {why}"),
            &perf,
        );
    }
    if let Some(down) = f.down_for.filter(|&d| d >= DOWN_AFTER.as_secs() as i64) {
        let why = f.transport.as_ref().map_or("", |(what, _)| what.as_str());
        return verdict(
            Level::Critical,
            &format!("transport down for {}: {why}", age(down)),
            &perf,
        );
    }
    if waiting_locally > 0 && quiet >= stalled_after {
        return verdict(
            Level::Critical,
            &format!(
                "{waiting_locally} file(s) wait to be validated but nothing changed for {} (is dpv-batch running?)",
                age(quiet)
            ),
            &perf,
        );
    }
    // A daemon that works changes the journal all the time; one working
    // through a large backlog may leave files in the inbox for long.
    if f.inbox_ready > 0 && f.inbox_oldest >= stalled_after && quiet >= stalled_after {
        return verdict(
            Level::Critical,
            &format!(
                "{} file(s) in the inbox not taken in, the oldest ready for {} (is dpv-batch running?)",
                f.inbox_ready,
                age(f.inbox_oldest)
            ),
            &perf,
        );
    }
    let mut warnings = Vec::new();
    if overdue > 0 {
        let oldest = f.receipts_overdue.iter().map(|o| o.age_seconds).max();
        warnings.push(format!(
            "{overdue} receipt(s) overdue (oldest {})",
            age(oldest.unwrap_or(0))
        ));
    }
    if f.letters_overdue > 0 {
        let more = if f.letters_overdue > OVERDUE_LISTED {
            "+"
        } else {
            ""
        };
        warnings.push(format!(
            "{}{more} letter(s) not published long after their time",
            f.letters_overdue.min(OVERDUE_LISTED)
        ));
    }
    if let Some((what, since)) = &f.transport {
        warnings.push(format!("transport: {what} (since {since})"));
    }
    if !warnings.is_empty() {
        return verdict(Level::Warning, &warnings.join("; "), &perf);
    }
    let done = count(FileState::Done);
    verdict(
        Level::Ok,
        &format!("{open} file(s) in progress, {done} done"),
        &perf,
    )
}

/// One line: `DPV-BATCH LEVEL - text | perfdata`. The text is kept on one
/// line and free of `|` (which starts Nagios' performance data).
fn verdict(level: Level, text: &str, perf: &str) -> (Level, String) {
    let text: String = names::text(text)
        .chars()
        .map(|c| if c == '|' { '/' } else { c })
        .collect();
    let mut line = format!("DPV-BATCH {} - {text}", level.word());
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(perf);
    }
    (level, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(states: &[(FileState, i64, i64)]) -> Facts {
        Facts {
            quiet: states.iter().map(|s| s.2).min().unwrap_or(0),
            states: states
                .iter()
                .map(|&(state, files, idle_seconds)| StateCount {
                    state,
                    files,
                    oldest_seconds: idle_seconds,
                    idle_seconds,
                })
                .collect(),
            transport: None,
            permanent: None,
            down_for: None,
            receipts_overdue: Vec::new(),
            letters_overdue: 0,
            inbox_ready: 0,
            inbox_oldest: 0,
        }
    }

    #[test]
    fn work_waiting_with_no_change_for_long_is_critical() {
        let poll = Duration::from_millis(500);
        let long = STALLED_AFTER.as_secs() as i64;
        // Staged files and nothing changed for 15 minutes: the daemon is not running.
        let (level, line) = judge(
            &facts(&[(FileState::Staged, 2, long), (FileState::Done, 5, long + 9)]),
            poll,
        );
        assert_eq!(level, Level::Critical, "{line}");
        assert_eq!(
            line,
            "DPV-BATCH CRITICAL - 2 file(s) wait to be validated but nothing changed for 15m (is dpv-batch running?) | files_open=2 overdue=0 letters_overdue=0"
        );
        // Something changed a minute ago: it is working through them.
        let (level, _) = judge(
            &facts(&[(FileState::Staged, 2, long), (FileState::Done, 5, 60)]),
            poll,
        );
        assert_eq!(level, Level::Ok);
        // Files waiting for Altinn (Submitted) for long are not a stall.
        let (level, _) = judge(&facts(&[(FileState::Submitted, 2, long * 10)]), poll);
        assert_eq!(level, Level::Ok);
    }

    #[test]
    fn the_summary_stays_one_line_without_a_bar() {
        let mut f = facts(&[(FileState::Packaged, 1, 1)]);
        f.permanent = Some(("a\nb | c".into(), "2026-11-29T00:00:00Z".into()));
        let (level, line) = judge(&f, Duration::from_millis(500));
        assert_eq!(level, Level::Critical);
        assert_eq!(
            line,
            "DPV-BATCH CRITICAL - transport stopped since 2026-11-29T00:00:00Z, an operator must act: a\\nb / c | files_open=1 overdue=0 letters_overdue=0"
        );
    }

    #[test]
    fn a_transport_down_for_long_is_critical_and_a_short_outage_a_warning() {
        let poll = Duration::from_millis(500);
        let mut f = facts(&[(FileState::Packaged, 1, 5)]);
        f.transport = Some((
            "cannot connect: refused".into(),
            "2026-11-29T00:00:00Z".into(),
        ));
        f.down_for = Some(60);
        let (level, line) = judge(&f, poll);
        assert_eq!(level, Level::Warning, "{line}");
        f.down_for = Some(DOWN_AFTER.as_secs() as i64);
        let (level, line) = judge(&f, poll);
        assert_eq!(level, Level::Critical);
        assert_eq!(
            line,
            "DPV-BATCH CRITICAL - transport down for 10m: cannot connect: refused | files_open=1 overdue=0 letters_overdue=0"
        );
    }

    #[test]
    fn journal_times_are_read_as_seconds_ago() {
        let then = time::OffsetDateTime::now_utc() - time::Duration::seconds(90);
        let at = then
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        assert!((89..=91).contains(&seconds_since(&at)), "{at}");
        assert_eq!(seconds_since("not a time"), 0);
    }
}
