//! Altinn's side of the wire: the documents Altinn II sent back to a batch
//! sender, as plain data, each with a writer and a parser.
//!
//! - [`receipt`]: the processing receipt of one batch (`ReceiptExternal`,
//!   namespace `http://schemas.altinn.no/services/Intermediary/Receipt/2009/10`):
//!   a main receipt for the shipment with one sub-receipt per letter. Real
//!   Altinn served these over its SOAP receipt service (`GetReceiptBasic`);
//!   we keep the same element names and order so the data maps one to one,
//!   but exchange them as files, because the simulator ([`crate::sim`]) and
//!   the pipeline talk through folders.
//! - [`confirmation`]: the read/confirmed notices Altinn dropped on the SFTP
//!   server (`CorrespondenceConfirmations`, 2010/10; the 2009/10 namespace is
//!   read too).
//!
//! Why hand-written and not generated: the shapes are small, stable (Altinn
//! II is closed) and we need exact control over what a hostile or truncated
//! file can do to us. Parsing goes through [`crate::xml::parse`] (libxml2,
//! no network, no entities, no DTD) into a small tree built by `Collector`,
//! which caps depth, text and held bytes, hands repeated records (one per
//! letter) to the caller as they close so the tree never holds more than one
//! of them, and stops reading the moment a limit is passed. Elements we do
//! not know are ignored, so newer or richer files still read; a missing
//! required element is an [`AltinnError::Missing`] naming it.
//!
//! Writing is plain string building with escaping: the documents are flat
//! and small next to the batches they answer.

pub mod confirmation;
pub mod receipt;

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::time::SystemTime;

use crate::xml::{self, Events, Pos, Tag};

pub use confirmation::{
    parse_confirmations, parse_confirmations_with_limits, write_confirmations, Confirmation,
    Confirmations, CONFIRMATIONS_NS, CONFIRMATIONS_NS_2009,
};
pub use receipt::{
    parse_receipt, parse_receipt_with_limits, write_receipt, BatchReceipt, LetterReceipt,
    ReceiptStatus, RECEIPT_NS,
};

/// Everything that can go wrong reading or writing Altinn's documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltinnError {
    /// The input is not well-formed XML, or could not be read.
    Xml {
        line: u32,
        column: u32,
        message: String,
    },
    /// The input is well-formed as far as read, but uses something we
    /// refuse to read (a DOCTYPE, UTF-32, an endless start tag).
    Refused { line: u32, reason: String },
    /// The document is not the kind expected (root element or namespace).
    WrongDocument { expected: String, found: String },
    /// The input passes one of the [`Limits`].
    TooLarge { what: String, limit: u64 },
    /// A required element is missing.
    Missing {
        element: &'static str,
        within: String,
    },
    /// An element's value cannot be used.
    Invalid {
        element: &'static str,
        value: String,
        reason: String,
        line: u32,
    },
    /// The data cannot be written in the schema's shape.
    Unwritable { field: &'static str, reason: String },
}

impl fmt::Display for AltinnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AltinnError::Xml {
                line,
                column,
                message,
            } => {
                if *line == 0 {
                    write!(f, "cannot read the XML: {message}")
                } else {
                    write!(
                        f,
                        "not well-formed XML at line {line}, column {column}: {message}"
                    )
                }
            }
            AltinnError::Refused { line, reason } => write!(f, "line {line}: refused: {reason}"),
            AltinnError::WrongDocument { expected, found } => {
                write!(f, "expected a {expected} document, found {found}")
            }
            AltinnError::TooLarge { what, limit } => {
                write!(f, "refused: {what} passes the limit of {limit}")
            }
            AltinnError::Missing { element, within } => {
                write!(f, "required element {element} is missing in {within}")
            }
            AltinnError::Invalid {
                element,
                value,
                reason,
                line,
            } => write!(
                f,
                "line {line}: {element} '{}' {reason}",
                shorten(value, 80)
            ),
            AltinnError::Unwritable { field, reason } => {
                write!(f, "cannot write {field}: {reason}")
            }
        }
    }
}

impl std::error::Error for AltinnError {}

/// Caps on what a parsed document may cost. The defaults read a receipt or a
/// confirmations file for a million letters and refuse anything bigger;
/// memory stays within a few hundred bytes per letter plus `max_tree_bytes`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes read from the input.
    pub max_input_bytes: u64,
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Text of one element, in bytes.
    pub max_text_bytes: usize,
    /// Bytes held in the tree at once outside finished records (names,
    /// text, and a fixed overhead per element).
    pub max_tree_bytes: usize,
    /// Records (sub-receipts, confirmations) in one document.
    pub max_records: usize,
}

