//! The simulator's memory: correspondences, attachments and idempotent keys,
//! kept in `DIR` so a restarted simulator carries on where it stopped.
//!
//! Layout of `DIR`:
//! ```text
//! correspondences/<id>.json   the contract view: the request as
//!                             InitializeCorrespondencesExt JSON plus
//!                             `correspondenceId` and the current `status`
//! state/journal.jsonl         every change, one JSON event a line
//! state/token-secret          signs the tokens the simulator issues
//! attachments/<id>.bin        an attachment's bytes
//! tmp/                        uploads while they are read
//! ```
//! The truth is the journal: each change (a correspondence created, a status
//! added, an attachment changed) is appended as one line, in order, before
//! it is visible to anyone. On start the journal is replayed (a line torn by
//! a `kill -9` is skipped: its change was never acknowledged), compacted to
//! one line per record, and every contract view that lags behind is rewritten.
//! The idempotency index is rebuilt from the records, so a key and its
//! correspondence can never disagree.
//!
//! Everything also sits in memory, behind one mutex the routes take on the
//! blocking pool. Appends are cheap; creating and renaming files is not (on a
//! busy disk an `openat` takes a good part of a millisecond), so the contract
//! views are written *after* the mutex is released ([`Views`]): the store
//! hands out what to write, each view with a version so that two writers of
//! one record (a create and the ticker's publish, say) never leave the older
//! content behind. A view is written under a temporary name and renamed, so
//! no reader sees half a file. There is no fsync: the simulator survives its
//! own crashes, not the machine's (it is a test double).
//!
//! The status machine ([`super::state`]) runs in [`Store::advance`], on every
//! request and from a ticker, so the files on disk follow the clock.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::problem::{codes, AltinnError};
use super::state::{self, attachment_status as att, status, AttRecord, CorrRecord, StatusEntry};
use super::validate::{ExistingAttachment, Registry};

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Event {
    /// A correspondence, whole (when created, and in a compacted journal).
    Correspondence(CorrRecord),
    /// A status added to a correspondence.
    Status { id: Uuid, entry: StatusEntry },
    /// An attachment, whole (attachments are small: the bytes are elsewhere).
    Attachment(AttRecord),
}

/// A contract view to write: `DIR/correspondences/<id>.json`.
pub struct View {
    id: Uuid,
    version: u64,
    bytes: Vec<u8>,
}

/// Search filters of `GET /correspondence` (sender side).
#[derive(Debug, Default)]
pub struct Search {
    pub resource_id: String,
    pub role: i64,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub status: Option<u8>,
    pub senders_reference: Option<String>,
    pub idempotent_key: Option<Uuid>,
}

/// A correspondence to create (one per recipient).
pub struct NewCorrespondence {
    pub recipient: String,
    pub reserved: bool,
}

/// A multipart file to keep as a new attachment.
pub struct NewAttachment {
    pub meta: Value,
    pub temp: PathBuf,
    pub size: u64,
}

/// What a create needs besides the recipients.
pub struct CreateRequest {
    pub request: Value,
    pub resource_id: String,
    pub senders_reference: String,
    pub idempotent_key: Option<Uuid>,
    pub ignore_reservation: bool,
    pub requested_publish_time: OffsetDateTime,
    pub existing_attachments: Vec<Uuid>,
}

/// Errors of the store: Altinn's answer, or the disk failing (500).
#[derive(Debug)]
pub enum StoreError {
    Altinn(AltinnError),
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}
impl From<AltinnError> for StoreError {
    fn from(e: AltinnError) -> Self {
        StoreError::Altinn(e)
    }
}

pub struct Store {
    dir: PathBuf,
    publish_delay: Duration,
    journal: File,
    corr: HashMap<Uuid, CorrRecord>,
    /// Per correspondence: how often it changed (orders its views).
    versions: HashMap<Uuid, u64>,
    keys: HashMap<Uuid, Uuid>,
    atts: HashMap<Uuid, AttRecord>,
    /// Correspondences waiting for their publish job: (due, id).
    pending: BTreeSet<(i128, Uuid)>,
    /// Views to write once the lock is released.
    views: Vec<View>,
}

fn nanos(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos()
}

/// Write `bytes` to `path` under a temporary name, then rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = crate::durable::temp_path(path);
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

