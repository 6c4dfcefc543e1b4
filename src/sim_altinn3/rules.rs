//! Altinn's small checks, one function each: identifiers, recipient lists,
//! file names, plain text, e-mail and mobile numbers, reply links.
//!
//! Each says in its doc which C# it mirrors. Where Altinn leans on a library
//! the simulator does not have (ReverseMarkdown + Markdig for "plain text",
//! libphonenumber for mobile numbers), the function is an approximation that
//! agrees on the cases Altinn's own tests use, and says where it may differ.

use std::collections::BTreeMap;

use super::model::{parse_enum, utf16_len, ExternalReference, TRANSMISSION_TYPE};
use super::problem::{codes, AltinnError};

pub const ORG_URN: &str = "urn:altinn:organization:identifier-no";
pub const PERSON_URN: &str = "urn:altinn:person:identifier-no";
pub const EMAIL_URN: &str = "urn:altinn:person:idporten-email";
pub const LEGACY_URN: &str = "urn:altinn:person:legacy-selfidentified";
const RESOURCE_URN: &str = "urn:altinn:resource:";

fn digits(s: &str, n: usize) -> Option<Vec<u32>> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.bytes().map(|b| u32::from(b - b'0')).collect())
}

/// Modulus 11 control digit over `d` with `weights`; `None` when it would be 10.
fn mod11(d: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = d.iter().zip(weights).map(|(a, b)| a * b).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c),
    }
}

/// A Norwegian organisation number: nine digits, the last a mod-11 control.
pub fn org_number_valid(s: &str) -> bool {
    digits(s, 9).is_some_and(|d| mod11(&d[..8], &[3, 2, 7, 6, 5, 4, 3, 2]) == Some(d[8]))
}

/// A fødselsnummer/D-nummer: eleven digits, two mod-11 controls
/// (`StringExtensions.IsSocialSecurityNumberWithNoPrefix`).
pub fn person_number_valid(s: &str) -> bool {
    digits(s, 11).is_some_and(|d| {
        mod11(&d[..9], &[3, 7, 6, 1, 8, 9, 4, 5, 2]) == Some(d[9])
            && mod11(&d[..10], &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]) == Some(d[10])
    })
}

/// `WithoutPrefix`: what follows the last colon.
pub fn without_prefix(s: &str) -> &str {
    s.rsplit(':').next().unwrap_or(s)
}

/// `IsEmailAddress`: one `@` with something on both sides, no colon.
fn is_email_address(s: &str) -> bool {
    let v = s.strip_prefix(&format!("{EMAIL_URN}:")).unwrap_or(s);
    if v.trim().is_empty() || v.contains(':') {
        return false;
    }
    match v.find('@') {
        Some(at) => at > 0 && at < v.len() - 1 && !v[at + 1..].contains('@'),
        None => false,
    }
}

