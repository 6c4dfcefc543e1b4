//! The A3 rules: what Altinn 3 would refuse in a letter that Altinn II took.
//!
//! Why a layer of its own: a batch can be perfect Altinn II (the DPV rules
//! pass) and still hold letters Altinn 3 refuses: a title with Markdown in
//! it, a `.odt` attachment, a due date already past. Sending such a letter
//! costs a call and comes back as a refusal; worse, some refusals would
//! come only at publication. So every letter is checked here first, with
//! the server's own limits and reasoning (Altinn/altinn-correspondence
//! `InitializeCorrespondenceHelper`, `AttachmentHelper`, `TextValidation`),
//! and a letter that fails is never sent: its receipt says why.
//!
//! Each rule has a stable code `A3xxx` and a row in docs/rules.md. Lengths
//! are counted as the server counts them: .NET string length, i.e. UTF-16
//! code units.

use std::time::SystemTime;

use super::mapping::{channel, A2Letter, Text};
use super::model::{InitializeCorrespondences, NotificationChannel};
use crate::validate::{Finding, Layer};
use crate::xml::Pos;

/// Altinn's attachment allow-list (`ApplicationConstants.AllowedFileTypes`).
pub const ALLOWED_EXTENSIONS: [&str; 20] = [
    ".doc", ".xls", ".docx", ".xlsx", ".ppt", ".pps", ".zip", ".pdf", ".html", ".txt", ".xml",
    ".jpg", ".jpeg", ".gif", ".bmp", ".png", ".json", ".csv", ".dcm", ".dicom",
];
pub const MAX_ATTACHMENTS: usize = 100;
pub const MAX_TITLE: usize = 255;
pub const MAX_SUMMARY: usize = 255;
pub const MAX_BODY: usize = 30_000;
pub const MAX_REFERENCE: usize = 4096;
pub const MAX_EMAIL_BODY: usize = 10_000;
pub const MAX_SMS_BODY: usize = 2144;
/// allowForwarding is refused when the attachments pass 10 MB (1069).
pub const MAX_FORWARDING_BYTES: u64 = 10 * 1024 * 1024;

/// What the rules need besides the letter.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// "Now", for due dates.
    pub now: SystemTime,
}

fn finding(code: &str, pos: Pos, message: String) -> Finding {
    Finding {
        line: pos.line,
        column: pos.column,
        code: code.to_string(),
        layer: Layer::Altinn3,
        message,
    }
}

fn pos_of(t: &Option<Text>, fallback: Pos) -> Pos {
    t.as_ref().map_or(fallback, |t| t.pos)
}

