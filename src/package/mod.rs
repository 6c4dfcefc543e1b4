//! Packaging: turn one validated input into the batch files ("parts") that
//! are uploaded to Altinn.
//!
//! What changes between input and parts, and why:
//! - **Encoding**: parts are always UTF-8, whatever the fagsystem wrote
//!   (UTF-16, ISO-8859-1, ...): one encoding on the wire, no surprises.
//! - **Attachments** of an export package (`.zip`) are inlined: an empty
//!   `<Data/>` gets the base64 of the zip entry its `FileName` names. Which
//!   entry that is, and which entry is the batch, is not decided here: the
//!   [`PackageIndex`] validation judged by decides it, and every byte read
//!   is checked against what validation measured. Which elements are a
//!   FileName or a Data slot is decided by the rules' [`Structure`], so the
//!   packager fills exactly the slots validation checked (never, say, a
//!   `Data` element inside a MessageBody's free markup).
//! - **Size**: a part holds at most `max_part_letters` letters and stays
//!   under `max_part_bytes` (a single letter larger than that forms a part of
//!   its own). Part 1 keeps the input's ShipmentReference; part N (N >= 2)
//!   gets `REF-N`, so Altinn's receipts can be told apart.
//! - **SequenceNo**: when dpv-batch assigns them, part N gets `first + N - 1`.
//!   The numbers are only *proposed* here; the journal commits them together
//!   with the parts that carry them (see `journal::record_parts`).
//!
//! It is one streaming pass: the input goes through the same libxml2 SAX
//! parser as validation, and this module writes the events back out. A
//! letter that overflows a part is moved to the next one by copying its
//! bytes from the end of the part file, so memory never holds more than a
//! buffer, however large the batch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use crate::b64;
use crate::validate::package::{is_zip, PackageIndex, PackageLimits};
use crate::validate::rules::{is_base64_space, Field, Structure};
use crate::xml::{self, Events, Pos, Tag, BATCH_NS};
use crate::xml_text::{self, In};

/// How to cut and number parts.
#[derive(Debug, Clone)]
pub struct PackOptions {
    pub max_part_bytes: u64,
    pub max_part_letters: u64,
    /// dpv-batch assigns SequenceNos: each part gets a fixed-size slot for
    /// it in its header, filled just before upload (see [`write_sequence_no`]).
    pub numbered: bool,
    /// Prefix of the parts' remote names; part N is `PREFIX-NNNNN.xml` (names
    /// sort in upload order, which Altinn's side may rely on).
    pub name_prefix: String,
}

/// One written part.
#[derive(Debug, Clone)]
pub struct Part {
    pub part_no: i64,
    pub path: PathBuf,
    pub remote_name: String,
    pub shipment_reference: String,
    /// The input's own SequenceNo, kept when dpv-batch does not number.
    pub sequence_no: Option<i64>,
    /// Where the SequenceNo slot is, when dpv-batch numbers.
    pub sequence_slot: Option<u64>,
    pub bytes: u64,
    /// (SendersReference, Reportee) of each letter.
    pub letters: Vec<(String, String)>,
}

/// The result of packaging one input.
#[derive(Debug, Clone)]
pub struct Packed {
    pub system_user_code: String,
    pub parts: Vec<Part>,
}

#[derive(Debug)]
pub enum PackError {
    Io(io::Error),
    /// The input cannot be packaged as it is; the message says why.
    Input(String),
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackError::Io(e) => write!(f, "packaging failed: {e}"),
            PackError::Input(m) => write!(f, "{m}"),
        }
    }
}

impl From<io::Error> for PackError {
    fn from(e: io::Error) -> Self {
        PackError::Io(e)
    }
}

