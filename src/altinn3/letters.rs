//! Splitting a packaged batch part into letters: the packaging step of a
//! letter-shaped transport.
//!
//! Why: Altinn II took a whole batch file; Altinn 3 takes one REST call per
//! letter. So a part (UTF-8, attachments inline as base64, as `package`
//! writes it) becomes one folder per `Correspondence`:
//!
//! ```text
//! out_dir/L00001/letter.json   the Altinn 3 request (InitializeCorrespondencesExt,
//!                              idempotentKey included, no attachment bytes)
//! out_dir/L00001/a001.bin ...  each attachment's decoded bytes
//! ```
//!
//! The part is read once, with the same streaming libxml2 SAX parser as
//! validation and packaging (no tree is built), and each attachment's base64
//! is decoded in chunks straight into its file, so memory stays flat
//! whatever the attachment sizes. Each letter is mapped (`mapping.rs`) and
//! checked (`rules.rs`) as soon as its end tag is read; a letter Altinn 3
//! would refuse keeps its `letter.json` (for the operator) but not its
//! attachment bytes, and its findings are in [`LetterMeta::refused`].
//!
//! Idempotency: every letter's `idempotentKey` is a UUIDv5 of stable data
//! ([`idempotent_key`]), so a re-split after a crash yields the same keys,
//! and Altinn (which keeps keys for ever) never creates a letter twice.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use uuid::Uuid;

use super::mapping::{self, A2Attachment, A2Endpoint, A2Letter, A2Notification, MapOptions, Text};
use super::rules;
use crate::validate::Finding;
use crate::xml::{self, Events, Pos, Tag, BATCH_NS};

/// What splitting needs to know.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Resources table, default body, message sender, e-mail subject.
    pub map: MapOptions,
    /// This installation's namespace for idempotent keys (kept by the journal).
    pub namespace: Uuid,
    /// Raised only by a deliberate re-send: a new generation makes new keys.
    pub generation: u32,
    /// "Now" for the due-date rules.
    pub now: SystemTime,
    /// false: only map and check (`validate --target altinn3`); no folder,
    /// no file is written and `out_dir` is not touched.
    pub write_files: bool,
}

impl SplitOptions {
    pub fn new(cfg: &crate::config::Altinn3Config, namespace: Uuid, generation: u32) -> Self {
        SplitOptions {
            map: MapOptions::from_config(cfg),
            namespace,
            generation,
            now: SystemTime::now(),
            write_files: true,
        }
    }
}

impl SplitOptions {
    /// For `validate --target altinn3`: the `[transport.altinn3]` of a
    /// config file, or without one the two resources known to exist
    /// (4255/10 and 5504/1, issue 8) and the default body. Nothing is written.
    pub fn for_validate(config: Option<&Path>) -> Result<SplitOptions, String> {
        let cfg = match config {
            Some(path) => {
                let c = crate::config::Config::load(path).map_err(|e| e.to_string())?;
                c.transport.altinn3.ok_or_else(|| {
                    format!("{} has no [transport.altinn3] section", path.display())
                })?
            }
            None => {
                use crate::config::ResourceEntry;
                let mut c = crate::config::Altinn3Config::new("", PathBuf::new());
                c.resources.insert(
                    "4255/10".into(),
                    ResourceEntry::Id("eformidling-dpv-administrasjon".into()),
                );
                c.resources.insert(
                    "5504/1".into(),
                    ResourceEntry::Table {
                        resource: "eformidling-dpv-taushetsbelagt".into(),
                        confidential: true,
                    },
                );
                c
            }
        };
        let mut o = SplitOptions::new(&cfg, Uuid::nil(), 0);
        o.write_files = false;
        Ok(o)
    }
}

/// One attachment file of a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    /// The name Altinn gets (`fileName`; the multipart part's filename).
    pub file_name: String,
    /// Where the decoded bytes are (`aNNN.bin`).
    pub path: PathBuf,
    pub bytes: u64,
}

/// One letter, split out of a part.
#[derive(Debug, Clone)]
pub struct LetterMeta {
    /// 1-based position in the part.
    pub index: u32,
    pub senders_reference: String,
    pub reportee: String,
    pub resource_id: String,
    /// UUIDv5(installation namespace, system user code, SendersReference,
    /// recipient, generation).
    pub idempotent_key: Uuid,
    /// The letter's folder (`letter.json` and the attachments).
    pub dir: PathBuf,
    pub attachments: Vec<AttachmentMeta>,
    /// A3 findings: a letter with any is never sent; its receipt says why.
    pub refused: Vec<Finding>,
}

