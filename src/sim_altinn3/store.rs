//! The simulator's memory: correspondences, attachments and idempotent keys,
//! kept in `DIR` so a restarted simulator carries on where it stopped.
//!
//! Layout of `DIR`:
//! ```text
//! correspondences/<id>.json        the contract view: the request as
//!                                  InitializeCorrespondencesExt JSON plus
//!                                  `correspondenceId` and the current `status`
//! state/correspondences/<id>.json  the simulator's record (statuses, times, …)
//! state/attachments/<id>.json      an attachment's record
//! attachments/<id>.bin             an attachment's bytes
//! tmp/                             multipart files while a request is read
//! ```
//! Every file is written under a temporary name and renamed, so a reader (or
//! a simulator killed with `kill -9`) never sees half a file. The record is
//! written before the contract view; on start the view is rebuilt from the
//! record where it is missing or behind. There is no fsync: the simulator
//! survives its own crashes, not the machine's (it is a test double, and
//! an fsync per write would make it the bottleneck of every benchmark).
//!
//! All of it sits in memory too (thousands of records are a few MB), behind
//! one mutex that the routes take on the blocking pool. The idempotency index
//! is rebuilt from the records, so a key and its correspondence are stored in
//! one write and can never disagree.
//!
//! The status machine lives here as well ([`Store::advance`]): a
//! correspondence is published at `max(requestedPublishTime, created) +
//! publish delay`, or fails then. [`Store::advance`] runs on every read and
//! from a ticker, so the files on disk follow the clock.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{format_time, ts, CORRESPONDENCE_STATUS};
use super::problem::{codes, AltinnError};
use super::validate::Registry;

/// `CorrespondenceStatusExt` values the simulator sets.
pub mod status {
    pub const INITIALIZED: u8 = 0;
    pub const READY_FOR_PUBLISH: u8 = 1;
    pub const PUBLISHED: u8 = 2;
    pub const FETCHED: u8 = 3;
    pub const READ: u8 = 4;
    pub const PURGED_BY_ALTINN: u8 = 8;
    pub const RESERVED: u8 = 10;
    pub const FAILED: u8 = 11;
}

/// `AttachmentStatusExt`.
pub const ATTACHMENT_STATUS: &[&str] = &[
    "Initialized",
    "UploadProcessing",
    "Published",
    "Purged",
    "Failed",
    "Expired",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    pub status: u8,
    pub status_text: String,
    #[serde(with = "ts")]
    pub status_changed: OffsetDateTime,
}

impl StatusEntry {
    fn new(status: u8, text: &str, at: OffsetDateTime) -> Self {
        StatusEntry {
            status,
            status_text: text.to_string(),
            status_changed: at,
        }
    }
}

fn status_name(s: u8) -> &'static str {
    CORRESPONDENCE_STATUS
        .get(usize::from(s))
        .copied()
        .unwrap_or("Unknown")
}

/// One correspondence (one recipient of a request).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrRecord {
    pub id: Uuid,
    pub recipient: String,
    pub resource_id: String,
    pub senders_reference: String,
    pub idempotent_key: Option<Uuid>,
    pub ignore_reservation: bool,
    #[serde(with = "ts")]
    pub created: OffsetDateTime,
    #[serde(with = "ts")]
    pub requested_publish_time: OffsetDateTime,
    /// When the publish job runs.
    #[serde(with = "ts")]
    pub publish_at: OffsetDateTime,
    #[serde(with = "ts::opt", default)]
    pub published: Option<OffsetDateTime>,
    #[serde(with = "ts::opt", default)]
    pub read: Option<OffsetDateTime>,
    pub statuses: Vec<StatusEntry>,
    pub attachment_ids: Vec<Uuid>,
    /// The request, as InitializeCorrespondencesExt JSON.
    pub request: Value,
}

impl CorrRecord {
    /// Altinn's "highest status": the largest enum value, ignoring Fetched.
    pub fn highest(&self) -> &StatusEntry {
        self.statuses
            .iter()
            .filter(|s| s.status != status::FETCHED)
            .max_by_key(|s| s.status)
            .unwrap_or(&self.statuses[0])
    }

    pub fn has_been(&self, s: u8) -> bool {
        self.statuses.iter().any(|e| e.status == s)
    }

    fn purged(&self) -> bool {
        self.has_been(status::PURGED_BY_ALTINN) || self.has_been(7)
    }

    fn awaiting_publish(&self) -> bool {
        !self.has_been(status::PUBLISHED) && !self.has_been(status::FAILED) && !self.purged()
    }

