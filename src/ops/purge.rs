//! `dpv-batch purge --config FILE --older-than 90d [--dry-run]`: retention.
//!
//! What goes, for each file finished (Done) longer ago than the cutoff (the
//! time the journal finished it):
//! - its input in `archive/` or `failed/`, and `failed/NAME.errors.txt`;
//! - its receipt and event files still in the outbox, each only if it has
//!   lain there longer than the cutoff too (its mtime). The fagsystem is
//!   expected to take what it reads away; what is still there after the
//!   cutoff it has had the whole time, so that counts as taken. A file not
//!   finished has no published receipt, so no receipt of an unfinished file
//!   is ever removed; an event file written recently (a late read) stays,
//!   and so then do the file's journal rows;
//! - then, once none of those files is left, its journal rows (parts,
//!   letters, news). The duplicate check would forget content Altinn has:
//!   so the content hash of a sent file is kept (`purged_hashes`), and the
//!   same content dropped again is still refused as a duplicate.
//!
//! Kept whatever its age: a file whose news is still expected (an Altinn 3
//! letter still polled, an event file not yet written), or with a replay
//! under way. Only what the journal knows is touched: a file in these
//! folders that the journal never wrote is left alone.
//!
//! A late read confirmation of a letter whose rows are gone is not ours as
//! far as the journal knows: it is left in place like another
//! installation's (see README, "confirmations"). A cutoff well past the
//! time readers take (90 days) makes that rare.
//!
//! Every removal is logged and printed; `--dry-run` prints exactly the same
//! list and changes nothing.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tracing::info;

use crate::config::Config;
use crate::journal::{FileRow, FileState, Journal, Outcome};
use crate::names;
use crate::outbox;

use super::{moved_path, open_journal};

/// One file's share of a purge.
#[derive(Debug)]
pub struct Item {
    pub file: FileRow,
    /// Files on disk that go.
    pub remove: Vec<PathBuf>,
    /// Files on disk that stay (too recent), so the rows stay too.
    pub keep: Vec<PathBuf>,
    /// Why the file is kept whole, if it is.
    pub kept_because: Option<String>,
}

impl Item {
    /// The journal rows go too.
    pub fn rows_go(&self) -> bool {
        self.kept_because.is_none() && self.keep.is_empty()
    }

    /// The content hash stays for the duplicate check.
    pub fn hash_kept(&self) -> bool {
        self.file.sha256.is_some()
            && matches!(
                self.file.outcome,
                Some(Outcome::Accepted | Outcome::PartiallyAccepted)
            )
    }
}

/// What a purge found (and with `apply`, did).
#[derive(Debug, Default)]
pub struct Report {
    pub items: Vec<Item>,
    pub dry_run: bool,
    /// Removals that failed (path, error); the rows of their files stay.
    pub failed: Vec<(PathBuf, String)>,
}

/// Plan (and unless `dry_run`, do) the purge of everything finished more
/// than `older_than` ago.
pub fn run(cfg: &Config, older_than: Duration, dry_run: bool) -> Result<Report, String> {
    let journal = open_journal(cfg)?;
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    for f in journal.done_before(older_than).map_err(|e| e.to_string())? {
        report
            .items
            .push(plan_one(cfg, journal.as_ref(), f, cutoff)?);
    }
    if dry_run {
        return Ok(report);
    }
    for item in &mut report.items {
        if item.kept_because.is_some() {
            continue;
        }
        let mut all_gone = item.keep.is_empty();
        for path in &item.remove {
            match fs::remove_file(path) {
                Ok(()) => {
                    info!(file = %item.file.name, id = item.file.id, removed = %path.display(), "purged")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    all_gone = false;
                    report.failed.push((path.clone(), e.to_string()));
                }
            }
        }
        if all_gone {
            if journal
                .purge_file(item.file.id)
                .map_err(|e| e.to_string())?
            {
                info!(file = %item.file.name, id = item.file.id, hash_kept = item.hash_kept(), "purged from the journal");
            } else {
                item.kept_because = Some("news, or a replay of it, came in meanwhile".into());
            }
        }
    }
    Ok(report)
}