/// `RecipientListAttribute`: 1..500 non-empty recipients, each an
/// organisation (`0192:` or URN prefix, nine digits), a person (eleven
/// digits, optional URN, valid controls), an ID-porten e-mail URN or a legacy
/// self-identified URN. The patterns are case-sensitive, as Altinn's are.
pub fn recipient_list(list: &[Option<String>]) -> Result<(), String> {
    if list.is_empty() {
        return Err("Recipients can not be empty".into());
    }
    if list.len() > 500 {
        return Err("Recipients can contain at most 500 recipients".into());
    }
    for r in list {
        let Some(r) = r.as_deref().filter(|r| !r.trim().is_empty()) else {
            return Err("Recipients can not contain null or empty values".into());
        };
        let org = r
            .strip_prefix("0192:")
            .or_else(|| r.strip_prefix(&format!("{ORG_URN}:")))
            .is_some_and(|d| digits(d, 9).is_some());
        let person_digits = r.strip_prefix(&format!("{PERSON_URN}:")).unwrap_or(r);
        let person = digits(person_digits, 11).is_some();
        let email = r
            .strip_prefix(&format!("{EMAIL_URN}:"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('\n'));
        let legacy = r
            .strip_prefix(&format!("{LEGACY_URN}:"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(':') && !rest.contains('\n'));
        if !(org || person || email || legacy) {
            return Err(format!("Recipient should be an organization number in the format '{ORG_URN}:organizationnumber' or the format countrycode:organizationnumber, for instance 0192:910753614, a national identity number, an idporten email URN in the format '{EMAIL_URN}:email', or a legacy selfidentified URN in the format '{LEGACY_URN}:username'"));
        }
        if person && !person_number_valid(person_digits) {
            return Err("The given Recipient national identity number is not valid".into());
        }
        if email && !is_email_address(r) {
            return Err("The given Recipient email address is not valid".into());
        }
    }
    Ok(())
}

/// The mapper's `NormalizeRecipientToUrn`: lower case, then the URN form
/// (`0192:910075946` → `urn:altinn:organization:identifier-no:910075946`).
/// Only called on recipients that passed [`recipient_list`].
pub fn normalize_recipient(r: &str) -> String {
    let lower = r.to_lowercase();
    if lower.starts_with(&format!("{LEGACY_URN}:")) {
        return lower;
    }
    let bare = without_prefix(&lower);
    if digits(bare, 9).is_some() {
        format!("{ORG_URN}:{bare}")
    } else if person_number_valid(bare) {
        format!("{PERSON_URN}:{bare}")
    } else if is_email_address(bare) {
        format!("{EMAIL_URN}:{bare}")
    } else {
        lower
    }
}

/// `ResourceIdentifierAttribute`: `^(?:urn:altinn:resource:)?[^:]{1,255}$`
/// (an empty value passes; `[Required]` catches it).
pub fn resource_id_format(id: &str) -> bool {
    let bare = id.strip_prefix(RESOURCE_URN).unwrap_or(id);
    id.is_empty() || (!bare.is_empty() && !bare.contains(':') && utf16_len(bare) <= 255)
}

/// `ExternalReferencesAttribute` on `BaseCorrespondenceExt`.
pub fn external_references_attribute(refs: &[ExternalReference]) -> Result<(), String> {
    if refs.len() > 10 {
        return Err("externalReferences can contain at most 10 references".into());
    }
    if refs.iter().any(|r| r.reference_type.value == 5) {
        return Err(
            "Cannot initialize a correspondence with pre-existing transmission defined".into(),
        );
    }
    let types: Vec<_> = refs
        .iter()
        .filter(|r| r.reference_type.value == 6)
        .collect();
    if let [only] = types.as_slice() {
        let ok = only
            .reference_value
            .as_deref()
            .and_then(|v| parse_enum(v, TRANSMISSION_TYPE))
            .is_some_and(|e| e.value >= 1 && e.is_defined());
        if !ok {
            return Err(
                "DialogportenTransmissionType referenceValue must be a valid transmission type"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `PropertyListAttribute`: ≤10 entries, keys ≤50, values ≤300.
pub fn property_list(map: &BTreeMap<String, String>) -> Result<(), String> {
    if map.len() > 10 {
        return Err("propertyList can contain at most 10 properties".into());
    }
    for (k, v) in map {
        if utf16_len(k) > 50 {
            return Err(format!(
                "propertyList Key can not be longer than 50. Length:{}, KeyValue:{k}",
                utf16_len(k)
            ));
        }
        if utf16_len(v) > 300 {
            return Err(format!(
                "propertyList Value can not be longer than 300. Length:{}, Value:{v}",
                utf16_len(v)
            ));
        }
    }
    Ok(())
}

/// `AttachmentHelper.ValidateAttachmentName`, in Altinn's order.
pub fn file_name_error(name: Option<&str>) -> Option<AltinnError> {
    const ALLOWED: &[&str] = &[
        ".doc", ".xls", ".docx", ".xlsx", ".ppt", ".pps", ".zip", ".pdf", ".html", ".txt", ".xml",
        ".jpg", ".jpeg", ".gif", ".bmp", ".png", ".json", ".csv", ".dcm", ".dicom",
    ];
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Some(codes::filename_missing());
    };
    if utf16_len(name) > 255 {
        return Some(codes::filename_too_long());
    }
    // Path.GetExtension on Linux: from the last '.' of the last '/' segment.
    let segment = name.rsplit('/').next().unwrap_or(name);
    let ext = match segment.rfind('.') {
        Some(i) if i + 1 < segment.len() => segment[i..].to_lowercase(),
        _ => String::new(),
    };
    if !ALLOWED.contains(&ext.as_str()) {
        return Some(codes::filetype_not_allowed());
    }
    if name.chars().any(|c| {
        matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*') || (c as u32) < 0x20
    }) {
        return Some(codes::filename_invalid());
    }
    let upper = name.to_ascii_uppercase();
    let stem = upper.split('.').next().unwrap_or("");
    let reserved = matches!(stem, "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'));
    if reserved {
        return Some(codes::reserved_windows_name());
    }
    None
}

// ---------------------------------------------------------------------------
// Plain text (titles, message senders).

/// `TextValidation.ValidatePlainText`, approximated. Altinn converts the text
/// from HTML to Markdown (ReverseMarkdown), renders that Markdown back to
/// plain text (Markdig, advanced extensions, lists disabled) and compares the
/// two without whitespace, backticks and backslashes. So a title fails when
/// it holds HTML tags or entities, or Markdown that rendering would change:
/// ATX/setext headings, block quotes, thematic breaks, fenced code, links and
/// images, and emphasis-like delimiters (`*`, `_`, `~`, `^`, `++`, `==`)
/// that CommonMark's flanking rules let open and close. Numbered or bulleted
/// lines stay plain (the list parser is removed).
pub fn is_plain_text(text: &str) -> bool {
    let t: String = text.chars().filter(|c| *c != '`' && *c != '\\').collect();
    !(has_html_tag(&t) || has_entity(&t) || has_block_markdown(&t) || has_inline_markdown(&t))
}

fn has_html_tag(t: &str) -> bool {
    let b = t.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        if c != b'<' {
            return false;
        }
        let next = b.get(i + 1).copied().unwrap_or(b' ');
        let starts_tag = next.is_ascii_alphabetic()
            || next == b'!'
            || (next == b'/' && b.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic()));
        starts_tag && b[i + 1..].contains(&b'>')
    })
}

fn has_entity(t: &str) -> bool {
    t.match_indices('&').any(|(i, _)| {
        let rest = &t[i + 1..];
        let body: String = rest.chars().take_while(|c| *c != ';').collect();
        if body.len() == rest.len() || body.is_empty() || body.len() > 32 {
            return false;
        }
        if let Some(num) = body.strip_prefix('#') {
            let hex = num.strip_prefix(['x', 'X']);
            match hex {
                Some(h) => !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()),
                None => !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()),
            }
        } else {
            body.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && body.chars().all(|c| c.is_ascii_alphanumeric())
        }
    })
}

fn has_block_markdown(t: &str) -> bool {
    let mut previous_text = false;
    for raw in t.lines() {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let line = raw.trim_start_matches(' ');
        let trimmed = line.trim_end();
        if indent <= 3 && !trimmed.is_empty() {
            let hashes = line.bytes().take_while(|c| *c == b'#').count();
            if (1..=6).contains(&hashes)
                && line[hashes..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == ' ' || c == '\t')
            {
                return true;
            }
            if line.starts_with('>') || line.starts_with("~~~") {
                return true;
            }
            for mark in ['*', '-', '_'] {
                let only = trimmed.chars().all(|c| c == mark || c == ' ' || c == '\t');
                if only && trimmed.chars().filter(|c| *c == mark).count() >= 3 {
                    return true;
                }
            }
            let underline = |m: char| trimmed.chars().all(|c| c == m);
            if previous_text && (underline('=') || underline('-')) {
                return true;
            }
        }
        previous_text = !trimmed.is_empty();
    }
    false
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace())
}

