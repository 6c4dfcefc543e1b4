//! Layer 3: the DPV rules that the XSD cannot express.
//!
//! The XSD only checks structure: it will happily accept a letter to an
//! organisation number that does not exist, a service that is not DPV, or
//! two letters with the same SendersReference. Altinn checked those only
//! after upload, and reported them per letter, hours later. Each rule here
//! has a stable code and a row in `docs/rules.md` that says why it exists.
//!
//! The rules are a small state machine over the parser's events (see
//! [`super::xml::Events`]): they keep only the current letter's fields and
//! the set of SendersReferences seen, so memory does not grow with the size
//! of the file (only, slightly, with the number of letters).

use std::collections::HashMap;

use super::ids::{is_national_id, is_org_number};
use crate::xml::{Events, Pos};

/// A rule violation: code, where, and a message an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: &'static str,
    pub pos: Pos,
    pub message: String,
}

/// Knobs of the rules.
#[derive(Debug, Clone)]
pub struct RuleOptions {
    /// Largest attachment accepted, in decoded bytes.
    pub max_attachment_bytes: u64,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            max_attachment_bytes: 100 * 1024 * 1024,
        }
    }
}

/// What an export package offers for attachments whose `Data` is empty:
/// file name → size in bytes.
pub type PackageFiles = HashMap<String, u64>;

pub const TEMPLATES: [&str; 2] = ["VarselDPVMedRevarsel", "VarselDPVUtenRevarsel"];
pub const LANGUAGES: [&str; 3] = ["1044", "2068", "1033"];
pub const TRANSPORTS: [&str; 6] = [
    "Email",
    "SMS",
    "Both",
    "EmailPreferred",
    "SMSPreferred",
    "PriorityEmailSMSReminder",
];
/// Transport types for which Altinn picks the address itself.
const ADDRESSLESS: [&str; 3] = ["Both", "EmailPreferred", "SMSPreferred"];
const SMS_MAX_CHARS: usize = 700;
/// Values longer than this are not kept whole (only counted); no value we
/// check is legitimately that long.
const KEEP_BYTES: usize = 512;

/// The elements the rules look at, by local name and parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SystemUserCode,
    ShipmentReference,
    SequenceNo,
    ServiceCode,
    ServiceEdition,
    SendersReference,
    Reportee,
    ContentLanguage,
    IsReservable,
    OnBehalfOfOrgNr,
    NotificationLanguage,
    NotificationType,
    TokenValue,
    TransportType,
    ReceiverAdress,
    FileName,
    Data,
}

/// Element names that matter as parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Correspondences,
    Correspondence,
    Content,
    MessageBody,
    Notifications,
    Notification,
    TextToken,
    ReceiverEndPoint,
    BinaryAttachment,
    Other,
}

fn name_of(local: &[u8]) -> Name {
    match local {
        b"Correspondences" => Name::Correspondences,
        b"Correspondence" => Name::Correspondence,
        b"Content" => Name::Content,
        b"MessageBody" => Name::MessageBody,
        b"Notifications" => Name::Notifications,
        b"Notification" => Name::Notification,
        b"TextToken" => Name::TextToken,
        b"ReceiverEndPoint" => Name::ReceiverEndPoint,
        b"BinaryAttachment" => Name::BinaryAttachment,
        _ => Name::Other,
    }
}

