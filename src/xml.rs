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
/// feeding `events`. Returns every reading and schema problem found (reading
/// stops at the first well-formedness error, as XML requires; schema
/// checking goes on).
pub fn parse(
    schema: Option<&Schema>,
    input: &mut dyn Read,
    events: &mut dyn Events,
) -> Vec<XmlProblem> {
    init();
    let mut source = Source { input, error: None };
    let mut state = State {
        events,
        problems: Vec::new(),
        parser: ptr::null_mut(),
        plug_sax: None,
        plug_data: ptr::null_mut(),
        in_data: false,
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

        let state_ptr = &mut state as *mut State as *mut c_void;
        let pctxt = ffi::xmlCreateIOParserCtxt(
            &mut sax,
            state_ptr,
            Some(read_source),
            None,
            &mut source as *mut Source as *mut c_void,
            ffi::xmlCharEncoding_XML_CHAR_ENCODING_NONE,
        );
        if pctxt.is_null() {
            return vec![io_problem("could not start the XML parser")];
        }
        ffi::xmlCtxtUseOptions(pctxt, ffi::xmlParserOption_XML_PARSE_NONET as c_int);
        state.parser = pctxt;

        let mut vctxt: ffi::xmlSchemaValidCtxtPtr = ptr::null_mut();
        let mut plug: ffi::xmlSchemaSAXPlugPtr = ptr::null_mut();
        if let Some(schema) = schema {
            vctxt = ffi::xmlSchemaNewValidCtxt(schema.ptr);
            if vctxt.is_null() {
                ffi::xmlFreeParserCtxt(pctxt);
                return vec![io_problem("could not start the schema validator")];
            }
            ffi::xmlSchemaSetValidStructuredErrors(vctxt, Some(on_schema_error), state_ptr);
            ffi::xmlSchemaValidateSetLocator(vctxt, Some(locate), state_ptr);
            plug = ffi::xmlSchemaSAXPlug(vctxt, &mut (*pctxt).sax, &mut (*pctxt).userData);
            if !plug.is_null() {
                // Put our front handlers before the plug (see `front_start`).
                state.plug_sax = Some(*(*pctxt).sax);
                state.plug_data = (*pctxt).userData;
                front = std::mem::zeroed();
                front.initialized = ffi::XML_SAX2_MAGIC;
                front.startElementNs = Some(front_start);
                front.endElementNs = Some(front_end);
                front.characters = Some(front_text);
                front.ignorableWhitespace = Some(front_text);
                front.cdataBlock = Some(front_cdata);
                front.reference = Some(front_reference);
                front.internalSubset = Some(on_doctype);
                (*pctxt).sax = &mut front;
                (*pctxt).userData = state_ptr;
            }
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
    }
    if let Some(err) = source.error {
        state
            .problems
            .push(io_problem(&format!("reading failed: {err}")));
    }
    state.problems
}

fn io_problem(message: &str) -> XmlProblem {
    XmlProblem {
        schema: false,
        code: CODE_IO,
        pos: Pos::default(),
        message: message.to_string(),
    }
}

struct Source<'a> {
    input: &'a mut dyn Read,
    error: Option<std::io::Error>,
}

struct State<'a> {
    events: &'a mut dyn Events,
    problems: Vec<XmlProblem>,
    parser: ffi::xmlParserCtxtPtr,
    /// The schema plug's handlers and context, when validating (see `front_*`).
    plug_sax: Option<ffi::xmlSAXHandler>,
    plug_data: *mut c_void,
    /// Inside an attachment's `Data`: its text bypasses the schema plug.
    in_data: bool,
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
}

unsafe extern "C" fn read_source(ctx: *mut c_void, buf: *mut c_char, len: c_int) -> c_int {
    let source = &mut *(ctx as *mut Source);
    if len <= 0 {
        return 0;
    }
    let out = std::slice::from_raw_parts_mut(buf as *mut u8, len as usize);
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
// element before checking it, appending piece by piece with a strlen over
// what it has so far: time grows with the square of an attachment's size
// (100 MiB of base64 took minutes) and memory with its size. Attachment
// `Data` is the only element that large, and DPV012 checks its base64
// exactly, in constant memory. So its text goes straight to the rules and
// the validator sees an empty (valid) `Data`; everything else passes through.

unsafe fn plug(state: &State) -> Option<ffi::xmlSAXHandler> {
    state.plug_sax
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
    state.in_data = false;
    if let Some(f) = plug(state).and_then(|s| s.endElementNs) {
        f(state.plug_data, localname, prefix, uri);
    }
}

unsafe extern "C" fn front_text(ctx: *mut c_void, ch: *const ffi::xmlChar, len: c_int) {
    let state = &mut *(ctx as *mut State);
    if state.in_data {
        on_text(ctx, ch, len);
    } else if let Some(f) = plug(state).and_then(|s| s.characters) {
        f(state.plug_data, ch, len);
    }
}

unsafe extern "C" fn front_cdata(ctx: *mut c_void, ch: *const ffi::xmlChar, len: c_int) {
    let state = &mut *(ctx as *mut State);
    if state.in_data {
        on_text(ctx, ch, len);
    } else if let Some(f) = plug(state).and_then(|s| s.cdataBlock) {
        f(state.plug_data, ch, len);
    }
}

unsafe extern "C" fn front_reference(ctx: *mut c_void, name: *const ffi::xmlChar) {
    let state = &mut *(ctx as *mut State);
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
    let pos = state.pos();
    state.events.end(bytes(localname), pos);
}

unsafe extern "C" fn on_text(ctx: *mut c_void, ch: *const ffi::xmlChar, len: c_int) {
    if ch.is_null() || len <= 0 {
        return;
    }
    let state = &mut *(ctx as *mut State);
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
    let pos = state.pos();
    state.problems.push(XmlProblem {
        schema: false,
        code: CODE_DOCTYPE,
        pos,
        message: "the file has a DOCTYPE; batch files must not have one (DTDs and entities are \
                  refused for security), so remove the <!DOCTYPE ...> declaration"
            .into(),
    });
    // Stop before the internal subset is read: no entity is ever declared.
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
    if e.level == ffi::xmlErrorLevel_XML_ERR_WARNING {
        return;
    }
    // After our own DOCTYPE refusal the parser reports its forced stop; that
    // adds nothing for the reader.
    if state.problems.iter().any(|p| p.code == CODE_DOCTYPE) {
        return;
    }
    let here = state.pos();
    let line = if e.line > 0 { e.line as u32 } else { here.line };
    let column = if e.int2 > 0 && !schema {
        e.int2 as u32
    } else {
        here.column
    };
    state.problems.push(XmlProblem {
        schema,
        code: e.code,
        pos: Pos { line, column },
        message: one_line(&cstr(e.message)),
    });
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