/// Package `input` (batch XML or export package) into parts under `out_dir`.
/// Part files are fsynced before this returns; stale parts of an earlier,
/// interrupted attempt are overwritten.
///
/// `validated` is the [`PackageIndex`] of an export package that was
/// validated (`FileReport::package`): its entries are the ones read. Without
/// one, an export package is read and measured here by the same index
/// (default limits) before anything is written.
pub fn package(
    input: &Path,
    out_dir: &Path,
    opts: &PackOptions,
    validated: Option<&PackageIndex>,
) -> Result<Packed, PackError> {
    fs::create_dir_all(out_dir)?;
    let mut file = File::open(input)?;
    if !is_zip(&mut file)? {
        let mut reader = io::BufReader::with_capacity(256 * 1024, file);
        let mut writer = PartWriter::new(out_dir, opts);
        let problems = xml::parse(None, &mut reader, &mut writer);
        return writer.conclude(problems);
    }
    let measured;
    let index = match validated {
        Some(index) => index,
        None => {
            measured = PackageIndex::open(input, &PackageLimits::default()).map_err(|e| {
                let why = e
                    .first()
                    .map(|f| f.message.as_str())
                    .unwrap_or("unreadable");
                PackError::Input(format!("the export package is refused: {why}"))
            })?;
            &measured
        }
    };
    // Two readers of one file: the batch streams from one while attachments
    // are read from the other, both only through the index.
    let mut xml_archive = ZipArchive::new(file).map_err(zip_err)?;
    let attachments = ZipArchive::new(File::open(input)?).map_err(zip_err)?;
    let mut writer = PartWriter::new(out_dir, opts);
    writer.package = Some((index, attachments));
    let mut batch = index
        .read_entry(&mut xml_archive, index.batch())
        .map_err(verify_err)?;
    let problems = xml::parse(None, &mut batch, &mut writer);
    // The whole entry must be the one validated, to its last byte.
    if let Err(e) = batch.finish() {
        return Err(verify_err(e));
    }
    writer.conclude(problems)
}

/// A read of an export package entry that is not what was validated is a
/// refusal, not an I/O error to retry.
fn verify_err(e: io::Error) -> PackError {
    match e.kind() {
        io::ErrorKind::InvalidData => PackError::Input(e.to_string()),
        _ => PackError::Io(e),
    }
}

const FOOTER: &[u8] = b"</Correspondences>\n";

/// Bytes reserved in a part's header for its SequenceNo.
const SLOT: usize = 64;

/// The SequenceNo slot: `<SequenceNo>N</SequenceNo>` and a comment that pads
/// it to exactly [`SLOT`] bytes, so the number can be written in place
/// later without moving anything else in the file. `None` is a placeholder
/// (a comment only: such a part is never uploaded).
fn sequence_slot_bytes(n: Option<i64>) -> [u8; SLOT] {
    let element = match n {
        Some(n) => format!("  <SequenceNo>{n}</SequenceNo>"),
        None => String::from("  "),
    };
    let pad = SLOT - element.len() - "<!---->\n".len();
    let text = format!("{element}<!--{}-->\n", " ".repeat(pad));
    let mut out = [b' '; SLOT];
    out.copy_from_slice(&text.as_bytes()[..SLOT]);
    out
}

/// Fill a part's SequenceNo slot with `n` (in place, fsynced).
pub fn write_sequence_no(path: &Path, slot: u64, n: i64) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(slot))?;
    f.write_all(&sequence_slot_bytes(Some(n)))?;
    f.sync_all()
}

/// What validation learnt about a batch, which lets packaging skip the
/// rewrite (see [`passthrough`]).
pub struct Known<'a> {
    pub system_user_code: &'a str,
    pub shipment_reference: &'a str,
    pub sequence_no: Option<&'a str>,
    pub letters: &'a [(String, String)],
}

/// A validated input that is already what Altinn should get (UTF-8, not an
/// export package, within the part limits, no SequenceNo to assign) needs
/// no rewrite: its part is the input itself, hard-linked, so a large batch
/// costs no second pass and no copy. `None` when the input needs packaging.
pub fn passthrough(
    input: &Path,
    out_dir: &Path,
    opts: &PackOptions,
    known: &Known<'_>,
) -> Result<Option<Packed>, PackError> {
    if known.letters.len() as u64 > opts.max_part_letters || !passthrough_candidate(input, opts)? {
        return Ok(None);
    }
    let size = fs::metadata(input)?.len();
    fs::create_dir_all(out_dir)?;
    let remote_name = part_name(opts, 1);
    let path = out_dir.join(&remote_name);
    let _ = fs::remove_file(&path);
    fs::hard_link(input, &path)?;
    crate::durable::sync_dir(out_dir)?;
    Ok(Some(Packed {
        system_user_code: known.system_user_code.to_string(),
        parts: vec![Part {
            part_no: 1,
            path,
            remote_name,
            shipment_reference: known.shipment_reference.to_string(),
            sequence_no: known.sequence_no.and_then(|s| s.trim().parse().ok()),
            sequence_slot: None,
            bytes: size,
            letters: known.letters.to_vec(),
        }],
    }))
}