fn has_inline_markdown(t: &str) -> bool {
    // Links and images: [text](target).
    if let Some(open) = t.find('[') {
        if let Some(mid) = t[open..].find("](") {
            if t[open + mid..].contains(')') {
                return true;
            }
        }
    }
    let chars: Vec<char> = t.chars().collect();
    for delim in ['*', '_', '~', '^', '+', '='] {
        let min_run = if matches!(delim, '+' | '=') { 2 } else { 1 };
        let mut opened = false;
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != delim {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && chars[i] == delim {
                i += 1;
            }
            if i - start < min_run {
                continue;
            }
            let prev = if start == 0 { ' ' } else { chars[start - 1] };
            let next = chars.get(i).copied().unwrap_or(' ');
            let left = !next.is_whitespace()
                && (!is_punct(next) || prev.is_whitespace() || is_punct(prev));
            let right = !prev.is_whitespace()
                && (!is_punct(prev) || next.is_whitespace() || is_punct(next));
            let (can_open, can_close) = if delim == '_' {
                (
                    left && (!right || is_punct(prev)),
                    right && (!left || is_punct(next)),
                )
            } else {
                (left, right)
            };
            if opened && can_close {
                return true;
            }
            opened |= can_open;
        }
    }
    false
}

// ---------------------------------------------------------------------------
// Notification recipients and reply options.