/// The largest document read from Altinn's side, in bytes: a receipt for a
/// million letters is a few hundred megabytes.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: MAX_DOCUMENT_BYTES,
            max_depth: 32,
            max_text_bytes: 1 << 20,
            max_tree_bytes: 16 << 20,
            max_records: 1_000_000,
        }
    }
}

/// One element of a parsed document: local name, text (only for elements
/// without child elements), children, and where it started.
#[derive(Debug, Clone, Default)]
pub(crate) struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
    pub line: u32,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of a required child, exactly as written.
    pub fn required(&self, name: &'static str, within: &str) -> Result<&Element, AltinnError> {
        self.child(name).ok_or_else(|| AltinnError::Missing {
            element: name,
            within: within.to_string(),
        })
    }

    /// A required child holding a whole number (surrounding blanks allowed).
    pub fn required_u64(&self, name: &'static str, within: &str) -> Result<u64, AltinnError> {
        let e = self.required(name, within)?;
        parse_u64(name, e)
    }

    /// A required child holding an xs:dateTime (returned trimmed).
    pub fn required_datetime(
        &self,
        name: &'static str,
        within: &str,
    ) -> Result<String, AltinnError> {
        let e = self.required(name, within)?;
        datetime_of(name, e)
    }

    /// Approximate bytes this subtree holds, for [`Limits::max_tree_bytes`].
    fn cost(&self) -> usize {
        ELEMENT_COST
            + self.name.len()
            + self.text.len()
            + self.children.iter().map(Element::cost).sum::<usize>()
    }
}

pub(crate) fn parse_u64(name: &'static str, e: &Element) -> Result<u64, AltinnError> {
    let v = e.text.trim();
    v.parse::<u64>().map_err(|_| AltinnError::Invalid {
        element: name,
        value: v.to_string(),
        reason: "is not a whole number".into(),
        line: e.line,
    })
}

pub(crate) fn datetime_of(name: &'static str, e: &Element) -> Result<String, AltinnError> {
    let v = e.text.trim();
    if is_xs_datetime(v) {
        Ok(v.to_string())
    } else {
        Err(AltinnError::Invalid {
            element: name,
            value: v.to_string(),
            reason: "is not an xs:dateTime (e.g. 2026-05-31T12:00:00Z)".into(),
            line: e.line,
        })
    }
}

/// Fixed bookkeeping cost counted per element.
const ELEMENT_COST: usize = 96;

/// What a document must look like at the top, and which repeated element is
/// a record handed out as soon as it closes.
pub(crate) struct Shape<'a> {
    /// Human name for messages, e.g. "ReceiptExternal (Altinn receipt)".
    pub kind: &'a str,
    pub root: &'a str,
    /// Namespaces accepted for the root; children must share the root's.
    pub namespaces: &'a [&'a str],
    /// Element names from the root down to a record element.
    pub record_path: &'a [&'a str],
}

/// Read a document into a tree, handing each record to `sink` as it closes.
/// Returns the root element, without the records.
pub(crate) fn read_tree(
    input: &mut dyn Read,
    shape: &Shape<'_>,
    limits: &Limits,
    sink: &mut dyn FnMut(Element) -> Result<(), AltinnError>,
) -> Result<Element, AltinnError> {
    let stop = Cell::new(false);
    let mut guarded = Guarded {
        inner: input,
        stop: &stop,
        read: 0,
        max: limits.max_input_bytes,
        over: false,
    };
    let mut collector = Collector {
        shape,
        limits,
        sink,
        stack: Vec::new(),
        path: Vec::new(),
        skip: 0,
        root: None,
        root_ns: None,
        held: 0,
        records: 0,
        stop: &stop,
        error: None,
    };
    let problems = xml::parse(None, &mut guarded, &mut collector);
    if guarded.over {
        return Err(AltinnError::TooLarge {
            what: "the input size in bytes".into(),
            limit: limits.max_input_bytes,
        });
    }
    if let Some(e) = collector.error {
        return Err(e);
    }
    if let Some(p) = problems.into_iter().find(|p| !p.schema) {
        let line = p.pos.line;
        match p.code {
            xml::CODE_DOCTYPE => {
                return Err(AltinnError::Refused {
                    line,
                    reason: format!(
                        "the {} has a DOCTYPE; Altinn's documents have none, and DTDs and \
                         entities are never read (for security)",
                        shape.kind
                    ),
                })
            }
            xml::CODE_UTF32
            | xml::CODE_MARKUP_TOO_LONG
            | xml::CODE_TEXT_TOO_LONG
            | xml::CODE_TOO_MANY_NAMES => {
                return Err(AltinnError::Refused {
                    line,
                    reason: p.message,
                })
            }
            _ => {}
        }
        return Err(AltinnError::Xml {
            line: p.pos.line,
            column: p.pos.column,
            message: p.message,
        });
    }
    collector.root.ok_or_else(|| AltinnError::WrongDocument {
        expected: shape.kind.to_string(),
        found: "no root element".into(),
    })
}