    /// `DIR/correspondences/<id>.json`: the request, its id, its status.
    pub fn contract_view(&self) -> Value {
        let mut v = self.request.clone();
        if let Value::Object(m) = &mut v {
            m.insert("correspondenceId".into(), json!(self.id));
            m.insert("status".into(), json!(status_name(self.highest().status)));
        }
        v
    }

    /// `CorrespondenceOverviewExt` as a sender sees it (content blanked once
    /// published, as `GetCorrespondenceOverviewHandler` does).
    pub fn overview(&self, attachments: &HashMap<Uuid, AttRecord>) -> Value {
        let c = &self.request["correspondence"];
        let h = self.highest();
        let content = if self.has_been(status::PUBLISHED) {
            json!({"language": "no", "messageTitle": "", "messageSummary": "", "messageBody": "", "attachments": []})
        } else {
            let mut content = c["content"].clone();
            let list: Vec<Value> = self
                .attachment_ids
                .iter()
                .filter_map(|id| attachments.get(id))
                .map(|a| a.as_correspondence_attachment())
                .collect();
            content["attachments"] = Value::Array(list);
            if content
                .get("language")
                .is_none_or(|l| l.as_str().is_none_or(|s| s.trim().is_empty()))
            {
                content["language"] = json!("nb");
            }
            content
        };
        json!({
            "recipient": self.recipient,
            "correspondenceId": self.id,
            "content": content,
            "created": format_time(self.created),
            "status": status_name(h.status),
            "statusText": h.status_text,
            "statusChanged": format_time(h.status_changed),
            "notifications": [],
            "altinn2CorrespondenceId": null,
            "published": self.published.map(format_time),
            "read": self.read.map(format_time),
            "resourceId": self.resource_id,
            "sender": "urn:altinn:organization:identifier-no:991825827",
            "sendersReference": self.senders_reference,
            "messageSender": c.get("messageSender").cloned().unwrap_or(json!("")),
            "requestedPublishTime": format_time(self.requested_publish_time),
            "dueDateTime": c.get("dueDateTime").cloned().unwrap_or(Value::Null),
            "externalReferences": c.get("externalReferences").cloned().unwrap_or(json!([])),
            "propertyList": c.get("propertyList").cloned().unwrap_or(json!({})),
            "replyOptions": c.get("replyOptions").cloned().unwrap_or(json!([])),
            "notification": null,
            "ignoreReservation": self.ignore_reservation,
            "isConfirmationNeeded": c.get("isConfirmationNeeded").cloned().unwrap_or(json!(false)),
            "isConfidential": c.get("isConfidential").cloned().unwrap_or(json!(false)),
            "allowForwarding": c.get("allowForwarding").cloned().unwrap_or(json!(false)),
        })
    }

    /// The overview plus `statusHistory` (`CorrespondenceDetailsExt`, without
    /// notification details: the simulator sends no notifications).
    pub fn details(&self, attachments: &HashMap<Uuid, AttRecord>) -> Value {
        let mut v = self.overview(attachments);
        v["statusHistory"] = Value::Array(
            self.statuses
                .iter()
                .filter(|s| s.status != status::PURGED_BY_ALTINN)
                .map(|s| {
                    json!({"status": status_name(s.status), "statusText": s.status_text, "statusChanged": format_time(s.status_changed)})
                })
                .collect(),
        );
        v
    }
}

/// One attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttRecord {
    pub id: Uuid,
    pub resource_id: String,
    /// `fileName`, `displayName`, `sendersReference`, … as given.
    pub meta: Value,
    pub statuses: Vec<StatusEntry>,
    pub size: u64,
    pub correspondence_ids: Vec<Uuid>,
    #[serde(with = "ts")]
    pub created: OffsetDateTime,
    /// When the (simulated) malware scan passes after an upload.
    #[serde(with = "ts::opt", default)]
    pub scan_done_at: Option<OffsetDateTime>,
}

