//! Altinn II batch letter → Altinn 3 `InitializeCorrespondencesExt`.
//!
//! Why one module: the mapping is a contract with the fagsystem (what it
//! wrote in an Altinn II batch must mean the same in Altinn 3), so every
//! field's fate is decided here, in one place, and documented field by field
//! in docs/altinn3.md. The reference's table (altinn3.md §6.4) is followed;
//! where it leaves a choice, the choice and its reason are in a comment.
//!
//! The input, [`A2Letter`], is what the streaming splitter (`letters.rs`)
//! read: each value with where it stood in the batch, so the A3 rules can
//! point at the line. Mapping itself never fails: a value it cannot map is
//! mapped as best it can and the A3 rules (`rules.rs`) refuse the letter.

use std::collections::BTreeMap;
use std::path::PathBuf;

use uuid::Uuid;

use super::model::{
    Attachment, BaseCorrespondence, Content, CustomRecipient, EmailContentType,
    InitializeCorrespondences, Notification, NotificationChannel, NotificationTemplate,
    ReplyOption,
};
use crate::config::ResourceEntry;
use crate::validate::ids::{is_national_id, is_org_number};
use crate::xml::Pos;

/// A value read from the batch, and where its content starts. `chars` and
/// `utf16` count the whole value even when `value` was cut at
/// [`KEEP_BYTES`] (a hostile 1 GB title must not be held in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    pub pos: Pos,
    pub chars: usize,
    pub utf16: usize,
    pub truncated: bool,
}

/// Longest value kept of one field: well over every Altinn 3 limit (body
/// 30,000 UTF-16 units is at most 120 KB of UTF-8).
pub const KEEP_BYTES: usize = 128 * 1024;

impl Text {
    pub fn new(value: &str, pos: Pos) -> Text {
        Text {
            value: value.to_string(),
            pos,
            chars: value.chars().count(),
            utf16: value.encode_utf16().count(),
            truncated: false,
        }
    }
    pub fn trimmed(&self) -> &str {
        self.value.trim()
    }
    fn is_true(&self) -> bool {
        matches!(self.trimmed(), "true" | "1")
    }
}

/// One Altinn II `Correspondence`, as far as Altinn 3 can use it.
#[derive(Debug, Clone, Default)]
pub struct A2Letter {
    /// Where the `Correspondence` element starts.
    pub start: Pos,
    pub service_code: Option<Text>,
    pub service_edition: Option<Text>,
    pub senders_reference: Option<Text>,
    pub reportee: Option<Text>,
    pub language: Option<Text>,
    pub title: Option<Text>,
    pub summary: Option<Text>,
    pub body: Option<Text>,
    pub visible: Option<Text>,
    pub due: Option<Text>,
    pub allow_forwarding: Option<Text>,
    pub is_reservable: Option<Text>,
    pub on_behalf_of: Option<Text>,
    /// `ReplyOptions/ReplyOption/Url`: (LinkText, LinkUrl).
    pub reply_urls: Vec<(Option<Text>, Text)>,
    pub notifications: Vec<A2Notification>,
    pub attachments: Vec<A2Attachment>,
    /// Where each `XmlAttachment` starts (no Altinn 3 counterpart).
    pub xml_attachments: Vec<Pos>,
}

#[derive(Debug, Clone, Default)]
pub struct A2Notification {
    pub start: Pos,
    pub template: Option<Text>,
    pub tokens: Vec<Text>,
    pub endpoints: Vec<A2Endpoint>,
}

#[derive(Debug, Clone, Default)]
pub struct A2Endpoint {
    pub transport: Text,
    pub address: Option<Text>,
}

#[derive(Debug, Clone, Default)]
pub struct A2Attachment {
    pub start: Pos,
    pub file_name: Option<Text>,
    pub name: Option<Text>,
    pub encrypted: Option<Text>,
    pub senders_reference: Option<Text>,
    /// Where the decoded bytes are (none when only checking).
    pub path: Option<PathBuf>,
    pub bytes: u64,
    /// Why the Data could not be decoded, if it could not.
    pub data_problem: Option<String>,
}

