//! `dpv-batch replay --config FILE NAME|ID [--force]`: send a failed or
//! archived input again.
//!
//! A replay is an input like any other: it goes through intake (validate,
//! package, submit) as a new journal row with its own receipt, linked to
//! the file it replays (the `replays` table: which file, forced or not).
//! Without `--force` the duplicate check applies as if the file had been
//! dropped again: content Altinn already has is refused as a duplicate
//! (with a Rejected receipt that says so). `--force` goes past that check,
//! and the journal records that the replay was forced.
//!
//! How the daemon learns of it, safely while it runs: the command never
//! touches the inbox (the fagsystem's folder, where a name may be in use);
//! it hands the file over through the journal and a folder of its own,
//! `state/replay/`, in three durable steps:
//!
//! 1. journal a request, `preparing` (the pipeline ignores those);
//! 2. copy the input to `state/replay/.NNNNNNNN.tmp`, fsync, rename to
//!    `state/replay/NNNNNNNN` (NNNNNNNN: the request id), fsync the folder;
//! 3. journal the request `ready`.
//!
//! The pipeline takes a `ready` request in like an inbox file: one
//! transaction adds the new file row (Received) and marks the request
//! `taken`, then the copy is renamed into staging (a restart finishes that
//! rename, knowing from the journal where the copy is).
//!
//! A `kill -9` at any moment: before step 3 the request is `preparing`
//! and never taken (nothing is sent); the next `replay` (it holds
//! `state/replay/.lock`, so no other one is under way) marks such a
//! request `abandoned` and removes its copy. After step 3 the request is
//! taken exactly once (the transaction above). The input in failed/ or
//! archive/ is copied, never moved: it stays the record of the first
//! attempt, and nothing is lost whatever step is interrupted.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::durable;
use crate::journal::{FileRow, FileState};
use crate::names;

use super::{moved_path, open_journal, stop_point};

/// The folder replay requests' copies wait in.
pub fn folder(state: &Path) -> PathBuf {
    state.join("replay")
}

/// Where request `id`'s copy waits for the pipeline.
pub fn placed_path(state: &Path, id: i64) -> PathBuf {
    folder(state).join(format!("{id:08}"))
}

/// What `replay` did, for the operator.
#[derive(Debug)]
pub struct Requested {
    pub request: i64,
    pub file: FileRow,
    pub forced: bool,
    /// Without `--force`: the earlier file whose content Altinn has, so the
    /// replay will be refused as a duplicate.
    pub duplicate_of: Option<FileRow>,
    /// Requests left `preparing` by a replay that was killed, now abandoned.
    pub abandoned: Vec<i64>,
}

/// Request that the file `target` (a journal id, or a name in failed/ or
/// archive/) is sent again. Errors are plain sentences for the operator.
pub fn request(cfg: &Config, target: &str, force: bool) -> Result<Requested, String> {
    let journal = open_journal(cfg)?;
    let state = &cfg.paths.state;
    let dir = folder(state);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // One replay at a time: a request still `preparing` is then known to be
    // left by a replay that was killed, never one under way.
    let lock_path = dir.join(".lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let mut abandoned = Vec::new();
    for r in journal.replays_in("preparing").map_err(|e| e.to_string())? {
        journal.abandon_replay(r.id).map_err(|e| e.to_string())?;
        let placed = placed_path(state, r.id);
        let _ = fs::remove_file(durable::temp_path(&placed));
        let _ = fs::remove_file(&placed);
        abandoned.push(r.id);
    }

    let file = find(cfg, journal.as_ref(), target)?;
    let source = moved_path(cfg, &file).ok_or_else(|| {
        format!(
            "file {} ({}) has no input in failed/ or archive/",
            file.id,
            names::text(&file.name)
        )
    })?;
    match fs::symlink_metadata(&source) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a regular file (it was refused as such); it cannot be sent",
                source.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "the input of file {} is not at {} ({e}); was it purged or moved?",
                file.id,
                source.display()
            ))
        }
    }
    let duplicate_of = match (&file.sha256, force) {
        (Some(sha), false) => journal
            .submitted_duplicate(sha, -1)
            .map_err(|e| e.to_string())?,
        _ => None,
    };

    // 1. Journal the request; the pipeline does not look at it yet.
    let request = journal
        .request_replay(file.id, force)
        .map_err(|e| e.to_string())?;
    stop_point("replay-journalled");
    // 2. Place the copy atomically under the request's id.
    let placed = placed_path(state, request);
    if let Err(e) = copy_durably(&source, &placed) {
        // Never to be made ready: abandoned at once, or `purge` and
        // `status` would take it for a replay under way until the next
        // `replay` runs.
        let _ = journal.abandon_replay(request);
        let _ = fs::remove_file(&placed);
        return Err(format!(
            "cannot copy {} to {}: {e}; nothing was requested",
            source.display(),
            placed.display()
        ));
    }
    stop_point("replay-placed");
    // 3. Ready: the pipeline takes it in at its next tick.
    journal.replay_ready(request).map_err(|e| e.to_string())?;
    tracing::info!(
        request,
        replay_of = file.id,
        file = %file.name,
        forced = force,
        "replay requested"
    );
    Ok(Requested {
        request,
        file,
        forced: force,
        duplicate_of,
        abandoned,
    })
}

