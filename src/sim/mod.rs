//! Altinn's batch side, simulated over folders, for tests and demos.
//!
//! # What real Altinn II did
//! A sender uploaded correspondence batch files to an SFTP/FTP area agreed
//! with Altinn. Altinn picked each file up, checked it against the batch
//! XSD, checked `SequenceNo` (exactly one more than the last batch from the
//! same `SystemUserCode`, or the whole batch was refused), created one
//! correspondence per letter (refusing single letters, e.g. a
//! `SendersReference` it had seen before or a recipient it could not
//! deliver to), and recorded a receipt: a main receipt for the shipment with
//! one sub-receipt per letter. The sender fetched receipts from Altinn's
//! receipt web service. Later, as recipients opened their letters, Altinn
//! dropped `CorrespondenceConfirmations` files on the SFTP area, one chain
//! per system user linked by `SequenceNo`/`PreviousSequenceNo`.
//!
//! # The folder contract (the pipeline depends on it)
//! Under `--root DIR`:
//! - `upload/`: the sender writes a batch under a temporary name (hidden
//!   `.NAME`, or ending `.tmp` / `.part`; those are never touched) and
//!   renames it to its final name. Every other regular file is a batch.
//!   Upload names must be unique for the life of the root: a name the
//!   simulator has processed before is only moved again, it gets no second
//!   receipt.
//! - `receipts/<upload name>.receipt.xml`: the receipt
//!   ([`crate::altinn::receipt`]), written atomically (hidden temp name
//!   `.<name>.part` in the same folder, fsync, rename, fsync the folder).
//!   The sender deletes it once read.
//! - `processed/<upload name>`: the batch, moved there *after* its receipt
//!   was written. So at every instant a batch is in `upload/` or its
//!   receipt is in `receipts/` (until the sender removes it).
//! - `confirmations/confirmations-<SequenceNo:08>.xml`: read confirmations
//!   ([`crate::altinn::confirmation`]), written atomically like receipts.
//!   The counter runs per `SystemUserCode`; a root is meant to serve one
//!   system user, and any further one gets
//!   `confirmations-<SystemUserCode>-<SequenceNo:08>.xml` so names never
//!   clash. Readers should take every `confirmations-*.xml` and trust the
//!   content (SystemUserCode, SequenceNo), not the name.
//! - `.sim/`: the simulator's own durable state; `.sim/stop` asks a running
//!   simulator to stop (it is removed when honoured).
//!
//! # The checks, in order
//! 1. The batch validator ([`crate::validate`]: XSD + DPV rules). Invalid:
//!    main receipt `ValidationFailed`, the first errors in `ReceiptText`, no
//!    sub-receipts.
//! 2. `SequenceNo`, when present: the first batch of a `SystemUserCode`
//!    may carry any number (Altinn set the starting point per sender out of
//!    band); after that it must be exactly last + 1. Otherwise: main receipt
//!    `Rejected`, text "expected E, got G", no sub-receipts. A refused batch
//!    (1 or 2) does not advance the counter: the sender resends with the
//!    same number.
//! 3. Per letter: a `SendersReference` accepted before (in any batch) gets
//!    a `Rejected` sub-receipt ("already received"); so does a letter to a
//!    `--reject-reportee`. Others are `OK`. Only accepted letters count as
//!    seen, so a letter refused for any reason may be sent again.
//!    The main receipt is then `OK`, even if some letters were rejected.
//!
//! Receipt ids: one counter per root; a main receipt takes the next id and
//! its sub-receipts the ids after it, in letter order.
//!
//! # Crash safety
//! Each decision is a record `.sim/batches/<upload name>.json`, written
//! durably *before* the receipt; the counters and the set of seen
//! references are rebuilt from the records at start. After a crash the
//! record is found and the batch is finished, not decided again: the
//! receipt is (re)written from the record, byte for byte the same, unless
//! the record says it was written, and the file is moved. If the crash fell
//! between writing the receipt and noting it, the same receipt may appear a
//! second time; a reader must treat a receipt it has already handled (same
//! ReceiptId) as a repeat. A confirmations file likewise may be written
//! twice with the same SequenceNo.
//!
//! # Where the simulation differs from Altinn
//! - Receipts are files, not a SOAP service; they appear at once (or after
//!   `--receipt-delay-ms`), not minutes to hours later.
//! - Every accepted letter is "read" `--confirm-delay-ms` after its batch
//!   was processed, all at once, in one confirmations file per batch with
//!   ReadDateTime = the time of writing; a batch with no accepted letter
//!   gets no file. Nobody ever "confirms".
//! - A `SystemUserCode` longer than the confirmations schema allows (15)
//!   gets no confirmations (a warning is logged).
//! - No notifications, no visible/due dates, no attachments stored, no
//!   authentication, no quotas. One simulator per root at a time.

