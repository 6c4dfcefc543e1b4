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
//!
//! **One truth.** Which entry is the batch, and which entry each attachment
//! is, is decided once, here, by [`PackageIndex`]; validation judges those
//! entries and packaging reads exactly those (it is handed the index, and
//! checks that every byte it reads is the byte that was measured: same
//! position, same name, same length, same SHA-256). Nothing else looks an
//! entry up by name. A package whose names leave room for doubt is refused
//! rather than guessed at:
//! - an entry that is not a plain file at the root (a folder, `/` or `\`
//!   in its name, a symbolic link, a control character, a name longer than
//!   a file name may be): PKG007. `old\batch.xml` is a file in a folder to
//!   one unpacker and a root file to another;
//! - two entries with the same name, or names equal after Unicode NFC and
//!   case folding (`Vedtak.pdf`/`vedtak.pdf`, `é` composed/decomposed),
//!   invisible characters or trailing dots and blanks aside: PKG008. An
//!   unpacker keeps one of them, which one depends on the tool and the file
//!   system. The zip library itself keeps only the last of two equal names,
//!   so duplicates are found by walking the central directory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zip::read::ZipFile;
use zip::ZipArchive;

use super::rules::{file_name_problem, MAX_FILE_NAME_BYTES};
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

/// The key under which two names are "the same file" to some unpacker,
/// file system or reader: canonical caseless matching (Unicode D145: NFD,
/// case fold, NFC), with the fold done as lower(upper(c)) per character,
/// which also folds `ß`/`ss`, `ſ`/`s` and final sigma, as case-insensitive
/// file systems variously do; invisible characters dropped (HFS+ ignores
/// them, and a reader cannot see them); trailing dots and blanks dropped, as
/// Windows does.
fn folded(name: &str) -> String {
    let folded: String = name
        .nfd()
        .filter(|&c| !is_default_ignorable(c))
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    folded.trim_end_matches(['.', ' ']).nfc().collect()
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt):
/// characters that render as nothing (zero-width spaces and joiners,
/// direction marks, variation selectors, the soft hyphen, ...).
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// How two names with the same [`folded`] key differ, for a message.
fn how_alike(a: &str, b: &str) -> &'static str {
    let trimmed = |s: &str| s.trim_end_matches(['.', ' ']).to_string();
    let visible = |s: &str| {
        s.chars()
            .filter(|&c| !is_default_ignorable(c))
            .collect::<String>()
    };
    if a.nfc().eq(b.nfc()) {
        "are the same name written in two Unicode normalisation forms (NFC and NFD)"
    } else if a.to_lowercase() == b.to_lowercase() {
        "differ only in case"
    } else if trimmed(a) == trimmed(b) {
        "differ only in trailing dots or blanks, which Windows drops"
    } else if visible(a) == visible(b) {
        "differ only in invisible characters (zero-width spaces, direction marks and the like)"
    } else {
        "differ only in case, Unicode normalisation, invisible characters or trailing dots \
         and blanks"
    }
}

/// One entry of an export package, as [`PackageIndex`] decided and measured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the zip's central directory.
    pub index: usize,
    pub name: String,
    /// Length and SHA-256 of its inflated bytes, measured once, when the
    /// package was validated.
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The one authority on an export package: which entry is the batch, and
/// which entry the attachment named `FileName` is. Built only here, from
/// the zip's central directory and entries that were read in full and
/// measured; validation judges by it and packaging reads by it.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    /// Entries in the central directory (the batch included).
    entries: usize,
    batch: Entry,
    /// Attachments by their exact name.
    attachments: HashMap<String, Entry>,
    /// [`folded`] name → name, for a message when a FileName misses only by
    /// case, normalisation and the like.
    folded: HashMap<String, String>,
}

impl PackageIndex {
    /// The batch XML.
    pub fn batch(&self) -> &Entry {
        &self.batch
    }

    /// The entry an attachment's `FileName` names: exactly that name, never
    /// the batch itself.
    pub fn attachment(&self, file_name: &str) -> Option<&Entry> {
        self.attachments.get(file_name)
    }

