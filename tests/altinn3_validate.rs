//! `dpv-batch validate --target altinn3` through the real binary: each A3
//! rule fires on a letter Altinn II took, with the right code and line, and
//! the valid samples pass once their services have resources.

mod common;
use common::*;

use std::time::{Duration, SystemTime};

fn day(n: i64) -> String {
    let now = SystemTime::now();
    let t = if n >= 0 {
        now + Duration::from_secs(n as u64 * 86_400)
    } else {
        now - Duration::from_secs((-n) as u64 * 86_400)
    };
    dpv_batch::clock::format_time(t)
}

/// The pieces of one letter, each overridable.
struct L {
    service: &'static str,
    title: String,
    summary: String,
    body: String,
    attachments: String,
    after_content: String,
    notifications: String,
}

impl Default for L {
    fn default() -> Self {
        L {
            service: "<ServiceCode>4255</ServiceCode><ServiceEdition>10</ServiceEdition>",
            title: "Vedtak om tilskudd".into(),
            summary: "Søknaden er innvilget.".into(),
            body: "Se vedlagt vedtak.".into(),
            attachments: String::new(),
            after_content: String::new(),
            notifications: String::new(),
        }
    }
}

fn attachment(file_name: &str) -> String {
    format!(
        "<BinaryAttachment><FileName>{file_name}</FileName><Name>Vedlegg</Name>\
         <Encrypted>false</Encrypted><Data>SGVpIQ==</Data></BinaryAttachment>"
    )
}

fn notification(transport: &str, address: &str, token: &str) -> String {
    let address = if address.is_empty() {
        String::new()
    } else {
        format!("<ReceiverAdress>{address}</ReceiverAdress>")
    };
    format!(
        "<Notification><ShipmentDateTime>{}</ShipmentDateTime><LanguageCode>1044</LanguageCode>\
         <NotificationType>VarselDPVMedRevarsel</NotificationType><TextTokens><TextToken>\
         <TokenNum>0</TokenNum><TokenValue>{token}</TokenValue></TextToken></TextTokens>\
         <RecieverEndPoints><ReceiverEndPoint><TransportType>{transport}</TransportType>\
         {address}</ReceiverEndPoint></RecieverEndPoints></Notification>",
        day(1)
    )
}

/// One letter per line, so a finding's line names its letter.
fn batch(letters: &[L]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Correspondences xmlns=\"http://schemas.altinn.no/services/intermediary/correspondence/2009/10\">\n<SystemUserCode>ABC-1</SystemUserCode><ShipmentReference>A3-RULES</ShipmentReference>\n",
    );
    for (i, l) in letters.iter().enumerate() {
        let attachments = if l.attachments.is_empty() {
            String::new()
        } else {
            format!(
                "<Attachments><BinaryAttachments>{}</BinaryAttachments></Attachments>",
                l.attachments
            )
        };
        let notifications = if l.notifications.is_empty() {
            String::new()
        } else {
            format!("<Notifications>{}</Notifications>", l.notifications)
        };
        s.push_str(&format!(
            "<Correspondence>{}<SendersReference>REF-{i}</SendersReference><Reportee>974760673</Reportee>\
             <Content><LanguageCode>1044</LanguageCode><MessageTitle>{}</MessageTitle>\
             <MessageSummary>{}</MessageSummary><MessageBody>{}</MessageBody>{attachments}</Content>\
             {}{notifications}</Correspondence>\n",
            l.service, l.title, l.summary, l.body, l.after_content
        ));
    }
    s.push_str("</Correspondences>\n");
    s
}