/// Every A3 finding for one letter; empty means Altinn 3 should take it.
pub fn check(l: &A2Letter, req: &InitializeCorrespondences, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let start = l.start;
    let c = &req.correspondence;

    // A3001: the service must map to a resource.
    if c.resource_id.is_empty() {
        let code = l.service_code.as_ref().map(Text::trimmed).unwrap_or("");
        let service = match l.service_edition.as_ref() {
            Some(e) => format!("{code}/{}", e.trimmed()),
            None => code.to_string(),
        };
        out.push(finding(
            "A3001",
            pos_of(&l.service_code, start),
            format!(
                "service {service} has no Altinn 3 resource; add it to \
                 [transport.altinn3.resources], e.g. \"{service}\" = \"eformidling-dpv-administrasjon\""
            ),
        ));
    }

    // A3002/A3003: the title.
    match &l.title {
        Some(t) if !t.trimmed().is_empty() => {
            if t.utf16 > MAX_TITLE {
                out.push(finding(
                    "A3003",
                    t.pos,
                    format!(
                        "MessageTitle is {} characters; Altinn 3 takes at most {MAX_TITLE}",
                        t.utf16
                    ),
                ));
            } else if !is_plain_text(&t.value) {
                out.push(finding(
                    "A3002",
                    t.pos,
                    "MessageTitle must be plain text in Altinn 3, but it reads as HTML or \
                     Markdown (a tag, a heading '#', a link, a quote '>' ...); write it as plain words"
                        .into(),
                ));
            }
        }
        _ => out.push(finding(
            "A3003",
            pos_of(&l.title, start),
            "MessageTitle is empty; Altinn 3 requires a title".into(),
        )),
    }
    if let Some(s) = &l.summary {
        if s.utf16 > MAX_SUMMARY {
            out.push(finding(
                "A3004",
                s.pos,
                format!(
                    "MessageSummary is {} characters; Altinn 3 takes at most {MAX_SUMMARY}",
                    s.utf16
                ),
            ));
        }
    }
    if let Some(b) = &l.body {
        if b.utf16 > MAX_BODY {
            out.push(finding(
                "A3005",
                b.pos,
                format!(
                    "MessageBody is {} characters; Altinn 3 takes at most {MAX_BODY} (put the \
                     rest in an attachment)",
                    b.utf16
                ),
            ));
        }
    }

    // A3006-A3008, A3019, A3022, A3023: attachments.
    let total = l.attachments.len() + l.xml_attachments.len();
    if total > MAX_ATTACHMENTS {
        out.push(finding(
            "A3008",
            start,
            format!("the letter has {total} attachments; Altinn 3 takes at most {MAX_ATTACHMENTS}"),
        ));
    }
    for (a, meta) in l.attachments.iter().zip(&c.content.attachments) {
        let pos = pos_of(&a.file_name, a.start);
        if let Some(problem) = file_name_problem(&meta.file_name) {
            let code = if problem.starts_with("its file type") {
                "A3006"
            } else {
                "A3007"
            };
            out.push(finding(
                code,
                pos,
                format!(
                    "attachment FileName '{}': {problem}",
                    shown(&meta.file_name)
                ),
            ));
        }
        if let Some(n) = &a.name {
            if n.utf16 > 255 {
                out.push(finding(
                    "A3019",
                    n.pos,
                    format!(
                        "attachment Name is {} characters; Altinn 3 takes at most 255",
                        n.utf16
                    ),
                ));
            }
        }
        if meta.senders_reference.encode_utf16().count() > MAX_REFERENCE {
            out.push(finding(
                "A3018",
                pos_of(&a.senders_reference, a.start),
                format!("attachment SendersReference is over {MAX_REFERENCE} characters"),
            ));
        }
        if let Some(p) = &a.data_problem {
            out.push(finding(
                "A3022",
                a.start,
                format!(
                    "attachment '{}': Data cannot be decoded: {p}",
                    shown(&meta.file_name)
                ),
            ));
        }
    }
    for p in &l.xml_attachments {
        out.push(finding(
            "A3016",
            *p,
            "XmlAttachment (form data) has no Altinn 3 counterpart; send it as a \
             BinaryAttachment (.xml) instead"
                .into(),
        ));
    }
    let bytes: u64 = l.attachments.iter().map(|a| a.bytes).sum();
    if c.allow_forwarding == Some(true) && bytes > MAX_FORWARDING_BYTES {
        out.push(finding(
            "A3023",
            pos_of(&l.allow_forwarding, start),
            format!(
                "AllowForwarding is true, but the attachments are {bytes} bytes; Altinn 3 allows \
                 forwarding only up to {MAX_FORWARDING_BYTES} bytes"
            ),
        ));
    }

    // A3009/A3010/A3014: dates.
    let publish = match &l.visible {
        Some(t) => match super::model::parse_timestamp(&t.value) {
            Some(p) => Some(p),
            None => {
                out.push(unreadable_date("VisibleDateTime", t));
                None
            }
        },
        None => None,
    };
    if let Some(t) = &l.due {
        match super::model::parse_timestamp(&t.value) {
            None => out.push(unreadable_date("DueDateTime", t)),
            Some(due) if due < ctx.now => out.push(finding(
                "A3009",
                t.pos,
                format!(
                    "DueDateTime {} is in the past; Altinn 3 refuses a due date before now",
                    t.trimmed()
                ),
            )),
            Some(due) if publish.is_some_and(|p| due < p) => out.push(finding(
                "A3010",
                t.pos,
                format!(
                    "DueDateTime {} is before VisibleDateTime; Altinn 3 refuses a due date \
                     before the publish time",
                    t.trimmed()
                ),
            )),
            _ => {}
        }
    }

    // A3012: language; A3013: recipient; A3018: reference.
    match &l.language {
        Some(t) if super::mapping::language(&t.value).is_some() => {}
        other => out.push(finding(
            "A3012",
            pos_of(other, start),
            format!(
                "LanguageCode '{}' has no Altinn 3 language; use 1044 (nb), 2068 (nn) or 1033 (en)",
                other.as_ref().map(Text::trimmed).unwrap_or("")
            ),
        )),
    }
    if !req.recipients.iter().all(|r| r.starts_with("urn:altinn:")) {
        out.push(finding(
            "A3013",
            pos_of(&l.reportee, start),
            format!(
                "Reportee '{}' is neither an organisation number nor a national id, so it has no \
                 Altinn 3 recipient",
                l.reportee.as_ref().map(Text::trimmed).unwrap_or("")
            ),
        ));
    }
    let reference_len = c.senders_reference.encode_utf16().count();
    if c.senders_reference.trim().is_empty() || reference_len > MAX_REFERENCE {
        out.push(finding(
            "A3018",
            pos_of(&l.senders_reference, start),
            format!("SendersReference must be 1 to {MAX_REFERENCE} characters in Altinn 3"),
        ));
    }

    // A3017: reply links.
    for (o, (_, url)) in c.reply_options.iter().zip(&l.reply_urls) {
        let ok = o.link_url.starts_with("https://")
            && o.link_url.len() > "https://".len()
            && o.link_url.encode_utf16().count() <= 255
            && !o.link_url.contains(char::is_whitespace);
        if !ok {
            out.push(finding(
                "A3017",
                url.pos,
                format!(
                    "reply link '{}' must be an absolute https:// URL of at most 255 characters",
                    o.link_url
                ),
            ));
        }
    }

    // A3011/A3015/A3020/A3021: the notification.
    if l.notifications.len() > 1 {
        out.push(finding(
            "A3015",
            l.notifications[1].start,
            format!(
                "the letter has {} Notifications; Altinn 3 takes one per letter (with an \
                 optional reminder)",
                l.notifications.len()
            ),
        ));
    }
    if let (Some(n), Some(a2)) = (&c.notification, l.notifications.first()) {
        for e in &a2.endpoints {
            if channel(&e.transport.value).is_none() {
                out.push(finding(
                    "A3011",
                    e.transport.pos,
                    format!(
                        "TransportType '{}' has no Altinn 3 channel",
                        e.transport.trimmed()
                    ),
                ));
            }
        }
        let reminder = n
            .reminder_notification_channel
            .unwrap_or(n.notification_channel);
        let empty = |o: &Option<String>| o.as_deref().is_none_or(|s| s.trim().is_empty());
        let needs = |c: NotificationChannel, email: &Option<String>, sms: &Option<String>| {
            (c.needs_email() && empty(email)) || (c.needs_sms() && empty(sms))
        };
        if needs(n.notification_channel, &n.email_body, &n.sms_body)
            || (n.send_reminder && needs(reminder, &n.reminder_email_body, &n.reminder_sms_body))
        {
            out.push(finding(
                "A3011",
                a2.start,
                format!(
                    "the notification goes out by {:?} but has no text: give the TextToken a \
                     TokenValue (Altinn 3 needs the e-mail and SMS text the channel uses)",
                    n.notification_channel
                ),
            ));
        }
        let too_long = n
            .email_body
            .as_deref()
            .is_some_and(|b| b.encode_utf16().count() > MAX_EMAIL_BODY)
            || n.sms_body
                .as_deref()
                .is_some_and(|b| b.encode_utf16().count() > MAX_SMS_BODY);
        if too_long {
            out.push(finding(
                "A3020",
                a2.tokens.first().map_or(a2.start, |t| t.pos),
                format!(
                    "the notification text is too long for Altinn 3: at most {MAX_EMAIL_BODY} \
                     characters by e-mail, {MAX_SMS_BODY} by SMS"
                ),
            ));
        }
        for (r, e) in n.custom_recipients.iter().zip(
            a2.endpoints
                .iter()
                .filter(|e| e.address.as_ref().is_some_and(|a| !a.trimmed().is_empty())),
        ) {
            let pos = e.address.as_ref().map_or(a2.start, |a| a.pos);
            if let Some(m) = &r.mobile_number {
                if !is_e164(m) {
                    out.push(finding(
                        "A3021",
                        pos,
                        format!(
                            "ReceiverAdress '{m}' is not a mobile number Altinn 3 takes (E.164, \
                             e.g. +4791234567)"
                        ),
                    ));
                }
            }
            if let Some(m) = &r.email_address {
                if !is_email(m) {
                    out.push(finding(
                        "A3021",
                        pos,
                        format!("ReceiverAdress '{m}' is not an e-mail address"),
                    ));
                }
            }
        }
    }
    out
}

