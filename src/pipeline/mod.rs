//! The pipeline: `intake → validate → package → submit → receipts → outbox`,
//! driven by the journal.
//!
//! [`Pipeline::tick`] does one pass: each stage looks in the journal for the
//! files (or parts) in the state it handles, moves each one step on, and
//! journals the new state. There is no other memory: a restart after a
//! crash (or `kill -9`) simply runs the next tick, and every file resumes
//! where the journal says it is. The rule that makes this safe is *journal
//! before effect*: a state is written (and fsynced) before the side effect
//! that depends on it, and each side effect can be repeated or checked:
//! - taking a file in: journalled as Received, then renamed into staging; a
//!   restart finds it in one of the two places;
//! - packaging: part files are written and fsynced, then the parts and their
//!   SequenceNos are committed in one transaction; a crash before the commit
//!   just repackages with the same numbers;
//! - uploading: the part is journalled as Uploading first; after a crash the
//!   transport is asked whether it arrived (`delivered`) before any new
//!   upload, so a batch is never sent twice nor skipped;
//! - receipts and confirmations are journalled, then removed remotely;
//! - outbox names and the input's destination are reserved in the journal
//!   before anything is written or moved, and existing files are never
//!   rewritten.

pub mod intake;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{debug, error, info, warn};

use crate::altinn;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::durable;
use crate::installation::{self, ApplyError};
use crate::journal::{
    self, Answer, EventRow, FileRow, FileState, Journal, JournalError, NewPart, Outcome, PartRow,
    PartState,
};
use crate::names;
use crate::ops::replay;
use crate::outbox;
use crate::package::{self, PackError, PackOptions};
use crate::transport::{
    self, Disposition, News, Outgoing, PrepareContext, Submitted, Transport, TransportError,
};
use crate::validate::{self, Finding, Validator};

use intake::Intake;

/// A failure that stops the pipeline: the journal or a local folder is not
/// usable. Everything else (bad input, transport trouble) is recorded on the
/// file concerned and retried or reported, never fatal.
#[derive(Debug)]
pub enum PipelineError {
    Journal(JournalError),
    Io(String, io::Error),
    Locked(PathBuf),
    Transport(TransportError),
    /// Starting would forget or confuse earlier work (a lost journal, a
    /// journal of another installation): the text says what to do.
    Refused(String),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::Journal(e) => write!(f, "{e}"),
            PipelineError::Io(what, e) => write!(f, "{what}: {e}"),
            PipelineError::Locked(p) => write!(
                f,
                "another dpv-batch is already running on {} (the state folder is locked)",
                p.display()
            ),
            PipelineError::Transport(e) => write!(f, "transport: {e}"),
            PipelineError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PipelineError {}

impl From<JournalError> for PipelineError {
    fn from(e: JournalError) -> Self {
        PipelineError::Journal(e)
    }
}

type Result<T> = std::result::Result<T, PipelineError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PipelineError {
    let what = what.into();
    move |e| PipelineError::Io(what, e)
}

/// The span around one file's work: every line logged inside it carries the
/// file's id (`file{id=42 file=a.xml}: ...`, or `"span":{"id":42,...}` in
/// JSON), so one grep finds a file's whole story.
fn file_span(id: i64, name: &str) -> tracing::Span {
    tracing::info_span!("file", id, file = %name)
}

/// The journal's file name inside the state folder.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// Writing to the fagsystem's folders (receipts and read events to the
/// outbox, inputs to archive/ or failed/) can fail for a while: a full disk,
/// a read-only mount, a permission taken away. Nothing is lost then (the
/// outcome and the reads are journalled, and every write can be repeated),
/// so it is never a reason to stop: every such write is tried again, with
/// backoff while nothing gets through, and the trouble is logged once when
/// it starts and once when it is over, not on every try.
struct Delivery {
    backoff: Backoff,
    /// The folders failed on the last try.
    failing: bool,
}

impl Delivery {
    /// Longest wait between two tries: an operator who fixes the outbox
    /// sees the receipts within this.
    const MAX_WAIT: Duration = Duration::from_secs(30);