/// What the mapping needs from the configuration.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// `[transport.altinn3.resources]`.
    pub resources: BTreeMap<String, ResourceEntry>,
    pub default_body: String,
    pub message_sender: Option<String>,
    pub email_subject: String,
}

impl MapOptions {
    pub fn from_config(cfg: &crate::config::Altinn3Config) -> MapOptions {
        MapOptions {
            resources: cfg.resources.clone(),
            default_body: cfg.default_body.clone(),
            message_sender: cfg.message_sender.clone(),
            email_subject: cfg.email_subject.clone(),
        }
    }
}

/// Altinn II's text token for the recipient's name, and Altinn 3's.
pub const A2_RECIPIENT_TOKEN: &str = "$reporteeName$";
pub const A3_RECIPIENT_TOKEN: &str = "$correspondenceRecipientName$";

/// `urn:altinn:organization:identifier-no:<9 digits>` or
/// `urn:altinn:person:identifier-no:<11 digits>`; `None` for anything else.
pub fn recipient_urn(reportee: &str) -> Option<String> {
    let r = reportee.trim();
    if is_org_number(r) {
        Some(format!("urn:altinn:organization:identifier-no:{r}"))
    } else if is_national_id(r) {
        Some(format!("urn:altinn:person:identifier-no:{r}"))
    } else {
        None
    }
}

/// Altinn II LanguageCode (an LCID) → Altinn 3 language.
pub fn language(lcid: &str) -> Option<&'static str> {
    match lcid.trim() {
        "1044" => Some("nb"),
        "2068" => Some("nn"),
        "1033" => Some("en"),
        _ => None,
    }
}

/// ReceiverEndPoint TransportType → (channel, reminder channel).
/// PriorityEmailSMSReminder ("e-mail first, the reminder by SMS") has no
/// single Altinn 3 channel: the notice prefers e-mail, the reminder SMS.
pub fn channel(transport: &str) -> Option<(NotificationChannel, Option<NotificationChannel>)> {
    use NotificationChannel::*;
    Some(match transport.trim() {
        "Email" => (Email, None),
        "SMS" => (Sms, None),
        "Both" => (EmailAndSms, None),
        "EmailPreferred" => (EmailPreferred, None),
        "SMSPreferred" => (SmsPreferred, None),
        "PriorityEmailSMSReminder" => (EmailPreferred, Some(SmsPreferred)),
        _ => return None,
    })
}

/// The channels of a notification with several endpoints: one endpoint
/// decides alone; e-mail and SMS endpoints together make EmailAndSms (each
/// explicit address gets its notice). No endpoint: Altinn 3's default, Email.
pub fn channels(endpoints: &[A2Endpoint]) -> (NotificationChannel, Option<NotificationChannel>) {
    use NotificationChannel::*;
    let mapped: Vec<_> = endpoints
        .iter()
        .filter_map(|e| channel(&e.transport.value))
        .collect();
    match mapped.as_slice() {
        [] => (Email, None),
        [one] => *one,
        many => {
            let email = many.iter().any(|(c, _)| c.needs_email());
            let sms = many.iter().any(|(c, _)| c.needs_sms());
            match (email, sms) {
                (true, true) => (EmailAndSms, None),
                (false, true) => (Sms, None),
                _ => (Email, None),
            }
        }
    }
}

/// A Norwegian mobile number as Altinn II took it, in E.164 as Altinn 3
/// wants it: `+47` before a bare 8-digit number, `00` → `+`.
pub fn e164(number: &str) -> String {
    let n: String = number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if let Some(rest) = n.strip_prefix("00") {
        format!("+{rest}")
    } else if n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()) {
        format!("+47{n}")
    } else {
        n
    }
}

fn token_text(t: &str) -> String {
    t.replace(A2_RECIPIENT_TOKEN, A3_RECIPIENT_TOKEN)
}