/// The input, counted, and cut off once the collector has given up (so a
/// hostile file is not read to its end).
struct Guarded<'a> {
    inner: &'a mut dyn Read,
    stop: &'a Cell<bool>,
    read: u64,
    max: u64,
    over: bool,
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.get() {
            return Err(io::Error::other("reading stopped"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            self.over = true;
            self.stop.set(true);
            return Err(io::Error::other("input too large"));
        }
        Ok(n)
    }
}

/// Builds the tree from parser events; see the module doc.
pub(crate) struct Collector<'a> {
    shape: &'a Shape<'a>,
    limits: &'a Limits,
    sink: &'a mut dyn FnMut(Element) -> Result<(), AltinnError>,
    /// Open elements that are kept.
    stack: Vec<Element>,
    /// Whether each open element had a child element (its text is then
    /// only formatting and is dropped).
    path: Vec<bool>,
    /// Depth inside an ignored subtree (foreign namespace).
    skip: usize,
    root: Option<Element>,
    root_ns: Option<&'a str>,
    held: usize,
    records: usize,
    stop: &'a Cell<bool>,
    error: Option<AltinnError>,
}

impl Collector<'_> {
    fn fail(&mut self, e: AltinnError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.stop.set(true);
    }

    fn charge(&mut self, bytes: usize) -> bool {
        self.held += bytes;
        if self.held > self.limits.max_tree_bytes {
            self.fail(AltinnError::TooLarge {
                what: "the document structure outside its records, in bytes".into(),
                limit: self.limits.max_tree_bytes as u64,
            });
            return false;
        }
        true
    }

    fn is_record_path(&self) -> bool {
        let p = self.shape.record_path;
        self.stack.len() == p.len() && self.stack.iter().zip(p).all(|(e, n)| e.name == *n)
    }
}

impl Events for Collector<'_> {
    fn start(&mut self, _local: &[u8], _in_batch_ns: bool, _pos: Pos) {
        // Not called: `start_tag` is overridden to see namespaces.
    }

    fn start_tag(&mut self, tag: &Tag<'_>, pos: Pos) {
        if self.error.is_some() {
            return;
        }
        if self.skip > 0 {
            self.skip += 1;
            return;
        }
        let uri = tag.uri.map(String::from_utf8_lossy);
        let local = String::from_utf8_lossy(tag.local).into_owned();
        if self.stack.is_empty() {
            if self.root.is_some() {
                return;
            }
            let ns = self
                .shape
                .namespaces
                .iter()
                .copied()
                .find(|n| uri.as_deref() == Some(*n));
            if local != self.shape.root || ns.is_none() {
                let found = match &uri {
                    Some(u) => format!("root element {local} in namespace {u}"),
                    None => format!("root element {local} without a namespace"),
                };
                self.fail(AltinnError::WrongDocument {
                    expected: self.shape.kind.to_string(),
                    found,
                });
                return;
            }
            self.root_ns = ns;
        } else if uri.as_deref() != self.root_ns {
            self.skip = 1;
            return;
        }
        if self.stack.len() >= self.limits.max_depth {
            self.fail(AltinnError::TooLarge {
                what: "the element nesting depth".into(),
                limit: self.limits.max_depth as u64,
            });
            return;
        }
        if !self.charge(ELEMENT_COST + local.len()) {
            return;
        }
        if let (Some(parent), Some(had_child)) = (self.stack.last_mut(), self.path.last_mut()) {
            if !*had_child {
                *had_child = true;
                let dropped = parent.text.len();
                parent.text = String::new();
                self.held -= dropped;
            }
        }
        self.stack.push(Element {
            name: local,
            text: String::new(),
            children: Vec::new(),
            line: pos.line,
        });
        self.path.push(false);
    }

    fn text(&mut self, text: &[u8]) {
        if self.error.is_some() || self.skip > 0 {
            return;
        }
        let (Some(top), Some(false)) = (self.stack.last_mut(), self.path.last().copied()) else {
            return;
        };
        if top.text.len() + text.len() > self.limits.max_text_bytes {
            let name = top.name.clone();
            self.fail(AltinnError::TooLarge {
                what: format!("the text of element {name}, in bytes"),
                limit: self.limits.max_text_bytes as u64,
            });
            return;
        }
        // libxml2 hands on whole characters of valid UTF-8.
        top.text.push_str(&String::from_utf8_lossy(text));
        self.charge(text.len());
    }

    fn end(&mut self, _local: &[u8], _pos: Pos) {
        if self.error.is_some() {
            return;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let is_record = self.is_record_path();
        let (Some(element), Some(_)) = (self.stack.pop(), self.path.pop()) else {
            return;
        };
        if is_record {
            self.held = self.held.saturating_sub(element.cost());
            self.records += 1;
            if self.records > self.limits.max_records {
                self.fail(AltinnError::TooLarge {
                    what: format!("the number of {} elements", element.name),
                    limit: self.limits.max_records as u64,
                });
                return;
            }
            if let Err(e) = (self.sink)(element) {
                self.fail(e);
            }
            return;
        }
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => self.root = Some(element),
        }
    }
}

