//! Host key pinning for the SFTP transport.
//!
//! An SFTP connection is only as trustworthy as the check of the server's
//! host key: without it, anyone on the path can pose as Altinn and collect
//! every letter. So there is no trust-on-first-use and no "accept new keys"
//! switch: the key must be pinned before the first connection, either as an
//! OpenSSH `known_hosts` entry for `host:port` (plain or hashed, the format
//! `ssh-keyscan`/`ssh-keygen -H` write) or as a SHA256 fingerprint as
//! `ssh-keygen -lf` prints it (`SHA256:` + unpadded base64).
//!
//! We read `known_hosts` ourselves rather than through libssh2 because a
//! mismatch must name the *expected* fingerprint too, and because we need
//! the pinned key types up front to ask the server for a key of that type
//! (a server with an ed25519 and an ECDSA key would otherwise offer the one
//! libssh2 prefers, which is a spurious mismatch).
//!
//! Not through the `ssh-key` crate's `known_hosts` either: it splits a line
//! on a single space and keeps leading blanks, so it refuses lines OpenSSH
//! reads (tab-separated, indented, several spaces: `ssh-keygen -F` finds
//! them), it fails a whole file on one line it cannot parse, and it has no
//! host matching, which is most of this module; it would replace only the
//! line splitting below, with a tree of SSH crates.
//!
//! Supported: plain and hashed (`|1|salt|hmac`) host fields, `[host]:port`,
//! comma-separated patterns with `*`/`?` wildcards and `!` negation,
//! `@revoked` markers. Not supported: `@cert-authority` (host certificates);
//! such lines are ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A public host key: its algorithm name and the SSH wire-format blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algo: String,
    pub blob: Vec<u8>,
}

impl HostKey {
    /// `SHA256:<base64, no padding>`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

/// The OpenSSH SHA256 fingerprint of a key blob.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
}

/// Normalise a configured fingerprint (`SHA256:abc...`, padding optional)
/// for comparison; `None` when it is not a well-formed SHA256 fingerprint.
pub fn normalise_fingerprint(fp: &str) -> Option<String> {
    let rest = fp.trim().strip_prefix("SHA256:")?;
    let rest = rest.trim_end_matches('=');
    let bytes = decode_b64(rest)?;
    (bytes.len() == 32).then(|| format!("SHA256:{rest}"))
}

/// Why a known_hosts file cannot be used.
#[derive(Debug)]
pub struct KnownHostsError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for KnownHostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "known_hosts {}: {}", self.path.display(), self.message)
    }
}

/// What the operator pinned for one `host:port`.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    /// Keys from known_hosts entries that match the host.
    pub keys: Vec<HostKey>,
    /// Keys marked `@revoked` (never accepted, whatever else says).
    pub revoked: Vec<HostKey>,
    /// Normalised `SHA256:` fingerprints from the config.
    pub fingerprints: Vec<String>,
    /// Where `keys` came from (for messages).
    pub known_hosts: Option<PathBuf>,
}

/// The verdict on a key a server offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    Revoked,
    Mismatch,
}

impl Pins {
    /// Pins for `host:port` from an optional known_hosts file and fingerprints.
    pub fn load(
        known_hosts: Option<&Path>,
        fingerprints: &[String],
        host: &str,
        port: u16,
    ) -> Result<Pins, KnownHostsError> {
        let mut pins = Pins::default();
        if let Some(path) = known_hosts {
            let text = std::fs::read_to_string(path).map_err(|e| KnownHostsError {
                path: path.to_path_buf(),
                message: format!("cannot read: {e}"),
            })?;
            let (keys, revoked) =
                parse_known_hosts(&text, host, port).map_err(|message| KnownHostsError {
                    path: path.to_path_buf(),
                    message,
                })?;
            pins.keys = keys;
            pins.revoked = revoked;
            pins.known_hosts = Some(path.to_path_buf());
        }
        for fp in fingerprints {
            match normalise_fingerprint(fp) {
                Some(n) => pins.fingerprints.push(n),
                None => {
                    return Err(KnownHostsError {
                        path: PathBuf::from("(host_key_fingerprints)"),
                        message: format!(
                            "'{fp}' is not a SHA256 fingerprint like 'SHA256:' followed by 43 \
                             base64 characters (see `ssh-keygen -lf KEYFILE`)"
                        ),
                    })
                }
            }
        }
        Ok(pins)
    }

