//! Transports: how parts reach Altinn and how Altinn's answers come back.
//!
//! Every transport sits behind the one [`Transport`] trait, so the pipeline
//! does not know which one it talks to. Two shapes fit it:
//! - **file-shaped** (a local folder, an SFTP account: Altinn II's batch
//!   area): a *part* is a batch file. Submitting uploads it (temporary name,
//!   then rename); Altinn answers *later* with a receipt file, and later
//!   still with read confirmations. [`Files`] turns any [`FileTransport`]
//!   (upload, list, fetch, remove) into a `Transport`;
//! - **letter-shaped** (Altinn 3's Correspondence API, [`altinn3`]): a part
//!   is one letter. Submitting is one REST call that Altinn answers *now*:
//!   created (with an id) or refused (with a reason). Later statuses
//!   (published, failed, read) come from polling.
//!
//! The trait is shaped by crash safety. The pipeline journals a part as in
//! flight *before* [`Transport::submit`], so after a crash it knows which
//! parts' outcome it does not know, and asks [`Transport::settle`] before
//! sending again: for a file, "is it there under its final name (or
//! answered)?"; for a letter, "does Altinn have a correspondence with this
//! idempotent key?". Either way, nothing is lost and nothing is sent twice.
//! What comes back ([`News`]) is journalled by the pipeline first, and only
//! then acknowledged (a receipt file removed remotely).

pub mod altinn3;
pub mod files;
pub mod hostkey;
pub mod local;
pub mod sftp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::{Answer, LetterRow, NewLetter, NewPart, PartRow, PollRow, StatusUpdate};
use crate::package::{self, PackError};

pub use files::{FileTransport, Files, Inbound};

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

impl TransportError {
    pub fn transient(message: impl Into<String>) -> TransportError {
        TransportError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> TransportError {
        TransportError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {}

pub type Result<T> = std::result::Result<T, TransportError>;

/// A part on its way, as the journal knows it: what `submit` and `settle` get.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The input file's name (for logs).
    pub file: String,
    pub part: PartRow,
    /// The part's local copy: a batch file, or a letter's folder.
    pub path: PathBuf,
    /// Its letters (a letter-shaped part has one, with its idempotent key).
    pub letters: Vec<LetterRow>,
}

/// What submitting (or settling) one part came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Handed over; Altinn answers later, through [`Transport::collect`].
    Sent,
    /// Altinn answered at once: created, or refused (for this part only).
    Answered(Answer),
    /// Not handed over, or not known to be: the part stays in flight, is
    /// settled first next time, and the transport waits at least `after`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// What came back from Altinn, for the pipeline to journal; then it calls
/// [`Transport::acknowledge`].
#[derive(Debug)]
pub enum News {
    /// A batch receipt (file-shaped): the part named by the receipt file
    /// (when its name tells), or by its ShipmentReference.
    Receipt {
        remote_name: Option<String>,
        receipt: crate::altinn::BatchReceipt,
        handle: files::Handle,
    },
    /// Read confirmations (file-shaped): (SendersReference, read at), and
    /// every letter the file names (read or not).
    Reads {
        reads: Vec<(String, String)>,
        letters: Vec<String>,
        handle: files::Handle,
    },
    /// What polling letters' statuses found (letter-shaped).
    Statuses(Vec<StatusUpdate>),
}

/// What the pipeline did with a piece of news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Journalled.
    Applied,
    /// Matched nothing the journal waits for (a repeat?): kept aside.
    Unmatched,
    /// Not ours (another installation's letters): left where it is for
    /// them, and passed over from now on.
    LeaveForOthers,
}

/// Everything `prepare` may need besides the part.
pub struct PrepareContext<'a> {
    pub file_id: i64,
    /// This installation's id (the namespace of idempotent keys).
    pub installation_id: &'a str,
    pub system_user_code: &'a str,
    /// The number the first part made here gets (numbers are unique per file).
    pub first_part_no: i64,
}

pub trait Transport: Send {
    /// A short description for logs and `status`, e.g. `local /srv/altinn`.
    fn describe(&self) -> String;

    /// Cut a packaged batch part (written in `dir`, the file's parts folder)
    /// into what this transport submits, written under `dir` too. Files:
    /// the part itself. The result is journalled before anything is sent.
    fn prepare(
        &mut self,
        part: &package::Part,
        dir: &Path,
        ctx: &PrepareContext<'_>,
    ) -> std::result::Result<Vec<NewPart>, PackError> {
        let _ = (dir, ctx);
        Ok(vec![whole_part(part)])
    }

    /// How many parts one [`Transport::submit`] may take (a file transport
    /// sends one at a time; a letter transport keeps several in flight).
    fn batch_size(&self) -> usize {
        1
    }

    /// Submit parts already journalled as in flight; one result per part,
    /// in order. An `Err` is like [`Submitted::Retry`] for that part, and a
    /// permanent one stops the transport until an operator acts.
    fn submit(&mut self, parts: &[Outgoing]) -> Vec<Result<Submitted>>;

    /// Parts whose outcome is unknown (a crash, a lost answer): did each
    /// reach Altinn? `None`: no, send it again. One result per part, in order.
    fn settle(&mut self, parts: &[Outgoing]) -> Vec<Result<Option<Submitted>>>;

