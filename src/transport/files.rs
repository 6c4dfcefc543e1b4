//! File-shaped transports: Altinn II's batch area, as a local folder or an
//! SFTP account. [`FileTransport`] is what each of them does (upload under a
//! temporary name then rename, list, fetch and remove inbound files);
//! [`Files`] turns one into a [`Transport`]: a part is a batch file,
//! submitting uploads it and Altinn answers later with a receipt file;
//! settling an upload of unknown outcome looks at the remote side
//! ([`FileTransport::delivered`]); collecting reads receipts and read
//! confirmations, which are removed remotely only once journalled.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::{Disposition, ErrorKind, News, Outgoing, Result, Submitted, Transport, TransportError};
use crate::altinn;
use crate::durable;
use crate::installation;
use crate::journal::PollRow;

/// Which inbound folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Receipts,
    Confirmations,
}

/// A folder-like place Altinn II reads batches from and writes answers to.
/// Crash safety shapes it:
/// - `upload` must never expose a half-written file under its final name
///   (write to a temporary name, then rename);
/// - `delivered` answers "did an upload whose outcome I don't know happen?"
///   by looking at the remote side, so a crash between upload and journal
///   leads to neither a lost nor a doubled batch;
/// - inbound files (receipts, confirmations) are listed, fetched to a local
///   file, and removed only after the caller has journalled them.
pub trait FileTransport: Send {
    /// A short description for logs and `status`, e.g. `local /srv/altinn`.
    fn describe(&self) -> String;

    /// Upload `local` as `remote_name` (temporary name, then rename).
    fn upload(&mut self, local: &Path, remote_name: &str) -> Result<()>;

    /// The first half of `upload`: write `local` under `remote_name`'s
    /// temporary name only, invisible to Altinn. Lets a batch be sent while
    /// it is still being validated; [`FileTransport::commit`] or
    /// [`FileTransport::discard`] follows.
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
    /// streaming it; a file over [`super::MAX_INBOUND_BYTES`] is an
    /// [`super::ErrorKind::Refused`] error and nothing is written.
    fn fetch(&mut self, folder: Inbound, name: &str, dest: &Path) -> Result<()>;

    /// Remove an inbound file once it is journalled.
    fn remove(&mut self, folder: Inbound, name: &str) -> Result<()>;
}

impl<T: FileTransport + ?Sized> FileTransport for Box<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn upload(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        (**self).upload(local, remote_name)
    }
    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        (**self).stage(local, remote_name)
    }
    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()> {
        (**self).commit(remote_name, size)
    }
    fn discard(&mut self, remote_name: &str) -> Result<()> {
        (**self).discard(remote_name)
    }
    fn delivered(&mut self, remote_name: &str, size: u64) -> Result<bool> {
        (**self).delivered(remote_name, size)
    }
    fn list(&mut self, folder: Inbound) -> Result<Vec<String>> {
        (**self).list(folder)
    }
    fn fetch(&mut self, folder: Inbound, name: &str, dest: &Path) -> Result<()> {
        (**self).fetch(folder, name, dest)
    }
    fn remove(&mut self, folder: Inbound, name: &str) -> Result<()> {
        (**self).remove(folder, name)
    }
}

/// Where a piece of news came from: the remote file and its local copy.
#[derive(Debug, Clone)]
pub struct Handle {
    pub folder: Inbound,
    pub name: String,
    pub local: PathBuf,
}

/// A [`FileTransport`] as a [`Transport`]. Inbound files are fetched into
/// `inbound` (the state folder's `inbound/`); one that cannot be read is
/// kept in `inbound/bad`, one that matches nothing in `inbound/unmatched`.
/// Receipts named for another installation's parts (two on one Altinn
/// account) are theirs to take: left alone, not even counted.
pub struct Files<T: FileTransport> {
    inner: T,
    inbound: PathBuf,
    installation_id: String,
    /// Inbound files the transport refused (over the size limit): logged
    /// once, then passed over, so they neither stop the others nor spin.
    refused: HashSet<String>,
}

impl<T: FileTransport> Files<T> {
    pub fn new(inner: T, inbound: &Path, installation_id: &str) -> Files<T> {
        Files {
            inner,
            inbound: inbound.to_path_buf(),
            installation_id: installation_id.to_string(),
            refused: HashSet::new(),
        }
    }

