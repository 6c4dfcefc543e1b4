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
//!
//! Rules judge *whole* values. A value is never cut to fit a buffer: a cut
//! value can pass a check the whole value fails (a FileName whose `/../`
//! starts after the cut), and two readers that cut differently disagree on
//! what the value is. Instead every value the rules keep has a ceiling far
//! above any legitimate value ([`Field::max_bytes`]); a longer one is an
//! error of its own (DPV021), which keeps memory bounded without guessing.
//!
//! Which element is which field is decided by [`Structure`], which the
//! packager uses too: the attachment slots validation judged are exactly
//! the ones packaging fills.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::ids::{is_national_id, is_org_number};
use super::package::PackageIndex;
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
/// The longest file name (in UTF-8 bytes) that file systems (ext4, APFS,
/// and NTFS for most names) and Altinn 3 accept: longer FileNames and
/// package entries are refused.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// The longest reference or address kept: Altinn 3's limit for a
/// sendersReference.
const MAX_REFERENCE_BYTES: usize = 4096;
/// The longest code, number or flag kept: the longest valid one
/// (`PriorityEmailSMSReminder`) is 24 bytes, so this leaves room for any
/// surrounding whitespace a pretty-printer adds.
const MAX_CODE_BYTES: usize = 256;

/// The elements the rules look at, by local name and parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
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

impl Field {
    /// The longest value kept whole, in UTF-8 bytes; a longer one is
    /// DPV021. `None`: the value is judged while streaming and not kept
    /// (Data: base64 checked and measured; TokenValue: characters counted).
    pub fn max_bytes(self) -> Option<usize> {
        use Field::*;
        match self {
            Data | TokenValue => None,
            FileName => Some(MAX_FILE_NAME_BYTES),
            SendersReference | ShipmentReference | ReceiverAdress => Some(MAX_REFERENCE_BYTES),
            _ => Some(MAX_CODE_BYTES),
        }
    }

    /// The element's name, for messages.
    pub fn name(self) -> &'static str {
        use Field::*;
        match self {
            SystemUserCode => "SystemUserCode",
            ShipmentReference => "ShipmentReference",
            SequenceNo => "SequenceNo",
            ServiceCode => "ServiceCode",
            ServiceEdition => "ServiceEdition",
            SendersReference => "SendersReference",
            Reportee => "Reportee",
            ContentLanguage | NotificationLanguage => "LanguageCode",
            IsReservable => "IsReservable",
            OnBehalfOfOrgNr => "OnBehalfOfOrgNr",
            NotificationType => "NotificationType",
            TokenValue => "TokenValue",
            TransportType => "TransportType",
            ReceiverAdress => "ReceiverAdress",
            FileName => "FileName",
            Data => "Data",
        }
    }
}

/// Element names that matter as parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
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

/// Where the parser is in a batch document, and which element is which
/// [`Field`]: the one definition, used by the rules and by the packager, so
/// that the elements validation judged (an attachment's FileName and Data)
/// are exactly the ones packaging reads and fills. Inside `MessageBody`
/// (xs:anyType: any markup at all) nothing is a field.
#[derive(Debug, Default)]
pub struct Structure {
    stack: Vec<Name>,
    /// Depth inside `MessageBody`.
    opaque: u32,
}

impl Structure {
    /// An element starts: what it is, and the field it holds, if any.
    /// `None` inside `MessageBody`.
    pub fn start(&mut self, local: &[u8], in_batch_ns: bool) -> Option<(Name, Option<Field>)> {
        if self.opaque > 0 {
            self.opaque += 1;
            return None;
        }
        let parent = self.stack.last().copied();
        let name = if in_batch_ns {
            name_of(local)
        } else {
            Name::Other
        };
        self.stack.push(name);
        if name == Name::MessageBody {
            self.opaque = 1;
        }
        let field = match (in_batch_ns, parent) {
            (true, Some(parent)) => field_of(parent, local),
            _ => None,
        };
        Some((name, field))
    }

    /// The current element ends: the name it had, `None` inside `MessageBody`.
    pub fn end(&mut self) -> Option<Name> {
        if self.opaque > 0 {
            self.opaque -= 1;
            if self.opaque > 0 {
                return None;
            }
        }
        self.stack.pop()
    }
}

