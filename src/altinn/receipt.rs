//! The processing receipt of one batch, in Altinn's `ReceiptExternal` shape
//! (`ReceiptExternalBasic.wsdl`, namespace
//! `http://schemas.altinn.no/services/Intermediary/Receipt/2009/10`).
//!
//! Altinn answered a batch with a main receipt referencing the shipment
//! (`ExternalShipmentReference` = the batch's ShipmentReference) and one
//! sub-receipt per letter referencing its `SendersReference`. We write the
//! elements the WSDL defines in its order (`LastChanged`, `ParentReceiptId`,
//! `ReceiptId`, `ReceiptStatusCode`, `ReceiptText`, `ReceiptTypeName`,
//! `References`, `SubReceipts`), so a document we write is a valid
//! `ReceiptExternal`. Reading ignores what it does not need
//! (`ReceiptHistory`, other reference types, nested sub-receipts).

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{leaf, read_tree, tag, AltinnError, Element, Limits, Shape};

/// Namespace of Altinn's receipt types.
pub const RECEIPT_NS: &str = "http://schemas.altinn.no/services/Intermediary/Receipt/2009/10";

/// Reference type naming the batch's ShipmentReference on the main receipt.
const SHIPMENT_REF: &str = "ExternalShipmentReference";
/// Reference type naming a letter's SendersReference on its sub-receipt.
const SENDERS_REF: &str = "SendersReference";

/// Altinn's `ReceiptStatusEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReceiptStatus {
    NotSet,
    #[serde(rename = "OK")]
    Ok,
    UnExpectedError,
    ValidationFailed,
    Rejected,
}

impl ReceiptStatus {
    pub const ALL: [ReceiptStatus; 5] = [
        ReceiptStatus::NotSet,
        ReceiptStatus::Ok,
        ReceiptStatus::UnExpectedError,
        ReceiptStatus::ValidationFailed,
        ReceiptStatus::Rejected,
    ];

    /// Altinn's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::NotSet => "NotSet",
            ReceiptStatus::Ok => "OK",
            ReceiptStatus::UnExpectedError => "UnExpectedError",
            ReceiptStatus::ValidationFailed => "ValidationFailed",
            ReceiptStatus::Rejected => "Rejected",
        }
    }
}

impl fmt::Display for ReceiptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReceiptStatus {
    type Err = String;
    /// Altinn's exact spelling, surrounding blanks allowed.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "'{s}' is not a receipt status (NotSet, OK, UnExpectedError, \
                     ValidationFailed, Rejected)"
                )
            })
    }
}

/// The receipt of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceipt {
    pub receipt_id: u64,
    /// xs:dateTime of the last change.
    pub last_changed: String,
    pub status: ReceiptStatus,
    pub text: String,
    /// The batch's ShipmentReference.
    pub shipment_reference: String,
    /// One per letter Altinn looked at; empty when the whole batch was
    /// refused (ValidationFailed, Rejected).
    pub letters: Vec<LetterReceipt>,
}

/// The receipt of one letter (a sub-receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LetterReceipt {
    pub receipt_id: u64,
    pub senders_reference: String,
    pub status: ReceiptStatus,
    pub text: String,
}

/// The receipt as a `ReceiptExternal` document (UTF-8). Sub-receipts carry
/// the main receipt's `LastChanged` and its id as `ParentReceiptId`.
pub fn write_receipt(r: &BatchReceipt) -> String {
    let mut out = String::with_capacity(1024 + r.letters.len() * 512);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<ReceiptExternal xmlns=\"");
    out.push_str(RECEIPT_NS);
    out.push_str("\">\n");
    leaf(&mut out, 2, "LastChanged", &r.last_changed);
    leaf(&mut out, 2, "ReceiptId", &r.receipt_id.to_string());
    leaf(&mut out, 2, "ReceiptStatusCode", r.status.as_str());
    leaf(&mut out, 2, "ReceiptText", &r.text);
    leaf(&mut out, 2, "ReceiptTypeName", "Correspondence");
    references(&mut out, 2, SHIPMENT_REF, &r.shipment_reference);
    if !r.letters.is_empty() {
        tag(&mut out, 2, "SubReceipts", true);
        let parent = r.receipt_id.to_string();
        for l in &r.letters {
            tag(&mut out, 4, "ReceiptExternal", true);
            leaf(&mut out, 6, "LastChanged", &r.last_changed);
            leaf(&mut out, 6, "ParentReceiptId", &parent);
            leaf(&mut out, 6, "ReceiptId", &l.receipt_id.to_string());
            leaf(&mut out, 6, "ReceiptStatusCode", l.status.as_str());
            leaf(&mut out, 6, "ReceiptText", &l.text);
            leaf(&mut out, 6, "ReceiptTypeName", "Correspondence");
            references(&mut out, 6, SENDERS_REF, &l.senders_reference);
            tag(&mut out, 4, "ReceiptExternal", false);
        }
        tag(&mut out, 2, "SubReceipts", false);
    }
    out.push_str("</ReceiptExternal>\n");
    out
}

