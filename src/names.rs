//! Showing names safely: the one place that decides how a file name (or any
//! text from outside) is written into a log line, the `status` table, a
//! receipt, an `errors.txt` or the name of a file dpv-batch writes.
//!
//! A file name on Linux is any bytes but `/` and NUL: a newline can forge a
//! log line, an ANSI escape can repaint a terminal, a right-to-left override
//! can make `gpj.exe` read as `exe.jpg`, and bytes that are not UTF-8 cannot
//! be shown at all. So every name is shown *escaped*: ordinary names stay
//! exactly as they are, and each character a terminal or a log would act on
//! is written as a visible escape:
//!
//! | in the name | shown as |
//! |---|---|
//! | `\` (backslash) | `\\` |
//! | tab, newline, carriage return | `\t`, `\n`, `\r` |
//! | other control characters below 0x80 | `\xHH` (e.g. ESC is `\x1b`) |
//! | a byte that is not part of valid UTF-8 | `\xHH` (`\x80`..`\xff`) |
//! | C1 controls U+0080–U+009F, bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), line and paragraph separators (U+2028, U+2029) | `\u{HHHH}` |
//!
//! Because a backslash is escaped too, two different names are never shown
//! alike, and [`raw`] turns a shown name back into its bytes: the journal
//! keeps names in their shown form, and the pipeline finds the inbox entry
//! again from it after a restart.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// `name` as dpv-batch shows it everywhere (see the module docs).
pub fn shown(name: &OsStr) -> String {
    escape(name.as_bytes(), true)
}

/// Text from outside (a reason, a message) made safe for one line of a log
/// or a table: like [`shown`], but a backslash stays as it is, so text that
/// is already shown (a name from the journal) is not escaped twice.
pub fn text(s: &str) -> String {
    escape(s.as_bytes(), false)
}

/// A writer for log lines: each write is one line (the log formats a whole
/// event, then writes it at once), and everything in it is passed through
/// [`text`] but the final newline. Names are already shown escaped; this
/// also covers what a log line may quote from outside (a remote file name,
/// a parser's message), so no event can ever print two lines.
pub struct SafeLines<W>(pub W);

impl<W: std::io::Write> std::io::Write for SafeLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (line, newline) = match buf.strip_suffix(b"\n") {
            Some(line) => (line, true),
            None => (buf, false),
        };
        let mut out = escape(line, false);
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Is `name` shown exactly as it is (nothing in it needs an escape)?
pub fn is_plain(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => s.chars().all(|c| c != '\\' && !needs_escape(c)),
        Err(_) => false,
    }
}