/// Whitespace that may stand anywhere in base64 `Data` (line breaks of
/// wrapped base64). `Data` of nothing else is empty: in an export package,
/// it is filled from the file its FileName names.
pub fn is_base64_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
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
    file_name: Option<(FileNameValue, Pos)>,
    data: Option<(Base64, Pos)>,
    start: Pos,
}

/// An attachment's FileName: kept whole, or, when longer than any file name
/// may be (DPV021), what the check of DPV014 found on the whole of it.
enum FileNameValue {
    Whole(String),
    TooLong {
        shown: String,
        problem: Option<&'static str>,
    },
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
                b if is_base64_space(b) => {}
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
    package: Option<&'a PackageIndex>,
    violations: Vec<Violation>,
    structure: Structure,
    /// The field whose text is being collected, where it started, its text
    /// (whole, up to the field's `max_bytes`), its length in bytes and
    /// characters, and whether it holds a path separator anywhere.
    capture: Option<(Field, Pos)>,
    text: Vec<u8>,
    text_len: usize,
    text_chars: usize,
    text_separator: bool,
    text_control: bool,
    letter: Letter,
    notification: Notification,
    endpoint: Endpoint,
    attachment: Attachment,
    /// SHA-256 of each SendersReference seen → line of first use (a digest,
    /// not the value: 32 bytes per letter whatever the reference's length).
    references: HashMap<[u8; 32], u32>,
    /// The current element has xsi:nil="true" (no value).
    nil: bool,
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
    pub fn new(opts: &'a RuleOptions, package: Option<&'a PackageIndex>) -> Self {
        Rules {
            opts,
            package,
            violations: Vec::new(),
            structure: Structure::default(),
            capture: None,
            text: Vec::with_capacity(MAX_CODE_BYTES),
            text_len: 0,
            text_chars: 0,
            text_separator: false,
            text_control: false,
            letter: Letter::default(),
            notification: Notification::default(),
            endpoint: Endpoint::default(),
            attachment: Attachment::default(),
            references: HashMap::new(),
            nil: false,
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

    /// A finished field: judge its whole value. A value longer than the
    /// field's ceiling is DPV021 and is not judged further, except that a
    /// FileName's path check sees the whole of it.
    fn field_done(&mut self, field: Field, pos: Pos) {
        let chars = self.text_chars;
        if let Some(max) = field.max_bytes() {
            if self.text_len > max {
                self.value_too_long(field, pos, max);
                return;
            }
        }
        // libxml2 hands on UTF-8; lossy only guards against a bug there.
        let value = String::from_utf8_lossy(&self.text).into_owned();
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
                // Digits only, and a number the journal can hold: packaging
                // and the journal read it as an i64, and must read what was
                // validated.
                let ok = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && matches!(value.parse::<i64>(), Ok(n) if n >= 1);
                if !ok {
                    self.report(
                        "DPV019",
                        pos,
                        format!(
                            "SequenceNo '{value}' must be a whole number from 1 to {}",
                            i64::MAX
                        ),
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
                } else if let Some(first) = self.references.get(&digest(&value)) {
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
                    self.references.insert(digest(&value), pos.line);
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
            Field::FileName => {
                self.attachment.file_name = Some((FileNameValue::Whole(value), pos));
            }
            Field::Data => {}
        }
    }

    /// DPV021: a value longer than any valid one. What the field's rules
    /// need of the whole value is still judged (a FileName's path).
    fn value_too_long(&mut self, field: Field, pos: Pos, max: usize) {
        let len = self.text_len;
        let why = match field {
            Field::FileName => "the most a file name may have on file systems and in Altinn 3",
            Field::SendersReference | Field::ShipmentReference | Field::ReceiverAdress => {
                "Altinn 3's limit for a reference"
            }
            _ => "far more than any valid value",
        };
        let name = field.name();
        self.report(
            "DPV021",
            pos,
            format!(
                "{name} is {len} bytes long, longer than the {max} bytes dpv-batch accepts \
                 ({why}); it is refused, not cut"
            ),
        );
        if field == Field::FileName {
            // The whole name was seen while streaming: separators and ASCII
            // control characters anywhere in it, the rest (a drive letter, a
            // control character) in the first bytes, which were kept.
            let prefix = String::from_utf8_lossy(&self.text);
            let problem = if self.text_separator {
                Some(SEPARATOR_PROBLEM)
            } else if self.text_control {
                Some(CONTROL_PROBLEM)
            } else {
                file_name_problem(prefix.trim_end_matches('\u{FFFD}'))
            };
            let shown = shorten(&prefix);
            self.attachment.file_name = Some((FileNameValue::TooLong { shown, problem }, pos));
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
        let (file_name, name_pos) = match a.file_name {
            Some((value, pos)) => (Some(value), pos),
            None => (None, Pos::default()),
        };
        let too_long = matches!(file_name, Some(FileNameValue::TooLong { .. }));
        // The path check, on the whole name however long it is.
        let (name, problem) = match file_name {
            None => (String::new(), None),
            Some(FileNameValue::Whole(name)) => {
                let problem = if name.is_empty() {
                    None
                } else {
                    file_name_problem(&name)
                };
                (name, problem)
            }
            Some(FileNameValue::TooLong { shown, problem }) => (shown, problem),
        };
        if let Some(why) = problem {
            let hint = if why == SEPARATOR_PROBLEM {
                "give the file name only"
            } else {
                "give a plain file name"
            };
            self.report(
                "DPV014",
                name_pos,
                format!("attachment FileName '{name}' {why}; {hint}, e.g. 'invoice.pdf'"),
            );
        }
        let shown = if name.is_empty() {
            "(no FileName)"
        } else {
            name.as_str()
        };
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
            let unusable = problem.is_some() || too_long;
            match self.package.map(|p| (p.attachment(&name), p)) {
                // DPV014/DPV021 said it: no package entry has such a name.
                Some(_) if unusable => return,
                Some((Some(entry), _)) => entry.size,
                Some((None, package)) => {
                    let message = match package.same_but_for_case_or_form(&name) {
                        Some(similar) => format!(
                            "attachment '{shown}' has empty Data and the export package has no \
                             file named exactly '{name}'; it has '{similar}', which differs only in \
                             case, Unicode normalisation (NFC/NFD), invisible characters or \
                             trailing dots and blanks: names must match exactly"
                        ),
                        None => format!(
                            "attachment '{shown}' has empty Data and the export package has no \
                             file named '{name}' to fill it from"
                        ),
                    };
                    self.report("DPV015", data_pos, message);
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

const SEPARATOR_PROBLEM: &str = "contains a path ('/' or '\\')";
const CONTROL_PROBLEM: &str = "contains a control character";

/// Why `name` is not a plain file name, if it is not: no folder part,
/// nothing that climbs out of one, no drive letter, no control characters.
/// The one definition, for an attachment's FileName (DPV014) and for the
/// entries of an export package (PKG007), so a name the rules accept is a
/// name a package can hold, and the other way round. (Length is checked
/// apart: DPV021, and PKG007 past [`MAX_FILE_NAME_BYTES`].)
pub fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is '.' or '..', which name folders")
    } else if name.contains(['/', '\\']) {
        Some(SEPARATOR_PROBLEM)
    } else if name.chars().any(char::is_control) {
        Some(CONTROL_PROBLEM)
    } else if name.len() >= 2 && name.as_bytes()[1] == b':' {
        Some("starts with a drive letter")
    } else {
        None
    }
}

/// A value as shown in a message: its first 64 characters.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
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
        let Some((name, field)) = self.structure.start(local, in_batch_ns) else {
            return;
        };
        match name {
            Name::Correspondence => self.letter.start = pos,
            Name::Notification => self.notification.start = pos,
            Name::BinaryAttachment => self.attachment.start = pos,
            _ => {}
        }
        if let Some(field) = field {
            self.capture = Some((field, pos));
            self.text.clear();
            self.text_len = 0;
            self.text_chars = 0;
            self.text_separator = false;
            self.text_control = false;
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
        self.text_len += text.len();
        let Some(max) = field.max_bytes() else {
            return; // counted, not kept
        };
        if field == Field::FileName {
            self.text_separator |= text.iter().any(|b| matches!(b, b'/' | b'\\'));
            self.text_control |= text.iter().any(|b| b.is_ascii_control());
        }
        // Kept whole while it fits; past the ceiling only the first bytes
        // stay (for the message): the value is DPV021 and judged no further.
        let room = max.saturating_sub(self.text.len());
        self.text.extend_from_slice(&text[..room.min(text.len())]);
    }

    fn end(&mut self, _local: &[u8], _pos: Pos) {
        let Some(name) = self.structure.end() else {
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
        assert_eq!(file_name_problem("faktura 2026.pdf"), None);
        assert_eq!(file_name_problem("..faktura.pdf"), None);
        assert_eq!(file_name_problem("vedtak æøå.pdf"), None);
        for bad in [
            "../x.pdf",
            "a/b.pdf",
            "a\\b.pdf",
            "C:x.pdf",
            "/etc/passwd",
            "..",
            ".",
            "",
            "a\nb.pdf",
            "a\u{85}b.pdf",
        ] {
            assert!(file_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    /// (line, code) of every error in `xml`, validated as a plain batch.
    fn codes(xml: &str) -> Vec<(u32, String)> {
        let v = crate::validate::Validator::new(Default::default()).expect("schema");
        let report = v.validate_xml("t.xml".into(), &mut xml.as_bytes(), None);
        report
            .errors
            .into_iter()
            .map(|e| (e.line, e.code))
            .collect()
    }

    fn letter_with_attachment(file_name: &str, data: &str) -> String {
        format!(
            r#"<Correspondences xmlns="http://schemas.altinn.no/services/intermediary/correspondence/2009/10">
<SystemUserCode>BRG-4601</SystemUserCode><ShipmentReference>S</ShipmentReference>
<Correspondence><ServiceCode>4255</ServiceCode><ServiceEdition>10</ServiceEdition>
<SendersReference>R</SendersReference><Reportee>974760673</Reportee>
<Content><LanguageCode>1044</LanguageCode><MessageTitle>T</MessageTitle>
<Attachments><BinaryAttachments><BinaryAttachment>
<FileName>{file_name}</FileName><Name>N</Name><Encrypted>false</Encrypted><Data>{data}</Data>
</BinaryAttachment></BinaryAttachments></Attachments></Content></Correspondence></Correspondences>"#
        )
    }

    #[test]
    fn an_empty_data_is_reported_whatever_its_file_name() {
        let dpv = |c: &[(u32, String)]| c.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();
        assert_eq!(
            dpv(&codes(&letter_with_attachment("a/b.pdf", ""))),
            ["DPV014", "DPV015"]
        );
        let long = "x".repeat(300);
        assert_eq!(
            dpv(&codes(&letter_with_attachment(&long, ""))),
            ["DPV021", "DPV015"]
        );
        assert!(codes(&letter_with_attachment("b.pdf", "SGVsbG8=")).is_empty());
    }

    #[test]
    fn values_at_their_ceiling_are_whole_and_one_byte_more_is_dpv021() {
        let at = "x".repeat(MAX_FILE_NAME_BYTES);
        assert!(codes(&letter_with_attachment(&at, "SGVsbG8=")).is_empty());
        let over = "x".repeat(MAX_FILE_NAME_BYTES + 1);
        let got = codes(&letter_with_attachment(&over, "SGVsbG8="));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "DPV021");
        // DPV014 judges the whole of an over-long name.
        let drive = format!("C:{}", "x".repeat(300));
        let tab = format!("{}\t.pdf", "x".repeat(300));
        for name in [drive, tab] {
            let got: Vec<String> = codes(&letter_with_attachment(&name, "SGVsbG8="))
                .into_iter()
                .map(|(_, c)| c)
                .collect();
            assert_eq!(got, ["DPV021", "DPV014"], "{name:?}");
        }
        // Multi-byte characters count in bytes: 128 × 'ø' is 256 bytes.
        let wide = "ø".repeat(128);
        assert_eq!(
            codes(&letter_with_attachment(&wide, "SGVsbG8="))[0].1,
            "DPV021"
        );
    }

    #[test]
    fn structure_sees_no_fields_inside_message_body() {
        let ns = true;
        let mut s = Structure::default();
        assert_eq!(
            s.start(b"Correspondences", ns),
            Some((Name::Correspondences, None))
        );
        s.start(b"Correspondence", ns);
        s.start(b"Content", ns);
        assert_eq!(s.start(b"MessageBody", ns), Some((Name::MessageBody, None)));
        assert_eq!(s.start(b"FileName", ns), None, "anyType content is opaque");
        assert_eq!(s.end(), None);
        assert_eq!(s.end(), Some(Name::MessageBody));
        assert_eq!(s.end(), Some(Name::Content));
        s.start(b"Attachments", ns);
        s.start(b"BinaryAttachments", ns);
        s.start(b"BinaryAttachment", ns);
        assert_eq!(
            s.start(b"FileName", ns),
            Some((Name::Other, Some(Field::FileName)))
        );
        s.end();
        assert_eq!(
            s.start(b"Data", false),
            Some((Name::Other, None)),
            "other namespace"
        );
    }
}
