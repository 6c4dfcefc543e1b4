//! The journal: the one place that owns all pipeline state, behind one
//! interface, the [`Store`] trait ([`Journal`] is `dyn Store`). [`sqlite`]
//! implements it in one local SQLite file, and is the only module that
//! speaks SQL; a PostgreSQL journal (several nodes sharing one night's run)
//! would implement the same trait.
//!
//! Why a journal: the promise is "nothing lost, nothing sent twice, whatever
//! happens". That holds only if every state change is durable *before* the
//! side effect that depends on it, and if a restart can tell exactly where
//! each file was. So every method that changes state is one atomic,
//! durable transaction: when it returns, the change survives a crash.
//!
//! The model, top down:
//! - **files**: one row per input file, moving through [`FileState`];
//! - **parts**: what the transport submits, each with its own [`PartState`].
//!   For a file transport (a folder, SFTP) a part is a batch file (a large
//!   input is split), with its ShipmentReference and SequenceNo; for a
//!   letter-shaped transport (Altinn 3) a part is one letter;
//! - **letters**: every letter (SendersReference) of every part, with what
//!   Altinn said about it: the status at submission, and for Altinn 3 the
//!   idempotent key (journalled before the first call), the correspondence
//!   id, the last status and its text, a refusal with Altinn's reasons, and
//!   when to look at its status next;
//! - **letter events**: later news about a letter (read, published, failed at
//!   publication, reserved), each reported once to the fagsystem;
//! - **events**: the outbox files those news are written to;
//! - **sequences**: the last SequenceNo used per SystemUserCode;
//! - **meta** and **name epochs**: the installation id, and each start's
//!   epoch for remote names (see `installation`);
//! - **notes**: what the transport is going through, for `status`.
//!
//! Times are xs:dateTime strings in UTC (`2026-11-27T16:45:12.123Z`); the
//! journal decides "now" itself, so callers pass durations, never clocks.

pub mod sqlite;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use sqlite::SqliteJournal;

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

/// Where an input file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Journalled, still in the inbox: the move into staging comes next.
    Received,
    /// In staging: validation comes next.
    Staged,
    /// Parts written and journalled (with their SequenceNos or letter keys):
    /// submission next.
    Packaged,
    /// Every part submitted: waiting for Altinn's answers.
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
    /// Submission started, outcome unknown: after a crash, the transport
    /// settles it (looks at the remote side) before submitting again.
    Uploading,
    /// Handed over; Altinn answers later (a file's receipt).
    Uploaded,
    /// Altinn has answered for it.
    Receipted,
}

/// Later news about a letter, reported to the fagsystem in event files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LetterEvent {
    /// The recipient read it.
    Read,
    /// Altinn published it (the recipient can see it).
    Published,
    /// Altinn could not publish it (the text says why).
    Failed,
    /// The recipient is reserved against digital post (KRR).
    Reserved,
}

/// Implements `as_str`/`parse` for the enums above, which are stored as text.
macro_rules! text_enum {
    ($t:ty { $($v:ident),* }) => {
        impl $t {
            /// Every value, in the order declared.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => stringify!($v)),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $(stringify!($v) => Some(Self::$v),)*
                    _ => None,
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
text_enum!(LetterEvent {
    Read,
    Published,
    Failed,
    Reserved
});

impl LetterEvent {
    /// The event file's name part: `NAME.read-7.xml`, `NAME.published-8.xml`.
    pub fn file_word(self) -> &'static str {
        match self {
            LetterEvent::Read => "read",
            LetterEvent::Published => "published",
            LetterEvent::Failed => "failed",
            LetterEvent::Reserved => "reserved",
        }
    }
}

/// The status a letter gets when Altinn took it (a batch sub-receipt's OK,
/// or a correspondence created by Altinn 3).
pub const LETTER_OK: &str = "OK";
/// The status of a letter Altinn refused.
pub const LETTER_REJECTED: &str = "Rejected";

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
    /// Where the part is, relative to the file's parts folder: the batch
    /// file, or a letter's folder.
    pub local: String,
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

/// Why Altinn refused a letter, as it said it (Altinn 3's ProblemDetails),
/// or a refusal of our own before sending (an `A3xxx` rule: `code` says which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The HTTP status (none when the letter was never sent).
    pub http: Option<u16>,
    /// Altinn's numeric `errorCode` (e.g. 1029).
    pub error_code: Option<i64>,
    /// Altinn's `code` (e.g. `CORR-01029`), or our rule's (`A3004`).
    pub code: Option<String>,
    pub detail: String,
    pub trace_id: Option<String>,
}

impl Refusal {
    /// One line for receipts and errors.txt.
    pub fn text(&self) -> String {
        let mut t = self.detail.clone();
        let mut bits = Vec::new();
        if let Some(h) = self.http {
            bits.push(format!("HTTP {h}"));
        }
        if let Some(c) = &self.code {
            bits.push(c.clone());
        } else if let Some(e) = self.error_code {
            bits.push(format!("errorCode {e}"));
        }
        if let Some(id) = &self.trace_id {
            bits.push(format!("traceId {id}"));
        }
        if !bits.is_empty() {
            t.push_str(&format!(" ({})", bits.join(", ")));
        }
        t
    }
}

/// Altinn's answer for a part submitted to a transport that answers at once
/// (Altinn 3: one letter per part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Created, with its correspondence id and first status.
    Created {
        correspondence_id: String,
        status: String,
    },
    /// Refused, for this letter only.
    Refused(Refusal),
}

