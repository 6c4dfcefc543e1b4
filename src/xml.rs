//! Reading XML safely, and checking it against an XSD, in one streaming pass
//! through libxml2. Every XML document from outside (batches, Altinn's
//! receipts and confirmations) is read through here.
//!
//! Why libxml2 and why SAX: libxml2 is the only mature XSD 1.0 validator we
//! can embed, and its SAX interface with a *schema plug*
//! (`xmlSchemaSAXPlug`) validates while the document streams past, without
//! building a tree. Memory stays constant however large the batch is. The
//! same SAX events also drive the DPV rules (layer 3), so a batch is read
//! exactly once.
//!
//! Security: nothing is ever fetched. A process-wide external entity loader
//! refuses every URL and file, `XML_PARSE_NONET` is set, entities are never
//! substituted, and a DOCTYPE stops the parser the moment it is seen, before
//! its internal subset (where entity bombs live) is read.
//!
//! Bounded: libxml2 is fed so that time stays linear and memory small
//! whatever the input. Text on its way to the schema validator is gathered
//! by us into one piece per run and capped at [`MAX_TEXT_BYTES`] (see the
//! front handlers); markup that libxml2 must hold whole (a start tag with
//! its attributes) is capped at [`MAX_MARKUP_BYTES`] as it is read, and so
//! are the distinct names it must remember ([`MAX_NAMES`]); and
//! reading stops at the first fatal error, so one broken construct gives one
//! message, not a cascade.
//!
//! libxml2 contexts are not `Send`: a [`Schema`] and every parse that uses it
//! stay on the thread that made them. All `unsafe` of the project's XML
//! handling is in this file.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Read;
use std::ptr;
use std::sync::Once;

use libxml::bindings as ffi;

/// Where something is in the input: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// The Altinn correspondence batch namespace.
pub const BATCH_NS: &[u8] =
    b"http://schemas.altinn.no/services/intermediary/correspondence/2009/10";

/// A start tag in full, for consumers that re-serialise the document.
pub struct Tag<'a> {
    pub local: &'a [u8],
    pub prefix: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    /// Namespace declarations on this tag: (prefix or none for the default, URI).
    pub namespaces: Vec<(Option<&'a [u8]>, &'a [u8])>,
    pub attributes: Vec<Attr<'a>>,
}

/// One attribute. The value is plain text: no references left in it.
pub struct Attr<'a> {
    pub prefix: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    pub local: &'a [u8],
    pub value: Cow<'a, [u8]>,
}

/// What the parser hands on: element starts and ends, and character data.
/// Text is UTF-8 whatever the input encoding was (libxml2 transcodes).
pub trait Events {
    /// An element starts. `pos` is where its content begins (just after `>`),
    /// which is where a value error is best pointed at.
    fn start(&mut self, local: &[u8], in_batch_ns: bool, pos: Pos);
    /// The full start tag; by default only the name is passed on to `start`.
    fn start_tag(&mut self, tag: &Tag<'_>, pos: Pos) {
        self.start(tag.local, tag.uri == Some(BATCH_NS), pos)
    }
    /// Character data of the current element, possibly in several pieces.
    fn text(&mut self, text: &[u8]);
    /// The current element ends.
    fn end(&mut self, local: &[u8], pos: Pos);
}

/// A problem found by libxml2 (layer 1 or 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlProblem {
    pub schema: bool,
    /// libxml2's numeric error code, or one of ours (900+) for refusals.
    pub code: i32,
    pub pos: Pos,
    pub message: String,
}

/// Our own reading codes, above libxml2's parser range.
pub const CODE_DOCTYPE: i32 = 900;
pub const CODE_IO: i32 = 901;
pub const CODE_UTF32: i32 = 902;
pub const CODE_TEXT_TOO_LONG: i32 = 903;
pub const CODE_MARKUP_TOO_LONG: i32 = 904;
pub const CODE_TOO_MANY_NAMES: i32 = 905;

