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
    /// What Altinn 3 would refuse (`validate --target altinn3`, and before
    /// sending over Altinn 3): `src/altinn3/rules.rs`.
    Altinn3,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rules: RuleOptions::default(),
            package: PackageLimits::default(),
            max_errors: 1000,
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
        let mut rules = rules::Rules::new(&self.options.rules, package);
        let problems = xml::parse(Some(&self.schema), input, &mut rules);
        let letters = rules.letters;
        let system_user_code = rules.system_user_code.take();
        let shipment_reference = rules.shipment_reference.take();
        let sequence_no = rules.sequence_no.take();
        let letter_refs = std::mem::take(&mut rules.letter_refs);
        // A file that is not well-formed was read only up to the error; the
        // rule findings on the part before it are still true, so all are kept.
        let mut findings: Vec<Finding> = problems.into_iter().filter_map(from_xml).collect();
        findings.extend(rules.into_violations().into_iter().map(|v| Finding {
            line: v.pos.line,
            column: v.pos.column,
            code: v.code.to_string(),
            layer: Layer::Rules,
            message: v.message,
        }));
        let mut report = self.finish(name, letters, findings);
        report.system_user_code = system_user_code;
        report.shipment_reference = shipment_reference;
        report.sequence_no = sequence_no;
        report.letter_refs = letter_refs;
        report
    }

    /// Sort, cap and wrap findings into a report.
    pub(crate) fn finish(
        &self,
        file: String,
        letters: u64,
        mut errors: Vec<Finding>,
    ) -> FileReport {
        errors.sort_by_key(|f| (f.line, f.column));
        let total = errors.len();
        errors.truncate(self.options.max_errors);
        FileReport {
            file,
            valid: total == 0,
            letters,
            system_user_code: None,
            shipment_reference: None,
            sequence_no: None,
            letter_refs: Vec::new(),
            package: None,
            errors_not_listed: (total - errors.len()) as u64,
            errors,
        }
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
    let message = p.message.replace(NS_BRACED, "");
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