fn view_path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join("correspondences").join(format!("{id}.json"))
}

impl Store {
    /// Open (or create) the store in `dir`: replay and compact the journal,
    /// bring the contract views up to date.
    pub fn open(dir: &Path, publish_delay: Duration) -> io::Result<Store> {
        for sub in ["correspondences", "state", "attachments", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        for entry in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        let journal_path = dir.join("state/journal.jsonl");
        let (corr, atts) = replay(&journal_path)?;
        // Compact: one line per record, then append from there.
        let mut compacted = Vec::new();
        for a in atts.values() {
            serde_json::to_writer(&mut compacted, &Event::Attachment(a.clone()))?;
            compacted.push(b'\n');
        }
        for c in corr.values() {
            serde_json::to_writer(&mut compacted, &Event::Correspondence(c.clone()))?;
            compacted.push(b'\n');
        }
        write_atomic(&journal_path, &compacted)?;
        let journal = OpenOptions::new().append(true).open(&journal_path)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            publish_delay,
            journal,
            corr: HashMap::new(),
            versions: HashMap::new(),
            keys: HashMap::new(),
            atts,
            pending: BTreeSet::new(),
            views: Vec::new(),
        };
        for rec in corr.into_values() {
            if let Some(k) = rec.idempotent_key {
                store.keys.insert(k, rec.id);
            }
            if rec.awaiting_publish() {
                store.pending.insert((nanos(rec.publish_at), rec.id));
            }
            // A view may lag its record by the last change before a crash.
            let path = view_path(dir, rec.id);
            let shown = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string));
            if shown.as_deref() != Some(state::status_name(rec.highest().status)) {
                write_atomic(&path, &view_bytes(&rec))?;
            }
            store.corr.insert(rec.id, rec);
        }
        Ok(store)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn attachment_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("attachments").join(format!("{id}.bin"))
    }

    /// The views changed since the last call, for [`Views::write`]: the
    /// latest of each record only (a publish adds two statuses at once).
    pub fn take_views(&mut self) -> Vec<View> {
        let mut views = std::mem::take(&mut self.views);
        let mut seen = std::collections::HashSet::new();
        views.reverse();
        views.retain(|v| seen.insert(v.id));
        views.reverse();
        views
    }

    fn log(&mut self, e: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(e)?;
        line.push(b'\n');
        self.journal.write_all(&line)
    }

    /// A correspondence changed: queue its view.
    fn touched(&mut self, id: Uuid) {
        let Some(rec) = self.corr.get(&id) else {
            return;
        };
        let version = self.versions.entry(id).or_insert(0);
        *version += 1;
        self.views.push(View {
            id,
            version: *version,
            bytes: view_bytes(rec),
        });
    }

    /// Add a status to a correspondence: journal, memory, view.
    fn add_status(&mut self, id: Uuid, entry: StatusEntry) -> io::Result<()> {
        self.log(&Event::Status {
            id,
            entry: entry.clone(),
        })?;
        if let Some(rec) = self.corr.get_mut(&id) {
            rec.statuses.push(entry);
        }
        self.touched(id);
        Ok(())
    }

    fn save_att(&mut self, rec: AttRecord) -> io::Result<()> {
        self.log(&Event::Attachment(rec.clone()))?;
        self.atts.insert(rec.id, rec);
        Ok(())
    }

    pub fn key_used(&self, key: Uuid) -> bool {
        self.keys.contains_key(&key)
    }

    /// What initialize needs to know of existing attachments.
    pub fn existing(
        &mut self,
        ids: &[Uuid],
        now: OffsetDateTime,
    ) -> HashMap<Uuid, ExistingAttachment> {
        ids.iter()
            .filter_map(|id| {
                let a = self.attachment(*id, now)?;
                Some((
                    *id,
                    ExistingAttachment {
                        published: a.is_published(),
                        size: a.size,
                    },
                ))
            })
            .collect()
    }

    /// Create the correspondences of one request, atomically with respect to
    /// its idempotent key: a key taken meanwhile (a concurrent duplicate) is a
    /// 409 and nothing is created. Returns the records and the attachment ids.
    pub fn create(
        &mut self,
        req: CreateRequest,
        recipients: Vec<NewCorrespondence>,
        files: Vec<NewAttachment>,
        now: OffsetDateTime,
    ) -> Result<(Vec<CorrRecord>, Vec<Uuid>), StoreError> {
        if req
            .idempotent_key
            .is_some_and(|k| self.keys.contains_key(&k))
        {
            return Err(codes::duplicate_idempotent_key().into());
        }
        let corr_ids: Vec<Uuid> = recipients.iter().map(|_| Uuid::new_v4()).collect();
        // New attachments: kept, scanned at once, shared by every recipient.
        let mut new_ids = Vec::new();
        for f in files {
            let id = Uuid::new_v4();
            fs::rename(&f.temp, self.attachment_path(id))?;
            self.save_att(AttRecord {
                id,
                resource_id: req.resource_id.clone(),
                meta: f.meta,
                statuses: vec![
                    StatusEntry::new(att::INITIALIZED, "Initialized", now),
                    StatusEntry::new(att::UPLOAD_PROCESSING, "UploadProcessing", now),
                    StatusEntry::new(att::PUBLISHED, "Published", now),
                ],
                size: f.size,
                correspondence_ids: corr_ids.clone(),
                created: now,
                scan_done_at: None,
            })?;
            new_ids.push(id);
        }
        for id in &req.existing_attachments {
            if let Some(mut a) = self.atts.get(id).cloned() {
                a.correspondence_ids.extend(&corr_ids);
                self.save_att(a)?;
            }
        }
        let publish_at = req.requested_publish_time.max(now) + self.publish_delay;
        let attachment_ids: Vec<Uuid> = new_ids
            .iter()
            .chain(&req.existing_attachments)
            .copied()
            .collect();
        let mut out = Vec::new();
        for (r, id) in recipients.into_iter().zip(corr_ids) {
            let rec = CorrRecord {
                id,
                recipient: r.recipient,
                resource_id: req.resource_id.clone(),
                senders_reference: req.senders_reference.clone(),
                idempotent_key: req.idempotent_key,
                ignore_reservation: req.ignore_reservation,
                created: now,
                requested_publish_time: req.requested_publish_time,
                publish_at,
                statuses: state::initial_statuses(r.reserved, !new_ids.is_empty(), now),
                attachment_ids: attachment_ids.clone(),
                request: req.request.clone(),
            };
            self.log(&Event::Correspondence(rec.clone()))?;
            if let Some(k) = rec.idempotent_key {
                self.keys.insert(k, id);
            }
            self.pending.insert((nanos(publish_at), id));
            self.corr.insert(id, rec.clone());
            self.touched(id);
            out.push(rec);
        }
        Ok((out, attachment_ids))
    }

    /// Run every publish job that is due.
    pub fn advance(&mut self, now: OffsetDateTime, registry: &Registry) -> io::Result<()> {
        while let Some(&(due, id)) = self.pending.first() {
            if due > nanos(now) {
                break;
            }
            self.pending.pop_first();
            let Some(rec) = self.corr.get(&id).filter(|r| r.awaiting_publish()) else {
                continue;
            };
            for entry in state::publish(rec, registry) {
                self.add_status(id, entry)?;
            }
        }
        Ok(())
    }

    /// When the next publish job falls due.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let (due, _) = self.pending.first()?;
        OffsetDateTime::from_unix_timestamp_nanos(*due).ok()
    }

    /// A correspondence as the sender may see it: `None` when unknown or purged.
    pub fn get(&self, id: Uuid) -> Option<&CorrRecord> {
        self.corr.get(&id).filter(|r| !r.purged())
    }

    pub fn attachments(&self) -> &HashMap<Uuid, AttRecord> {
        &self.atts
    }

    /// Test hook: the recipient opens the letter (Fetched, then Read).
    pub fn mark_read(&mut self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let rec = self.get(id).ok_or_else(codes::not_found)?;
        if !rec.has_been(status::PUBLISHED) || rec.has_been(status::FAILED) {
            return Err(StoreError::Altinn(AltinnError {
                code: 0,
                status: axum::http::StatusCode::CONFLICT,
                message: format!(
                    "correspondence {id} is {}, not published: a recipient cannot read it",
                    state::status_name(rec.highest().status)
                ),
            }));
        }
        if !rec.has_been(status::READ) {
            self.add_status(id, StatusEntry::new(status::FETCHED, "Fetched", now))?;
            self.add_status(id, StatusEntry::new(status::READ, "Read", now))?;
        }
        Ok(())
    }

    /// `DELETE /correspondence/{id}/purge` by the sender: 1001, 1014, 1013.
    pub fn purge(&mut self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let rec = self.corr.get(&id).ok_or_else(codes::not_found)?;
        if rec.purged() {
            return Err(codes::already_purged().into());
        }
        if !matches!(
            rec.highest().status,
            status::INITIALIZED | status::READY_FOR_PUBLISH | status::FAILED
        ) {
            return Err(codes::cannot_purge_published().into());
        }
        self.add_status(
            id,
            StatusEntry::new(status::PURGED_BY_ALTINN, "PurgedByAltinn", now),
        )?;
        Ok(())
    }

    /// `GET /correspondence`: ids, newest requested publish time first, ≤1000.
    pub fn search(&self, s: &Search) -> Vec<Uuid> {
        if let Some(k) = s.idempotent_key {
            // Altinn looks the key up globally, whatever the other filters say.
            return self.keys.get(&k).copied().into_iter().collect();
        }
        // The simulator's caller is the sender of everything, the recipient
        // of nothing.
        if s.role == 0 {
            return vec![];
        }
        let mut hits: Vec<&CorrRecord> = self
            .corr
            .values()
            .filter(|r| r.resource_id == s.resource_id)
            .filter(|r| s.from.is_none_or(|f| r.requested_publish_time > f))
            .filter(|r| s.to.is_none_or(|t| r.requested_publish_time < t))
            .filter(|r| s.status.is_none_or(|st| r.has_been(st)))
            .filter(|r| {
                s.senders_reference
                    .as_deref()
                    .is_none_or(|sr| r.senders_reference == sr)
            })
            .collect();
        hits.sort_by_key(|r| std::cmp::Reverse(r.requested_publish_time));
        hits.into_iter().take(1000).map(|r| r.id).collect()
    }

    // -- attachments -----------------------------------------------------

    /// `POST /attachment`: a new attachment, Initialized.
    pub fn init_attachment(
        &mut self,
        resource_id: String,
        meta: Value,
        now: OffsetDateTime,
    ) -> io::Result<Uuid> {
        let id = Uuid::new_v4();
        self.save_att(AttRecord {
            id,
            resource_id,
            meta,
            statuses: vec![StatusEntry::new(att::INITIALIZED, "Initialized", now)],
            size: 0,
            correspondence_ids: vec![],
            created: now,
            scan_done_at: None,
        })?;
        Ok(id)
    }

    /// An attachment, with a finished scan applied.
    pub fn attachment(&mut self, id: Uuid, now: OffsetDateTime) -> Option<&AttRecord> {
        if let Some(a) = self.atts.get(&id).filter(|a| a.scan_due(now)) {
            let mut a = a.clone();
            let at = a.scan_done_at.unwrap_or(now);
            a.statuses
                .push(StatusEntry::new(att::PUBLISHED, "Published", at));
            if let Err(e) = self.save_att(a) {
                tracing::warn!(error = %e, "cannot journal a published attachment");
            }
        }
        self.atts.get(&id)
    }

    /// Checks before `POST /attachment/{id}/upload` reads the body, in
    /// `UploadAttachmentHandler`'s order: found (2001), a declared length
    /// that is 0 or over 50 GB (2004), not uploaded yet (2005), not linked
    /// to a correspondence (2003).
    pub fn check_upload(&self, id: Uuid, content_length: Option<u64>) -> Result<(), AltinnError> {
        let a = self.atts.get(&id).ok_or_else(codes::attachment_not_found)?;
        if content_length.is_some_and(|n| n == 0 || n > 50_000_000_000) {
            return Err(codes::invalid_file_size("50GB"));
        }
        if a.has_been(att::UPLOAD_PROCESSING) {
            return Err(codes::already_uploaded());
        }
        if !a.correspondence_ids.is_empty() {
            return Err(codes::upload_to_linked());
        }
        Ok(())
    }

    /// An upload broke off: UploadProcessing was set before the bytes came,
    /// so the attachment is Failed and cannot be uploaded again (2005).
    pub fn fail_upload(&mut self, id: Uuid, now: OffsetDateTime) -> io::Result<()> {
        if let Some(mut a) = self.atts.get(&id).cloned() {
            a.statuses.push(StatusEntry::new(
                att::UPLOAD_PROCESSING,
                "UploadProcessing",
                now,
            ));
            a.statuses
                .push(StatusEntry::new(att::FAILED, "UploadInterrupted", now));
            self.save_att(a)?;
        }
        Ok(())
    }

    /// An upload finished: keep the bytes, UploadProcessing now, Published
    /// when the scan is done (at once, in the simulator; seen on the next read).
    pub fn finish_upload(
        &mut self,
        id: Uuid,
        temp: &Path,
        size: u64,
        now: OffsetDateTime,
    ) -> Result<AttRecord, StoreError> {
        self.check_upload(id, None)?;
        fs::rename(temp, self.attachment_path(id))?;
        let mut a = self
            .atts
            .get(&id)
            .cloned()
            .ok_or_else(codes::attachment_not_found)?;
        a.statuses.push(StatusEntry::new(
            att::UPLOAD_PROCESSING,
            "UploadProcessing",
            now,
        ));
        a.size = size;
        a.scan_done_at = Some(now);
        self.save_att(a.clone())?;
        Ok(a)
    }

    /// `DELETE /attachment/{id}`: 2001, 2006, 2007, else Purged.
    pub fn purge_attachment(&mut self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut a = self
            .atts
            .get(&id)
            .cloned()
            .ok_or_else(codes::attachment_not_found)?;
        if a.has_been(att::PURGED) {
            return Err(codes::attachment_purged().into());
        }
        if !a.correspondence_ids.is_empty() {
            return Err(codes::attachment_linked().into());
        }
        a.statuses.push(StatusEntry::new(
            att::PURGED,
            "Attachment has been purged",
            now,
        ));
        self.save_att(a)?;
        let _ = fs::remove_file(self.attachment_path(id));
        Ok(())
    }
}