/// Could `input` pass through as it is (before knowing its letters)?
pub fn passthrough_candidate(input: &Path, opts: &PackOptions) -> io::Result<bool> {
    let mut file = File::open(input)?;
    let size = file.metadata()?.len();
    Ok(!opts.numbered
        && size <= opts.max_part_bytes
        && !is_zip(&mut file)?
        && is_utf8_document(&mut file)?)
}

/// The remote name of part `no`.
pub fn part_name(opts: &PackOptions, no: i64) -> String {
    format!("{}-{no:05}.xml", opts.name_prefix)
}

/// UTF-8 by its BOM, or by an XML declaration that names UTF-8 or no
/// encoding at all (XML's default). Rewinds the file.
fn is_utf8_document(file: &mut File) -> io::Result<bool> {
    let mut head = [0u8; 256];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    let mut head = &head[..n];
    if head.starts_with(b"\xEF\xBB\xBF") {
        head = &head[3..];
    } else if head.starts_with(b"\xFF\xFE")
        || head.starts_with(b"\xFE\xFF")
        || head.first() == Some(&0)
        || head.get(1) == Some(&0)
    {
        return Ok(false);
    }
    if !head.starts_with(b"<?xml") {
        return Ok(true);
    }
    let decl_end = head
        .windows(2)
        .position(|w| w == b"?>")
        .unwrap_or(head.len());
    let decl = String::from_utf8_lossy(&head[..decl_end]).to_ascii_lowercase();
    Ok(match decl.find("encoding") {
        None => true,
        Some(i) => {
            let rest = decl[i + "encoding".len()..]
                .trim_start()
                .trim_start_matches('=')
                .trim_start();
            let value = rest.trim_start_matches(['"', '\'']);
            value.starts_with("utf-8") || value.starts_with("utf8")
        }
    })
}

fn zip_err(e: zip::result::ZipError) -> PackError {
    PackError::Input(format!("the export package cannot be read: {e}"))
}

/// Where in the document the writer is.
#[derive(PartialEq)]
enum Where {
    /// Outside the root element.
    Prolog,
    /// Directly inside `Correspondences`: header fields.
    Header,
    /// Inside a `Correspondence` (which is at depth 2).
    Letter,
}

struct PartWriter<'a> {
    out_dir: &'a Path,
    opts: &'a PackOptions,
    /// An export package: its index, and a reader for its attachments.
    package: Option<(&'a PackageIndex, ZipArchive<File>)>,
    error: Option<PackError>,
    place: Where,
    depth: usize,
    /// Which element is which field: the rules' own definition.
    structure: Structure,
    /// Per open output element: the default namespace in scope, and the
    /// prefix it was written with.
    defaults: Vec<Vec<u8>>,
    prefixes: Vec<Option<Vec<u8>>>,
    /// The field being read (header or letter), at which depth, its bytes.
    capture: Option<(Field, usize)>,
    capture_text: Vec<u8>,
    system_user_code: String,
    shipment_reference: String,
    input_sequence: Option<String>,
    senders_reference: String,
    reportee: String,
    file_name: String,
    /// Inside an attachment's `Data` (at this depth), and whether it has
    /// any content (anything but the whitespace base64 allows).
    data: Option<usize>,
    data_has_text: bool,
    /// The part being written.
    current: Option<Open>,
    done: Vec<Part>,
}

struct Open {
    part: Part,
    out: BufWriter<File>,
    /// Byte offset where the current letter starts.
    letter_start: u64,
}

impl<'a> PartWriter<'a> {
    fn new(out_dir: &'a Path, opts: &'a PackOptions) -> Self {
        PartWriter {
            out_dir,
            opts,
            package: None,
            error: None,
            place: Where::Prolog,
            depth: 0,
            structure: Structure::default(),
            defaults: Vec::new(),
            prefixes: Vec::new(),
            capture: None,
            capture_text: Vec::new(),
            system_user_code: String::new(),
            shipment_reference: String::new(),
            input_sequence: None,
            senders_reference: String::new(),
            reportee: String::new(),
            file_name: String::new(),
            data: None,
            data_has_text: false,
            current: None,
            done: Vec::new(),
        }
    }