#[derive(Debug, Clone, Serialize)]
pub struct LetterRow {
    pub id: i64,
    pub part_id: i64,
    pub part_no: i64,
    pub senders_reference: String,
    pub reportee: String,
    /// What Altinn said at submission: [`LETTER_OK`], [`LETTER_REJECTED`],
    /// or another receipt status; none while waiting.
    pub status: Option<String>,
    pub text: Option<String>,
    pub read_at: Option<String>,
    /// Letter-shaped transports (Altinn 3) only, from here on.
    pub idempotent_key: Option<String>,
    pub resource_id: Option<String>,
    pub correspondence_id: Option<String>,
    /// Altinn's last status for the letter (`Initialized`, `Published`, ...).
    pub altinn_status: Option<String>,
    pub altinn_status_text: Option<String>,
    pub published_at: Option<String>,
    /// When the sender asked Altinn to publish it (none: at once).
    pub publish_at: Option<String>,
    pub refusal: Option<Refusal>,
}

/// A letter about to be journalled with its part.
#[derive(Debug, Clone, Default)]
pub struct NewLetter {
    pub senders_reference: String,
    pub reportee: String,
    /// Altinn 3: the idempotent key, journalled before the first call.
    pub idempotent_key: Option<String>,
    pub resource_id: Option<String>,
    pub publish_at: Option<String>,
}

impl NewLetter {
    pub fn new(senders_reference: &str, reportee: &str) -> NewLetter {
        NewLetter {
            senders_reference: senders_reference.into(),
            reportee: reportee.into(),
            ..NewLetter::default()
        }
    }
}

/// A part about to be journalled by [`Journal::record_parts`].
#[derive(Debug, Clone)]
pub struct NewPart {
    pub part_no: i64,
    pub remote_name: String,
    /// Where it is, relative to the file's parts folder.
    pub local: String,
    pub shipment_reference: String,
    /// The input's own SequenceNo (when dpv-batch does not number).
    pub sequence_no: Option<i64>,
    /// Where dpv-batch writes the SequenceNo it assigns at upload time.
    pub sequence_slot: Option<i64>,
    pub bytes: i64,
    pub letters: Vec<NewLetter>,
    /// Already answered before sending (a letter our own rules refuse).
    pub answer: Option<Answer>,
}

/// A sent letter whose status is due to be looked at.
#[derive(Debug, Clone)]
pub struct PollRow {
    pub letter_id: i64,
    pub correspondence_id: String,
    pub altinn_status: Option<String>,
    pub published_at: Option<String>,
    pub read_at: Option<String>,
    /// Seconds since Altinn created it (the poll interval grows with age).
    pub age_seconds: i64,
}

/// What one look at a letter's status found, and what is new.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub letter_id: i64,
    pub status: String,
    pub status_text: Option<String>,
    pub published_at: Option<String>,
    pub read_at: Option<String>,
    /// News to report: (kind, when, text).
    pub events: Vec<(LetterEvent, String, Option<String>)>,
    /// When to look again; none: never (a final status).
    pub next_poll: Option<Duration>,
}