    /// An entry whose name differs from `file_name` only in case, Unicode
    /// normalisation, invisible characters or trailing dots and blanks (for
    /// a clearer message; never used to fill a letter).
    pub fn same_but_for_case_or_form(&self, file_name: &str) -> Option<&str> {
        self.folded
            .get(&folded(file_name))
            .map(String::as_str)
            .filter(|name| *name != file_name)
    }

    /// Decide and measure a package without validating its batch (for
    /// packaging an input nobody validated, as tests and tools do): the same
    /// reading `validate` does, with the batch only hashed.
    pub fn open(path: &Path, limits: &PackageLimits) -> Result<PackageIndex, Vec<Finding>> {
        let file = File::open(path).map_err(|e| {
            vec![finding(
                "PKG006",
                format!("the export package cannot be opened: {e}"),
            )]
        })?;
        let mut package = Opened::open(file, limits)?;
        let mut index = package.decide_and_measure(limits)?;
        let budget = limits.max_total_bytes.saturating_sub(package.total);
        let batch = index.batch.clone();
        let mut entry = package.archive.by_index(batch.index).map_err(|e| {
            vec![finding(
                "PKG006",
                format!("the batch XML cannot be read: {e}"),
            )]
        })?;
        let mut guard = Guard::new(&mut entry, package.consumed.clone(), limits, budget);
        let mut hashing = Hashing::new(&mut guard);
        if let Err(e) = io::copy(&mut hashing, &mut io::sink()) {
            return Err(vec![guard_finding(&batch.name, e)]);
        }
        (index.batch.size, index.batch.sha256) = hashing.finish();
        Ok(index)
    }

    /// Open `entry` of `archive` for reading, verified: the archive must be
    /// the one this index was made from (same entry count, the same name at
    /// the same position), and the bytes read must be the bytes measured;
    /// anything else fails the read with [`io::ErrorKind::InvalidData`].
    pub fn read_entry<'a, R: Read + Seek>(
        &self,
        archive: &'a mut ZipArchive<R>,
        entry: &Entry,
    ) -> io::Result<Verified<ZipFile<'a, R>>> {
        let same = archive.len() == self.entries
            && archive.name_for_index(entry.index) == Some(entry.name.as_str());
        if !same {
            return Err(changed(&entry.name));
        }
        let inner = archive.by_index(entry.index).map_err(|e| match e {
            zip::result::ZipError::Io(e) => e,
            // It was read in full when measured: now it cannot be.
            other => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {other}", changed(&entry.name)),
            ),
        })?;
        Ok(Verified {
            inner,
            entry: entry.clone(),
            seen: 0,
            hasher: Sha256::new(),
            verdict: None,
        })
    }
}

fn changed(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("entry '{name}' of the export package is not the one that was validated"),
    )
}

/// An entry being read by packaging: fails the read if its bytes are not
/// the ones [`PackageIndex`] measured (longer, shorter, or different).
pub struct Verified<R: Read> {
    inner: R,
    entry: Entry,
    seen: u64,
    hasher: Sha256,
    /// Set at the end: `Ok` when verified, the error otherwise (sticky).
    verdict: Option<Result<(), String>>,
}

impl<R: Read> Verified<R> {
    /// Why the entry was refused, if it was.
    pub fn refusal(&self) -> Option<&str> {
        match &self.verdict {
            Some(Err(why)) => Some(why),
            _ => None,
        }
    }

    /// Read to the end (what a consumer left unread) and say whether the
    /// whole entry was the one measured.
    pub fn finish(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink())?;
        Ok(())
    }

    fn refuse(&mut self) -> io::Error {
        let e = changed(&self.entry.name);
        self.verdict = Some(Err(e.to_string()));
        e
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.verdict {
            Some(Ok(())) => return Ok(0),
            Some(Err(why)) => return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone())),
            None => {}
        }
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.entry.size {
            return Err(self.refuse());
        }
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            if self.seen != self.entry.size || digest != self.entry.sha256 {
                return Err(self.refuse());
            }
            self.verdict = Some(Ok(()));
        }
        Ok(n)
    }
}