fn field_of(parent: Name, local: &[u8]) -> Option<Field> {
    use Field::*;
    Some(match (parent, local) {
        (Name::Correspondences, b"SystemUserCode") => SystemUserCode,
        (Name::Correspondences, b"ShipmentReference") => ShipmentReference,
        (Name::Correspondences, b"SequenceNo") => SequenceNo,
        (Name::Correspondence, b"ServiceCode") => ServiceCode,
        (Name::Correspondence, b"ServiceEdition") => ServiceEdition,
        (Name::Correspondence, b"SendersReference") => SendersReference,
        (Name::Correspondence, b"Reportee") => Reportee,
        (Name::Correspondence, b"IsReservable") => IsReservable,
        (Name::Correspondence, b"OnBehalfOfOrgNr") => OnBehalfOfOrgNr,
        (Name::Content, b"LanguageCode") => ContentLanguage,
        (Name::Notification, b"LanguageCode") => NotificationLanguage,
        (Name::Notification, b"NotificationType") => NotificationType,
        (Name::TextToken, b"TokenValue") => TokenValue,
        (Name::ReceiverEndPoint, b"TransportType") => TransportType,
        (Name::ReceiverEndPoint, b"ReceiverAdress") => ReceiverAdress,
        (Name::BinaryAttachment, b"FileName") => FileName,
        (Name::BinaryAttachment, b"Data") => Data,
        _ => return None,
    })
}

/// One letter's fields, as far as the rules need them.
#[derive(Default)]
struct Letter {
    senders_reference: String,
    service: Option<(String, Pos)>,
    edition: Option<String>,
    reportee: Option<String>,
    has_notification: bool,
    start: Pos,
}

#[derive(Default)]
struct Notification {
    template: Option<(String, Pos)>,
    tokens: usize,
    longest_token: Option<(usize, Pos)>,
    sms: bool,
    start: Pos,
}

#[derive(Default)]
struct Endpoint {
    transport: Option<(String, Pos)>,
    address: Option<(String, Pos)>,
}

#[derive(Default)]
struct Attachment {
    file_name: Option<(String, Pos)>,
    data: Option<(Base64, Pos)>,
    start: Pos,
}

/// A streaming base64 check: alphabet, padding only at the end, whole
/// quanta. Whitespace (line breaks in wrapped base64) is allowed anywhere.
#[derive(Default, Clone, Copy)]
struct Base64 {
    symbols: u64,
    padding: u64,
    bad: Option<u8>,
    symbol_after_padding: bool,
}

impl Base64 {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                    if self.padding > 0 {
                        self.symbol_after_padding = true;
                    }
                    self.symbols += 1;
                }
                b'=' => self.padding += 1,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                other => {
                    if self.bad.is_none() {
                        self.bad = Some(other);
                    }
                }
            }
        }
    }

    fn problem(&self) -> Option<String> {
        if let Some(b) = self.bad {
            return Some(if b.is_ascii_graphic() {
                format!(
                    "it contains the character '{}', which base64 does not use",
                    b as char
                )
            } else {
                format!("it contains the byte 0x{b:02X}, which base64 does not use")
            });
        }
        if self.symbol_after_padding || self.padding > 2 {
            return Some("'=' padding may only stand at the very end".into());
        }
        if !(self.symbols + self.padding).is_multiple_of(4) {
            return Some("its length is not a multiple of 4, so it looks cut off".into());
        }
        None
    }

    fn decoded_len(&self) -> u64 {
        ((self.symbols + self.padding) / 4 * 3).saturating_sub(self.padding)
    }

    fn is_empty(&self) -> bool {
        self.symbols == 0 && self.padding == 0 && self.bad.is_none()
    }
}

/// The rule engine for one batch document.
pub struct Rules<'a> {
    opts: &'a RuleOptions,
    package: Option<&'a PackageFiles>,
    violations: Vec<Violation>,
    stack: Vec<Name>,
    /// Depth inside `MessageBody` (xs:anyType: anything goes, nothing checked).
    opaque: u32,
    /// The field whose text is being collected, where it started, its text.
    capture: Option<(Field, Pos)>,
    text: Vec<u8>,
    text_chars: usize,
    letter: Letter,
    notification: Notification,
    endpoint: Endpoint,
    attachment: Attachment,
    /// SendersReference (length, hash of the whole, kept prefix) → line of first use.
    references: HashMap<(usize, u64, String), u32>,
    /// The current element has xsi:nil="true" (no value).
    nil: bool,
    /// The full value of a SendersReference being read can be longer than
    /// what is kept; uniqueness is decided on (length, kept bytes, hash).
    full_hash: std::collections::hash_map::DefaultHasher,
    full_len: usize,
    /// Letters seen, for the summary.
    pub letters: u64,
    /// The batch's SystemUserCode, for SequenceNo numbering downstream.
    pub system_user_code: Option<String>,
    /// The batch's ShipmentReference and SequenceNo, as written.
    pub shipment_reference: Option<String>,
    pub sequence_no: Option<String>,
    /// (SendersReference, Reportee) of every letter, in order.
    pub letter_refs: Vec<(String, String)>,
}