impl AttRecord {
    pub fn latest(&self) -> &StatusEntry {
        self.statuses.last().unwrap_or(&self.statuses[0])
    }
    pub fn has_been(&self, s: u8) -> bool {
        self.statuses.iter().any(|e| e.status == s)
    }
    pub fn is_published(&self) -> bool {
        self.latest().status == 2
    }
    fn status_name(&self) -> &'static str {
        ATTACHMENT_STATUS
            .get(usize::from(self.latest().status))
            .copied()
            .unwrap_or("Initialized")
    }

    /// `AttachmentOverviewExt`.
    pub fn overview(&self) -> Value {
        let mut v = self.meta.clone();
        let l = self.latest();
        v["attachmentId"] = json!(self.id);
        v["resourceId"] = json!(self.resource_id);
        v["status"] = json!(self.status_name());
        v["statusText"] = json!(l.status_text);
        v["statusChanged"] = json!(format_time(l.status_changed));
        v["correspondenceIds"] = json!(self.correspondence_ids);
        v["dataType"] = json!("");
        v["sender"] = json!("urn:altinn:organization:identifier-no:991825827");
        v
    }

    /// `CorrespondenceAttachmentExt` inside an overview's content.
    fn as_correspondence_attachment(&self) -> Value {
        let mut v = self.meta.clone();
        let l = self.latest();
        v["id"] = json!(self.id);
        v["created"] = json!(format_time(self.created));
        v["dataLocationType"] = json!("AltinnCorrespondenceAttachment");
        v["status"] = json!(self.status_name());
        v["statusText"] = json!(l.status_text);
        v["statusChanged"] = json!(format_time(l.status_changed));
        v["dataType"] = json!("");
        v["expirationTime"] = Value::Null;
        v
    }
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
    corr: HashMap<Uuid, CorrRecord>,
    keys: HashMap<Uuid, Uuid>,
    atts: HashMap<Uuid, AttRecord>,
    /// Correspondences waiting for their publish job: (due, id).
    pending: BTreeSet<(i128, Uuid)>,
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

fn read_records<T: for<'de> Deserialize<'de>>(dir: &Path) -> io::Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || !name.ends_with(".json") {
            let _ = fs::remove_file(&path); // a temporary file of an interrupted write
            continue;
        }
        let bytes = fs::read(&path)?;
        let record = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        out.push(record);
    }
    Ok(out)
}