/// The Done file `target` names: an id (digits only), or a name (as
/// shown) that is a file's input name, its name in failed/ or archive/, or
/// its receipt's name. Several files by that name: an error listing them.
fn find(cfg: &Config, journal: &crate::journal::Journal, target: &str) -> Result<FileRow, String> {
    // A file may be named like an id ("2", "20261129"): an id of no file
    // is looked up as a name; one that is both is refused, since replaying
    // (perhaps --force) the wrong one sends a file nobody asked for. A
    // leading zero ("02") always means the id.
    let as_id = (!target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()))
        .then(|| target.parse::<i64>().ok())
        .flatten();
    if let Some(id) = as_id {
        let by_id = journal.find_file(id).map_err(|e| e.to_string())?;
        let mut named = if target.starts_with('0') {
            Vec::new()
        } else {
            journal
                .done_files_named(target)
                .map_err(|e| e.to_string())?
        };
        named.retain(|n| n.id != id);
        match (by_id, named.first()) {
            (Some(_), Some(n)) => {
                return Err(format!(
                    "'{target}' is both file {id}'s id and the name of file {} ({}); give 0{target} for file {id}, or {} for the file named '{}'",
                    n.id,
                    names::text(&n.name),
                    n.id,
                    names::text(target)
                ))
            }
            (Some(f), None) => {
                if f.state != FileState::Done {
                    return Err(format!(
                        "file {id} ({}) is not finished yet ({}); only a failed or archived file can be replayed",
                        names::text(&f.name),
                        f.state.as_str()
                    ));
                }
                return Ok(f);
            }
            (None, _) if target.starts_with('0') || named.is_empty() => {
                return Err(format!("the journal has no file {id}"))
            }
            (None, _) => {} // a name: below
        }
    }
    let mut found = journal
        .done_files_named(target)
        .map_err(|e| e.to_string())?;
    // Only those whose input is still there count (others were purged).
    found.retain(|f| moved_path(cfg, f).is_some_and(|p| fs::symlink_metadata(p).is_ok()));
    match found.len() {
        0 => Err(format!(
            "no finished file named '{}' in {} or {} (give its id: dpv-batch status --file NAME)",
            names::text(target),
            cfg.paths.failed.display(),
            cfg.paths.archive.display()
        )),
        1 => Ok(found.remove(0)),
        _ => {
            let mut m = format!(
                "'{}' names {} files; give the id of the one to replay:",
                names::text(target),
                found.len()
            );
            for f in &found {
                m.push_str(&format!(
                    "\n  {:>6}  {}  {}  received {}  now {}",
                    f.id,
                    names::text(&f.name),
                    f.outcome.map_or("-", |o| o.as_str()),
                    f.received_at,
                    moved_path(cfg, f).map_or_else(String::new, |p| p.display().to_string())
                ));
            }
            Err(m)
        }
    }
}

/// Copy `from` to `to` atomically: a hidden temporary name, fsync, rename,
/// fsync the folder. Streaming (`io::copy`): memory does not grow with size.
fn copy_durably(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    durable::write_atomic_with(to, |f| io::copy(&mut src, f).map(|_| ()))
}

/// The operator's summary of a request.
pub fn text(r: &Requested) -> String {
    let mut out = String::new();
    for id in &r.abandoned {
        out.push_str(&format!(
            "replay request {id} was left unfinished by a replay that was stopped; abandoned (nothing of it was sent)\n"
        ));
    }
    out.push_str(&format!(
        "replay {} of file {} ({}){}: handed to the pipeline; it is taken in as a new file at the daemon's next tick (or the next `run`)\n",
        r.request,
        r.file.id,
        names::text(&r.file.name),
        if r.forced { ", forced past the duplicate check" } else { "" }
    ));
    if let Some(d) = &r.duplicate_of {
        out.push_str(&format!(
            "note: Altinn already has this content (file {}, '{}', received {}); without --force the replay will be refused as a duplicate, with a Rejected receipt\n",
            d.id,
            names::text(&d.name),
            d.received_at
        ));
    }
    out
}