/// `validate --target altinn3`: add the A3 findings of the file at `path`
/// to its report. Skipped when the file could not be read as XML (the
/// reading errors say why); an A3 pass that cannot read it adds one finding.
pub fn add_to_report(
    report: &mut crate::validate::FileReport,
    path: &std::path::Path,
    opts: &super::letters::SplitOptions,
) {
    if report.errors.iter().any(|f| f.layer == Layer::Reading) {
        return;
    }
    let found: Vec<Finding> = match super::letters::check_path(path, opts) {
        Ok(letters) => letters.into_iter().flat_map(|l| l.refused).collect(),
        Err(e) => vec![finding("A3000", Pos::default(), e.to_string())],
    };
    if found.is_empty() {
        return;
    }
    report.valid = false;
    report.errors.extend(found);
    report.errors.sort_by_key(|f| (f.line, f.column));
}

fn unreadable_date(field: &str, t: &Text) -> Finding {
    finding(
        "A3014",
        t.pos,
        format!(
            "{field} '{}' is not a date and time Altinn 3 can read (e.g. 2026-12-01T07:00:00+01:00)",
            t.trimmed()
        ),
    )
}

fn shown(name: &str) -> &str {
    if name.is_empty() {
        "(no FileName)"
    } else {
        name
    }
}

