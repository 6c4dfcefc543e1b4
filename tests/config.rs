//! `dpv-batch check-config` finds every problem `run` would meet, at once:
//! reading errors in every section (key path and line each), folders that
//! cannot be written, environment overrides, secrets from files, systemd
//! credentials, durations in both spellings, and with `--connect` the step
//! of an SFTP login that failed (against the real test sshd).
//!
//! Folders are made unwritable for real (the tests run as root, so
//! permission bits would not do): a path under a regular file, and a
//! read-only bind mount.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::bin;

const MINIMAL: &str = r#"[paths]
inbox = "in"
outbox = "out"
failed = "failed"
archive = "archive"
state = "state"

[sender]
system_user_code = "ABC-123"

[transport]
kind = "local"

[transport.local]
root = "altinn"
"#;

struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `check-config` on `text` (written to DIR/dpv.toml) with these
/// environment variables, and none of ours from the test's environment.
fn check(dir: &Path, text: &str, env: &[(&str, &str)], connect: bool) -> Checked {
    let path = dir.join("dpv.toml");
    fs::write(&path, text).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("check-config");
    if connect {
        cmd.arg("--connect");
    }
    cmd.arg("--config").arg(&path);
    for (k, _) in std::env::vars() {
        if k.starts_with("DPV_BATCH__") || k == "CREDENTIALS_DIRECTORY" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run check-config");
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The problem lines of a failed check (`  - ...`).
fn problems(c: &Checked) -> Vec<String> {
    c.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .map(str::to_string)
        .collect()
}

fn assert_ok(c: &Checked) {
    assert_eq!(
        c.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        c.stdout,
        c.stderr
    );
    assert!(c.stdout.contains(": OK"), "{}", c.stdout);
}

fn has(problems: &[String], want: &str) -> bool {
    problems.iter().any(|p| p.contains(want))
}

#[test]
fn every_reading_error_in_every_section_is_listed_with_its_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[paths]
inbox = "in"
outbox = "out"
failed = 3
archive = "archive"

[intake]
ready = "soon"
colour = "red"

[sender]
sequence_numbers = "yes"

[transport]
kind = "local"

[transport.local]
root = "altinn"
"#;
    let c = check(dir.path(), text, &[], false);
    assert_eq!(c.code, Some(2), "{}", c.stderr);
    let p = problems(&c);
    let expected = [
        "paths.failed (line 4): invalid type: integer `3`",
        "paths.state: missing in [paths] (line 1)",
        "intake.ready (line 8): unknown variant `soon`",
        "intake.colour (line 9): unknown key; expected",
        "sender.sequence_numbers (line 12): invalid type: string \"yes\"",
        "sender.system_user_code: missing in [sender] (line 11)",
    ];
    for want in expected {
        assert!(has(&p, want), "missing {want:?} in:\n{}", c.stderr);
    }
    // Nothing else: a key taken out is not reported again as missing, and
    // the stand-in for a missing key raises no checks of its own.
    assert_eq!(p.len(), expected.len(), "{}", c.stderr);
    assert!(c.stderr.contains("has 6 problem(s)"), "{}", c.stderr);
}

#[test]
fn a_syntax_error_is_the_first_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let c = check(dir.path(), "[paths\ninbox = 1\n= 2\n", &[], false);
    assert_eq!(c.code, Some(2));
    assert!(c.stderr.contains("line 1"), "{}", c.stderr);
    assert!(
        c.stderr.contains("only the first one can be found"),
        "{}",
        c.stderr
    );
}

