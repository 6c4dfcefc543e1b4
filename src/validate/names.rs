//! Names that look the same but are not: an attachment's `FileName` and the
//! package entry meant for it can differ only in Unicode normalisation
//! (`é` as one code point, NFC, or as `e` plus a combining accent, NFD, as
//! macOS file systems write it) or in case. Byte for byte they are different
//! names, and "no file named 'vedtak.pdf'" beside a listing that shows
//! `vedtak.pdf` sends the reader hunting; so the message says what differs.

use unicode_normalization::UnicodeNormalization;

/// A sentence to add when `wanted` is not among `offered` but a name there
/// differs from it only in normalisation or case; `None` otherwise.
pub fn near_miss<'a>(wanted: &str, offered: impl Iterator<Item = &'a str>) -> Option<String> {
    let nfc: String = wanted.nfc().collect();
    let folded = nfc.to_lowercase();
    let mut case_only = None;
    for name in offered {
        if name == wanted {
            continue;
        }
        let other: String = name.nfc().collect();
        if other == nfc {
            return Some(format!(
                "; the package has '{name}', which differs only in Unicode normalisation \
                 (the same letters written with other code points, e.g. NFD from macOS): \
                 write the name the same way in both"
            ));
        }
        if case_only.is_none() && other.to_lowercase() == folded {
            case_only = Some(format!(
                "; the package has '{name}', which differs only in upper and lower case"
            ));
        }
    }
    case_only
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_case_are_named() {
        let nfd = "vedtak-e\u{301}.pdf"; // e + combining acute
        let nfc = "vedtak-\u{e9}.pdf";
        let hint = near_miss(nfc, [nfd, "other.pdf"].into_iter()).expect("hint");
        assert!(
            hint.contains("differs only in Unicode normalisation"),
            "{hint}"
        );
        assert!(hint.contains(nfd));
        let hint = near_miss("Vedtak.PDF", ["vedtak.pdf"].into_iter()).expect("hint");
        assert!(hint.contains("only in upper and lower case"), "{hint}");
        assert_eq!(near_miss("a.pdf", ["b.pdf"].into_iter()), None);
    }
}
