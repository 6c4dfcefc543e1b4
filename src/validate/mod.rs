//! Validation of DPV batch files, in three layers, reporting every error.
//!
//! 1. **Reading** (`xml`): well-formed XML in any encoding libxml2 knows,
//!    with DTDs, entities and network access refused.
//! 2. **Schema** (`xml`): Altinn's correspondence batch XSD, checked while
//!    streaming.
//! 3. **DPV rules** (`rules`): what the XSD cannot say (org numbers, the
//!    service catalogue, unique references, ...).
//!
//! All three run in one pass over the file, so validating a gigabyte batch
//! costs one read of it and constant memory. Export packages (`.zip`) are
//! handled by `package`: the batch inside is streamed straight out of the
//! archive, nothing is extracted to disk, and the [`PackageIndex`] that
//! decided which entries were judged travels with the report to packaging.
//!
//! The result is a [`FileReport`]: plain data, which `report` prints as text
//! or JSON, and which the pipeline journals.

pub mod ids;
pub mod package;
pub mod report;
pub mod rules;

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::xml;

pub use package::{PackageIndex, PackageLimits};
pub use rules::RuleOptions;

/// The schema every batch is checked against unless `--schema` says otherwise.
pub const EMBEDDED_XSD: &[u8] = include_bytes!("../../schemas/correspondence.2022.11.xsd");

/// Which layer found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Reading the file: I/O, encoding, well-formedness, refused constructs, packages.
    Reading,
    /// Altinn's XSD.
    Schema,
    /// DPV rules beyond the XSD.
    Rules,
}

/// One problem in one file. `line` and `column` are 1-based; 0 means the
/// problem concerns the whole file (e.g. a broken zip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub line: u32,
    pub column: u32,
    pub code: String,
    pub layer: Layer,
    pub message: String,
}

/// The verdict on one input file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub valid: bool,
    /// Letters (`Correspondence` elements) seen.
    pub letters: u64,
    pub errors: Vec<Finding>,
    /// What the header says, when it could be read, and every letter's
    /// (SendersReference, Reportee): what packaging needs to know.
    #[serde(skip)]
    pub system_user_code: Option<String>,
    #[serde(skip)]
    pub shipment_reference: Option<String>,
    #[serde(skip)]
    pub sequence_no: Option<String>,
    #[serde(skip)]
    pub letter_refs: Vec<(String, String)>,
    /// For a valid export package: the entries that were judged, which
    /// packaging must read and no others.
    #[serde(skip)]
    pub package: Option<PackageIndex>,
    /// Errors found beyond `max_errors`, counted but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub errors_not_listed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Everything validation can be told.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: RuleOptions,
    pub package: PackageLimits,
    /// At most this many errors are listed per file (all are counted).
    pub max_errors: usize,
    /// Keep every letter's (SendersReference, Reportee) of a valid file in
    /// [`FileReport::letter_refs`], for packaging. `validate` does not need
    /// them, and an invalid file is never packaged: then nothing is kept
    /// per letter but what DPV011 needs (400,000 letters held 45 MB).
    pub keep_letters: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rules: RuleOptions::default(),
            package: PackageLimits::default(),
            max_errors: 1000,
            keep_letters: true,
        }
    }
}

/// A validator: a compiled schema plus options. Not `Send` (libxml2): make
/// one per thread.
pub struct Validator {
    schema: xml::Schema,
    pub options: Options,
}

impl Validator {
    /// A validator using the embedded Altinn schema.
    pub fn new(options: Options) -> Result<Validator, String> {
        Self::with_schema(EMBEDDED_XSD, options)
    }

    /// A validator using the XSD given as bytes (`--schema FILE`).
    pub fn with_schema(xsd: &[u8], options: Options) -> Result<Validator, String> {
        let schema = xml::Schema::compile(xsd)?;
        Ok(Validator { schema, options })
    }