pub mod cli;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::altinn::{
    self, write_confirmations, write_receipt, AltinnError, BatchReceipt, Confirmation,
    Confirmations, LetterReceipt, ReceiptStatus,
};
use crate::validate::{self, FileReport, Validator};
use crate::xml::{self, Events, Pos};

/// Where the sender puts batches.
pub const UPLOAD_DIR: &str = "upload";
/// Where receipts appear.
pub const RECEIPTS_DIR: &str = "receipts";
/// Where batches go once their receipt is written.
pub const PROCESSED_DIR: &str = "processed";
/// Where confirmations files appear.
pub const CONFIRMATIONS_DIR: &str = "confirmations";
/// The simulator's own state.
pub const STATE_DIR: &str = ".sim";
/// A file of this name in [`STATE_DIR`] stops [`run`].
pub const STOP_FILE: &str = "stop";

/// The receipt file name for a batch uploaded as `upload_name`.
pub fn receipt_file_name(upload_name: &str) -> String {
    format!("{upload_name}.receipt.xml")
}

/// Whether a name in `upload/` is a file still being written (and so never
/// touched): hidden, or ending `.tmp` or `.part`.
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// How the simulator behaves. `Default` is the CLI's defaults.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Skip files modified less than this long ago.
    pub settle: Duration,
    /// A batch is processed only once it has sat this long in `upload/`.
    pub receipt_delay: Duration,
    /// Read confirmations this long after a batch was processed; `None`:
    /// no confirmations.
    pub confirm_delay: Option<Duration>,
    /// Pause between two looks at `upload/` in [`run`].
    pub poll: Duration,
    /// Letters to these reportees get a `Rejected` sub-receipt.
    pub reject_reportees: Vec<String>,
    /// How batches are validated.
    pub validation: validate::Options,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            settle: Duration::ZERO,
            receipt_delay: Duration::ZERO,
            confirm_delay: Some(Duration::from_millis(1000)),
            poll: Duration::from_millis(200),
            reject_reportees: Vec::new(),
            validation: validate::Options::default(),
        }
    }
}

