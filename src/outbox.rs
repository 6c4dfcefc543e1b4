//! What the fagsystem reads back: receipts, later events, and the
//! human-readable `NAME.errors.txt` beside a rejected input.
//!
//! Receipts follow `schemas/dpv-batch-receipt.xsd` (namespace
//! `urn:dpv-batch:receipt:1`); tests validate every receipt against it.
//! This module only renders documents; the pipeline decides names and
//! writes them atomically (see `durable`).

use std::fmt::Write as _;

use crate::journal::{EventLetter, FileRow, LetterEvent, LetterRow, Outcome, PartRow, LETTER_OK};
use crate::transport::altinn3::status as a3;
use crate::validate::Finding;

pub const RECEIPT_NS: &str = "urn:dpv-batch:receipt:1";

/// Everything a final receipt says about one input file.
pub struct ReceiptDoc<'a> {
    pub file: &'a FileRow,
    pub outcome: Outcome,
    pub parts: &'a [PartRow],
    pub letters: &'a [LetterRow],
    pub errors: &'a [Finding],
    pub completed_at: &'a str,
    /// `receipt_after = "published"`: a letter Altinn failed to publish
    /// counts as rejected.
    pub hold: bool,
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n') => {}
            c => out.push(c),
        }
    }
    out
}

/// A letter's status for the fagsystem: the one function that decides it,
/// for the outcome and for the receipt. `hold`: the receipt waited for
/// publication (`receipt_after = "published"`), so a letter Altinn created
/// but failed to publish is rejected.
pub fn letter_status(l: &LetterRow, hold: bool) -> &'static str {
    match l.status.as_deref() {
        Some(LETTER_OK) if hold && a3::failed(l.altinn_status.as_deref()) => "Rejected",
        Some(LETTER_OK) => "Accepted",
        Some(_) => "Rejected",
        None => "NotSent",
    }
}

/// Why a letter has its status, in words.
pub fn letter_text(l: &LetterRow, hold: bool) -> String {
    if hold && l.status.as_deref() == Some(LETTER_OK) && a3::failed(l.altinn_status.as_deref()) {
        return format!(
            "Altinn could not publish it: {}",
            l.altinn_status_text.as_deref().unwrap_or("no reason given")
        );
    }
    l.text.clone().unwrap_or_default()
}

/// A letter Altinn 3 created but has neither published nor failed to yet:
/// a receipt that waits for publication waits for it.
pub fn awaiting_publication(l: &LetterRow) -> bool {
    l.status.as_deref() == Some(LETTER_OK)
        && l.correspondence_id.is_some()
        && l.published_at.is_none()
        && !a3::is_final(l.altinn_status.as_deref())
}

pub fn receipt_xml(d: &ReceiptDoc<'_>) -> String {
    let mut x = String::with_capacity(1024 + d.letters.len() * 200);
    let f = d.file;
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(x, "<Receipt xmlns=\"{RECEIPT_NS}\">");
    let _ = writeln!(x, "  <InputFile>{}</InputFile>", esc(&f.name));
    if let Some(sha) = &f.sha256 {
        let _ = writeln!(x, "  <Sha256>{sha}</Sha256>");
    }
    let _ = writeln!(x, "  <Outcome>{}</Outcome>", d.outcome.as_str());
    let _ = writeln!(
        x,
        "  <Reason>{}</Reason>",
        esc(f.reason.as_deref().unwrap_or(""))
    );
    let _ = writeln!(x, "  <ReceivedAt>{}</ReceivedAt>", esc(&f.received_at));
    let _ = writeln!(x, "  <CompletedAt>{}</CompletedAt>", esc(d.completed_at));
    let _ = writeln!(x, "  <LetterCount>{}</LetterCount>", f.letters.max(0));
    if !d.parts.is_empty() {
        x.push_str("  <Parts>\n");
        for p in d.parts {
            x.push_str("    <Part>\n");
            let _ = writeln!(x, "      <RemoteName>{}</RemoteName>", esc(&p.remote_name));
            let _ = writeln!(
                x,
                "      <ShipmentReference>{}</ShipmentReference>",
                esc(&p.shipment_reference)
            );
            if let Some(n) = p.sequence_no {
                let _ = writeln!(x, "      <SequenceNo>{n}</SequenceNo>");
            }
            let _ = writeln!(x, "      <Letters>{}</Letters>", p.letters);
            if let Some(s) = &p.status {
                let _ = writeln!(x, "      <AltinnStatus>{}</AltinnStatus>", esc(s));
            }
            if let Some(t) = p.text.as_deref().filter(|t| !t.is_empty()) {
                let _ = writeln!(x, "      <AltinnText>{}</AltinnText>", esc(t));
            }
            x.push_str("    </Part>\n");
        }
        x.push_str("  </Parts>\n");
    }
    if !d.letters.is_empty() {
        x.push_str("  <Letters>\n");
        for l in d.letters {
            x.push_str("    <Letter>\n");
            let _ = writeln!(
                x,
                "      <SendersReference>{}</SendersReference>",
                esc(&l.senders_reference)
            );
            let _ = writeln!(x, "      <Reportee>{}</Reportee>", esc(&l.reportee));
            let _ = writeln!(x, "      <Status>{}</Status>", letter_status(l, d.hold));
            let text = letter_text(l, d.hold);
            if !text.is_empty() {
                let _ = writeln!(x, "      <Text>{}</Text>", esc(&text));
            }
            if let Some(r) = &l.read_at {
                let _ = writeln!(x, "      <ReadAt>{}</ReadAt>", esc(r));
            }
            // Altinn 3: what it made of the letter.
            if let Some(id) = &l.correspondence_id {
                let _ = writeln!(x, "      <CorrespondenceId>{}</CorrespondenceId>", esc(id));
            }
            if let Some(st) = &l.altinn_status {
                let _ = writeln!(x, "      <AltinnStatus>{}</AltinnStatus>", esc(st));
            }
            if let Some(t) = l.altinn_status_text.as_deref().filter(|t| !t.is_empty()) {
                let _ = writeln!(x, "      <AltinnStatusText>{}</AltinnStatusText>", esc(t));
            }
            if let Some(p) = &l.published_at {
                let _ = writeln!(x, "      <PublishedAt>{}</PublishedAt>", esc(p));
            }
            if let Some(r) = &l.refusal {
                x.push_str("      <Refusal");
                if let Some(h) = r.http {
                    let _ = write!(x, " http=\"{h}\"");
                }
                if let Some(e) = r.error_code {
                    let _ = write!(x, " errorCode=\"{e}\"");
                }
                if let Some(c) = &r.code {
                    let _ = write!(x, " code=\"{}\"", esc(c));
                }
                if let Some(t) = &r.trace_id {
                    let _ = write!(x, " traceId=\"{}\"", esc(t));
                }
                let _ = writeln!(x, ">{}</Refusal>", esc(&r.detail));
            }
            x.push_str("    </Letter>\n");
        }
        x.push_str("  </Letters>\n");
    }
    if !d.errors.is_empty() {
        x.push_str("  <Errors>\n");
        for e in d.errors {
            let layer = serde_json::to_value(e.layer).ok();
            let layer = layer.as_ref().and_then(|v| v.as_str()).unwrap_or("reading");
            let _ = writeln!(
                x,
                "    <Error line=\"{}\" column=\"{}\" code=\"{}\" layer=\"{layer}\">{}</Error>",
                e.line,
                e.column,
                esc(&e.code),
                esc(&e.message)
            );
        }
        x.push_str("  </Errors>\n");
    }
    x.push_str("</Receipt>\n");
    x
}