/// An xs:dateTime as Altinn 3 takes it (RFC 3339, UTC). A value without an
/// offset is taken as UTC. `None` when it cannot be read.
pub fn timestamp(value: &str) -> Option<String> {
    super::model::parse_timestamp(value).map(crate::clock::format_time)
}

/// The default `sendersReference` of an attachment without one (Altinn 3
/// requires it): the letter's reference and the attachment's number.
pub fn attachment_reference(letter_ref: &str, n: usize) -> String {
    let r = format!("{letter_ref}/{n}");
    if r.encode_utf16().count() <= 4096 {
        r
    } else {
        format!("attachment-{n}")
    }
}

/// The Altinn 3 request for one letter. The idempotent key is the caller's
/// (see `letters::idempotent_key`).
pub fn to_request(l: &A2Letter, o: &MapOptions, key: Option<Uuid>) -> InitializeCorrespondences {
    let code = l.service_code.as_ref().map(Text::trimmed).unwrap_or("");
    let edition = l.service_edition.as_ref().map(Text::trimmed);
    let resource = crate::config::altinn3::lookup_resource(&o.resources, code, edition);
    let senders_reference = l
        .senders_reference
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let reportee = l.reportee.as_ref().map(Text::trimmed).unwrap_or("");
    let recipient = recipient_urn(reportee).unwrap_or_else(|| reportee.to_string());
    let is_person = is_national_id(reportee);

    let body = l
        .body
        .as_ref()
        .map(|b| b.value.as_str())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or(&o.default_body)
        .to_string();
    let attachments = l
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| Attachment {
            file_name: a
                .file_name
                .as_ref()
                .map(|t| t.trimmed().to_string())
                .unwrap_or_default(),
            display_name: a
                .name
                .as_ref()
                .map(|t| t.value.trim().to_string())
                .filter(|n| !n.is_empty()),
            is_encrypted: a.encrypted.as_ref().is_some_and(Text::is_true),
            checksum: None,
            senders_reference: a
                .senders_reference
                .as_ref()
                .map(|t| t.value.trim().to_string())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| attachment_reference(&senders_reference, i + 1)),
        })
        .collect();
    let content = Content {
        language: l
            .language
            .as_ref()
            .and_then(|t| language(&t.value))
            .unwrap_or("nb")
            .to_string(),
        message_title: l
            .title
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default(),
        message_summary: l
            .summary
            .as_ref()
            .map(|t| t.value.clone())
            .filter(|s| !s.trim().is_empty()),
        message_body: body,
        attachments,
    };

    let mut property_list = BTreeMap::new();
    if let Some(obo) = l.on_behalf_of.as_ref().filter(|t| !t.trimmed().is_empty()) {
        // Altinn 3 has no on-behalf-of: the sender is the resource owner.
        // The number travels as a property the recipient's system can read.
        property_list.insert("onBehalfOfOrgNr".to_string(), obo.trimmed().to_string());
    }

    let reply_options = l
        .reply_urls
        .iter()
        .map(|(text, url)| ReplyOption {
            link_url: url.trimmed().to_string(),
            link_text: text
                .as_ref()
                .map(|t| t.value.trim().to_string())
                .filter(|t| !t.is_empty()),
        })
        .collect();

    let correspondence = BaseCorrespondence {
        resource_id: resource
            .map(|r| r.resource().to_string())
            .unwrap_or_default(),
        senders_reference,
        message_sender: o.message_sender.clone().filter(|s| !s.trim().is_empty()),
        content,
        requested_publish_time: l.visible.as_ref().and_then(|t| timestamp(&t.value)),
        due_date_time: l.due.as_ref().and_then(|t| timestamp(&t.value)),
        property_list,
        reply_options,
        notification: l.notifications.first().map(|n| notification(n, o)),
        // Altinn II: IsReservable=false (the default) delivers even to a
        // person reserved against digital post. Altinn 3 says the same with
        // ignoreReservation=true. Organisations are never reserved: unset.
        ignore_reservation: is_person.then(|| !l.is_reservable.as_ref().is_some_and(Text::is_true)),
        is_confirmation_needed: false,
        is_confidential: resource.is_some_and(ResourceEntry::confidential),
        // Only sent when asked for: allowForwarding=true is refused on some
        // resources (1068), false is Altinn 3's default anyway.
        allow_forwarding: l
            .allow_forwarding
            .as_ref()
            .filter(|t| t.is_true())
            .map(|_| true),
    };
    InitializeCorrespondences {
        correspondence,
        recipients: vec![recipient],
        existing_attachments: Vec::new(),
        idempotent_key: key,
    }
}

