//! Operator commands: what an operator does instead of moving files by hand.
//!
//! - [`replay`]: send a failed or archived file again, journalled like any
//!   other input (`dpv-batch replay`);
//! - [`purge`]: retention for archive/, failed/, the outbox and the journal
//!   (`dpv-batch purge`).
//!
//! Both run beside a running daemon: they speak to it only through the
//! journal (SQLite serialises writers) and through folders it reads in its
//! own time, never by signals or by touching the inbox.

pub mod purge;
pub mod replay;

use std::path::PathBuf;

use crate::config::Config;
use crate::journal::{self, FileRow, Journal, Outcome};
use crate::pipeline::JOURNAL_FILE;

/// Open the journal for writing, without ever creating one: an operator
/// command on a state folder that has none is a mistake (a wrong config).
fn open_journal(cfg: &Config) -> Result<Box<Journal>, String> {
    let path = cfg.paths.state.join(JOURNAL_FILE);
    if !path.exists() {
        return Err(format!(
            "no journal at {} (is --config the daemon's config?)",
            path.display()
        ));
    }
    journal::open(&path).map_err(|e| e.to_string())
}

/// Where a Done file's input went: archive/ when Altinn has its letters,
/// failed/ otherwise (the rule `Pipeline::finish_one` follows).
pub fn moved_path(cfg: &Config, f: &FileRow) -> Option<PathBuf> {
    let moved = f.moved_to.as_deref()?;
    let dir = if matches!(
        f.outcome,
        Some(Outcome::Accepted | Outcome::PartiallyAccepted)
    ) {
        &cfg.paths.archive
    } else {
        &cfg.paths.failed
    };
    Some(dir.join(moved))
}

/// A stop point for crash tests: with `DPV_BATCH_TEST_STOP_AT=NAME`, the
/// command says `stop point: NAME` on standard error and waits there for
/// ever, so a test can `kill -9` it at exactly that moment.
pub(crate) fn stop_point(name: &str) {
    if std::env::var("DPV_BATCH_TEST_STOP_AT").is_ok_and(|v| v == name) {
        eprintln!("stop point: {name}");
        loop {
            std::thread::park();
        }
    }
}
