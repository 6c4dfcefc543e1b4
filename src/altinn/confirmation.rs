//! Read confirmations: Altinn's `CorrespondenceConfirmations` files
//! (`correspondence.confirmations.2010.10.xsd`), which it dropped on the
//! sender's SFTP area to say which letters recipients had opened (and, for
//! letters that asked for it, confirmed).
//!
//! Each file is one link of a chain per system user: `SequenceNo` and
//! `PreviousSequenceNo` let the receiver see a missing file. Real files were
//! seen with a UTF-8 BOM and no XML declaration, and older ones in the
//! 2009/10 namespace (same shape); the parser takes all of those.
//!
//! The schema's `Confirmed` block also carries `UserSSN`,
//! `ConfirmedRoleList` and `AuthenticationMethod`. We keep only the time: a
//! national id has no business in our journal. The writer fills the other
//! three with an empty string, an empty string and 0 so the file stays valid.

use std::io::Read;

use serde::{Deserialize, Serialize};

use super::{
    datetime_of, is_xs_datetime, leaf, parse_u64, read_tree, tag, AltinnError, Element, Limits,
    Shape,
};

/// Namespace of the 2010/10 schema (the one we write).
pub const CONFIRMATIONS_NS: &str =
    "http://schemas.altinn.no/services/intermediary/correspondence/confirmations/2010/10";
/// Namespace of the older 2009/10 schema (same shape; read only).
pub const CONFIRMATIONS_NS_2009: &str =
    "http://schemas.altinn.no/services/intermediary/correspondence/confirmations/2009/10";

/// One confirmations file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmations {
    pub sequence_no: u64,
    /// 0 for the first file of a chain.
    pub previous_sequence_no: u64,
    /// The schema allows 3 to 15 characters.
    pub system_user_code: String,
    /// xs:dateTime.
    pub shipment_date_time: String,
    pub items: Vec<Confirmation>,
}

/// One letter that was read (and perhaps confirmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub service_code: String,
    pub service_edition: Option<String>,
    pub reportee: String,
    /// The letter's SendersReference (`CorrespondenceReference` in the file).
    pub senders_reference: String,
    /// xs:dateTime. The schema requires it; `None` only when reading a file
    /// that lacks it.
    pub read_date_time: Option<String>,
    /// xs:dateTime, when the recipient confirmed the letter.
    pub confirmed_date_time: Option<String>,
}

/// The file in the 2010/10 shape (UTF-8, with an XML declaration). Refuses
/// what would make it invalid against the schema: a SystemUserCode outside
/// 3..=15 characters, a time that is not an xs:dateTime, a letter without a
/// read time.
pub fn write_confirmations(c: &Confirmations) -> Result<String, AltinnError> {
    let code_len = c.system_user_code.chars().count();
    if !(3..=15).contains(&code_len) {
        return Err(AltinnError::Unwritable {
            field: "SystemUserCode",
            reason: format!(
                "'{}' has {code_len} characters; the confirmations schema allows 3 to 15",
                c.system_user_code
            ),
        });
    }
    check_time("ShipmentDateTime", &c.shipment_date_time)?;
    if i32::try_from(c.items.len()).is_err() {
        return Err(AltinnError::Unwritable {
            field: "CountConfirmationsInShipment",
            reason: format!("{} confirmations do not fit an xs:int", c.items.len()),
        });
    }
    let mut out = String::with_capacity(512 + c.items.len() * 400);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<CorrespondenceConfirmations xmlns=\"");
    out.push_str(CONFIRMATIONS_NS);
    out.push_str("\">\n");
    leaf(&mut out, 2, "SequenceNo", &c.sequence_no.to_string());
    leaf(
        &mut out,
        2,
        "PreviousSequenceNo",
        &c.previous_sequence_no.to_string(),
    );
    leaf(&mut out, 2, "SystemUserCode", &c.system_user_code);
    leaf(&mut out, 2, "ShipmentDateTime", &c.shipment_date_time);
    leaf(
        &mut out,
        2,
        "CountConfirmationsInShipment",
        &c.items.len().to_string(),
    );
    for item in &c.items {
        let Some(read) = &item.read_date_time else {
            return Err(AltinnError::Unwritable {
                field: "ReadDateTime",
                reason: format!(
                    "the confirmation of '{}' has no read time; the schema requires one",
                    item.senders_reference
                ),
            });
        };
        check_time("ReadDateTime", read)?;
        tag(&mut out, 2, "Confirmation", true);
        leaf(&mut out, 4, "ServiceCode", &item.service_code);
        if let Some(edition) = &item.service_edition {
            leaf(&mut out, 4, "ServiceEdition", edition);
        }
        leaf(&mut out, 4, "Reportee", &item.reportee);
        leaf(
            &mut out,
            4,
            "CorrespondenceReference",
            &item.senders_reference,
        );
        tag(&mut out, 4, "Read", true);
        leaf(&mut out, 6, "ReadDateTime", read);
        tag(&mut out, 4, "Read", false);
        if let Some(confirmed) = &item.confirmed_date_time {
            check_time("ConfirmedDateTime", confirmed)?;
            tag(&mut out, 4, "Confirmed", true);
            leaf(&mut out, 6, "UserSSN", "");
            leaf(&mut out, 6, "ConfirmedDateTime", confirmed);
            leaf(&mut out, 6, "ConfirmedRoleList", "");
            leaf(&mut out, 6, "AuthenticationMethod", "0");
            tag(&mut out, 4, "Confirmed", false);
        }
        tag(&mut out, 2, "Confirmation", false);
    }
    out.push_str("</CorrespondenceConfirmations>\n");
    Ok(out)
}