    fn fail(&mut self, e: PackError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Run `f` unless an error already happened; keep its error.
    fn attempt(&mut self, f: impl FnOnce(&mut Self) -> Result<(), PackError>) {
        if self.error.is_none() {
            if let Err(e) = f(self) {
                self.fail(e);
            }
        }
    }

    fn out(&mut self) -> io::Result<&mut Open> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("internal: no part open"))
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let open = self.out()?;
        open.out.write_all(bytes)?;
        open.part.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Start part number `no` with the header.
    fn open_part(&mut self, no: i64) -> Result<(), PackError> {
        if no > 1 && !self.opts.numbered && self.input_sequence.is_some() {
            return Err(PackError::Input(
                "the batch is too large for one part but carries its own SequenceNo; split it in \
                 the fagsystem, or set sender.sequence_numbers = true so dpv-batch numbers the parts"
                    .into(),
            ));
        }
        let remote_name = part_name(self.opts, no);
        let path = self.out_dir.join(&remote_name);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .read(true)
            .open(&path)?;
        let shipment_reference = if no == 1 {
            self.shipment_reference.clone()
        } else {
            format!("{}-{no}", self.shipment_reference)
        };
        let mut header = String::new();
        header.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        header.push_str("<Correspondences xmlns=\"");
        header.push_str(std::str::from_utf8(BATCH_NS).unwrap_or_default());
        header.push_str("\">\n");
        push_element(&mut header, "SystemUserCode", &self.system_user_code);
        push_element(&mut header, "ShipmentReference", &shipment_reference);
        let mut sequence_no = None;
        let mut sequence_slot = None;
        if self.opts.numbered {
            sequence_slot = Some(header.len() as u64);
            header.push_str(&String::from_utf8_lossy(&sequence_slot_bytes(None)));
        } else if let Some(s) = &self.input_sequence {
            sequence_no = s.trim().parse().ok();
            push_element(&mut header, "SequenceNo", s);
        }
        self.current = Some(Open {
            part: Part {
                part_no: no,
                path,
                remote_name,
                shipment_reference,
                sequence_no,
                sequence_slot,
                bytes: 0,
                letters: Vec::new(),
            },
            out: BufWriter::with_capacity(1 << 20, file),
            letter_start: 0,
        });
        self.write(header.as_bytes())?;
        Ok(())
    }

    /// Close the current part: footer, flush, fsync.
    fn close_part(&mut self) -> Result<(), PackError> {
        if let Some(mut open) = self.current.take() {
            open.out.write_all(FOOTER)?;
            open.part.bytes += FOOTER.len() as u64;
            let file = open.out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            self.done.push(open.part);
        }
        Ok(())
    }

