//! Transports: how parts reach Altinn and how receipts come back.
//!
//! Every transport (a local folder, an SFTP account; Altinn 3 later) sits
//! behind the one [`Transport`] trait, so the pipeline does not know which
//! one it talks to. The trait is shaped by crash safety:
//! - `upload` must never expose a half-written file under its final name
//!   (write to a temporary name, then rename);
//! - `delivered` answers "did an upload whose outcome I don't know happen?"
//!   by looking at the remote side, so a crash between upload and journal
//!   leads to neither a lost nor a doubled batch;
//! - inbound files (receipts, confirmations) are listed, fetched to a local
//!   file, and removed only after the caller has journalled them.

pub mod hostkey;
pub mod local;
pub mod sftp;

use std::fmt;
use std::path::Path;

/// Which inbound folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Receipts,
    Confirmations,
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network trouble, a full remote disk, a server restart: retry later.
    Transient,
    /// Authentication, host key, permissions: an operator must act.
    Permanent,
    /// This one inbound file cannot be taken (it is over
    /// [`MAX_INBOUND_BYTES`]); the transport itself is fine, so the others
    /// go on. Retrying the same file cannot help.
    Refused,
}

/// The largest inbound file (receipt, confirmations) fetched: the most the
/// parser reads of one ([`crate::altinn::MAX_DOCUMENT_BYTES`]). Larger
/// files are refused before a byte is copied, so a runaway or hostile file
/// costs neither memory nor disk.
pub const MAX_INBOUND_BYTES: u64 = crate::altinn::MAX_DOCUMENT_BYTES;

/// The error for an inbound file over [`MAX_INBOUND_BYTES`].
pub fn too_large(what: &str, size: u64) -> TransportError {
    TransportError {
        kind: ErrorKind::Refused,
        message: format!(
            "{what} is {size} bytes, over the limit of {MAX_INBOUND_BYTES} bytes for a file \
             from Altinn; it is not read, and left where it is"
        ),
    }
}

#[derive(Debug)]
pub struct TransportError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {}

pub type Result<T> = std::result::Result<T, TransportError>;

pub trait Transport: Send {
    /// A short description for logs and `status`, e.g. `local /srv/altinn`.
    fn describe(&self) -> String;

    /// Upload `local` as `remote_name` (temporary name, then rename).
    fn upload(&mut self, local: &Path, remote_name: &str) -> Result<()>;

    /// The first half of `upload`: write `local` under `remote_name`'s
    /// temporary name only, invisible to Altinn. Lets a batch be sent while
    /// it is still being validated; [`Transport::commit`] or
    /// [`Transport::discard`] follows.
    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()>;

    /// The second half: rename a complete staged upload of `size` bytes to
    /// its final name (nothing to do if that already happened).
    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()>;

    /// Remove a staged upload that will not be committed.
    fn discard(&mut self, remote_name: &str) -> Result<()>;

    /// Has `remote_name` (of `size` bytes) reached the other side? True when
    /// it is there under its final name with that size, or Altinn has
    /// already answered for it.
    fn delivered(&mut self, remote_name: &str, size: u64) -> Result<bool>;

    /// Names of inbound files waiting, oldest first.
    fn list(&mut self, folder: Inbound) -> Result<Vec<String>>;

    /// Copy an inbound file to `dest` (a local path; written atomically),
    /// streaming it; a file over [`MAX_INBOUND_BYTES`] is an
    /// [`ErrorKind::Refused`] error and nothing is written.
    fn fetch(&mut self, folder: Inbound, name: &str, dest: &Path) -> Result<()>;

    /// Remove an inbound file once it is journalled.
    fn remove(&mut self, folder: Inbound, name: &str) -> Result<()>;
}

/// The transport a config asks for. No network is touched here: an SFTP
/// transport connects on first use (so a server that is down at start is a
/// transient problem later, not a failed start), but its key file,
/// passphrase and pinned host keys are read now.
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Transport>> {
    use crate::config::TransportKind;
    let t = &config.transport;
    let missing = |what: &str| TransportError {
        kind: ErrorKind::Permanent,
        message: format!("transport.kind is {what} but there is no [transport.{what}] section"),
    };
    match t.kind {
        TransportKind::Local => {
            let local = t.local.as_ref().ok_or_else(|| missing("local"))?;
            Ok(Box::new(local::Local::new(&local.root)?))
        }
        TransportKind::Sftp => {
            let cfg = t.sftp.as_ref().ok_or_else(|| missing("sftp"))?;
            Ok(Box::new(sftp::Sftp::new(cfg)?))
        }
        TransportKind::Altinn3 => Err(TransportError {
            kind: ErrorKind::Permanent,
            message: "transport.kind \"altinn3\" is not available in this version".into(),
        }),
    }
}

/// The receipt file Altinn's side writes for an uploaded batch.
pub fn receipt_name(remote_name: &str) -> String {
    format!("{remote_name}.receipt.xml")
}

/// Temporary and hidden names that no side may take as complete files.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}