/// What went wrong; every variant says what and where.
#[derive(Debug)]
pub enum SimError {
    /// A file-system operation failed.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The state under `.sim/` cannot be used.
    State { path: PathBuf, message: String },
    /// The batch validator could not be built.
    Validator(String),
    /// A document could not be written in Altinn's shape.
    Altinn { path: PathBuf, source: AltinnError },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            SimError::State { path, message } => {
                write!(
                    f,
                    "simulator state {} is unusable: {message}",
                    path.display()
                )
            }
            SimError::Validator(e) => write!(f, "cannot build the batch validator: {e}"),
            SimError::Altinn { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Io { source, .. } => Some(source),
            SimError::Altinn { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SimError + 'a {
    move |source| SimError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What one [`Simulator::step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Batches decided and answered with a receipt (any status).
    pub batches: usize,
    /// Of those, refused as a whole (`ValidationFailed` or `Rejected`).
    pub batches_refused: usize,
    /// Letters with an `OK` sub-receipt.
    pub letters_ok: u64,
    /// Letters with a `Rejected` sub-receipt.
    pub letters_rejected: u64,
    /// Confirmations files written.
    pub confirmation_files: usize,
    /// Batches decided before a crash and only finished now.
    pub recovered: usize,
    /// One human-readable line per thing done.
    pub log: Vec<String>,
}

/// One decided batch, as stored under `.sim/batches/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    /// Processing order over the life of the root.
    order: u64,
    upload_name: String,
    processed_at_ms: u64,
    system_user_code: String,
    /// The SequenceNo this batch advanced its counter to.
    sequence_no: Option<u64>,
    receipt: BatchReceipt,
    receipt_written: bool,
    confirmations: Option<PendingConfirmations>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingConfirmations {
    file_name: String,
    sequence_no: u64,
    previous_sequence_no: u64,
    /// Read times are filled in when the file is written.
    items: Vec<Confirmation>,
    written: bool,
}

const RECORD_VERSION: u32 = 1;

/// The state rebuilt from the records.
#[derive(Default)]
struct Ledger {
    records: BTreeMap<String, Record>,
    next_order: u64,
    next_receipt_id: u64,
    /// SystemUserCode → last SequenceNo accepted.
    sequence: HashMap<String, u64>,
    /// SystemUserCode → last confirmations SequenceNo.
    confirmation_sequence: HashMap<String, u64>,
    /// The system user whose confirmations files get plain names.
    primary_user: Option<String>,
    /// SendersReferences of every accepted letter.
    seen: HashSet<String>,
}

impl Ledger {
    fn apply(&mut self, r: Record) {
        self.next_order = self.next_order.max(r.order + 1);
        let last_id = r
            .receipt
            .letters
            .iter()
            .map(|l| l.receipt_id)
            .chain([r.receipt.receipt_id])
            .max()
            .unwrap_or(0);
        self.next_receipt_id = self.next_receipt_id.max(last_id + 1);
        if let Some(n) = r.sequence_no {
            let last = self.sequence.entry(r.system_user_code.clone()).or_insert(n);
            *last = (*last).max(n);
        }
        if let Some(c) = &r.confirmations {
            let last = self
                .confirmation_sequence
                .entry(r.system_user_code.clone())
                .or_insert(c.sequence_no);
            *last = (*last).max(c.sequence_no);
        }
        for l in &r.receipt.letters {
            if l.status == ReceiptStatus::Ok {
                self.seen.insert(l.senders_reference.clone());
            }
        }
        self.records.insert(r.upload_name.clone(), r);
    }

    /// Records in processing order.
    fn in_order(&self) -> Vec<String> {
        let mut v: Vec<(&u64, &String)> = self
            .records
            .values()
            .map(|r| (&r.order, &r.upload_name))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.clone()).collect()
    }
}

/// The simulator. Holds a libxml2 validator, so it stays on the thread that
/// made it.
pub struct Simulator {
    upload: PathBuf,
    receipts: PathBuf,
    processed: PathBuf,
    confirmations: PathBuf,
    state: PathBuf,
    records: PathBuf,
    opts: SimOptions,
    validator: Validator,
    ledger: Ledger,
}

impl Simulator {
    /// Open (creating what is missing) the folders under `root` and load
    /// the state.
    pub fn new(root: &Path, opts: SimOptions) -> Result<Simulator, SimError> {
        let state = root.join(STATE_DIR);
        let sim = Simulator {
            upload: root.join(UPLOAD_DIR),
            receipts: root.join(RECEIPTS_DIR),
            processed: root.join(PROCESSED_DIR),
            confirmations: root.join(CONFIRMATIONS_DIR),
            records: state.join("batches"),
            state,
            validator: Validator::new(opts.validation.clone()).map_err(SimError::Validator)?,
            opts,
            ledger: Ledger::default(),
        };
        for dir in [
            &sim.upload,
            &sim.receipts,
            &sim.processed,
            &sim.confirmations,
            &sim.state,
            &sim.records,
        ] {
            fs::create_dir_all(dir).map_err(io_err("create the folder", dir))?;
        }
        let mut sim = sim;
        sim.load()?;
        Ok(sim)
    }

    fn load(&mut self) -> Result<(), SimError> {
        let entries = fs::read_dir(&self.records).map_err(io_err("list", &self.records))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.records))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| SimError::State {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if record.version != RECORD_VERSION {
                return Err(SimError::State {
                    path,
                    message: format!("record version {} is not {RECORD_VERSION}", record.version),
                });
            }
            self.ledger.apply(record);
        }
        // Which system user owns the plain confirmations names: the first
        // that got any.
        self.ledger.primary_user = self
            .ledger
            .records
            .values()
            .filter(|r| r.confirmations.is_some())
            .min_by_key(|r| r.order)
            .map(|r| r.system_user_code.clone());
        Ok(())
    }

    /// Path of the stop file for this root.
    pub fn stop_file(&self) -> PathBuf {
        self.state.join(STOP_FILE)
    }

    /// Process every batch that is due now, then write every confirmations
    /// file that is due now.
    pub fn step(&mut self) -> Result<StepReport, SimError> {
        let mut report = StepReport::default();
        for name in self.candidates()? {
            self.handle(&name, &mut report)?;
        }
        self.write_due_confirmations(&mut report)?;
        Ok(report)
    }

    /// Final-named regular files in `upload/`, by name.
    fn candidates(&self) -> Result<Vec<String>, SimError> {
        let mut names = Vec::new();
        let entries = fs::read_dir(&self.upload).map_err(io_err("list", &self.upload))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.upload))?;
            // Names that are not UTF-8 cannot be named in a receipt; the
            // pipeline never writes them.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_temporary_name(&name) {
                continue;
            }
            match entry.path().symlink_metadata() {
                Ok(m) if m.is_file() => names.push(name),
                Ok(_) => {}
                // Gone since listed (e.g. the sender took it back).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("inspect", &entry.path())(e)),
            }
        }
        names.sort();
        Ok(names)
    }

    fn handle(&mut self, name: &str, report: &mut StepReport) -> Result<(), SimError> {
        let path = self.upload.join(name);
        let already_moved = self.processed.join(name).exists();
        if already_moved {
            self.move_to_processed(name)?;
            report.recovered += 1;
            report.log.push(format!(
                "{name}: already in {PROCESSED_DIR}/; moved, no new receipt"
            ));
            return Ok(());
        }
        if let Some(record) = self.ledger.records.get(name) {
            // Decided before (a crash came between): finish, do not decide again.
            if !record.receipt_written {
                let record = record.clone();
                self.write_receipt_file(&record)?;
                self.mark_receipt_written(name)?;
            }
            self.move_to_processed(name)?;
            report.recovered += 1;
            report
                .log
                .push(format!("{name}: decided before a restart; finished"));
            return Ok(());
        }
        let meta = match path.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("inspect", &path)(e)),
        };
        let wait = self.opts.settle.max(self.opts.receipt_delay);
        if !wait.is_zero() && age(&meta) < wait {
            return Ok(());
        }
        let record = self.decide(name, &path)?;
        self.save_record(&record)?;
        self.ledger.apply(record.clone());
        if record.confirmations.is_some() && self.ledger.primary_user.is_none() {
            self.ledger.primary_user = Some(record.system_user_code.clone());
        }
        self.write_receipt_file(&record)?;
        self.mark_receipt_written(name)?;
        self.move_to_processed(name)?;

        let r = &record.receipt;
        let ok = r
            .letters
            .iter()
            .filter(|l| l.status == ReceiptStatus::Ok)
            .count() as u64;
        let rejected = r.letters.len() as u64 - ok;
        report.batches += 1;
        report.letters_ok += ok;
        report.letters_rejected += rejected;
        let receipt = receipt_file_name(name);
        match r.status {
            ReceiptStatus::Ok => report.log.push(format!(
                "{name}: OK, {} letters ({ok} OK, {rejected} rejected) -> {RECEIPTS_DIR}/{receipt}",
                r.letters.len()
            )),
            status => {
                report.batches_refused += 1;
                report.log.push(format!(
                    "{name}: {status}: {} -> {RECEIPTS_DIR}/{receipt}",
                    r.text
                ));
            }
        }
        Ok(())
    }

    /// Look at the batch and decide every receipt. Changes nothing.
    fn decide(&self, name: &str, path: &Path) -> Result<Record, SimError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let verdict = self.validator.validate_xml(
            name.to_string(),
            &mut BufReader::with_capacity(256 * 1024, file),
            None,
        );
        let file = File::open(path).map_err(io_err("open", path))?;
        let facts = read_facts(&mut BufReader::with_capacity(256 * 1024, file));

        let now = SystemTime::now();
        let ledger = &self.ledger;
        let receipt_id = ledger.next_receipt_id.max(1);
        let mut receipt = BatchReceipt {
            receipt_id,
            last_changed: altinn::xs_datetime_utc(now),
            status: ReceiptStatus::Ok,
            text: String::new(),
            shipment_reference: facts.shipment_reference.clone(),
            letters: Vec::new(),
        };
        let mut record = Record {
            version: RECORD_VERSION,
            order: ledger.next_order,
            upload_name: name.to_string(),
            processed_at_ms: millis(now),
            system_user_code: facts.system_user_code.clone(),
            sequence_no: None,
            receipt: receipt.clone(),
            receipt_written: false,
            confirmations: None,
        };
        if !verdict.valid {
            receipt.status = ReceiptStatus::ValidationFailed;
            receipt.text = summarise(&verdict);
            record.receipt = receipt;
            return Ok(record);
        }
        if let Some(seq) = &facts.sequence_no {
            let got = seq.trim();
            let expected = ledger.sequence.get(&facts.system_user_code).map(|n| n + 1);
            match got.parse::<u64>() {
                Ok(n) if expected.is_none_or(|e| e == n) => record.sequence_no = Some(n),
                _ => {
                    receipt.status = ReceiptStatus::Rejected;
                    receipt.text = format!(
                        "SequenceNo out of order for SystemUserCode {}: expected {}, got {got}; \
                         the batch was not processed",
                        facts.system_user_code,
                        expected.map_or_else(|| "a whole number".to_string(), |e| e.to_string()),
                    );
                    record.receipt = receipt;
                    return Ok(record);
                }
            }
        }
        let mut accepted: HashSet<&str> = HashSet::new();
        let mut items = Vec::new();
        // Sub-receipts take the ids right after the main receipt's.
        for (id, letter) in (receipt_id + 1..).zip(&facts.letters) {
            let reference = letter.senders_reference.as_str();
            let reportee = letter.reportee.trim();
            let (status, text) = if ledger.seen.contains(reference) || accepted.contains(reference)
            {
                (
                    ReceiptStatus::Rejected,
                    format!("SendersReference '{reference}' already received"),
                )
            } else if self
                .opts
                .reject_reportees
                .iter()
                .any(|r| r.trim() == reportee)
            {
                (
                    ReceiptStatus::Rejected,
                    format!(
                        "Reportee {reportee} cannot receive correspondence (simulated refusal)"
                    ),
                )
            } else {
                accepted.insert(reference);
                items.push(Confirmation {
                    service_code: letter.service_code.trim().to_string(),
                    service_edition: letter
                        .service_edition
                        .as_ref()
                        .map(|e| e.trim().to_string()),
                    reportee: reportee.to_string(),
                    senders_reference: reference.to_string(),
                    read_date_time: None,
                    confirmed_date_time: None,
                });
                (ReceiptStatus::Ok, "Correspondence received".to_string())
            };
            receipt.letters.push(LetterReceipt {
                receipt_id: id,
                senders_reference: reference.to_string(),
                status,
                text,
            });
        }
        let ok = items.len();
        receipt.text = format!(
            "Batch received: {} letters, {ok} OK, {} rejected",
            receipt.letters.len(),
            receipt.letters.len() - ok
        );
        record.receipt = receipt;
        let user = &facts.system_user_code;
        let user_fits = (3..=15).contains(&user.chars().count());
        if self.opts.confirm_delay.is_some() && ok > 0 && user_fits {
            let previous = ledger.confirmation_sequence.get(user).copied().unwrap_or(0);
            let sequence_no = previous + 1;
            let primary = ledger.primary_user.as_deref().is_none_or(|p| p == user);
            record.confirmations = Some(PendingConfirmations {
                file_name: confirmations_file_name(user, sequence_no, primary),
                sequence_no,
                previous_sequence_no: previous,
                items,
                written: false,
            });
        }
        Ok(record)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.records.join(format!("{name}.json"))
    }

    fn save_record(&self, record: &Record) -> Result<(), SimError> {
        let path = self.record_path(&record.upload_name);
        let json = serde_json::to_vec_pretty(record).map_err(|e| SimError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(
            &self.records,
            &format!("{}.json", record.upload_name),
            &json,
        )
        .map_err(io_err("write", &path))
    }

    fn mark_receipt_written(&mut self, name: &str) -> Result<(), SimError> {
        let Some(record) = self.ledger.records.get(name) else {
            return Ok(());
        };
        let mut record = record.clone();
        record.receipt_written = true;
        self.save_record(&record)?;
        self.ledger.records.insert(name.to_string(), record);
        Ok(())
    }

    fn write_receipt_file(&self, record: &Record) -> Result<(), SimError> {
        let name = receipt_file_name(&record.upload_name);
        let xml = write_receipt(&record.receipt);
        write_atomic(&self.receipts, &name, xml.as_bytes())
            .map_err(io_err("write", &self.receipts.join(&name)))
    }

    fn move_to_processed(&self, name: &str) -> Result<(), SimError> {
        let from = self.upload.join(name);
        let to = self.processed.join(name);
        fs::rename(&from, &to).map_err(io_err("move", &from))?;
        sync_dir(&self.processed).map_err(io_err("sync", &self.processed))?;
        sync_dir(&self.upload).map_err(io_err("sync", &self.upload))
    }

    fn write_due_confirmations(&mut self, report: &mut StepReport) -> Result<(), SimError> {
        let Some(delay) = self.opts.confirm_delay else {
            return Ok(());
        };
        let now = SystemTime::now();
        let now_ms = millis(now);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        for name in self.ledger.in_order() {
            let Some(record) = self.ledger.records.get(&name) else {
                continue;
            };
            let Some(pending) = &record.confirmations else {
                continue;
            };
            if pending.written || record.processed_at_ms.saturating_add(delay_ms) > now_ms {
                continue;
            }
            let read = altinn::xs_datetime_utc(now);
            let file = Confirmations {
                sequence_no: pending.sequence_no,
                previous_sequence_no: pending.previous_sequence_no,
                system_user_code: record.system_user_code.clone(),
                shipment_date_time: read.clone(),
                items: pending
                    .items
                    .iter()
                    .map(|c| Confirmation {
                        read_date_time: Some(read.clone()),
                        ..c.clone()
                    })
                    .collect(),
            };
            let path = self.confirmations.join(&pending.file_name);
            let xml = write_confirmations(&file).map_err(|source| SimError::Altinn {
                path: path.clone(),
                source,
            })?;
            write_atomic(&self.confirmations, &pending.file_name, xml.as_bytes())
                .map_err(io_err("write", &path))?;
            let mut record = record.clone();
            if let Some(p) = record.confirmations.as_mut() {
                p.written = true;
            }
            self.save_record(&record)?;
            report.confirmation_files += 1;
            report.log.push(format!(
                "{CONFIRMATIONS_DIR}/{}: {} read confirmations for {name}",
                pending.file_name,
                file.items.len()
            ));
            self.ledger.records.insert(name, record);
        }
        Ok(())
    }
}