/// The e-mail pattern of `InitializeCorrespondenceHelper` (local part of
/// letters, digits, æøå and `!#$%&'*+-=?^_`{|}~` in dot-separated runs, or
/// quoted; a domain of 1–9 labels and a 2–14 letter TLD, or an IPv4
/// address), and no `;`.
pub fn email_valid(s: &str) -> bool {
    if s.contains(';') {
        return false;
    }
    let local_char = |c: char| c.is_ascii_alphanumeric() || "æøåÆØÅ!#$%&'*+-=?^_`{|}~".contains(c);
    let (local_ok, domain) = if let Some(rest) = s.strip_prefix('"') {
        match rest.find('"') {
            Some(end) if end > 0 => (true, rest[end + 1..].strip_prefix('@')),
            _ => (false, None),
        }
    } else {
        match s.find('@') {
            Some(at) => {
                let local = &s[..at];
                let ok = !local.is_empty()
                    && local
                        .split('.')
                        .all(|run| !run.is_empty() && run.chars().all(local_char));
                (ok, Some(&s[at + 1..]))
            }
            None => (false, None),
        }
    };
    let Some(domain) = domain.filter(|_| local_ok) else {
        return false;
    };
    let parts: Vec<&str> = domain.split('.').collect();
    let ipv4 = parts.len() == 4
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if ipv4 {
        return true;
    }
    let label_char = |c: char| c.is_ascii_alphanumeric() || "æøåÆØÅ".contains(c);
    let label_ok = |l: &str| {
        let cs: Vec<char> = l.chars().collect();
        !cs.is_empty()
            && cs.len() <= 63
            && label_char(cs[0])
            && label_char(cs[cs.len() - 1])
            && cs.iter().all(|c| label_char(*c) || *c == '-')
    };
    match parts.split_last() {
        Some((tld, labels)) => {
            (1..=9).contains(&labels.len())
                && labels.iter().all(|l| label_ok(l))
                && (2..=14).contains(&tld.len())
                && tld.chars().all(|c| c.is_ascii_alphabetic())
        }
        None => false,
    }
}

/// `MobileNumberHelper.IsValidMobileNumber`, approximated: `+` or `00`, then
/// digits only, E.164 length (8–15 digits with the country code); Norwegian
/// (`+47`) numbers have eight digits and do not start with 0 or 1. Altinn
/// asks libphonenumber, which knows every country's ranges; for other
/// countries this only checks the shape.
pub fn mobile_valid(s: &str) -> bool {
    let rest = match s.strip_prefix('+').or_else(|| s.strip_prefix("00")) {
        Some(r) => r,
        None => return false,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) || !(8..=15).contains(&rest.len()) {
        return false;
    }
    match rest.strip_prefix("47") {
        Some(national) => national.len() == 8 && !national.starts_with(['0', '1']),
        None => !rest.starts_with('0'),
    }
}