fn references(out: &mut String, indent: usize, kind: &str, value: &str) {
    tag(out, indent, "References", true);
    tag(out, indent + 2, "Reference", true);
    leaf(out, indent + 4, "ReferenceTypeName", kind);
    leaf(out, indent + 4, "ReferenceValue", value);
    tag(out, indent + 2, "Reference", false);
    tag(out, indent, "References", false);
}

/// Read a receipt written by [`write_receipt`] (or by anyone else in the
/// same shape), with the default [`Limits`].
pub fn parse_receipt(input: &mut dyn Read) -> Result<BatchReceipt, AltinnError> {
    parse_receipt_with_limits(input, &Limits::default())
}

/// [`parse_receipt`] with explicit limits.
pub fn parse_receipt_with_limits(
    input: &mut dyn Read,
    limits: &Limits,
) -> Result<BatchReceipt, AltinnError> {
    let shape = Shape {
        kind: "ReceiptExternal (Altinn receipt, Receipt/2009/10)",
        root: "ReceiptExternal",
        namespaces: &[RECEIPT_NS],
        record_path: &["ReceiptExternal", "SubReceipts", "ReceiptExternal"],
    };
    let mut letters = Vec::new();
    let mut sink = |e: Element| -> Result<(), AltinnError> {
        let within = format!("the sub-receipt at line {}", e.line);
        letters.push(LetterReceipt {
            receipt_id: e.required_u64("ReceiptId", &within)?,
            status: status_of(&e, &within)?,
            text: text_of(&e, "ReceiptText"),
            senders_reference: reference(&e, SENDERS_REF, &within)?,
        });
        Ok(())
    };
    let root = read_tree(input, &shape, limits, &mut sink)?;
    let within = "the main receipt";
    Ok(BatchReceipt {
        receipt_id: root.required_u64("ReceiptId", within)?,
        last_changed: root.required_datetime("LastChanged", within)?,
        status: status_of(&root, within)?,
        text: text_of(&root, "ReceiptText"),
        shipment_reference: reference(&root, SHIPMENT_REF, within)?,
        letters,
    })
}

fn status_of(e: &Element, within: &str) -> Result<ReceiptStatus, AltinnError> {
    let s = e.required("ReceiptStatusCode", within)?;
    s.text.parse().map_err(|reason| AltinnError::Invalid {
        element: "ReceiptStatusCode",
        value: s.text.trim().to_string(),
        reason: format!("is not valid: {reason}"),
        line: s.line,
    })
}

/// An optional text child; absent (or nil) reads as empty.
fn text_of(e: &Element, name: &str) -> String {
    e.child(name).map(|c| c.text.clone()).unwrap_or_default()
}

