//! Initialize-correspondence validation in Altinn's order.
//!
//! A request passes three gates, and the first that refuses answers:
//! 1. [`model`]: the DataAnnotations (400 without `errorCode`), then the
//!    mapper's notification-template check (400, a bare JSON string).
//! 2. The idempotency key (in the route, because it needs the store):
//!    several recipients with a key is 1047, a key already used is 409/1034.
//!    Altinn checks both *before* the rest, so a second request with a used
//!    key is a 409 even when its body would be refused.
//! 3. [`handler`]: `ValidatePrepareDataAndUploadAttachments` of
//!    `InitializeCorrespondenceValidationHelper`, step by step: resource,
//!    confidentiality, duplicates, register, confirmation, KRR, dates,
//!    content, sender, external references, existing attachments, files,
//!    expiry, reply options, notification.
//!
//! The simulator's registries stand in for Altinn's: resources from the
//! command line, a register that knows every well-formed number except the
//! `--unknown-recipient`s, a KRR that holds the `--reserved` ones. Checks that
//! need registries the simulator does not model (access lists, resource
//! types, authentication levels, roles of confidential recipients, notification
//! templates, Dialogporten) always pass, except that a Dialogporten dialog id
//! is never found (the simulator has no dialogs).

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{annotations, AttachmentMeta, InitRequest, Notification};
use super::problem::{codes, AltinnError, ModelError};
use super::rules;

/// What the simulated Altinn knows besides the requests it stored.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Resource id → confidential (`post-til-virksomheten-med-taushetsbelagt-innhold`).
    pub resources: HashMap<String, bool>,
    /// Bare identifiers the register does not know (404/1029 at initialize).
    pub unknown: HashSet<String>,
    /// Bare identifiers KRR holds as reserved.
    pub reserved: HashSet<String>,
    /// Bare identifiers whose correspondences fail at publication.
    pub fail_at_publish: HashSet<String>,
}

impl Registry {
    /// The register's answer for a normalized recipient URN.
    fn knows(&self, urn: &str) -> bool {
        let bare = rules::without_prefix(urn);
        if self.unknown.contains(bare) {
            return false;
        }
        if let Some(org) = urn.strip_prefix(&format!("{}:", rules::ORG_URN)) {
            return rules::org_number_valid(org);
        }
        true
    }

    pub fn is_reserved(&self, urn: &str) -> bool {
        self.reserved.contains(rules::without_prefix(urn))
    }

    pub fn fails_at_publish(&self, urn: &str) -> bool {
        self.fail_at_publish.contains(rules::without_prefix(urn))
    }
}

/// Why a request was refused, in the shape Altinn answers it.
#[derive(Debug)]
pub enum Refusal {
    /// `[ApiController]`'s 400 validation problem.
    Model(Vec<ModelError>),
    /// The mapper's `BadRequest(string)`.
    Plain(&'static str),
    /// A domain error from the handler.
    Altinn(AltinnError),
}

impl From<AltinnError> for Refusal {
    fn from(e: AltinnError) -> Self {
        Refusal::Altinn(e)
    }
}

/// A file part of a multipart request, already on disk.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    pub file_name: String,
    pub size: u64,
    pub path: std::path::PathBuf,
}

/// What the store knows of an existing attachment.
#[derive(Debug, Clone, Copy)]
pub struct ExistingAttachment {
    pub published: bool,
    pub size: u64,
}

/// A request that passed: what the commit needs.
#[derive(Debug)]
pub struct Validated {
    /// Without the `urn:altinn:resource:` prefix.
    pub resource_id: String,
    /// Normalized URNs, one correspondence each.
    pub recipients: Vec<String>,
    /// Per recipient: reserved in KRR (status Reserved at creation).
    pub reserved: Vec<bool>,
    /// For each `content.attachments[i]`: the index of its file part.
    pub file_for_attachment: Vec<usize>,
    pub requested_publish_time: OffsetDateTime,
}

/// Gate 1: DataAnnotations, then the mapper.
pub fn model(req: &InitRequest) -> Result<(), Refusal> {
    let errors = annotations::check_request(req);
    if !errors.is_empty() {
        return Err(Refusal::Model(errors));
    }
    // InitializeCorrespondenceNotificationMapper.ValidateNotificationTemplate:
    // the core enum also has Altinn2Message (2).
    let template = req
        .correspondence
        .as_ref()
        .and_then(|c| c.notification.as_ref())
        .and_then(|n| n.notification_template);
    if template.is_some_and(|t| !(0..=2).contains(&t.value)) {
        return Err(Refusal::Plain(codes::INVALID_TEMPLATE));
    }
    Ok(())
}