    /// The last letter made the part too large: move it to a new part.
    fn move_last_letter(&mut self) -> Result<(), PackError> {
        let Some(mut open) = self.current.take() else {
            return Ok(());
        };
        open.out.flush()?;
        let start = open.letter_start;
        let letter = open.part.letters.pop();
        let mut file = open.out.into_inner().map_err(|e| e.into_error())?;
        let end = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(start))?;
        let mut tail = file.try_clone()?.take(end - start);
        // Reopen the old part for its footer after the copy.
        let no = open.part.part_no;
        open.part.bytes = start;
        let old = open.part;
        self.open_part(no + 1)?;
        let new_start = self.out()?.part.bytes;
        let copied = {
            let o = self.out()?;
            o.letter_start = new_start;
            io::copy(&mut tail, &mut o.out)?
        };
        {
            let o = self.out()?;
            o.part.bytes += copied;
            if let Some(l) = letter {
                o.part.letters.push(l);
            }
        }
        file.set_len(start)?;
        file.seek(SeekFrom::Start(start))?;
        file.write_all(FOOTER)?;
        file.sync_all()?;
        let mut old = old;
        old.bytes += FOOTER.len() as u64;
        self.done.push(old);
        Ok(())
    }

    /// After the parse: the first error, else the finished parts.
    fn conclude(mut self, problems: Vec<xml::XmlProblem>) -> Result<Packed, PackError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(p) = problems.first() {
            return Err(PackError::Input(format!(
                "the input cannot be read again: {}",
                p.message
            )));
        }
        self.finish()
    }

    fn finish(mut self) -> Result<Packed, PackError> {
        if self.current.is_none() {
            // A batch without letters still is one (empty) part.
            self.open_part(1)?;
        }
        self.close_part()?;
        crate::durable::sync_dir(self.out_dir)?;
        Ok(Packed {
            system_user_code: self.system_user_code,
            parts: self.done,
        })
    }

    fn start_letter(&mut self) -> Result<(), PackError> {
        let next_no = match &self.current {
            None => Some(1),
            Some(o) if o.part.letters.len() as u64 >= self.opts.max_part_letters => {
                Some(o.part.part_no + 1)
            }
            Some(_) => None,
        };
        if let Some(no) = next_no {
            self.close_part()?;
            self.open_part(no)?;
        }
        let o = self.out()?;
        o.letter_start = o.part.bytes;
        self.write(b"  ")?;
        self.senders_reference.clear();
        self.reportee.clear();
        Ok(())
    }

    fn end_letter(&mut self) -> Result<(), PackError> {
        self.write(b"\n")?;
        let letter = (
            std::mem::take(&mut self.senders_reference),
            std::mem::take(&mut self.reportee),
        );
        let max_bytes = self.opts.max_part_bytes;
        let o = self.out()?;
        o.part.letters.push(letter);
        if o.part.bytes + FOOTER.len() as u64 > max_bytes && o.part.letters.len() > 1 {
            self.move_last_letter()?;
        }
        Ok(())
    }

    fn start_tag_out(&mut self, tag: &Tag<'_>) -> Result<(), PackError> {
        let uri = tag.uri.unwrap_or(b"");
        let default = self
            .defaults
            .last()
            .cloned()
            .unwrap_or_else(|| BATCH_NS.to_vec());
        let mut s: Vec<u8> = Vec::with_capacity(64);
        s.push(b'<');
        let mut new_default = default.clone();
        let mut written_prefix = None;
        match tag.prefix {
            Some(p) if uri != BATCH_NS => {
                written_prefix = Some(p.to_vec());
                s.extend_from_slice(p);
                s.push(b':');
                s.extend_from_slice(tag.local);
                s.extend_from_slice(b" xmlns:");
                s.extend_from_slice(p);
                s.extend_from_slice(b"=\"");
                s.extend_from_slice(&xml_text::escape(uri, In::Attribute));
                s.push(b'"');
            }
            _ => {
                s.extend_from_slice(tag.local);
                if uri != default.as_slice() {
                    s.extend_from_slice(b" xmlns=\"");
                    s.extend_from_slice(&xml_text::escape(uri, In::Attribute));
                    s.push(b'"');
                    new_default = uri.to_vec();
                }
            }
        }
        let mut declared: Vec<&[u8]> = written_prefix.iter().map(|p| p.as_slice()).collect();
        for a in &tag.attributes {
            s.push(b' ');
            if let Some(p) = a.prefix {
                if p != b"xml" && !declared.contains(&p) {
                    declared.push(p);
                    s.extend_from_slice(b"xmlns:");
                    s.extend_from_slice(p);
                    s.extend_from_slice(b"=\"");
                    s.extend_from_slice(&xml_text::escape(a.uri.unwrap_or(b""), In::Attribute));
                    s.extend_from_slice(b"\" ");
                }
                s.extend_from_slice(p);
                s.push(b':');
            }
            s.extend_from_slice(a.local);
            s.extend_from_slice(b"=\"");
            s.extend_from_slice(&xml_text::escape(&a.value, In::Attribute));
            s.push(b'"');
        }
        s.push(b'>');
        self.defaults.push(new_default);
        self.prefixes.push(written_prefix);
        self.write(&s)?;
        Ok(())
    }

    fn end_tag_out(&mut self, tag_name: &[u8]) -> Result<(), PackError> {
        self.defaults.pop();
        let mut s = Vec::with_capacity(tag_name.len() + 4);
        s.extend_from_slice(b"</");
        if let Some(p) = self.prefixes.pop().flatten() {
            s.extend_from_slice(&p);
            s.push(b':');
        }
        s.extend_from_slice(tag_name);
        s.push(b'>');
        self.write(&s)?;
        Ok(())
    }

    /// At the end of an empty `Data` in an export package: inline the file
    /// the index says the FileName is (the entry validation measured).
    fn inline_attachment(&mut self) -> Result<(), PackError> {
        let name = &self.file_name;
        let Some((index, archive)) = self.package.as_mut() else {
            return Ok(());
        };
        let entry = index.attachment(name).ok_or_else(|| {
            PackError::Input(format!("the export package has no file named '{name}'"))
        })?;
        let mut entry = index.read_entry(archive, entry).map_err(verify_err)?;
        let open = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no part open"))?;
        let mut counted = Counting {
            inner: &mut open.out,
            n: 0,
        };
        let mut enc = b64::Encoder::new(&mut counted);
        if let Err(e) = io::copy(&mut entry, &mut enc) {
            return Err(match entry.refusal() {
                Some(why) => PackError::Input(why.to_string()),
                None => PackError::Io(e),
            });
        }
        enc.finish()?;
        let n = counted.n;
        open.part.bytes += n;
        Ok(())
    }
}