fn plan_one(
    cfg: &Config,
    journal: &Journal,
    f: FileRow,
    cutoff: SystemTime,
) -> Result<Item, String> {
    let mut item = Item {
        file: f,
        remove: Vec::new(),
        keep: Vec::new(),
        kept_because: None,
    };
    let f = &item.file;
    let err = |e: crate::journal::JournalError| e.to_string();
    if journal.news_pending(f.id).map_err(err)? {
        item.kept_because = Some("news about its letters is still expected".into());
        return Ok(item);
    }
    for r in journal.replays_of(f.id).map_err(err)? {
        let under_way = match (r.state.as_str(), r.file_id) {
            ("preparing" | "ready", _) => true,
            ("taken", Some(id)) => journal
                .find_file(id)
                .map_err(err)?
                .is_some_and(|n| n.state != FileState::Done),
            _ => false,
        };
        if under_way {
            item.kept_because = Some(format!("replay {} of it is under way", r.id));
            return Ok(item);
        }
    }
    // The input and its errors.txt: by the journal's time alone (their
    // mtime is when the fagsystem wrote the input).
    if let Some(moved) = moved_path(cfg, f) {
        let mut paths = vec![moved.clone()];
        // Only an input in failed/ has an errors file (`finish_one` writes
        // none beside an archived one), and a name that another input was
        // moved to is that input's, whatever it looks like.
        let errors_name = outbox::errors_name(f.moved_to.as_deref().unwrap_or(""));
        let sent = matches!(
            f.outcome,
            Some(Outcome::Accepted | Outcome::PartiallyAccepted)
        );
        if !sent && !journal.name_reserved(&errors_name).map_err(err)? {
            paths.push(moved.with_file_name(errors_name));
        }
        for path in paths {
            if fs::symlink_metadata(&path).is_ok() {
                item.remove.push(path);
            }
        }
    }
    // Outbox files: also lain there longer than the cutoff.
    // Its receipt's name, unless a newer file has it now: a name is reused
    // once its earlier receipt is gone (the fagsystem took it), and what
    // lies there then is the newer file's receipt.
    let mut outbox_files = Vec::new();
    if let Some(receipt) = &f.receipt_name {
        let reused = journal.name_reserved(receipt).map_err(err)?
            || journal
                .done_files_named(receipt)
                .map_err(err)?
                .iter()
                .any(|n| n.id > f.id && n.receipt_name.as_ref() == Some(receipt));
        if !reused {
            outbox_files.push(receipt.clone());
        }
    }
    outbox_files.extend(journal.published_events_of(f.id).map_err(err)?);
    for name in outbox_files {
        let path = cfg.paths.outbox.join(&name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.modified().is_ok_and(|t| t < cutoff) => item.remove.push(path),
            Ok(_) => item.keep.push(path),
            Err(_) => {} // taken by the fagsystem
        }
    }
    Ok(item)
}

/// The operator's list: every removal (or, dry, every one that would be).
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let (mut files, mut rows) = (0, 0);
    for item in &r.items {
        let f = &item.file;
        let name = names::text(&f.name);
        if let Some(why) = &item.kept_because {
            out.push_str(&format!("kept file {} ({name}): {why}\n", f.id));
            continue;
        }
        for path in &item.remove {
            if !r.failed.iter().any(|(p, _)| p == path) {
                out.push_str(&format!("{verb} {}\n", path.display()));
                files += 1;
            }
        }
        for path in &item.keep {
            out.push_str(&format!(
                "kept {} (in the outbox for less than the cutoff)\n",
                path.display()
            ));
        }
        let failed = r
            .failed
            .iter()
            .any(|(p, _)| item.remove.iter().any(|q| q == p));
        if item.rows_go() && !failed {
            rows += 1;
            let hash = if item.hash_kept() {
                "; its content hash is kept, so the same content is still refused as a duplicate"
            } else {
                ""
            };
            out.push_str(&format!(
                "{verb} journal rows of file {} ({name}, {}, finished {}){hash}\n",
                f.id,
                f.outcome.map_or("-", |o| o.as_str()),
                f.updated_at
            ));
        }
    }
    for (path, e) in &r.failed {
        out.push_str(&format!("cannot remove {}: {e}\n", path.display()));
    }
    out.push_str(&format!(
        "{}: {files} file(s), journal rows of {rows} finished file(s)\n",
        if r.dry_run {
            "dry run, nothing changed; would purge"
        } else {
            "purged"
        }
    ));
    out
}
