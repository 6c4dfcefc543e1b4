//! `InitializeCorrespondencesExt` and friends: the request model, and the two
//! ways a request body becomes one.
//!
//! Altinn binds `POST /correspondence` with System.Text.Json (ASP.NET's web
//! defaults: property names case-insensitive, numbers may be strings, enums as
//! names or integers, C# `required` members must be present, wrong JSON types
//! are errors) and `POST /correspondence/upload` with the MVC form binder
//! (flattened keys such as `correspondence.content.attachments[0].fileName`,
//! case-insensitive, `[i]` indices from 0, `propertyList.key` or
//! `propertyList[key]`, empty strings become null, values converted from
//! text). Both end in the same model, so the same validation follows.
//!
//! Binding never fails half-way: every problem is collected as a
//! [`ModelError`], and any error means the 400 that `[ApiController]`
//! answers before a handler runs. Only when binding succeeded do the
//! DataAnnotations run ([`annotations`]), again collecting every error.
//!
//! The bound model serializes back to the camelCase JSON shape of
//! `InitializeCorrespondencesExt` (what the simulator stores): Altinn stores
//! `JsonSerializer.Serialize(request)` of the bound model the same way.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, Time, UtcOffset};
use uuid::Uuid;

use super::problem::ModelError;

// ---------------------------------------------------------------------------
// Enums: stored as their integer value, written as their name.

/// An enum value as .NET keeps it: any integer (undefined ones included, the
/// validation attributes catch those), shown by name when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumValue {
    pub value: i64,
    pub names: &'static [&'static str],
}

impl EnumValue {
    pub const fn new(value: i64, names: &'static [&'static str]) -> Self {
        EnumValue { value, names }
    }
    pub fn is_defined(&self) -> bool {
        usize::try_from(self.value).is_ok_and(|i| i < self.names.len())
    }
    pub fn name(&self) -> Option<&'static str> {
        usize::try_from(self.value)
            .ok()
            .and_then(|i| self.names.get(i).copied())
    }
}

impl Serialize for EnumValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.serialize_i64(self.value),
        }
    }
}

pub const NOTIFICATION_CHANNEL: &[&str] = &[
    "Email",
    "Sms",
    "EmailPreferred",
    "SmsPreferred",
    "EmailAndSms",
];
pub const NOTIFICATION_TEMPLATE: &[&str] = &["CustomMessage", "GenericAltinnMessage"];
pub const EMAIL_CONTENT_TYPE: &[&str] = &["Plain", "Html"];
pub const REFERENCE_TYPE: &[&str] = &[
    "Generic",
    "AltinnAppInstance",
    "AltinnBrokerFileTransfer",
    "DialogportenDialogId",
    "DialogportenProcessId",
    "DialogportenTransmissionId",
    "DialogportenTransmissionType",
];
pub const DATA_LOCATION_TYPE: &[&str] = &[
    "NewCorrespondenceAttachment",
    "ExistingCorrespondenceAttachment",
    "ExistingExternalStorage",
];
/// `CorrespondenceStatusExt`, by value.
pub const CORRESPONDENCE_STATUS: &[&str] = &[
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
pub const ROLE: &[&str] = &["Recipient", "Sender", "RecipientAndSender"];
/// `TransmissionTypeExt` starts at 1.
pub const TRANSMISSION_TYPE: &[&str] = &[
    "",
    "Information",
    "Acceptance",
    "Rejection",
    "Request",
    "Alert",
    "Decision",
    "Submission",
    "Correction",
];

/// .NET's `Enum.TryParse(ignoreCase: true)`: a name, or an integer.
pub fn parse_enum(text: &str, names: &'static [&'static str]) -> Option<EnumValue> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Some(EnumValue::new(n, names));
    }
    names
        .iter()
        .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(t))
        .map(|i| EnumValue::new(i as i64, names))
}

// ---------------------------------------------------------------------------
// Timestamps: DateTimeOffset in, DateTimeOffset out.

/// Parse a timestamp as .NET would: `YYYY-MM-DD`, optionally `Thh:mm[:ss[.f…]]`
/// and an offset (`Z`, `±hh:mm`, `±hhmm`, `±hh`). Without an offset the time
/// is the server's local time, which for Altinn (and the simulator) is UTC.
/// `lenient` (form values) also takes a space instead of `T`.
pub fn parse_time(text: &str, lenient: bool) -> Option<OffsetDateTime> {
    let s = text.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = num(0, 4)? as i32;
    let month = Month::try_from(num(5, 2)? as u8).ok()?;
    let date = Date::from_calendar_date(year, month, num(8, 2)? as u8).ok()?;
    let mut i = 10;
    let mut time = Time::MIDNIGHT;
    if i < b.len() && (b[i] == b'T' || (lenient && b[i] == b' ')) {
        let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        i += 6;
        let mut sec = 0;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b':') {
            sec = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let digits = &s[start..i];
                if digits.is_empty() {
                    return None;
                }
                let mut padded: String = digits.chars().take(9).collect();
                while padded.len() < 9 {
                    padded.push('0');
                }
                nanos = padded.parse().ok()?;
            }
        }
        time = Time::from_hms_nano(h as u8, m as u8, sec as u8, nanos).ok()?;
    }
    let offset = match &s[i..] {
        "" => UtcOffset::UTC,
        "Z" | "z" => UtcOffset::UTC,
        rest => {
            let sign: i8 = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let h: i8 = digits[..2].parse().ok()?;
            let m: i8 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    Some(date.with_time(time).assume_offset(offset))
}

/// Format as System.Text.Json writes a DateTimeOffset:
/// `2026-08-20T10:00:00.1234567+00:00` (seven fraction digits, the offset kept).
pub fn format_time(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (oh, om, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}{sign}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100,
        oh.unsigned_abs(),
        om.unsigned_abs()
    )
}