struct Counting<'w, W: Write> {
    inner: &'w mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn push_element(s: &mut String, name: &str, value: &str) {
    s.push_str("  <");
    s.push_str(name);
    s.push('>');
    xml_text::escape_into(s, value, In::Text);
    s.push_str("</");
    s.push_str(name);
    s.push_str(">\n");
}

impl Events for PartWriter<'_> {
    fn start(&mut self, _local: &[u8], _in_batch_ns: bool, _pos: Pos) {}

    fn start_tag(&mut self, tag: &Tag<'_>, _pos: Pos) {
        self.depth += 1;
        let field = self
            .structure
            .start(tag.local, tag.uri == Some(BATCH_NS))
            .and_then(|(_, field)| field);
        match (self.depth, &self.place) {
            (1, _) => self.place = Where::Header,
            (2, _) if tag.uri == Some(BATCH_NS) && tag.local == b"Correspondence" => {
                self.place = Where::Letter;
                self.attempt(|w| {
                    w.start_letter()?;
                    w.start_tag_out(tag)
                });
            }
            (2, _) => {
                if let Some(
                    f @ (Field::SystemUserCode | Field::ShipmentReference | Field::SequenceNo),
                ) = field
                {
                    self.capture = Some((f, self.depth));
                    self.capture_text.clear();
                }
            }
            (_, Where::Letter) => {
                match field {
                    Some(f @ (Field::SendersReference | Field::Reportee | Field::FileName)) => {
                        self.capture = Some((f, self.depth));
                        self.capture_text.clear();
                    }
                    Some(Field::Data) => {
                        self.data = Some(self.depth);
                        self.data_has_text = false;
                    }
                    _ => {}
                }
                self.attempt(|w| w.start_tag_out(tag));
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &[u8]) {
        if self.capture.is_some() {
            self.capture_text.extend_from_slice(text);
        }
        match self.place {
            Where::Letter => {
                if self.data.is_some() && !text.iter().all(|&b| is_base64_space(b)) {
                    self.data_has_text = true;
                }
                // Most text (all of an attachment's base64) needs no escaping:
                // it is written as it is, uncopied.
                let text = xml_text::escape(text, In::Text);
                self.attempt(|w| Ok(w.write(&text)?));
            }
            Where::Header | Where::Prolog => {}
        }
    }

    fn end(&mut self, local: &[u8], _pos: Pos) {
        self.structure.end();
        if let Some((field, depth)) = self.capture {
            if depth == self.depth {
                self.capture = None;
                // Decoded once, whole, as the rules decode it.
                let value = String::from_utf8_lossy(&self.capture_text).into_owned();
                match field {
                    Field::SystemUserCode => self.system_user_code = value,
                    Field::ShipmentReference => self.shipment_reference = value,
                    Field::SequenceNo => self.input_sequence = Some(value),
                    Field::SendersReference => self.senders_reference = value,
                    Field::Reportee => self.reportee = value,
                    _ => self.file_name = value,
                }
            }
        }
        if self.place == Where::Letter {
            if self.data == Some(self.depth) {
                self.data = None;
                if !self.data_has_text && self.package.is_some() {
                    self.attempt(|w| w.inline_attachment());
                }
            }
            self.attempt(|w| w.end_tag_out(local));
            if self.depth == 2 {
                self.place = Where::Header;
                self.attempt(|w| w.end_letter());
            }
        }
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.place = Where::Prolog;
        }
    }
}