/// The normalized recipients of a request that passed [`model`].
pub fn normalized_recipients(req: &InitRequest) -> Vec<String> {
    req.recipients
        .iter()
        .flatten()
        .flatten()
        .map(|r| rules::normalize_recipient(r))
        .collect()
}

/// Gate 3: the handler's checks, in its order. `existing` answers for each
/// id in `existingAttachments`.
pub fn handler(
    req: &InitRequest,
    files: &[UploadedFile],
    registry: &Registry,
    existing: &HashMap<Uuid, ExistingAttachment>,
    now: OffsetDateTime,
) -> Result<Validated, AltinnError> {
    // `model` guarantees these are present.
    let Some(c) = req.correspondence.as_ref() else {
        return Err(codes::invalid_resource());
    };
    let content = c.content.clone().unwrap_or_default();
    let recipients = normalized_recipients(req);

    // Resource registry: the service owner of the resource (1036).
    let resource_id = rules::without_prefix(c.resource_id.as_deref().unwrap_or("")).to_string();
    let Some(&confidential) = registry.resources.get(&resource_id) else {
        return Err(codes::invalid_resource());
    };
    // Access (4001), resource type (4010), caller party (4006/4002): always
    // granted in the simulator.
    if confidential && !c.is_confidential {
        return Err(codes::confidential_without_flag());
    }
    if c.is_confidential && !confidential {
        return Err(codes::flag_without_confidential());
    }
    // allowForwarding vs authentication level (1068): level 0 here.
    let unique: HashSet<&String> = recipients.iter().collect();
    if unique.len() != recipients.len() {
        return Err(codes::duplicate_recipients());
    }
    let not_found: Vec<String> = recipients
        .iter()
        .filter(|r| !registry.knows(r))
        .cloned()
        .collect();
    if !not_found.is_empty() {
        return Err(codes::recipients_not_found(&not_found));
    }
    if c.is_confirmation_needed && c.due_date_time.is_none() {
        return Err(codes::due_required());
    }
    // KRR: a single reserved recipient is refused unless ignoreReservation;
    // with several, the reserved ones get status Reserved.
    let ignore = c.ignore_reservation == Some(true);
    let reserved: Vec<bool> = recipients
        .iter()
        .map(|r| !ignore && registry.is_reserved(r))
        .collect();
    if recipients.len() == 1 && reserved[0] {
        return Err(codes::recipient_reserved(&recipients[0]));
    }

    let requested_publish_time = c.requested_publish_time.unwrap_or(now);
    if let Some(due) = c.due_date_time {
        if due < now {
            return Err(codes::due_before_now());
        }
        if due < requested_publish_time {
            return Err(codes::due_before_publish());
        }
    }
    content_checks(&content)?;
    if let Some(sender) = c.message_sender.as_deref().filter(|s| !s.is_empty()) {
        if !rules::is_plain_text(sender) {
            return Err(codes::sender_not_plain());
        }
    }
    external_reference_checks(c, recipients.len())?;

    // Existing attachments: found (1007), count (1038), published (1018),
    // forwarding size (1069).
    let found: Vec<ExistingAttachment> = req
        .existing_attachments
        .iter()
        .filter_map(|id| existing.get(id).copied())
        .collect();
    if found.len() != req.existing_attachments.len() {
        return Err(codes::existing_attachment_not_found());
    }
    if req.existing_attachments.len() + content.attachments.len() > 100 {
        return Err(codes::too_many_attachments());
    }
    if found.iter().any(|a| !a.published) {
        return Err(codes::attachment_not_published());
    }
    if c.allow_forwarding {
        let total: u64 =
            found.iter().map(|a| a.size).sum::<u64>() + files.iter().map(|f| f.size).sum::<u64>();
        if total > 10_000_000 {
            return Err(codes::forwarding_large_attachments());
        }
    }
    let file_for_attachment = match_files(&content.attachments, files)?;
    // Attachment expiry: at least 1 day outside production (2017).
    if content
        .attachments
        .iter()
        .any(|a| a.expiration_in_days.is_some_and(|d| d < 1))
    {
        return Err(codes::expiration_too_soon(1));
    }
    for option in c.reply_options.iter().flatten() {
        if !rules::reply_url_valid(option.link_url.as_deref().unwrap_or("")) {
            return Err(codes::invalid_reply_options());
        }
    }
    // {{recipientName}} lookups use the same register: already checked.
    if let Some(n) = &c.notification {
        // Templates exist for every language and template (3001 never).
        notification_checks(n, recipients.len())?;
    }
    Ok(Validated {
        resource_id,
        recipients,
        reserved,
        file_for_attachment,
        requested_publish_time,
    })
}