/// Later news about letters of an input file, all of one `kind`: read by
/// their recipients, published by Altinn, failed at publication (with
/// Altinn's reason), or reserved.
pub fn events_xml(
    input_file: &str,
    written_at: &str,
    kind: LetterEvent,
    news: &[EventLetter],
) -> String {
    let mut x = String::with_capacity(256 + news.len() * 200);
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(x, "<LetterEvents xmlns=\"{RECEIPT_NS}\">");
    let _ = writeln!(x, "  <InputFile>{}</InputFile>", esc(input_file));
    let _ = writeln!(x, "  <WrittenAt>{}</WrittenAt>", esc(written_at));
    let (element, at) = match kind {
        LetterEvent::Read => ("Read", "ReadAt"),
        LetterEvent::Published => ("Published", "PublishedAt"),
        LetterEvent::Failed => ("Failed", "FailedAt"),
        LetterEvent::Reserved => ("Reserved", "ReservedAt"),
    };
    for n in news {
        let _ = writeln!(
            x,
            "  <{element}>\n    <SendersReference>{}</SendersReference>\n    <Reportee>{}</Reportee>\n    <{at}>{}</{at}>",
            esc(&n.senders_reference),
            esc(&n.reportee),
            esc(&n.at)
        );
        if let Some(id) = &n.correspondence_id {
            let _ = writeln!(x, "    <CorrespondenceId>{}</CorrespondenceId>", esc(id));
        }
        if let Some(t) = n.text.as_deref().filter(|t| !t.is_empty()) {
            let _ = writeln!(x, "    <Reason>{}</Reason>", esc(t));
        }
        let _ = writeln!(x, "  </{element}>");
    }
    x.push_str("</LetterEvents>\n");
    x
}

/// `NAME.errors.txt`: why a file was rejected, for a person.
pub fn errors_txt(
    file: &FileRow,
    outcome: Outcome,
    errors: &[Finding],
    letters: &[LetterRow],
    hold: bool,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}: {}", file.name, outcome.as_str());
    let _ = writeln!(t, "{}", file.reason.as_deref().unwrap_or(""));
    if !errors.is_empty() {
        let _ = writeln!(t);
        for e in errors {
            if e.line == 0 {
                let _ = writeln!(t, "{}: error[{}]: {}", file.name, e.code, e.message);
            } else {
                let _ = writeln!(
                    t,
                    "{}:{}:{}: error[{}]: {}",
                    file.name, e.line, e.column, e.code, e.message
                );
            }
        }
    }
    let rejected: Vec<&LetterRow> = letters
        .iter()
        .filter(|l| letter_status(l, hold) == "Rejected")
        .collect();
    if !rejected.is_empty() {
        let _ = writeln!(t, "\nLetters Altinn rejected:");
        for l in rejected {
            let _ = writeln!(
                t,
                "  {} (to {}): {}",
                l.senders_reference,
                l.reportee,
                Some(letter_text(l, hold))
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "rejected".into())
            );
        }
    }
    t
}
