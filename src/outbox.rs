//! What the fagsystem reads back: receipts, later events, and the
//! human-readable `NAME.errors.txt` beside a rejected input.
//!
//! Receipts follow `schemas/dpv-batch-receipt.xsd` (namespace
//! `urn:dpv-batch:receipt:1`); tests validate every receipt against it.
//! This module renders the documents and decides their names
//! ([`output_name`]); the pipeline reserves the names in the journal and
//! writes the files atomically (see `durable`).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::journal::{EventLetter, FileRow, LetterEvent, LetterRow, Outcome, PartRow, LETTER_OK};
use crate::names;
use crate::transport::altinn3::status as a3;
use crate::validate::Finding;
use crate::xml_text::{self, In};

pub const RECEIPT_NS: &str = "urn:dpv-batch:receipt:1";

// ---- names -----------------------------------------------------------------
//
// The fagsystem finds what we wrote for its file `NAME` by name, so one
// function, [`output_name`], decides every name dpv-batch gives a file for an
// input: its receipt, its read events, where it goes in `archive/` or
// `failed/` and its `errors.txt`. `NAME` is the input's name as shown (see
// `names`: the name itself unless it needs escaping).
//
// Linux allows 255 bytes per name, and every file we write first exists as
// `.NAME.tmp`, so no name we write is longer than 250 bytes. Where `NAME`
// plus its suffix would be longer, the name is shortened: the first 200 bytes
// of `NAME` (never cutting a character or an escape in two), `~`, and the
// first 16 hex digits of the SHA-256 of `NAME`: still recognisable, unique,
// and computable by the fagsystem from its own name.

/// Linux's limit for one name (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// No name dpv-batch writes is longer: `.NAME.tmp` must fit in [`NAME_MAX`].
pub const MAX_OUTPUT_NAME: usize = NAME_MAX - ".".len() - ".tmp".len();
/// How much of a name a shortened name keeps.
const KEPT: usize = 200;

pub const RECEIPT_SUFFIX: &str = ".receipt.xml";
pub const ERRORS_SUFFIX: &str = ".errors.txt";

/// The name of what dpv-batch writes for the input `name` (as shown): `name`
/// numbered `n` (1 for the first choice; `a.xml` → `a.2.xml` when that is
/// taken) followed by `suffix`, shortened where that is too long.
pub fn output_name(name: &str, n: u32, suffix: &str) -> String {
    let numbered = numbered(name, n);
    if numbered.len() + suffix.len() <= MAX_OUTPUT_NAME {
        return numbered + suffix;
    }
    let counter = if n > 1 {
        format!(".{n}")
    } else {
        String::new()
    };
    format!("{}{counter}{suffix}", shortened(name))
}

/// `name` cut to its first 200 bytes, `~`, and 16 hex digits of its SHA-256.
pub fn shortened(name: &str) -> String {
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}~{hash}", names::cut(name, KEPT))
}

/// `a.xml` numbered 3 is `a.3.xml` (the number goes before the first dot
/// that does not start the name); numbered 1 it is itself.
fn numbered(name: &str, n: u32) -> String {
    if n <= 1 {
        return name.to_string();
    }
    match name.find('.') {
        Some(i) if i > 0 => format!("{}.{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}.{n}"),
    }
}