/// `ValidateCorrespondenceContent`, minus what the annotations already refused.
fn content_checks(content: &super::model::Content) -> Result<(), AltinnError> {
    let title = content.message_title.as_deref().unwrap_or("");
    if !rules::is_plain_text(title) {
        return Err(codes::title_not_plain());
    }
    // The summary's plain-text check only logs a warning (#1331); the body's
    // Markdown check compares an HTML-encoded copy of the text with itself
    // and so accepts any text: 1003 is never answered.
    let language = content
        .language
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or("nb");
    if !["nb", "nn", "en"].contains(&language.to_lowercase().as_str()) {
        return Err(codes::invalid_language());
    }
    Ok(())
}

/// `ValidateExternalReferences`, then the transmission rules when a dialog id
/// is given.
fn external_reference_checks(
    c: &super::model::Correspondence,
    recipients: usize,
) -> Result<(), AltinnError> {
    let refs = c.external_references.as_deref().unwrap_or(&[]);
    let dialog = refs.iter().find(|r| r.reference_type.value == 3);
    let types = refs.iter().filter(|r| r.reference_type.value == 6).count();
    if types > 1 {
        return Err(codes::many_transmission_types());
    }
    if types == 1 && dialog.is_none() {
        return Err(codes::transmission_type_needs_dialog());
    }
    if let Some(value) = dialog
        .and_then(|d| d.reference_value.as_deref())
        .filter(|v| !v.trim().is_empty())
    {
        if Uuid::parse_str(value.trim()).is_err() {
            return Err(codes::invalid_dialog_id());
        }
        if recipients > 1 {
            return Err(codes::transmission_one_recipient());
        }
        if c.reply_options.as_ref().is_some_and(|r| !r.is_empty()) || c.is_confirmation_needed {
            return Err(codes::transmission_gui_actions());
        }
        return Err(codes::dialog_not_found());
    }
    Ok(())
}

/// `ValidateAttachmentFiles`: every metadata entry needs a valid name and
/// its file (matched by index first, then by a unique file name), and every
/// file must have content and be at most 2 GB. With JSON there are no files,
/// so metadata for new attachments is always a mismatch (1005).
fn match_files(meta: &[AttachmentMeta], files: &[UploadedFile]) -> Result<Vec<usize>, AltinnError> {
    for m in meta {
        if let Some(e) = rules::file_name_error(m.file_name.as_deref()) {
            return Err(e);
        }
    }
    if meta.len() != files.len() {
        return Err(codes::files_mismatch());
    }
    let mut by_name: HashMap<&str, Option<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        by_name
            .entry(f.file_name.as_str())
            .and_modify(|slot| *slot = None)
            .or_insert(Some(i));
    }
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(meta.len());
    for (i, m) in meta.iter().enumerate() {
        let name = m.file_name.as_deref().unwrap_or("");
        let index = if files[i].file_name == name && !used.contains(&i) {
            Some(i)
        } else {
            by_name
                .get(name)
                .copied()
                .flatten()
                .filter(|j| !used.contains(j))
        };
        let Some(j) = index else {
            return Err(codes::files_mismatch());
        };
        used.insert(j);
        if files[j].size == 0 || files[j].size > 2_000_000_000 {
            return Err(codes::invalid_file_size("2GB"));
        }
        out.push(j);
    }
    Ok(out)
}