    /// Collect what came back: receipts and read confirmations (files), or
    /// the statuses of `due`, the sent letters due for a look (letters).
    fn collect(&mut self, due: &[PollRow]) -> Result<Vec<News>>;

    /// The pipeline has journalled `news` (or kept it aside): the transport
    /// may forget it (remove a receipt file remotely).
    fn acknowledge(&mut self, news: &News, how: Disposition) -> Result<()> {
        let _ = (news, how);
        Ok(())
    }

    /// When to look at a letter's status first, once it is created.
    fn first_poll(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether a file's receipt waits until each created letter is published
    /// (or failed to be): `receipt_after = "published"`.
    fn receipt_waits_for_publication(&self) -> bool {
        false
    }

    /// Whether receipts list the parts (batch files); not when each part is
    /// one letter, which the receipt lists anyway.
    fn parts_in_receipt(&self) -> bool {
        true
    }

    /// Whether this transport can [`Transport::stage`] (send while validating).
    fn stages(&self) -> bool {
        false
    }

    /// Write `local` under `remote_name`'s temporary name only, invisible
    /// to Altinn: lets a batch be sent while it is still being validated;
    /// [`Transport::commit`] or [`Transport::discard`] follows.
    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        let _ = (local, remote_name);
        Err(TransportError::permanent(format!(
            "{} cannot send while validating",
            self.describe()
        )))
    }

    /// Make a complete staged upload of `size` bytes visible under its
    /// final name (nothing to do if that already happened).
    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()> {
        let _ = size;
        Err(TransportError::permanent(format!(
            "{} has nothing staged as {remote_name}",
            self.describe()
        )))
    }

    /// Remove a staged upload that will not be committed.
    fn discard(&mut self, remote_name: &str) -> Result<()> {
        let _ = remote_name;
        Ok(())
    }

    /// What the transport is going through right now (throttled by Altinn,
    /// stopped), in words for `status`; `None` when all is well.
    fn condition(&self) -> Option<String> {
        None
    }
}

/// A packaged part as it is: the unit a file transport submits.
pub fn whole_part(p: &package::Part) -> NewPart {
    NewPart {
        part_no: p.part_no,
        remote_name: p.remote_name.clone(),
        local: p.remote_name.clone(),
        shipment_reference: p.shipment_reference.clone(),
        sequence_no: p.sequence_no,
        sequence_slot: p.sequence_slot.map(|s| s as i64),
        bytes: p.bytes as i64,
        letters: p
            .letters
            .iter()
            .map(|(sref, reportee)| NewLetter::new(sref, reportee))
            .collect(),
        answer: None,
    }
}

/// The transport a config asks for. No network is touched here: an SFTP
/// transport connects on first use (so a server that is down at start is a
/// transient problem later, not a failed start), but its key file,
/// passphrase and pinned host keys are read now.
/// `installation_id` tells this installation's receipts from others'.
pub fn open(config: &crate::config::Config, installation_id: &str) -> Result<Box<dyn Transport>> {
    use crate::config::TransportKind;
    let inbound = config.paths.state.join("inbound");
    match config.transport.kind {
        TransportKind::Local | TransportKind::Sftp => Ok(Box::new(Files::new(
            open_files(config)?,
            &inbound,
            installation_id,
        ))),
        TransportKind::Altinn3 => altinn3::open(config),
    }
}

/// The file transport a config asks for (local or SFTP), as such: for tools
/// that upload one file.
pub fn open_files(config: &crate::config::Config) -> Result<Box<dyn FileTransport>> {
    use crate::config::TransportKind;
    let t = &config.transport;
    let missing = |what: &str| {
        TransportError::permanent(format!(
            "transport.kind is {what} but there is no [transport.{what}] section"
        ))
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
        TransportKind::Altinn3 => Err(TransportError::permanent(
            "transport.kind \"altinn3\" sends letters, not files",
        )),
    }
}

/// `check-config --connect`: reach the configured transport once, as the
/// daemon would, and say what was reached or which step failed.
pub fn check_connection(config: &crate::config::Config) -> std::result::Result<String, String> {
    use crate::config::TransportKind;
    match config.transport.kind {
        TransportKind::Altinn3 => {
            let a3 = config
                .transport
                .altinn3
                .as_ref()
                .ok_or("there is no [transport.altinn3] section")?;
            altinn3::check_connection(a3)?;
            Ok(format!(
                "a token, and a read of {} answered",
                a3.api_base.trim_end_matches('/')
            ))
        }
        TransportKind::Sftp => {
            let cfg = config
                .transport
                .sftp
                .as_ref()
                .ok_or("there is no [transport.sftp] section")?;
            let mut t = sftp::Sftp::new(cfg).map_err(|e| e.to_string())?;
            t.check_steps()
                .map_err(|(step, e)| format!("the {} step failed: {e}", step.describe()))
        }
        TransportKind::Local => {
            let mut t = open_files(config).map_err(|e| e.to_string())?;
            t.list(Inbound::Receipts).map_err(|e| e.to_string())?;
            Ok(t.describe())
        }
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