/// The most text one run of character data may hand the schema validator
/// (an element's value, or the text between two tags). No value in any of
/// the documents we read is legitimately near this (an attachment's `Data`,
/// the one large value, bypasses the validator); longer text is reported
/// with [`CODE_TEXT_TOO_LONG`], and the validator sees only its start.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The most input libxml2 may hold at once. It keeps a whole start tag in
/// its buffer while reading it, and checks attribute names for duplicates
/// pairwise (time grows with the square of their number), so a start tag
/// this long is refused with [`CODE_MARKUP_TOO_LONG`]. Comments, processing
/// instructions and text are read piece by piece: what libxml2 holds then
/// stays near 4 KiB.
pub const MAX_MARKUP_BYTES: usize = 64 << 10;

/// The most distinct names (of elements, attributes, prefixes, and
/// namespace URIs) a document may use. libxml2 keeps each in a dictionary
/// whose cost per new name grows with its size (400,000 distinct names took
/// 2.3 s, 800,000 took 12 s); a batch uses a few hundred at most, even with
/// HTML in its MessageBody. More is refused with [`CODE_TOO_MANY_NAMES`].
pub const MAX_NAMES: usize = 50_000;

/// How many problems [`parse`] hands back; callers that need every one use
/// [`parse_into`].
const PROBLEMS_KEPT: usize = 100;

/// A compiled XSD. Not `Send`: use it on the thread that compiled it.
pub struct Schema {
    ptr: ffi::xmlSchemaPtr,
}

impl Drop for Schema {
    fn drop(&mut self) {
        // SAFETY: ptr came from xmlSchemaParse and is freed once.
        unsafe { ffi::xmlSchemaFree(self.ptr) }
    }
}

impl Schema {
    /// Compile an XSD from its bytes. The schema must be self-contained:
    /// imports and includes are refused like every other external load.
    pub fn compile(xsd: &[u8]) -> Result<Schema, String> {
        init();
        let len = c_int::try_from(xsd.len()).map_err(|_| "schema file too large".to_string())?;
        let mut errors: Vec<String> = Vec::new();
        // SAFETY: the buffer outlives the parser context, which is freed here.
        unsafe {
            let pctxt = ffi::xmlSchemaNewMemParserCtxt(xsd.as_ptr() as *const c_char, len);
            if pctxt.is_null() {
                return Err("could not create a schema parser".into());
            }
            ffi::xmlSchemaSetParserStructuredErrors(
                pctxt,
                Some(collect_schema_compile_error),
                &mut errors as *mut Vec<String> as *mut c_void,
            );
            let with_global = GlobalErrors::install(&mut errors as *mut Vec<String> as *mut c_void);
            let schema = ffi::xmlSchemaParse(pctxt);
            drop(with_global);
            ffi::xmlSchemaFreeParserCtxt(pctxt);
            if schema.is_null() {
                if errors.is_empty() {
                    errors.push("the schema could not be compiled".into());
                }
                return Err(errors.join("; "));
            }
            Ok(Schema { ptr: schema })
        }
    }
}

unsafe extern "C" fn collect_schema_compile_error(ctx: *mut c_void, err: ffi::xmlErrorPtr) {
    if ctx.is_null() || err.is_null() {
        return;
    }
    let errors = &mut *(ctx as *mut Vec<String>);
    let e = &*err;
    errors.push(format!("line {}: {}", e.line, cstr(e.message).trim()));
}

/// Stream `input` through the parser (and the schema, if one is given),
/// feeding `events`. Returns the reading and schema problems found, the
/// first hundred at most (reading stops at the first fatal error, as XML
/// requires; schema problems before it are kept).
pub fn parse(
    schema: Option<&Schema>,
    input: &mut dyn Read,
    events: &mut dyn Events,
) -> Vec<XmlProblem> {
    let mut problems = Vec::new();
    parse_into(schema, input, events, &mut |p| {
        if problems.len() < PROBLEMS_KEPT {
            problems.push(p)
        }
    });
    problems
}