#[test]
fn reading_problems_and_checks_come_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL
        .replace("outbox = \"out\"", "outbox = \"in\"")
        .replace("[sender]", "[run]\npoll_ms = \"fast\"\n\n[sender]");
    let c = check(dir.path(), &text, &[], false);
    let p = problems(&c);
    assert!(has(&p, "run.poll_ms (line 9): invalid type"), "{p:?}");
    assert!(
        has(&p, "paths.inbox and paths.outbox are the same folder"),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn folders_that_cannot_be_created_or_written_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    // Under a regular file: can never be created.
    fs::write(dir.path().join("plain-file"), "x").unwrap();
    // An existing folder on a read-only mount: cannot be written.
    let ro = dir.path().join("ro");
    fs::create_dir_all(ro.join("failed")).unwrap();
    let mount = ReadOnly::mount(&ro);
    let text = MINIMAL
        .replace("outbox = \"out\"", "outbox = \"plain-file/out\"")
        .replace("failed = \"failed\"", "failed = \"ro/failed\"")
        .replace("archive = \"archive\"", "archive = \"ro/archive\"");
    let c = check(dir.path(), &text, &[], false);
    let p = problems(&c);
    assert_eq!(c.code, Some(2), "{}", c.stderr);
    assert!(
        has(&p, "paths.outbox (")
            && has(&p, "plain-file is a file, not a folder")
            && has(&p, "cannot be created"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("paths.failed (") && l.contains("cannot be written")),
        "{p:?}"
    );
    // Missing, in a read-only parent: cannot be created.
    assert!(
        p.iter().any(|l| l.starts_with("paths.archive (")
            && l.contains("does not exist and cannot be created")),
        "{p:?}"
    );
    assert_eq!(p.len(), 3, "{p:?}");
    // The local transport's folders are checked too.
    drop(mount);
    let text = MINIMAL.replace("root = \"altinn\"", "root = \"plain-file/altinn\"");
    let p = problems(&check(dir.path(), &text, &[], false));
    assert!(
        has(&p, "transport.local.root: ") && has(&p, "plain-file is a file"),
        "{p:?}"
    );
    // And a writable place leaves no trace of the check.
    let c = check(dir.path(), MINIMAL, &[], false);
    assert_ok(&c);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A config named relative to the current folder: its folders are there.
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args(["check-config", "--config", "dpv.toml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_overrides_every_key_and_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    // A section and a nested key that the file does not have at all.
    let text = MINIMAL
        .replace("[sender]\nsystem_user_code = \"ABC-123\"\n", "")
        .replace("[transport.local]\nroot = \"altinn\"\n", "");
    let env = [
        ("DPV_BATCH__SENDER__SYSTEM_USER_CODE", "XYZ-9"),
        ("DPV_BATCH__TRANSPORT__LOCAL__ROOT", "altinn"),
        ("DPV_BATCH__RUN__POLL_MS", "250"),
    ];
    let c = check(dir.path(), &text, &env, false);
    assert_ok(&c);
    for (key, var) in [
        (
            "sender.system_user_code",
            "DPV_BATCH__SENDER__SYSTEM_USER_CODE",
        ),
        ("transport.local.root", "DPV_BATCH__TRANSPORT__LOCAL__ROOT"),
        ("run.poll_ms", "DPV_BATCH__RUN__POLL_MS"),
    ] {
        assert!(
            c.stdout
                .contains(&format!("{key}: from the environment ({var})")),
            "{}",
            c.stdout
        );
    }
    // Values are never printed (they may be secrets).
    assert!(!c.stdout.contains("XYZ-9"), "{}", c.stdout);

    // Over the file's value; numbers are numbers (0 is refused by the
    // check), text stays text even when it looks like a number.
    let env = [
        ("DPV_BATCH__PATHS__OUTBOX", "in"),
        ("DPV_BATCH__INTAKE__STABLE_FOR_MS", "0"),
        ("DPV_BATCH__SENDER__SYSTEM_USER_CODE", "123"),
    ];
    let p = problems(&check(dir.path(), MINIMAL, &env, false));
    assert!(
        has(&p, "paths.inbox and paths.outbox are the same folder"),
        "{p:?}"
    );
    assert!(has(&p, "intake.stable_for_ms is 0"), "{p:?}");
    assert!(has(&p, "sender.system_user_code '123'"), "{p:?}");
    assert_eq!(p.len(), 3, "{p:?}");

    // A variable overrides the file's key in its other spelling too.
    fs::write(dir.path().join("code"), "DEF-456\n").unwrap();
    let text = MINIMAL.replace("[sender]", "[run]\npoll_ms = 100\n\n[sender]");
    let env = [
        ("DPV_BATCH__RUN__POLL", "2s"),
        ("DPV_BATCH__SENDER__SYSTEM_USER_CODE_FILE", "code"),
    ];
    assert_ok(&check(dir.path(), &text, &env, false));

    // A key no section has, and a value of the wrong type: both name the variable.
    let env = [
        ("DPV_BATCH__TRANSPORT__LOCAL__ROTO", "x"),
        ("DPV_BATCH__PACKAGE__MAX_PART_LETTERS", "many"),
    ];
    let c = check(dir.path(), MINIMAL, &env, false);
    assert_eq!(c.code, Some(2));
    let p = problems(&c);
    assert!(
        has(
            &p,
            "transport.local.roto (from DPV_BATCH__TRANSPORT__LOCAL__ROTO): unknown key; expected `root`"
        ),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "package.max_part_letters (from DPV_BATCH__PACKAGE__MAX_PART_LETTERS): invalid type"
        ),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn a_secret_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    // The trailing newline is taken off: "in\n" is the inbox.
    fs::write(dir.path().join("outbox.txt"), "in\n").unwrap();
    let text = MINIMAL.replace("outbox = \"out\"", "outbox_file = \"outbox.txt\"");
    let p = problems(&check(dir.path(), &text, &[], false));
    assert!(
        has(&p, "paths.inbox and paths.outbox are the same folder"),
        "{p:?}"
    );

    fs::write(dir.path().join("code"), "DEF-456\n").unwrap();
    let text = MINIMAL.replace(
        "system_user_code = \"ABC-123\"",
        "system_user_code_file = \"code\"",
    );
    let c = check(dir.path(), &text, &[], false);
    assert_ok(&c);
    assert!(
        c.stdout.contains(&format!(
            "sender.system_user_code: from the file {}",
            dir.path().join("code").display()
        )),
        "{}",
        c.stdout
    );

    // Both given, or a file that is not there: problems, by key.
    let text = MINIMAL.replace(
        "system_user_code = \"ABC-123\"",
        "system_user_code = \"ABC-123\"\nsystem_user_code_file = \"code\"",
    );
    let p = problems(&check(dir.path(), &text, &[], false));
    assert_eq!(
        p,
        ["sender.system_user_code_file (line 10): given together with sender.system_user_code; give one"],
    );
    let text = MINIMAL.replace(
        "system_user_code = \"ABC-123\"",
        "system_user_code_file = \"nowhere\"",
    );
    let p = problems(&check(dir.path(), &text, &[], false));
    assert!(
        p.len() == 1
            && p[0].starts_with("sender.system_user_code_file (line 9): cannot read ")
            && p[0].contains("nowhere"),
        "{p:?}"
    );
}

/// The Altinn 3 section with its key at `key` (a path as written).
fn altinn3_config(key: &str) -> String {
    MINIMAL
        .replace("kind = \"local\"", "kind = \"altinn3\"")
        .replace(
            "[transport.local]\nroot = \"altinn\"\n",
            &format!(
                "[transport.altinn3]\nclient_id = \"c\"\nprivate_key = \"{key}\"\nkey_id = \"k\"\n\
             [transport.altinn3.resources]\n\"4255/10\" = \"eformidling-dpv-administrasjon\"\n"
            ),
        )
}

#[test]
fn systemd_credentials_are_found_in_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    fs::create_dir(&creds).unwrap();
    let key = creds.join("maskinporten.pem");
    fs::copy(
        common::root().join("tests/fixtures/altinn3/client.pem"),
        &key,
    )
    .unwrap();
    // As systemd leaves it: 0400 plus an ACL entry for the service's user,
    // which `stat` shows as 0440.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o440)).unwrap();
    fs::write(creds.join("code"), "ABC-777\n").unwrap();
    let text = altinn3_config("${CREDENTIALS_DIRECTORY}/maskinporten.pem").replace(
        "system_user_code = \"ABC-123\"",
        "system_user_code_file = \"${CREDENTIALS_DIRECTORY}/code\"",
    );
    let creds_env = creds.to_str().unwrap();
    let c = check(
        dir.path(),
        &text,
        &[("CREDENTIALS_DIRECTORY", creds_env)],
        false,
    );
    assert_ok(&c);

    // Without the variable: a clear problem for each key that names one.
    let c = check(dir.path(), &text, &[], false);
    let p = problems(&c);
    assert!(
        has(&p, "transport.altinn3.private_key (line 16): \"${CREDENTIALS_DIRECTORY}/maskinporten.pem\" names a systemd credential, but $CREDENTIALS_DIRECTORY is not set"),
        "{p:?}"
    );
    assert!(
        has(&p, "sender.system_user_code_file (line 9): \"${CREDENTIALS_DIRECTORY}/code\" names a systemd credential"),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");

    // `status` needs no secret: a monitor outside the unit (no variable)
    // still gets its answer, not "the config has problems".
    let status = |extra: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.arg("status")
            .args(extra)
            .arg("--config")
            .arg(dir.path().join("dpv.toml"))
            .env_remove("CREDENTIALS_DIRECTORY");
        cmd.output().expect("run status")
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no files yet\n");
    let out = status(&["--check"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("DPV-BATCH UNKNOWN - no journal at "),
        "{out:?}"
    );

    // The same mode outside the credentials folder is a key others may read;
    // and inside it, a key readable by everyone is refused too.
    let outside = dir.path().join("maskinporten.pem");
    fs::copy(&key, &outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o440)).unwrap();
    let p = problems(&check(
        dir.path(),
        &altinn3_config("maskinporten.pem"),
        &[("CREDENTIALS_DIRECTORY", creds_env)],
        false,
    ));
    assert!(has(&p, "chmod 600"), "{p:?}");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o444)).unwrap();
    let p = problems(&check(
        dir.path(),
        &text,
        &[("CREDENTIALS_DIRECTORY", creds_env)],
        false,
    ));
    assert!(has(&p, "chmod 600"), "{p:?}");
}