impl<'a> Rules<'a> {
    pub fn new(opts: &'a RuleOptions, package: Option<&'a PackageFiles>) -> Self {
        Rules {
            opts,
            package,
            violations: Vec::new(),
            stack: Vec::with_capacity(16),
            opaque: 0,
            capture: None,
            text: Vec::with_capacity(KEEP_BYTES),
            text_chars: 0,
            letter: Letter::default(),
            notification: Notification::default(),
            endpoint: Endpoint::default(),
            attachment: Attachment::default(),
            references: HashMap::new(),
            nil: false,
            full_hash: Default::default(),
            full_len: 0,
            letters: 0,
            system_user_code: None,
            shipment_reference: None,
            sequence_no: None,
            letter_refs: Vec::new(),
        }
    }

    pub fn into_violations(self) -> Vec<Violation> {
        self.violations
    }

    /// The violations found since the last call (so a caller can rank and
    /// count them as they come instead of holding them all).
    pub fn take_violations(&mut self) -> std::vec::Drain<'_, Violation> {
        self.violations.drain(..)
    }

    fn report(&mut self, code: &'static str, pos: Pos, message: String) {
        self.violations.push(Violation { code, pos, message });
    }

    fn reference_key(&self, kept: &str) -> (usize, u64, String) {
        use std::hash::Hasher;
        (self.full_len, self.full_hash.finish(), kept.to_string())
    }

    /// A finished field: its value (lossy UTF-8, at most KEEP_BYTES) and position.
    fn field_done(&mut self, field: Field, pos: Pos) {
        let value = String::from_utf8_lossy(&self.text).into_owned();
        let chars = self.text_chars;
        match field {
            Field::SystemUserCode => {
                self.system_user_code = Some(value.clone());
                let ok = value.len() >= 3
                    && value.as_bytes()[..3].iter().all(u8::is_ascii_alphabetic)
                    && (value.len() == 3 || value.as_bytes()[3] == b'-');
                if !ok {
                    self.report(
                        "DPV018",
                        pos,
                        format!(
                            "SystemUserCode '{value}' must be the agency's three-letter code, \
                             optionally followed by '-' and a department, e.g. 'ABC' or 'ABC-123'"
                        ),
                    );
                }
            }
            Field::ShipmentReference => {
                self.shipment_reference = Some(value.clone());
                if value.trim().is_empty() {
                    self.report(
                        "DPV020",
                        pos,
                        "ShipmentReference is empty; give the shipment an id of your own, \
                         receipts are matched by it"
                            .into(),
                    );
                }
            }
            Field::SequenceNo => {
                self.sequence_no = Some(value.clone());
                let ok = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && value.bytes().any(|b| b != b'0');
                if !ok {
                    self.report(
                        "DPV019",
                        pos,
                        format!("SequenceNo '{value}' must be a whole number, 1 or more"),
                    );
                }
            }
            Field::ServiceCode => self.letter.service = Some((value, pos)),
            Field::ServiceEdition => self.letter.edition = Some(value),
            Field::SendersReference => {
                self.letter.senders_reference = value.clone();
                if value.trim().is_empty() {
                    self.report(
                        "DPV020",
                        pos,
                        "SendersReference is empty; every letter needs its own reference, \
                         receipts and status look-ups use it"
                            .into(),
                    );
                } else if let Some(first) = self.references.get(&self.reference_key(&value)) {
                    let first = *first;
                    self.report(
                        "DPV011",
                        pos,
                        format!(
                            "SendersReference '{value}' is used twice in this file (first at \
                             line {first}); every letter needs a reference of its own"
                        ),
                    );
                } else {
                    let key = self.reference_key(&value);
                    self.references.insert(key, pos.line);
                }
            }
            Field::Reportee => {
                if !is_org_number(&value) && !is_national_id(&value) {
                    self.report(
                        "DPV003",
                        pos,
                        format!(
                            "Reportee '{value}' is neither a valid organisation number \
                             (9 digits with a correct check digit) nor a valid national id \
                             (11 digits); check the number in the fagsystem"
                        ),
                    );
                }
                self.letter.reportee = Some(value);
            }
            Field::ContentLanguage | Field::NotificationLanguage => {
                if !LANGUAGES.contains(&value.as_str()) {
                    self.report(
                        "DPV010",
                        pos,
                        format!(
                            "LanguageCode '{value}' is not supported; use 1044 (bokmål), \
                             2068 (nynorsk) or 1033 (English)"
                        ),
                    );
                }
            }
            Field::IsReservable => {
                // `false` is what the flag means when absent: harmless, and
                // legacy exports often write it on every letter.
                let set = matches!(value.trim(), "true" | "1");
                let is_org = self.letter.reportee.as_deref().is_some_and(is_org_number);
                if set && is_org {
                    self.report(
                        "DPV006",
                        pos,
                        "IsReservable is true, but the Reportee is an organisation; it applies \
                         to private persons only, so remove it"
                            .into(),
                    );
                }
            }
            Field::OnBehalfOfOrgNr => {
                if !self.nil && !is_org_number(&value) {
                    self.report(
                        "DPV004",
                        pos,
                        format!(
                            "OnBehalfOfOrgNr '{value}' is not a valid organisation number \
                             (9 digits with a correct check digit)"
                        ),
                    );
                }
            }
            Field::NotificationType => {
                if !TEMPLATES.contains(&value.as_str()) {
                    self.report(
                        "DPV008",
                        pos,
                        format!(
                            "NotificationType '{value}' is not a DPV notification template; use \
                             VarselDPVMedRevarsel (reminder after 7 days) or VarselDPVUtenRevarsel"
                        ),
                    );
                }
                self.notification.template = Some((value, pos));
            }
            Field::TokenValue => {
                self.notification.tokens += 1;
                if self
                    .notification
                    .longest_token
                    .is_none_or(|(n, _)| chars > n)
                {
                    self.notification.longest_token = Some((chars, pos));
                }
            }
            Field::TransportType => {
                if !TRANSPORTS.contains(&value.as_str()) {
                    self.report(
                        "DPV016",
                        pos,
                        format!(
                            "TransportType '{value}' is unknown; use one of {}",
                            TRANSPORTS.join(", ")
                        ),
                    );
                }
                if value.contains("SMS") || value == "Both" || value == "EmailPreferred" {
                    self.notification.sms = true;
                }
                self.endpoint.transport = Some((value, pos));
            }
            Field::ReceiverAdress => self.endpoint.address = Some((value, pos)),
            Field::FileName => self.attachment.file_name = Some((value, pos)),
            Field::Data => {}
        }
    }

    fn letter_done(&mut self) {
        let letter = std::mem::take(&mut self.letter);
        self.letters += 1;
        self.letter_refs.push((
            letter.senders_reference.clone(),
            letter.reportee.clone().unwrap_or_default(),
        ));
        let Some((code, pos)) = letter.service else {
            return; // the schema reports the missing ServiceCode
        };
        let edition = letter.edition.as_deref();
        let known = match (code.as_str(), edition) {
            ("4255", Some(e)) => {
                e.bytes().all(|b| b.is_ascii_digit())
                    && !e.starts_with('0')
                    && matches!(e.parse::<u32>(), Ok(1..=10))
            }
            ("5504", Some("1")) => true,
            _ => false,
        };
        if !known {
            let message = match edition {
                None => format!(
                    "ServiceCode {code} has no ServiceEdition; DPV letters need one: 4255 with \
                     edition 1-10 (10 = general administration) or 5504 edition 1 (confidential)"
                ),
                Some(e) => format!(
                    "service {code} edition {e} is not a DPV service; use 4255 with edition \
                     1-10 (10 = general administration) or 5504 edition 1 (confidential post)"
                ),
            };
            let code_id = if edition.is_none() {
                "DPV002"
            } else {
                "DPV001"
            };
            self.report(code_id, pos, message);
        }
        if code == "5504" && edition == Some("1") && !letter.has_notification {
            self.report(
                "DPV005",
                letter.start,
                "confidential post (service 5504 edition 1) must have a notification, \
                 but this letter has none; add Notifications"
                    .into(),
            );
        }
    }

    fn notification_done(&mut self) {
        let n = std::mem::take(&mut self.notification);
        self.letter.has_notification = true;
        if let Some((template, _)) = &n.template {
            if TEMPLATES.contains(&template.as_str()) && n.tokens != 1 {
                self.report(
                    "DPV009",
                    n.start,
                    format!(
                        "the template {template} takes exactly one TextToken, but this \
                         notification has {}",
                        n.tokens
                    ),
                );
            }
        }
        if let Some((chars, pos)) = n.longest_token {
            if n.sms && chars > SMS_MAX_CHARS {
                self.report(
                    "DPV017",
                    pos,
                    format!(
                        "this text goes out by SMS and is {chars} characters; an SMS may be \
                         at most {SMS_MAX_CHARS}"
                    ),
                );
            }
        }
    }

    fn endpoint_done(&mut self) {
        let e = std::mem::take(&mut self.endpoint);
        if let (Some((transport, _)), Some((address, pos))) = (e.transport, e.address) {
            if ADDRESSLESS.contains(&transport.as_str()) && !address.trim().is_empty() {
                self.report(
                    "DPV007",
                    pos,
                    format!(
                        "ReceiverAdress must be empty for TransportType {transport}: Altinn then \
                         uses the organisation's registered contact details"
                    ),
                );
            }
        }
    }

    fn attachment_done(&mut self) {
        let a = std::mem::take(&mut self.attachment);
        let (name, name_pos) = a.file_name.unwrap_or_default();
        let shown = if name.is_empty() {
            "(no FileName)"
        } else {
            name.as_str()
        };
        if !name.is_empty() && !is_plain_file_name(&name) {
            self.report(
                "DPV014",
                name_pos,
                format!(
                    "attachment FileName '{name}' contains a path; give the file name only, \
                     e.g. 'invoice.pdf'"
                ),
            );
        }
        let Some((data, data_pos)) = a.data else {
            return; // the schema reports the missing Data
        };
        if let Some(problem) = data.problem() {
            self.report(
                "DPV012",
                data_pos,
                format!("attachment '{shown}': Data is not valid base64: {problem}"),
            );
            return;
        }
        let size = if data.is_empty() {
            match self.package.map(|p| p.get(&name)) {
                Some(Some(size)) => *size,
                Some(None) => {
                    let hint = self
                        .package
                        .and_then(|p| super::names::near_miss(&name, p.keys().map(String::as_str)))
                        .unwrap_or_default();
                    self.report(
                        "DPV015",
                        data_pos,
                        format!(
                            "attachment '{shown}' has empty Data and the export package has no \
                             file named '{name}' to fill it from{hint}"
                        ),
                    );
                    return;
                }
                None => {
                    self.report(
                        "DPV015",
                        data_pos,
                        format!(
                            "attachment '{shown}' has empty Data; put the file's content in Data \
                             (base64), or send the batch as an export package (.zip) with the file"
                        ),
                    );
                    return;
                }
            }
        } else {
            data.decoded_len()
        };
        let limit = self.opts.max_attachment_bytes;
        if size > limit {
            self.report(
                "DPV013",
                a.start,
                format!("attachment '{shown}' is {size} bytes, over the limit of {limit} bytes"),
            );
        }
    }
}