/// Process until `stop` is set or `.sim/stop` appears, looking every
/// `opts.poll`.
pub fn run(root: &Path, opts: SimOptions, stop: &AtomicBool) -> Result<(), SimError> {
    run_observed(root, opts, stop, &mut |_| {})
}

/// [`run`], handing every step's report to `observe` (the CLI prints them).
pub fn run_observed(
    root: &Path,
    opts: SimOptions,
    stop: &AtomicBool,
    observe: &mut dyn FnMut(&StepReport),
) -> Result<(), SimError> {
    let poll = opts.poll;
    let mut sim = Simulator::new(root, opts)?;
    let stop_file = sim.stop_file();
    loop {
        let report = sim.step()?;
        observe(&report);
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if stop_file.exists() {
            // Honoured once: the next run starts normally.
            let _ = fs::remove_file(&stop_file);
            return Ok(());
        }
        let mut slept = Duration::ZERO;
        while slept < poll && !stop.load(Ordering::SeqCst) {
            let slice = (poll - slept).min(Duration::from_millis(50));
            std::thread::sleep(slice);
            slept += slice;
        }
    }
}

fn confirmations_file_name(user: &str, sequence_no: u64, primary: bool) -> String {
    if primary {
        format!("confirmations-{sequence_no:08}.xml")
    } else {
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("confirmations-{safe}-{sequence_no:08}.xml")
    }
}