impl LetterMeta {
    /// The request file: `dir/letter.json`.
    pub fn request_path(&self) -> PathBuf {
        self.dir.join("letter.json")
    }
    /// Every attachment's bytes together.
    pub fn attachment_bytes(&self) -> u64 {
        self.attachments.iter().map(|a| a.bytes).sum()
    }
}

#[derive(Debug)]
pub enum SplitError {
    Io(io::Error),
    /// The part cannot be read as a batch; the message says why.
    Input(String),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Io(e) => write!(f, "splitting into letters failed: {e}"),
            SplitError::Input(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for SplitError {}

impl From<io::Error> for SplitError {
    fn from(e: io::Error) -> Self {
        SplitError::Io(e)
    }
}

/// The idempotent key of a letter: a UUIDv5 in the installation's
/// namespace over the data that identifies a letter for good. Each field is
/// length-prefixed, so no two different tuples share an input.
pub fn idempotent_key(
    namespace: Uuid,
    system_user_code: &str,
    senders_reference: &str,
    recipient: &str,
    generation: u32,
) -> Uuid {
    let mut name = Vec::with_capacity(64 + senders_reference.len());
    name.extend_from_slice(b"dpv-batch/altinn3/letter/v1");
    for field in [system_user_code, senders_reference, recipient] {
        name.extend_from_slice(format!("\n{}:", field.len()).as_bytes());
        name.extend_from_slice(field.as_bytes());
    }
    name.extend_from_slice(format!("\n{generation}").as_bytes());
    Uuid::new_v5(&namespace, &name)
}

/// Split the part at `part` into letter folders under `out_dir` (emptied
/// first: a re-split after a crash starts clean). When this returns `Ok`,
/// every file written is on disk (fsynced).
pub fn split(
    part: &Path,
    out_dir: &Path,
    opts: &SplitOptions,
) -> Result<Vec<LetterMeta>, SplitError> {
    if opts.write_files {
        match fs::remove_dir_all(out_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs::create_dir_all(out_dir)?;
    }
    let file = File::open(part)?;
    let mut input = io::BufReader::with_capacity(256 * 1024, file);
    let letters = read_letters(&mut input, out_dir, opts)?;
    if opts.write_files {
        sync_tree(out_dir)?;
    }
    Ok(letters)
}

/// Map and check the letters of a batch from any reader, writing nothing
/// (`validate --target altinn3`). Attachments are decoded and counted.
pub fn check(input: &mut dyn Read, opts: &SplitOptions) -> Result<Vec<LetterMeta>, SplitError> {
    let mut o = opts.clone();
    o.write_files = false;
    read_letters(input, Path::new(""), &o)
}

/// [`check`] on a file: a batch XML, or the batch inside an export package
/// (`.zip`; its attachments are not opened, the A3 rules need their names only).
pub fn check_path(path: &Path, opts: &SplitOptions) -> Result<Vec<LetterMeta>, SplitError> {
    let mut file = File::open(path)?;
    if crate::validate::package::is_zip(&mut file)? {
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| SplitError::Input(format!("the export package cannot be read: {e}")))?;
        let index = (0..archive.len())
            .find(|&i| {
                archive
                    .name_for_index(i)
                    .is_some_and(|n| !n.contains('/') && n.to_ascii_lowercase().ends_with(".xml"))
            })
            .ok_or_else(|| SplitError::Input("the export package has no batch XML".into()))?;
        let mut entry = archive
            .by_index(index)
            .map_err(|e| SplitError::Input(format!("the export package cannot be read: {e}")))?;
        check(&mut entry, opts)
    } else {
        check(&mut io::BufReader::with_capacity(256 * 1024, file), opts)
    }
}

fn read_letters(
    input: &mut dyn Read,
    out_dir: &Path,
    opts: &SplitOptions,
) -> Result<Vec<LetterMeta>, SplitError> {
    let mut splitter = Splitter::new(out_dir, opts);
    let problems = xml::parse(None, input, &mut splitter);
    if let Some(e) = splitter.error.take() {
        return Err(e);
    }
    if let Some(p) = problems.first() {
        return Err(SplitError::Input(format!(
            "the part cannot be read as a batch (line {}): {}",
            p.pos.line, p.message
        )));
    }
    Ok(splitter.letters)
}

/// Make everything under `dir` durable with one `syncfs` (one flush of the
/// filesystem instead of one fsync per file: a part of 10,000 letters
/// would otherwise cost 10,000 journal commits).
fn sync_tree(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    // SAFETY: syncfs only reads the descriptor, which `d` keeps open.
    let rc = unsafe { libc::syncfs(d.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Which value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SystemUserCode,
    ServiceCode,
    ServiceEdition,
    SendersReference,
    Reportee,
    Visible,
    Due,
    AllowForwarding,
    IsReservable,
    OnBehalfOf,
    Language,
    Title,
    Summary,
    Body,
    FileName,
    AttachmentName,
    Encrypted,
    AttachmentReference,
    Data,
    Template,
    TokenValue,
    Transport,
    Address,
    LinkText,
    LinkUrl,
}

fn field_of(parent: &[u8], local: &[u8]) -> Option<Field> {
    use Field::*;
    Some(match (parent, local) {
        (b"Correspondences", b"SystemUserCode") => SystemUserCode,
        (b"Correspondence", b"ServiceCode") => ServiceCode,
        (b"Correspondence", b"ServiceEdition") => ServiceEdition,
        (b"Correspondence", b"SendersReference") => SendersReference,
        (b"Correspondence", b"Reportee") => Reportee,
        (b"Correspondence", b"VisibleDateTime") => Visible,
        (b"Correspondence", b"DueDateTime") => Due,
        (b"Correspondence", b"AllowForwarding") => AllowForwarding,
        (b"Correspondence", b"IsReservable") => IsReservable,
        (b"Correspondence", b"OnBehalfOfOrgNr") => OnBehalfOf,
        (b"Content", b"LanguageCode") => Language,
        (b"Content", b"MessageTitle") => Title,
        (b"Content", b"MessageSummary") => Summary,
        (b"Content", b"MessageBody") => Body,
        (b"BinaryAttachment", b"FileName") => FileName,
        (b"BinaryAttachment", b"Name") => AttachmentName,
        (b"BinaryAttachment", b"Encrypted") => Encrypted,
        (b"BinaryAttachment", b"SendersReference") => AttachmentReference,
        (b"BinaryAttachment", b"Data") => Data,
        (b"Notification", b"NotificationType") => Template,
        (b"TextToken", b"TokenValue") => TokenValue,
        (b"ReceiverEndPoint", b"TransportType") => Transport,
        (b"ReceiverEndPoint", b"ReceiverAdress") => Address,
        (b"Url", b"LinkText") => LinkText,
        (b"Url", b"LinkUrl") => LinkUrl,
        _ => return None,
    })
}

/// A value being collected: at most `KEEP_BYTES` kept, all of it counted.
#[derive(Default)]
struct Collect {
    bytes: Vec<u8>,
    chars: usize,
    utf16: usize,
    truncated: bool,
}

impl Collect {
    fn push(&mut self, text: &[u8]) {
        // Count UTF-8 lead bytes; a 4-byte sequence is two UTF-16 units.
        for &b in text {
            if b & 0xC0 != 0x80 {
                self.chars += 1;
                self.utf16 += if b >= 0xF0 { 2 } else { 1 };
            }
        }
        let room = mapping::KEEP_BYTES.saturating_sub(self.bytes.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&text[..room.min(text.len())]);
    }

    fn take(&mut self, pos: Pos) -> Text {
        let c = std::mem::take(self);
        Text {
            value: String::from_utf8_lossy(&c.bytes).into_owned(),
            pos,
            chars: c.chars,
            utf16: c.utf16,
            truncated: c.truncated,
        }
    }
}

/// Streaming base64 → file (or nowhere, when only checking).
struct Decoder {
    out: Option<BufWriter<File>>,
    path: Option<PathBuf>,
    /// Base64 symbols not decoded yet (whitespace removed).
    pending: Vec<u8>,
    decoded: Vec<u8>,
    bytes: u64,
    error: Option<String>,
}

/// Decode in chunks of this many symbols (a multiple of 4).
const CHUNK: usize = 64 * 1024;

impl Decoder {
    fn feed(&mut self, text: &[u8]) -> io::Result<()> {
        if self.error.is_some() {
            return Ok(());
        }
        self.pending
            .extend(text.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        if self.pending.len() >= CHUNK {
            let n = self.pending.len() / 4 * 4;
            self.decode(n)?;
        }
        Ok(())
    }

    /// Decode the first `n` pending symbols.
    fn decode(&mut self, n: usize) -> io::Result<()> {
        self.decoded.resize(n / 4 * 3 + 3, 0);
        match base64::engine::general_purpose::STANDARD
            .decode_slice(&self.pending[..n], &mut self.decoded)
        {
            Ok(len) => {
                if let Some(out) = self.out.as_mut() {
                    out.write_all(&self.decoded[..len])?;
                }
                self.bytes += len as u64;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
        self.pending.drain(..n);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.error.is_none() && !self.pending.is_empty() {
            if !self.pending.len().is_multiple_of(4) {
                self.error = Some("its length is not a multiple of 4, so it looks cut off".into());
            } else {
                self.decode(self.pending.len())?;
            }
        }
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        Ok(())
    }
}

struct Splitter<'a> {
    out_dir: &'a Path,
    opts: &'a SplitOptions,
    error: Option<SplitError>,
    /// Local names of the open elements in the batch namespace (others as "").
    stack: Vec<Vec<u8>>,
    /// Depth inside MessageBody (xs:anyType: child markup is part of the body).
    in_body: u32,
    /// xsi:nil="true" on the current element.
    nil: bool,
    capture: Option<(Field, Pos)>,
    text: Collect,
    system_user_code: String,
    letter: Option<A2Letter>,
    /// The current Url reply option: (LinkText, LinkUrl).
    url: (Option<Text>, Option<Text>),
    decoder: Option<Decoder>,
    letters: Vec<LetterMeta>,
}

const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

impl<'a> Splitter<'a> {
    fn new(out_dir: &'a Path, opts: &'a SplitOptions) -> Self {
        Splitter {
            out_dir,
            opts,
            error: None,
            stack: Vec::with_capacity(16),
            in_body: 0,
            nil: false,
            capture: None,
            text: Collect::default(),
            system_user_code: String::new(),
            letter: None,
            url: (None, None),
            decoder: None,
            letters: Vec::new(),
        }
    }

    fn fail(&mut self, e: SplitError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn letter_dir(&self, index: u32) -> PathBuf {
        self.out_dir.join(format!("L{index:05}"))
    }

    fn start_element(&mut self, local: &[u8], pos: Pos) -> Result<(), SplitError> {
        let parent = self.stack.last().map(Vec::as_slice).unwrap_or(b"");
        let field = field_of(parent, local);
        match (parent, local) {
            (b"Correspondences", b"Correspondence") => {
                let index = self.letters.len() as u32 + 1;
                if self.opts.write_files {
                    fs::create_dir_all(self.letter_dir(index))?;
                }
                self.letter = Some(A2Letter {
                    start: pos,
                    ..Default::default()
                });
            }
            (b"RecieverEndPoints", b"ReceiverEndPoint") => {
                if let Some(n) = self.notification() {
                    n.endpoints.push(A2Endpoint::default());
                }
            }
            (b"Notifications", b"Notification") => {
                if let Some(l) = self.letter.as_mut() {
                    l.notifications.push(A2Notification {
                        start: pos,
                        ..Default::default()
                    });
                }
            }
            (b"BinaryAttachments", b"BinaryAttachment") => {
                if let Some(l) = self.letter.as_mut() {
                    l.attachments.push(A2Attachment {
                        start: pos,
                        ..Default::default()
                    });
                }
            }
            (b"XmlAttachments", b"XmlAttachment") => {
                if let Some(l) = self.letter.as_mut() {
                    l.xml_attachments.push(pos);
                }
            }
            (b"ReplyOption", b"Url") => self.url = (None, None),
            _ => {}
        }
        if field == Some(Field::Data) {
            self.open_data()?;
        }
        if let Some(f) = field {
            self.capture = Some((f, pos));
            self.text = Collect::default();
            if f == Field::Body {
                self.in_body = 1;
            }
        }
        Ok(())
    }

    /// The current letter's last notification.
    fn notification(&mut self) -> Option<&mut A2Notification> {
        self.letter.as_mut()?.notifications.last_mut()
    }

    fn open_data(&mut self) -> Result<(), SplitError> {
        let Some(l) = self.letter.as_ref() else {
            return Ok(());
        };
        let n = l.attachments.len();
        let index = self.letters.len() as u32 + 1;
        let (out, path) = if self.opts.write_files {
            let path = self.letter_dir(index).join(format!("a{n:03}.bin"));
            let f = File::create(&path)?;
            (Some(BufWriter::with_capacity(256 * 1024, f)), Some(path))
        } else {
            (None, None)
        };
        self.decoder = Some(Decoder {
            out,
            path,
            pending: Vec::with_capacity(CHUNK + 4096),
            decoded: Vec::new(),
            bytes: 0,
            error: None,
        });
        Ok(())
    }

    fn end_element(&mut self, local: &[u8]) -> Result<(), SplitError> {
        if let Some((field, pos)) = self.capture.take() {
            self.field_done(field, pos)?;
        }
        let parent = self
            .stack
            .get(self.stack.len().wrapping_sub(2))
            .map(Vec::as_slice)
            .unwrap_or(b"");
        match (parent, local) {
            (b"Correspondences", b"Correspondence") => self.letter_done()?,
            (b"ReplyOption", b"Url") => {
                let (text, url) = std::mem::take(&mut self.url);
                if let (Some(l), Some(url)) = (self.letter.as_mut(), url) {
                    l.reply_urls.push((text, url));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn field_done(&mut self, field: Field, pos: Pos) -> Result<(), SplitError> {
        if field == Field::Data {
            if let Some(mut d) = self.decoder.take() {
                d.finish()?;
                if let Some(a) = self.letter.as_mut().and_then(|l| l.attachments.last_mut()) {
                    a.bytes = d.bytes;
                    a.path = d.path;
                    a.data_problem = d.error;
                }
            }
            return Ok(());
        }
        let t = self.text.take(pos);
        if field == Field::SystemUserCode {
            self.system_user_code = t.value.trim().to_string();
            return Ok(());
        }
        let nil = std::mem::take(&mut self.nil);
        let Some(l) = self.letter.as_mut() else {
            return Ok(());
        };
        let some = Some(t.clone());
        match field {
            Field::ServiceCode => l.service_code = some,
            Field::ServiceEdition => l.service_edition = some,
            Field::SendersReference => l.senders_reference = some,
            Field::Reportee => l.reportee = some,
            Field::Visible => l.visible = some,
            Field::Due => l.due = some,
            Field::AllowForwarding => l.allow_forwarding = some,
            Field::IsReservable => l.is_reservable = some,
            Field::OnBehalfOf => l.on_behalf_of = if nil { None } else { some },
            Field::Language => l.language = some,
            Field::Title => l.title = some,
            Field::Summary => l.summary = some,
            Field::Body => l.body = some,
            Field::FileName
            | Field::AttachmentName
            | Field::Encrypted
            | Field::AttachmentReference => {
                if let Some(a) = l.attachments.last_mut() {
                    match field {
                        Field::FileName => a.file_name = some,
                        Field::AttachmentName => a.name = some,
                        Field::Encrypted => a.encrypted = some,
                        _ => a.senders_reference = some,
                    }
                }
            }
            Field::Template => {
                if let Some(n) = l.notifications.last_mut() {
                    n.template = some;
                }
            }
            Field::TokenValue => {
                if let Some(n) = l.notifications.last_mut() {
                    n.tokens.push(t);
                }
            }
            Field::Transport | Field::Address => {
                if let Some(e) = l
                    .notifications
                    .last_mut()
                    .and_then(|n| n.endpoints.last_mut())
                {
                    if field == Field::Transport {
                        e.transport = t;
                    } else {
                        e.address = some;
                    }
                }
            }
            Field::LinkText => self.url.0 = some,
            Field::LinkUrl => self.url.1 = some,
            Field::SystemUserCode | Field::Data => {}
        }
        Ok(())
    }

    fn letter_done(&mut self) -> Result<(), SplitError> {
        let Some(l) = self.letter.take() else {
            return Ok(());
        };
        let index = self.letters.len() as u32 + 1;
        let dir = self.letter_dir(index);
        let senders_reference = l
            .senders_reference
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default();
        let reportee = l
            .reportee
            .as_ref()
            .map(|t| t.trimmed().to_string())
            .unwrap_or_default();
        let key = idempotent_key(
            self.opts.namespace,
            &self.system_user_code,
            &senders_reference,
            &reportee,
            self.opts.generation,
        );
        let request = mapping::to_request(&l, &self.opts.map, Some(key));
        let refused = rules::check(&l, &request, &rules::Context { now: self.opts.now });
        let attachments: Vec<AttachmentMeta> = l
            .attachments
            .iter()
            .zip(&request.correspondence.content.attachments)
            .map(|(a, m)| AttachmentMeta {
                file_name: m.file_name.clone(),
                path: a.path.clone().unwrap_or_default(),
                bytes: a.bytes,
            })
            .collect();
        if self.opts.write_files {
            let json = serde_json::to_vec_pretty(&request)
                .map_err(|e| SplitError::Input(format!("letter {index}: {e}")))?;
            fs::write(dir.join("letter.json"), json)?;
            if !refused.is_empty() {
                // Never sent: its bytes are not needed.
                for a in &attachments {
                    let _ = fs::remove_file(&a.path);
                }
            }
        }
        self.letters.push(LetterMeta {
            index,
            senders_reference,
            reportee,
            resource_id: request.correspondence.resource_id.clone(),
            idempotent_key: key,
            dir,
            attachments,
            refused,
        });
        Ok(())
    }

    /// Markup inside MessageBody is part of the body's text.
    fn body_markup(&mut self, markup: &[u8]) {
        self.text.push(markup);
    }
}

impl Events for Splitter<'_> {
    fn start(&mut self, _local: &[u8], _in_batch_ns: bool, _pos: Pos) {}

    fn start_tag(&mut self, tag: &Tag<'_>, pos: Pos) {
        if self.error.is_some() {
            return;
        }
        if self.in_body > 0 {
            self.in_body += 1;
            let mut s = Vec::with_capacity(tag.local.len() + 2);
            s.push(b'<');
            if let Some(p) = tag.prefix {
                s.extend_from_slice(p);
                s.push(b':');
            }
            s.extend_from_slice(tag.local);
            for a in &tag.attributes {
                s.push(b' ');
                s.extend_from_slice(a.local);
                s.extend_from_slice(b"=\"");
                s.extend_from_slice(&a.value);
                s.push(b'"');
            }
            s.push(b'>');
            self.body_markup(&s);
            return;
        }
        self.nil = tag.attributes.iter().any(|a| {
            a.uri == Some(XSI) && a.local == b"nil" && matches!(&*a.value, b"true" | b"1")
        });
        let local = if tag.uri == Some(BATCH_NS) {
            tag.local
        } else {
            b""
        };
        if let Err(e) = self.start_element(local, pos) {
            self.fail(e);
        }
        self.stack.push(local.to_vec());
    }

    fn text(&mut self, text: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Some(d) = self.decoder.as_mut() {
            if let Err(e) = d.feed(text) {
                self.fail(e.into());
            }
            return;
        }
        if self.capture.is_some() {
            self.text.push(text);
        }
    }

    fn end(&mut self, local: &[u8], _pos: Pos) {
        if self.error.is_some() {
            return;
        }
        if self.in_body > 1 {
            self.in_body -= 1;
            let mut s = Vec::with_capacity(local.len() + 3);
            s.extend_from_slice(b"</");
            s.extend_from_slice(local);
            s.push(b'>');
            self.body_markup(&s);
            return;
        }
        self.in_body = 0;
        let name = self.stack.last().cloned().unwrap_or_default();
        if let Err(e) = self.end_element(&name) {
            self.fail(e);
        }
        self.stack.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let ns = Uuid::from_u128(0x1234);
        let a = idempotent_key(ns, "ABC", "REF-1", "974760673", 0);
        assert_eq!(a, idempotent_key(ns, "ABC", "REF-1", "974760673", 0));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, idempotent_key(ns, "ABC", "REF-1", "974760673", 1));
        assert_ne!(a, idempotent_key(ns, "ABC", "REF-2", "974760673", 0));
        assert_ne!(a, idempotent_key(ns, "ABD", "REF-1", "974760673", 0));
        assert_ne!(
            a,
            idempotent_key(Uuid::from_u128(1), "ABC", "REF-1", "974760673", 0)
        );
        // Field boundaries cannot be shifted.
        assert_ne!(
            idempotent_key(ns, "AB", "CREF", "1", 0),
            idempotent_key(ns, "ABC", "REF", "1", 0)
        );
    }
}