    /// Validate one input file: a batch XML, or an export package (`.zip`).
    pub fn validate_path(&self, path: &Path) -> FileReport {
        let name = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return self.unreadable(name, &e),
        };
        let mut input = BufReader::with_capacity(256 * 1024, file);
        match package::is_zip(&mut input) {
            Ok(true) => package::validate(self, name, input.into_inner()),
            Ok(false) => self.validate_xml(name, &mut input, None),
            Err(e) => self.unreadable(name, &e),
        }
    }

    fn unreadable(&self, name: String, e: &std::io::Error) -> FileReport {
        let f = Finding {
            line: 0,
            column: 0,
            code: format!("XML{}", xml::CODE_IO),
            layer: Layer::Reading,
            message: format!("cannot read the file: {e}"),
        };
        self.finish(name, 0, vec![f])
    }

    /// Validate a batch XML from any reader. `package` is the export
    /// package it came in, which fills attachments with empty `Data`.
    pub fn validate_xml(
        &self,
        name: String,
        input: &mut dyn Read,
        package: Option<&PackageIndex>,
    ) -> FileReport {
        // Findings are ranked as they come, so memory stays bounded by the
        // listing limit however many errors a file has. A file that is not
        // well-formed was read only up to the error; the rule findings on
        // the part before it are still true, so all count.
        let findings = RefCell::new(Findings::new(self.options.max_errors));
        let mut rules = rules::Rules::new(&self.options.rules, package);
        let mut events = Ranked {
            rules: &mut rules,
            findings: &findings,
            keep_letters: self.options.keep_letters,
        };
        xml::parse_into(Some(&self.schema), input, &mut events, &mut |p| {
            if let Some(f) = from_xml(p) {
                findings.borrow_mut().push(f, 0);
            }
        });
        events.drain();
        let mut report = self.report(name, rules.letters, findings.into_inner());
        report.system_user_code = rules.system_user_code.take();
        report.shipment_reference = rules.shipment_reference.take();
        report.sequence_no = rules.sequence_no.take();
        report.letter_refs = std::mem::take(&mut rules.letter_refs);
        report
    }

    /// Sort, cap and wrap findings into a report.
    pub(crate) fn finish(&self, file: String, letters: u64, errors: Vec<Finding>) -> FileReport {
        let mut findings = Findings::new(self.options.max_errors);
        for f in errors {
            findings.push(f, 0);
        }
        self.report(file, letters, findings)
    }

    fn report(&self, file: String, letters: u64, findings: Findings) -> FileReport {
        let total = findings.total;
        let errors = findings.into_sorted();
        FileReport {
            file,
            valid: total == 0,
            letters,
            system_user_code: None,
            shipment_reference: None,
            sequence_no: None,
            letter_refs: Vec::new(),
            package: None,
            errors_not_listed: total - errors.len() as u64,
            errors,
        }
    }
}

/// The findings to list: the first `keep` by position in the file, kept in a
/// max-heap so each new one costs O(log keep) and the rest are only counted
/// (a file with 400,000 errors held them all: 472 MB).
struct Findings {
    keep: usize,
    heap: BinaryHeap<ByPosition>,
    total: u64,
    seq: u64,
}

/// A finding ranked by (line, column, source, arrival): where positions tie,
/// reading and schema problems come before rule findings, each in the order
/// found.
struct ByPosition {
    key: (u32, u32, u8, u64),
    finding: Finding,
}

impl PartialEq for ByPosition {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ByPosition {}
impl PartialOrd for ByPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Findings {
    fn new(keep: usize) -> Findings {
        Findings {
            keep,
            heap: BinaryHeap::new(),
            total: 0,
            seq: 0,
        }
    }

    /// `source` orders ties: 0 for reading and schema, 1 for the rules.
    fn push(&mut self, finding: Finding, source: u8) {
        self.total += 1;
        self.seq += 1;
        let key = (finding.line, finding.column, source, self.seq);
        if self.heap.len() < self.keep {
            self.heap.push(ByPosition { key, finding });
        } else if self.heap.peek().is_some_and(|last| key < last.key) {
            self.heap.pop();
            self.heap.push(ByPosition { key, finding });
        }
    }

    fn into_sorted(self) -> Vec<Finding> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.finding)
            .collect()
    }
}

/// The rules, with each violation passed on to the findings as soon as the
/// event that found it is over, so none pile up.
struct Ranked<'r, 'o> {
    rules: &'r mut rules::Rules<'o>,
    findings: &'r RefCell<Findings>,
    keep_letters: bool,
}