/// At most this many findings are quoted in a ValidationFailed receipt.
const QUOTED_FINDINGS: usize = 10;

fn summarise(report: &FileReport) -> String {
    let total = report.errors.len() as u64 + report.errors_not_listed;
    let mut text = format!(
        "Batch failed validation with {total} error{}:",
        if total == 1 { "" } else { "s" }
    );
    for (i, e) in report.errors.iter().take(QUOTED_FINDINGS).enumerate() {
        let sep = if i == 0 { " " } else { "; " };
        let message: String = e.message.chars().take(300).collect();
        if e.line == 0 {
            text.push_str(&format!("{sep}[{}] {message}", e.code));
        } else {
            text.push_str(&format!(
                "{sep}line {}:{} [{}] {message}",
                e.line, e.column, e.code
            ));
        }
    }
    if total > QUOTED_FINDINGS as u64 {
        text.push_str(&format!("; and {} more", total - QUOTED_FINDINGS as u64));
    }
    text
}

/// How long ago the file arrived: the later of its modification time and
/// (on Unix) its status-change time, which a rename into `upload/` sets.
fn age(meta: &fs::Metadata) -> Duration {
    let mut arrived = meta.modified().unwrap_or(UNIX_EPOCH);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(secs), Ok(nanos)) = (
            u64::try_from(meta.ctime()),
            u32::try_from(meta.ctime_nsec()),
        ) {
            let changed = UNIX_EPOCH + Duration::new(secs, nanos);
            arrived = arrived.max(changed);
        }
    }
    SystemTime::now()
        .duration_since(arrived)
        .unwrap_or(Duration::ZERO)
}