/// A config whose resources table maps `first` (e.g. "4255/10" or "4255").
fn config(dir: &std::path::Path, first: &str) -> std::path::PathBuf {
    let path = dir.join("dpv.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[paths]
inbox = "in"
outbox = "out"
failed = "failed"
archive = "archive"
state = "state"
[sender]
system_user_code = "ABC-1"
[transport]
kind = "altinn3"
[transport.altinn3]
client_id = "c"
private_key = "key.pem"
key_id = "k"
[transport.altinn3.resources]
"{first}" = "eformidling-dpv-administrasjon"
"5504/1" = {{ resource = "eformidling-dpv-taushetsbelagt", confidential = true }}
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_a3_rule_fires_on_its_letter() {
    let many: String = (0..101).map(|i| attachment(&format!("x{i}.txt"))).collect();
    let letters = vec![
        // line 4: a good letter.
        L {
            attachments: attachment("vedtak.pdf"),
            notifications: notification("EmailPreferred", "", "Du har fått post"),
            ..L::default()
        },
        L {
            service: "<ServiceCode>4255</ServiceCode><ServiceEdition>3</ServiceEdition>",
            ..L::default()
        },
        L {
            title: "# Overskrift".into(),
            ..L::default()
        },
        L {
            title: "x".repeat(256),
            ..L::default()
        },
        L {
            summary: "s".repeat(300),
            ..L::default()
        },
        L {
            body: "b".repeat(30_001),
            ..L::default()
        },
        L {
            attachments: attachment("brev.odt"),
            ..L::default()
        },
        L {
            attachments: attachment("CON.pdf") + &attachment("a|b.pdf"),
            ..L::default()
        },
        L {
            attachments: many,
            ..L::default()
        },
        L {
            after_content: "<DueDateTime>2020-01-01T00:00:00Z</DueDateTime>".into(),
            ..L::default()
        },
        L {
            after_content: format!(
                "<VisibleDateTime>{}</VisibleDateTime><DueDateTime>{}</DueDateTime>",
                day(20),
                day(10)
            ),
            ..L::default()
        },
        L {
            notifications: notification("Email", "", ""),
            ..L::default()
        },
        L {
            notifications: notification("Email", "", "a") + &notification("SMS", "", "b"),
            ..L::default()
        },
        L {
            notifications: notification("SMS", "12", "Du har post"),
            ..L::default()
        },
        L {
            after_content: "<ReplyOptions><ReplyOption><Url><LinkText>Svar</LinkText>\
                            <LinkUrl>http://example.org/svar</LinkUrl></Url></ReplyOption></ReplyOptions>"
                .into(),
            ..L::default()
        },
        L {
            body: "<p>HTML is tolerated in the body</p>".into(),
            title: "Faktura 2026/11 - forfall 20.12.".into(),
            ..L::default()
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a3.xml");
    std::fs::write(&path, batch(&letters)).unwrap();
    let cfg = config(dir.path(), "4255/10");

    // As Altinn II sees it, the batch is fine.
    let (code, json, _) = validate_json(&path, &[]);
    assert_eq!(errors(&json, None), vec![], "{json}");
    assert_eq!(code, 0);

    let (code, json, _) = validate_json(
        &path,
        &["--target", "altinn3", "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{json}");
    assert_eq!(json[0]["letters"], 16);
    let found = errors(&json, Some("altinn3"));
    let expected: Vec<(u64, String)> = [
        (5, "A3001"),
        (6, "A3002"),
        (7, "A3003"),
        (8, "A3004"),
        (9, "A3005"),
        (10, "A3006"),
        (11, "A3007"),
        (11, "A3007"),
        (12, "A3008"),
        (13, "A3009"),
        (14, "A3010"),
        (15, "A3011"),
        (16, "A3015"),
        (17, "A3021"),
        (18, "A3017"),
    ]
    .iter()
    .map(|(l, c)| (*l, c.to_string()))
    .collect();
    assert_eq!(found, expected, "{json}");
    assert_eq!(errors(&json, None).len(), expected.len(), "{json}");
    let messages: Vec<&str> = json[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].contains("4255/3"), "{}", messages[0]);
    assert!(messages[5].contains("'.odt'"), "{}", messages[5]);
    assert!(messages[6].contains("reserved Windows"), "{}", messages[6]);
    assert!(messages[7].contains("'|'"), "{}", messages[7]);

    // Default target: unchanged behaviour, A3 rules not run.
    let (code, json, _) = validate_json(&path, &["--target", "altinn2"]);
    assert_eq!((code, errors(&json, None)), (0, vec![]));
}

#[test]
fn valid_samples_pass_altinn3_when_their_services_have_resources() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "4255");
    for path in files(&root().join("samples/valid"), &[".xml", ".zip"]) {
        let (code, json, _) = validate_json(
            &path,
            &["--target", "altinn3", "--config", cfg.to_str().unwrap()],
        );
        // The samples' due dates are in December 2026: past that, A3009 is right.
        let found: Vec<_> = errors(&json, None)
            .into_iter()
            .filter(|(_, c)| c != "A3009")
            .collect();
        assert_eq!(found, vec![], "{}: {json}", path.display());
        if found.is_empty() && json[0]["valid"] == true {
            assert_eq!(code, 0);
        }
    }
}

#[test]
fn altinn3_without_a_config_knows_the_two_published_resources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.xml");
    std::fs::write(&path, batch(&[L::default()])).unwrap();
    let (code, json, _) = validate_json(&path, &["--target", "altinn3"]);
    assert_eq!((code, errors(&json, None)), (0, vec![]), "{json}");

    // A config without [transport.altinn3] is a usage error, said so.
    let cfg = dir.path().join("local.toml");
    std::fs::write(
        &cfg,
        "[paths]\ninbox=\"i\"\noutbox=\"o\"\nfailed=\"f\"\narchive=\"a\"\nstate=\"s\"\n\
         [sender]\nsystem_user_code=\"ABC\"\n[transport]\nkind=\"local\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["validate", "--target", "altinn3", "--config"])
        .arg(&cfg)
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [transport.altinn3] section"));
}