/// serde glue: timestamps as [`format_time`] strings.
pub mod ts {
    use super::*;
    use serde::{Deserialize, Deserializer};

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        parse_time(&text, false).ok_or_else(|| serde::de::Error::custom("bad timestamp"))
    }
    pub mod opt {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format_time(*t)),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            match text {
                None => Ok(None),
                Some(t) => parse_time(&t, false)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom("bad timestamp")),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The model. `Option` where .NET has a nullable (or a reference that may be
// left null); plain types where .NET has a value type with a default.

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    pub correspondence: Option<Correspondence>,
    pub recipients: Option<Vec<Option<String>>>,
    pub existing_attachments: Vec<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_key: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correspondence {
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub senders_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_sender: Option<String>,
    pub content: Option<Content>,
    #[serde(with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub requested_publish_time: Option<OffsetDateTime>,
    #[serde(with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub due_date_time: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_references: Option<Vec<ExternalReference>>,
    pub property_list: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_options: Option<Vec<ReplyOption>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_reservation: Option<bool>,
    pub is_confirmation_needed: bool,
    pub is_confidential: bool,
    pub allow_forwarding: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub message_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_summary: Option<String>,
    pub message_body: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
}

/// `InitializeCorrespondenceAttachmentExt` (also `InitializeAttachmentExt`,
/// which adds `resourceId`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub is_encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    pub senders_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_in_days: Option<i64>,
    #[serde(skip_serializing_if = "Uuid::is_nil")]
    pub id: Uuid,
    pub data_location_type: EnumValue,
}