/// The first choice of [`output_name`] that `taken` says is free. Files the
/// fagsystem may have read are never overwritten, so a name that exists
/// (or is promised to another file) is skipped.
fn first_free<E>(
    name: &str,
    suffix: &str,
    mut taken: impl FnMut(&str) -> Result<bool, E>,
) -> Result<String, E> {
    let mut n = 1;
    loop {
        let candidate = output_name(name, n, suffix);
        if !taken(&candidate)? {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// The receipt's name for input `name` in the outbox: `NAME.receipt.xml`,
/// or the next free one (`a.2.xml.receipt.xml`).
pub fn receipt_name<E>(
    name: &str,
    taken: impl FnMut(&str) -> Result<bool, E>,
) -> Result<String, E> {
    first_free(name, RECEIPT_SUFFIX, taken)
}

/// Where input `name` goes in `archive/` or `failed/`: `NAME` or the next
/// free name, such that its `errors.txt` ([`errors_name`]) is free too.
pub fn moved_name<E>(
    name: &str,
    mut taken: impl FnMut(&str) -> Result<bool, E>,
) -> Result<String, E> {
    first_free(name, "", |m| Ok(taken(m)? || taken(&errors_name(m))?))
}

/// The `errors.txt` beside an input moved to `failed/` as `moved`.
pub fn errors_name(moved: &str) -> String {
    output_name(moved, 1, ERRORS_SUFFIX)
}

/// The file that reports letters of input `name` read, event `event`
/// (unique for ever: the event's id is in it).
pub fn read_event_name(name: &str, event: i64) -> String {
    event_name(name, LetterEvent::Read, event)
}

/// The file that reports news of `kind` about letters of input `name`:
/// `NAME.read-N.xml`, `NAME.published-N.xml`, `NAME.failed-N.xml`,
/// `NAME.reserved-N.xml`.
pub fn event_name(name: &str, kind: LetterEvent, event: i64) -> String {
    output_name(name, 1, &format!(".{}-{event}.xml", kind.file_word()))
}

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

/// Text for the receipt, through the one XML escaping function.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    xml_text::escape_into(&mut out, s, In::Text);
    out
}

/// An attribute value (written between `"`).
fn esc_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    xml_text::escape_into(&mut out, s, In::Attribute);
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
    let _ = writeln!(x, "  <InputFile>{}</InputFile>", esc(&names::text(&f.name)));
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
                    let _ = write!(x, " code=\"{}\"", esc_attr(c));
                }
                if let Some(t) = &r.trace_id {
                    let _ = write!(x, " traceId=\"{}\"", esc_attr(t));
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
    let _ = writeln!(
        x,
        "  <InputFile>{}</InputFile>",
        esc(&names::text(input_file))
    );
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
    let name = names::text(&file.name);
    let _ = writeln!(t, "{name}: {}", outcome.as_str());
    let _ = writeln!(t, "{}", file.reason.as_deref().unwrap_or(""));
    if !errors.is_empty() {
        let _ = writeln!(t);
        for e in errors {
            if e.line == 0 {
                let _ = writeln!(t, "{name}: error[{}]: {}", e.code, e.message);
            } else {
                let _ = writeln!(
                    t,
                    "{name}:{}:{}: error[{}]: {}",
                    e.line, e.column, e.code, e.message
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

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &str) -> Result<bool, ()> {
        Ok(false)
    }

    #[test]
    fn short_names_are_kept_and_numbered_like_before() {
        assert_eq!(output_name("a.xml", 1, RECEIPT_SUFFIX), "a.xml.receipt.xml");
        assert_eq!(
            output_name("a.xml", 2, RECEIPT_SUFFIX),
            "a.2.xml.receipt.xml"
        );
        assert_eq!(output_name("noext", 3, ""), "noext.3");
        assert_eq!(errors_name("a.2.xml"), "a.2.xml.errors.txt");
        assert_eq!(read_event_name("a.xml", 7), "a.xml.read-7.xml");
    }

    #[test]
    fn every_name_fits_with_its_temporary_name_at_every_length() {
        let suffixes = [RECEIPT_SUFFIX, ERRORS_SUFFIX, "", ".read-999999999999.xml"];
        for len in 1..=NAME_MAX {
            // Plain, multi-byte and escaped names, with and without dots.
            for fill in ["a", "ø", r"", "a.b"] {
                let mut name = fill.repeat(len / fill.len() + 1);
                while name.len() > len {
                    name.pop();
                }
                if name.is_empty() {
                    continue; // "ø" does not fit in one byte
                }
                for suffix in suffixes {
                    for n in [1, 2, 1000, u32::MAX] {
                        let out = output_name(&name, n, suffix);
                        assert!(
                            out.len() <= MAX_OUTPUT_NAME,
                            "{len} {suffix} {n}: {}",
                            out.len()
                        );
                        assert!(out.ends_with(suffix));
                        assert!(!out.starts_with('.'));
                        let moved = output_name(&name, n, "");
                        assert!(errors_name(&moved).len() <= MAX_OUTPUT_NAME);
                    }
                }
            }
        }
    }

    #[test]
    fn long_names_keep_a_prefix_and_a_hash_of_the_whole_name() {
        let a = format!("{}.xml", "x".repeat(240));
        let b = format!("{}.xml", "x".repeat(241));
        let (ra, rb) = (
            output_name(&a, 1, RECEIPT_SUFFIX),
            output_name(&b, 1, RECEIPT_SUFFIX),
        );
        assert_ne!(ra, rb, "same prefix, different names");
        assert!(ra.starts_with(&"x".repeat(200)));
        assert_eq!(ra.len(), 200 + 1 + 16 + RECEIPT_SUFFIX.len());
        assert_ne!(output_name(&a, 2, RECEIPT_SUFFIX), ra);
        assert!(output_name(&a, 2, RECEIPT_SUFFIX).ends_with(".2.receipt.xml"));
    }

    #[test]
    fn taken_names_are_skipped_for_the_file_and_its_errors_txt() {
        assert_eq!(receipt_name("a.xml", never), Ok("a.xml.receipt.xml".into()));
        let taken = |n: &str| Ok::<_, ()>(n == "a.xml.errors.txt");
        assert_eq!(moved_name("a.xml", taken), Ok("a.2.xml".into()));
    }
}
