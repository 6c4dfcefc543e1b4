#!/usr/bin/env python3
"""Rebuild the encoding samples in samples/valid/ from one batch text.

utf16le.xml   UTF-16LE with BOM, declared encoding="utf-16"
utf16be.xml   UTF-16BE with BOM, declared encoding="utf-16"
latin1.xml    ISO-8859-1, declared encoding="ISO-8859-1"
utf8-bom.xml  UTF-8 with BOM and no XML declaration (as Altinn's own files were seen)

Run from anywhere: python3 samples/src/make-encodings.py
"""
from pathlib import Path

VALID = Path(__file__).resolve().parent.parent / "valid"

BATCH = """<!-- {what} -->
<Correspondences xmlns="http://schemas.altinn.no/services/intermediary/correspondence/2009/10">
  <SystemUserCode>TRD-5001</SystemUserCode>
  <ShipmentReference>{ref}</ShipmentReference>
  <SequenceNo>{seq}</SequenceNo>
  <Correspondence>
    <ServiceCode>4255</ServiceCode>
    <ServiceEdition>6</ServiceEdition>
    <SendersReference>{ref}-MILJØ-0001</SendersReference>
    <Reportee>974761076</Reportee>
    <Content>
      <LanguageCode>1044</LanguageCode>
      <MessageTitle>Pålegg om opprydding: forsøpling ved Ørneveien 7</MessageTitle>
      <MessageSummary>Kommunen pålegger opprydding innen fire uker. Særlige hensyn: nærhet til bekk.</MessageSummary>
      <MessageBody>Vi viser til tilsyn på eiendommen. Avfallet må fjernes og leveres godkjent mottak. Æ, ø og å skal komme fram uendret.</MessageBody>
    </Content>
    <VisibleDateTime>2026-12-02T07:00:00+01:00</VisibleDateTime>
    <DueDateTime>2026-12-30T15:00:00+01:00</DueDateTime>
    <Notifications>
      <Notification>
        <ShipmentDateTime>2026-12-02T09:00:00+01:00</ShipmentDateTime>
        <LanguageCode>1044</LanguageCode>
        <NotificationType>VarselDPVMedRevarsel</NotificationType>
        <TextTokens>
          <TextToken>
            <TokenNum>0</TokenNum>
            <TokenValue>Pålegg om opprydding fra Trondheim kommune</TokenValue>
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
  <Correspondence>
    <ServiceCode>4255</ServiceCode>
    <ServiceEdition>4</ServiceEdition>
    <SendersReference>{ref}-KULTUR-0002</SendersReference>
    <Reportee>940681243</Reportee>
    <Content>
      <LanguageCode>2068</LanguageCode>
      <MessageTitle>Tilskot til kulturføremål: søknaden er motteken</MessageTitle>
      <MessageBody>Søknaden om tilskot til Olavsfestdagane sitt barneprogram er motteken og blir handsama før jul.</MessageBody>
    </Content>
    <VisibleDateTime>2026-12-02T07:00:00+01:00</VisibleDateTime>
  </Correspondence>
</Correspondences>
"""


def write(name, data):
    (VALID / name).write_bytes(data)
    print(f"wrote {VALID / name} ({len(data)} bytes)")


def main():
    def text(what, ref, seq, decl):
        head = f'<?xml version="1.0" encoding="{decl}"?>\n' if decl else ""
        return head + BATCH.format(what=what, ref=ref, seq=seq)

    # str.encode('utf-16') writes a BOM and little-endian code units.
    t = text("UTF-16LE med BOM (slik Altinns egne XSD-filer er lagret).", "TRD-U16LE", 501, "utf-16")
    data = t.replace("\n", "\r\n").encode("utf-16")
    assert data[:2] == b"\xff\xfe"
    write("utf16le.xml", data)

    t = text("UTF-16BE med BOM.", "TRD-U16BE", 502, "utf-16")
    write("utf16be.xml", b"\xfe\xff" + t.encode("utf-16-be"))

    t = text("ISO-8859-1 (Latin-1): æøå er én byte hver.", "TRD-LATIN1", 503, "ISO-8859-1")
    write("latin1.xml", t.encode("iso-8859-1"))

    t = text("UTF-8 med BOM og uten XML-deklarasjon.", "TRD-U8BOM", 504, None)
    write("utf8-bom.xml", "\ufeff".encode("utf-8") + t.encode("utf-8"))


if __name__ == "__main__":
    main()
