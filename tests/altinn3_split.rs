//! Splitting a packaged part into Altinn 3 letters (`altinn3::letters::split`):
//! every mapped field in `letter.json`, attachment bytes decoded exactly,
//! stable idempotent keys, refused letters, hostile input.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dpv_batch::altinn3::letters::{idempotent_key, split, LetterMeta, SplitOptions};
use dpv_batch::altinn3::model::InitializeCorrespondences;
use dpv_batch::config::{Altinn3Config, ResourceEntry};
use uuid::Uuid;

const NS: Uuid = Uuid::from_u128(0x6ba7b8109dad11d180b400c04fd430c8);

/// Options as a config with "4255" and "5504/1" mapped, "now" fixed
/// before the samples' dates.
fn options() -> SplitOptions {
    let mut cfg = Altinn3Config::new("c", "k.pem".into());
    cfg.resources.insert(
        "4255".into(),
        ResourceEntry::Id("eformidling-dpv-administrasjon".into()),
    );
    cfg.resources.insert(
        "5504/1".into(),
        ResourceEntry::Table {
            resource: "eformidling-dpv-taushetsbelagt".into(),
            confidential: true,
        },
    );
    cfg.message_sender = Some("Bergen kommune".into());
    let mut o = SplitOptions::new(&cfg, NS, 0);
    o.now = UNIX_EPOCH + Duration::from_secs(1_790_000_000); // 2026-09
    o
}

fn request(l: &LetterMeta) -> InitializeCorrespondences {
    serde_json::from_slice(&std::fs::read(l.request_path()).unwrap()).unwrap()
}

fn json(l: &LetterMeta) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(l.request_path()).unwrap()).unwrap()
}

#[test]
fn a_sample_part_becomes_one_folder_per_letter_with_every_field_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("letters");
    let part = root().join("samples/valid/letters-bokmal.xml");
    let letters = split(&part, &out, &options()).unwrap();
    assert_eq!(letters.len(), 4);
    for (i, l) in letters.iter().enumerate() {
        assert_eq!(l.index as usize, i + 1);
        assert_eq!(l.dir, out.join(format!("L{:05}", i + 1)));
        assert!(l.refused.is_empty(), "{:?}", l.refused);
        assert_eq!(l.resource_id, "eformidling-dpv-administrasjon");
        assert_eq!(
            l.idempotent_key,
            idempotent_key(NS, "BRG-4601", &l.senders_reference, &l.reportee, 0)
        );
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["L00001", "L00002", "L00003", "L00004"]);

    // Letter 1: attachment, due date, notification EmailPreferred with reminder.
    let l = &letters[0];
    assert_eq!(l.senders_reference, "BYGG-2026-004711-V1");
    assert_eq!(l.attachments.len(), 1);
    assert_eq!(l.attachments[0].file_name, "vedtak-byggetillatelse.pdf");
    assert_eq!(l.attachments[0].path, l.dir.join("a001.bin"));
    let xml = std::fs::read_to_string(&part).unwrap();
    let data: String = tag(&xml, "Data")[0]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let expected = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(std::fs::read(&l.attachments[0].path).unwrap(), expected);
    assert_eq!(l.attachments[0].bytes, expected.len() as u64);
    let j = json(l);
    let c = &j["correspondence"];
    assert_eq!(
        j["recipients"],
        serde_json::json!(["urn:altinn:organization:identifier-no:974760673"])
    );
    assert_eq!(j["idempotentKey"], l.idempotent_key.to_string());
    assert_eq!(c["resourceId"], "eformidling-dpv-administrasjon");
    assert_eq!(c["sendersReference"], "BYGG-2026-004711-V1");
    assert_eq!(c["messageSender"], "Bergen kommune");
    assert_eq!(c["isConfidential"], false);
    assert_eq!(c["allowForwarding"], true);
    assert_eq!(c["content"]["language"], "nb");
    assert_eq!(
        c["content"]["messageTitle"],
        "Vedtak om byggetillatelse – gnr. 167 bnr. 42, Fjøsanger"
    );
    assert!(c["content"]["messageBody"]
        .as_str()
        .unwrap()
        .starts_with("<p>Bergen kommune har behandlet"));
    assert_eq!(c["requestedPublishTime"], "2026-12-01T06:00:00.000Z");
    assert_eq!(c["dueDateTime"], "2026-12-22T22:59:59.000Z");
    let a = &c["content"]["attachments"][0];
    assert_eq!(a["fileName"], "vedtak-byggetillatelse.pdf");
    assert_eq!(a["displayName"], "Vedtak om byggetillatelse");
    assert_eq!(a["isEncrypted"], false);
    assert_eq!(a["sendersReference"], "BYGG-2026-004711-D1");
    assert!(j.get("existingAttachments").is_none());
    let n = &c["notification"];
    assert_eq!(n["notificationTemplate"], "CustomMessage");
    assert_eq!(n["notificationChannel"], "EmailPreferred");
    assert_eq!(n["sendReminder"], true);
    assert_eq!(n["emailSubject"], "Melding mottatt i Altinn");
    assert_eq!(
        n["emailBody"],
        "Vedtak om byggetillatelse fra Bergen kommune"
    );
    assert_eq!(n["smsBody"], "Vedtak om byggetillatelse fra Bergen kommune");
    assert_eq!(
        n["reminderEmailBody"],
        "Vedtak om byggetillatelse fra Bergen kommune"
    );
    assert_eq!(n["emailContentType"], "Plain");
    assert!(n.get("customRecipients").is_none());
    // No Altinn 3 counterpart: not in the request at all.
    let text = std::fs::read_to_string(l.request_path()).unwrap();
    for gone in ["2026/004711-7", "4711", "Unspecified", "no-reply@bergen"] {
        assert!(
            !text.contains(&format!("\"{gone}\"")),
            "{gone} leaked: {text}"
        );
    }

    // Letter 2: e-mail to an explicit address only.
    let n = &json(&letters[1])["correspondence"]["notification"];
    assert_eq!(n["notificationChannel"], "Email");
    assert_eq!(
        n["customRecipients"],
        serde_json::json!([{"emailAddress": "post@fjordbakeri.example.no"}])
    );
    assert_eq!(n["overrideRegisteredContactInformation"], true);
    assert!(n.get("smsBody").is_none());

    // Letter 3: no notification, on behalf of, no due date, forwarding false.
    let c = &json(&letters[2])["correspondence"];
    assert!(c.get("notification").is_none());
    assert!(c.get("dueDateTime").is_none());
    assert!(c.get("allowForwarding").is_none());
    assert_eq!(c["propertyList"]["onBehalfOfOrgNr"], "940681243");
    assert_eq!(c["requestedPublishTime"], "2026-12-01T07:00:00.000Z");

    // Letter 4: reply link, SMSPreferred without reminder.
    let c = &json(&letters[3])["correspondence"];
    assert_eq!(
        c["replyOptions"],
        serde_json::json!([{"linkURL": "https://www.bergen.kommune.no/tilsyn",
                            "linkText": "Les om tilsyn på kommunens nettsider"}])
    );
    let n = &c["notification"];
    assert_eq!(n["notificationChannel"], "SmsPreferred");
    assert_eq!(n["sendReminder"], false);
    assert!(n.get("reminderSmsBody").is_none());
    // The request reads back into the model unchanged.
    let r = request(&letters[3]);
    assert_eq!(r.idempotent_key, Some(letters[3].idempotent_key));
}