#[test]
fn durations_take_units_and_the_millisecond_keys_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &str| MINIMAL.replace("[sender]", &format!("{extra}\n[sender]"));
    // The old spelling and the new one.
    assert_ok(&check(
        dir.path(),
        &with("[run]\npoll_ms = 250\n[intake]\nstable_for_ms = 3000\n"),
        &[],
        false,
    ));
    assert_ok(&check(
        dir.path(),
        &with("[run]\npoll = \"250ms\"\n[intake]\nstable_for = \"3s\"\n"),
        &[],
        false,
    ));
    // The new spelling means the same: 0s is refused like 0 ms.
    let p = problems(&check(
        dir.path(),
        &with("[intake]\nstable_for = \"0s\"\n"),
        &[],
        false,
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("intake.stable_for_ms is 0"), "{p:?}");
    // Both, a bad duration, a bare number: each named with its line.
    let p = problems(&check(
        dir.path(),
        &with("[run]\npoll = \"1s\"\npoll_ms = 100\n[intake]\nstable_for = \"soon\"\n"),
        &[],
        false,
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("intake.stable_for (line 12): 'soon' is not a duration like"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("run.poll (line 9): given together with run.poll_ms; give one"),
        "{p:?}"
    );
    let p = problems(&check(dir.path(), &with("[run]\npoll = 100\n"), &[], false));
    assert!(
        p.len() == 1
            && p[0].starts_with("run.poll (line 9): 100 is not a duration")
            && p[0].contains("run.poll_ms"),
        "{p:?}"
    );
    // SFTP's timeouts too (and from the environment).
    let section = "[transport.sftp]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"key\"\n\
                   host_key_fingerprints = [\"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"]\n\
                   connect_timeout = \"0s\"\n";
    fs::write(dir.path().join("key"), "key").unwrap();
    let text = MINIMAL
        .replace("kind = \"local\"", "kind = \"sftp\"")
        .replace("[transport.local]\nroot = \"altinn\"\n", section);
    let p = problems(&check(dir.path(), &text, &[], false));
    assert!(
        p.len() == 1 && p[0].starts_with("transport.sftp.connect_timeout_ms is 0"),
        "{p:?}"
    );
    let text = text.replace("connect_timeout = \"0s\"\n", "");
    let c = check(
        dir.path(),
        &text,
        &[("DPV_BATCH__TRANSPORT__SFTP__IO_TIMEOUT", "2m")],
        false,
    );
    assert_ok(&c);
}

/// A read-only bind mount of a folder over itself; undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            run(&["--bind"]),
            "this test needs root to bind-mount {} (CI runs as root)",
            dir.display()
        );
        let ro = ReadOnly(dir.to_path_buf());
        assert!(run(&["-o", "remount,ro,bind"]), "remount read-only");
        assert!(
            fs::write(dir.join("probe"), "x").is_err(),
            "{} is still writable",
            dir.display()
        );
        ro
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