/// [`parse`], handing every problem to `problems` as it is found (so a
/// caller can count them without keeping them all).
pub fn parse_into(
    schema: Option<&Schema>,
    input: &mut dyn Read,
    events: &mut dyn Events,
    problems: &mut dyn FnMut(XmlProblem),
) {
    init();
    // libxml2 would take UTF-32 for an empty document; say what it is.
    let mut head = [0u8; 4];
    let head_len = match read_head(input, &mut head) {
        Ok(n) => n,
        Err(e) => return problems(io_problem(&format!("reading failed: {e}"))),
    };
    if is_utf32(&head[..head_len]) {
        return problems(XmlProblem {
            schema: false,
            code: CODE_UTF32,
            pos: Pos { line: 1, column: 1 },
            message: "UTF-32 is not supported; save the file as UTF-8 (or UTF-16)".into(),
        });
    }
    let mut state = State {
        events,
        problems,
        parser: ptr::null_mut(),
        plug_sax: None,
        plug_data: ptr::null_mut(),
        in_data: false,
        halted: false,
        pending: Vec::new(),
        run_over: false,
        run_blank: true,
        run_reported: false,
    };
    let mut source = Source {
        head,
        head_len,
        head_at: 0,
        input,
        error: None,
        state: &mut state,
    };
    let mut front: ffi::xmlSAXHandler;
    // SAFETY: every pointer handed to libxml2 (`source`, `state`, the SAX
    // handler) lives on this stack frame until the parser context is freed
    // below; callbacks only run inside xmlParseDocument.
    unsafe {
        let mut sax: ffi::xmlSAXHandler = std::mem::zeroed();
        sax.initialized = ffi::XML_SAX2_MAGIC;
        sax.startElementNs = Some(on_start);
        sax.endElementNs = Some(on_end);
        sax.characters = Some(on_text);
        sax.cdataBlock = Some(on_text);
        sax.internalSubset = Some(on_doctype);

        let state_ptr = source.state as *mut c_void;
        let pctxt = ffi::xmlCreateIOParserCtxt(
            &mut sax,
            state_ptr,
            Some(read_source),
            None,
            &mut source as *mut Source as *mut c_void,
            ffi::xmlCharEncoding_XML_CHAR_ENCODING_NONE,
        );
        let state = &mut *source.state;
        if pctxt.is_null() {
            return (state.problems)(io_problem("could not start the XML parser"));
        }
        ffi::xmlCtxtUseOptions(pctxt, ffi::xmlParserOption_XML_PARSE_NONET as c_int);
        state.parser = pctxt;

        let mut vctxt: ffi::xmlSchemaValidCtxtPtr = ptr::null_mut();
        let mut plug: ffi::xmlSchemaSAXPlugPtr = ptr::null_mut();
        if let Some(schema) = schema {
            vctxt = ffi::xmlSchemaNewValidCtxt(schema.ptr);
            if !vctxt.is_null() {
                ffi::xmlSchemaSetValidStructuredErrors(vctxt, Some(on_schema_error), state_ptr);
                ffi::xmlSchemaValidateSetLocator(vctxt, Some(locate), state_ptr);
                // Text reaches `events` from the front handlers, whole, and
                // the validator through them, gathered and capped: the
                // plug must not hand it on to our handlers a second time.
                // (The parser keeps its own copy of `sax`; that copy is the
                // one the plug calls.)
                (*(*pctxt).sax).characters = None;
                (*(*pctxt).sax).cdataBlock = None;
                plug = ffi::xmlSchemaSAXPlug(vctxt, &mut (*pctxt).sax, &mut (*pctxt).userData);
            }
            if plug.is_null() {
                if !vctxt.is_null() {
                    ffi::xmlSchemaFreeValidCtxt(vctxt);
                }
                ffi::xmlFreeParserCtxt(pctxt);
                return (state.problems)(io_problem("could not start the schema validator"));
            }
            // Put our front handlers before the plug (see `front_start`).
            state.plug_sax = Some(*(*pctxt).sax);
            state.plug_data = (*pctxt).userData;
            front = std::mem::zeroed();
            front.initialized = ffi::XML_SAX2_MAGIC;
            front.startElementNs = Some(front_start);
            front.endElementNs = Some(front_end);
            front.characters = Some(front_text);
            front.ignorableWhitespace = Some(front_text);
            front.cdataBlock = Some(front_text);
            front.reference = Some(front_reference);
            front.internalSubset = Some(on_doctype);
            (*pctxt).sax = &mut front;
            (*pctxt).userData = state_ptr;
        }

        let guard = GlobalErrors::install_parser(state_ptr);
        ffi::xmlParseDocument(pctxt);
        drop(guard);

        if !plug.is_null() {
            // Unplugging restores the parser's handler from the plug's record.
            ffi::xmlSchemaSAXUnplug(plug);
        }
        if !vctxt.is_null() {
            ffi::xmlSchemaFreeValidCtxt(vctxt);
        }
        ffi::xmlFreeParserCtxt(pctxt);
        if let Some(err) = source.error.take() {
            (state.problems)(io_problem(&format!("reading failed: {err}")));
        }
    }
}

