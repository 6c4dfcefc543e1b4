//! The deploy kit (`deploy/`) and the daemon's systemd notifications.
//!
//! The unit, sysusers and tmpfiles files are checked with systemd's own
//! tools offline (`systemd-analyze`, `systemd-tmpfiles --root`,
//! `systemd-sysusers --root`; Debian package `systemd`, which
//! `scripts/deps --test` installs). Without them a test says SKIPPED.
//! The unit's system-call filter is checked against what `strace` sees a
//! demo do; the Containerfile's runtime packages against what `ldd` lists
//! (no container engine is needed). The notify test runs the real daemon
//! against a real datagram socket; the backup test takes `sqlite3 .backup`
//! of a running daemon's journal and restores it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, root};

/// The highest `systemd-analyze security` exposure the unit may have (issue 9).
const MAX_EXPOSURE: f64 = 2.5;

fn deploy(name: &str) -> PathBuf {
    root().join("deploy").join(name)
}

/// Runs a systemd tool, or `None` (after saying SKIPPED) when it is missing.
fn systemd_tool(test: &str, tool: &str, args: &[&str]) -> Option<Output> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED {test}: {tool} is not installed (Debian package systemd; \
                 scripts/deps --test installs it)"
            );
            None
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit with its ExecStart pointing at the binary under test (verify
/// checks that the command exists and is executable).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(deploy("dpv-batch.service")).expect("unit");
    let path = dir.join("dpv-batch.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/dpv-batch", bin())).expect("write unit");
    path
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_2_5() {
    let unit = deploy("dpv-batch.service");
    let Some(out) = systemd_tool(
        "the_unit_is_hardened",
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            unit.to_str().expect("utf-8 path"),
        ],
    ) else {
        return;
    };
    let report = text(&out);
    // "→ Overall exposure level for dpv-batch.service: 1.1 OK 🙂"
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure figure in:\n{report}"));
    let figure: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the figure in {line:?}"));
    eprintln!("systemd-analyze security: exposure {figure}");
    assert!(
        figure <= MAX_EXPOSURE,
        "exposure {figure} > {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    let Some(out) = systemd_tool(
        "the_unit_verifies",
        "systemd-analyze",
        &["verify", "--man=no", unit.to_str().expect("utf-8 path")],
    ) else {
        return;
    };
    // verify exits 0 even for an unknown key (a typo in a hardening option
    // silently hardens nothing), so any output at all is a failure.
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "", "systemd-analyze verify complained");
    let unit = std::fs::read_to_string(&unit).expect("unit");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "LoadCredential=sftp-key:",
        "LoadCredential=maskinporten-key:",
    ] {
        assert!(unit.contains(line), "the unit has no {line}");
    }
}