/// `ValidateNotification`: custom recipients, then the texts the channel needs.
fn notification_checks(n: &Notification, recipients: usize) -> Result<(), AltinnError> {
    // The mapper picks customRecipients, else customRecipient, else the first
    // customNotificationRecipients' list.
    let custom: Vec<_> = match (
        &n.custom_recipients,
        &n.custom_recipient,
        &n.custom_notification_recipients,
    ) {
        (Some(list), _, _) if !list.is_empty() => list.clone(),
        (_, Some(one), _) => vec![one.clone()],
        (_, _, Some(groups)) => groups
            .first()
            .map(|g| g.recipients.clone())
            .unwrap_or_default(),
        _ => vec![],
    };
    if n.override_registered_contact_information && custom.is_empty() {
        return Err(codes::override_without_custom());
    }
    if !custom.is_empty() && recipients > 1 {
        return Err(codes::custom_recipient_many_recipients());
    }
    let texts = [
        &n.email_body,
        &n.sms_body,
        &n.email_subject,
        &n.reminder_email_body,
        &n.reminder_sms_body,
        &n.reminder_email_subject,
    ];
    let uses_name = texts.iter().any(|t| {
        t.as_deref()
            .is_some_and(|t| t.to_lowercase().contains("$recipientname$"))
    });
    for r in &custom {
        let set = [
            &r.organization_number,
            &r.national_identity_number,
            &r.email_address,
            &r.mobile_number,
        ]
        .iter()
        .filter(|v| v.as_deref().is_some_and(|v| !v.is_empty()))
        .count();
        if set == 0 {
            return Err(codes::custom_recipient_no_id());
        }
        if set > 1 {
            return Err(codes::custom_recipient_many_ids());
        }
        if (r.email_address.is_some() || r.mobile_number.is_some()) && uses_name {
            return Err(codes::recipient_name_with_address());
        }
        if r.email_address
            .as_deref()
            .is_some_and(|e| !rules::email_valid(e))
        {
            return Err(codes::invalid_email());
        }
        if r.mobile_number
            .as_deref()
            .is_some_and(|m| !rules::mobile_valid(m))
        {
            return Err(codes::invalid_mobile());
        }
    }
    // GenericAltinnMessage (1) and Altinn2Message (2) bring their own texts.
    if n.notification_template.is_some_and(|t| t.value != 0) {
        return Ok(());
    }
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let email = set(&n.email_body) && set(&n.email_subject);
    let sms = set(&n.sms_body);
    let r_email = set(&n.reminder_email_body) && set(&n.reminder_email_subject);
    let r_sms = set(&n.reminder_sms_body);
    let main = n.notification_channel.value;
    let reminder = n.reminder_notification_channel.map_or(main, |c| c.value);
    let rem = n.send_reminder;
    // Email 0, Sms 1, EmailPreferred 2, SmsPreferred 3, EmailAndSms 4.
    if main == 0 && !email {
        return Err(codes::missing_email());
    }
    if reminder == 0 && rem && !r_email {
        return Err(codes::missing_email_reminder());
    }
    if main == 1 && !sms {
        return Err(codes::missing_sms());
    }
    if reminder == 1 && rem && !r_sms {
        return Err(codes::missing_sms_reminder());
    }
    if (main == 2 || main == 3) && !(email && sms) {
        return Err(codes::missing_preferred());
    }
    if (reminder == 2 || reminder == 3) && rem && !(r_email && r_sms) {
        return Err(codes::missing_preferred_reminder());
    }
    if main == 4 && !(email && sms) {
        return Err(codes::missing_email_and_sms());
    }
    if reminder == 4 && rem && !(r_email && r_sms) {
        return Err(codes::missing_email_and_sms_reminder());
    }
    Ok(())
}

/// `POST /attachment`: annotations, resource (1036), name (2010–2021),
/// expiry (2017).
pub fn attachment_request(meta: &AttachmentMeta, registry: &Registry) -> Result<String, Refusal> {
    let errors = annotations::check_attachment_request(meta);
    if !errors.is_empty() {
        return Err(Refusal::Model(errors));
    }
    let resource_id = rules::without_prefix(meta.resource_id.as_deref().unwrap_or("")).to_string();
    if !registry.resources.contains_key(&resource_id) {
        return Err(codes::invalid_resource().into());
    }
    if let Some(e) = rules::file_name_error(meta.file_name.as_deref()) {
        return Err(e.into());
    }
    if meta.expiration_in_days.is_some_and(|d| d < 1) {
        return Err(codes::expiration_too_soon(1).into());
    }
    Ok(resource_id)
}
