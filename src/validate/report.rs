//! Printing reports, as compilers do (`PATH:LINE:COL: error[CODE]: message`,
//! so editors can jump to the line) or as JSON for machines.
//!
//! The JSON is an array with one object per input file:
//! `{"file", "valid", "letters", "errors": [{"line", "column", "code",
//! "layer", "message"}], "errors_not_listed"?}`; `layer` is `reading`,
//! `schema` or `rules`; line and column are 1-based, 0 when an error
//! concerns the whole file. See `docs/rules.md` for every code.

use std::fmt::Write as _;

use super::FileReport;

/// One line per error, then a one-line summary for the file.
pub fn text(report: &FileReport) -> String {
    let mut out = String::new();
    for e in &report.errors {
        if e.line == 0 {
            let _ = writeln!(out, "{}: error[{}]: {}", report.file, e.code, e.message);
        } else {
            let _ = writeln!(
                out,
                "{}:{}:{}: error[{}]: {}",
                report.file, e.line, e.column, e.code, e.message
            );
        }
    }
    if report.errors_not_listed > 0 {
        let _ = writeln!(
            out,
            "{}: ... and {} more errors, not listed (--max-errors {} lists them all)",
            report.file,
            report.errors_not_listed,
            report.errors.len() as u64 + report.errors_not_listed
        );
    }
    let letters = match report.letters {
        1 => "1 letter".to_string(),
        n => format!("{n} letters"),
    };
    let total = report.errors.len() as u64 + report.errors_not_listed;
    if report.valid {
        let _ = writeln!(out, "{}: valid ({letters})", report.file);
    } else {
        let errors = if total == 1 {
            "1 error".to_string()
        } else {
            format!("{total} errors")
        };
        let hidden = if report.errors_not_listed > 0 {
            format!(", {} not listed", report.errors_not_listed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}: INVALID, {errors}{hidden} ({letters})",
            report.file
        );
    }
    out
}

/// All reports as one pretty JSON array.
pub fn json(reports: &[FileReport]) -> String {
    serde_json::to_string_pretty(reports).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