    /// After a pass that wrote `written` files and failed on `failures`.
    fn after(&mut self, written: usize, failures: &[String]) {
        let Some(first) = failures.first() else {
            if self.failing {
                info!(
                    written,
                    "the outbox, archive and failed folders can be written again"
                );
            }
            self.failing = false;
            self.backoff.succeeded();
            return;
        };
        if !self.failing {
            warn!(
                error = %first,
                waiting = failures.len(),
                "cannot write to the fagsystem's folders; receipts and read events wait (journalled) and are tried again until it works"
            );
            self.failing = true;
        }
        if written == 0 {
            self.backoff.failed_upto(Self::MAX_WAIT);
        } else {
            // Others got through: the folders work, these files have a
            // problem of their own; try them again next tick.
            self.backoff.succeeded();
        }
    }
}

/// What one tick did, for logs and `--once`.
#[derive(Debug, Default, Clone)]
pub struct Tick {
    pub taken: usize,
    pub finished: usize,
    /// Files not done yet.
    pub open: i64,
    /// More work is ready right now: run the next tick without waiting.
    pub busy: bool,
    /// The transport failed in a way retrying cannot fix (authentication,
    /// host key, permissions): an operator must act.
    pub permanent_error: Option<String>,
    /// The transport's last operation failed (this tick or before, while
    /// backing off): the error. For `/health` and the metrics.
    pub transport_error: Option<String>,
    /// ... and it failed in a way retrying cannot fix.
    pub transport_stopped: bool,
}

/// At most this many files are taken in, and validated and packaged, per
/// tick. A nightly drop of thousands then flows through the stages in
/// small groups: the first letters reach Altinn (and the first receipts the
/// fagsystem) within seconds, not after everything has been validated.
const PER_TICK: usize = 16;

/// Validation and packaging stop for the tick once the files done in it
/// reach this many bytes: validation is linear (about 130 MB/s for dense
/// letters), so receipts and uploads for other files wait a fraction of a
/// second plus one file, not sixteen large ones.
const PER_TICK_BYTES: i64 = 16 << 20;

/// Submitting stops for the tick once it has taken this long: thousands of
/// letters must not keep the receipts of the files already sent, and the
/// validation of the next ones, waiting until the last letter has gone.
const SUBMIT_PER_TICK: Duration = Duration::from_millis(500);

/// At most this many sent letters have their status looked at per tick.
const POLL_BATCH: usize = 512;

pub struct Pipeline {
    cfg: Config,
    journal: Box<Journal>,
    transport: Box<dyn Transport>,
    intake: Intake,
    staging: PathBuf,
    parts: PathBuf,
    backoff: Backoff,
    /// The last transport error, for the metrics.
    transport_error: Option<String>,
    /// The last transport error was permanent (an operator must act).
    transport_permanent: Option<String>,
    /// The permanent-error note last written (`None`: not yet this run).
    last_permanent: Option<Option<String>>,
    /// Files whose overdue receipts were logged (once per file and start).
    warned_overdue: std::collections::HashSet<i64>,
    /// The metrics last written, so an idle daemon does not rewrite (and
    /// fsync) the same file on every tick.
    last_metrics: String,
    /// The transport note last written (`None`: not yet this run).
    last_note: Option<Option<String>>,
    /// News came in this tick (a numbered part may go next), or more
    /// letters are due for a look.
    news_seen: bool,
    /// Submitting stopped for the tick with more to send.
    submit_more: bool,
    /// Some parts wait for another try while others got through: the least
    /// wait before the next (Altinn's Retry-After).
    retry_wait: Option<Duration>,
    /// Writing receipts, read events and inputs to the fagsystem's folders.
    delivery: Delivery,
    /// When the remote side may be looked at again (receipts, confirmations,
    /// letters' statuses): at most once per `poll_ms`, however often ticks
    /// run (busy ticks, inbox events), so a real server never sees us list
    /// more often than configured.
    remote_due: Instant,
    /// This installation's id (see `installation`).
    installation_id: String,
    /// Since when the transport is down (see `tick`): an outage is logged
    /// once when it starts and once when it ends, not on every try.
    /// (With: it was said to need an operator.)
    outage: Option<(Instant, bool)>,
    /// This tick's submit handed something to the transport (so a tick
    /// without an error really reached it).
    submitted: bool,
    _lock: File,
}

impl Pipeline {
    /// Open the pipeline: folders, the state lock, the journal (or a refusal
    /// when it was lost; see `open_journal`), the transport.
    pub fn open(cfg: Config) -> Result<Pipeline> {
        let p = &cfg.paths;
        for dir in [&p.inbox, &p.outbox, &p.failed, &p.archive, &p.state] {
            fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        }
        let staging = p.state.join("staging");
        let parts = p.state.join("parts");
        for dir in [&staging, &parts] {
            fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        }
        let lock_path = p.state.join("dpv-batch.lock");
        let lock = File::create(&lock_path)
            .map_err(io_err(format!("cannot create {}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(PipelineError::Locked(p.state.clone()));
        }
        let (journal, installation_id) = open_journal(&p.state)?;
        set_aside_unknown_staged(journal.as_ref(), &staging, &p.state.join(ORPHANED_DIR))?;
        let transport =
            transport::open(&cfg, &installation_id).map_err(PipelineError::Transport)?;
        remove_leftovers(&parts);
        let intake = Intake::new(cfg.intake.clone());
        // An outage the last run left open goes on until the transport is
        // reached (and then ends, clearing its note), so a restart neither
        // forgets it nor leaves a stale "down" for `status --check`.
        let outage = journal
            .note(journal::notes::TRANSPORT_DOWN)?
            .map(|(_, since)| {
                warn!(since = %since, "the transport was down when the last run stopped; trying it again");
                (Instant::now(), false)
            });
        Ok(Pipeline {
            cfg,
            journal,
            transport,
            intake,
            staging,
            parts,
            backoff: Backoff::default(),
            transport_error: None,
            transport_permanent: None,
            last_permanent: None,
            warned_overdue: std::collections::HashSet::new(),
            news_seen: false,
            submit_more: false,
            retry_wait: None,
            last_note: None,
            remote_due: Instant::now(),
            delivery: Delivery {
                backoff: Backoff::default(),
                failing: false,
            },
            last_metrics: String::new(),
            installation_id,
            outage,
            submitted: false,
            _lock: lock,
        })
    }

    pub fn journal(&self) -> &Journal {
        self.journal.as_ref()
    }

    /// This installation's id (see `installation`), for the start-up line.
    pub fn installation_id(&self) -> &str {
        &self.installation_id
    }

    /// When the next tick may list the remote folders (receipts,
    /// confirmations) again; a tick before then only does local work and
    /// uploads.
    pub fn remote_due(&self) -> Instant {
        self.remote_due
    }

    /// Names (as shown) in the inbox that will be taken once ready.
    pub fn inbox_candidates(&self) -> io::Result<Vec<String>> {
        Ok(self
            .intake
            .candidates(&self.cfg.paths.inbox)?
            .into_iter()
            .map(|c| c.name)
            .collect())
    }

    /// One pass over every stage.
    pub fn tick(&mut self) -> Result<Tick> {
        let mut tick = Tick::default();
        self.resume_received()?;
        tick.taken = self.take_replays()?;
        tick.taken += self.take_in()?;
        let staged_left = self.process_staged()?;
        if self.backoff.ready() {
            let look = Instant::now() >= self.remote_due;
            if look {
                self.remote_due = Instant::now() + self.cfg.run.poll();
            }
            // Each runs whatever the others did: one stuck upload must not
            // keep receipts for other files from being collected.
            self.submitted = false;
            let results = [self.submit(), if look { self.collect() } else { Ok(()) }];
            let mut failed = false;
            for result in results {
                match result {
                    Ok(()) => {}
                    Err(StageError::Journal(e)) => return Err(PipelineError::Journal(e)),
                    Err(StageError::Transport(t)) => {
                        if t.kind == transport::ErrorKind::Permanent {
                            tick.permanent_error = Some(t.message.clone());
                        }
                        self.transport_permanent = tick.permanent_error.clone();
                        debug!(error = %t, "transport trouble");
                        self.transport_error = Some(t.message);
                        failed = true;
                    }
                }
            }
            if failed {
                let wait = self.backoff.failed();
                let retry_in_ms = wait.as_millis() as u64;
                let error = self.transport_error.as_deref().unwrap_or_default();
                // An error only an operator can fix (authentication, host
                // key, permissions) is an ERROR; it is said again if an
                // outage that began as a transient one turns into it.
                let permanent = tick.permanent_error.is_some();
                match self.outage {
                    None => {
                        self.outage = Some((Instant::now(), permanent));
                        // Its time says since when (`status --check`).
                        self.journal
                            .set_note(journal::notes::TRANSPORT_DOWN, Some("down"))?;
                        if permanent {
                            error!(error, retry_in_ms, "transport down, and it needs an operator; files wait (journalled) and it is tried again with backoff");
                        } else {
                            warn!(error, retry_in_ms, "transport down; files wait (journalled) and it is tried again with backoff");
                        }
                    }
                    Some((since, false)) if permanent => {
                        self.outage = Some((since, true));
                        error!(
                            error,
                            retry_in_ms, "transport still down, and now it needs an operator"
                        );
                    }
                    Some(_) => debug!(error, retry_in_ms, "transport still down"),
                }
            } else if look || self.submitted {
                // Over once the transport was really reached: a listing, or
                // something handed over. A tick with nothing to do proves
                // nothing, so it neither ends an outage nor resets the
                // backoff and the note (with a long poll_ms, ticks between
                // two listings would clear them, and `status` would show a
                // transport that is down as fine).
                if let Some((since, _)) = self.outage.take() {
                    self.journal
                        .set_note(journal::notes::TRANSPORT_DOWN, None)?;
                    let down = since.elapsed();
                    info!(
                        down_for = %humantime::format_duration(Duration::from_millis(down.as_millis() as u64)),
                        down_ms = down.as_millis() as u64,
                        "transport back"
                    );
                }
                self.backoff.succeeded();
                self.transport_error = None;
                self.transport_permanent = None;
            }
            // Parts that wait while others got through: at least as long as
            // Altinn asked (the transport does not back off further).
            if let Some(wait) = self.retry_wait.take() {
                self.backoff.at_least(Some(wait));
            }
            self.note_transport()?;
        }
        self.settle_submitted()?;
        if self.delivery.backoff.ready() {
            let mut failures = Vec::new();
            tick.finished = self.finish(&mut failures)?;
            let events = self.write_events(&mut failures)?;
            self.delivery.after(tick.finished + events, &failures);
        }
        self.write_metrics();
        self.watch_overdue()?;
        tick.transport_error = self.transport_error.clone();
        tick.transport_stopped = self.transport_permanent.is_some();
        tick.open = self.journal.open_files()?;
        tick.busy = tick.taken == PER_TICK
            || staged_left
            || std::mem::take(&mut self.news_seen)
            || std::mem::take(&mut self.submit_more);
        Ok(tick)
    }

    /// Where a taken file waits: `NNNNNNNN-NAME` (the id keeps it unique),
    /// NAME shortened like an outbox name where that would not fit.
    fn staged_path(&self, f: &FileRow) -> PathBuf {
        staged_path(&self.staging, f)
    }

    fn parts_dir(&self, file_id: i64) -> PathBuf {
        self.parts.join(format!("{file_id:08}"))
    }

    // ---- intake ------------------------------------------------------------

    /// Files journalled as Received but not yet staged (a crash in between).
    fn resume_received(&mut self) -> Result<()> {
        for f in self.journal.files_in(FileState::Received)? {
            let _span = file_span(f.id, &f.name).entered();
            let staged = self.staged_path(&f);
            // The journal keeps the name as shown; this is the entry's own.
            // A replay's copy waits in state/replay/ instead (no marker).
            let raw = names::raw(&f.name);
            let in_inbox = match self.journal.replay_of(f.id)? {
                Some(r) => replay::placed_path(&self.cfg.paths.state, r.id),
                None => {
                    self.remove_marker(&raw);
                    self.cfg.paths.inbox.join(&raw)
                }
            };
            if !present(&staged) {
                if present(&in_inbox) {
                    if let Err(e) = durable::rename(&in_inbox, &staged) {
                        warn!(file = %f.name, error = %e, "cannot take the file in; will try again");
                        continue;
                    }
                } else {
                    self.journal.set_outcome(
                        f.id,
                        Outcome::Failed,
                        "the file disappeared from the inbox before it could be taken in",
                        None,
                        0,
                    )?;
                    continue;
                }
            }
            self.mark_staged(&f, &staged)?;
        }
        Ok(())
    }

    /// In done-file mode, the marker goes before the data file moves: a
    /// marker left behind would let the next file of that name in early.
    fn remove_marker(&self, raw: &OsStr) {
        if let Some(marker) = self.intake.marker(raw) {
            let path = self.cfg.paths.inbox.join(marker);
            if present(&path) {
                let _ = fs::remove_file(&path);
                let _ = durable::sync_dir(&self.cfg.paths.inbox);
            }
        }
    }

    /// Replays `dpv-batch replay` made ready (see `ops::replay`): each is
    /// journalled as a new file linked to its request (one transaction),
    /// then its copy is renamed into staging, like an inbox file; a crash
    /// in between is finished by `resume_received`.
    fn take_replays(&mut self) -> Result<usize> {
        let mut taken = 0;
        for r in self.journal.replays_in("ready")? {
            let placed = replay::placed_path(&self.cfg.paths.state, r.id);
            let (Some(of), Ok(meta)) = (
                self.journal.find_file(r.of_file_id)?,
                fs::symlink_metadata(&placed),
            ) else {
                // A ready request always has its copy: someone removed it.
                warn!(request = r.id, copy = %placed.display(), "a replay request's copy is gone; abandoned");
                self.journal.abandon_replay(r.id)?;
                continue;
            };
            let id = self.journal.take_replay(r.id, &of.name, meta.len())?;
            crate::ops::stop_point("replay-taken");
            let f = self.journal.file(id)?;
            let staged = self.staged_path(&f);
            if let Err(e) = durable::rename(&placed, &staged) {
                warn!(file = %f.name, id, error = %e, "cannot take the replay in; will try again");
                continue;
            }
            self.mark_staged(&f, &staged)?;
            taken += 1;
            info!(file = %f.name, id, replay_of = of.id, request = r.id, forced = r.force, "replay taken in");
        }
        Ok(taken)
    }

    fn take_in(&mut self) -> Result<usize> {
        let inbox = self.cfg.paths.inbox.clone();
        let ready = self
            .intake
            .scan(&inbox)
            .map_err(io_err(format!("cannot read the inbox {}", inbox.display())))?;
        // Counts files really taken: `busy` follows from it, and a file that
        // cannot be moved must neither make the next tick come at once nor
        // hold back the ready files after it.
        let mut taken = 0;
        for r in &ready {
            if taken == PER_TICK {
                break;
            }
            // Journal first: a crash after this line finds the row and
            // finishes the move; a crash before it leaves the file untouched.
            // Whatever the entry is (a link, a folder, a FIFO), it is only
            // renamed here, never opened or followed.
            let id = self.journal.add_file(&r.name, r.size)?;
            let _span = file_span(id, &r.name).entered();
            let f = self.journal.file(id)?;
            let staged = self.staged_path(&f);
            self.remove_marker(&r.raw);
            if let Err(e) = durable::rename(&inbox.join(&r.raw), &staged) {
                if !present(&staged) {
                    // Gone (the fagsystem took it back) or not movable: it
                    // was never taken; forget the row and look again later
                    // (said once, not on every scan).
                    if self.intake.first_trouble(&r.raw) {
                        warn!(file = %r.name, error = %e, "cannot take the file in; will try again");
                    }
                    self.journal.forget_received(id)?;
                    continue;
                }
                // The rename happened but was not made durable: the row
                // stays Received and the next tick finishes it.
                warn!(file = %r.name, error = %e, "taken in, not yet durable; will finish next tick");
                continue;
            }
            self.intake.taken(&r.raw);
            self.mark_staged(&f, &staged)?;
            taken += 1;
            info!(file = %r.name, id, bytes = r.size, "taken in");
        }
        Ok(taken)
    }

    /// Mark a file staged once it is in staging, or refuse it: a name that
    /// is not shown as it is, or an entry that is not a regular file (looked
    /// at with lstat: a link is not followed, a FIFO not opened), is
    /// rejected with a receipt and moves on to `failed/` untouched. A file
    /// that cannot even be opened fails (with a receipt) instead of stopping
    /// the service. The content hash comes later, computed beside validation.
    fn mark_staged(&mut self, f: &FileRow, staged: &Path) -> Result<()> {
        let refused = match self.intake.refused_name(&f.name) {
            Some(why) => Some(why),
            None => fs::symlink_metadata(staged)
                .ok()
                .and_then(|m| intake::refused_kind(m.file_type())),
        };
        if let Some(why) = refused {
            info!(file = %f.name, id = f.id, reason = %why, "refused");
            self.journal
                .set_outcome(f.id, Outcome::Rejected, &why, None, 0)?;
            return Ok(());
        }
        match File::open(staged).and_then(|file| file.metadata()) {
            Ok(meta) => self.journal.set_staged(f.id, None, meta.len())?,
            Err(e) => {
                warn!(file = %f.name, id = f.id, error = %e, "cannot read the file; failed");
                self.journal.set_outcome(
                    f.id,
                    Outcome::Failed,
                    &format!("dpv-batch cannot read the file ({e}); check its permissions and drop it again"),
                    None,
                    0,
                )?;
            }
        }
        Ok(())
    }

    // ---- validate and package ----------------------------------------------

    /// Validate and package up to PER_TICK staged files; true if more wait
    /// and this pass got on (a full disk that fails every file must not
    /// make the next tick come at once).
    fn process_staged(&mut self) -> Result<bool> {
        let staged = self.journal.files_in(FileState::Staged)?;
        if staged.is_empty() {
            return Ok(false);
        }
        let mut options = validate::Options::default();
        options.rules.max_attachment_bytes = self.cfg.validate.max_attachment_bytes;
        options.package.max_entry_bytes = options
            .package
            .max_entry_bytes
            .max(options.rules.max_attachment_bytes);
        let validator = Validator::new(options).map_err(|e| {
            PipelineError::Io(
                format!("the embedded schema cannot be compiled: {e}"),
                io::Error::other("schema"),
            )
        })?;
        let mut more = staged.len() > PER_TICK;
        let mut progressed = false;
        let mut bytes = 0;
        for f in staged.iter().take(PER_TICK) {
            if bytes >= PER_TICK_BYTES {
                more = true;
                break;
            }
            bytes += f.size.max(0);
            let _span = file_span(f.id, &f.name).entered();
            // A bug must not become a crash loop on one input: a panic while
            // handling a file fails that file (with a receipt) and goes on.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.process_one(&validator, f)
            }));
            match result {
                Ok(Ok(())) => progressed = true,
                // Disk full while writing parts, say: the file stays staged
                // and is packaged again next tick.
                Ok(Err(PipelineError::Io(what, e))) => {
                    warn!(file = %f.name, id = f.id, error = %e, "{what}; will try again");
                    self.journal
                        .set_reason(f.id, &format!("{what}: {e}; will try again"))?;
                }
                Ok(Err(other)) => return Err(other),
                Err(_) => {
                    error!(file = %f.name, id = f.id, "internal error while processing; file failed");
                    self.journal.set_outcome(
                        f.id,
                        Outcome::Failed,
                        "internal error in dpv-batch while validating or packaging this file; it was not sent (please report it)",
                        None,
                        0,
                    )?;
                    progressed = true;
                }
            }
        }
        Ok(more && progressed)
    }