impl Default for AttachmentMeta {
    fn default() -> Self {
        AttachmentMeta {
            resource_id: None,
            file_name: None,
            display_name: None,
            is_encrypted: false,
            checksum: None,
            senders_reference: None,
            expiration_in_days: None,
            id: Uuid::nil(),
            data_location_type: EnumValue::new(0, DATA_LOCATION_TYPE),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalReference {
    pub reference_value: Option<String>,
    pub reference_type: EnumValue,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyOption {
    #[serde(rename = "linkURL")]
    pub link_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_template: Option<EnumValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_body: Option<String>,
    pub email_content_type: EnumValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_body: Option<String>,
    pub send_reminder: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_email_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_email_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_email_content_type: Option<EnumValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_sms_body: Option<String>,
    pub notification_channel: EnumValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_notification_channel: Option<EnumValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub senders_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_recipients: Option<Vec<NotificationRecipient>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_recipient: Option<NotificationRecipient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_notification_recipients: Option<Vec<CustomNotificationRecipient>>,
    pub override_registered_contact_information: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecipient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub national_identity_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_reserved: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomNotificationRecipient {
    pub recipient_to_override: Option<String>,
    pub recipients: Vec<NotificationRecipient>,
}

// ---------------------------------------------------------------------------
// Sources: a JSON value, or the tree of a form's flattened keys.

/// The form's keys as a tree: `a.b[0].c=v` is `a → b → [0] → c` holding `v`.
/// Names keep their case; lookups ignore it, as ASP.NET's form collection does.
#[derive(Debug, Default)]
pub struct FormNode {
    pub values: Vec<String>,
    pub children: Vec<(String, FormNode)>,
}

impl FormNode {
    /// Add `value` under the flattened `key`.
    pub fn insert(&mut self, key: &str, value: String) {
        let mut node = self;
        for seg in split_key(key) {
            let pos = node
                .children
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(&seg));
            let i = match pos {
                Some(i) => i,
                None => {
                    node.children.push((seg, FormNode::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i].1;
        }
        node.values.push(value);
    }

    fn child(&self, name: &str) -> Option<&FormNode> {
        self.children
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.children.is_empty()
    }
}

/// `a.b[0].c` → `a`, `b`, `[0]`, `c`; `p[key]` → `p`, `[key]`.
fn split_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                let mut inner = String::from("[");
                for d in chars.by_ref() {
                    inner.push(d);
                    if d == ']' {
                        break;
                    }
                }
                out.push(inner);
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Where a value comes from.
#[derive(Clone, Copy)]
enum Node<'a> {
    Json(&'a Value),
    Form(&'a FormNode),
    /// One of several values of a repeated form key (`recipients=a&recipients=b`).
    Text(&'a str),
}

impl<'a> Node<'a> {
    fn child(self, name: &str) -> Option<Node<'a>> {
        match self {
            // System.Text.Json: case-insensitive, the last duplicate wins.
            Node::Json(Value::Object(m)) => m
                .iter()
                .rfind(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| Node::Json(v)),
            Node::Json(_) | Node::Text(_) => None,
            Node::Form(f) => f.child(name).filter(|c| !c.is_empty()).map(Node::Form),
        }
    }

    fn is_null(self) -> bool {
        matches!(self, Node::Json(Value::Null))
    }
}

/// Collects binding errors while building the model.
struct Binder {
    json: bool,
    errors: Vec<ModelError>,
}

/// Join a model path: `Correspondence` + `Content` → `Correspondence.Content`.
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else if name.starts_with('[') {
        format!("{path}{name}")
    } else {
        format!("{path}.{name}")
    }
}

/// `messageTitle` → `MessageTitle`: the C# property name in model-state keys.
fn pascal(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Binder {
    fn type_error(&mut self, path: &str, dotnet_type: &str, raw: &str) {
        if self.json {
            self.errors.push(ModelError::new(
                format!("$.{path}"),
                format!("The JSON value could not be converted to {dotnet_type}. Path: $.{path}"),
            ));
        } else {
            let field = path.rsplit('.').next().unwrap_or(path);
            self.errors.push(ModelError::new(
                path.to_string(),
                format!("The value '{raw}' is not valid for {}.", pascal(field)),
            ));
        }
    }

    /// The single text of a form node (first value wins, as in ASP.NET).
    fn form_text(node: Node<'_>) -> Option<&str> {
        match node {
            Node::Form(f) => f.values.first().map(String::as_str),
            Node::Text(t) => Some(t),
            Node::Json(_) => None,
        }
    }

    fn string(&mut self, node: Option<Node<'_>>, path: &str) -> Option<String> {
        match node? {
            Node::Json(Value::String(s)) => Some(s.clone()),
            Node::Json(Value::Null) => None,
            Node::Json(_) => {
                self.type_error(path, "System.String", "");
                None
            }
            // The form binder turns empty strings into null.
            n => Self::form_text(n)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }

    /// A `bool` (`nullable`: `bool?`, where JSON null is fine).
    fn boolean(&mut self, node: Option<Node<'_>>, path: &str, nullable: bool) -> Option<bool> {
        match node? {
            Node::Json(Value::Bool(b)) => Some(*b),
            Node::Json(Value::Null) if nullable => None,
            Node::Json(_) => {
                self.type_error(path, "System.Boolean", "");
                None
            }
            n => {
                let t = Self::form_text(n)?;
                match t.trim().to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    "" if nullable => None,
                    _ => {
                        self.type_error(path, "System.Boolean", t);
                        None
                    }
                }
            }
        }
    }

    fn guid(&mut self, node: Option<Node<'_>>, path: &str, nullable: bool) -> Option<Uuid> {
        match node? {
            // System.Text.Json reads only the hyphenated 36-character form.
            Node::Json(Value::String(s)) if s.len() == 36 => match Uuid::parse_str(s) {
                Ok(u) => Some(u),
                Err(_) => {
                    self.type_error(path, "System.Guid", s);
                    None
                }
            },
            Node::Json(Value::Null) if nullable => None,
            Node::Json(_) => {
                self.type_error(path, "System.Guid", "");
                None
            }
            n => {
                let t = Self::form_text(n)?;
                if t.is_empty() && nullable {
                    return None;
                }
                match Uuid::parse_str(t.trim()) {
                    Ok(u) => Some(u),
                    Err(_) => {
                        self.type_error(path, "System.Guid", t);
                        None
                    }
                }
            }
        }
    }

    fn time(&mut self, node: Option<Node<'_>>, path: &str) -> Option<OffsetDateTime> {
        match node? {
            Node::Json(Value::String(s)) => parse_time(s, false).or_else(|| {
                self.type_error(path, "System.DateTimeOffset", s);
                None
            }),
            Node::Json(Value::Null) => None,
            Node::Json(_) => {
                self.type_error(path, "System.DateTimeOffset", "");
                None
            }
            n => {
                let t = Self::form_text(n)?;
                if t.is_empty() {
                    return None;
                }
                parse_time(t, true).or_else(|| {
                    self.type_error(path, "System.DateTimeOffset", t);
                    None
                })
            }
        }
    }

    /// An `int?` (web defaults: a JSON string of digits is fine too).
    fn int(&mut self, node: Option<Node<'_>>, path: &str) -> Option<i64> {
        let parse = |t: &str| t.trim().parse::<i32>().ok().map(i64::from);
        match node? {
            Node::Json(Value::Number(n)) => n
                .as_i64()
                .filter(|v| i32::try_from(*v).is_ok())
                .or_else(|| {
                    self.type_error(path, "System.Int32", "");
                    None
                }),
            Node::Json(Value::String(s)) => parse(s).or_else(|| {
                self.type_error(path, "System.Int32", s);
                None
            }),
            Node::Json(Value::Null) => None,
            Node::Json(_) => {
                self.type_error(path, "System.Int32", "");
                None
            }
            n => {
                let t = Self::form_text(n)?;
                if t.is_empty() {
                    return None;
                }
                parse(t).or_else(|| {
                    self.type_error(path, "System.Int32", t);
                    None
                })
            }
        }
    }

    fn enumeration(
        &mut self,
        node: Option<Node<'_>>,
        path: &str,
        names: &'static [&'static str],
        nullable: bool,
    ) -> Option<EnumValue> {
        match node? {
            Node::Json(Value::Number(n)) => match n.as_i64() {
                Some(v) => Some(EnumValue::new(v, names)),
                None => {
                    self.type_error(path, "enum", "");
                    None
                }
            },
            Node::Json(Value::String(s)) => parse_enum(s, names).or_else(|| {
                self.type_error(path, "enum", s);
                None
            }),
            Node::Json(Value::Null) if nullable => None,
            Node::Json(_) => {
                self.type_error(path, "enum", "");
                None
            }
            n => {
                let t = Self::form_text(n)?;
                if t.is_empty() && nullable {
                    return None;
                }
                parse_enum(t, names).or_else(|| {
                    self.type_error(path, "enum", t);
                    None
                })
            }
        }
    }

    /// The items of a list: a JSON array, `[0]`, `[1]`, … children (from 0,
    /// up to the first gap, as the MVC collection binder reads them), or the
    /// values of a repeated key.
    fn list<'a>(&mut self, node: Option<Node<'a>>, path: &str) -> Option<Vec<Node<'a>>> {
        match node? {
            Node::Json(Value::Array(items)) => Some(items.iter().map(Node::Json).collect()),
            Node::Json(Value::Null) => None,
            Node::Json(_) => {
                self.type_error(path, "System.Collections.Generic.List", "");
                None
            }
            Node::Form(f) => {
                let mut items = Vec::new();
                while let Some(c) = f.child(&format!("[{}]", items.len())) {
                    items.push(Node::Form(c));
                }
                if items.is_empty() {
                    items = f.values.iter().map(|v| Node::Text(v)).collect();
                }
                Some(items)
            }
            Node::Text(t) => Some(vec![Node::Text(t)]),
        }
    }

    /// An object node (`None` when absent or JSON null).
    fn object<'a>(
        &mut self,
        node: Option<Node<'a>>,
        path: &str,
        dotnet_type: &str,
    ) -> Option<Node<'a>> {
        match node? {
            n @ Node::Json(Value::Object(_)) => Some(n),
            Node::Json(Value::Null) => None,
            Node::Json(_) => {
                self.type_error(path, dotnet_type, "");
                None
            }
            n @ Node::Form(_) => Some(n),
            Node::Text(_) => None,
        }
    }

    /// A C# `required` member: System.Text.Json insists it is present (it may
    /// be null). The form binder does not know the keyword.
    fn require(&mut self, parent: Node<'_>, name: &str, dotnet_type: &str) {
        if self.json && parent.child(name).is_none() {
            self.errors.push(ModelError::new(
                "$",
                format!("JSON deserialization for type '{dotnet_type}' was missing required properties including: '{name}'."),
            ));
        }
    }

    fn dictionary(&mut self, node: Option<Node<'_>>, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match node {
            Some(Node::Json(Value::Object(m))) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        Value::Null => {
                            out.insert(k.clone(), String::new());
                        }
                        _ => self.type_error(&format!("{path}.{k}"), "System.String", ""),
                    }
                }
            }
            Some(Node::Json(Value::Null)) | None => {}
            Some(Node::Json(_)) => {
                self.type_error(path, "System.Collections.Generic.Dictionary", "")
            }
            Some(Node::Form(f)) => {
                for (k, c) in &f.children {
                    let key = k.trim_start_matches('[').trim_end_matches(']');
                    out.insert(
                        key.to_string(),
                        c.values.first().cloned().unwrap_or_default(),
                    );
                }
            }
            Some(Node::Text(_)) => {}
        }
        out
    }
}