/// An event file to be written to the outbox.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub file_id: i64,
    pub kind: LetterEvent,
    pub outbox_name: String,
    /// Written under its temporary name already (maybe published too).
    pub staged: bool,
}

/// One letter's news in an event file.
#[derive(Debug, Clone)]
pub struct EventLetter {
    pub senders_reference: String,
    pub reportee: String,
    pub correspondence_id: Option<String>,
    pub at: String,
    pub text: Option<String>,
}

/// A letter Altinn has not published long after it was asked to.
#[derive(Debug, Clone, Serialize)]
pub struct OverdueRow {
    pub file_id: i64,
    pub file: String,
    pub senders_reference: String,
    pub correspondence_id: Option<String>,
    pub altinn_status: Option<String>,
    /// The requested publish time, or when it was created.
    pub due: String,
}

/// A `dpv-batch replay` request (see `ops::replay`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRow {
    pub id: i64,
    /// The file sent again.
    pub of_file_id: i64,
    /// Forced past the duplicate check.
    pub force: bool,
    /// `preparing`, `ready`, `taken` or `abandoned`.
    pub state: String,
    /// The new input, once taken in.
    pub file_id: Option<i64>,
    pub requested_at: String,
}

/// Files in one state, for the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub state: FileState,
    pub files: i64,
    /// Seconds since the oldest of them was taken in (0 for Done: not
    /// looked at, their age says nothing).
    pub oldest_seconds: i64,
    /// Seconds since the last change to any of them (0 for Done).
    pub idle_seconds: i64,
}

/// A file with parts handed to the transport longer ago than the receipt
/// deadline and still without their receipt (or, for Altinn 3, answer).
#[derive(Debug, Clone, Serialize)]
pub struct OverdueReceipt {
    pub file_id: i64,
    pub file: String,
    /// How many of its parts are overdue.
    pub parts: i64,
    /// The first overdue part's remote name (for a search on the remote side).
    pub first_part: String,
    /// When the oldest of them was handed over.
    pub handed_over: String,
    /// Seconds since then.
    pub age_seconds: i64,
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

/// The journal, as the pipeline uses it: any [`Store`].
pub type Journal = dyn Store;

/// The journal's interface. Every method is one atomic, durable step; see
/// the module doc.
pub trait Store: Send {
    // ---- the installation ----------------------------------------------

    /// The installation id this journal belongs to (None: a journal from
    /// before ids, or one not given its id yet).
    fn installation_id(&self) -> Result<Option<String>>;
    /// Record the installation id (once; `installation` decides when).
    fn set_installation_id(&self, id: &str) -> Result<()>;
    /// Start a new name epoch: `now` (milliseconds since 1970), or one more
    /// than the last epoch if that is not later. Committed before it is
    /// used, so no two starts of one journal share an epoch.
    fn begin_epoch(&self, now: i64) -> Result<i64>;
    /// The epoch in the remote names of file `id`: that of the start it was
    /// taken in, so its names stay the same across restarts (a file from
    /// before epochs gets the first one).
    fn name_epoch(&self, id: i64) -> Result<i64>;

    // ---- files ---------------------------------------------------------