/// Why Altinn refuses an attachment file name (`AttachmentHelper.
/// ValidateAttachmentName`, in its order), or `None`.
pub fn file_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("the file name is missing".into());
    }
    let len = name.encode_utf16().count();
    if len > 255 {
        return Some(format!(
            "the file name is {len} characters; Altinn 3 takes at most 255"
        ));
    }
    // Path.GetExtension: from the last '.', unless a separator follows it.
    let ext = name
        .rfind('.')
        .filter(|&i| !name[i..].contains('/'))
        .map(|i| name[i..].to_lowercase())
        .unwrap_or_default();
    if !ALLOWED_EXTENSIONS.contains(&ext.as_str()) {
        return Some(format!(
            "its file type {} is not one Altinn 3 accepts; allowed: {}",
            if ext.len() > 1 {
                format!("'{ext}'")
            } else {
                "(none)".into()
            },
            ALLOWED_EXTENSIONS.join(" ")
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') || (*c as u32) < 0x20
    }) {
        return Some(format!(
            "it contains {}, which Altinn 3 refuses in file names (< > : \" / \\ | ? * and control characters)",
            if c.is_control() {
                format!("the control character U+{:04X}", c as u32)
            } else {
                format!("'{c}'")
            }
        ));
    }
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'));
    if reserved {
        return Some(format!(
            "'{stem}' is a reserved Windows device name, which Altinn 3 refuses as a file name"
        ));
    }
    None
}