const T_REQ: &str = "Altinn.Correspondence.API.Models.InitializeCorrespondencesExt";
const T_CORR: &str = "Altinn.Correspondence.API.Models.BaseCorrespondenceExt";
const T_CONTENT: &str = "Altinn.Correspondence.API.Models.InitializeCorrespondenceContentExt";
const T_ATT: &str = "Altinn.Correspondence.API.Models.InitializeCorrespondenceAttachmentExt";
const T_EXTREF: &str = "Altinn.Correspondence.API.Models.ExternalReferenceExt";
const T_REPLY: &str = "Altinn.Correspondence.API.Models.CorrespondenceReplyOptionExt";
const T_CNR: &str = "Altinn.Correspondence.API.Models.CustomNotificationRecipientExt";

/// Bind a JSON body. `Err` holds every binding error (the 400 answer).
pub fn bind_json(body: &[u8]) -> Result<InitRequest, Vec<ModelError>> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![
                ModelError::new("$", format!("The JSON value is not valid: {e}")),
                ModelError::new("request", "The request field is required."),
            ])
        }
    };
    bind(Node::Json(&value), true)
}

/// Bind a multipart form's fields (files are not part of the model).
pub fn bind_form(form: &FormNode) -> Result<InitRequest, Vec<ModelError>> {
    // The MVC binder uses the parameter name as a prefix when any key has it.
    let root = match form.child("request") {
        Some(r) if !r.is_empty() => r,
        _ => form,
    };
    bind(Node::Form(root), false)
}

fn bind(root: Node<'_>, json: bool) -> Result<InitRequest, Vec<ModelError>> {
    let mut b = Binder {
        json,
        errors: vec![],
    };
    let req = bind_request(&mut b, root);
    if b.errors.is_empty() {
        Ok(req)
    } else {
        Err(b.errors)
    }
}

fn bind_request(b: &mut Binder, root: Node<'_>) -> InitRequest {
    if b.json && !matches!(root, Node::Json(Value::Object(_))) {
        b.type_error("", T_REQ, "");
        return InitRequest::default();
    }
    b.require(root, "correspondence", T_REQ);
    b.require(root, "recipients", T_REQ);
    let correspondence = b
        .object(root.child("correspondence"), "correspondence", T_CORR)
        .map(|n| bind_correspondence(b, n, "correspondence"));
    let recipients = b.list(root.child("recipients"), "recipients").map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, n)| b.string(Some(n), &format!("recipients[{i}]")))
            .collect()
    });
    let existing_attachments = b
        .list(root.child("existingAttachments"), "existingAttachments")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| b.guid(Some(n), &format!("existingAttachments[{i}]"), false))
        .collect();
    let idempotent_key = b.guid(root.child("idempotentKey"), "idempotentKey", true);
    InitRequest {
        correspondence,
        recipients,
        existing_attachments,
        idempotent_key,
    }
}