/// Counts and hashes what passes through.
struct Hashing<R: Read> {
    inner: R,
    n: u64,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            n: 0,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (u64, [u8; 32]) {
        (self.n, self.hasher.finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A package being read: the archive, and the compressed bytes consumed
/// from it so far (for the ratio check).
struct Opened {
    archive: ZipArchive<CountedFile>,
    consumed: Rc<Cell<u64>>,
    /// Inflated bytes of the attachments measured so far.
    total: u64,
}

/// A central directory record's fixed part, and its signature.
const CENTRAL_HEADER_LEN: usize = 46;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;

impl Opened {
    /// Open the archive and check its entry count, duplicates included.
    fn open(file: File, limits: &PackageLimits) -> Result<Opened, Vec<Finding>> {
        let raw = file.try_clone().map_err(|e| {
            vec![finding(
                "PKG006",
                format!("the export package cannot be read: {e}"),
            )]
        })?;
        let consumed = Rc::new(Cell::new(0u64));
        let counted = CountedFile {
            inner: file,
            read: consumed.clone(),
        };
        let archive = ZipArchive::new(counted).map_err(|e| {
            vec![finding(
                "PKG006",
                format!("the export package is not a readable zip file: {e}"),
            )]
        })?;
        let mut opened = Opened {
            archive,
            consumed,
            total: 0,
        };
        if opened.archive.len() > limits.max_entries {
            return Err(vec![too_many(opened.archive.len(), limits)]);
        }
        opened.check_central_directory(&raw, limits)?;
        Ok(opened)
    }

    /// Walk the central directory record by record. The zip library keys
    /// entries by name, so of two entries with one name it silently keeps
    /// the last: every record it does not know is such a shadowed duplicate
    /// (PKG008), or a record past the count the zip's end record gives,
    /// which some unpackers see and others do not (PKG006).
    fn check_central_directory(
        &mut self,
        raw: &File,
        limits: &PackageLimits,
    ) -> Result<(), Vec<Finding>> {
        let mut known = HashSet::with_capacity(self.archive.len());
        for i in 0..self.archive.len() {
            let entry = self
                .archive
                .by_index_raw(i)
                .map_err(|e| vec![finding("PKG006", format!("entry {i} cannot be read: {e}"))])?;
            known.insert(entry.central_header_start());
        }
        let names: HashSet<&str> = self.archive.file_names().collect();
        let mut errors = Vec::new();
        let mut pos = self.archive.central_directory_start();
        let mut records = 0usize;
        let mut header = [0u8; CENTRAL_HEADER_LEN];
        while raw.read_exact_at(&mut header, pos).is_ok()
            && u32::from_le_bytes([header[0], header[1], header[2], header[3]])
                == CENTRAL_HEADER_SIG
        {
            records += 1;
            if records > limits.max_entries {
                return Err(vec![too_many(records, limits)]);
            }
            let field = |at: usize| u64::from(u16::from_le_bytes([header[at], header[at + 1]]));
            let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
            if !known.contains(&pos) {
                let mut name = vec![0u8; name_len as usize];
                let name = match raw.read_exact_at(&mut name, pos + CENTRAL_HEADER_LEN as u64) {
                    Ok(()) => String::from_utf8_lossy(&name).into_owned(),
                    Err(_) => "?".into(),
                };
                // (The library decodes names without the UTF-8 flag as CP437;
                // a duplicate so written is still caught, as a hidden record.)
                let duplicate = names.contains(name.as_str());
                if errors.len() < 10 {
                    errors.push(if duplicate {
                        finding(
                            "PKG008",
                            format!(
                                "the package holds more than one entry named '{}'; an unpacker \
                                 keeps only one of them, and which one depends on the tool, so \
                                 the package is refused",
                                shown(&name)
                            ),
                        )
                    } else {
                        finding(
                            "PKG006",
                            format!(
                                "the package's central directory lists an entry '{}' that its end \
                                 record does not count: some unpackers see it, others do not, so \
                                 the package is refused",
                                shown(&name)
                            ),
                        )
                    });
                }
            }
            pos += CENTRAL_HEADER_LEN as u64 + name_len + extra_len + comment_len;
        }
        if records < self.archive.len() {
            errors.push(finding(
                "PKG006",
                "the export package's central directory cannot be read consistently".into(),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Decide which entry is the batch and which are attachments (names
    /// only, before any byte is inflated), then measure every attachment.
    fn decide_and_measure(&mut self, limits: &PackageLimits) -> Result<PackageIndex, Vec<Finding>> {
        let mut errors = Vec::new();
        let mut xml_entries = Vec::new();
        let mut files = Vec::new();
        let mut folded_names: HashMap<String, String> = HashMap::new();
        for i in 0..self.archive.len() {
            let entry = match self.archive.by_index_raw(i) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(finding("PKG006", format!("entry {i} cannot be read: {e}")));
                    continue;
                }
            };
            let name = entry.name().to_string();
            if let Some(why) = unsafe_name(&name) {
                errors.push(finding(
                    "PKG001",
                    format!("entry '{}' {why}; the package is refused", shown(&name)),
                ));
                continue;
            }
            let problem = if entry.is_dir() {
                Some("is a folder")
            } else if entry.is_symlink() {
                Some("is a symbolic link")
            } else if name.contains('\u{FFFD}') {
                Some("has a name that is not valid UTF-8")
            } else if name.len() > MAX_FILE_NAME_BYTES {
                Some("has a name longer than 255 bytes, the most a file name may have")
            } else {
                file_name_problem(&name)
            };
            if let Some(why) = problem {
                errors.push(finding(
                    "PKG007",
                    format!(
                        "entry '{}' {why}; an export package holds only plain files at its root \
                         (the batch XML and its attachments), so the package is refused",
                        shown(&name)
                    ),
                ));
                continue;
            }
            let key = folded(&name);
            if let Some(other) = folded_names.get(&key) {
                let how = how_alike(other, &name);
                errors.push(finding(
                    "PKG008",
                    format!(
                        "entries '{}' and '{}' {how}: to some file systems, unpackers or readers they are one \
                         file, so which is meant is a guess; the package is refused",
                        shown(other),
                        shown(&name)
                    ),
                ));
                continue;
            }
            folded_names.insert(key, name.clone());
            if name.to_ascii_lowercase().ends_with(".xml") {
                xml_entries.push((i, name));
            } else {
                files.push((i, name));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let (batch_index, batch_name) = match xml_entries.len() {
            1 => xml_entries.remove(0),
            0 => {
                return Err(vec![finding(
                    "PKG002",
                    "the export package has no batch XML file at its root".into(),
                )])
            }
            many => {
                return Err(vec![finding(
                    "PKG002",
                    format!(
                        "the export package has {many} XML files at its root; it must hold \
                         exactly one batch"
                    ),
                )])
            }
        };

        // Attachments: measure by inflating through a counter, within limits.
        let mut attachments = HashMap::with_capacity(files.len());
        for (i, name) in files {
            let mut entry = match self.archive.by_index(i) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(finding(
                        "PKG006",
                        format!("entry '{}' cannot be read: {e}", shown(&name)),
                    ));
                    continue;
                }
            };
            let budget = limits
                .max_entry_bytes
                .min(limits.max_total_bytes.saturating_sub(self.total));
            let mut guard = Guard::new(&mut entry, self.consumed.clone(), limits, budget);
            let mut hashing = Hashing::new(&mut guard);
            match io::copy(&mut hashing, &mut io::sink()) {
                Ok(_) => {
                    let (size, sha256) = hashing.finish();
                    self.total += size;
                    let entry = Entry {
                        index: i,
                        name: name.clone(),
                        size,
                        sha256,
                    };
                    attachments.insert(name, entry);
                }
                Err(e) => errors.push(guard_finding(&name, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // The batch is measured as it is read.
        let batch = Entry {
            index: batch_index,
            name: batch_name,
            size: 0,
            sha256: [0; 32],
        };
        Ok(PackageIndex {
            entries: self.archive.len(),
            batch,
            attachments,
            folded: folded_names.into_iter().collect(),
        })
    }
}

fn too_many(n: usize, limits: &PackageLimits) -> Finding {
    finding(
        "PKG004",
        format!(
            "the export package has {n} entries, more than the limit of {}",
            limits.max_entries
        ),
    )
}

/// A name as shown in a message: control and invisible characters
/// escaped, at most 80 characters (a name is outside data, and messages reach logs and receipts).
fn shown(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 80 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else if is_default_ignorable(c) {
            out.extend(c.escape_unicode()); // invisible: say what is there
        } else {
            out.push(c);
        }
    }
    out
}

/// Validate an export package.
pub fn validate(v: &Validator, name: String, file: File) -> FileReport {
    let limits = &v.options.package;
    let mut package = match Opened::open(file, limits) {
        Ok(p) => p,
        Err(errors) => return v.finish(name, 0, errors),
    };
    let mut index = match package.decide_and_measure(limits) {
        Ok(i) => i,
        Err(errors) => return v.finish(name, 0, errors),
    };

    // The batch: streamed from the archive into the validator, measured on the way.
    let entry_name = index.batch.name.clone();
    let mut entry = match package.archive.by_index(index.batch.index) {
        Ok(e) => e,
        Err(e) => {
            let f = finding("PKG006", format!("the batch XML cannot be read: {e}"));
            return v.finish(name, 0, vec![f]);
        }
    };
    let budget = limits.max_total_bytes.saturating_sub(package.total);
    let mut guard = Guard::new(&mut entry, package.consumed.clone(), limits, budget);
    let mut hashing = Hashing::new(&mut guard);
    let mut report = v.validate_xml(
        format!("{name}!{}", shown(&entry_name)),
        &mut hashing,
        Some(&index),
    );
    // What the parser left unread (nothing, for a well-formed batch) still
    // belongs to the entry the index vouches for.
    let drained = if report.valid {
        io::copy(&mut hashing, &mut io::sink()).map(|_| ())
    } else {
        Ok(())
    };
    let (size, sha256) = hashing.finish();
    if let Some(e) = guard.tripped.take() {
        // The batch was cut off by the guard: what the parser said about the
        // cut is noise; the refusal is the one error.
        return v.finish(name, report.letters, vec![guard_finding(&entry_name, e)]);
    }
    if let Err(e) = drained {
        return v.finish(name, report.letters, vec![guard_finding(&entry_name, e)]);
    }
    report.file = name;
    if report.valid {
        (index.batch.size, index.batch.sha256) = (size, sha256);
        report.package = Some(index);
    }
    report
}

fn guard_finding(entry: &str, e: io::Error) -> Finding {
    if e.kind() == io::ErrorKind::FileTooLarge {
        let code = if e.to_string().contains("ratio") {
            "PKG005"
        } else {
            "PKG003"
        };
        finding(code, format!("entry '{}' refused: {e}", shown(entry)))
    } else {
        finding(
            "PKG006",
            format!("entry '{}' cannot be inflated: {e}", shown(entry)),
        )
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

    #[test]
    fn folding_equates_what_some_file_system_equates() {
        for (a, b) in [
            ("Vedtak.pdf", "vedtak.pdf"),
            ("VEDTAK.PDF", "vedtak.pdf"),
            ("b\u{e9}.pdf", "be\u{301}.pdf"), // é composed and decomposed
            ("\u{c5}r.pdf", "\u{212b}r.pdf"), // Å and ANGSTROM SIGN
            ("stra\u{df}e.pdf", "STRASSE.pdf"),
            ("vedtak.pdf.", "vedtak.pdf"),
            ("vedtak.pdf ", "vedtak.pdf"),
            ("ved\u{200b}tak.pdf", "vedtak.pdf"), // a zero-width space
            ("vedtak\u{ad}.pdf", "vedtak.pdf"),   // a soft hyphen
        ] {
            assert_eq!(folded(a), folded(b), "{a:?} {b:?}");
        }
        assert_ne!(folded("vedtak1.pdf"), folded("vedtak2.pdf"));
        assert_ne!(folded("a.pdf"), folded("\u{e4}.pdf"));
        assert_eq!(how_alike("vedtak.pdf", "Vedtak.PDF"), "differ only in case");
        assert!(how_alike("vedtak.pdf", "vedtak.pdf.").contains("trailing"));
        assert!(how_alike("b\u{e9}", "be\u{301}").contains("NFC"));
        assert!(how_alike("vedtak", "ved\u{200b}tak").starts_with("differ only in invisible"));
        assert!(how_alike("vedtak", "VED\u{200b}TAK").contains("invisible"));
    }

    #[test]
    fn shown_names_escape_control_characters() {
        assert_eq!(shown("a\nERROR b"), "a\\nERROR b");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 81);
    }
}
