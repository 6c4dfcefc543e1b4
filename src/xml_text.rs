//! Text in the XML we write: the one function that escapes it, for every
//! document dpv-batch writes (packaged parts, receipts, read and letter
//! events, the simulators' receipts and confirmations).
//!
//! Three rules, and nothing else changes:
//! - markup: `&` `<` `>` become `&amp;` `&lt;` `&gt;` in text; in an
//!   attribute (always written in `"`) `&` `<` `"` and the whitespace a
//!   parser would normalise (tab, newline) become references;
//! - a carriage return is written `&#13;`, so that it survives a parser's
//!   line-end normalisation;
//! - a character XML 1.0 cannot carry at all (C0 controls but tab, newline
//!   and CR; U+FFFE, U+FFFF) is written as [`crate::names`] shows it
//!   (`\x01`, `\u{ffff}`): a receipt for a file whose name holds one is
//!   still well-formed, and shows the name as the log and `status` do.
//!
//! Why not quick-xml's escaping: its `escape`/`partial_escape` map only
//! `& < >` (and quotes), and pass U+FFFF, U+FFFE and C0 controls through
//! unchanged, which makes exactly the invalid receipts this module exists
//! to prevent; we would still look at every character ourselves.
//!
//! The packager calls this for every text node of every letter, so the
//! common case (nothing to escape: prose, base64) is one table look-up per
//! byte and no copy.

use std::borrow::Cow;

/// Where the text goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// Character data between tags.
    Text,
    /// The value of an attribute written between double quotes.
    Attribute,
}

/// Bytes that need a look in text / in an attribute: C0 controls, markup,
/// and 0xEF (the lead byte of U+FFFE and U+FFFF in UTF-8).
const fn table(attr: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = !(b == b'\t' as usize || b == b'\n' as usize) || attr;
        b += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = !attr;
    t[b'"' as usize] = attr;
    t[0xEF] = true;
    t
}
static TEXT: [bool; 256] = table(false);
static ATTR: [bool; 256] = table(true);

/// `text` (UTF-8) escaped for `place`; borrowed when nothing needs it.
pub fn escape(text: &[u8], place: In) -> Cow<'_, [u8]> {
    let table = match place {
        In::Text => &TEXT,
        In::Attribute => &ATTR,
    };
    // 0xEF also leads most of U+F000..U+FFFD, which need nothing.
    let noncharacter = |i: usize| matches!(text.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF]));
    let needs = |(i, &b): (usize, &u8)| table[usize::from(b)] && (b != 0xEF || noncharacter(i));
    let Some(first) = text.iter().enumerate().position(needs) else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::with_capacity(text.len() + 16);
    out.extend_from_slice(&text[..first]);
    let mut i = first;
    while i < text.len() {
        let b = text[i];
        i += 1;
        if !table[usize::from(b)] {
            out.push(b);
            continue;
        }
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#9;"),
            b'\n' => out.extend_from_slice(b"&#10;"),
            b'\r' => out.extend_from_slice(b"&#13;"),
            0xEF if matches!(text.get(i..i + 2), Some([0xBF, 0xBE | 0xBF])) => {
                // U+FFFE or U+FFFF.
                shown(&mut out, &text[i - 1..i + 2]);
                i += 2;
            }
            0xEF => out.push(b),
            // Any other C0 control.
            _ => shown(&mut out, &text[i - 1..i]),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a `&str`, appended to a `String`.
pub fn escape_into(out: &mut String, text: &str, place: In) {
    match escape(text.as_bytes(), place) {
        Cow::Borrowed(_) => out.push_str(text),
        // Escaping only replaces whole characters by ASCII: still UTF-8.
        Cow::Owned(v) => out.push_str(&String::from_utf8_lossy(&v)),
    }
}

/// A character XML cannot carry, as names are shown.
fn shown(out: &mut Vec<u8>, c: &[u8]) {
    let mut s = String::new();
    for c in String::from_utf8_lossy(c).chars() {
        crate::names::push_escape(&mut s, c);
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s, In::Text);
        out
    }

    fn attr(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s, In::Attribute);
        out
    }

    #[test]
    fn markup_and_line_ends() {
        assert_eq!(text("a<b>&c\r\n\t\"'"), "a&lt;b&gt;&amp;c&#13;\n\t\"'");
        assert_eq!(
            attr("a<b>&c\r\n\t\"'"),
            "a&lt;b>&amp;c&#13;&#10;&#9;&quot;'"
        );
        assert!(matches!(
            escape("vilkår æøå ïﬀ".as_bytes(), In::Text),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn characters_xml_cannot_carry_are_shown_as_names_are() {
        for (input, want) in [
            ("a\u{FFFF}b", "a\\u{ffff}b"),
            ("a\u{FFFE}b", "a\\u{fffe}b"),
            ("a\u{1}b\u{1b}", "a\\x01b\\x1b"),
            // Neighbours of U+FFFE/U+FFFF that XML does allow stay.
            ("\u{FFFD}\u{FEFF}\u{F000}", "\u{FFFD}\u{FEFF}\u{F000}"),
        ] {
            assert_eq!(text(input), want);
            assert_eq!(attr(input), want);
        }
    }
}
