//! The status machine: what a correspondence and an attachment are, which
//! statuses they pass through, and what the sender sees of them.
//!
//! A correspondence is created `Initialized`, plus `ReadyForPublish` when
//! every attachment is already published, or `Reserved` for a KRR-reserved
//! recipient among several (`GetCurrentCorrespondenceStatus`). At
//! `max(requestedPublishTime, created) + publish delay` its publish job runs
//! ([`publish`], after `PublishCorrespondenceHandler`): `Failed` with Altinn's
//! reason, or `ReadyForPublish` (if missing) and `Published`. Afterwards the
//! recipient may read it (`Fetched`, `Read`; the simulator's test hook), or
//! the sender purge it before publication (`PurgedByAltinn`).
//!
//! Altinn reports the *highest* status (largest enum value, ignoring
//! `Fetched`), so `Reserved` (10) outranks `Published` (2) and `Failed` (11)
//! outranks both. `published` and `read` are the times of those statuses.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{format_time, ts, CORRESPONDENCE_STATUS};
use super::validate::Registry;

/// `CorrespondenceStatusExt` values the simulator sets.
pub mod status {
    pub const INITIALIZED: u8 = 0;
    pub const READY_FOR_PUBLISH: u8 = 1;
    pub const PUBLISHED: u8 = 2;
    pub const FETCHED: u8 = 3;
    pub const READ: u8 = 4;
    pub const PURGED_BY_RECIPIENT: u8 = 7;
    pub const PURGED_BY_ALTINN: u8 = 8;
    pub const RESERVED: u8 = 10;
    pub const FAILED: u8 = 11;
}

/// `AttachmentStatusExt`, by value.
pub const ATTACHMENT_STATUS: &[&str] = &[
    "Initialized",
    "UploadProcessing",
    "Published",
    "Purged",
    "Failed",
    "Expired",
];

/// `AttachmentStatusExt` values.
pub mod attachment_status {
    pub const INITIALIZED: u8 = 0;
    pub const UPLOAD_PROCESSING: u8 = 1;
    pub const PUBLISHED: u8 = 2;
    pub const PURGED: u8 = 3;
    pub const FAILED: u8 = 4;
}

/// The service owner of every resource in the simulator: Digdir, as for the
/// eFormidling DPV resources.
pub const SERVICE_OWNER: &str = "urn:altinn:organization:identifier-no:991825827";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    pub status: u8,
    pub status_text: String,
    #[serde(with = "ts")]
    pub status_changed: OffsetDateTime,
}

impl StatusEntry {
    pub fn new(status: u8, text: &str, at: OffsetDateTime) -> Self {
        StatusEntry {
            status,
            status_text: text.to_string(),
            status_changed: at,
        }
    }
}

pub fn status_name(s: u8) -> &'static str {
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

    fn time_of(&self, s: u8) -> Option<OffsetDateTime> {
        self.statuses
            .iter()
            .find(|e| e.status == s)
            .map(|e| e.status_changed)
    }

    pub fn purged(&self) -> bool {
        self.has_been(status::PURGED_BY_ALTINN) || self.has_been(status::PURGED_BY_RECIPIENT)
    }

    pub fn awaiting_publish(&self) -> bool {
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
                .map(AttRecord::as_correspondence_attachment)
                .collect();
            content["attachments"] = Value::Array(list);
            let language = content
                .get("language")
                .and_then(Value::as_str)
                .unwrap_or("");
            if language.trim().is_empty() {
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
            "published": self.time_of(status::PUBLISHED).map(format_time),
            "read": self.time_of(status::READ).map(format_time),
            "resourceId": self.resource_id,
            "sender": SERVICE_OWNER,
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
    /// notification details: the simulator sends no notifications). A sender
    /// does not see purge statuses in the history.
    pub fn details(&self, attachments: &HashMap<Uuid, AttRecord>) -> Value {
        let mut v = self.overview(attachments);
        v["statusHistory"] = Value::Array(
            self.statuses
                .iter()
                .filter(|s| !matches!(s.status, status::PURGED_BY_ALTINN | status::PURGED_BY_RECIPIENT))
                .map(|s| {
                    json!({"status": status_name(s.status), "statusText": s.status_text, "statusChanged": format_time(s.status_changed)})
                })
                .collect(),
        );
        v
    }
}

/// The statuses a new correspondence starts with.
pub fn initial_statuses(
    reserved: bool,
    new_attachments: bool,
    now: OffsetDateTime,
) -> Vec<StatusEntry> {
    let mut statuses = vec![StatusEntry::new(status::INITIALIZED, "Initialized", now)];
    if reserved {
        statuses.push(StatusEntry::new(status::RESERVED, "Reserved", now));
    } else if !new_attachments {
        // Every attachment (if any) is an existing, published one.
        statuses.push(StatusEntry::new(
            status::READY_FOR_PUBLISH,
            "ReadyForPublish",
            now,
        ));
    }
    statuses
}

/// The publish job of a due correspondence: the statuses it adds, at its
/// `publish_at`. `PublishCorrespondenceHandler`'s checks, in its order: the
/// recipient still in the register, then not reserved in KRR.
pub fn publish(rec: &CorrRecord, registry: &Registry) -> Vec<StatusEntry> {
    let at = rec.publish_at;
    if registry.fails_at_publish(&rec.recipient) {
        let text = format!(
            "Party for recipient {} not found in Altinn Register when publishing",
            rec.recipient
        );
        return vec![StatusEntry::new(status::FAILED, &text, at)];
    }
    if rec.has_been(status::RESERVED) {
        let text = format!(
            "Recipient of {} has been set to reserved in kontakt- og reserverasjonsregisteret ('KRR')",
            rec.id
        );
        return vec![StatusEntry::new(status::FAILED, &text, at)];
    }
    let mut added = Vec::new();
    if rec.highest().status != status::READY_FOR_PUBLISH {
        added.push(StatusEntry::new(
            status::READY_FOR_PUBLISH,
            "ReadyForPublish",
            at,
        ));
    }
    added.push(StatusEntry::new(status::PUBLISHED, "Published", at));
    added
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
        self.latest().status == attachment_status::PUBLISHED
    }

    /// The scan is done: UploadProcessing becomes Published.
    pub fn scan_due(&self, now: OffsetDateTime) -> bool {
        self.latest().status == attachment_status::UPLOAD_PROCESSING
            && self.scan_done_at.is_some_and(|t| t <= now)
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
        v["sender"] = json!(SERVICE_OWNER);
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