fn millis(t: SystemTime) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Write `dir/name` so that readers see either nothing or all of it: a
/// hidden temporary name in the same folder, fsync, rename, fsync the folder.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make a folder's entries (creations, renames) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// What the simulator needs from a batch beyond the verdict.
#[derive(Debug, Default)]
struct Facts {
    system_user_code: String,
    shipment_reference: String,
    sequence_no: Option<String>,
    letters: Vec<LetterFacts>,
}

#[derive(Debug, Default)]
struct LetterFacts {
    service_code: String,
    service_edition: Option<String>,
    senders_reference: String,
    reportee: String,
}

#[derive(Debug, Clone, Copy)]
enum FactField {
    SystemUserCode,
    ShipmentReference,
    SequenceNo,
    ServiceCode,
    ServiceEdition,
    SendersReference,
    Reportee,
}

/// Longest value kept; valid batches have far shorter ones (the XSD caps
/// them), invalid ones are refused anyway.
const FACT_BYTES: usize = 1024;

/// Collects [`Facts`] in one streaming pass (no schema: the validator has
/// already judged the file).
#[derive(Default)]
struct FactReader {
    facts: Facts,
    depth: usize,
    in_root: bool,
    in_letter: bool,
    capture: Option<FactField>,
    text: Vec<u8>,
}