    /// A new input file seen in the inbox, before it is moved.
    fn add_file(&self, name: &str, size: u64) -> Result<i64>;
    fn file(&self, id: i64) -> Result<FileRow>;
    /// The file `id`, if the journal has it.
    fn find_file(&self, id: i64) -> Result<Option<FileRow>>;
    /// Files in `state`, oldest first.
    fn files_in(&self, state: FileState) -> Result<Vec<FileRow>>;
    /// Every file, newest first (for `status`).
    fn all_files(&self) -> Result<Vec<FileRow>>;
    /// The newest file's id (0 when there is none).
    fn max_file_id(&self) -> Result<i64>;
    /// Files with id <= `max_id` not yet done.
    fn open_files_upto(&self, max_id: i64) -> Result<i64>;
    /// Files not yet done.
    fn open_files(&self) -> Result<i64>;
    fn set_staged(&self, id: i64, sha256: Option<&str>, size: u64) -> Result<()>;
    /// The content hash of a staged file.
    fn set_sha(&self, id: i64, sha256: &str) -> Result<()>;
    /// Drop a Received row whose file could not be moved in after all.
    fn forget_received(&self, id: i64) -> Result<()>;
    /// Record a transient problem on a file that stays where it is.
    fn set_reason(&self, id: i64, reason: &str) -> Result<()>;
    /// Another file with the same content that is on its way to Altinn, or
    /// whose letters Altinn accepted. A file Altinn refused outright, or that
    /// never left, does not count: sending that content again is legitimate.
    fn submitted_duplicate(&self, sha256: &str, id: i64) -> Result<Option<FileRow>>;
    /// The outcome is known: the file moves to Finishing.
    fn set_outcome(
        &self,
        id: i64,
        outcome: Outcome,
        reason: &str,
        report_json: Option<&str>,
        letters: i64,
    ) -> Result<()>;
    /// Reserve where a finishing file's receipt goes and where the input
    /// moves, before either happens, so a restart finishes the same way.
    fn reserve_names(&self, id: i64, receipt_name: &str, moved_to: &str) -> Result<()>;
    /// Is `name` reserved: a destination name of any file (archive/ and
    /// failed/ names stay unique per input name while the journal has the
    /// file), or the receipt name of a file not done yet? A done file's
    /// receipt is in the outbox until the fagsystem takes it, and the
    /// outbox alone then says whether the name is free: a receipt name is
    /// used again once its earlier receipt is gone.
    fn name_reserved(&self, name: &str) -> Result<bool>;
    /// Destination names reserved by files not done yet: their
    /// `errors.txt` (named after them) may not be written yet, and its
    /// name must not be given to another file meanwhile.
    fn pending_moved_names(&self) -> Result<Vec<String>>;
    /// The receipt is staged (written under its temporary name). News it
    /// includes is not reported again in event files.
    fn set_receipt_staged(&self, id: i64) -> Result<()>;
    fn set_done(&self, id: i64) -> Result<()>;
    /// Mark a file Submitted once all its parts are submitted.
    fn set_submitted(&self, file_id: i64) -> Result<()>;
    /// Files per (state, outcome), and letters per status: for metrics.
    #[allow(clippy::type_complexity)]
    fn counts(&self) -> Result<(Vec<(String, String, i64)>, Vec<(String, i64)>)>;

    // ---- parts -------------------------------------------------------------

    /// Journal a file's parts (already written and fsynced) and their
    /// letters in one transaction; the file becomes Packaged.
    fn record_parts(&self, file_id: i64, system_user_code: &str, parts: &[NewPart]) -> Result<()>;
    fn parts_of(&self, file_id: i64) -> Result<Vec<PartRow>>;
    /// The first `limit` parts of a file not handed over yet (Packaged or
    /// in flight), in order: what submitting looks at (a file of 10,000
    /// letters is not read whole for every batch).
    fn parts_pending(&self, file_id: i64, limit: usize) -> Result<Vec<PartRow>>;
    fn set_part_state(&self, part_id: i64, state: PartState) -> Result<()>;
    /// Several parts at once (one transaction): a batch about to be sent.
    fn set_parts_state(&self, part_ids: &[i64], state: PartState) -> Result<()>;

    // SequenceNos. Altinn II accepts a batch only if its number is exactly
    // the previous accepted one + 1, and a refused batch does not use its
    // number. So a number is given out when a part is about to be uploaded,
    // only one numbered part per SystemUserCode is on its way at a time, and
    // a refusal gives the number back.

    /// Is a numbered part of `system_user_code` on its way (no receipt yet)?
    fn numbered_in_flight(&self, system_user_code: &str) -> Result<bool>;
    /// Give a part the next SequenceNo of its SystemUserCode, but at least
    /// `first`, and mark it Uploading, in one transaction.
    fn assign_sequence(&self, part_id: i64, system_user_code: &str, first: i64) -> Result<i64>;
    /// Altinn refused the batch numbered `n`: the number is free again.
    fn release_sequence(&self, system_user_code: &str, n: i64) -> Result<()>;
    /// The last SequenceNo given out for `system_user_code`.
    fn last_sequence(&self, system_user_code: &str) -> Result<Option<i64>>;

    // ---- answers -----------------------------------------------------------