/// sysusers creates the service user with the shared group as its primary
/// group; tmpfiles then creates the folders owned by them, with the modes
/// that let the fagsystem (in the group) write the inbox and take receipts.
#[test]
fn sysusers_and_tmpfiles_create_the_user_and_the_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root_dir = dir.path();
    std::fs::create_dir_all(root_dir.join("etc")).expect("etc");
    let root_arg = format!("--root={}", root_dir.display());
    let sysusers = deploy("dpv-batch.sysusers.conf");
    let Some(out) = systemd_tool(
        "sysusers_and_tmpfiles",
        "systemd-sysusers",
        &[&root_arg, sysusers.to_str().expect("utf-8 path")],
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    let field = |file: &str, name: &str, index: usize| -> u32 {
        let content = std::fs::read_to_string(root_dir.join("etc").join(file)).expect(file);
        let line = content
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {file}:\n{content}"));
        line.split(':')
            .nth(index)
            .expect("field")
            .parse()
            .expect("id")
    };
    let uid = field("passwd", "dpv-batch", 2);
    let gid = field("group", "dpv", 2);
    assert_eq!(
        field("passwd", "dpv-batch", 3),
        gid,
        "dpv is dpv-batch's primary group"
    );
    let passwd = std::fs::read_to_string(root_dir.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("/usr/sbin/nologin"), "{passwd}");

    // Changing owners needs root; the CI runs the tests as root.
    if std::fs::metadata("/proc/self").expect("/proc").uid() != 0 {
        eprintln!("SKIPPED tmpfiles part: not root (cannot give the folders their owners)");
        return;
    }
    let tmpfiles = deploy("dpv-batch.tmpfiles.conf");
    let out = Command::new("systemd-tmpfiles")
        .args([
            "--create",
            &root_arg,
            tmpfiles.to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("systemd-tmpfiles");
    assert!(out.status.success(), "{}", text(&out));
    let expect = [
        ("srv/dpv/inbox", 0o2770, uid, gid),
        ("srv/dpv/outbox", 0o2770, uid, gid),
        ("srv/dpv/archive", 0o2750, uid, gid),
        ("srv/dpv/failed", 0o2750, uid, gid),
        ("srv/dpv/state", 0o700, uid, gid),
        ("etc/dpv-batch/credentials", 0o700, 0, 0),
    ];
    for (path, mode, owner, group) in expect {
        let meta = std::fs::metadata(root_dir.join(path)).expect(path);
        assert!(meta.is_dir(), "{path}");
        assert_eq!(meta.mode() & 0o7777, mode, "{path}: mode {:o}", meta.mode());
        assert_eq!((meta.uid(), meta.gid()), (owner, group), "{path}: owner");
    }
}

/// A sample config with its folders and credentials moved into `dir`:
/// `/srv/dpv/...` → `dir/srv/...`, `${CREDENTIALS_DIRECTORY}` → `dir/creds`
/// (what systemd would set), `/etc/dpv-batch/...` → `dir/etc/...`.
fn sample_in(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(deploy(name)).expect("sample");
    let d = dir.display();
    let text = text
        .replace("/srv/dpv/", &format!("{d}/srv/"))
        .replace("${CREDENTIALS_DIRECTORY}", &format!("{d}/creds"))
        .replace("/etc/dpv-batch/", &format!("{d}/etc/"));
    for sub in ["srv/inbox", "creds", "etc"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(dir.join("creds/sftp-key"), "not a real key\n").expect("key");
    // A real RSA key for Altinn 3 (check-config parses it).
    let pem = root().join("tests/fixtures/altinn3/client.pem");
    std::fs::write(
        dir.join("creds/maskinporten-key"),
        std::fs::read(pem).expect("pem"),
    )
    .expect("key");
    std::fs::set_permissions(
        dir.join("creds/maskinporten-key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .expect("chmod");
    // The SFTP sample's host, pinned (a throwaway public key).
    std::fs::write(
        dir.join("etc/known_hosts"),
        "sftp.altinn.example ssh-ed25519 \
         AAAAC3NzaC1lZDI1NTE5AAAAIP8wsAe8UXjTCZ1N46IMVc9v4kDXUZ+plveB65aq7O86\n",
    )
    .expect("known_hosts");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write sample");
    path
}

#[test]
fn the_sample_configs_pass_check_config() {
    for name in [
        "dpv-batch.toml",
        "dpv-batch.sftp.toml",
        "dpv-batch.altinn3.toml",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = sample_in(dir.path(), name);
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .expect("check-config");
        assert!(out.status.success(), "{name}:\n{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"),
            "{name}: {}",
            text(&out)
        );
    }
}

/// The daemon under systemd's notify protocol: READY=1 once running, then
/// watchdog pings, and STOPPING=1 on SIGTERM before a clean exit.
#[test]
fn the_daemon_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("dpv.toml"),
        "[paths]\ninbox = \"inbox\"\noutbox = \"outbox\"\nfailed = \"failed\"\n\
         archive = \"archive\"\nstate = \"state\"\n[sender]\nsystem_user_code = \"ABC-123\"\n\
         [transport]\nkind = \"local\"\n[transport.local]\nroot = \"altinn\"\n",
    )
    .expect("config");
    for sub in ["inbox", "altinn"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let socket_path = d.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(d.join("dpv.toml"))
        .env("NOTIFY_SOCKET", &socket_path)
        // 200 ms: a ping every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");

    // Every datagram up to the one `until` accepts, or a failure after 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |until: &dyn Fn(&str) -> bool| -> String {
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; datagrams so far: {seen:?}");
            socket.set_read_timeout(Some(left)).expect("timeout");
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no datagram ({e}); so far: {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if until(&msg) {
                return msg;
            }
        }
    };
    let lines = |msg: &str| msg.lines().map(str::to_owned).collect::<Vec<_>>();

    let ready = wait_for(&|m| m.lines().any(|l| l == "READY=1"));
    assert!(
        lines(&ready)
            .iter()
            .any(|l| l.starts_with("STATUS=watching ")),
        "{ready:?}"
    );
    // Two pings after READY: the watchdog keeps pinging, not once.
    for _ in 0..2 {
        wait_for(&|m| m == "WATCHDOG=1\n");
    }
    let pid = daemon.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let stopping = wait_for(&|m| m.lines().any(|l| l == "STOPPING=1"));
    assert!(stopping.contains("STATUS=stopping"), "{stopping:?}");
    let status = daemon.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a SIGTERM is a clean stop");
    let before_ready = seen
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("ready");
    assert!(
        seen[..before_ready]
            .iter()
            .all(|m| !m.contains("WATCHDOG=1")),
        "no ping before READY: {seen:?}"
    );
}

/// Without NOTIFY_SOCKET (a terminal, cron, a container) nothing is sent
/// and nothing fails: `run --once` on an empty inbox ends at once, exit 0.
#[test]
fn without_systemd_the_daemon_runs_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("dpv.toml"),
        "[paths]\ninbox = \"inbox\"\noutbox = \"outbox\"\nfailed = \"failed\"\n\
         archive = \"archive\"\nstate = \"state\"\n[sender]\nsystem_user_code = \"ABC-123\"\n\
         [transport]\nkind = \"local\"\n[transport.local]\nroot = \"altinn\"\n",
    )
    .expect("config");
    for sub in ["inbox", "altinn"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let out = Command::new(bin())
        .args(["run", "--once", "--timeout", "30s", "--config"])
        .arg(d.join("dpv.toml"))
        .env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", "200000")
        .output()
        .expect("run --once");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains("cannot notify systemd"),
        "{}",
        text(&out)
    );
}