fn bind_correspondence(b: &mut Binder, n: Node<'_>, p: &str) -> Correspondence {
    b.require(n, "resourceId", T_CORR);
    b.require(n, "sendersReference", T_CORR);
    let f = |name: &str| join(p, name);
    Correspondence {
        resource_id: b.string(n.child("resourceId"), &f("resourceId")),
        sender: b.string(n.child("sender"), &f("sender")),
        senders_reference: b.string(n.child("sendersReference"), &f("sendersReference")),
        message_sender: b.string(n.child("messageSender"), &f("messageSender")),
        content: b
            .object(n.child("content"), &f("content"), T_CONTENT)
            .map(|c| bind_content(b, c, &f("content"))),
        requested_publish_time: b.time(n.child("requestedPublishTime"), &f("requestedPublishTime")),
        due_date_time: b.time(n.child("dueDateTime"), &f("dueDateTime")),
        external_references: b
            .list(n.child("externalReferences"), &f("externalReferences"))
            .map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        let rp = format!("{}[{i}]", f("externalReferences"));
                        let r = b.object(Some(r), &rp, T_EXTREF)?;
                        b.require(r, "referenceValue", T_EXTREF);
                        b.require(r, "referenceType", T_EXTREF);
                        Some(ExternalReference {
                            reference_value: b
                                .string(r.child("referenceValue"), &join(&rp, "referenceValue")),
                            reference_type: b
                                .enumeration(
                                    r.child("referenceType"),
                                    &join(&rp, "referenceType"),
                                    REFERENCE_TYPE,
                                    false,
                                )
                                .unwrap_or(EnumValue::new(0, REFERENCE_TYPE)),
                        })
                    })
                    .collect()
            }),
        property_list: b.dictionary(n.child("propertyList"), &f("propertyList")),
        reply_options: b
            .list(n.child("replyOptions"), &f("replyOptions"))
            .map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        let rp = format!("{}[{i}]", f("replyOptions"));
                        let r = b.object(Some(r), &rp, T_REPLY)?;
                        b.require(r, "linkURL", T_REPLY);
                        Some(ReplyOption {
                            link_url: b.string(r.child("linkURL"), &join(&rp, "linkURL")),
                            link_text: b.string(r.child("linkText"), &join(&rp, "linkText")),
                        })
                    })
                    .collect()
            }),
        notification: b
            .object(n.child("notification"), &f("notification"), "Notification")
            .map(|x| bind_notification(b, x, &f("notification"))),
        ignore_reservation: b.boolean(n.child("ignoreReservation"), &f("ignoreReservation"), true),
        is_confirmation_needed: b
            .boolean(
                n.child("isConfirmationNeeded"),
                &f("isConfirmationNeeded"),
                false,
            )
            .unwrap_or(false),
        is_confidential: b
            .boolean(n.child("isConfidential"), &f("isConfidential"), false)
            .unwrap_or(false),
        allow_forwarding: b
            .boolean(n.child("allowForwarding"), &f("allowForwarding"), false)
            .unwrap_or(false),
    }
}

fn bind_content(b: &mut Binder, n: Node<'_>, p: &str) -> Content {
    b.require(n, "messageTitle", T_CONTENT);
    b.require(n, "messageBody", T_CONTENT);
    let f = |name: &str| join(p, name);
    Content {
        language: b.string(n.child("language"), &f("language")),
        message_title: b.string(n.child("messageTitle"), &f("messageTitle")),
        message_summary: b.string(n.child("messageSummary"), &f("messageSummary")),
        message_body: b.string(n.child("messageBody"), &f("messageBody")),
        attachments: b
            .list(n.child("attachments"), &f("attachments"))
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let ap = format!("{}[{i}]", f("attachments"));
                let a = b.object(Some(a), &ap, T_ATT)?;
                Some(bind_attachment(b, a, &ap))
            })
            .collect(),
    }
}

/// An attachment's metadata (`BaseAttachmentExt` and what the two request
/// types add to it).
fn bind_attachment(b: &mut Binder, n: Node<'_>, p: &str) -> AttachmentMeta {
    b.require(n, "fileName", T_ATT);
    b.require(n, "sendersReference", T_ATT);
    let f = |name: &str| join(p, name);
    AttachmentMeta {
        resource_id: b.string(n.child("resourceId"), &f("resourceId")),
        file_name: b.string(n.child("fileName"), &f("fileName")),
        display_name: b.string(n.child("displayName"), &f("displayName")),
        is_encrypted: b
            .boolean(n.child("isEncrypted"), &f("isEncrypted"), false)
            .unwrap_or(false),
        checksum: b.string(n.child("checksum"), &f("checksum")),
        senders_reference: b.string(n.child("sendersReference"), &f("sendersReference")),
        expiration_in_days: b.int(n.child("expirationInDays"), &f("expirationInDays")),
        id: b
            .guid(n.child("id"), &f("id"), false)
            .unwrap_or(Uuid::nil()),
        data_location_type: b
            .enumeration(
                n.child("dataLocationType"),
                &f("dataLocationType"),
                DATA_LOCATION_TYPE,
                false,
            )
            .unwrap_or(EnumValue::new(0, DATA_LOCATION_TYPE)),
    }
}

fn bind_recipient(b: &mut Binder, n: Node<'_>, p: &str) -> NotificationRecipient {
    let f = |name: &str| join(p, name);
    NotificationRecipient {
        email_address: b.string(n.child("emailAddress"), &f("emailAddress")),
        mobile_number: b.string(n.child("mobileNumber"), &f("mobileNumber")),
        organization_number: b.string(n.child("organizationNumber"), &f("organizationNumber")),
        national_identity_number: b.string(
            n.child("nationalIdentityNumber"),
            &f("nationalIdentityNumber"),
        ),
        is_reserved: b.boolean(n.child("isReserved"), &f("isReserved"), true),
    }
}

fn bind_recipients(
    b: &mut Binder,
    node: Option<Node<'_>>,
    p: &str,
) -> Option<Vec<NotificationRecipient>> {
    b.list(node, p).map(|items| {
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let rp = format!("{p}[{i}]");
                let r = b.object(Some(r), &rp, "NotificationRecipientExt")?;
                Some(bind_recipient(b, r, &rp))
            })
            .collect()
    })
}