    /// The part a batch receipt belongs to. `remote_name` (when the
    /// receipt's file name tells it) is unique for ever, so it decides; the
    /// ShipmentReference must agree. Without a name, the oldest part on its
    /// way with that ShipmentReference. A part that already has its receipt
    /// never matches: a repeated receipt is not applied twice.
    fn part_awaiting_receipt(
        &self,
        remote_name: Option<&str>,
        shipment_reference: &str,
    ) -> Result<Option<PartRow>>;
    /// Journal Altinn's batch receipt for a part: its status and each
    /// letter's (SendersReference, status, text).
    fn record_receipt(
        &self,
        part_id: i64,
        status: &str,
        text: &str,
        letters: &[(String, String, String)],
    ) -> Result<()>;
    /// Journal Altinn's answers for parts of one letter each (one
    /// transaction): created (polled first after `first_poll`) or refused.
    fn record_answers(&self, answers: &[(i64, Answer)], first_poll: Duration) -> Result<()>;
    fn letters_of(&self, file_id: i64) -> Result<Vec<LetterRow>>;
    /// The letters of one part (for a letter-shaped transport: the one).
    fn letters_of_part(&self, part_id: i64) -> Result<Vec<LetterRow>>;

    // ---- later news --------------------------------------------------------

    /// How many of `refs` (SendersReferences from a confirmations file)
    /// name letters this journal sent. Altinn names confirmations files by
    /// system user, not by batch, so another installation on the same
    /// account sees ours and we see theirs: a file is ours only if every
    /// letter in it is.
    fn letters_known(&self, refs: &[&str]) -> Result<usize>;
    /// Journal that letters were read (read confirmations: SendersReference,
    /// when); returns how many letters matched.
    fn record_reads(&self, reads: &[(String, String)]) -> Result<usize>;
    /// Sent letters whose status is due to be looked at, oldest due first.
    fn letters_to_poll(&self, limit: usize) -> Result<Vec<PollRow>>;
    /// Journal what looking at letters' statuses found (one transaction).
    fn record_statuses(&self, updates: &[StatusUpdate]) -> Result<()>;
    /// Plan event files for news not reported yet, one per Done file and
    /// kind of news: each gets an event row with its outbox name, and its
    /// news is tied to it, in one transaction, before anything is written.
    /// Names are `<input>.<kind>-<N>.xml` (`outbox::event_name`), N from the
    /// event id up to the first name that is free: not `taken` (the caller
    /// looks in the outbox) and not planned for another event.
    fn plan_events(&self, taken: &dyn Fn(&str) -> bool) -> Result<()>;
    /// Someone else's file took an event's name before we could publish
    /// it: give the event the next free name, to be written afresh.
    fn rename_event(&self, event_id: i64, taken: &dyn Fn(&str) -> bool) -> Result<String>;
    fn unwritten_events(&self) -> Result<Vec<EventRow>>;
    fn event_letters(&self, event_id: i64) -> Result<Vec<EventLetter>>;
    /// 1: staged under its temporary name; 2: published.
    fn set_event_written(&self, event_id: i64, level: i64) -> Result<()>;
    /// Sent letters not published `overdue_after` past their requested
    /// publish time (or their creation), oldest first, at most `limit`.
    fn overdue_letters(&self, overdue_after: Duration, limit: usize) -> Result<Vec<OverdueRow>>;
    /// Files per state (only states that have files), with the age of the
    /// oldest: cheap however long the journal, for the metrics every tick.
    fn state_overview(&self) -> Result<Vec<StateCount>>;
    /// Seconds since any file last changed (None: no files). Reads every
    /// file: for `status --check`, not for every tick.
    fn quiet_seconds(&self) -> Result<Option<i64>>;
    /// Files with parts handed over `deadline` ago or longer (first
    /// journalled in flight) that have no receipt yet, oldest first.
    fn overdue_receipts(&self, deadline: Duration) -> Result<Vec<OverdueReceipt>>;

    // ---- operator commands (replay, purge, status filters) ---------------