impl Ranked<'_, '_> {
    fn drain(&mut self) {
        for v in self.rules.take_violations() {
            let finding = Finding {
                line: v.pos.line,
                column: v.pos.column,
                code: v.code.to_string(),
                layer: Layer::Rules,
                message: v.message,
            };
            self.findings.borrow_mut().push(finding, 1);
        }
        // Letters are only wanted for packaging a valid file.
        if (!self.keep_letters || self.findings.borrow().total > 0)
            && self.rules.letter_refs.capacity() > 0
        {
            self.rules.letter_refs = Vec::new();
        }
    }
}

impl xml::Events for Ranked<'_, '_> {
    fn start(&mut self, local: &[u8], in_batch_ns: bool, pos: xml::Pos) {
        self.rules.start(local, in_batch_ns, pos);
        self.drain();
    }
    fn start_tag(&mut self, tag: &xml::Tag<'_>, pos: xml::Pos) {
        self.rules.start_tag(tag, pos);
        self.drain();
    }
    fn text(&mut self, text: &[u8]) {
        self.rules.text(text);
        self.drain();
    }
    fn end(&mut self, local: &[u8], pos: xml::Pos) {
        self.rules.end(local, pos);
        self.drain();
    }
}

const NS_BRACED: &str = "{http://schemas.altinn.no/services/intermediary/correspondence/2009/10}";

/// libxml2 error code for a value that does not match its simple type.
const XSD_DATATYPE_INVALID: i32 = 1824;

/// Turn a libxml2 problem into a finding with a message an operator can
/// read: no namespace noise. `None` for a problem a DPV rule reports better.
fn from_xml(p: xml::XmlProblem) -> Option<Finding> {
    // Invalid base64 in Data is reported by DPV012 with a precise reason;
    // libxml2's generic datatype message would only repeat it.
    if p.schema && p.code == XSD_DATATYPE_INVALID && p.message.contains("base64Binary") {
        return None;
    }
    let message = if p.code == xml::CODE_DOCTYPE && !p.schema {
        "the file has a DOCTYPE; batch files must not have one (DTDs and entities are refused \
         for security), so remove the <!DOCTYPE ...> declaration"
            .to_string()
    } else {
        p.message.replace(NS_BRACED, "")
    };
    let (code, layer) = if p.schema {
        (format!("XSD{}", p.code), Layer::Schema)
    } else {
        (format!("XML{:03}", p.code), Layer::Reading)
    };
    Some(Finding {
        line: p.pos.line,
        column: p.pos.column,
        code,
        layer,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters_kept(batch: &str, keep_letters: bool) -> (bool, usize) {
        let options = Options {
            keep_letters,
            ..Options::default()
        };
        let v = Validator::new(options).expect("schema");
        let report = v.validate_xml("t".into(), &mut batch.as_bytes(), None);
        (report.valid, report.letter_refs.len())
    }

    #[test]
    fn letters_are_kept_only_when_they_will_be_packaged() {
        let spec = crate::gen::Spec {
            letters: 3,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        crate::gen::write_batch(&spec, &mut bytes).expect("gen");
        let valid = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(letters_kept(&valid, true), (true, 3));
        assert_eq!(letters_kept(&valid, false), (true, 0));
        let invalid = valid.replacen("<Reportee>974760673", "<Reportee>123", 1);
        assert_eq!(letters_kept(&invalid, true), (false, 0));
    }

    #[test]
    fn the_first_findings_by_position_are_listed_and_all_counted() {
        let mut findings = Findings::new(2);
        for (line, source) in [(9, 1), (3, 1), (7, 0), (3, 0), (1, 1)] {
            let f = Finding {
                line,
                column: 1,
                code: format!("{line}/{source}"),
                layer: Layer::Rules,
                message: String::new(),
            };
            findings.push(f, source);
        }
        assert_eq!(findings.total, 5);
        let codes: Vec<String> = findings.into_sorted().into_iter().map(|f| f.code).collect();
        assert_eq!(codes, ["1/1", "3/0"]);
    }
}