/// The bytes of a name from its shown form: the inverse of [`shown`]. A
/// backslash that starts no escape is kept as it is (names journalled by
/// older versions were not escaped), and so is an escape of `/` or NUL,
/// which no name can hold: the result is always one name, never a path.
pub fn raw(shown: &str) -> OsString {
    let b = shown.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some((bytes, used)) = unescape(&b[i..]) {
                out.extend_from_slice(&bytes);
                i += used;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// The longest start of `shown` of at most `max` bytes that cuts neither a
/// character nor an escape in two.
pub fn cut(shown: &str, max: usize) -> &str {
    if shown.len() <= max {
        return shown;
    }
    let b = shown.as_bytes();
    let mut end = 0;
    while end < b.len() {
        let unit = if b[end] == b'\\' {
            unescape(&b[end..]).map_or(1, |(_, used)| used)
        } else {
            shown[end..].chars().next().map_or(1, char::len_utf8)
        };
        if end + unit > max {
            break;
        }
        end += unit;
    }
    &shown[..end]
}

/// Characters that are escaped (besides the backslash).
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}'
            | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape(bytes: &[u8], backslash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if (c == '\\' && backslash) || needs_escape(c) {
                push_escape(&mut out, c);
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// `c` written as an escape, the one way every escaped character is shown
/// (also by [`crate::xml_text`] for characters XML cannot carry).
pub(crate) fn push_escape(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

/// The escape at the start of `b` (which starts with a backslash): its bytes
/// and how many bytes of `b` it took; `None` if it is not one of ours.
fn unescape(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let hex = |s: &[u8]| {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
    };
    match b.get(1)? {
        b'\\' => Some((vec![b'\\'], 2)),
        b't' => Some((vec![b'\t'], 2)),
        b'n' => Some((vec![b'\n'], 2)),
        b'r' => Some((vec![b'\r'], 2)),
        b'x' => {
            let digits = b.get(2..4)?;
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let byte = hex(digits)? as u8;
            (byte != b'/' && byte != 0).then(|| (vec![byte], 4))
        }
        b'u' => {
            if b.get(2) != Some(&b'{') {
                return None;
            }
            let close = b.iter().take(12).position(|&x| x == b'}')?;
            let c = char::from_u32(hex(&b[3..close])?).filter(|&c| c != '/' && c != '\0')?;
            let mut buf = [0; 4];
            Some((c.encode_utf8(&mut buf).as_bytes().to_vec(), close + 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(b: &[u8]) -> OsString {
        OsString::from_vec(b.to_vec())
    }

    #[test]
    fn ordinary_names_are_shown_as_they_are() {
        for n in [
            "a.xml",
            "vedtak æøå ÆØÅ.xml",
            "2024-01-01 batch (1).zip",
            "名前.xml",
        ] {
            assert_eq!(shown(OsStr::new(n)), n);
            assert!(is_plain(OsStr::new(n)));
        }
    }

    #[test]
    fn what_a_terminal_would_act_on_is_escaped() {
        let cases: &[(&[u8], &str)] = &[
            (b"a\nERROR b", r"a\nERROR b"),
            (b"\x1b[31mred\x07", r"\x1b[31mred\x07"),
            (b"tab\there\r", r"tab\there\r"),
            (b"back\\slash", r"back\\slash"),
            (b"latin1-\xe6\xf8\xe5.xml", r"latin1-\xe6\xf8\xe5.xml"),
            ("bidi-\u{202e}lmx.exe".as_bytes(), r"bidi-\u{202e}lmx.exe"),
            ("c1-\u{85}-\u{2028}".as_bytes(), r"c1-\u{0085}-\u{2028}"),
            (b"del\x7f", r"del\x7f"),
        ];
        for (raw_name, want) in cases {
            let got = shown(&os(raw_name));
            assert_eq!(&got, want);
            assert!(!is_plain(&os(raw_name)));
            assert!(got.chars().all(|c| !needs_escape(c)));
            assert_eq!(raw(&got), os(raw_name), "round trip of {want}");
        }
    }

    #[test]
    fn different_names_are_never_shown_alike() {
        // A literal backslash-n and a newline; a literal \xff and the byte.
        let pairs: &[(&[u8], &[u8])] = &[(b"a\\nb", b"a\nb"), (b"a\\xff", b"a\xff")];
        for (x, y) in pairs {
            assert_ne!(shown(&os(x)), shown(&os(y)));
            assert_eq!(raw(&shown(&os(x))), os(x));
        }
    }

    #[test]
    fn text_escapes_controls_but_not_backslashes_and_is_idempotent_on_names() {
        assert_eq!(text("a\nb\\c"), r"a\nb\c");
        let name = shown(&os(b"x\n\x1b\\y"));
        assert_eq!(text(&name), name);
    }

    #[test]
    fn raw_keeps_backslashes_that_start_no_escape() {
        assert_eq!(raw(r"old\name\q"), os(b"old\name\\q"));
        assert_eq!(raw(r"a\x4"), os(b"a\\x4"));
        assert_eq!(raw(r"a\u{zz}"), os(b"a\\u{zz}"));
        assert_eq!(raw(r"..\x2fetc\u{2f}x\x00"), os(br"..\x2fetc\u{2f}x\x00"));
    }

    #[test]
    fn a_log_write_is_one_line() {
        use std::io::Write;
        let mut out = SafeLines(Vec::new());
        out.write_all(b"WARN file=a\nERROR forged \x1b[2J\xff\n")
            .unwrap();
        assert_eq!(
            out.0,
            br"WARN file=a\nERROR forged \x1b[2J\xff"
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<u8>>()
        );
    }

    #[test]
    fn cut_never_splits_a_character_or_an_escape() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abø", 3), "ab");
        assert_eq!(cut(r"ab\xff", 5), "ab");
        assert_eq!(cut(r"ab\xff", 6), r"ab\xff");
        assert_eq!(cut(r"a\u{202e}b", 8), "a");
        assert_eq!(cut(r"a\\b", 2), "a");
    }
}