    /// Whether anything at all is pinned (no pin: refuse to connect).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.fingerprints.is_empty()
    }

    /// Host key algorithms to ask the server for, best first; empty: any.
    /// Only known_hosts keys tell the type; with fingerprints alone the
    /// server's preferred key is taken and compared.
    pub fn algorithms(&self) -> String {
        if !self.fingerprints.is_empty() {
            return String::new();
        }
        let mut algos: Vec<&str> = Vec::new();
        for key in &self.keys {
            let names: &[&str] = match key.algo.as_str() {
                "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => &[other],
            };
            for n in names {
                if !algos.contains(n) {
                    algos.push(n);
                }
            }
        }
        algos.join(",")
    }

    pub fn verdict(&self, offered: &[u8]) -> Verdict {
        if self.revoked.iter().any(|k| k.blob == offered) {
            return Verdict::Revoked;
        }
        if self.keys.iter().any(|k| k.blob == offered)
            || self.fingerprints.contains(&fingerprint(offered))
        {
            return Verdict::Trusted;
        }
        Verdict::Mismatch
    }

    /// "SHA256:a (ssh-ed25519, known_hosts /x) or SHA256:b (host_key_fingerprints)".
    pub fn describe_expected(&self) -> String {
        let mut parts: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let from = self
                    .known_hosts
                    .as_ref()
                    .map(|p| format!(", known_hosts {}", p.display()))
                    .unwrap_or_default();
                format!("{} ({}{from})", k.fingerprint(), k.algo)
            })
            .collect();
        parts.extend(
            self.fingerprints
                .iter()
                .map(|f| format!("{f} (host_key_fingerprints)")),
        );
        if parts.is_empty() {
            "no pinned key".into()
        } else {
            parts.join(" or ")
        }
    }
}

/// The name OpenSSH looks up: `host` on port 22, else `[host]:port`.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// Entries of a known_hosts text that apply to `host:port`: (keys, revoked).
pub fn parse_known_hosts(
    text: &str,
    host: &str,
    port: u16,
) -> Result<(Vec<HostKey>, Vec<HostKey>), String> {
    let name = lookup_name(host, port);
    let mut keys = Vec::new();
    let mut revoked = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut is_revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => is_revoked = true,
                // Host certificates are not supported: skip, never trust.
                _ => continue,
            }
            first = fields.next().unwrap_or("");
        }
        let (Some(algo), Some(b64)) = (fields.next(), fields.next()) else {
            return Err(format!("line {} is not 'HOSTS KEYTYPE BASE64KEY'", i + 1));
        };
        if !hosts_match(first, &name) {
            continue;
        }
        let blob = decode_b64(b64)
            .ok_or_else(|| format!("line {}: the key is not valid base64", i + 1))?;
        let key = HostKey {
            algo: algo.to_string(),
            blob,
        };
        if is_revoked {
            revoked.push(key);
        } else {
            keys.push(key);
        }
    }
    Ok((keys, revoked))
}

