//! Norwegian identifiers: organisation numbers and national ids (fødselsnummer).
//!
//! Both end in mod-11 check digits. Altinn rejects a letter to a number that
//! fails them only after upload, one letter at a time; checking here turns a
//! night's lost letter into an error at the line where it is.

/// Weights for the single check digit of a 9-digit organisation number.
const ORG_WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
/// Weights for the two check digits of an 11-digit national id.
const FNR_WEIGHTS_1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const FNR_WEIGHTS_2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn digits(s: &str) -> Option<Vec<u32>> {
    s.chars().map(|c| c.to_digit(10)).collect()
}

/// The mod-11 check digit for `digits` under `weights`, or `None` when the
/// remainder makes the number impossible (a check "digit" of 10).
fn mod11(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// A valid 9-digit organisation number.
pub fn is_org_number(s: &str) -> bool {
    match digits(s) {
        Some(d) if d.len() == 9 => mod11(&d[..8], &ORG_WEIGHTS) == Some(d[8]),
        _ => false,
    }
}

/// A valid 11-digit national id (fødselsnummer or D-number): both check digits.
pub fn is_national_id(s: &str) -> bool {
    match digits(s) {
        Some(d) if d.len() == 11 => {
            mod11(&d[..9], &FNR_WEIGHTS_1) == Some(d[9])
                && mod11(&d[..10], &FNR_WEIGHTS_2) == Some(d[10])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_organisation_numbers() {
        // Brønnøysundregistrene, Digitaliseringsdirektoratet, Skatteetaten.
        for good in ["974760673", "991825827", "974761076"] {
            assert!(is_org_number(good), "{good} should be valid");
        }
        for bad in [
            "974760674",  // wrong check digit
            "97476067",   // too short
            "9747606730", // too long
            "97476067a",  // not digits
            "",
        ] {
            assert!(!is_org_number(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn remainder_one_makes_every_number_invalid() {
        // 1234567 0 gives 11 - (sum mod 11) = 10: no check digit can fix it.
        for last in 0..=9 {
            assert!(!is_org_number(&format!("12345670{last}")));
        }
    }

    #[test]
    fn remainder_zero_means_check_digit_zero() {
        // 1,0,0,0,0,0,0,4 weighs 3 + 4*2 = 11: remainder 0, check digit 0.
        assert!(is_org_number("100000040"));
        assert!(!is_org_number("100000041"));
    }

    #[test]
    fn known_national_ids() {
        // Synthetic numbers with valid check digits, not real people.
        for good in ["15076500565", "01019010046", "15127510110", "31129910065"] {
            assert!(is_national_id(good), "{good} should be valid");
        }
        for bad in [
            "15076500566",
            "15076500575",
            "1507650056",
            "1507650056x",
            "974760673",
        ] {
            assert!(!is_national_id(bad), "{bad} should be invalid");
        }
    }
}