fn io_problem(message: &str) -> XmlProblem {
    XmlProblem {
        schema: false,
        code: CODE_IO,
        pos: Pos::default(),
        message: message.to_string(),
    }
}

/// Read up to 4 bytes (fewer only at the end of the input).
fn read_head(input: &mut dyn Read, head: &mut [u8; 4]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether a document starts as UTF-32 does: a UTF-32 byte order mark, or
/// `<` as a four-byte unit in any byte order (XML 1.0, appendix F). `FF FE
/// 00 00` could be UTF-16LE with a NUL first, but XML never holds a NUL.
fn is_utf32(head: &[u8]) -> bool {
    matches!(
        head,
        [0, 0, 0xFE, 0xFF]
            | [0xFF, 0xFE, 0, 0]
            | [0, 0, 0, b'<']
            | [b'<', 0, 0, 0]
            | [0, 0, b'<', 0]
            | [0, b'<', 0, 0]
    )
}

struct Source<'a, 's> {
    /// The first bytes, read ahead to recognise UTF-32, handed out first.
    head: [u8; 4],
    head_len: usize,
    head_at: usize,
    input: &'a mut dyn Read,
    error: Option<std::io::Error>,
    state: *mut State<'s>,
}

struct State<'a> {
    events: &'a mut dyn Events,
    problems: &'a mut dyn FnMut(XmlProblem),
    parser: ffi::xmlParserCtxtPtr,
    /// The schema plug's handlers and context, when validating (see `front_*`).
    plug_sax: Option<ffi::xmlSAXHandler>,
    plug_data: *mut c_void,
    /// Inside an attachment's `Data`: its text bypasses the schema plug.
    in_data: bool,
    /// A fatal error (or a refusal of ours) was reported: nothing after it
    /// is read, handed on, or reported.
    halted: bool,
    /// The current run of text, on its way to the validator (see `front_*`).
    pending: Vec<u8>,
    /// The run passed MAX_TEXT_BYTES; it is all whitespace so far; its
    /// length was reported.
    run_over: bool,
    run_blank: bool,
    run_reported: bool,
}

impl State<'_> {
    fn pos(&self) -> Pos {
        if self.parser.is_null() {
            return Pos::default();
        }
        // SAFETY: parser is the live context that is calling us.
        unsafe {
            let ctx = self.parser as *mut c_void;
            Pos {
                line: ffi::xmlSAX2GetLineNumber(ctx).max(0) as u32,
                column: ffi::xmlSAX2GetColumnNumber(ctx).max(0) as u32,
            }
        }
    }

    /// Report a problem of our own that ends the reading.
    fn halt(&mut self, code: i32, message: String) {
        if self.halted {
            return;
        }
        let pos = self.pos();
        (self.problems)(XmlProblem {
            schema: false,
            code,
            pos,
            message,
        });
        self.halted = true;
    }

    /// Distinct names the parser has seen (its dictionary's size).
    fn names(&self) -> usize {
        if self.parser.is_null() {
            return 0;
        }
        // SAFETY: parser is the live context; its dict lives as long as it.
        unsafe { ffi::xmlDictSize((*self.parser).dict).max(0) as usize }
    }

    /// Bytes of input the parser holds now (a start tag is held whole).
    fn held(&self) -> usize {
        if self.parser.is_null() {
            return 0;
        }
        // SAFETY: parser is the live context; its input's base..end is the
        // buffer it reads from.
        unsafe {
            let input = (*self.parser).input;
            if input.is_null() || (*input).base.is_null() || (*input).end.is_null() {
                return 0;
            }
            ((*input).end as usize).saturating_sub((*input).base as usize)
        }
    }
}