/// Does a known_hosts host field match `name` (already in lookup form)?
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (decode_b64(salt), decode_b64(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(name.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut matched = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(&pattern.to_ascii_lowercase(), name) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// OpenSSH-style wildcard match: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Standard base64 (padding optional); `None` on anything else.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    crate::b64::LENIENT.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ed25519 key and its `ssh-keygen -lf` / `ssh-keygen -H` forms.
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"hello world!"] {
            assert_eq!(decode_b64(&crate::b64::encode(data)).unwrap(), data);
        }
        assert!(decode_b64("a").is_none());
        assert!(decode_b64("ab$c").is_none());
    }

    #[test]
    fn lines_split_as_openssh_splits_them() {
        // `ssh-keygen -F` finds all three: fields split on any run of spaces
        // or tabs, leading blanks ignored. (ssh-key's known_hosts parser
        // splits on one ' ' and keeps leading blanks, so it refuses the
        // first two; that is why this parser stays.)
        let text = format!(
            "tabbed\tssh-ed25519\t{KEY}\n  indented  ssh-ed25519   {KEY}\nplain ssh-ed25519 {KEY} c#1\n"
        );
        for host in ["tabbed", "indented", "plain"] {
            let (keys, _) = parse_known_hosts(&text, host, 22).unwrap();
            assert_eq!(keys.len(), 1, "{host}");
        }
    }

    #[test]
    fn plain_and_bracketed_hosts() {
        let text = format!(
            "# comment\nexample.org ssh-ed25519 {KEY}\n[sftp.example.org]:2222,other ssh-ed25519 {KEY}\n"
        );
        assert_eq!(
            parse_known_hosts(&text, "EXAMPLE.org", 22).unwrap().0.len(),
            1
        );
        assert_eq!(
            parse_known_hosts(&text, "example.org", 2222)
                .unwrap()
                .0
                .len(),
            0
        );
        assert_eq!(
            parse_known_hosts(&text, "sftp.example.org", 2222)
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(parse_known_hosts(&text, "other", 22).unwrap().0.len(), 1);
    }

    #[test]
    fn wildcards_and_negation() {
        let text = format!("*.example.org,!bad.example.org ssh-ed25519 {KEY}\n");
        assert_eq!(
            parse_known_hosts(&text, "a.example.org", 22)
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(
            parse_known_hosts(&text, "bad.example.org", 22)
                .unwrap()
                .0
                .len(),
            0
        );
        assert!(glob("a?c*", "abcdef"));
        assert!(!glob("a?c", "abcd"));
    }

    #[test]
    fn hashed_host() {
        // |1|salt|HMAC-SHA1(salt, "[127.0.0.1]:2222"), computed here.
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let text = format!(
            "|1|{}|{} ssh-ed25519 {KEY}\n",
            crate::b64::encode(&salt),
            crate::b64::encode(&hash)
        );
        assert_eq!(
            parse_known_hosts(&text, "127.0.0.1", 2222).unwrap().0.len(),
            1
        );
        assert_eq!(
            parse_known_hosts(&text, "127.0.0.1", 22).unwrap().0.len(),
            0
        );
    }

    #[test]
    fn revoked_and_verdicts() {
        let blob = decode_b64(KEY).unwrap();
        let text =
            format!("@revoked host ssh-ed25519 {KEY}\n@cert-authority host ssh-ed25519 {KEY}\n");
        let (keys, revoked) = parse_known_hosts(&text, "host", 22).unwrap();
        assert!(keys.is_empty());
        assert_eq!(revoked.len(), 1);
        let pins = Pins {
            revoked,
            fingerprints: vec![fingerprint(&blob)],
            ..Pins::default()
        };
        assert_eq!(pins.verdict(&blob), Verdict::Revoked);
        let pins = Pins {
            fingerprints: vec![fingerprint(&blob)],
            ..Pins::default()
        };
        assert_eq!(pins.verdict(&blob), Verdict::Trusted);
        assert_eq!(pins.verdict(b"other"), Verdict::Mismatch);
    }

    #[test]
    fn fingerprints_are_normalised() {
        let fp = fingerprint(&decode_b64(KEY).unwrap());
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 43, "{fp}");
        assert_eq!(normalise_fingerprint(&format!("{fp}=")), Some(fp.clone()));
        assert_eq!(normalise_fingerprint("SHA256:abc"), None);
        assert_eq!(normalise_fingerprint("MD5:aa:bb"), None);
    }
}