#[test]
fn nynorsk_english_person_and_confidential() {
    let dir = tempfile::tempdir().unwrap();
    let part = root().join("samples/valid/letters-nynorsk-english.xml");
    let letters = split(&part, &dir.path().join("l"), &options()).unwrap();
    let langs: Vec<String> = letters
        .iter()
        .map(|l| {
            json(l)["correspondence"]["content"]["language"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        langs.contains(&"nn".to_string()) && langs.contains(&"en".to_string()),
        "{langs:?}"
    );
    let confidential: Vec<&LetterMeta> = letters
        .iter()
        .filter(|l| json(l)["correspondence"]["isConfidential"] == true)
        .collect();
    assert_eq!(confidential.len(), 1);
    assert_eq!(
        confidential[0].resource_id,
        "eformidling-dpv-taushetsbelagt"
    );
    let person = letters
        .iter()
        .find(|l| l.reportee == "15076500565")
        .unwrap();
    let j = json(person);
    assert_eq!(
        j["recipients"],
        serde_json::json!(["urn:altinn:person:identifier-no:15076500565"])
    );
    // IsReservable true: a reserved person is respected.
    assert_eq!(j["correspondence"]["ignoreReservation"], false);
    let both = letters.iter().find(|l| l.reportee == "808063603").unwrap();
    assert_eq!(
        json(both)["correspondence"]["notification"]["notificationChannel"],
        "EmailAndSms"
    );
}

#[test]
fn a_resplit_gives_the_same_keys_and_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("l");
    let part = root().join("samples/valid/letters-bokmal.xml");
    let first = split(&part, &out, &options()).unwrap();
    std::fs::write(out.join("L00001/a002.bin"), b"stale").unwrap();
    std::fs::create_dir_all(out.join("L00099")).unwrap();
    let again = split(&part, &out, &options()).unwrap();
    let keys = |v: &[LetterMeta]| v.iter().map(|l| l.idempotent_key).collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&again));
    assert!(!out.join("L00001/a002.bin").exists());
    assert!(!out.join("L00099").exists());
    // A deliberate re-send (generation 1) gets new keys.
    let mut o = options();
    o.generation = 1;
    let resent = split(&part, &out, &o).unwrap();
    assert!(keys(&first).iter().zip(keys(&resent)).all(|(a, b)| *a != b));
}