fn view_bytes(rec: &CorrRecord) -> Vec<u8> {
    serde_json::to_vec_pretty(&rec.contract_view()).unwrap_or_default()
}

/// Replay the journal: the records as of its last complete line.
fn replay(path: &Path) -> io::Result<(HashMap<Uuid, CorrRecord>, HashMap<Uuid, AttRecord>)> {
    let mut corr = HashMap::new();
    let mut atts = HashMap::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((corr, atts)),
        Err(e) => return Err(e),
    };
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Event>(&line) {
            Ok(Event::Correspondence(r)) if !r.statuses.is_empty() => {
                corr.insert(r.id, r);
            }
            Ok(Event::Status { id, entry }) => {
                if let Some(r) = corr.get_mut(&id) {
                    r.statuses.push(entry);
                }
            }
            Ok(Event::Attachment(a)) if !a.statuses.is_empty() => {
                atts.insert(a.id, a);
            }
            Ok(_) => tracing::warn!(line = n + 1, "skipping a record without statuses"),
            // Torn by a crash mid-write: that change was never acknowledged.
            Err(e) => {
                tracing::warn!(line = n + 1, error = %e, "skipping an unreadable journal line")
            }
        }
    }
    Ok((corr, atts))
}

/// Writes contract views outside the store's lock, in parallel, never
/// replacing a newer view of a record with an older one.
pub struct Views {
    dir: PathBuf,
    /// Striped by record: the version last written of each record.
    stripes: Vec<Mutex<HashMap<Uuid, u64>>>,
}

impl Views {
    pub fn new(dir: &Path) -> Views {
        Views {
            dir: dir.to_path_buf(),
            stripes: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn write(&self, v: &View) -> io::Result<()> {
        let stripe = &self.stripes[(v.id.as_u128() % 64) as usize];
        let mut written = stripe.lock().unwrap_or_else(PoisonError::into_inner);
        if written.get(&v.id).is_some_and(|w| *w >= v.version) {
            return Ok(());
        }
        write_atomic(&view_path(&self.dir, v.id), &v.bytes)?;
        written.insert(v.id, v.version);
        Ok(())
    }
}
