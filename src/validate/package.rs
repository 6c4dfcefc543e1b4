//! Export packages: a `.zip` holding one batch XML at its root and the
//! attachment files its letters refer to by `FileName`.
//!
//! A zip is outside data like any other, and a classic attack vector: entry
//! names that climb out of a folder (`../../etc/cron.d/x`), and compression
//! bombs that inflate a few kilobytes into terabytes. So:
//! - entry names are checked before anything else, and nothing is ever
//!   extracted: attachments are measured by streaming them through a counter,
//!   and the batch XML is streamed straight from the archive into the parser;
//! - sizes are counted on the bytes actually inflated, never taken from the
//!   zip headers (which a bomb lies in), and inflation stops the moment an
//!   entry, the package total, or the compression ratio passes its limit.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

use zip::ZipArchive;

use super::rules::{is_plain_file_name, PackageFiles};
use super::{FileReport, Finding, Layer, Validator};

/// Limits for export packages.
#[derive(Debug, Clone)]
pub struct PackageLimits {
    /// Most entries a package may have.
    pub max_entries: usize,
    /// Largest inflated size of one attachment entry.
    pub max_entry_bytes: u64,
    /// Largest inflated size of all entries together (the batch XML included).
    pub max_total_bytes: u64,
    /// Largest inflated/compressed ratio, checked once an entry passes 1 MiB.
    pub max_ratio: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_entries: 10_000,
            max_entry_bytes: 100 * 1024 * 1024,
            max_total_bytes: 8 * 1024 * 1024 * 1024,
            max_ratio: 200,
        }
    }
}

/// Does the input start with a zip local file header? Rewinds it.
pub fn is_zip<R: Read + Seek>(input: &mut R) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    input.seek(SeekFrom::Start(0))?;
    Ok(got == 4 && magic == *b"PK\x03\x04")
}

fn finding(code: &str, message: String) -> Finding {
    Finding {
        line: 0,
        column: 0,
        code: code.into(),
        layer: Layer::Reading,
        message,
    }
}

/// Why a name may not be used inside a package, if it may not.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.starts_with('/') || name.starts_with('\\') {
        Some("is an absolute path")
    } else if name.len() >= 2 && name.as_bytes()[1] == b':' {
        Some("starts with a drive letter")
    } else if name.split(['/', '\\']).any(|part| part == "..") {
        Some("climbs out of its folder with '..'")
    } else if name.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    }
}

/// Validate an export package.
pub fn validate(v: &Validator, name: String, file: File) -> FileReport {
    let limits = &v.options.package;
    let consumed = Rc::new(Cell::new(0u64));
    let counted = CountedFile {
        inner: file,
        read: consumed.clone(),
    };
    let mut archive = match ZipArchive::new(counted) {
        Ok(a) => a,
        Err(e) => {
            let f = finding(
                "PKG006",
                format!("the export package is not a readable zip file: {e}"),
            );
            return v.finish(name, 0, vec![f]);
        }
    };
    if archive.len() > limits.max_entries {
        let f = finding(
            "PKG004",
            format!(
                "the export package has {} entries, more than the limit of {}",
                archive.len(),
                limits.max_entries
            ),
        );
        return v.finish(name, 0, vec![f]);
    }

    // 1. Names: every entry, before any byte is inflated.
    let mut errors = Vec::new();
    let mut xml_entries = Vec::new();
    for i in 0..archive.len() {
        let entry_name = match archive.name_for_index(i) {
            Some(n) => n.to_string(),
            None => continue,
        };
        if let Some(why) = unsafe_name(&entry_name) {
            errors.push(finding(
                "PKG001",
                format!("entry '{entry_name}' {why}; the package is refused"),
            ));
        } else if is_plain_file_name(&entry_name)
            && entry_name.to_ascii_lowercase().ends_with(".xml")
        {
            xml_entries.push(i);
        }
    }
    if !errors.is_empty() {
        return v.finish(name, 0, errors);
    }
    let xml_index = match xml_entries.as_slice() {
        [one] => *one,
        [] => {
            let f = finding(
                "PKG002",
                "the export package has no batch XML file at its root".into(),
            );
            return v.finish(name, 0, vec![f]);
        }
        many => {
            let f = finding(
                "PKG002",
                format!(
                    "the export package has {} XML files at its root; it must hold exactly one batch",
                    many.len()
                ),
            );
            return v.finish(name, 0, vec![f]);
        }
    };

    // 2. Attachments: measure by inflating through a counter, within limits.
    let mut files = PackageFiles::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        if i == xml_index {
            continue;
        }
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                errors.push(finding("PKG006", format!("entry {i} cannot be read: {e}")));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let entry_name = entry.name().to_string();
        let budget = limits
            .max_entry_bytes
            .min(limits.max_total_bytes.saturating_sub(total));
        let mut guard = Guard::new(&mut entry, consumed.clone(), limits, budget);
        match io::copy(&mut guard, &mut io::sink()) {
            Ok(n) => {
                total += n;
                files.insert(entry_name, n);
            }
            Err(e) => errors.push(guard_finding(&entry_name, e)),
        }
    }
    if !errors.is_empty() {
        return v.finish(name, 0, errors);
    }

    // 3. The batch: streamed from the archive into the validator.
    let mut entry = match archive.by_index(xml_index) {
        Ok(e) => e,
        Err(e) => {
            let f = finding("PKG006", format!("the batch XML cannot be read: {e}"));
            return v.finish(name, 0, vec![f]);
        }
    };
    let entry_name = entry.name().to_string();
    let budget = limits.max_total_bytes.saturating_sub(total);
    let mut guard = Guard::new(&mut entry, consumed, limits, budget);
    let mut report = v.validate_xml(format!("{name}!{entry_name}"), &mut guard, Some(&files));
    if let Some(e) = guard.tripped.take() {
        // The batch was cut off by the guard: what the parser said about the
        // cut is noise; the refusal is the one error.
        return v.finish(name, report.letters, vec![guard_finding(&entry_name, e)]);
    }
    report.file = name;
    report
}