/// A file name with no directory part and nothing that climbs out of one.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !(name.len() >= 2 && name.as_bytes()[1] == b':')
}

const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

impl Events for Rules<'_> {
    fn start_tag(&mut self, tag: &crate::xml::Tag<'_>, pos: Pos) {
        self.nil = tag.attributes.iter().any(|a| {
            a.uri == Some(XSI) && a.local == b"nil" && matches!(&*a.value, b"true" | b"1")
        });
        self.start(tag.local, tag.uri == Some(crate::xml::BATCH_NS), pos);
    }

    fn start(&mut self, local: &[u8], in_batch_ns: bool, pos: Pos) {
        if self.opaque > 0 {
            self.opaque += 1;
            return;
        }
        let parent = self.stack.last().copied();
        let name = if in_batch_ns {
            name_of(local)
        } else {
            Name::Other
        };
        self.stack.push(name);
        match name {
            Name::MessageBody => self.opaque = 1,
            Name::Correspondence => self.letter.start = pos,
            Name::Notification => self.notification.start = pos,
            Name::BinaryAttachment => self.attachment.start = pos,
            _ => {}
        }
        let field = match (in_batch_ns, parent) {
            (true, Some(parent)) => field_of(parent, local),
            _ => None,
        };
        if let Some(field) = field {
            self.capture = Some((field, pos));
            self.text.clear();
            self.text_chars = 0;
            self.full_hash = Default::default();
            self.full_len = 0;
            if field == Field::Data {
                self.attachment.data = Some((Base64::default(), pos));
            }
        }
    }

    fn text(&mut self, text: &[u8]) {
        let Some((field, _)) = self.capture else {
            return;
        };
        if field == Field::Data {
            if let Some((b64, _)) = self.attachment.data.as_mut() {
                b64.feed(text);
            }
            return;
        }
        self.text_chars += text.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
        if field == Field::SendersReference {
            use std::hash::Hasher;
            self.full_hash.write(text);
            self.full_len += text.len();
        }
        let room = KEEP_BYTES.saturating_sub(self.text.len());
        self.text.extend_from_slice(&text[..room.min(text.len())]);
    }

    fn end(&mut self, _local: &[u8], _pos: Pos) {
        if self.opaque > 0 {
            self.opaque -= 1;
            if self.opaque > 0 {
                return;
            }
        }
        let Some(name) = self.stack.pop() else {
            return;
        };
        if let Some((field, pos)) = self.capture.take() {
            self.field_done(field, pos);
        }
        match name {
            Name::Correspondence => self.letter_done(),
            Name::Notification => self.notification_done(),
            Name::ReceiverEndPoint => self.endpoint_done(),
            Name::BinaryAttachment => self.attachment_done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Base64 {
        let mut b = Base64::default();
        b.feed(s.as_bytes());
        b
    }

    #[test]
    fn base64_checks() {
        assert!(b64("SGVsbG8=").problem().is_none());
        assert_eq!(b64("SGVsbG8=").decoded_len(), 5);
        assert_eq!(b64("SGVs\nbG8h").decoded_len(), 6);
        assert!(b64("SGVsbG8").problem().is_some());
        assert!(b64("SGV=sbG8").problem().is_some());
        assert!(b64("SGVs*G8=").problem().is_some());
        assert!(b64("").is_empty());
    }

    #[test]
    fn plain_file_names() {
        assert!(is_plain_file_name("faktura 2026.pdf"));
        for bad in [
            "../x.pdf",
            "a/b.pdf",
            "a\\b.pdf",
            "C:x.pdf",
            "/etc/passwd",
            "..",
            "",
        ] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
    }
}