mod sftp {
    use super::*;
    use common::sftp::Server;

    /// A config for the test server with `[transport.sftp]` changed by `edit`.
    fn config(server: &Server, edit: &str) -> String {
        let section = format!(
            "[transport.sftp]\nhost = \"{}\"\nport = {}\nuser = \"{}\"\nprivate_key = \"{}\"\n\
             known_hosts = \"{}\"\nconnect_timeout = \"5s\"\ntries = 1\n{edit}",
            server.get("SFTP_HOST"),
            server.port(),
            server.get("SFTP_USER"),
            server.get("SFTP_KEY"),
            server.get("SFTP_KNOWN_HOSTS"),
        );
        MINIMAL
            .replace("kind = \"local\"", "kind = \"sftp\"")
            .replace("[transport.local]\nroot = \"altinn\"\n", &section)
    }

    fn connect(dir: &Path, text: &str) -> Checked {
        check(dir, text, &[], true)
    }

    #[test]
    fn connect_logs_in_and_names_the_step_that_failed() {
        let Some(server) = common::sftp::server("config::sftp::connect") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();

        let c = connect(dir.path(), &config(&server, ""));
        assert_eq!(c.code, Some(0), "{}\n{}", c.stdout, c.stderr);
        assert!(
            c.stdout.contains(
                "connect: OK (" // user@host:port
            ) && c
                .stdout
                .contains("TCP, host key, authentication, folders upload, receipts, confirmations"),
            "{}",
            c.stdout
        );

        // A pinned key that is not the server's.
        let text = config(&server, "")
            .replace(
                &format!("known_hosts = \"{}\"\n", server.get("SFTP_KNOWN_HOSTS")),
                "",
            )
            .replace(
                "tries = 1\n",
                "tries = 1\nhost_key_fingerprints = [\"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"]\n",
            );
        let c = connect(dir.path(), &text);
        let pinned = text;
        assert_eq!(c.code, Some(1), "{}", c.stderr);
        assert!(
            c.stderr.contains("connect: the host key step failed: ")
                && c.stderr.contains("host key mismatch"),
            "{}",
            c.stderr
        );