    /// Journal a replay request of Done file `of_file_id` (`preparing`:
    /// its copy is not placed yet, the pipeline does not look at it).
    fn request_replay(&self, of_file_id: i64, force: bool) -> Result<i64>;
    /// The copy is placed: the pipeline may take the request in.
    fn replay_ready(&self, replay_id: i64) -> Result<()>;
    /// A request left `preparing` by a replay that was killed: never taken.
    fn abandon_replay(&self, replay_id: i64) -> Result<()>;
    /// Requests in `state` (`preparing`, `ready`, ...), oldest first.
    fn replays_in(&self, state: &str) -> Result<Vec<ReplayRow>>;
    /// Take a ready request in, in one transaction: a new Received file
    /// `name` of `size` bytes, linked to the request (which becomes
    /// `taken`). Returns the new file's id.
    fn take_replay(&self, replay_id: i64, name: &str, size: u64) -> Result<i64>;
    /// The request file `file_id` was taken in from, if it is a replay.
    fn replay_of(&self, file_id: i64) -> Result<Option<ReplayRow>>;
    /// Every request that replays `file_id`, oldest first.
    fn replays_of(&self, file_id: i64) -> Result<Vec<ReplayRow>>;
    /// Done files whose receipt name or destination is `name`, or named
    /// `name` (as shown), newest first.
    fn done_files_named(&self, name: &str) -> Result<Vec<FileRow>>;
    /// Done files finished more than `older_than` ago, oldest first.
    fn done_before(&self, older_than: Duration) -> Result<Vec<FileRow>>;
    /// Event files published for file `id` (their outbox names).
    fn published_events_of(&self, file_id: i64) -> Result<Vec<String>>;
    /// Is more news still expected for Done file `id` (a letter still
    /// polled, an event file not yet published)? Its rows must stay.
    fn news_pending(&self, file_id: i64) -> Result<bool>;
    /// Remove file `id`'s rows (letters, news, events, parts, the file), in
    /// one transaction. If Altinn has its letters (`submitted_duplicate`
    /// would match it), its content hash is kept in `purged_hashes`, so the
    /// duplicate check still refuses the same content.
    /// False (and nothing removed) when news came meanwhile
    /// ([`Store::news_pending`], looked at in the same transaction) or a
    /// replay of it is under way (requested, or taken in and not finished).
    fn purge_file(&self, file_id: i64) -> Result<bool>;
    /// Move file `id`'s times back by `by` (tests of retention and filters).
    fn backdate_file(&self, file_id: i64, by: Duration) -> Result<()>;

    // ---- notes -------------------------------------------------------------

    /// Set (or with `None` clear) a named note, e.g. what the transport is
    /// going through, for `status`.
    fn set_note(&self, key: &str, value: Option<&str>) -> Result<()>;
    /// A note: (value, when it was set).
    fn note(&self, key: &str) -> Result<Option<(String, String)>>;
}

impl dyn Store {
    /// Open (or create) the journal at `path`, migrating an older schema.
    pub fn open(path: &Path) -> Result<Box<Journal>> {
        Ok(Box::new(SqliteJournal::open(path)?))
    }

    /// Open read-only, for `status`: while the daemon runs, and by a user
    /// who may read the state folder but not write it.
    pub fn open_read_only(path: &Path) -> Result<Box<Journal>> {
        Ok(Box::new(SqliteJournal::open_read_only(path)?))
    }

    /// Look at the journal at `path` without changing it (nor creating it).
    pub fn probe(path: &Path) -> Result<Probe> {
        SqliteJournal::probe(path)
    }
}

/// Open (or create) the journal at `path`, migrating an older schema.
pub fn open(path: &Path) -> Result<Box<Journal>> {
    Journal::open(path)
}

/// Open read-only, for `status` while the daemon runs.
pub fn open_read_only(path: &Path) -> Result<Box<Journal>> {
    Journal::open_read_only(path)
}

/// Note keys.
pub mod notes {
    /// What the transport is going through (throttled, stopped: why).
    pub const TRANSPORT: &str = "transport";
    /// Set (to the error) while the transport failed in a way retrying
    /// cannot fix: an operator must act (`status --check`: CRITICAL).
    pub const TRANSPORT_PERMANENT: &str = "transport_permanent";
    /// Set while the transport is down (any error, transient or not); its
    /// time is when the outage began (`status --check`: CRITICAL once it
    /// lasts).
    pub const TRANSPORT_DOWN: &str = "transport_down";
}