unsafe extern "C" fn read_source(ctx: *mut c_void, buf: *mut c_char, len: c_int) -> c_int {
    let source = &mut *(ctx as *mut Source);
    let state = &mut *source.state;
    // After a fatal error libxml2 would read on, only to report more; an
    // end of input stops it (stopping it from an error callback is unsafe).
    if len <= 0 || state.halted {
        return 0;
    }
    if state.held() > MAX_MARKUP_BYTES {
        state.halt(
            CODE_MARKUP_TOO_LONG,
            format!(
                "a start tag (or other markup) is longer than {MAX_MARKUP_BYTES} bytes; no \
                 document we read has one that long, so reading stops here"
            ),
        );
        return 0;
    }
    if state.names() > MAX_NAMES {
        state.halt(
            CODE_TOO_MANY_NAMES,
            format!(
                "the document uses more than {MAX_NAMES} distinct element, attribute or \
                 namespace names; no document we read has that many, so reading stops here"
            ),
        );
        return 0;
    }
    let out = std::slice::from_raw_parts_mut(buf as *mut u8, len as usize);
    if source.head_at < source.head_len {
        let rest = &source.head[source.head_at..source.head_len];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        source.head_at += n;
        return n as c_int;
    }
    loop {
        match source.input.read(out) {
            Ok(n) => return n as c_int,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                source.error = Some(e);
                return -1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn on_start(
    ctx: *mut c_void,
    localname: *const ffi::xmlChar,
    prefix: *const ffi::xmlChar,
    uri: *const ffi::xmlChar,
    nb_namespaces: c_int,
    namespaces: *mut *const ffi::xmlChar,
    nb_attributes: c_int,
    _nb_defaulted: c_int,
    attributes: *mut *const ffi::xmlChar,
) {
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    // libxml2 calls this before it consumes the `>` of the start tag; the
    // content begins one column later.
    let mut pos = state.pos();
    pos.column += 1;
    let opt = |p: *const ffi::xmlChar| (!p.is_null()).then(|| bytes(p));
    let mut tag = Tag {
        local: bytes(localname),
        prefix: opt(prefix),
        uri: opt(uri),
        namespaces: Vec::new(),
        attributes: Vec::new(),
    };
    // namespaces: pairs (prefix, URI); attributes: quintuples (local, prefix,
    // URI, value start, value end), the value not NUL-terminated.
    for i in 0..nb_namespaces.max(0) as usize {
        let p = *namespaces.add(2 * i);
        let u = *namespaces.add(2 * i + 1);
        tag.namespaces.push((opt(p), bytes(u)));
    }
    for i in 0..nb_attributes.max(0) as usize {
        let a = attributes.add(5 * i);
        let (start, end) = (*a.add(3), *a.add(4));
        let len = (end as usize).saturating_sub(start as usize);
        let value = std::slice::from_raw_parts(start, len);
        tag.attributes.push(Attr {
            prefix: opt(*a.add(1)),
            uri: opt(*a.add(2)),
            local: bytes(*a),
            value: unescape_amp(value),
        });
    }
    state.events.start_tag(&tag, pos);
}

// ---- front handlers: between the parser and the schema plug -----------------
//
// libxml2's schema validator collects the whole text of every simple-typed
// element before checking it, appending piece by piece (a few hundred bytes
// each) with a strlen over what it has so far: time grows with the square of
// the text's length (100 MB in a MessageTitle took 34 s, 100 MiB of base64
// took minutes) and memory with its length. So the validator never gets text
// piece by piece from the parser:
// - `events` get every piece of text at once, whole (the DPV rules read
//   values in constant memory);
// - the validator gets each run of text (the text between two tags) in one
//   piece, just before the next tag, gathered here and capped at
//   MAX_TEXT_BYTES; a longer run (unless it is only whitespace, which
//   formatting may make long) is reported with CODE_TEXT_TOO_LONG, and the
//   validator checks its start;
// - an attachment's `Data` is not shown to the validator at all: DPV012
//   checks its base64 exactly, in constant memory, and the validator sees an
//   empty (valid) `Data`.

unsafe fn plug(state: &State) -> Option<ffi::xmlSAXHandler> {
    state.plug_sax
}

/// Hand the gathered run of text to the validator, and start a new run.
unsafe fn flush_text(state: &mut State) {
    if !state.pending.is_empty() {
        if let Some(f) = plug(state).and_then(|s| s.characters) {
            // At most MAX_TEXT_BYTES, so the length fits a c_int.
            f(
                state.plug_data,
                state.pending.as_ptr(),
                state.pending.len() as c_int,
            );
        }
        state.pending.clear();
    }
    state.run_over = false;
    state.run_blank = true;
    state.run_reported = false;
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn front_start(
    ctx: *mut c_void,
    localname: *const ffi::xmlChar,
    prefix: *const ffi::xmlChar,
    uri: *const ffi::xmlChar,
    nb_namespaces: c_int,
    namespaces: *mut *const ffi::xmlChar,
    nb_attributes: c_int,
    nb_defaulted: c_int,
    attributes: *mut *const ffi::xmlChar,
) {
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    flush_text(state);
    state.in_data = bytes(localname) == b"Data" && !uri.is_null() && bytes(uri) == BATCH_NS;
    if let Some(f) = plug(state).and_then(|s| s.startElementNs) {
        f(
            state.plug_data,
            localname,
            prefix,
            uri,
            nb_namespaces,
            namespaces,
            nb_attributes,
            nb_defaulted,
            attributes,
        );
    }
}

unsafe extern "C" fn front_end(
    ctx: *mut c_void,
    localname: *const ffi::xmlChar,
    prefix: *const ffi::xmlChar,
    uri: *const ffi::xmlChar,
) {
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    flush_text(state);
    state.in_data = false;
    if let Some(f) = plug(state).and_then(|s| s.endElementNs) {
        f(state.plug_data, localname, prefix, uri);
    }
}

/// Character data, CDATA sections and whitespace alike: for the validator
/// they are all text (its handlers for them are the same).
unsafe extern "C" fn front_text(ctx: *mut c_void, ch: *const ffi::xmlChar, len: c_int) {
    let state = &mut *(ctx as *mut State);
    if state.halted || ch.is_null() || len <= 0 {
        return;
    }
    let text = std::slice::from_raw_parts(ch, len as usize);
    state.events.text(text);
    if state.in_data {
        return;
    }
    if state.run_blank {
        state.run_blank = text
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    }
    if !state.run_over {
        let room = MAX_TEXT_BYTES - state.pending.len();
        if text.len() <= room {
            state.pending.extend_from_slice(text);
            return;
        }
        // Cut on a character boundary: the validator gets valid UTF-8.
        let mut cut = room;
        while cut > 0 && (text[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        state.pending.extend_from_slice(&text[..cut]);
        state.run_over = true;
    }
    if !state.run_blank && !state.run_reported {
        state.run_reported = true;
        let element = if state.parser.is_null() {
            String::new()
        } else {
            String::from_utf8_lossy(bytes((*state.parser).name)).into_owned()
        };
        let pos = state.pos();
        (state.problems)(XmlProblem {
            schema: false,
            code: CODE_TEXT_TOO_LONG,
            pos,
            message: format!(
                "the text of element {element} is longer than {MAX_TEXT_BYTES} bytes; no value \
                 may be that long (only an attachment's Data, which is checked apart)"
            ),
        });
    }
}

unsafe extern "C" fn front_reference(ctx: *mut c_void, name: *const ffi::xmlChar) {
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    flush_text(state);
    if let Some(f) = plug(state).and_then(|s| s.reference) {
        f(state.plug_data, name);
    }
}

unsafe extern "C" fn on_end(
    ctx: *mut c_void,
    localname: *const ffi::xmlChar,
    _prefix: *const ffi::xmlChar,
    _uri: *const ffi::xmlChar,
) {
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    let pos = state.pos();
    state.events.end(bytes(localname), pos);
}

unsafe extern "C" fn on_text(ctx: *mut c_void, ch: *const ffi::xmlChar, len: c_int) {
    if ch.is_null() || len <= 0 {
        return;
    }
    let state = &mut *(ctx as *mut State);
    if state.halted {
        return;
    }
    state
        .events
        .text(std::slice::from_raw_parts(ch, len as usize));
}

unsafe extern "C" fn on_doctype(
    ctx: *mut c_void,
    _name: *const ffi::xmlChar,
    _external_id: *const ffi::xmlChar,
    _system_id: *const ffi::xmlChar,
) {
    let state = &mut *(ctx as *mut State);
    // Callers word this for their kind of document (see CODE_DOCTYPE users).
    state.halt(
        CODE_DOCTYPE,
        "the document has a DOCTYPE; DTDs and entities are refused for security".into(),
    );
    // Stop before the internal subset is read: no entity is ever declared.
    // (Stopping is safe from a SAX callback, unlike from an error handler.)
    ffi::xmlStopParser(state.parser);
}

unsafe extern "C" fn on_schema_error(ctx: *mut c_void, err: ffi::xmlErrorPtr) {
    record(ctx, err, true);
}

unsafe extern "C" fn on_parser_error(ctx: *mut c_void, err: ffi::xmlErrorPtr) {
    record(ctx, err, false);
}

unsafe fn record(ctx: *mut c_void, err: ffi::xmlErrorPtr, schema: bool) {
    if ctx.is_null() || err.is_null() {
        return;
    }
    let state = &mut *(ctx as *mut State);
    let e = &*err;
    // After a fatal error libxml2 2.9 goes on parsing to report more, and
    // those are echoes of the first (a duplicate attribute gave 18 errors,
    // a 10 MB attribute 140, "Memory allocation failed" among them).
    if state.halted || e.level == ffi::xmlErrorLevel_XML_ERR_WARNING {
        return;
    }
    let here = state.pos();
    let line = if e.line > 0 { e.line as u32 } else { here.line };
    let column = if e.int2 > 0 && !schema {
        e.int2 as u32
    } else {
        here.column
    };
    (state.problems)(XmlProblem {
        schema,
        code: e.code,
        pos: Pos { line, column },
        message: one_line(&cstr(e.message)),
    });
    if !schema && e.level == ffi::xmlErrorLevel_XML_ERR_FATAL {
        // Stop: no more events, no more input (see `read_source`).
        state.halted = true;
    }
}

/// libxml2 messages may span lines; reports are one line per error.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

unsafe extern "C" fn locate(
    ctx: *mut c_void,
    file: *mut *const c_char,
    line: *mut libc_ulong,
) -> c_int {
    let state = &*(ctx as *mut State);
    if !file.is_null() {
        *file = ptr::null();
    }
    if !line.is_null() {
        *line = state.pos().line as libc_ulong;
    }
    0
}

#[allow(non_camel_case_types)]
type libc_ulong = std::ffi::c_ulong;

/// Installs the thread's catch-all structured error handler for the duration
/// of one parse; parser errors reach us only through it (the schema plug
/// owns the parser's user data).
struct GlobalErrors;

impl GlobalErrors {
    unsafe fn install_parser(ctx: *mut c_void) -> GlobalErrors {
        ffi::xmlSetStructuredErrorFunc(ctx, Some(on_parser_error));
        GlobalErrors
    }
    unsafe fn install(ctx: *mut c_void) -> GlobalErrors {
        ffi::xmlSetStructuredErrorFunc(ctx, Some(collect_schema_compile_error));
        GlobalErrors
    }
}

impl Drop for GlobalErrors {
    fn drop(&mut self) {
        // SAFETY: resetting the thread-local handler to none is always valid.
        unsafe { ffi::xmlSetStructuredErrorFunc(ptr::null_mut(), None) }
    }
}

/// With entity substitution off (as it must be), libxml2 hands an attribute's
/// `&` (written `&amp;` or `&#38;`) on as the text `&#38;`. No other `&` can
/// be in a parsed value, so turning that back into `&` is exact.
fn unescape_amp(value: &[u8]) -> Cow<'_, [u8]> {
    const AMP: &[u8] = b"&#38;";
    if !value.contains(&b'&') {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.windows(AMP.len()).position(|w| w == AMP) {
        out.extend_from_slice(&rest[..i]);
        out.push(b'&');
        rest = &rest[i + AMP.len()..];
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

unsafe fn bytes<'a>(s: *const ffi::xmlChar) -> &'a [u8] {
    if s.is_null() {
        return &[];
    }
    CStr::from_ptr(s as *const c_char).to_bytes()
}

unsafe fn cstr(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    CStr::from_ptr(s).to_string_lossy().into_owned()
}

/// The external entity loader: refuses everything. libxml2 asks it for every
/// DTD, entity, XInclude and schema import it would load.
unsafe extern "C" fn refuse_external(
    _url: *const c_char,
    _id: *const c_char,
    _ctxt: ffi::xmlParserCtxtPtr,
) -> ffi::xmlParserInputPtr {
    ptr::null_mut()
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: process-wide set-up, done once before any parse.
        unsafe {
            ffi::xmlInitParser();
            ffi::xmlSetExternalEntityLoader(Some(refuse_external));
        }
    });
}