/// docs/operations.md's backup: `sqlite3 state/journal.sqlite ".backup FILE"`
/// while the daemon runs gives a consistent journal, and the documented
/// restore (stop, move the journal and its -wal/-shm aside, copy the backup
/// in) starts again with every file the backup knew.
#[test]
fn a_journal_backed_up_while_running_restores() {
    let Some(version) = systemd_tool("a_journal_backed_up", "sqlite3", &["-version"]) else {
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("dpv.toml"),
        "[paths]\ninbox = \"inbox\"\noutbox = \"outbox\"\nfailed = \"failed\"\n\
         archive = \"archive\"\nstate = \"state\"\n[intake]\nready = \"rename\"\n\
         [sender]\nsystem_user_code = \"ABC-123\"\n\
         [transport]\nkind = \"local\"\n[transport.local]\nroot = \"altinn\"\n",
    )
    .expect("config");
    for sub in ["inbox", "altinn"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let config = d.join("dpv.toml");
    // Every file's name and state; Err before the daemon made its journal.
    let status = || -> Result<Vec<(String, String)>, String> {
        let out = Command::new(bin())
            .args(["status", "--json", "--config"])
            .arg(&config)
            .output()
            .expect("status");
        if !out.status.success() {
            return Err(text(&out));
        }
        let files: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        Ok(files
            .as_array()
            .expect("array")
            .iter()
            .map(|f| (f["name"].to_string(), f["state"].to_string()))
            .collect())
    };
    let mut daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // No simulator answers: the files stay "submitted", waiting for receipts.
    for name in ["latin1.xml", "letters-bokmal.xml"] {
        common::drop_careful(
            &d.join("inbox"),
            name,
            &common::sample(&format!("valid/{name}")),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let submitted = loop {
        let s = status().unwrap_or_default();
        if s.len() == 2 && s.iter().all(|(_, state)| state == "\"submitted\"") {
            break s;
        }
        assert!(Instant::now() < deadline, "not submitted in time: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let backup = d.join("journal-backup.sqlite");
    let out = Command::new("sqlite3")
        .arg(d.join("state/journal.sqlite"))
        .arg(format!(".backup {}", backup.display()))
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{}", text(&out));
    let killed = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(daemon.wait().expect("wait").code(), Some(0));

    // Restore as docs/operations.md says.
    let aside = d.join("aside");
    std::fs::create_dir_all(&aside).expect("aside");
    for f in ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"] {
        let from = d.join("state").join(f);
        if from.exists() {
            std::fs::rename(&from, aside.join(f)).expect("move aside");
        }
    }
    std::fs::copy(&backup, d.join("state/journal.sqlite")).expect("restore");
    assert_eq!(status(), Ok(submitted));
    // It starts (no refusal: the backup is this installation's) and waits
    // for the receipts: exit 3, both files pending.
    let out = Command::new(bin())
        .args(["run", "--once", "--timeout", "1s", "--config"])
        .arg(&config)
        .output()
        .expect("run --once");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 file(s) still pending"), "{}", text(&out));
}

/// The Containerfile's run stage installs only the runtime libraries; this
/// keeps that list honest where no container can be built: every library
/// `ldd` lists for the binary comes from a package the run stage installs,
/// or from one those depend on (Debian's dpkg says which).
#[test]
fn the_container_installs_every_library_the_binary_links() {
    let Some(ldd) = systemd_tool("the_container_installs", "ldd", &[bin()]) else {
        return;
    };
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED the_container_installs: not a Debian system (no dpkg)");
        return;
    }
    let containerfile = std::fs::read_to_string(deploy("Containerfile")).expect("Containerfile");
    // The words after `--no-install-recommends`, up to the next `&&`.
    let after = containerfile
        .split("--no-install-recommends")
        .nth(1)
        .expect("the run stage's apt-get install");
    let listed: Vec<&str> = after
        .split("&&")
        .next()
        .expect("packages")
        .split_whitespace()
        .filter(|w| *w != "\\")
        .collect();
    assert!(!listed.is_empty(), "no packages in the run stage");

    // Everything the listed packages bring along.
    let mut installed: std::collections::BTreeSet<String> = Default::default();
    let mut queue: Vec<String> = listed.iter().map(|p| p.to_string()).collect();
    while let Some(p) = queue.pop() {
        if !installed.insert(p.clone()) {
            continue;
        }
        let out = Command::new("dpkg-query")
            .args(["-W", "-f", "${Pre-Depends}, ${Depends}", &p])
            .output()
            .expect("dpkg-query");
        for dep in String::from_utf8_lossy(&out.stdout).split([',', '|']) {
            let name = dep.split_whitespace().next().unwrap_or("");
            let name = name.split(':').next().unwrap_or("");
            if !name.is_empty() {
                queue.push(name.to_string());
            }
        }
    }

    let owner = |path: &Path| -> Option<String> {
        let out = Command::new("dpkg").arg("-S").arg(path).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let package = text.split(':').next()?.trim().to_string();
        (out.status.success() && !package.is_empty()).then_some(package)
    };
    let report = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut checked = 0;
    for line in report.lines() {
        // "libxml2.so.2 => /lib/x86_64-linux-gnu/libxml2.so.2 (0x...)"
        let Some(path) = line.split("=> ").nth(1).and_then(|r| r.split(' ').next()) else {
            continue;
        };
        // dpkg knows a file under the name its package installed it as:
        // /usr/lib/... or /lib/... (merged /usr), so try both.
        let real = std::fs::canonicalize(path).expect("library");
        let without_usr = real
            .strip_prefix("/usr")
            .map(|p| Path::new("/").join(p))
            .unwrap_or_else(|_| real.clone());
        let package = owner(&real)
            .or_else(|| owner(&without_usr))
            .or_else(|| owner(Path::new(path)))
            .unwrap_or_else(|| panic!("no package owns {path} ({})", real.display()));
        assert!(
            installed.contains(&package),
            "{path} comes from {package}, which the Containerfile's run stage does not \
             install (it installs {listed:?} and their dependencies)"
        );
        checked += 1;
    }
    assert!(checked >= 3, "ldd listed too little:\n{report}");
}

/// The unit's `SystemCallFilter=` lines allow every system call the daemon
/// makes: `strace` follows a whole demo through Altinn 3 (intake, validation,
/// the journal, HTTPS-shaped traffic to the simulator, inotify, receipts),
/// and systemd-analyze expands the unit's groups. A call outside them would
/// fail with EPERM under systemd (`SystemCallErrorNumber=EPERM`).
#[test]
fn the_unit_allows_every_system_call_the_daemon_makes() {
    let Some(groups) = systemd_tool(
        "the_unit_allows_every_system_call",
        "systemd-analyze",
        &["syscall-filter"],
    ) else {
        return;
    };
    // "@group" at the start of a line, then its members (calls or groups).
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut current = String::new();
    for line in String::from_utf8_lossy(&groups.stdout).lines() {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            current = word.to_string();
        } else {
            members
                .entry(current.clone())
                .or_default()
                .push(word.to_string());
        }
    }
    fn expand(
        name: &str,
        members: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> std::collections::BTreeSet<String> {
        match members.get(name) {
            Some(list) => list.iter().flat_map(|m| expand(m, members)).collect(),
            None => [name.to_string()].into(),
        }
    }
    // The unit's lines in order: the first names what is allowed, a `~`
    // line takes away, a later plain line adds back.
    let unit = std::fs::read_to_string(deploy("dpv-batch.service")).expect("unit");
    let mut allowed = std::collections::BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (deny, list) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        for name in list.split_whitespace() {
            for call in expand(name, &members) {
                if deny {
                    allowed.remove(&call);
                } else {
                    allowed.insert(call);
                }
            }
        }
    }
    assert!(allowed.contains("openat"), "the unit has no syscall filter");

    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.txt");
    let Some(out) = systemd_tool(
        "the_unit_allows_every_system_call",
        "strace",
        &[
            "-f",
            "-qq",
            "-o",
            trace.to_str().expect("utf-8 path"),
            bin(),
            "demo",
            "--transport",
            "altinn3",
            "--dir",
            dir.path().join("demo").to_str().expect("utf-8 path"),
        ],
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    let trace = std::fs::read_to_string(&trace).expect("trace");
    // "1234 openat(AT_FDCWD, ..." (also "<... openat resumed>", skipped).
    let used: std::collections::BTreeSet<&str> = trace
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|call| call.split('(').next())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        .collect();
    let is_root = std::fs::metadata("/proc/self").expect("/proc").uid() == 0;
    let refused: Vec<&&str> = used
        .iter()
        // Run as root, SQLite gives its files to the database's owner
        // (fchown); as the service user it never does.
        .filter(|c| !(is_root && **c == "fchown"))
        .filter(|c| !allowed.contains(**c))
        .collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter refuses {refused:?} (of {} calls made)",
        used.len()
    );
}