impl Store {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path, publish_delay: Duration) -> io::Result<Store> {
        for sub in [
            "correspondences",
            "state/correspondences",
            "state/attachments",
            "attachments",
            "tmp",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        for entry in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        let mut store = Store {
            dir: dir.to_path_buf(),
            publish_delay,
            corr: HashMap::new(),
            keys: HashMap::new(),
            atts: HashMap::new(),
            pending: BTreeSet::new(),
        };
        for rec in read_records::<AttRecord>(&dir.join("state/attachments"))? {
            store.atts.insert(rec.id, rec);
        }
        for rec in read_records::<CorrRecord>(&dir.join("state/correspondences"))? {
            if let Some(k) = rec.idempotent_key {
                store.keys.insert(k, rec.id);
            }
            if rec.awaiting_publish() {
                store.pending.insert((nanos(rec.publish_at), rec.id));
            }
            // The record is written first: bring its contract view up to date.
            let view = store.contract_path(rec.id);
            let current = fs::read(&view)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string));
            if current.as_deref() != Some(status_name(rec.highest().status)) {
                write_atomic(
                    &view,
                    &serde_json::to_vec_pretty(&rec.contract_view()).unwrap_or_default(),
                )?;
            }
            store.corr.insert(rec.id, rec);
        }
        Ok(store)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn contract_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("correspondences").join(format!("{id}.json"))
    }

    fn save_corr(&self, rec: &CorrRecord) -> io::Result<()> {
        let state = self
            .dir
            .join("state/correspondences")
            .join(format!("{}.json", rec.id));
        write_atomic(&state, &serde_json::to_vec(rec).unwrap_or_default())?;
        write_atomic(
            &self.contract_path(rec.id),
            &serde_json::to_vec_pretty(&rec.contract_view()).unwrap_or_default(),
        )
    }

    fn save_att(&self, rec: &AttRecord) -> io::Result<()> {
        let state = self
            .dir
            .join("state/attachments")
            .join(format!("{}.json", rec.id));
        write_atomic(&state, &serde_json::to_vec(rec).unwrap_or_default())
    }

    pub fn attachment_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("attachments").join(format!("{id}.bin"))
    }

    pub fn key_used(&self, key: Uuid) -> bool {
        self.keys.contains_key(&key)
    }

    /// What initialize needs to know of existing attachments.
    pub fn existing(
        &mut self,
        ids: &[Uuid],
        now: OffsetDateTime,
    ) -> HashMap<Uuid, super::validate::ExistingAttachment> {
        ids.iter()
            .filter_map(|id| {
                let a = self.attachment(*id, now)?;
                Some((
                    *id,
                    super::validate::ExistingAttachment {
                        published: a.is_published(),
                        size: a.size,
                    },
                ))
            })
            .collect()
    }

    /// Create the correspondences of one request, atomically with respect to
    /// its idempotent key: a key taken meanwhile (a concurrent duplicate) is a
    /// 409 and nothing is created. Returns the records and the new
    /// attachments' ids.
    pub fn create(
        &mut self,
        req: CreateRequest,
        recipients: Vec<NewCorrespondence>,
        files: Vec<NewAttachment>,
        now: OffsetDateTime,
    ) -> Result<(Vec<CorrRecord>, Vec<Uuid>), StoreError> {
        if let Some(k) = req.idempotent_key {
            if self.keys.contains_key(&k) {
                return Err(codes::duplicate_idempotent_key().into());
            }
        }
        let corr_ids: Vec<Uuid> = recipients.iter().map(|_| Uuid::new_v4()).collect();
        // New attachments: kept, scanned at once, shared by every recipient.
        let mut new_ids = Vec::new();
        for f in files {
            let id = Uuid::new_v4();
            fs::rename(&f.temp, self.attachment_path(id))?;
            let rec = AttRecord {
                id,
                resource_id: req.resource_id.clone(),
                meta: f.meta,
                statuses: vec![
                    StatusEntry::new(0, "Initialized", now),
                    StatusEntry::new(1, "UploadProcessing", now),
                    StatusEntry::new(2, "Published", now),
                ],
                size: f.size,
                correspondence_ids: corr_ids.clone(),
                created: now,
                scan_done_at: None,
            };
            self.save_att(&rec)?;
            self.atts.insert(id, rec);
            new_ids.push(id);
        }
        for id in &req.existing_attachments {
            if let Some(a) = self.atts.get_mut(id) {
                a.correspondence_ids.extend(&corr_ids);
                let a = a.clone();
                self.save_att(&a)?;
            }
        }
        let publish_at = req.requested_publish_time.max(now) + self.publish_delay;
        let mut out = Vec::new();
        for (r, id) in recipients.into_iter().zip(corr_ids) {
            let mut statuses = vec![StatusEntry::new(status::INITIALIZED, "Initialized", now)];
            if r.reserved {
                statuses.push(StatusEntry::new(status::RESERVED, "Reserved", now));
            } else if new_ids.is_empty() {
                // Every attachment (if any) is an existing, published one.
                statuses.push(StatusEntry::new(
                    status::READY_FOR_PUBLISH,
                    "ReadyForPublish",
                    now,
                ));
            }
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
                published: None,
                read: None,
                statuses,
                attachment_ids: new_ids
                    .iter()
                    .chain(&req.existing_attachments)
                    .copied()
                    .collect(),
                request: req.request.clone(),
            };
            self.save_corr(&rec)?;
            if let Some(k) = rec.idempotent_key {
                self.keys.insert(k, id);
            }
            self.pending.insert((nanos(publish_at), id));
            self.corr.insert(id, rec.clone());
            out.push(rec);
        }
        let mut attachment_ids = new_ids;
        attachment_ids.extend(&req.existing_attachments);
        Ok((out, attachment_ids))
    }

    /// Run every publish job that is due. Returns how many records changed.
    pub fn advance(&mut self, now: OffsetDateTime, registry: &Registry) -> io::Result<usize> {
        let mut changed = 0;
        while let Some(&(due, id)) = self.pending.first() {
            if due > nanos(now) {
                break;
            }
            self.pending.pop_first();
            let Some(rec) = self.corr.get_mut(&id) else {
                continue;
            };
            if !rec.awaiting_publish() {
                continue;
            }
            let at = rec.publish_at;
            // PublishCorrespondenceHandler's checks, in its order.
            let failure = if registry.fails_at_publish(&rec.recipient) {
                Some(format!(
                    "Party for recipient {} not found in Altinn Register when publishing",
                    rec.recipient
                ))
            } else if rec.has_been(status::RESERVED) {
                Some(format!(
                    "Recipient of {id} has been set to reserved in kontakt- og reserverasjonsregisteret ('KRR')"
                ))
            } else {
                None
            };
            match failure {
                Some(text) => rec
                    .statuses
                    .push(StatusEntry::new(status::FAILED, &text, at)),
                None => {
                    if rec.highest().status != status::READY_FOR_PUBLISH {
                        rec.statuses.push(StatusEntry::new(
                            status::READY_FOR_PUBLISH,
                            "ReadyForPublish",
                            at,
                        ));
                    }
                    rec.statuses
                        .push(StatusEntry::new(status::PUBLISHED, "Published", at));
                    rec.published = Some(at);
                }
            }
            let rec = rec.clone();
            self.save_corr(&rec)?;
            changed += 1;
        }
        Ok(changed)
    }

    /// A correspondence as the sender may see it: `None` when unknown or purged.
    pub fn get(&self, id: Uuid) -> Option<&CorrRecord> {
        self.corr.get(&id).filter(|r| !r.purged())
    }

    pub fn attachments(&self) -> &HashMap<Uuid, AttRecord> {
        &self.atts
    }

    /// Test hook: the recipient opens the letter (status Read).
    pub fn mark_read(&mut self, id: Uuid, now: OffsetDateTime) -> Result<CorrRecord, StoreError> {
        let rec = self
            .corr
            .get_mut(&id)
            .filter(|r| !r.purged())
            .ok_or_else(codes::not_found)?;
        if !rec.has_been(status::PUBLISHED) || rec.has_been(status::FAILED) {
            return Err(StoreError::Altinn(AltinnError {
                code: 0,
                status: axum::http::StatusCode::CONFLICT,
                message: format!(
                    "correspondence {id} is {}, not published: a recipient cannot read it",
                    status_name(rec.highest().status)
                ),
            }));
        }
        if rec.read.is_none() {
            rec.statuses
                .push(StatusEntry::new(status::FETCHED, "Fetched", now));
            rec.statuses
                .push(StatusEntry::new(status::READ, "Read", now));
            rec.read = Some(now);
            let rec = rec.clone();
            self.save_corr(&rec)?;
        }
        Ok(self.corr[&id].clone())
    }

    /// `DELETE /correspondence/{id}/purge` by the sender.
    pub fn purge(&mut self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let rec = self.corr.get_mut(&id).ok_or_else(codes::not_found)?;
        if rec.purged() {
            return Err(codes::already_purged().into());
        }
        if !matches!(
            rec.highest().status,
            status::INITIALIZED | status::READY_FOR_PUBLISH | status::FAILED
        ) {
            return Err(codes::cannot_purge_published().into());
        }
        rec.statuses.push(StatusEntry::new(
            status::PURGED_BY_ALTINN,
            "PurgedByAltinn",
            now,
        ));
        let rec = rec.clone();
        self.save_corr(&rec)?;
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
                    .is_none_or(|sr| sr.is_empty() || r.senders_reference == sr)
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
        let rec = AttRecord {
            id,
            resource_id,
            meta,
            statuses: vec![StatusEntry::new(0, "Initialized", now)],
            size: 0,
            correspondence_ids: vec![],
            created: now,
            scan_done_at: None,
        };
        self.save_att(&rec)?;
        self.atts.insert(id, rec);
        Ok(id)
    }

    /// An attachment, with a finished scan applied.
    pub fn attachment(&mut self, id: Uuid, now: OffsetDateTime) -> Option<&AttRecord> {
        let due = self
            .atts
            .get(&id)
            .is_some_and(|a| a.latest().status == 1 && a.scan_done_at.is_some_and(|t| t <= now));
        if due {
            if let Some(a) = self.atts.get_mut(&id) {
                let at = a.scan_done_at.unwrap_or(now);
                a.statuses.push(StatusEntry::new(2, "Published", at));
                let a = a.clone();
                let _ = self.save_att(&a);
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
        if a.has_been(1) {
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
        if let Some(a) = self.atts.get_mut(&id) {
            a.statuses
                .push(StatusEntry::new(1, "UploadProcessing", now));
            a.statuses
                .push(StatusEntry::new(4, "UploadInterrupted", now));
            let a = a.clone();
            self.save_att(&a)?;
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
        let a = self
            .atts
            .get_mut(&id)
            .ok_or_else(codes::attachment_not_found)?;
        a.statuses
            .push(StatusEntry::new(1, "UploadProcessing", now));
        a.size = size;
        a.scan_done_at = Some(now);
        let a = a.clone();
        self.save_att(&a)?;
        Ok(a)
    }

    /// `DELETE /attachment/{id}`: 2001, 2006, 2007, else Purged.
    pub fn purge_attachment(&mut self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let a = self
            .atts
            .get_mut(&id)
            .ok_or_else(codes::attachment_not_found)?;
        if a.has_been(3) {
            return Err(codes::attachment_purged().into());
        }
        if !a.correspondence_ids.is_empty() {
            return Err(codes::attachment_linked().into());
        }
        a.statuses
            .push(StatusEntry::new(3, "Attachment has been purged", now));
        let a = a.clone();
        self.save_att(&a)?;
        let _ = fs::remove_file(self.attachment_path(id));
        Ok(())
    }
}
