//! Operator commands end to end: `replay`, `purge`, `status` filters and
//! receipt names, with the real binary, a real journal, the local transport
//! and the folder simulator as Altinn (as tests/pipeline.rs). Assertions
//! are exact: which receipts, which files in which folder, which rows.

mod common;
use common::ops::*;
use common::*;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn replay_of_a_rejected_file_is_rejected_again_with_a_second_receipt() {
    let ws = Workspace::new();
    ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
    ws.run_once();
    assert_eq!(outcome(&ws.read("outbox/bad.xml.receipt.xml")), "Rejected");

    let said = ws.ok(&["replay", "bad.xml"]);
    assert!(said.contains("replay 1 of file 1 (bad.xml)"), "{said}");
    ws.run_once();
    assert_eq!(
        ws.names("outbox"),
        set_names(&["bad.xml.receipt.xml", "bad.2.xml.receipt.xml"])
    );
    let second = ws.read("outbox/bad.2.xml.receipt.xml");
    assert_eq!(outcome(&second), "Rejected");
    assert_eq!(second.matches("code=\"DPV003\"").count(), 4, "{second}");
    // The original stays where it was; the replay has its own place.
    assert_eq!(
        ws.names("failed"),
        set_names(&[
            "bad.xml",
            "bad.xml.errors.txt",
            "bad.2.xml",
            "bad.2.xml.errors.txt"
        ])
    );
    assert!(ws.names("state/replay").iter().all(|n| n.starts_with('.')));
    // The journal links the new file to the old one.
    let d = ws.status_json(&["--file", "2"]);
    assert_eq!(d["file"]["name"], "bad.xml");
    assert_eq!(d["file"]["outcome"], "Rejected");
    assert_eq!(d["replay_of"]["of_file_id"], 1);
    assert_eq!(d["replay_of"]["force"], false);
    let d = ws.status_json(&["--file", "1"]);
    assert_eq!(d["replays"][0]["file_id"], 2);
    assert_eq!(d["replays"][0]["state"], "taken");
}

#[test]
fn replay_of_an_archived_file_is_a_duplicate_unless_forced() {
    let ws = Workspace::new();
    let _sim = ws.sim();
    ws.drop_file("a.xml", &sample("valid/letters-nynorsk-english.xml"));
    ws.run_once();
    assert_eq!(outcome(&ws.read("outbox/a.xml.receipt.xml")), "Accepted");
    let (refs, _) = processed(&ws.path("altinn"));
    assert_eq!(refs.len(), 4);
    assert!(refs.values().all(|&n| n == 1), "{refs:?}");

    // Without --force: said at once, then refused like a file dropped again.
    let said = ws.ok(&["replay", "a.xml"]);
    assert!(
        said.contains("without --force the replay will be refused as a duplicate"),
        "{said}"
    );
    ws.run_once();
    let refused = ws.read("outbox/a.2.xml.receipt.xml");
    assert_eq!(outcome(&refused), "Rejected");
    assert!(
        refused.contains("duplicate: the same content was already submitted as 'a.xml'")
            && refused.contains("replay --force"),
        "{refused}"
    );
    let (refs, _) = processed(&ws.path("altinn"));
    assert!(refs.values().all(|&n| n == 1), "not sent: {refs:?}");

    // --force (by id): sent again; Altinn had every letter already.
    let said = ws.ok(&["replay", "--force", "1"]);
    assert!(said.contains("forced past the duplicate check"), "{said}");
    assert!(!said.contains("refused as a duplicate"), "{said}");
    ws.run_once();
    let (refs, _) = processed(&ws.path("altinn"));
    assert_eq!(refs.len(), 4);
    assert!(refs.values().all(|&n| n == 2), "received twice: {refs:?}");
    let forced = ws.read("outbox/a.3.xml.receipt.xml");
    assert_eq!(
        tag(&forced, "Text")
            .iter()
            .filter(|t| t.contains("already received"))
            .count(),
        4,
        "{forced}"
    );
    let d = ws.status_json(&["--file", "3"]);
    assert_eq!(d["replay_of"]["of_file_id"], 1);
    assert_eq!(d["replay_of"]["force"], true);
    assert_eq!(d["parts"].as_array().unwrap().len(), 1);
    let d = ws.status_json(&["--file", "2"]);
    assert_eq!(d["replay_of"]["force"], false);
    // a.xml now names three finished files: the error lists them by id.
    let out = ws.cmd(&["replay", "a.xml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'a.xml' names 3 files"), "{err}");
    for id in ["1", "2", "3"] {
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with(&format!("{id}  a.xml"))),
            "{err}"
        );
    }
}