fn bind_notification(b: &mut Binder, n: Node<'_>, p: &str) -> Notification {
    let f = |name: &str| join(p, name);
    let s = |b: &mut Binder, name: &str| b.string(n.child(name), &f(name));
    Notification {
        notification_template: b.enumeration(
            n.child("notificationTemplate"),
            &f("notificationTemplate"),
            NOTIFICATION_TEMPLATE,
            true,
        ),
        email_subject: s(b, "emailSubject"),
        email_body: s(b, "emailBody"),
        email_content_type: b
            .enumeration(
                n.child("emailContentType"),
                &f("emailContentType"),
                EMAIL_CONTENT_TYPE,
                false,
            )
            .unwrap_or(EnumValue::new(0, EMAIL_CONTENT_TYPE)),
        sms_body: s(b, "smsBody"),
        send_reminder: b
            .boolean(n.child("sendReminder"), &f("sendReminder"), false)
            .unwrap_or(false),
        reminder_email_subject: s(b, "reminderEmailSubject"),
        reminder_email_body: s(b, "reminderEmailBody"),
        reminder_email_content_type: b.enumeration(
            n.child("reminderEmailContentType"),
            &f("reminderEmailContentType"),
            EMAIL_CONTENT_TYPE,
            true,
        ),
        reminder_sms_body: s(b, "reminderSmsBody"),
        notification_channel: b
            .enumeration(
                n.child("notificationChannel"),
                &f("notificationChannel"),
                NOTIFICATION_CHANNEL,
                false,
            )
            .unwrap_or(EnumValue::new(0, NOTIFICATION_CHANNEL)),
        reminder_notification_channel: b.enumeration(
            n.child("reminderNotificationChannel"),
            &f("reminderNotificationChannel"),
            NOTIFICATION_CHANNEL,
            true,
        ),
        senders_reference: s(b, "sendersReference"),
        custom_recipients: bind_recipients(b, n.child("customRecipients"), &f("customRecipients")),
        custom_recipient: b
            .object(
                n.child("customRecipient"),
                &f("customRecipient"),
                "NotificationRecipientExt",
            )
            .map(|r| bind_recipient(b, r, &f("customRecipient"))),
        custom_notification_recipients: b
            .list(
                n.child("customNotificationRecipients"),
                &f("customNotificationRecipients"),
            )
            .map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        let cp = format!("{}[{i}]", f("customNotificationRecipients"));
                        let c = b.object(Some(c), &cp, T_CNR)?;
                        b.require(c, "recipientToOverride", T_CNR);
                        b.require(c, "recipients", T_CNR);
                        Some(CustomNotificationRecipient {
                            recipient_to_override: b.string(
                                c.child("recipientToOverride"),
                                &join(&cp, "recipientToOverride"),
                            ),
                            recipients: bind_recipients(
                                b,
                                c.child("recipients"),
                                &join(&cp, "recipients"),
                            )
                            .unwrap_or_default(),
                        })
                    })
                    .collect()
            }),
        override_registered_contact_information: b
            .boolean(
                n.child("overrideRegisteredContactInformation"),
                &f("overrideRegisteredContactInformation"),
                false,
            )
            .unwrap_or(false),
    }
}

/// Bind `InitializeAttachmentExt` (the JSON body of `POST /attachment`).
pub fn bind_attachment_json(body: &[u8]) -> Result<AttachmentMeta, Vec<ModelError>> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![ModelError::new(
                "$",
                format!("The JSON value is not valid: {e}"),
            )])
        }
    };
    let mut b = Binder {
        json: true,
        errors: vec![],
    };
    let root = Node::Json(&value);
    let meta = match b.object(Some(root), "", "InitializeAttachmentExt") {
        Some(n) if !root.is_null() => {
            b.require(n, "resourceId", "InitializeAttachmentExt");
            bind_attachment(&mut b, n, "")
        }
        _ => {
            b.errors.push(ModelError::new(
                "InitializeAttachmentExt",
                "The InitializeAttachmentExt field is required.",
            ));
            AttachmentMeta::default()
        }
    };
    if b.errors.is_empty() {
        Ok(meta)
    } else {
        Err(b.errors)
    }
}

// ---------------------------------------------------------------------------
// DataAnnotations: what `[Required]`, `[StringLength]` and Altinn's own
// attributes say about a bound model.

/// .NET's `string.Length`: UTF-16 code units.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Checks in the order the attributes sit on the model classes.
pub mod annotations {
    use super::*;
    use crate::sim_altinn3::rules;

    struct V(Vec<ModelError>);