fn check_time(field: &'static str, value: &str) -> Result<(), AltinnError> {
    if is_xs_datetime(value) {
        Ok(())
    } else {
        Err(AltinnError::Unwritable {
            field,
            reason: format!("'{value}' is not an xs:dateTime"),
        })
    }
}

/// Read a confirmations file (2010/10 or 2009/10 namespace; any encoding
/// libxml2 detects, BOM or not, declaration or not) with the default
/// [`Limits`]. `CountConfirmationsInShipment` must match the number of
/// `Confirmation` elements: a mismatch means a cut or mangled file.
pub fn parse_confirmations(input: &mut dyn Read) -> Result<Confirmations, AltinnError> {
    parse_confirmations_with_limits(input, &Limits::default())
}

/// [`parse_confirmations`] with explicit limits.
pub fn parse_confirmations_with_limits(
    input: &mut dyn Read,
    limits: &Limits,
) -> Result<Confirmations, AltinnError> {
    let shape = Shape {
        kind: "CorrespondenceConfirmations (confirmations 2010/10 or 2009/10)",
        root: "CorrespondenceConfirmations",
        namespaces: &[CONFIRMATIONS_NS, CONFIRMATIONS_NS_2009],
        record_path: &["CorrespondenceConfirmations", "Confirmation"],
    };
    let mut items = Vec::new();
    let mut sink = |e: Element| -> Result<(), AltinnError> {
        let within = format!("the Confirmation at line {}", e.line);
        let read = match e.child("Read").and_then(|r| r.child("ReadDateTime")) {
            Some(t) => Some(datetime_of("ReadDateTime", t)?),
            None => None,
        };
        let confirmed = match e
            .child("Confirmed")
            .and_then(|r| r.child("ConfirmedDateTime"))
        {
            Some(t) => Some(datetime_of("ConfirmedDateTime", t)?),
            None => None,
        };
        items.push(Confirmation {
            service_code: e.required("ServiceCode", &within)?.text.trim().to_string(),
            service_edition: e.child("ServiceEdition").map(|s| s.text.trim().to_string()),
            reportee: e.required("Reportee", &within)?.text.trim().to_string(),
            senders_reference: e.required("CorrespondenceReference", &within)?.text.clone(),
            read_date_time: read,
            confirmed_date_time: confirmed,
        });
        Ok(())
    };
    let root = read_tree(input, &shape, limits, &mut sink)?;
    let within = "CorrespondenceConfirmations";
    let previous = root.required("PreviousSequenceNo", within)?;
    let previous_sequence_no = if previous.text.trim().is_empty() {
        0
    } else {
        parse_u64("PreviousSequenceNo", previous)?
    };
    let count = root.required("CountConfirmationsInShipment", within)?;
    let counted = parse_u64("CountConfirmationsInShipment", count)?;
    if counted != items.len() as u64 {
        return Err(AltinnError::Invalid {
            element: "CountConfirmationsInShipment",
            value: counted.to_string(),
            reason: format!(
                "does not match the {} Confirmation elements in the file",
                items.len()
            ),
            line: count.line,
        });
    }
    Ok(Confirmations {
        sequence_no: root.required_u64("SequenceNo", within)?,
        previous_sequence_no,
        system_user_code: root
            .required("SystemUserCode", within)?
            .text
            .trim()
            .to_string(),
        shipment_date_time: root.required_datetime("ShipmentDateTime", within)?,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const XSD_2010: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/altinn/correspondence.confirmations.2010.10.xsd"
    );

    fn sample() -> Confirmations {
        Confirmations {
            sequence_no: 3,
            previous_sequence_no: 2,
            system_user_code: "ABC-123".into(),
            shipment_date_time: "2026-05-31T12:00:00.000Z".into(),
            items: vec![
                Confirmation {
                    service_code: "4255".into(),
                    service_edition: Some("10".into()),
                    reportee: "974760673".into(),
                    senders_reference: "GEN-0001-00000000 æøå <&>".into(),
                    read_date_time: Some("2026-05-31T12:00:01Z".into()),
                    confirmed_date_time: None,
                },
                Confirmation {
                    service_code: "5504".into(),
                    service_edition: None,
                    reportee: "991825827".into(),
                    senders_reference: "GEN-0001-00000001".into(),
                    read_date_time: Some("2026-05-31T12:00:02+02:00".into()),
                    confirmed_date_time: Some("2026-05-31T13:00:00".into()),
                },
            ],
        }
    }

    fn parse_str(s: &str) -> Result<Confirmations, AltinnError> {
        parse_confirmations(&mut s.as_bytes())
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(parse_str(&write_confirmations(&c).unwrap()).unwrap(), c);
        let empty = Confirmations {
            items: vec![],
            previous_sequence_no: 0,
            ..c
        };
        assert_eq!(
            parse_str(&write_confirmations(&empty).unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn written_file_validates_against_the_official_xsd() {
        let Ok(xsd) = std::fs::read(XSD_2010) else {
            eprintln!("skipped: {XSD_2010} is not on this machine");
            return;
        };
        let schema = crate::xml::Schema::compile(&xsd).expect("the XSD compiles");
        struct Nothing;
        impl crate::xml::Events for Nothing {
            fn start(&mut self, _: &[u8], _: bool, _: crate::xml::Pos) {}
            fn text(&mut self, _: &[u8]) {}
            fn end(&mut self, _: &[u8], _: crate::xml::Pos) {}
        }
        for c in [
            sample(),
            Confirmations {
                items: vec![],
                ..sample()
            },
        ] {
            let xml = write_confirmations(&c).unwrap();
            let problems = crate::xml::parse(Some(&schema), &mut xml.as_bytes(), &mut Nothing);
            assert!(problems.is_empty(), "{problems:?}\n{xml}");
        }
    }

    #[test]
    fn bom_without_declaration_and_the_2009_namespace() {
        let xml = write_confirmations(&sample()).unwrap();
        let body = xml.split_once('\n').unwrap().1;
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(
            body.replace(CONFIRMATIONS_NS, CONFIRMATIONS_NS_2009)
                .as_bytes(),
        );
        assert_eq!(
            parse_confirmations(&mut bytes.as_slice()).unwrap(),
            sample()
        );
        // UTF-16 with BOM, as Altinn's own schemas are stored.
        let mut utf16 = vec![0xFF, 0xFE];
        for u in body.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(
            parse_confirmations(&mut utf16.as_slice()).unwrap(),
            sample()
        );
    }

    #[test]
    fn tolerant_reading() {
        let ns = CONFIRMATIONS_NS;
        let xml = format!(
            "<c:CorrespondenceConfirmations xmlns:c=\"{ns}\"><c:SequenceNo> 1 </c:SequenceNo>\
             <c:PreviousSequenceNo/><c:SystemUserCode>ABC</c:SystemUserCode>\
             <c:ShipmentDateTime>2026-01-01T00:00:00</c:ShipmentDateTime>\
             <c:CountConfirmationsInShipment>1</c:CountConfirmationsInShipment>\
             <c:Confirmation><c:ServiceCode>4255</c:ServiceCode><c:Reportee>974760673</c:Reportee>\
             <c:CorrespondenceReference>R1</c:CorrespondenceReference><c:Extra>x</c:Extra>\
             </c:Confirmation></c:CorrespondenceConfirmations>"
        );
        let c = parse_str(&xml).unwrap();
        assert_eq!(c.sequence_no, 1);
        assert_eq!(c.previous_sequence_no, 0);
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].read_date_time, None);
        assert_eq!(c.items[0].service_edition, None);
    }

    #[test]
    fn errors_are_typed() {
        let xml = write_confirmations(&sample()).unwrap();
        let wrong_count = xml.replacen(
            "<CountConfirmationsInShipment>2<",
            "<CountConfirmationsInShipment>3<",
            1,
        );
        assert!(matches!(
            parse_str(&wrong_count),
            Err(AltinnError::Invalid {
                element: "CountConfirmationsInShipment",
                ..
            })
        ));
        let no_ref = xml.replacen(
            "<CorrespondenceReference>GEN-0001-00000001</CorrespondenceReference>",
            "",
            1,
        );
        assert!(matches!(
            parse_str(&no_ref),
            Err(AltinnError::Missing {
                element: "CorrespondenceReference",
                ..
            })
        ));
        let bad_time = xml.replacen("2026-05-31T12:00:01Z", "yesterday", 1);
        assert!(matches!(
            parse_str(&bad_time),
            Err(AltinnError::Invalid {
                element: "ReadDateTime",
                ..
            })
        ));
        let other_ns = xml.replacen("/2010/10", "/2011/11", 1);
        assert!(matches!(
            parse_str(&other_ns),
            Err(AltinnError::WrongDocument { .. })
        ));
        for garbage in [
            &b""[..],
            b"\xEF\xBB\xBF",
            b"<a",
            b"\x00\x01\x02\xff\xfe",
            b"<<<>>>",
        ] {
            assert!(parse_confirmations(&mut &garbage[..]).is_err());
        }
    }

    #[test]
    fn writer_refuses_what_the_schema_refuses() {
        let mut c = sample();
        c.system_user_code = "ABCDEFGHIJKLMNOP".into();
        assert!(write_confirmations(&c).is_err());
        let mut c = sample();
        c.items[0].read_date_time = None;
        assert!(write_confirmations(&c).is_err());
        let mut c = sample();
        c.shipment_date_time = "2026-05-31".into();
        assert!(write_confirmations(&c).is_err());
    }
}
