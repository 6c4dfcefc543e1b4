//! The JSON shapes of the Altinn 3 Correspondence API that dpv-batch sends
//! and reads, as serde types.
//!
//! Why a module of its own: the same request shape is written to
//! `letter.json` by the splitter, read back by the client, flattened into
//! multipart fields, and stored by the simulator, so it must be defined
//! once. The server's C# models are the authority (reference §1.3-1.6):
//! property names are camelCase, enums travel as PascalCase strings.
//!
//! Requests are strict (we write them; `None` fields are left out, so the
//! server's defaults apply). Responses are lenient: every field has a
//! default, unknown fields are ignored, an enum may come as its name or its
//! number, and timestamps are kept as the server wrote them (see
//! [`parse_timestamp`], which also takes the offset-less form Altinn has
//! been seen to send).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// `InitializeCorrespondencesExt`: the body of `POST /correspondence` and,
/// flattened, of `POST /correspondence/upload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeCorrespondences {
    pub correspondence: BaseCorrespondence,
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub existing_attachments: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_key: Option<Uuid>,
}

/// `BaseCorrespondenceExt` (the fields dpv-batch uses; `sender` is obsolete
/// and never sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseCorrespondence {
    pub resource_id: String,
    pub senders_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_sender: Option<String>,
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_publish_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub property_list: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_options: Vec<ReplyOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_reservation: Option<bool>,
    #[serde(default)]
    pub is_confirmation_needed: bool,
    #[serde(default)]
    pub is_confidential: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_forwarding: Option<bool>,
}

/// `InitializeCorrespondenceContentExt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub language: String,
    pub message_title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_summary: Option<String>,
    pub message_body: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// `InitializeCorrespondenceAttachmentExt`: metadata of a file sent with
/// the letter (the bytes go as a multipart part named `attachments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    pub senders_reference: String,
}

/// `{linkURL, linkText}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyOption {
    #[serde(rename = "linkURL")]
    pub link_url: String,
    #[serde(rename = "linkText", default, skip_serializing_if = "Option::is_none")]
    pub link_text: Option<String>,
}

/// `InitializeCorrespondenceNotificationExt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub notification_template: NotificationTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_content_type: Option<EmailContentType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_body: Option<String>,
    #[serde(default)]
    pub send_reminder: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_email_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_email_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_email_content_type: Option<EmailContentType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_sms_body: Option<String>,
    pub notification_channel: NotificationChannel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_notification_channel: Option<NotificationChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_recipients: Vec<CustomRecipient>,
    #[serde(default)]
    pub override_registered_contact_information: bool,
}

/// One explicit notification address: exactly one identifier set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomRecipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationTemplate {
    CustomMessage,
    GenericAltinnMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailContentType {
    Plain,
    Html,
}

/// `NotificationChannelExt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationChannel {
    Email,
    Sms,
    EmailPreferred,
    SmsPreferred,
    EmailAndSms,
}

impl NotificationChannel {
    /// Does a notice on this channel (may) go out as e-mail / as SMS?
    pub fn needs_email(self) -> bool {
        !matches!(self, NotificationChannel::Sms)
    }
    pub fn needs_sms(self) -> bool {
        !matches!(self, NotificationChannel::Email)
    }
}

/// `InitializeAttachmentExt`: `POST /attachment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeAttachment {
    pub resource_id: String,
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    pub senders_reference: String,
}

// ---- responses (lenient) ---------------------------------------------------

/// `InitializeCorrespondencesResponseExt`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitializeResponse {
    pub correspondences: Vec<InitializedCorrespondence>,
    pub attachment_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitializedCorrespondence {
    pub correspondence_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient_status")]
    pub status: String,
    pub recipient: Option<String>,
}

/// `CorrespondenceOverviewExt`, the fields a sender's status polling needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CorrespondenceOverview {
    pub correspondence_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient_status")]
    pub status: String,
    pub status_text: Option<String>,
    pub status_changed: Option<String>,
    pub created: Option<String>,
    pub published: Option<String>,
    pub read: Option<String>,
}

/// `CorrespondencesExt`: search results.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchResult {
    pub ids: Vec<Uuid>,
}

/// `AttachmentOverviewExt`, as far as the upload path needs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AttachmentOverview {
    pub attachment_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient_attachment_status")]
    pub status: String,
    pub status_text: Option<String>,
}

/// RFC 9110 ProblemDetails as Altinn sends them: domain errors carry an
/// integer `errorCode` and a `code` like `CORR-01034`; model-validation
/// errors carry `validationErrors` / `errors` instead.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProblemDetails {
    pub title: Option<String>,
    pub status: Option<u16>,
    pub detail: Option<String>,
    pub code: Option<String>,
    #[serde(deserialize_with = "lenient_int")]
    pub error_code: Option<i64>,
    pub trace_id: Option<String>,
    pub validation_errors: Vec<ValidationError>,
    pub errors: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ValidationError {
    pub code: Option<String>,
    pub detail: Option<String>,
    pub paths: Vec<String>,
}