    fn process_one(&mut self, validator: &Validator, f: &FileRow) -> Result<()> {
        let staged = self.staged_path(f);
        let opts = PackOptions {
            max_part_bytes: self.cfg.package.max_part_bytes,
            max_part_letters: self.cfg.package.max_part_letters,
            numbered: self.cfg.sender.sequence_numbers,
            name_prefix: installation::name_prefix(
                &self.installation_id,
                self.journal.name_epoch(f.id)?,
                f.id,
            ),
        };
        // A batch that will likely go as it is is sent to its temporary
        // remote name while it is validated (invisible to Altinn until
        // committed below, after validation and journalling; removed if the
        // batch is refused). A large batch then costs max(validate, upload)
        // instead of their sum.
        let speculate = self.transport.stages()
            && self.backoff.ready()
            && package::passthrough_candidate(&staged, &opts).unwrap_or(false);
        let remote_name = package::part_name(&opts, 1);
        let (report, staged_remote, hashed) = {
            let transport = &mut self.transport;
            let (staged_ref, remote_ref) = (&staged, &remote_name);
            std::thread::scope(|scope| {
                let upload = speculate.then(|| {
                    scope.spawn(move || {
                        let sending = Instant::now();
                        let staged = transport.stage(staged_ref, remote_ref);
                        crate::metrics::upload_took(sending.elapsed());
                        staged
                    })
                });
                let hash = scope.spawn(move || hash_file(staged_ref));
                let report = validator.validate_path(staged_ref);
                let hashed = hash
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing panicked")));
                let Some(upload) = upload else {
                    return (report, false, hashed);
                };
                let uploaded = match upload.join() {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        warn!(file = %f.name, error = %e, "sending while validating failed; will send after");
                        false
                    }
                    Err(_) => false,
                };
                (report, uploaded, hashed)
            })
        };
        let sha = match hashed {
            Ok(sha) => sha,
            Err(e) => {
                if staged_remote {
                    let _ = self.transport.discard(&remote_name);
                }
                return Err(PipelineError::Io(format!("cannot read {}", f.name), e));
            }
        };
        self.journal.set_sha(f.id, &sha)?;
        // `dpv-batch replay --force` goes past the duplicate check.
        let replay = self.journal.replay_of(f.id)?;
        let duplicate = match &replay {
            Some(r) if r.force => None,
            _ => self.journal.submitted_duplicate(&sha, f.id)?,
        };
        if let Some(first) = duplicate {
            if staged_remote {
                let _ = self.transport.discard(&remote_name);
            }
            let mut reason = format!(
                "duplicate: the same content was already submitted as '{}' (received {}); not sent again",
                first.name, first.received_at
            );
            if replay.is_some() {
                reason.push_str(" (a replay: `dpv-batch replay --force` sends it anyway)");
            }
            info!(file = %f.name, id = f.id, first = first.id, "duplicate refused");
            self.journal
                .set_outcome(f.id, Outcome::Rejected, &reason, None, 0)?;
            return Ok(());
        }
        if !report.valid && staged_remote {
            let _ = self.transport.discard(&remote_name);
        }
        if !report.valid {
            let first = report.errors.first();
            let total = report.errors.len() as u64 + report.errors_not_listed;
            let reason = match first {
                Some(e) if e.line > 0 => format!(
                    "invalid: {total} error(s); the first, at line {} column {}: [{}] {}",
                    e.line, e.column, e.code, e.message
                ),
                Some(e) => format!(
                    "invalid: {total} error(s); the first: [{}] {}",
                    e.code, e.message
                ),
                None => "invalid".into(),
            };
            let json = serde_json::to_string(&report.errors).ok();
            info!(file = %f.name, id = f.id, errors = total, "rejected by validation");
            self.journal.set_outcome(
                f.id,
                Outcome::Rejected,
                &reason,
                json.as_deref(),
                report.letters as i64,
            )?;
            return Ok(());
        }
        let dir = self.parts_dir(f.id);
        let known = package::Known {
            system_user_code: report.system_user_code.as_deref().unwrap_or_default(),
            shipment_reference: report.shipment_reference.as_deref().unwrap_or_default(),
            sequence_no: report.sequence_no.as_deref(),
            letters: &report.letter_refs,
        };
        let packed =
            match package::passthrough(&staged, &dir, &opts, &known).and_then(|p| match p {
                Some(p) => Ok(p),
                None => package::package(&staged, &dir, &opts, report.package.as_ref()),
            }) {
                Ok(p) => p,
                Err(PackError::Input(m)) => {
                    self.journal.set_outcome(
                        f.id,
                        Outcome::Rejected,
                        &m,
                        None,
                        report.letters as i64,
                    )?;
                    return Ok(());
                }
                Err(PackError::Io(e)) => {
                    // Free what the attempt wrote (a full disk is the usual cause).
                    let _ = fs::remove_dir_all(&dir);
                    return Err(PipelineError::Io(format!("cannot package {}", f.name), e));
                }
            };
        // The transport cuts each part into what it submits (a file
        // transport: the part itself; Altinn 3: one folder per letter).
        let mut parts: Vec<NewPart> = Vec::new();
        for p in &packed.parts {
            let ctx = PrepareContext {
                file_id: f.id,
                installation_id: &self.installation_id,
                system_user_code: &packed.system_user_code,
                first_part_no: parts.len() as i64 + 1,
            };
            match self.transport.prepare(p, &dir, &ctx) {
                Ok(mut cut) => parts.append(&mut cut),
                Err(PackError::Input(m)) => {
                    self.journal.set_outcome(
                        f.id,
                        Outcome::Rejected,
                        &m,
                        None,
                        report.letters as i64,
                    )?;
                    return Ok(());
                }
                Err(PackError::Io(e)) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(PipelineError::Io(format!("cannot prepare {}", f.name), e));
                }
            }
        }
        self.journal
            .record_parts(f.id, &packed.system_user_code, &parts)?;
        info!(file = %f.name, id = f.id, parts = parts.len(), letters = report.letters, "packaged");
        if staged_remote {
            let passed_through = parts.len() == 1
                && parts[0].remote_name == remote_name
                && parts[0].sequence_slot.is_none()
                && parts[0].bytes as u64 == fs::metadata(&staged).map(|m| m.len()).unwrap_or(0);
            if passed_through {
                // Journal first (Uploading), then make it visible: after a
                // crash, `submit` settles it by looking at the remote side.
                let part = &self.journal.parts_of(f.id)?[0];
                self.journal.set_part_state(part.id, PartState::Uploading)?;
                match self.transport.commit(&remote_name, part.bytes as u64) {
                    Ok(()) => {
                        self.journal.set_part_state(part.id, PartState::Uploaded)?;
                        crate::metrics::sent(part.letters, part.bytes);
                        info!(file = %f.name, part = %remote_name, bytes = part.bytes, "uploaded");
                    }
                    Err(e) => warn!(file = %f.name, error = %e, "commit failed; will send again"),
                }
            } else {
                let _ = self.transport.discard(&remote_name);
            }
        }
        Ok(())
    }

    // ---- submit ------------------------------------------------------------

    /// Submit packaged parts, oldest file first, each file's parts in order,
    /// in batches of the transport's size (a file transport sends one part
    /// at a time; Altinn 3 keeps many letters in flight). A batch is
    /// journalled in flight in one transaction before it is sent, and what
    /// came of it in one transaction after.
    /// A numbered part (dpv-batch assigns SequenceNos) waits until no other
    /// numbered part of its SystemUserCode is waiting for Altinn's answer;
    /// files of other SystemUserCodes go on meanwhile.
    fn submit(&mut self) -> std::result::Result<(), StageError> {
        let started = Instant::now();
        loop {
            let batch = self.next_batch()?;
            if batch.is_empty() {
                return Ok(());
            }
            self.submitted = true;
            let sending = Instant::now();
            let results = self.transport.submit(&batch);
            crate::metrics::upload_took(sending.elapsed());
            let go_on = self.record_submitted(&batch, results)?;
            // A long run of batches (Altinn throttling us) must show in `status`.
            self.note_transport()?;
            if !go_on {
                // Some wait for another try (Retry-After): next tick.
                return Ok(());
            }
            if started.elapsed() >= SUBMIT_PER_TICK {
                // The other stages get their turn (receipts for what has
                // gone, the next files validated); the next tick comes at once.
                self.submit_more = true;
                return Ok(());
            }
        }
    }

    /// What the transport goes through (the last error, or its own word:
    /// throttled), for `status`; written when it changes.
    fn note_transport(&mut self) -> std::result::Result<(), JournalError> {
        let said = match (self.transport.condition(), &self.transport_error) {
            (Some(c), Some(e)) => Some(format!("{c}; the last error: {e}")),
            (c, e) => c.or(e.clone()),
        };
        if self.last_note.as_ref() != Some(&said) {
            self.journal
                .set_note(journal::notes::TRANSPORT, said.as_deref())?;
            self.last_note = Some(said);
        }
        // Whether an operator must act (`status --check`: CRITICAL).
        if self.last_permanent.as_ref() != Some(&self.transport_permanent) {
            self.journal.set_note(
                journal::notes::TRANSPORT_PERMANENT,
                self.transport_permanent.as_deref(),
            )?;
            self.last_permanent = Some(self.transport_permanent.clone());
        }
        Ok(())
    }

    /// Receipts overdue (`run.receipt_deadline`): counted for the metrics,
    /// with the files by state (one query each per tick, so a scrape only
    /// renders), and logged as a warning once per file and start.
    fn watch_overdue(&mut self) -> Result<()> {
        let overdue = self
            .journal
            .overdue_receipts(self.cfg.run.receipt_deadline)?;
        for o in &overdue {
            if self.warned_overdue.insert(o.file_id) {
                warn!(
                    file = %o.file,
                    id = o.file_id,
                    parts = o.parts,
                    part = %o.first_part,
                    handed_over = %o.handed_over,
                    "receipt overdue: no answer from Altinn within run.receipt_deadline of handing the part over"
                );
            }
        }
        if crate::metrics::enabled() {
            crate::metrics::overdue(overdue.iter().map(|o| o.parts).sum());
            crate::metrics::files(&self.journal.state_overview()?);
        }
        Ok(())
    }

    /// The next parts to send, journalled as in flight. Parts already in
    /// flight (a crash, a lost answer) are settled first; a file whose
    /// parts have all gone is marked Submitted on the way.
    fn next_batch(&mut self) -> std::result::Result<Vec<Outgoing>, StageError> {
        let limit = self.transport.batch_size().max(1);
        let first = self.cfg.sender.first_sequence_no;
        let mut waiting_codes: Vec<String> = Vec::new();
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut unsettled: Vec<Outgoing> = Vec::new();
        let mut newly: Vec<i64> = Vec::new();
        'files: for f in self.journal.files_in(FileState::Packaged)? {
            let dir = self.parts_dir(f.id);
            let mut pending = 0;
            for part in self.journal.parts_pending(f.id, limit)? {
                if matches!(part.state, PartState::Uploaded | PartState::Receipted) {
                    continue;
                }
                pending += 1;
                if batch.len() + unsettled.len() >= limit {
                    break 'files;
                }
                if waiting_codes.contains(&part.system_user_code) {
                    continue 'files;
                }
                let numbered = part.sequence_slot.is_some();
                let code = part.system_user_code.clone();
                let path = dir.join(&part.local);
                match part.state {
                    PartState::Uploaded | PartState::Receipted => {}
                    // Outcome unknown (a crash or a lost answer): settle
                    // it before sending again.
                    PartState::Uploading => {
                        let out = self.outgoing(&f, part, path)?;
                        unsettled.push(out);
                    }
                    PartState::Packaged => {
                        if let Some(slot) = part.sequence_slot {
                            if self.journal.numbered_in_flight(&part.system_user_code)? {
                                waiting_codes.push(part.system_user_code.clone());
                                continue 'files;
                            }
                            let n = self.journal.assign_sequence(
                                part.id,
                                &part.system_user_code,
                                first,
                            )?;
                            package::write_sequence_no(&path, slot as u64, n)
                                .map_err(|e| {
                                    PipelineError::Io(
                                        format!("cannot number {}", part.remote_name),
                                        e,
                                    )
                                })
                                .map_err(|e| self.note_local(&f, e))?;
                        } else {
                            newly.push(part.id);
                        }
                        let out = self.outgoing(&f, part, path)?;
                        batch.push(out);
                    }
                }
                if numbered {
                    // Its answer decides the next number: wait for it.
                    waiting_codes.push(code);
                    continue 'files;
                }
            }
            if pending == 0 {
                self.journal.set_submitted(f.id)?;
            }
        }
        self.journal.set_parts_state(&newly, PartState::Uploading)?;
        if !unsettled.is_empty() {
            let settled = self.transport.settle(&unsettled);
            let mut found = Vec::new();
            let mut results = Vec::new();
            for (out, s) in unsettled.into_iter().zip(settled) {
                match s {
                    Ok(Some(Submitted::Retry { reason, after })) => {
                        // Not known yet (the look-up failed): still in
                        // flight, looked up again next time.
                        info!(file = %out.file, part = %out.part.remote_name, reason = %reason, "outcome still unknown after restart");
                        found.push(out);
                        results.push(Ok(Submitted::Retry { reason, after }));
                    }
                    Ok(Some(s)) => {
                        info!(file = %out.file, part = %out.part.remote_name, "upload found delivered after restart");
                        found.push(out);
                        results.push(Ok(s));
                    }
                    Ok(None) => {
                        if let (Some(slot), Some(n)) =
                            (out.part.sequence_slot, out.part.sequence_no)
                        {
                            let file = self.journal.file(out.part.file_id)?;
                            package::write_sequence_no(&out.path, slot as u64, n)
                                .map_err(|e| {
                                    PipelineError::Io(
                                        format!("cannot number {}", out.part.remote_name),
                                        e,
                                    )
                                })
                                .map_err(|e| self.note_local(&file, e))?;
                        }
                        batch.push(out);
                    }
                    Err(e) => {
                        found.push(out);
                        results.push(Err(e));
                    }
                }
            }
            match self.record_submitted(&found, results) {
                // The parts the transport did not find go out now (same
                // key, nothing created twice); a failed look-up must not hold
                // them back, or with many in flight a small error rate stops
                // all sending for good. The unsettled wait for the next tick.
                Err(StageError::Transport(t))
                    if !batch.is_empty() && t.kind == transport::ErrorKind::Transient =>
                {
                    warn!(error = %t, "some parts in flight could not be looked up; the rest go on");
                }
                r => {
                    r?;
                }
            }
        }
        Ok(batch)
    }

    /// A journalled part as the transport gets it.
    fn outgoing(
        &self,
        f: &FileRow,
        part: PartRow,
        path: PathBuf,
    ) -> std::result::Result<Outgoing, StageError> {
        let letters = if part.letters == 1 {
            self.journal.letters_of_part(part.id)?
        } else {
            Vec::new()
        };
        Ok(Outgoing {
            file: f.name.clone(),
            part,
            path,
            letters,
        })
    }

    /// Journal what came of submitting (or settling) `batch`, in one
    /// transaction per kind: parts handed over, answers. Trouble is noted on
    /// the files concerned and makes the transport wait (at least as long as
    /// Altinn asked, with Retry-After); it backs off further only when
    /// nothing got through. `Ok(false)`: stop submitting for this tick.
    fn record_submitted(
        &mut self,
        batch: &[Outgoing],
        results: Vec<transport::Result<Submitted>>,
    ) -> std::result::Result<bool, StageError> {
        let mut sent = Vec::new();
        let mut answers = Vec::new();
        let mut trouble: Option<TransportError> = None;
        let mut wait: Option<Duration> = None;
        for (out, result) in batch.iter().zip(results) {
            let p = &out.part;
            let _span = file_span(p.file_id, &out.file).entered();
            match result {
                Ok(Submitted::Sent) => {
                    info!(file = %out.file, part = %p.remote_name, bytes = p.bytes, "uploaded");
                    crate::metrics::sent(p.letters, p.bytes);
                    sent.push(p.id);
                }
                Ok(Submitted::Answered(answer)) => {
                    crate::metrics::sent(p.letters, p.bytes);
                    let accepted = matches!(answer, Answer::Created { .. });
                    crate::metrics::answered(u64::from(accepted), u64::from(!accepted));
                    match &answer {
                        Answer::Created {
                            correspondence_id,
                            status,
                        } => {
                            info!(file = %out.file, letter = %p.remote_name, correspondence = %correspondence_id, status = %status, "created")
                        }
                        Answer::Refused(r) => {
                            warn!(file = %out.file, letter = %p.remote_name, reason = %r.text(), "refused by Altinn")
                        }
                    }
                    answers.push((p.id, answer));
                }
                Ok(Submitted::Retry { reason, after }) => {
                    let _ = self
                        .journal
                        .set_reason(p.file_id, &format!("waiting to send: {reason}"));
                    wait = wait.max(after);
                    trouble.get_or_insert(TransportError::transient(reason));
                }
                Err(e) => {
                    let _ = self
                        .journal
                        .set_reason(p.file_id, &format!("waiting to upload: {e}"));
                    match &trouble {
                        Some(t) if t.kind == transport::ErrorKind::Permanent => {}
                        _ => trouble = Some(e),
                    }
                }
            }
        }
        self.journal.set_parts_state(&sent, PartState::Uploaded)?;
        self.journal
            .record_answers(&answers, self.transport.first_poll())?;
        let progressed = !sent.is_empty() || !answers.is_empty();
        match trouble {
            // Some got through: Altinn works, these parts wait (at least as
            // long as it asked) without the transport backing off further.
            Some(t) if progressed && t.kind == transport::ErrorKind::Transient => {
                warn!(error = %t, "some parts wait for another try");
                self.retry_wait = self.retry_wait.max(wait).or(Some(Duration::ZERO));
                Ok(false)
            }
            Some(t) => {
                self.backoff.at_least(wait);
                Err(StageError::Transport(t))
            }
            None => Ok(true),
        }
    }

    /// A local problem while submitting (cannot write the number into a
    /// part): reported like a transport problem, retried later.
    fn note_local(&self, f: &FileRow, e: PipelineError) -> StageError {
        let message = e.to_string();
        let _ = self
            .journal
            .set_reason(f.id, &format!("waiting to upload: {message}"));
        StageError::Transport(TransportError::transient(message))
    }

    // ---- answers and later news --------------------------------------------

    /// Collect what Altinn sent back (receipts, read confirmations) or what
    /// its letters' statuses are now, journal it, then acknowledge it.
    fn collect(&mut self) -> std::result::Result<(), StageError> {
        let due = self.journal.letters_to_poll(POLL_BATCH)?;
        let news = self.transport.collect(&due)?;
        self.news_seen =
            due.len() == POLL_BATCH || news.iter().any(|n| !matches!(n, News::Statuses(_)));
        for n in news {
            let how = self.apply(&n)?;
            self.transport.acknowledge(&n, how)?;
        }
        Ok(())
    }

    fn apply(&mut self, news: &News) -> std::result::Result<Disposition, StageError> {
        match news {
            News::Receipt {
                remote_name,
                receipt: r,
                handle,
            } => {
                let Some(part) = self
                    .journal
                    .part_awaiting_receipt(remote_name.as_deref(), &r.shipment_reference)?
                else {
                    warn!(receipt = %handle.name, shipment = %r.shipment_reference, "receipt for no part waiting for one (a repeat?)");
                    return Ok(Disposition::Unmatched);
                };
                let _span = tracing::info_span!("file", id = part.file_id).entered();
                let letters: Vec<(String, String, String)> = r
                    .letters
                    .iter()
                    .map(|l| {
                        (
                            l.senders_reference.clone(),
                            l.status.as_str().to_string(),
                            l.text.clone(),
                        )
                    })
                    .collect();
                self.journal
                    .record_receipt(part.id, r.status.as_str(), &r.text, &letters)?;
                // A receipt without a letter list speaks for all the part's.
                let (ok, all) = if letters.is_empty() {
                    let all = part.letters.max(0) as u64;
                    (
                        if r.status.as_str() == journal::LETTER_OK {
                            all
                        } else {
                            0
                        },
                        all,
                    )
                } else {
                    let ok = letters.iter().filter(|l| l.1 == journal::LETTER_OK).count();
                    (ok as u64, letters.len() as u64)
                };
                crate::metrics::answered(ok, all - ok);
                // A refused batch does not use its SequenceNo.
                let refused = matches!(
                    r.status,
                    altinn::ReceiptStatus::ValidationFailed | altinn::ReceiptStatus::Rejected
                );
                if let (true, Some(_), Some(n)) = (refused, part.sequence_slot, part.sequence_no) {
                    self.journal.release_sequence(&part.system_user_code, n)?;
                    warn!(part = %part.remote_name, sequence_no = n, "Altinn refused the batch; its SequenceNo is used again");
                }
                info!(receipt = %handle.name, part = %part.remote_name, status = r.status.as_str(), "receipt");
            }
            News::Reads {
                reads,
                letters,
                handle,
            } => {
                // Another installation on the same Altinn account sees our
                // confirmations files and we see theirs: only a file whose
                // every letter is ours is ours to take away. One with letters
                // of others is left for them (our reads in it recorded).
                let refs: Vec<&str> = letters.iter().map(String::as_str).collect();
                let ours = self.journal.letters_known(&refs)?;
                if ours < refs.len() {
                    let n = if ours > 0 {
                        self.journal.record_reads(reads)?
                    } else {
                        0
                    };
                    info!(confirmations = %handle.name, read = n, letters = refs.len(), ours, "read confirmations for letters this installation did not send (another installation's?); left in place for them");
                    return Ok(Disposition::LeaveForOthers);
                }
                let n = self.journal.record_reads(reads)?;
                info!(confirmations = %handle.name, read = n, "read confirmations");
            }
            News::Statuses(updates) => {
                self.journal.record_statuses(updates)?;
                for u in updates {
                    for (kind, at, _) in &u.events {
                        info!(letter = u.letter_id, event = kind.as_str(), at = %at, "letter news");
                    }
                }
            }
        }
        Ok(Disposition::Applied)
    }

    // ---- outcome and outbox ------------------------------------------------

    /// A file's outcome is final when Altinn has answered for each of its
    /// letters (and, with `receipt_after = "published"`, published each
    /// created letter or failed to).
    fn settle_submitted(&mut self) -> Result<()> {
        let hold = self.transport.receipt_waits_for_publication();
        for f in self.journal.files_in(FileState::Submitted)? {
            let _span = file_span(f.id, &f.name).entered();
            let parts = self.journal.parts_of(f.id)?;
            if parts.iter().any(|p| p.state != PartState::Receipted) {
                continue;
            }
            let letters = self.journal.letters_of(f.id)?;
            if hold && letters.iter().any(outbox::awaiting_publication) {
                continue;
            }
            let total = letters.len();
            let accepted = |l: &&journal::LetterRow| outbox::letter_status(l, hold) == "Accepted";
            let ok = letters.iter().filter(accepted).count();
            let first_rejection = letters
                .iter()
                .find(|l| !accepted(l))
                .map(|l| format!("{}: {}", l.senders_reference, outbox::letter_text(l, hold)));
            let unexpected = parts
                .iter()
                .any(|p| p.status.as_deref() == Some("UnExpectedError"));
            let (outcome, reason) = if ok == total {
                (
                    Outcome::Accepted,
                    format!("all {total} letter(s) accepted by Altinn"),
                )
            } else if ok > 0 {
                (
                    Outcome::PartiallyAccepted,
                    format!(
                        "{ok} of {total} letters accepted by Altinn; {} rejected, the first {}",
                        total - ok,
                        first_rejection.unwrap_or_default()
                    ),
                )
            } else if unexpected {
                (
                    Outcome::Failed,
                    format!("Altinn could not process the batch: {}", part_texts(&parts)),
                )
            } else {
                let why = first_rejection.unwrap_or_else(|| part_texts(&parts));
                (
                    Outcome::Rejected,
                    format!("Altinn rejected all {total} letter(s); the first {why}"),
                )
            };
            info!(file = %f.name, id = f.id, outcome = outcome.as_str(), accepted = ok, letters = total, "final");
            self.journal
                .set_outcome(f.id, outcome, &reason, None, total as i64)?;
        }
        Ok(())
    }

    /// Write the receipts of files whose outcome is known; a write that
    /// fails is added to `failures` (see [`Delivery`]).
    fn finish(&mut self, failures: &mut Vec<String>) -> Result<usize> {
        let files = self.journal.files_in(FileState::Finishing)?;
        let mut n = 0;
        for f in files {
            let (id, name) = (f.id, f.name.clone());
            let _span = file_span(id, &name).entered();
            match self.finish_one(f) {
                Ok(()) => n += 1,
                // A full disk or a bad permission on the outbox: nothing is
                // lost (the outcome is journalled); try again later.
                // (The reason column keeps the outcome's reason for the receipt,
                // so the delay is only logged.)
                Err(PipelineError::Io(what, e)) => {
                    debug!(file = %name, id, error = %e, "{what}; will try again");
                    failures.push(format!("{what}: {e}"));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(n)
    }

    /// Finish a file whose outcome is known. Every step can be repeated
    /// after a crash, and nothing the fagsystem may already have read is
    /// written twice: names are reserved in the journal first (unique, also
    /// against other files' reservations); the receipt is written under its
    /// temporary name and journalled as staged before it is published, so a
    /// restart publishes it or, if that happened, leaves it alone.
    fn finish_one(&mut self, mut f: FileRow) -> Result<()> {
        let outcome = f.outcome.unwrap_or(Outcome::Failed);
        let to_archive = matches!(outcome, Outcome::Accepted | Outcome::PartiallyAccepted);
        let dest_dir = if to_archive {
            self.cfg.paths.archive.clone()
        } else {
            self.cfg.paths.failed.clone()
        };
        let outbox_dir = self.cfg.paths.outbox.clone();
        if f.receipt_name.is_none() || f.moved_to.is_none() {
            // outbox decides the names (shortened where too long); a name is
            // taken if anything is there (even a dangling link), its
            // temporary name is, or another file has it reserved.
            let receipt =
                outbox::receipt_name(&f.name, taken_in(self.journal.as_ref(), &outbox_dir))?;
            let moved = outbox::moved_name(&f.name, taken_in(self.journal.as_ref(), &dest_dir))?;
            self.journal.reserve_names(f.id, &receipt, &moved)?;
            f.receipt_name = Some(receipt);
            f.moved_to = Some(moved);
        }
        let receipt_path = outbox_dir.join(f.receipt_name.as_deref().unwrap_or_default());
        let moved_path = dest_dir.join(f.moved_to.as_deref().unwrap_or_default());
        if !f.receipt_staged {
            let hold = self.transport.receipt_waits_for_publication();
            let parts = if self.transport.parts_in_receipt() {
                self.journal.parts_of(f.id)?
            } else {
                Vec::new()
            };
            let letters = self.journal.letters_of(f.id)?;
            let errors: Vec<Finding> = f
                .report_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<Vec<Finding>>(j).ok())
                .unwrap_or_default();
            if !to_archive {
                let errors_path = dest_dir.join(outbox::errors_name(
                    f.moved_to.as_deref().unwrap_or_default(),
                ));
                let text = outbox::errors_txt(&f, outcome, &errors, &letters, hold);
                durable::write_atomic(&errors_path, text.as_bytes())
                    .map_err(io_err(format!("cannot write {}", errors_path.display())))?;
            }
            let completed = crate::clock::now();
            let doc = outbox::ReceiptDoc {
                file: &f,
                outcome,
                parts: &parts,
                letters: &letters,
                hold,
                errors: &errors,
                completed_at: &completed,
            };
            durable::write_staged(&receipt_path, outbox::receipt_xml(&doc).as_bytes())
                .map_err(io_err(format!("cannot write {}", receipt_path.display())))?;
            self.journal.set_receipt_staged(f.id)?;
        }
        let staged = self.staged_path(&f);
        if present(&staged) {
            durable::rename(&staged, &moved_path).map_err(io_err(format!(
                "cannot move {} to {}",
                f.name,
                moved_path.display()
            )))?;
        }
        durable::publish(&receipt_path)
            .map_err(io_err(format!("cannot publish {}", receipt_path.display())))?;
        self.journal.set_done(f.id)?;
        remove_in_background(&self.parts, &self.parts_dir(f.id));
        info!(file = %f.name, id = f.id, outcome = outcome.as_str(), receipt = %receipt_path.display(), moved_to = %moved_path.display(), "done");
        Ok(())
    }

    /// Read events: planned (with a free name) in the journal, written under
    /// a temporary name and journalled as staged, then published without
    /// ever replacing a file: an outbox file the fagsystem has not read yet
    /// (left by an earlier installation, or a reset state) keeps its name
    /// and content, and the event takes the next free N. A write that fails
    /// is added to `failures` (see [`Delivery`]), exactly like a receipt.
    fn write_events(&mut self, failures: &mut Vec<String>) -> Result<usize> {
        let outbox = self.cfg.paths.outbox.clone();
        let taken = |n: &str| durable::name_taken(&outbox, n);
        self.journal.plan_events(&taken)?;
        let mut n = 0;
        for e in self.journal.unwritten_events()? {
            let _span = tracing::info_span!("file", id = e.file_id).entered();
            match self.write_event(&e) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(PipelineError::Io(what, err)) => {
                    debug!(event = %e.outbox_name, error = %err, "{what}; will try again");
                    failures.push(format!("{what}: {err}"));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(n)
    }

    /// Write and publish one event; false when its name was taken meanwhile
    /// (it goes under the next free name, written afresh next tick).
    fn write_event(&mut self, e: &EventRow) -> Result<bool> {
        let outbox = self.cfg.paths.outbox.clone();
        let taken = |n: &str| durable::name_taken(&outbox, n);
        let mut name = e.outbox_name.clone();
        if !e.staged {
            // Free when planned; another writer may have taken it since.
            // (Our own temporary file of an interrupted write is fine.)
            if fs::symlink_metadata(outbox.join(&name)).is_ok() {
                name = self.journal.rename_event(e.id, &taken)?;
            }
            let path = outbox.join(&name);
            let file = self.journal.file(e.file_id)?;
            let news = self.journal.event_letters(e.id)?;
            let xml = outbox::events_xml(&file.name, &crate::clock::now(), e.kind, &news);
            durable::write_staged(&path, xml.as_bytes())
                .map_err(io_err(format!("cannot write {}", path.display())))?;
            self.journal.set_event_written(e.id, 1)?;
            info!(file = %file.name, event = %name, kind = e.kind.as_str(), letters = news.len(), "letter news");
        }
        let path = outbox.join(&name);
        let published = durable::publish_new(&path)
            .map_err(io_err(format!("cannot publish {}", path.display())))?;
        if published {
            self.journal.set_event_written(e.id, 2)?;
        } else {
            let _ = fs::remove_file(durable::temp_path(&path));
            let next = self.journal.rename_event(e.id, &taken)?;
            warn!(taken = %name, next = %next, "an outbox file already has the event's name; it is left alone");
        }
        Ok(published)
    }

    /// `state/metrics.prom`, in Prometheus' text format, for node_exporter's
    /// textfile collector (or anything that reads a file).
    fn write_metrics(&mut self) {
        let Ok((files, letters)) = self.journal.counts() else {
            return;
        };
        let mut m = String::new();
        m.push_str("# HELP dpv_batch_files Input files by state and outcome.\n# TYPE dpv_batch_files gauge\n");
        for (state, outcome, n) in files {
            m.push_str(&format!(
                "dpv_batch_files{{state=\"{state}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        m.push_str(
            "# HELP dpv_batch_letters Letters by Altinn status.\n# TYPE dpv_batch_letters gauge\n",
        );
        for (status, n) in letters {
            m.push_str(&format!("dpv_batch_letters{{status=\"{status}\"}} {n}\n"));
        }
        m.push_str(&format!(
            "# HELP dpv_batch_transport_up 1 when the last transport operation worked.\n# TYPE dpv_batch_transport_up gauge\ndpv_batch_transport_up {}\n",
            u8::from(self.transport_error.is_none())
        ));
        if m != self.last_metrics
            && durable::write_atomic(&self.cfg.paths.state.join("metrics.prom"), m.as_bytes())
                .is_ok()
        {
            self.last_metrics = m;
        }
    }
}

/// Open the journal in `state`, with this installation's id, and begin this
/// start's name epoch; or refuse when starting would forget or confuse
/// earlier work: a missing or empty journal is only a new installation if
/// nothing in the state folder says otherwise, and the journal and the id
/// file must agree on whose it is (see `installation`). Both are decided
/// before the journal is created or written (the caller holds the state
/// lock), so a refusal changes nothing.
fn open_journal(state: &Path) -> Result<(Box<Journal>, String)> {
    let journal_path = state.join(JOURNAL_FILE);
    let probe = Journal::probe(&journal_path)?;
    if !probe.holds_state {
        let found = installation::earlier_work(state, &journal_path);
        if !found.is_empty() {
            return Err(PipelineError::Refused(installation::lost_journal(
                state,
                &journal_path,
                &found,
            )));
        }
    }
    let plan = installation::plan(&probe, installation::read_id_file(state), state)
        .map_err(PipelineError::Refused)?;
    let journal = Journal::open(&journal_path)?;
    let id = installation::apply(plan, journal.as_ref(), state).map_err(|e| match e {
        ApplyError::Journal(e) => PipelineError::Journal(e),
        ApplyError::Io(path, e) => PipelineError::Io(format!("cannot write {}", path.display()), e),
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let epoch = journal.begin_epoch(now)?;
    info!(installation = %id, epoch, "journal open");
    Ok((journal, id))
}

/// Remove a finished file's parts folder without holding up the pipeline:
/// renamed out of the way at once (a `.gone-` name, never a live one), then
/// removed by a thread of its own. Thousands of letter folders take seconds
/// to unlink on some filesystems, and nothing waits for that. A leftover
/// (a crash meanwhile) goes the same way at the next start.
fn remove_in_background(parts: &Path, dir: &Path) {
    let Some(name) = dir.file_name() else { return };
    let gone = parts.join(format!(".gone-{}", name.to_string_lossy()));
    if fs::rename(dir, &gone).is_err() {
        let _ = fs::remove_dir_all(dir);
        return;
    }
    std::thread::spawn(move || {
        let _ = fs::remove_dir_all(&gone);
    });
}

/// Parts folders left for removal by a run that ended meanwhile.
fn remove_leftovers(parts: &Path) {
    let Ok(entries) = fs::read_dir(parts) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".gone-") {
            let path = e.path();
            std::thread::spawn(move || {
                let _ = fs::remove_dir_all(&path);
            });
        }
    }
}

/// Where staged inputs the journal does not know are moved at start.
pub const ORPHANED_DIR: &str = "orphaned";

/// Inputs in staging that the journal does not know (it was restored from
/// a backup older than them) are moved to `state/orphaned/`, each with an
/// error in the log: whether they were sent is unknown, and left where they
/// are they would be overwritten by the next input given the same id and
/// name. In normal operation there are none: a file is journalled before
/// it is moved into staging.
fn set_aside_unknown_staged(journal: &Journal, staging: &Path, orphaned: &Path) -> Result<()> {
    let entries =
        fs::read_dir(staging).map_err(io_err(format!("cannot read {}", staging.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot read {}", staging.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // The id leads the name; the row must give back exactly this path.
        let id = name.split('-').next().and_then(|id| id.parse::<i64>().ok());
        let row = match id {
            Some(id) => journal.find_file(id)?,
            None => None,
        };
        if row
            .is_some_and(|f| f.state != FileState::Done && staged_path(staging, &f) == entry.path())
        {
            continue;
        }
        fs::create_dir_all(orphaned)
            .map_err(io_err(format!("cannot create {}", orphaned.display())))?;
        let to = durable::free_name(orphaned, &name);
        durable::rename(&entry.path(), &to).map_err(io_err(format!(
            "cannot move {} aside",
            entry.path().display()
        )))?;
        error!(
            file = %name,
            moved_to = %to.display(),
            "a staged input the journal does not know (was the journal restored from an older backup?): \
             whether it was sent is unknown, so it was moved aside; if the fagsystem has no receipt \
             for it, drop it into the inbox again"
        );
    }
    Ok(())
}

/// Where input `f` waits in `staging` (the state folder's) while in flight.
fn staged_path(staging: &Path, f: &FileRow) -> PathBuf {
    let name = format!("{:08}-{}", f.id, f.name);
    if name.len() <= outbox::NAME_MAX {
        staging.join(name)
    } else {
        staging.join(format!("{:08}-{}", f.id, outbox::shortened(&f.name)))
    }
}

/// A stage that talks to the transport fails with this; the tick backs off.
#[derive(Debug)]
enum StageError {
    Transport(TransportError),
    Journal(JournalError),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Transport(e) => write!(f, "{e}"),
            StageError::Journal(e) => write!(f, "{e}"),
        }
    }
}

impl From<TransportError> for StageError {
    fn from(e: TransportError) -> Self {
        StageError::Transport(e)
    }
}

impl From<JournalError> for StageError {
    fn from(e: JournalError) -> Self {
        StageError::Journal(e)
    }
}

fn part_texts(parts: &[crate::journal::PartRow]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.text.as_deref())
        .filter(|t| !t.is_empty())
        .collect();
    if texts.is_empty() {
        "no reason given".into()
    } else {
        texts.join("; ")
    }
}

/// Is the name `n` in `dir` taken: anything there (even a dangling link),
/// its temporary name, a reservation of another file, or the `errors.txt`
/// of a file not done yet (an input named `a.errors.txt` must not get the
/// name of input `a`'s errors.txt while writes to `failed/` wait)?
fn taken_in<'a>(journal: &'a Journal, dir: &'a Path) -> impl FnMut(&str) -> Result<bool> + 'a {
    move |n| {
        let path = dir.join(n);
        Ok(present(&path)
            || present(&durable::temp_path(&path))
            || journal.name_reserved(n)?
            || journal
                .pending_moved_names()?
                .iter()
                .any(|m| outbox::errors_name(m) == n))
    }
}

/// Is there anything at `path`? A link counts, even one that points
/// nowhere: `Path::exists` would follow it.
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The sha256 of a file, as lowercase hex.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut HashWriter(&mut hasher))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