#[test]
fn replay_while_the_daemon_runs() {
    let ws = Workspace::new();
    let _daemon = Killed(
        Command::new(bin())
            .args(["run", "--config"])
            .arg(ws.path("dpv.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon"),
    );
    ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
    assert!(wait_for(|| ws.path("outbox/bad.xml.receipt.xml").exists()));
    ws.ok(&["replay", "bad.xml"]);
    assert!(wait_for(|| ws
        .path("outbox/bad.2.xml.receipt.xml")
        .exists()));
    assert_eq!(ws.ids(&[]), vec![2, 1]);
    assert_eq!(ws.ids(&["--state", "done"]), vec![2, 1]);
}

/// `kill -9` the replay at each of its steps: the killed one never sends
/// anything; the next replay abandons it, and exactly one new input follows.
#[test]
fn a_replay_killed_between_its_steps_sends_exactly_once() {
    for stop in ["replay-journalled", "replay-placed"] {
        let ws = Workspace::new();
        ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
        ws.run_once();
        drop(ws.stopped_at(&["replay", "bad.xml"], stop));

        // The daemon takes nothing in: the request was never made ready.
        ws.run_once();
        assert_eq!(ws.ids(&[]), vec![1], "{stop}");
        assert_eq!(
            ws.names("failed"),
            set_names(&["bad.xml", "bad.xml.errors.txt"])
        );

        let said = ws.ok(&["replay", "bad.xml"]);
        assert!(
            said.contains("replay request 1 was left unfinished")
                && said.contains("replay 2 of file 1"),
            "{stop}: {said}"
        );
        assert_eq!(
            ws.names("state/replay"),
            set_names(&[".lock", "00000002"]),
            "{stop}: the killed one's copy is gone"
        );
        ws.run_once();
        assert_eq!(ws.ids(&[]), vec![2, 1], "{stop}");
        assert_eq!(
            ws.names("outbox"),
            set_names(&["bad.xml.receipt.xml", "bad.2.xml.receipt.xml"]),
            "{stop}"
        );
        let d = ws.status_json(&["--file", "1"]);
        let states: Vec<&str> = d["replays"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, vec!["abandoned", "taken"], "{stop}");
    }
}

/// `kill -9` the daemon after it journalled a replay as a new file and
/// before it moved the copy into staging: the next run finishes the move;
/// one new input, one receipt.
#[test]
fn a_daemon_killed_while_taking_a_replay_in_finishes_it_once() {
    let ws = Workspace::new();
    ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
    ws.run_once();
    ws.ok(&["replay", "bad.xml"]);
    drop(ws.stopped_at(&["run"], "replay-taken"));
    assert_eq!(ws.ids(&["--state", "received"]), vec![2]);
    assert_eq!(ws.names("state/replay"), set_names(&[".lock", "00000001"]));

    ws.run_once();
    assert_eq!(ws.ids(&[]), vec![2, 1]);
    assert_eq!(ws.ids(&["--state", "done"]), vec![2, 1]);
    assert_eq!(ws.names("state/replay"), set_names(&[".lock"]));
    assert_eq!(
        ws.names("outbox"),
        set_names(&["bad.xml.receipt.xml", "bad.2.xml.receipt.xml"])
    );
}

/// Three finished files (sent, rejected, recent) and one waiting for its
/// receipt, the first two and the waiting one 100 days old.
fn purge_workspace() -> Workspace {
    let ws = Workspace::new();
    {
        let _sim = ws.sim();
        ws.drop_file("old.xml", &sample("valid/letters-nynorsk-english.xml"));
        ws.drop_file("bad.xml", &sample("invalid/dpv003-bad-reportee.xml"));
        ws.run_once();
        ws.drop_file("new.xml", &sample("valid/latin1.xml"));
        ws.run_once();
    }
    // No Altinn now: this one waits for its receipt.
    ws.drop_file("waiting.xml", &sample("valid/utf16be.xml"));
    let out = ws.cmd(&["run", "--once", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(3));
    let j = ws.journal();
    for id in [1, 2, 4] {
        j.backdate_file(id, 100 * DAY).unwrap();
    }
    for rel in [
        "outbox/old.xml.receipt.xml",
        "outbox/bad.xml.receipt.xml",
        "archive/old.xml",
        "failed/bad.xml",
        "failed/bad.xml.errors.txt",
    ] {
        set_mtime(&ws.path(rel), 100 * DAY);
    }
    ws
}

#[test]
fn purge_dry_run_lists_exactly_and_changes_nothing_then_purge_removes_exactly_that() {
    let ws = purge_workspace();
    let snapshot = |ws: &Workspace| {
        (
            ws.names("outbox"),
            ws.names("archive"),
            ws.names("failed"),
            ws.ids(&[]),
        )
    };
    let before = snapshot(&ws);
    assert_eq!(before.3, vec![4, 3, 2, 1]);
    let p = |rel: &str| ws.path(rel).display().to_string();
    let bad_id = ws.status_json(&["--file", "bad.xml"])["file"]["id"]
        .as_i64()
        .unwrap();
    let old_id = ws.status_json(&["--file", "old.xml"])["file"]["id"]
        .as_i64()
        .unwrap();
    let (first, second) = if old_id < bad_id {
        ("old", "bad")
    } else {
        ("bad", "old")
    };
    let lines = |verb: &str| {
        let mut expected = String::new();
        for which in [first, second] {
            if which == "old" {
                expected += &format!("{verb} {}\n", p("archive/old.xml"));
                expected += &format!("{verb} {}\n", p("outbox/old.xml.receipt.xml"));
                expected +=
                    &format!("{verb} journal rows of file {old_id} (old.xml, Accepted, finished ");
            } else {
                expected += &format!("{verb} {}\n", p("failed/bad.xml"));
                expected += &format!("{verb} {}\n", p("failed/bad.xml.errors.txt"));
                expected += &format!("{verb} {}\n", p("outbox/bad.xml.receipt.xml"));
                expected +=
                    &format!("{verb} journal rows of file {bad_id} (bad.xml, Rejected, finished ");
            }
        }
        expected
    };
    // Less than a day is refused as a slip (90s for 90d): nothing goes.
    let slip = ws.cmd(&["purge", "--older-than", "90s"]);
    assert_eq!(slip.status.code(), Some(2), "{slip:?}");
    assert!(
        String::from_utf8_lossy(&slip.stderr).contains("'90s' is less than a day"),
        "{slip:?}"
    );
    let dry = ws.ok(&["purge", "--older-than", "90d", "--dry-run"]);
    // Each journal line ends with its time (and for a sent file, the hash note).
    let shape: String = dry
        .lines()
        .map(|l| match l.find(", finished ") {
            Some(i) => l[..i + ", finished ".len()].to_string(),
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(
        shape,
        lines("would remove")
            + "dry run, nothing changed; would purge: 5 file(s), journal rows of 2 finished file(s)\n",
        "{dry}"
    );
    assert!(dry.contains("its content hash is kept"), "{dry}");
    assert_eq!(snapshot(&ws), before, "a dry run changes nothing");

    let done = ws.ok(&["purge", "--older-than", "90d"]);
    assert_eq!(
        done.replace("would remove", "removed").lines().count(),
        dry.lines().count(),
        "{done}"
    );
    assert!(
        done.ends_with("purged: 5 file(s), journal rows of 2 finished file(s)\n"),
        "{done}"
    );
    assert_eq!(ws.names("outbox"), set_names(&["new.xml.receipt.xml"]));
    assert_eq!(ws.names("archive"), set_names(&["new.xml"]));
    assert!(ws.names("failed").is_empty());
    // The recent file and the unfinished (old) one stay.
    assert_eq!(ws.ids(&[]), vec![4, 3]);
    // Nothing more to purge.
    let again = ws.ok(&["purge", "--older-than", "90d", "--dry-run"]);
    assert_eq!(
        again,
        "dry run, nothing changed; would purge: 0 file(s), journal rows of 0 finished file(s)\n"
    );

    // The purged sent file's content is still a duplicate.
    ws.drop_file(
        "old-again.xml",
        &sample("valid/letters-nynorsk-english.xml"),
    );
    let out = ws.cmd(&["run", "--once", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(3), "waiting.xml still waits");
    let r = ws.read("outbox/old-again.xml.receipt.xml");
    assert_eq!(outcome(&r), "Rejected");
    assert!(r.contains("already submitted as 'old.xml'"), "{r}");
}

#[test]
fn status_filters_give_exact_rows_and_one_file_in_detail() {
    let ws = purge_workspace();
    // ids: old/bad 1-2 (100 days), new 3, waiting 4 (100 days, Submitted).
    assert_eq!(ws.ids(&["--state", "done"]), vec![3, 2, 1]);
    assert_eq!(ws.ids(&["--state", "Submitted"]), vec![4]);
    assert_eq!(ws.ids(&["--state", "received"]), Vec::<i64>::new());
    assert_eq!(ws.ids(&["--since", "1d"]), vec![3]);
    assert_eq!(ws.ids(&["--since", "101d"]), vec![4, 3, 2, 1]);
    assert_eq!(ws.ids(&["--since", "2000-01-01"]), vec![4, 3, 2, 1]);
    assert_eq!(
        ws.ids(&["--since", "1d", "--state", "submitted"]),
        Vec::<i64>::new()
    );
    assert_eq!(ws.ids(&["--file", "nothing.xml"]), Vec::<i64>::new());
    let out = ws.cmd(&["status", "--state", "sent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'sent' is not a state"));
    let out = ws.cmd(&["status", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));

    // One file: its parts and letters (a file transport: the batch).
    let d = ws.status_json(&["--file", "new.xml"]);
    assert_eq!(d["file"]["id"], 3);
    let parts = d["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["state"], "receipted");
    assert!(parts[0]["remote_name"].as_str().unwrap().ends_with(".xml"));
    let letters = d["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l["receipt_status"] == "Accepted"
        && l["senders_reference"]
            .as_str()
            .is_some_and(|s| !s.is_empty())));
    let text = ws.ok(&["status", "--file", "3"]);
    assert!(
        text.starts_with("file 3: new.xml\n  state     Done\n  outcome   Accepted\n"),
        "{text}"
    );
    assert!(
        text.contains("\nparts:\n") && text.contains("  Receipted   OK                2  dpv-"),
        "{text}"
    );
    assert_eq!(
        text.matches("  Accepted  Correspondence received\n")
            .count(),
        2,
        "{text}"
    );
    let waiting = ws.ok(&["status", "--file", "waiting.xml"]);
    assert!(
        waiting.contains("  state     Submitted\n") && waiting.contains("  Uploaded  "),
        "{waiting}"
    );
    assert!(waiting.contains("NotSent"), "{waiting}");
}

/// A receipt name is used again once the fagsystem took the earlier
/// receipt away; while it is there, the next receipt is numbered.
#[test]
fn a_receipt_name_is_reused_once_its_receipt_is_gone() {
    let ws = Workspace::new();
    let bad = sample("invalid/dpv003-bad-reportee.xml");
    ws.drop_file("a.xml", &bad);
    ws.run_once();
    fs::remove_file(ws.path("outbox/a.xml.receipt.xml")).expect("fagsystem takes it");
    ws.drop_file("a.xml", &bad);
    ws.run_once();
    assert_eq!(ws.names("outbox"), set_names(&["a.xml.receipt.xml"]));
    // The first input is still in failed/: the second goes beside it.
    assert_eq!(
        ws.names("failed"),
        set_names(&["a.xml", "a.xml.errors.txt", "a.2.xml", "a.2.xml.errors.txt"])
    );
    ws.drop_file("a.xml", &bad);
    ws.run_once();
    assert_eq!(
        ws.names("outbox"),
        set_names(&["a.xml.receipt.xml", "a.2.xml.receipt.xml"])
    );
    let d = ws.status_json(&["--file", "3"]);
    assert_eq!(d["file"]["receipt_name"], "a.2.xml.receipt.xml");
    assert_eq!(d["file"]["moved_to"], "a.3.xml");
}

/// Over Altinn 3, `status --file` shows each letter as Altinn has it: the
/// correspondence id and status of a created letter, the refusal (HTTP
/// status, Altinn's errorCode and text) of a refused one.
#[test]
fn status_of_one_file_over_altinn3_shows_each_letter() {
    let ws = Workspace::new();
    let sim =
        common::altinn3::SimA3::start(&ws.path("altinn3"), &["--unknown-recipient", "874391506"]);
    let config = format!(
        "[paths]\ninbox = \"inbox\"\noutbox = \"outbox\"\nfailed = \"failed\"\narchive = \"archive\"\n\
         state = \"state\"\n[intake]\nready = \"rename\"\n[sender]\nsystem_user_code = \"ABC-123\"\n\
         [transport]\nkind = \"altinn3\"\n{}\n[run]\npoll_ms = 50\n",
        sim.section(&ws.path(""), "")
    );
    fs::write(ws.path("dpv.toml"), config).expect("config");
    ws.drop_file("bokmal.xml", &sample("valid/letters-bokmal.xml"));
    ws.run_once();
    let d = ws.status_json(&["--file", "bokmal.xml"]);
    assert_eq!(d["file"]["outcome"], "PartiallyAccepted");
    let letters = d["letters"].as_array().unwrap();
    let view: Vec<(&str, &str, bool)> = letters
        .iter()
        .map(|l| {
            (
                l["senders_reference"].as_str().unwrap(),
                l["receipt_status"].as_str().unwrap(),
                l["correspondence_id"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("BYGG-2026-004711-V1", "Accepted", true),
            ("EIENDOMSSKATT-2026-120045", "Accepted", true),
            ("POST-2026-331907", "Accepted", true),
            ("OPPVEKST-2026-0093", "Rejected", false),
        ]
    );
    assert_eq!(letters[3]["refusal"]["http"], 404);
    assert_eq!(letters[3]["refusal"]["error_code"], 1029);
    assert!(letters[0]["altinn_status"].is_string());
    let text = ws.ok(&["status", "--file", "1"]);
    let id = letters[0]["correspondence_id"].as_str().unwrap();
    assert!(
        text.contains("BYGG-2026-004711-V1  to ")
            && text.contains(&format!("  correspondence {id}  altinn ")),
        "{text}"
    );
    let refused = text
        .lines()
        .find(|l| l.starts_with("  OPPVEKST-2026-0093  to "))
        .expect("refused letter");
    assert!(refused.contains("  Rejected  refused "), "{refused}");
    let detail = letters[3]["refusal"]["detail"].as_str().unwrap();
    assert!(refused.ends_with(detail), "{refused}");
}

/// An event file written lately (a late read) stays, and with it the file's
/// journal rows, though the file finished long ago; once it too is old,
/// both go.
#[test]
fn purge_keeps_a_recent_event_file_and_the_rows_it_needs() {
    let ws = Workspace::new();
    // Altinn reads the letters an hour after the receipt: none yet.
    let sim = Killed(
        Command::new(bin())
            .args([
                "sim",
                "--poll-ms",
                "10",
                "--confirm-delay-ms",
                "3600000",
                "--root",
            ])
            .arg(ws.path("altinn"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim"),
    );
    ws.drop_file("old.xml", &sample("valid/letters-nynorsk-english.xml"));
    ws.run_once();
    drop(sim);
    assert_eq!(ws.names("outbox"), set_names(&["old.xml.receipt.xml"]));
    // Now the recipients read them: one read event file.
    let out = Command::new(bin())
        .args(["sim", "--once", "--confirm-delay-ms", "0", "--root"])
        .arg(ws.path("altinn"))
        .output()
        .expect("sim --once");
    assert!(out.status.success());
    ws.run_once();
    let events: Vec<String> = ws
        .names("outbox")
        .into_iter()
        .filter(|n| n.contains(".read-"))
        .collect();
    assert_eq!(events.len(), 1, "{:?}", ws.names("outbox"));
    ws.journal().backdate_file(1, 100 * DAY).unwrap();
    for rel in ["outbox/old.xml.receipt.xml", "archive/old.xml"] {
        set_mtime(&ws.path(rel), 100 * DAY);
    }
    let recent = events;
    let out = ws.ok(&["purge", "--older-than", "90d"]);
    let mut expected = format!(
        "removed {}\nremoved {}\n",
        ws.path("archive/old.xml").display(),
        ws.path("outbox/old.xml.receipt.xml").display()
    );
    for e in &recent {
        expected += &format!(
            "kept {} (in the outbox for less than the cutoff)\n",
            ws.path("outbox").join(e).display()
        );
    }
    expected += "purged: 2 file(s), journal rows of 0 finished file(s)\n";
    assert_eq!(out, expected);
    assert_eq!(ws.ids(&[]), vec![1]);

    for e in &recent {
        set_mtime(&ws.path("outbox").join(e), 100 * DAY);
    }
    let out = ws.ok(&["purge", "--older-than", "90d"]);
    assert!(
        out.ends_with(&format!(
            "purged: {} file(s), journal rows of 1 finished file(s)\n",
            recent.len()
        )),
        "{out}"
    );
    assert!(ws.names("outbox").is_empty());
    assert_eq!(ws.ids(&[]), Vec::<i64>::new());
}