/// `ValidateReplyOptions` for one link: ≤255, a well-formed absolute URI,
/// `https://`.
pub fn reply_url_valid(url: &str) -> bool {
    if utf16_len(url) > 255 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some(rest) = url
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !host.starts_with(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(org_number_valid("974760673"));
        assert!(org_number_valid("991825827"));
        assert!(
            !org_number_valid("910075946"),
            "efm's mock org fails mod-11"
        );
        assert!(!org_number_valid("123456789"));
        assert!(org_number_valid("999999999"));
        assert!(person_number_valid("07827199405"));
        assert!(!person_number_valid("07827199404"));
    }

    #[test]
    fn recipient_lists_as_altinn_checks_them() {
        let one = |r: &str| recipient_list(&[Some(r.to_string())]);
        // CorrespondenceInitializationTests.InitializeCorrespondence_With_Invalid_Recipient_Returns_BadRequest
        for bad in [
            "invalid-recipient",
            "123456789",
            "1234567812390123",
            "1234:123456789",
        ] {
            assert!(one(bad).is_err(), "{bad}");
        }
        for good in [
            "0192:123456789",
            "07827199405",
            "urn:altinn:organization:identifier-no:991825827",
            "urn:altinn:person:idporten-email:si-user@example.com",
        ] {
            assert!(one(good).is_ok(), "{good}");
        }
        assert!(recipient_list(&[]).is_err());
        assert_eq!(
            normalize_recipient("0192:910075946"),
            "urn:altinn:organization:identifier-no:910075946"
        );
        assert_eq!(
            normalize_recipient("07827199405"),
            "urn:altinn:person:identifier-no:07827199405"
        );
    }

    #[test]
    fn plain_text_as_altinn_tests_it() {
        // InitializeCorrespondence_With_HTML_Or_Markdown_In_Title_fails
        assert!(!is_plain_text("<h1>test</h1>"));
        assert!(!is_plain_text("# test"));
        for plain in [
            "test",
            "Faktura for mars 2026",
            "Re: søknad #123",
            "A/S Bedrift & Co",
            "1. Varsel",
            "- Viktig",
            "2 * 3 * 4",
            "snake_case_name",
            "a < b > c",
            "Pris: 100 kr (inkl. mva)",
        ] {
            assert!(is_plain_text(plain), "{plain}");
        }
        for marked in [
            "**viktig**",
            "_viktig_",
            "[lenke](https://x.no)",
            "> sitat",
            "a &amp; b",
            "H~2~O",
            "==merket==",
        ] {
            assert!(!is_plain_text(marked), "{marked}");
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name_error(Some("brev.pdf")), None);
        assert_eq!(file_name_error(Some("BREV.PDF")), None);
        assert_eq!(file_name_error(Some("CONSOLE.txt")), None);
        assert_eq!(file_name_error(None).map(|e| e.code), Some(2010));
        assert_eq!(
            file_name_error(Some(&format!("{}.pdf", "a".repeat(252)))).map(|e| e.code),
            Some(2011)
        );
        assert_eq!(
            file_name_error(Some("brev.odt")).map(|e| e.code),
            Some(2013)
        );
        assert_eq!(file_name_error(Some("brev")).map(|e| e.code), Some(2013));
        assert_eq!(file_name_error(Some("a|b.pdf")).map(|e| e.code), Some(2012));
        assert_eq!(file_name_error(Some("con.txt")).map(|e| e.code), Some(2021));
        assert_eq!(file_name_error(Some("LPT1")).map(|e| e.code), Some(2013));
    }

    #[test]
    fn addresses() {
        assert!(email_valid("post@firma.no"));
        assert!(email_valid("ola.nordmann@sub.firma.no"));
        assert!(!email_valid("post@firma"));
        assert!(!email_valid("post@@firma.no"));
        assert!(!email_valid("a@b.no;c@d.no"));
        assert!(mobile_valid("+4799999999"));
        assert!(mobile_valid("004791234567"));
        assert!(!mobile_valid("99999999"));
        assert!(!mobile_valid("+4712345678"));
        assert!(reply_url_valid("https://www.altinn.no/svar"));
        assert!(!reply_url_valid("http://www.altinn.no"));
        assert!(!reply_url_valid("https://"));
        assert!(!reply_url_valid("www.altinn.no"));
    }
}