/// Write `<name>escaped text</name>` with `indent` spaces and a newline.
pub(crate) fn leaf(out: &mut String, indent: usize, name: &str, text: &str) {
    out.extend(std::iter::repeat_n(' ', indent));
    out.push('<');
    out.push_str(name);
    out.push('>');
    crate::xml_text::escape_into(out, text, crate::xml_text::In::Text);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Write an opening or closing tag on its own line.
pub(crate) fn tag(out: &mut String, indent: usize, name: &str, open: bool) {
    out.extend(std::iter::repeat_n(' ', indent));
    out.push_str(if open { "<" } else { "</" });
    out.push_str(name);
    out.push_str(">\n");
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// `t` as an xs:dateTime in UTC with milliseconds, e.g.
/// `2026-05-31T12:00:00.000Z` (see [`crate::clock`]).
pub fn xs_datetime_utc(t: SystemTime) -> String {
    crate::clock::format_time(t)
}

/// Whether `s` is an xs:dateTime in the lexical form XSD 1.0 accepts:
/// `[-]YYYY-MM-DDThh:mm:ss[.f+][Z|(+|-)hh:mm]`, with real calendar days.
pub fn is_xs_datetime(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            part.iter().try_fold(0u32, |n, d| {
                n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            })
        } else {
            None
        }
    };
    let Some(dash) = b.iter().position(|&c| c == b'-') else {
        return false;
    };
    if dash < 4 || (dash > 4 && b[0] == b'0') {
        return false;
    }
    let Some(year) = digits(0..dash) else {
        return false;
    };
    let r = &b[dash..];
    if r.len() < 15 || r[0] != b'-' || r[3] != b'-' || r[6] != b'T' || r[9] != b':' {
        return false;
    }
    if r[12] != b':' {
        return false;
    }
    let at = |i: usize| digits(dash + i..dash + i + 2);
    let (Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (at(1), at(4), at(7), at(10), at(13))
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    let end_of_day = h == 24 && mi == 0 && sec == 0;
    if d == 0 || d > days || (h > 23 && !end_of_day) || mi > 59 || sec > 59 {
        return false;
    }
    let mut rest = &r[15..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [] | [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] if *sign == b'+' || *sign == b'-' => {
            let all = [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit());
            let hh = u32::from(h1.wrapping_sub(b'0')) * 10 + u32::from(h2.wrapping_sub(b'0'));
            let mm = u32::from(m1.wrapping_sub(b'0')) * 10 + u32::from(m2.wrapping_sub(b'0'));
            all && mm <= 59 && (hh < 14 || (hh == 14 && mm == 0))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn datetimes() {
        for ok in [
            "2026-05-31T12:00:00",
            "2026-05-31T12:00:00Z",
            "2026-05-31T12:00:00.123+02:00",
            "2024-02-29T00:00:00-14:00",
            "2026-12-31T24:00:00",
            "12026-01-01T00:00:00",
        ] {
            assert!(is_xs_datetime(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-05-31",
            "2026-02-29T00:00:00",
            "2026-13-01T00:00:00",
            "2026-05-31 12:00:00",
            "2026-05-31T12:00:00.Z",
            "2026-05-31T12:60:00",
            "2026-05-31T12:00:00+15:00",
            "026-05-31T12:00:00",
            "02026-05-31T12:00:00",
            "2026-05-31T12:00:00ZZ",
        ] {
            assert!(!is_xs_datetime(bad), "{bad}");
        }
    }

    #[test]
    fn utc_format() {
        assert_eq!(xs_datetime_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // leap day 2024
        assert_eq!(xs_datetime_utc(t), "2024-02-29T12:34:56.789Z");
        assert!(is_xs_datetime(&xs_datetime_utc(SystemTime::now())));
    }
}