        // A key the account does not know.
        let stranger = dir.path().join("stranger");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&stranger)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let text = config(&server, "").replace(
            &format!("private_key = \"{}\"", server.get("SFTP_KEY")),
            &format!("private_key = \"{}\"", stranger.display()),
        );
        let c = connect(dir.path(), &text);
        assert_eq!(c.code, Some(1), "{}", c.stderr);
        assert!(
            c.stderr
                .contains("connect: the authentication step failed: ")
                && c.stderr.contains("authentication refused"),
            "{}",
            c.stderr
        );

        // A remote folder that is not there.
        let c = connect(dir.path(), &config(&server, "receipt_dir = \"nope\"\n"));
        assert_eq!(c.code, Some(1), "{}", c.stderr);
        assert!(
            c.stderr.contains(
                "connect: the remote folders step failed: transport.sftp.receipt_dir (nope): "
            ),
            "{}",
            c.stderr
        );

        // Nobody listening: the TCP step.
        let c = connect(
            dir.path(),
            &pinned.replace(&format!("port = {}", server.port()), "port = 1"),
        );
        assert!(
            c.stderr
                .contains("connect: the TCP connection step failed: "),
            "{}",
            c.stderr
        );
    }
}

#[test]
fn a_secret_is_never_shown_in_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let pem = fs::read_to_string(common::root().join("tests/fixtures/altinn3/client.pem")).unwrap();
    let key = dir.path().join("key.pem");
    fs::write(&key, &pem).unwrap();
    // The key's file given as `private_key_file`: its *content* becomes
    // the key's file name, which cannot be read; the problem must not
    // print the key.
    let text = altinn3_config("unused")
        .replace("private_key = \"unused\"", "private_key_file = \"key.pem\"");
    let c = check(dir.path(), &text, &[], false);
    assert_eq!(c.code, Some(2), "{}", c.stderr);
    assert!(!c.stderr.contains("PRIVATE KEY"), "{}", c.stderr);
    assert!(!c.stdout.contains("PRIVATE KEY"), "{}", c.stdout);
    let p = problems(&c);
    assert!(has(&p, "<the content of "), "{p:?}");
    // The same key's text put in an environment variable.
    let c = check(
        dir.path(),
        &altinn3_config("unused"),
        &[("DPV_BATCH__TRANSPORT__ALTINN3__PRIVATE_KEY", pem.as_str())],
        false,
    );
    assert_eq!(c.code, Some(2), "{}", c.stderr);
    assert!(!c.stderr.contains("PRIVATE KEY"), "{}", c.stderr);
    assert!(
        has(
            &problems(&c),
            "<the text of DPV_BATCH__TRANSPORT__ALTINN3__PRIVATE_KEY>"
        ),
        "{}",
        c.stderr
    );
    // A device named by mistake is refused, not read for ever.
    let text = MINIMAL.replace(
        "system_user_code = \"ABC-123\"",
        "system_user_code_file = \"/dev/zero\"",
    );
    let p = problems(&check(dir.path(), &text, &[], false));
    assert!(has(&p, "/dev/zero: not a regular file"), "{p:?}");
}