fn guard_finding(entry: &str, e: io::Error) -> Finding {
    if e.kind() == io::ErrorKind::FileTooLarge {
        let code = if e.to_string().contains("ratio") {
            "PKG005"
        } else {
            "PKG003"
        };
        finding(code, format!("entry '{entry}' refused: {e}"))
    } else {
        finding("PKG006", format!("entry '{entry}' cannot be inflated: {e}"))
    }
}

/// The package file, counting the bytes read from it: the compressed bytes
/// an entry really consumed, which a lying header cannot fake.
struct CountedFile {
    inner: File,
    read: Rc<Cell<u64>>,
}

impl Read for CountedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl Seek for CountedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Counts inflated bytes and fails the read the moment a limit is passed.
struct Guard<'a, R: Read> {
    inner: &'a mut R,
    /// Compressed bytes read from the package, and the count when this entry began.
    compressed: Rc<Cell<u64>>,
    compressed_start: u64,
    out: u64,
    budget: u64,
    max_ratio: u64,
    /// The limit error, kept so a caller whose consumer swallows I/O errors
    /// (libxml2 reports only "read failed") can still say why.
    tripped: Option<io::Error>,
}

impl<'a, R: Read> Guard<'a, R> {
    fn new(
        inner: &'a mut R,
        compressed: Rc<Cell<u64>>,
        limits: &PackageLimits,
        budget: u64,
    ) -> Self {
        let compressed_start = compressed.get();
        Guard {
            inner,
            compressed,
            compressed_start,
            out: 0,
            budget,
            max_ratio: limits.max_ratio,
            tripped: None,
        }
    }

    fn trip(&mut self, message: String) -> io::Error {
        self.tripped = Some(io::Error::new(io::ErrorKind::FileTooLarge, message.clone()));
        io::Error::new(io::ErrorKind::FileTooLarge, message)
    }
}

const RATIO_FLOOR: u64 = 1024 * 1024;

impl<R: Read> Read for Guard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > self.budget {
            let budget = self.budget;
            return Err(self.trip(format!(
                "it inflates to more than {budget} bytes, over the package limits"
            )));
        }
        let compressed = (self.compressed.get() - self.compressed_start).max(1);
        if self.out > RATIO_FLOOR && self.out / compressed > self.max_ratio {
            let max = self.max_ratio;
            return Err(self.trip(format!(
                "its compression ratio passes {max}:1, which only a compression bomb does"
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names() {
        assert!(unsafe_name("../evil.xml").is_some());
        assert!(unsafe_name("a/../../evil").is_some());
        assert!(unsafe_name("/etc/passwd").is_some());
        assert!(unsafe_name("C:\\x").is_some());
        assert!(unsafe_name("batch.xml").is_none());
        assert!(unsafe_name("vedlegg/faktura.pdf").is_none());
        assert!(unsafe_name("..faktura.pdf").is_none());
    }
}