fn read_facts(input: &mut dyn io::Read) -> Facts {
    let mut reader = FactReader::default();
    // Problems were reported by the validator; what was read is enough for
    // the receipt of a refused batch.
    let _ = xml::parse(None, input, &mut reader);
    reader.facts
}

impl Events for FactReader {
    fn start(&mut self, local: &[u8], in_batch_ns: bool, _pos: Pos) {
        self.depth += 1;
        self.capture = None;
        self.text.clear();
        match self.depth {
            1 => self.in_root = in_batch_ns && local == b"Correspondences",
            2 if self.in_root && in_batch_ns => {
                self.capture = match local {
                    b"SystemUserCode" => Some(FactField::SystemUserCode),
                    b"ShipmentReference" => Some(FactField::ShipmentReference),
                    b"SequenceNo" => Some(FactField::SequenceNo),
                    b"Correspondence" => {
                        self.in_letter = true;
                        self.facts.letters.push(LetterFacts::default());
                        None
                    }
                    _ => None,
                }
            }
            3 if self.in_letter && in_batch_ns => {
                self.capture = match local {
                    b"ServiceCode" => Some(FactField::ServiceCode),
                    b"ServiceEdition" => Some(FactField::ServiceEdition),
                    b"SendersReference" => Some(FactField::SendersReference),
                    b"Reportee" => Some(FactField::Reportee),
                    _ => None,
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &[u8]) {
        if self.capture.is_some() {
            let room = FACT_BYTES.saturating_sub(self.text.len());
            self.text.extend_from_slice(&text[..room.min(text.len())]);
        }
    }

    fn end(&mut self, _local: &[u8], _pos: Pos) {
        if let Some(field) = self.capture.take() {
            let value = String::from_utf8_lossy(&self.text).into_owned();
            let letter = self.facts.letters.last_mut();
            match (field, letter) {
                (FactField::SystemUserCode, _) => self.facts.system_user_code = value,
                (FactField::ShipmentReference, _) => self.facts.shipment_reference = value,
                (FactField::SequenceNo, _) => self.facts.sequence_no = Some(value),
                (FactField::ServiceCode, Some(l)) => l.service_code = value,
                (FactField::ServiceEdition, Some(l)) => l.service_edition = Some(value),
                (FactField::SendersReference, Some(l)) => l.senders_reference = value,
                (FactField::Reportee, Some(l)) => l.reportee = value,
                _ => {}
            }
        }
        if self.depth == 2 {
            self.in_letter = false;
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::altinn::{parse_confirmations, parse_receipt};

    fn batch(dir: &Path, name: &str, shipment: &str, letters: u64, seq: Option<u64>) {
        let spec = crate::gen::Spec {
            shipment_reference: shipment.into(),
            reference_prefix: format!("{shipment}-"),
            letters,
            ..crate::gen::Spec::default()
        };
        let mut out = Vec::new();
        crate::gen::write_batch(&spec, &mut out).unwrap();
        let mut xml = String::from_utf8(out).unwrap();
        if let Some(n) = seq {
            xml = xml.replacen(
                "</ShipmentReference>",
                &format!("</ShipmentReference>\n  <SequenceNo>{n}</SequenceNo>"),
                1,
            );
        }
        let tmp = dir.join(UPLOAD_DIR).join(format!(".{name}.part"));
        fs::write(&tmp, xml).unwrap();
        fs::rename(tmp, dir.join(UPLOAD_DIR).join(name)).unwrap();
    }

    fn opts() -> SimOptions {
        SimOptions {
            confirm_delay: Some(Duration::ZERO),
            ..SimOptions::default()
        }
    }

    fn receipt(root: &Path, name: &str) -> BatchReceipt {
        let path = root.join(RECEIPTS_DIR).join(receipt_file_name(name));
        parse_receipt(&mut File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut sim = Simulator::new(root, opts()).unwrap();
        batch(root, "a.xml", "A", 3, Some(5));
        let r = sim.step().unwrap();
        assert_eq!((r.batches, r.letters_ok, r.confirmation_files), (1, 3, 1));
        drop(sim);

        let mut sim = Simulator::new(root, opts()).unwrap();
        // Same references again, wrong then right SequenceNo.
        batch(root, "b.xml", "A", 3, Some(7));
        batch(root, "c.xml", "A", 3, Some(6));
        let r = sim.step().unwrap();
        assert_eq!((r.batches, r.batches_refused), (2, 1));
        assert_eq!(receipt(root, "b.xml").status, ReceiptStatus::Rejected);
        let c = receipt(root, "c.xml");
        assert_eq!(c.status, ReceiptStatus::Ok);
        assert!(c
            .letters
            .iter()
            .all(|l| l.status == ReceiptStatus::Rejected));
        // Receipt ids continue across the restart: a = 1..=4, b = 5, c = 6..=9.
        assert_eq!(receipt(root, "a.xml").receipt_id, 1);
        assert_eq!(receipt(root, "b.xml").receipt_id, 5);
        assert_eq!(c.receipt_id, 6);
        assert_eq!(c.letters[2].receipt_id, 9);
        // c had no OK letter: no confirmations file.
        assert_eq!(r.confirmation_files, 0);
    }

    #[test]
    fn a_crash_between_record_and_receipt_is_finished_not_redone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = Simulator::new(root, opts()).unwrap();
        batch(root, "a.xml", "A", 2, Some(1));
        // Simulate: decided and recorded, then the process died.
        let path = root.join(UPLOAD_DIR).join("a.xml");
        let record = sim.decide("a.xml", &path).unwrap();
        sim.save_record(&record).unwrap();
        drop(sim);

        let mut sim = Simulator::new(root, opts()).unwrap();
        let r = sim.step().unwrap();
        assert_eq!((r.batches, r.recovered), (0, 1));
        let got = receipt(root, "a.xml");
        assert_eq!(got, record.receipt);
        assert!(root.join(PROCESSED_DIR).join("a.xml").exists());
        assert!(!path.exists());
        // The counter advanced exactly once: 2 is next.
        batch(root, "b.xml", "B", 1, Some(2));
        sim.step().unwrap();
        assert_eq!(receipt(root, "b.xml").status, ReceiptStatus::Ok);
        // Confirmations of a were written once, numbered 1; b's are 2.
        let conf = root.join(CONFIRMATIONS_DIR);
        let c1 =
            parse_confirmations(&mut File::open(conf.join("confirmations-00000001.xml")).unwrap())
                .unwrap();
        let c2 =
            parse_confirmations(&mut File::open(conf.join("confirmations-00000002.xml")).unwrap())
                .unwrap();
        assert_eq!((c1.items.len(), c2.items.len()), (2, 1));
        assert_eq!((c2.sequence_no, c2.previous_sequence_no), (2, 1));
    }

    #[test]
    fn a_second_system_user_gets_its_own_confirmation_names() {
        assert_eq!(
            confirmations_file_name("ABC-1", 3, true),
            "confirmations-00000003.xml"
        );
        assert_eq!(
            confirmations_file_name("XYZ/9", 1, false),
            "confirmations-XYZ_9-00000001.xml"
        );
    }

    #[test]
    fn temporary_names() {
        for t in [".a.xml.part", ".x", "a.xml.tmp", "a.part"] {
            assert!(is_temporary_name(t), "{t}");
        }
        for f in ["a.xml", "part", "a.xml.partial"] {
            assert!(!is_temporary_name(f), "{f}");
        }
    }
}
