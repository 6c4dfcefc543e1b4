//! The README's two commands on a bare machine: `scripts/demo` and
//! `scripts/test` each install the Debian packages the build needs (through
//! `scripts/deps`) before cargo runs, so either may come first.
//!
//! The real scripts run with a PATH of stand-ins: `dpkg-query` answers from
//! a list of "installed" packages, `apt-get` installs into that list, and
//! `cargo`, `sudo` and `id` only record what they were asked. Every call is
//! logged in order, so the tests assert exactly what ran, and when.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// What `cargo build` needs (scripts/deps without --test).
const BUILD: &[&str] = &[
    "libxml2-dev",
    "libclang-dev",
    "pkg-config",
    "libssl-dev",
    "zlib1g-dev",
    "gcc",
    "libc6-dev",
];
/// What the tests need on top.
const TESTS: &[&str] = &[
    "libxml2-utils",
    "openssh-server",
    "openssh-client",
    "procps",
    "mount",
    "util-linux",
    // tests/deploy.rs: systemd-analyze, systemd-tmpfiles, systemd-sysusers;
    // strace for the unit's system-call filter; sqlite3 for the backup.
    "systemd",
    "strace",
    "sqlite3",
];

struct Bare {
    dir: tempfile::TempDir,
}

impl Bare {
    /// A machine with nothing installed; `uid` is what `id -u` says; `sudo`
    /// whether there is a sudo.
    fn new(uid: u32, sudo: bool) -> Bare {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("mkdir");
        fs::write(dir.path().join("installed"), "").expect("installed");
        fs::write(dir.path().join("log"), "").expect("log");
        let log = dir.path().join("log");
        let installed = dir.path().join("installed");
        let fake = |name: &str, body: String| {
            let path = bin.join(name);
            fs::write(&path, format!("#!/bin/bash\n{body}\n")).expect("fake");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        fake(
            "dpkg-query",
            format!(
                r#"p="${{@: -1}}"; grep -qx "$p" {i} && echo "install ok installed" || exit 1"#,
                i = installed.display()
            ),
        );
        fake(
            "apt-get",
            format!(
                r#"echo "apt-get $*" >> {l}
if [ "$1" = install ]; then for p in "$@"; do case "$p" in -*|install) ;; *) echo "$p" >> {i};; esac; done; fi"#,
                l = log.display(),
                i = installed.display()
            ),
        );
        fake("cargo", format!(r#"echo "cargo $*" >> {}"#, log.display()));
        fake("id", format!("echo {uid}"));
        if sudo {
            fake(
                "sudo",
                format!(r#"echo "sudo $*" >> {}; exec "$@""#, log.display()),
            );
        }
        // The real tools the scripts use.
        for tool in ["bash", "env", "grep", "sed", "dirname"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("no {tool}"));
            std::os::unix::fs::symlink(real, bin.join(tool)).expect("symlink");
        }
        Bare { dir }
    }

    fn run(&self, script: &str, args: &[&str]) -> Output {
        Command::new(common::root().join("scripts").join(script))
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path().join("bin"))
            .output()
            .expect("run script")
    }

    fn log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("log"))
            .expect("log")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_log(&self) {
        fs::write(self.dir.path().join("log"), "").expect("log");
    }
}

/// The packages of an `apt-get install` line.
fn installed_by(line: &str) -> BTreeSet<String> {
    line.split_whitespace()
        .skip_while(|w| *w != "install")
        .skip(1)
        .filter(|w| !w.starts_with('-'))
        .map(str::to_string)
        .collect()
}

fn set(names: &[&[&str]]) -> BTreeSet<String> {
    names
        .iter()
        .flat_map(|n| n.iter().map(|s| s.to_string()))
        .collect()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_installs_what_the_build_needs_before_cargo_runs() {
    let m = Bare::new(0, false);
    let out = m.run("demo", &["--dir", "/tmp/x"]);
    ok(&out);
    let log = m.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0], "apt-get update -qq");
    assert_eq!(installed_by(&log[1]), set(&[BUILD]), "{}", log[1]);
    assert_eq!(log[2], "cargo run --release -- demo --dir /tmp/x");

    // A second time nothing is missing: straight to cargo.
    m.clear_log();
    ok(&m.run("demo", &[]));
    assert_eq!(m.log(), ["cargo run --release -- demo"]);
}

#[test]
fn test_installs_what_the_build_and_the_tests_need_before_cargo_runs() {
    let m = Bare::new(0, false);
    ok(&m.run("test", &[]));
    let log = m.log();
    assert_eq!(log[0], "apt-get update -qq");
    assert_eq!(installed_by(&log[1]), set(&[BUILD, TESTS]), "{}", log[1]);
    assert!(log[2..].iter().all(|l| l.starts_with("cargo ")), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("cargo test --release"));

    // After the tests, the demo has what it needs.
    m.clear_log();
    ok(&m.run("demo", &[]));
    assert_eq!(m.log(), ["cargo run --release -- demo"]);
}

#[test]
fn without_root_deps_uses_sudo_or_says_what_to_install() {
    let m = Bare::new(1000, true);
    ok(&m.run("deps", &[]));
    let log = m.log();
    assert_eq!(log[0], "sudo apt-get update -qq");
    assert!(log[1].starts_with("apt-get update"), "{log:?}");
    assert!(log[2].starts_with("sudo env DEBIAN_FRONTEND=noninteractive apt-get install"));
    assert_eq!(installed_by(&log[3]), set(&[BUILD]));

    let m = Bare::new(1000, false);
    let out = m.run("demo", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(m.log().is_empty(), "nothing ran: {:?}", m.log());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for p in BUILD {
        assert!(stderr.contains(p), "{p} not named: {stderr}");
    }
}