fn write_batch(path: &Path, letters: &str) {
    std::fs::write(
        path,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Correspondences xmlns=\"http://schemas.altinn.no/services/intermediary/correspondence/2009/10\">\n\
             <SystemUserCode>ABC</SystemUserCode><ShipmentReference>S</ShipmentReference>\n{letters}</Correspondences>\n"
        ),
    )
    .unwrap();
}

fn letter(reference: &str, title: &str, body: &str, attachments: &str) -> String {
    format!(
        "<Correspondence><ServiceCode>4255</ServiceCode><ServiceEdition>10</ServiceEdition>\
         <SendersReference>{reference}</SendersReference><Reportee>974760673</Reportee><Content>\
         <LanguageCode>1044</LanguageCode><MessageTitle>{title}</MessageTitle>{body}\
         <Attachments><BinaryAttachments>{attachments}</BinaryAttachments></Attachments></Content>\
         </Correspondence>\n"
    )
}

fn binary(file_name: &str, data: &str) -> String {
    format!(
        "<BinaryAttachment><FileName>{file_name}</FileName><Name>n</Name><Encrypted>true</Encrypted>\
         <Data>{data}</Data></BinaryAttachment>"
    )
}

#[test]
fn hostile_letters_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.xml");
    let huge_title = "T".repeat(1_000_000);
    let letters = [
        // 1: a file name that climbs out of the folder: stored as a001.bin, refused.
        letter("R1", "Ok", "", &binary("../../../etc/passwd.txt", "SGVp")),
        // 2: a 1 MB title: kept cut, counted whole, refused.
        letter("R2", &huge_title, "", &binary("a.pdf", "SGVp")),
        // 3: body with markup inside MessageBody (xs:anyType) and no body at all.
        letter(
            "R3",
            "Ok",
            "<MessageBody>Hei <b xmlns=\"\">du</b> &amp; <i xmlns=\"\" k=\"v\">deg</i></MessageBody>",
            &binary("b.pdf", "SGVp\nIQ=="),
        ),
        letter("R4", "Ok", "<MessageBody>   </MessageBody>", ""),
        // 5: broken base64 (the DPV layer would have stopped it; split still copes).
        letter("R5", "Ok", "", &binary("c.pdf", "SGV*")),
        // 6: a title of emoji: counted in UTF-16 units as the server counts.
        letter("R6", &"😀".repeat(128), "", ""),
    ];
    write_batch(&part, &letters.concat());
    let out = dir.path().join("out");
    let got = split(&part, &out, &options()).unwrap();
    assert_eq!(got.len(), 6);
    let codes = |l: &LetterMeta| l.refused.iter().map(|f| f.code.clone()).collect::<Vec<_>>();

    assert_eq!(codes(&got[0]), ["A3007"]);
    assert_eq!(got[0].attachments[0].path, got[0].dir.join("a001.bin"));
    assert!(
        !got[0].attachments[0].path.exists(),
        "a refused letter keeps no bytes"
    );
    assert!(!dir.path().join("etc").exists());

    assert_eq!(codes(&got[1]), ["A3003"]);
    assert!(got[1].refused[0].message.contains("1000000 characters"));
    let stored = std::fs::metadata(got[1].request_path()).unwrap().len();
    assert!(
        stored < 200_000,
        "the 1 MB title is not kept whole: {stored}"
    );

    assert!(got[2].refused.is_empty(), "{:?}", got[2].refused);
    let r = request(&got[2]);
    assert_eq!(
        r.correspondence.content.message_body,
        "Hei <b>du</b> & <i k=\"v\">deg</i>"
    );
    assert_eq!(std::fs::read(&got[2].attachments[0].path).unwrap(), b"Hei!");
    assert!(r.correspondence.content.attachments[0].is_encrypted);
    assert_eq!(
        r.correspondence.content.attachments[0].senders_reference,
        "R3/1"
    );

    assert!(got[3].refused.is_empty());
    assert_eq!(
        request(&got[3]).correspondence.content.message_body,
        "Ingen innhold"
    );

    assert_eq!(codes(&got[4]), ["A3022"]);
    assert_eq!(codes(&got[5]), ["A3003"], "128 emoji are 256 UTF-16 units");
}

#[test]
fn a_due_date_passed_since_the_file_was_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let part = root().join("samples/valid/letters-bokmal.xml");
    let mut o = options();
    o.now = SystemTime::now().max(UNIX_EPOCH + Duration::from_secs(1_900_000_000)); // 2030
    let got = split(&part, &dir.path().join("l"), &o).unwrap();
    let refused: Vec<_> = got
        .iter()
        .map(|l| {
            l.refused
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        refused,
        [vec!["A3009"], vec!["A3009"], vec![], vec!["A3009"]]
    );
}