/// One Altinn II notification → Altinn 3's.
fn notification(n: &A2Notification, o: &MapOptions) -> Notification {
    let send_reminder = n
        .template
        .as_ref()
        .is_none_or(|t| t.trimmed() != "VarselDPVUtenRevarsel");
    // Both DPV templates take one text token: the notice's text.
    let text = n
        .tokens
        .iter()
        .map(|t| t.value.trim())
        .find(|t| !t.is_empty())
        .map(token_text);
    let (channel, reminder_channel) = channels(&n.endpoints);
    let reminder = reminder_channel.unwrap_or(channel);
    let email = |c: NotificationChannel| c.needs_email().then(|| text.clone()).flatten();
    let sms = |c: NotificationChannel| c.needs_sms().then(|| text.clone()).flatten();
    let subject = |c: NotificationChannel| c.needs_email().then(|| o.email_subject.clone());
    let plain = |c: NotificationChannel| c.needs_email().then_some(EmailContentType::Plain);

    let mut custom_recipients = Vec::new();
    for e in &n.endpoints {
        let Some(addr) = e.address.as_ref().filter(|a| !a.trimmed().is_empty()) else {
            continue;
        };
        let a = addr.trimmed();
        let by_sms = e.transport.trimmed() == "SMS" || (!a.contains('@') && a.len() < 20);
        custom_recipients.push(if by_sms && !a.contains('@') {
            CustomRecipient {
                mobile_number: Some(e164(a)),
                ..Default::default()
            }
        } else {
            CustomRecipient {
                email_address: Some(a.to_string()),
                ..Default::default()
            }
        });
    }
    // Addresses on every endpoint: the fagsystem chose who gets the notice.
    let override_registered = !custom_recipients.is_empty()
        && n.endpoints
            .iter()
            .all(|e| e.address.as_ref().is_some_and(|a| !a.trimmed().is_empty()));

    Notification {
        notification_template: NotificationTemplate::CustomMessage,
        email_subject: subject(channel),
        email_body: email(channel),
        email_content_type: plain(channel),
        sms_body: sms(channel),
        send_reminder,
        reminder_email_subject: send_reminder.then(|| subject(reminder)).flatten(),
        reminder_email_body: send_reminder.then(|| email(reminder)).flatten(),
        reminder_email_content_type: send_reminder.then(|| plain(reminder)).flatten(),
        reminder_sms_body: send_reminder.then(|| sms(reminder)).flatten(),
        notification_channel: channel,
        reminder_notification_channel: reminder_channel,
        senders_reference: None,
        custom_recipients,
        override_registered_contact_information: override_registered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Option<Text> {
        Some(Text::new(v, Pos::default()))
    }

    fn opts() -> MapOptions {
        let mut resources = BTreeMap::new();
        resources.insert(
            "4255/10".to_string(),
            ResourceEntry::Id("eformidling-dpv-administrasjon".into()),
        );
        resources.insert(
            "5504/1".to_string(),
            ResourceEntry::Table {
                resource: "eformidling-dpv-taushetsbelagt".into(),
                confidential: true,
            },
        );
        MapOptions {
            resources,
            default_body: "Ingen innhold".into(),
            message_sender: Some("Bergen kommune".into()),
            email_subject: "Melding mottatt i Altinn".into(),
        }
    }

    fn letter() -> A2Letter {
        A2Letter {
            service_code: t("4255"),
            service_edition: t("10"),
            senders_reference: t("REF-1"),
            reportee: t("974760673"),
            language: t("2068"),
            title: t("Vedtak"),
            ..Default::default()
        }
    }

    #[test]
    fn core_fields() {
        let r = to_request(&letter(), &opts(), None);
        let c = &r.correspondence;
        assert_eq!(
            r.recipients,
            ["urn:altinn:organization:identifier-no:974760673"]
        );
        assert_eq!(c.resource_id, "eformidling-dpv-administrasjon");
        assert!(!c.is_confidential);
        assert_eq!(c.content.language, "nn");
        assert_eq!(c.content.message_body, "Ingen innhold");
        assert_eq!(c.message_sender.as_deref(), Some("Bergen kommune"));
        assert_eq!(c.ignore_reservation, None);
        assert_eq!(c.allow_forwarding, None);
        assert!(c.notification.is_none());
    }

    #[test]
    fn confidential_person_reservable() {
        let mut l = letter();
        l.service_code = t("5504");
        l.service_edition = t("1");
        l.reportee = t("01010112347"); // not a valid national id
        let r = to_request(&l, &opts(), None);
        assert!(r.correspondence.is_confidential);
        assert_eq!(r.recipients, ["01010112347"]);
        l.reportee = t("13097248022");
        l.is_reservable = t("true");
        let r = to_request(&l, &opts(), None);
        assert_eq!(
            r.recipients,
            ["urn:altinn:person:identifier-no:13097248022"]
        );
        assert_eq!(r.correspondence.ignore_reservation, Some(false));
        l.is_reservable = None;
        let r = to_request(&l, &opts(), None);
        assert_eq!(r.correspondence.ignore_reservation, Some(true));
    }

    #[test]
    fn notifications() {
        let mut l = letter();
        l.notifications.push(A2Notification {
            template: t("VarselDPVUtenRevarsel"),
            tokens: vec![Text::new("Hei $reporteeName$", Pos::default())],
            endpoints: vec![A2Endpoint {
                transport: Text::new("SMS", Pos::default()),
                address: t("912 34 567"),
            }],
            ..Default::default()
        });
        let n = to_request(&l, &opts(), None)
            .correspondence
            .notification
            .unwrap();
        assert!(!n.send_reminder);
        assert_eq!(n.notification_channel, NotificationChannel::Sms);
        assert_eq!(
            n.sms_body.as_deref(),
            Some("Hei $correspondenceRecipientName$")
        );
        assert_eq!(n.email_body, None);
        assert_eq!(n.reminder_sms_body, None);
        assert_eq!(
            n.custom_recipients[0].mobile_number.as_deref(),
            Some("+4791234567")
        );
        assert!(n.override_registered_contact_information);

        l.notifications[0].template = t("VarselDPVMedRevarsel");
        l.notifications[0].endpoints = vec![A2Endpoint {
            transport: Text::new("PriorityEmailSMSReminder", Pos::default()),
            address: None,
        }];
        let n = to_request(&l, &opts(), None)
            .correspondence
            .notification
            .unwrap();
        assert!(n.send_reminder);
        assert_eq!(n.notification_channel, NotificationChannel::EmailPreferred);
        assert_eq!(
            n.reminder_notification_channel,
            Some(NotificationChannel::SmsPreferred)
        );
        assert_eq!(n.email_subject.as_deref(), Some("Melding mottatt i Altinn"));
        assert!(n.reminder_email_body.is_some() && n.reminder_sms_body.is_some());
        assert!(n.custom_recipients.is_empty());
        assert!(!n.override_registered_contact_information);
    }

    #[test]
    fn mobile_numbers() {
        assert_eq!(e164("91234567"), "+4791234567");
        assert_eq!(e164("0046 70 123 45 67"), "+46701234567");
        assert_eq!(e164("+47 912-34-567"), "+4791234567");
    }
}