    /// Fetch and read every waiting file of `folder`; unreadable ones are
    /// kept aside and removed remotely.
    fn fetch_all(&mut self, folder: Inbound, news: &mut Vec<News>) -> Result<()> {
        fs::create_dir_all(&self.inbound).map_err(|e| {
            TransportError::transient(format!("cannot create {}: {e}", self.inbound.display()))
        })?;
        let mut names = self.inner.list(folder)?;
        names.retain(|n| {
            !self.refused.contains(n)
                && (folder != Inbound::Receipts
                    || installation::owner_of(n).is_none_or(|id| id == self.installation_id))
        });
        for name in names {
            let local = self.inbound.join(&name);
            match self.inner.fetch(folder, &name, &local) {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Refused => {
                    error!(file = %name, error = %e, "inbound file refused; the others go on");
                    self.refused.insert(name);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let handle = Handle {
                folder,
                name: name.clone(),
                local: local.clone(),
            };
            let read = File::open(&local)
                .map_err(|e| format!("cannot read {}: {e}", local.display()))
                .and_then(|mut file| match folder {
                    Inbound::Receipts => altinn::parse_receipt(&mut file)
                        .map(|receipt| News::Receipt {
                            remote_name: name.strip_suffix(".receipt.xml").map(str::to_string),
                            receipt,
                            handle,
                        })
                        .map_err(|e| e.to_string()),
                    Inbound::Confirmations => altinn::parse_confirmations(&mut file)
                        .map(|c| News::Reads {
                            letters: c
                                .items
                                .iter()
                                .map(|i| i.senders_reference.clone())
                                .collect(),
                            reads: c
                                .items
                                .iter()
                                .filter_map(|i| {
                                    i.read_date_time
                                        .clone()
                                        .map(|t| (i.senders_reference.clone(), t))
                                })
                                .collect(),
                            handle,
                        })
                        .map_err(|e| e.to_string()),
                });
            match read {
                Ok(n) => news.push(n),
                Err(e) => {
                    error!(file = %name, error = %e, "unreadable file from Altinn; kept in state/inbound/bad");
                    keep_aside(&self.inbound, "bad", &local);
                    self.inner.remove(folder, &name)?;
                }
            }
        }
        Ok(())
    }
}

impl<T: FileTransport> Transport for Files<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn submit(&mut self, parts: &[Outgoing]) -> Vec<Result<Submitted>> {
        parts
            .iter()
            .map(|p| {
                self.inner
                    .upload(&p.path, &p.part.remote_name)
                    .map(|()| Submitted::Sent)
            })
            .collect()
    }

    fn settle(&mut self, parts: &[Outgoing]) -> Vec<Result<Option<Submitted>>> {
        parts
            .iter()
            .map(|p| {
                let there = self
                    .inner
                    .delivered(&p.part.remote_name, p.part.bytes as u64)?;
                Ok(there.then_some(Submitted::Sent))
            })
            .collect()
    }

    fn collect(&mut self, _due: &[PollRow]) -> Result<Vec<News>> {
        let mut news = Vec::new();
        self.fetch_all(Inbound::Receipts, &mut news)?;
        self.fetch_all(Inbound::Confirmations, &mut news)?;
        Ok(news)
    }

    fn acknowledge(&mut self, news: &News, how: Disposition) -> Result<()> {
        let handle = match news {
            News::Receipt { handle, .. } | News::Reads { handle, .. } => handle,
            News::Statuses(_) => return Ok(()),
        };
        match how {
            Disposition::Applied => {
                let _ = fs::remove_file(&handle.local);
            }
            Disposition::Unmatched => {
                warn!(file = %handle.name, "kept in state/inbound/unmatched");
                keep_aside(&self.inbound, "unmatched", &handle.local);
            }
            Disposition::LeaveForOthers => {
                let _ = fs::remove_file(&handle.local);
                self.refused.insert(handle.name.clone());
                return Ok(());
            }
        }
        self.inner.remove(handle.folder, &handle.name)
    }

    fn stages(&self) -> bool {
        true
    }

    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        self.inner.stage(local, remote_name)
    }

    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()> {
        self.inner.commit(remote_name, size)
    }

    fn discard(&mut self, remote_name: &str) -> Result<()> {
        self.inner.discard(remote_name)
    }
}

fn keep_aside(inbound: &Path, sub: &str, local: &Path) {
    let dir = inbound.join(sub);
    let _ = fs::create_dir_all(&dir);
    if let Some(name) = local.file_name() {
        let _ = fs::rename(local, durable::free_name(&dir, &name.to_string_lossy()));
    }
}