impl ProblemDetails {
    /// One line saying what the server objected to.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(d) = self.detail.as_deref().filter(|d| !d.trim().is_empty()) {
            parts.push(d.trim().to_string());
        } else if let Some(t) = self.title.as_deref().filter(|t| !t.trim().is_empty()) {
            parts.push(t.trim().to_string());
        }
        for v in &self.validation_errors {
            let detail = v.detail.as_deref().unwrap_or("invalid");
            if v.paths.is_empty() {
                parts.push(detail.to_string());
            } else {
                parts.push(format!("{}: {detail}", v.paths.join(", ")));
            }
        }
        for (field, messages) in &self.errors {
            parts.push(format!("{field}: {}", messages.join(" ")));
        }
        parts.join("; ")
    }
}

/// `CorrespondenceStatusExt` by number (the server accepts and, configured
/// otherwise, could send integers).
const CORRESPONDENCE_STATUSES: [&str; 14] = [
    "Initialized",
    "ReadyForPublish",
    "Published",
    "Fetched",
    "Read",
    "Replied",
    "Confirmed",
    "PurgedByRecipient",
    "PurgedByAltinn",
    "Archived",
    "Reserved",
    "Failed",
    "AttachmentsDownloaded",
    "Forwarded",
];

const ATTACHMENT_STATUSES: [&str; 6] = [
    "Initialized",
    "UploadProcessing",
    "Published",
    "Purged",
    "Failed",
    "Expired",
];

/// A status as a name: a string as it is, a number through `names`,
/// anything else (null, missing) as "".
fn status_from(v: serde_json::Value, names: &[&str]) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|i| names.get(i as usize))
            .map_or_else(|| n.to_string(), |s| s.to_string()),
        _ => String::new(),
    }
}

fn lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(status_from(
        serde_json::Value::deserialize(d)?,
        &CORRESPONDENCE_STATUSES,
    ))
}

fn lenient_attachment_status<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(status_from(
        serde_json::Value::deserialize(d)?,
        &ATTACHMENT_STATUSES,
    ))
}

fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A timestamp as Altinn writes it: RFC 3339, or the same without an offset
/// (`2026-12-01T07:00:00.123456`, which means UTC). `None` for anything else.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, PrimitiveDateTime};
    let s = s.trim();
    let t = match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let fmt = time::macros::format_description!(
                version = 2,
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            PrimitiveDateTime::parse(s, &fmt).ok()?.assume_utc()
        }
    };
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_leniently() {
        let r: InitializeResponse = serde_json::from_str(
            r#"{"correspondences":[{"correspondenceId":"0192b3c4-0000-4000-8000-000000000001",
                "status":1,"recipient":"urn:altinn:organization:identifier-no:974760673",
                "notifications":null,"somethingNew":true}]}"#,
        )
        .unwrap();
        assert_eq!(r.correspondences[0].status, "ReadyForPublish");
        assert!(r.attachment_ids.is_empty());
        let o: CorrespondenceOverview =
            serde_json::from_str(r#"{"status":"Published","published":null}"#).unwrap();
        assert_eq!(o.status, "Published");
        let p: ProblemDetails = serde_json::from_str(
            r#"{"status":409,"detail":"dup","code":"CORR-01034","errorCode":1034,"traceId":"t"}"#,
        )
        .unwrap();
        assert_eq!(p.error_code, Some(1034));
        let p: ProblemDetails = serde_json::from_str(
            r#"{"status":400,"code":"STD-00000","validationErrors":[{"code":"CORR.VLD-00000",
                "detail":"too long","paths":["/Correspondence/Content/MessageTitle"]}],
                "errors":{"Correspondence.Content.MessageTitle":["too long"]}}"#,
        )
        .unwrap();
        assert_eq!(p.error_code, None);
        assert!(p
            .summary()
            .contains("/Correspondence/Content/MessageTitle: too long"));
    }

    #[test]
    fn requests_use_camel_case_and_pascal_enums() {
        let n = Notification {
            notification_template: NotificationTemplate::CustomMessage,
            email_subject: None,
            email_body: None,
            email_content_type: Some(EmailContentType::Plain),
            sms_body: Some("x".into()),
            send_reminder: true,
            reminder_email_subject: None,
            reminder_email_body: None,
            reminder_email_content_type: None,
            reminder_sms_body: None,
            notification_channel: NotificationChannel::EmailAndSms,
            reminder_notification_channel: None,
            senders_reference: None,
            custom_recipients: vec![],
            override_registered_contact_information: false,
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["notificationChannel"], "EmailAndSms");
        assert_eq!(v["notificationTemplate"], "CustomMessage");
        assert_eq!(v["emailContentType"], "Plain");
        assert_eq!(v["sendReminder"], true);
        assert!(v.get("emailBody").is_none());
    }

    #[test]
    fn timestamps_with_and_without_offset() {
        let a = parse_timestamp("2026-12-01T07:00:00+01:00").unwrap();
        let b = parse_timestamp("2026-12-01T06:00:00Z").unwrap();
        let c = parse_timestamp("2026-12-01T06:00:00.000000").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(parse_timestamp("2026-12-01").is_none());
        assert!(parse_timestamp("garbage").is_none());
    }
}