/// E.164 as Altinn's MobileNumberHelper wants it: `+`, then 8 to 15 digits.
fn is_e164(m: &str) -> bool {
    m.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A plausible e-mail address: one '@', a local part, a dotted domain, no spaces.
fn is_email(m: &str) -> bool {
    let Some((local, domain)) = m.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !m.contains(char::is_whitespace)
}

/// Would Altinn 3 take `text` as plain text (title, messageSender)?
///
/// The server (`TextValidation.ValidatePlainText`) removes backticks and
/// backslashes, converts HTML to Markdown (ReverseMarkdown, which escapes
/// `*` and `_` in text), renders that Markdown (Markdig, CommonMark with its
/// extensions, lists off) to plain text, and accepts the text if nothing but
/// whitespace changed. We do the same with pulldown-cmark: any HTML tag,
/// heading, link, image, quote, rule, table, strike-through or entity
/// changes the rendered text and fails, as it does on the server. Lists are
/// kept literal (the server turns list parsing off), and `*`/`_` are escaped
/// first, as ReverseMarkdown does, so "*not* markdown" passes there and here.
pub fn is_plain_text(text: &str) -> bool {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let normalized: String = text.chars().filter(|c| *c != '`' && *c != '\\').collect();
    let mut markdown = String::with_capacity(normalized.len() + 16);
    for line in normalized.split_inclusive('\n') {
        // Lists are literal on the server: escape a leading list marker.
        let body = line.trim_start_matches([' ', '\t']);
        let indent = &line[..line.len() - body.len()];
        markdown.push_str(indent);
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        let marker = if body.starts_with("- ") || body.starts_with("+ ") {
            Some(0)
        } else if (1..=9).contains(&digits)
            && matches!(body.as_bytes().get(digits), Some(b'.' | b')'))
            && matches!(
                body.as_bytes().get(digits + 1),
                None | Some(b' ' | b'\t' | b'\n' | b'\r')
            )
        {
            Some(digits)
        } else {
            None
        };
        if let Some(at) = marker {
            markdown.push_str(&body[..at]);
            markdown.push('\\');
            push_escaped(&mut markdown, &body[at..]);
        } else {
            push_escaped(&mut markdown, body);
        }
    }
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    opts.insert(Options::ENABLE_FOOTNOTES);
    opts.insert(Options::ENABLE_MATH);
    opts.insert(Options::ENABLE_DEFINITION_LIST);
    let mut rendered = String::with_capacity(normalized.len());
    for event in Parser::new_ext(&markdown, opts) {
        match event {
            Event::Text(t) | Event::Code(t) => rendered.push_str(&t),
            // Structure the text did not show: the text changed.
            Event::Html(_)
            | Event::InlineHtml(_)
            | Event::InlineMath(_)
            | Event::DisplayMath(_)
            | Event::FootnoteReference(_)
            | Event::TaskListMarker(_)
            | Event::Rule => return false,
            Event::Start(Tag::Heading { .. })
            | Event::Start(Tag::BlockQuote(_))
            | Event::Start(Tag::Link { .. })
            | Event::Start(Tag::Image { .. })
            | Event::Start(Tag::Table(_))
            | Event::Start(Tag::Strikethrough)
            | Event::Start(Tag::FootnoteDefinition(_)) => return false,
            _ => {}
        }
    }
    let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    squeeze(&rendered) == squeeze(&normalized)
}

/// `*` and `_` as ReverseMarkdown writes them in text: escaped.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '*' || c == '_' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_as_the_server_judges_it() {
        // Altinn's own TextValidationTests, and their expected verdicts.
        for ok in [
            "This is a valid plain text without markdown syntax.",
            "123. This is valid plaintext even if it contains Markdown list",
            "This *is not* markdown and _should_ be treated as plain text.",
            "Here is some `inline code` in plain text.",
            "1.234 is a number, not a markdown list.",
            "Error #404 not found.",
            r"TEST\'S TESTVERKSTED AS",
            "  This is   plain   text with   irregular   spaces.  ",
            "",
            "   \n\t  ",
            // DPV titles seen in the samples.
            "Vedtak om byggetillatelse – gnr. 167 bnr. 42, Fjøsanger",
            "- Svar på søknad",
            "Faktura 2026/11 (forfall 20.12.)",
            "A & B < C",
        ] {
            assert!(is_plain_text(ok), "should be plain: {ok:?}");
        }
        for bad in [
            "# This is a markdown heading",
            "<b>Viktig</b> melding",
            "Se [vedtaket](https://example.org)",
            "> sitat",
            "Tittel\n===",
            "~~gammel~~ ny",
            "<https://example.org>",
            "![bilde](x.png)",
            "A &amp; B",
            "a | b\n--|--\n1 | 2",
        ] {
            assert!(!is_plain_text(bad), "should not be plain: {bad:?}");
        }
    }

    #[test]
    fn file_names_as_altinn_judges_them() {
        assert_eq!(file_name_problem("vedtak.PDF"), None);
        assert_eq!(file_name_problem("Årsrapport 2026.docx"), None);
        for (bad, what) in [
            ("", "missing"),
            ("brev.odt", "file type"),
            ("noext", "file type"),
            ("dot.", "file type"),
            ("a:b.pdf", "':'"),
            ("a?.pdf", "'?'"),
            ("tab\t.pdf", "control"),
            ("CON.pdf", "reserved"),
            ("lpt1.txt", "reserved"),
        ] {
            let p = file_name_problem(bad).unwrap_or_default();
            assert!(p.contains(what), "{bad}: {p}");
        }
        assert_eq!(file_name_problem("com10.pdf"), None);
        let long = format!("{}.pdf", "x".repeat(252));
        assert!(file_name_problem(&long).unwrap().contains("255"));
        assert_eq!(file_name_problem(&format!("{}.pdf", "x".repeat(251))), None);
    }
}