/// The value of the first `References/Reference` of type `kind`.
fn reference(e: &Element, kind: &'static str, within: &str) -> Result<String, AltinnError> {
    e.children_named("References")
        .flat_map(|refs| refs.children_named("Reference"))
        .find(|r| r.child("ReferenceTypeName").map(|t| t.text.trim()) == Some(kind))
        .and_then(|r| r.child("ReferenceValue"))
        .map(|v| v.text.clone())
        .ok_or_else(|| AltinnError::Missing {
            element: match kind {
                SHIPMENT_REF => "References/Reference of type ExternalShipmentReference",
                _ => "References/Reference of type SendersReference",
            },
            within: within.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::altinn::Limits;

    fn sample() -> BatchReceipt {
        BatchReceipt {
            receipt_id: 41,
            last_changed: "2026-05-31T12:00:00.000Z".into(),
            status: ReceiptStatus::Ok,
            text: "Batch processed: 2 letters, 1 OK, 1 rejected".into(),
            shipment_reference: "GEN-0001 <&> æøå".into(),
            letters: vec![
                LetterReceipt {
                    receipt_id: 42,
                    senders_reference: "GEN-0001-00000000".into(),
                    status: ReceiptStatus::Ok,
                    text: "OK".into(),
                },
                LetterReceipt {
                    receipt_id: 43,
                    senders_reference: "  spaced\r\nref ".into(),
                    status: ReceiptStatus::Rejected,
                    text: "SendersReference already received".into(),
                },
            ],
        }
    }

    fn parse_str(s: &str) -> Result<BatchReceipt, AltinnError> {
        parse_receipt(&mut s.as_bytes())
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let xml = write_receipt(&r);
        assert_eq!(parse_str(&xml).unwrap(), r);
        let empty = BatchReceipt {
            letters: vec![],
            status: ReceiptStatus::ValidationFailed,
            text: String::new(),
            ..r
        };
        assert_eq!(parse_str(&write_receipt(&empty)).unwrap(), empty);
    }

    #[test]
    fn statuses_use_altinn_spelling() {
        for st in ReceiptStatus::ALL {
            assert_eq!(st.as_str().parse::<ReceiptStatus>(), Ok(st));
        }
        assert_eq!(ReceiptStatus::Ok.to_string(), "OK");
        assert!("Ok".parse::<ReceiptStatus>().is_err());
        assert_eq!(serde_json::to_string(&ReceiptStatus::Ok).unwrap(), "\"OK\"");
    }

    /// The written document is a valid `ReceiptExternal` by the WSDL's own
    /// schema (the Receipt/2009/10 part, cut out of the WSDL; its one import,
    /// the ReferenceType enumeration, replaced by xsd:string).
    #[test]
    fn written_receipt_matches_the_wsdl_schema() {
        let wsdl = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/altinn/ReceiptExternalBasic.wsdl"
        ));
        let Ok(wsdl) = wsdl else {
            eprintln!("skipped: the Altinn reference WSDL is not on this machine");
            return;
        };
        let open = "<xsd:schema elementFormDefault=\"qualified\" targetNamespace=\"http://schemas.altinn.no/services/Intermediary/Receipt/2009/10\"";
        let start = wsdl.find(open).expect("receipt schema in the WSDL");
        let end = start + wsdl[start..].find("</xsd:schema>").unwrap() + "</xsd:schema>".len();
        let xsd = wsdl[start..end]
            .replacen(
                "<xsd:schema ",
                "<xsd:schema xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" ",
                1,
            )
            .replace(
                "<xsd:import namespace=\"http://schemas.altinn.no/services/Intermediary/Shipment/2009/10\"/>",
                "",
            )
            .replace("type=\"q13:ReferenceType\"", "type=\"xsd:string\"");
        let schema = crate::xml::Schema::compile(xsd.as_bytes()).expect("schema compiles");
        struct Nothing;
        impl crate::xml::Events for Nothing {
            fn start(&mut self, _: &[u8], _: bool, _: crate::xml::Pos) {}
            fn text(&mut self, _: &[u8]) {}
            fn end(&mut self, _: &[u8], _: crate::xml::Pos) {}
        }
        let xml = write_receipt(&sample());
        let problems = crate::xml::parse(Some(&schema), &mut xml.as_bytes(), &mut Nothing);
        assert!(problems.is_empty(), "{problems:?}\n{xml}");
    }

    #[test]
    fn unknown_elements_and_foreign_namespaces_are_ignored() {
        let xml = r#"<r:ReceiptExternal xmlns:r="http://schemas.altinn.no/services/Intermediary/Receipt/2009/10" xmlns:x="urn:other">
  <r:LastChanged> 2026-05-31T12:00:00 </r:LastChanged>
  <r:ReceiptHistory>old</r:ReceiptHistory>
  <r:ReceiptId>7</r:ReceiptId>
  <x:ReceiptStatusCode>Rejected</x:ReceiptStatusCode>
  <r:ReceiptStatusCode>OK</r:ReceiptStatusCode>
  <r:References>
    <r:Reference><r:ReferenceTypeName>SendersReference</r:ReferenceTypeName><r:ReferenceValue>no</r:ReferenceValue></r:Reference>
    <r:Reference><r:ReferenceTypeName>ExternalShipmentReference</r:ReferenceTypeName><r:ReferenceValue>S1</r:ReferenceValue></r:Reference>
  </r:References>
  <r:Future><r:Nested>x</r:Nested></r:Future>
</r:ReceiptExternal>"#;
        let r = parse_str(xml).unwrap();
        assert_eq!(r.receipt_id, 7);
        assert_eq!(r.status, ReceiptStatus::Ok);
        assert_eq!(r.last_changed, "2026-05-31T12:00:00");
        assert_eq!(r.shipment_reference, "S1");
        assert_eq!(r.text, "");
        assert!(r.letters.is_empty());
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let r = sample();
        let xml = write_receipt(&r);
        let no_id = xml.replacen("<ReceiptId>41</ReceiptId>", "", 1);
        match parse_str(&no_id) {
            Err(AltinnError::Missing { element, within }) => {
                assert_eq!(element, "ReceiptId");
                assert_eq!(within, "the main receipt");
            }
            other => panic!("{other:?}"),
        }
        let no_ref = xml.replacen("GEN-0001-00000000", "x", 1).replacen(
            "<ReferenceTypeName>SendersReference</ReferenceTypeName>",
            "<ReferenceTypeName>Other</ReferenceTypeName>",
            1,
        );
        let e = parse_str(&no_ref).unwrap_err();
        assert!(matches!(e, AltinnError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("SendersReference"), "{e}");
        let bad_status = xml.replacen(">OK<", ">Okay<", 1);
        let e = parse_str(&bad_status).unwrap_err();
        assert!(
            matches!(
                e,
                AltinnError::Invalid {
                    element: "ReceiptStatusCode",
                    ..
                }
            ),
            "{e}"
        );
        let bad_id = xml.replacen("<ReceiptId>42<", "<ReceiptId>-1<", 1);
        assert!(matches!(
            parse_str(&bad_id),
            Err(AltinnError::Invalid {
                element: "ReceiptId",
                ..
            })
        ));
    }

    #[test]
    fn garbage_and_hostile_input_give_errors() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("binary", (0..=255u8).cycle().take(10_000).collect()),
            ("not xml", b"hello world".to_vec()),
            ("truncated", write_receipt(&sample()).as_bytes()[..300].to_vec()),
            (
                "wrong root",
                b"<Correspondences xmlns=\"http://schemas.altinn.no/services/intermediary/correspondence/2009/10\"/>".to_vec(),
            ),
            ("no namespace", b"<ReceiptExternal><ReceiptId>1</ReceiptId></ReceiptExternal>".to_vec()),
            (
                "entity bomb",
                b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><ReceiptExternal xmlns=\"http://schemas.altinn.no/services/Intermediary/Receipt/2009/10\">&b;</ReceiptExternal>".to_vec(),
            ),
            (
                "external entity",
                b"<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><ReceiptExternal xmlns=\"http://schemas.altinn.no/services/Intermediary/Receipt/2009/10\">&x;</ReceiptExternal>".to_vec(),
            ),
        ];
        for (name, bytes) in cases {
            assert!(parse_receipt(&mut bytes.as_slice()).is_err(), "{name}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let ns = RECEIPT_NS;
        // Deep nesting.
        let deep = format!(
            "<ReceiptExternal xmlns=\"{ns}\">{}{}</ReceiptExternal>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(matches!(
            parse_str(&deep),
            Err(AltinnError::TooLarge { .. })
        ));
        // Long text.
        let long = format!(
            "<ReceiptExternal xmlns=\"{ns}\"><ReceiptText>{}</ReceiptText></ReceiptExternal>",
            "x".repeat(2 << 20)
        );
        assert!(matches!(
            parse_str(&long),
            Err(AltinnError::TooLarge { .. })
        ));
        // Many records, and a small input cap.
        let mut r = sample();
        r.letters = (0..50)
            .map(|i| LetterReceipt {
                receipt_id: i,
                senders_reference: format!("R{i}"),
                status: ReceiptStatus::Ok,
                text: String::new(),
            })
            .collect();
        let xml = write_receipt(&r);
        let few = Limits {
            max_records: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse_receipt_with_limits(&mut xml.as_bytes(), &few),
            Err(AltinnError::TooLarge { .. })
        ));
        let small = Limits {
            max_input_bytes: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            parse_receipt_with_limits(&mut xml.as_bytes(), &small),
            Err(AltinnError::TooLarge { .. })
        ));
        // Many records are fine with the defaults: they are not held in the tree.
        let tight = Limits {
            max_tree_bytes: 4096,
            ..Limits::default()
        };
        assert_eq!(
            parse_receipt_with_limits(&mut xml.as_bytes(), &tight).unwrap(),
            r
        );
        // Lots of unknown elements count against the tree budget.
        let wide = format!(
            "<ReceiptExternal xmlns=\"{ns}\">{}</ReceiptExternal>",
            "<Unknown/>".repeat(1000)
        );
        assert!(matches!(
            parse_receipt_with_limits(&mut wide.as_bytes(), &tight),
            Err(AltinnError::TooLarge { .. })
        ));
    }
}