    impl V {
        fn err(&mut self, key: &str, msg: impl Into<String>) {
            self.0.push(ModelError::new(key, msg));
        }
        /// `[Required]` on a string: null, empty and whitespace all fail.
        fn required(&mut self, key: &str, field: &str, v: &Option<String>) -> bool {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                self.err(key, format!("The {field} field is required."));
                return false;
            }
            true
        }
        /// `[StringLength(max, MinimumLength = min)]`; null passes.
        fn length(&mut self, key: &str, field: &str, v: &Option<String>, min: usize, max: usize) {
            if let Some(s) = v {
                let n = utf16_len(s);
                if n > max || n < min {
                    let msg = if min > 0 {
                        format!("The field {field} must be a string with a minimum length of {min} and a maximum length of {max}.")
                    } else {
                        format!(
                            "The field {field} must be a string with a maximum length of {max}."
                        )
                    };
                    self.err(key, msg);
                }
            }
        }
    }

    /// All DataAnnotation errors of an `InitializeCorrespondencesExt`.
    pub fn check_request(r: &InitRequest) -> Vec<ModelError> {
        let mut v = V(vec![]);
        match &r.correspondence {
            None => v.err("Correspondence", "The Correspondence field is required."),
            Some(c) => check_correspondence(&mut v, c),
        }
        match &r.recipients {
            None => v.err("Recipients", "The Recipients field is required."),
            Some(list) => {
                if let Err(msg) = rules::recipient_list(list) {
                    v.err("Recipients", msg);
                }
            }
        }
        if r.idempotent_key == Some(Uuid::nil()) {
            v.err(
                "IdempotentKey",
                "The idempotency key must be a valid non-empty GUID",
            );
        }
        v.0
    }

    fn check_correspondence(v: &mut V, c: &Correspondence) {
        let p = "Correspondence";
        let k = |f: &str| format!("{p}.{f}");
        v.length(&k("ResourceId"), "ResourceId", &c.resource_id, 1, 255);
        if v.required(&k("ResourceId"), "ResourceId", &c.resource_id) {
            if let Some(id) = &c.resource_id {
                if !rules::resource_id_format(id) {
                    v.err(&k("ResourceId"), "Invalid Resource identifier format");
                }
            }
        }
        v.length(
            &k("SendersReference"),
            "SendersReference",
            &c.senders_reference,
            1,
            4096,
        );
        v.required(
            &k("SendersReference"),
            "SendersReference",
            &c.senders_reference,
        );
        v.length(
            &k("MessageSender"),
            "MessageSender",
            &c.message_sender,
            0,
            255,
        );
        match &c.content {
            None => v.err(&k("Content"), "The Content field is required."),
            Some(content) => check_content(v, content),
        }
        if let Some(refs) = &c.external_references {
            if let Err(msg) = rules::external_references_attribute(refs) {
                v.err(&k("ExternalReferences"), msg);
            }
        }
        if let Err(msg) = rules::property_list(&c.property_list) {
            v.err(&k("PropertyList"), msg);
        }
        if let Some(n) = &c.notification {
            check_notification(v, n);
        }
    }

    fn check_content(v: &mut V, c: &Content) {
        let k = |f: &str| format!("Correspondence.Content.{f}");
        if let Some(lang) = &c.language {
            if !lang.trim().is_empty() {
                if utf16_len(lang) != 2 {
                    v.err(
                        &k("Language"),
                        "The ISO6391 field must be exactly 2 characters long!",
                    );
                } else if lang == "iv" {
                    // Altinn's check is `"iv".Contains(value)` (the invariant
                    // culture's language name), so only "iv" itself fails.
                    v.err(
                        &k("Language"),
                        "The language code must be ISO6391 compliant!",
                    );
                }
            }
        }
        v.required(&k("MessageTitle"), "MessageTitle", &c.message_title);
        v.length(&k("MessageTitle"), "MessageTitle", &c.message_title, 1, 255);
        v.length(
            &k("MessageSummary"),
            "MessageSummary",
            &c.message_summary,
            0,
            255,
        );
        v.required(&k("MessageBody"), "MessageBody", &c.message_body);
        v.length(&k("MessageBody"), "MessageBody", &c.message_body, 1, 30_000);
        for (i, a) in c.attachments.iter().enumerate() {
            check_attachment(v, &format!("Correspondence.Content.Attachments[{i}]"), a);
        }
    }

    /// `BaseAttachmentExt`'s attributes (and `InitializeAttachmentExt`'s
    /// `resourceId` when `with_resource`).
    fn check_attachment(v: &mut V, p: &str, a: &AttachmentMeta) {
        let k = |f: &str| format!("{p}.{f}");
        v.length(&k("FileName"), "FileName", &a.file_name, 0, 255);
        v.length(&k("DisplayName"), "DisplayName", &a.display_name, 0, 255);
        if let Some(sum) = &a.checksum {
            if !sum.trim().is_empty() {
                if utf16_len(sum) != 32 {
                    v.err(
                        &k("Checksum"),
                        "The checksum, if used, must be a MD5 hash with a length of 32 characters",
                    );
                } else if sum.to_lowercase() != *sum {
                    v.err(
                        &k("Checksum"),
                        "The checksum, if used, must be a MD5 hash in lower case",
                    );
                }
            }
        }
        v.length(
            &k("SendersReference"),
            "SendersReference",
            &a.senders_reference,
            1,
            4096,
        );
        v.required(
            &k("SendersReference"),
            "SendersReference",
            &a.senders_reference,
        );
    }

    fn check_notification(v: &mut V, n: &Notification) {
        let k = |f: &str| format!("Correspondence.Notification.{f}");
        v.length(&k("EmailSubject"), "EmailSubject", &n.email_subject, 0, 512);
        v.length(&k("EmailBody"), "EmailBody", &n.email_body, 0, 10_000);
        if !n.email_content_type.is_defined() {
            v.err(
                &k("EmailContentType"),
                "The EmailContentType field must be a defined value.",
            );
        }
        v.length(&k("SmsBody"), "SmsBody", &n.sms_body, 0, 2144);
        v.length(
            &k("ReminderEmailSubject"),
            "ReminderEmailSubject",
            &n.reminder_email_subject,
            0,
            512,
        );
        v.length(
            &k("ReminderEmailBody"),
            "ReminderEmailBody",
            &n.reminder_email_body,
            0,
            10_000,
        );
        if n.reminder_email_content_type
            .is_some_and(|e| !e.is_defined())
        {
            v.err(
                &k("ReminderEmailContentType"),
                "The ReminderEmailContentType field must be a defined value.",
            );
        }
        v.length(
            &k("ReminderSmsBody"),
            "ReminderSmsBody",
            &n.reminder_sms_body,
            0,
            2144,
        );
        if !n.notification_channel.is_defined() {
            v.err(
                &k("NotificationChannel"),
                "The NotificationChannel field must be a defined value.",
            );
        }
        if n.reminder_notification_channel
            .is_some_and(|e| !e.is_defined())
        {
            v.err(
                &k("ReminderNotificationChannel"),
                "The ReminderNotificationChannel field must be a defined value.",
            );
        }
    }

    /// All DataAnnotation errors of an `InitializeAttachmentExt`.
    pub fn check_attachment_request(a: &AttachmentMeta) -> Vec<ModelError> {
        let mut v = V(vec![]);
        v.length("ResourceId", "ResourceId", &a.resource_id, 1, 255);
        if v.required("ResourceId", "ResourceId", &a.resource_id) {
            if let Some(id) = &a.resource_id {
                if !rules::resource_id_format(id) {
                    v.err("ResourceId", "Invalid Resource identifier format");
                }
            }
        }
        check_attachment(&mut v, "", a);
        // Keys without the leading dot of an empty prefix.
        v.0.iter_mut().for_each(|e| {
            if let Some(rest) = e.key.strip_prefix('.') {
                e.key = rest.to_string();
            }
        });
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dotnet_reads_them() {
        let t = parse_time("2019-03-25T12:38:23+01:00", false).unwrap();
        assert_eq!(format_time(t), "2019-03-25T12:38:23.0000000+01:00");
        let t = parse_time("2026-08-20T10:00:00.123456789Z", false).unwrap();
        assert_eq!(format_time(t), "2026-08-20T10:00:00.1234567+00:00");
        // No offset: the server's local time, UTC.
        assert_eq!(
            format_time(parse_time("2026-08-20T10:00", false).unwrap()),
            "2026-08-20T10:00:00.0000000+00:00"
        );
        assert!(parse_time("2026-08-20 10:00:00", false).is_none());
        assert!(parse_time("2026-08-20 10:00:00", true).is_some());
        assert!(parse_time("2026-02-30", false).is_none());
        assert!(parse_time("yesterday", true).is_none());
    }

    #[test]
    fn form_keys_become_a_tree() {
        let mut f = FormNode::default();
        f.insert(
            "correspondence.content.attachments[0].fileName",
            "a.pdf".into(),
        );
        f.insert(
            "Correspondence.Content.Attachments[0].SendersReference",
            "r".into(),
        );
        f.insert(
            "correspondence.propertyList.senderOrgNumber",
            "910077473".into(),
        );
        f.insert("correspondence.propertyList[other]", "x".into());
        f.insert("recipients", "0192:910075946".into());
        f.insert("recipients", "0192:910075947".into());
        let c = f.child("CORRESPONDENCE").unwrap();
        let att = c.child("content").unwrap().child("attachments").unwrap();
        let first = att.child("[0]").unwrap();
        assert_eq!(
            first.children.len(),
            2,
            "case-insensitive keys share a node"
        );
        assert_eq!(f.child("recipients").unwrap().values.len(), 2);
        let mut b = Binder {
            json: false,
            errors: vec![],
        };
        let props = b.dictionary(
            Some(Node::Form(c)).and_then(|n| n.child("propertyList")),
            "p",
        );
        assert_eq!(
            props.get("senderOrgNumber").map(String::as_str),
            Some("910077473")
        );
        assert_eq!(props.get("other").map(String::as_str), Some("x"));
    }

    #[test]
    fn json_types_are_strict_and_names_case_insensitive() {
        let ok = br#"{"Correspondence":{"ResourceId":"r","SENDERSREFERENCE":"s","content":{"messageTitle":"t","messageBody":"b"}},"recipients":["0192:910075946"]}"#;
        let r = bind_json(ok).unwrap();
        assert_eq!(
            r.correspondence.unwrap().senders_reference.as_deref(),
            Some("s")
        );
        let bad_bool = br#"{"correspondence":{"resourceId":"r","sendersReference":"s","isConfidential":"true","content":{"messageTitle":"t","messageBody":"b"}},"recipients":[]}"#;
        assert!(bind_json(bad_bool).is_err(), "a string is not a JSON bool");
        let missing = br#"{"correspondence":{"sendersReference":"s","content":{"messageTitle":"t","messageBody":"b"}},"recipients":[]}"#;
        assert!(
            bind_json(missing).is_err(),
            "resourceId is a required member"
        );
        let number_string = br#"{"correspondence":{"resourceId":"r","sendersReference":"s","content":{"messageTitle":"t","messageBody":"b","attachments":[{"fileName":"a.pdf","sendersReference":"x","expirationInDays":"14"}]}},"recipients":[]}"#;
        let r = bind_json(number_string).unwrap();
        assert_eq!(
            r.correspondence.unwrap().content.unwrap().attachments[0].expiration_in_days,
            Some(14)
        );
    }

    #[test]
    fn enums_take_names_and_numbers() {
        assert_eq!(
            parse_enum("emailandsms", NOTIFICATION_CHANNEL)
                .unwrap()
                .value,
            4
        );
        assert_eq!(
            parse_enum("4", NOTIFICATION_CHANNEL).unwrap().name(),
            Some("EmailAndSms")
        );
        assert!(!parse_enum("9", NOTIFICATION_CHANNEL).unwrap().is_defined());
        assert!(parse_enum("Pigeon", NOTIFICATION_CHANNEL).is_none());
    }
}
