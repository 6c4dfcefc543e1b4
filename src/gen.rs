//! Synthetic batches: valid DPV batch files of any size, written streaming.
//!
//! Used by `dpv-batch gen`, the benchmarks (a 200 MB batch), the demo and the
//! tests. Letters rotate through the three languages and carry Norwegian
//! letters (æøå) so that encoding bugs show.

use std::io::{self, Write};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub system_user_code: String,
    pub shipment_reference: String,
    pub letters: u64,
    /// Size of one attachment per letter, in bytes before base64; 0 for none.
    pub attachment_bytes: usize,
    /// Prefix of every SendersReference (followed by the letter's number).
    pub reference_prefix: String,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            system_user_code: "ABC-123".into(),
            shipment_reference: "GEN-0001".into(),
            letters: 10,
            attachment_bytes: 0,
            reference_prefix: "GEN-0001-".into(),
        }
    }
}

/// Valid organisation numbers used as recipients.
pub const REPORTEES: [&str; 8] = [
    "974760673",
    "991825827",
    "974761076",
    "891417772",
    "931706691",
    "874391506",
    "808063603",
    "940681243",
];

const LANGS: [(&str, &str, &str); 3] = [
    (
        "1044",
        "Vedtak om tilskudd",
        "Søknaden din om tilskudd er behandlet. Se vedlagt vedtak.",
    ),
    (
        "2068",
        "Vedtak om tilskot",
        "Søknaden din om tilskot er handsama. Sjå vedlagt vedtak.",
    ),
    (
        "1033",
        "Grant decision",
        "Your application has been processed. See the attached decision.",
    ),
];

/// Base64 of `len` pseudo-random bytes, wrapped at 76 columns like MIME.
fn attachment_data(len: usize, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        bytes.extend_from_slice(&state.to_le_bytes()[..(len - bytes.len()).min(8)]);
    }
    crate::b64::encode(&bytes)
}

/// Write a valid batch (UTF-8) to `out`.
pub fn write_batch(spec: &Spec, out: &mut dyn Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<Correspondences xmlns="http://schemas.altinn.no/services/intermediary/correspondence/2009/10">"#
    )?;
    // What comes from the command line is text, escaped like all we write.
    let text = |s: &str| {
        let mut out = String::new();
        crate::xml_text::escape_into(&mut out, s, crate::xml_text::In::Text);
        out
    };
    writeln!(
        out,
        "  <SystemUserCode>{}</SystemUserCode>",
        text(&spec.system_user_code)
    )?;
    writeln!(
        out,
        "  <ShipmentReference>{}</ShipmentReference>",
        text(&spec.shipment_reference)
    )?;
    let prefix = text(&spec.reference_prefix);
    // One attachment body is shared by all letters: generating it once keeps
    // generation fast, and validation still reads every byte of every copy.
    let data = (spec.attachment_bytes > 0).then(|| attachment_data(spec.attachment_bytes, 7));
    for i in 0..spec.letters {
        let (lang, title, summary) = LANGS[(i % 3) as usize];
        let reportee = REPORTEES[(i % REPORTEES.len() as u64) as usize];
        write!(
            out,
            r#"  <Correspondence>
    <ServiceCode>4255</ServiceCode>
    <ServiceEdition>10</ServiceEdition>
    <SendersReference>{prefix}{i:08}</SendersReference>
    <Reportee>{reportee}</Reportee>
    <Content>
      <LanguageCode>{lang}</LanguageCode>
      <MessageTitle>{title} nr. {i}</MessageTitle>
      <MessageSummary>{summary}</MessageSummary>
      <MessageBody>&lt;p&gt;{summary}&lt;/p&gt;</MessageBody>
"#
        )?;
        if let Some(data) = &data {
            write!(
                out,
                r#"      <Attachments>
        <BinaryAttachments>
          <BinaryAttachment>
            <FileName>vedtak-{i}.pdf</FileName>
            <Name>Vedtak</Name>
            <Encrypted>false</Encrypted>
            <Data>{data}</Data>
          </BinaryAttachment>
        </BinaryAttachments>
      </Attachments>
"#
            )?;
        }
        write!(
            out,
            r#"    </Content>
    <VisibleDateTime>2026-12-01T08:00:00</VisibleDateTime>
    <Notifications>
      <Notification>
        <ShipmentDateTime>2026-12-01T09:00:00</ShipmentDateTime>
        <LanguageCode>{lang}</LanguageCode>
        <NotificationType>VarselDPVMedRevarsel</NotificationType>
        <TextTokens>
          <TextToken>
            <TokenNum>0</TokenNum>
            <TokenValue>{title}</TokenValue>
          </TextToken>
        </TextTokens>
        <RecieverEndPoints>
          <ReceiverEndPoint>
            <TransportType>EmailPreferred</TransportType>
          </ReceiverEndPoint>
        </RecieverEndPoints>
      </Notification>
    </Notifications>
  </Correspondence>
"#
        )?;
    }
    writeln!(out, "</Correspondences>")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_the_command_line_are_escaped() {
        let spec = Spec {
            shipment_reference: "A&B<1>".into(),
            reference_prefix: "R&".into(),
            letters: 1,
            ..Spec::default()
        };
        let mut out = Vec::new();
        write_batch(&spec, &mut out).unwrap();
        struct Nothing;
        impl crate::xml::Events for Nothing {
            fn start(&mut self, _: &[u8], _: bool, _: crate::xml::Pos) {}
            fn text(&mut self, _: &[u8]) {}
            fn end(&mut self, _: &[u8], _: crate::xml::Pos) {}
        }
        let problems = crate::xml::parse(None, &mut &out[..], &mut Nothing);
        assert!(problems.is_empty(), "{problems:?}");
        let xml = String::from_utf8(out).unwrap();
        assert!(xml.contains("<ShipmentReference>A&amp;B&lt;1&gt;</ShipmentReference>"));
        assert!(xml.contains("<SendersReference>R&amp;00000000</SendersReference>"));
    }
}
