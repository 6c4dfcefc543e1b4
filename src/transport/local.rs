//! The local transport: a folder standing in for Altinn's SFTP account.
//!
//! Layout (shared with `dpv-batch sim`): `upload/` for batches,
//! `receipts/` and `confirmations/` for what comes back. Useful for demos and
//! tests, and for sites where another tool moves the files on.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{
    is_temporary, receipt_name, too_large, ErrorKind, Inbound, Result, Transport, TransportError,
    MAX_INBOUND_BYTES,
};
use crate::durable;

pub struct Local {
    root: PathBuf,
}

fn err(what: &str, path: &Path, e: io::Error) -> TransportError {
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    TransportError {
        kind,
        message: format!("{what} {}: {e}", path.display()),
    }
}

impl Local {
    pub fn new(root: &Path) -> Result<Local> {
        for sub in ["upload", "receipts", "confirmations"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| err("cannot create", &dir, e))?;
        }
        Ok(Local {
            root: root.to_path_buf(),
        })
    }

    fn temp(&self, remote_name: &str) -> PathBuf {
        self.root
            .join("upload")
            .join(format!(".{remote_name}.part"))
    }

    fn folder(&self, folder: Inbound) -> PathBuf {
        match folder {
            Inbound::Receipts => self.root.join("receipts"),
            Inbound::Confirmations => self.root.join("confirmations"),
        }
    }
}

impl Transport for Local {
    fn describe(&self) -> String {
        format!("local {}", self.root.display())
    }

    fn upload(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        self.stage(local, remote_name)?;
        let size = fs::metadata(local)
            .map_err(|e| err("cannot look at", local, e))?
            .len();
        self.commit(remote_name, size)
    }

    fn stage(&mut self, local: &Path, remote_name: &str) -> Result<()> {
        let tmp = self.temp(remote_name);
        fs::copy(local, &tmp).map_err(|e| err("cannot upload to", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| err("cannot sync", &tmp, e))
    }

    fn commit(&mut self, remote_name: &str, size: u64) -> Result<()> {
        if self.delivered(remote_name, size)? {
            return Ok(());
        }
        let tmp = self.temp(remote_name);
        let staged = fs::metadata(&tmp).map(|m| m.len()).ok();
        if staged != Some(size) {
            return Err(TransportError {
                kind: ErrorKind::Transient,
                message: format!("{} is not complete; it will be sent again", tmp.display()),
            });
        }
        let dest = self.root.join("upload").join(remote_name);
        durable::rename(&tmp, &dest).map_err(|e| err("cannot rename to", &dest, e))
    }

    fn discard(&mut self, remote_name: &str) -> Result<()> {
        let tmp = self.temp(remote_name);
        match fs::remove_file(&tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("cannot remove", &tmp, e)),
        }
    }

    fn delivered(&mut self, remote_name: &str, size: u64) -> Result<bool> {
        let dest = self.root.join("upload").join(remote_name);
        match fs::metadata(&dest) {
            Ok(m) if m.len() == size => return Ok(true),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("cannot look at", &dest, e)),
        }
        let receipt = self
            .folder(Inbound::Receipts)
            .join(receipt_name(remote_name));
        Ok(receipt.exists())
    }

    fn list(&mut self, folder: Inbound) -> Result<Vec<String>> {
        let dir = self.folder(folder);
        let entries = fs::read_dir(&dir).map_err(|e| err("cannot list", &dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !is_temporary(n) && n.ends_with(".xml"))
            .collect();
        names.sort();
        Ok(names)
    }

    fn fetch(&mut self, folder: Inbound, name: &str, dest: &Path) -> Result<()> {
        // Streamed, never held in memory (a 1 GiB receipt took 1 GiB), and
        // refused over the limit before a byte is copied.
        let src = self.folder(folder).join(name);
        let file = fs::File::open(&src).map_err(|e| err("cannot read", &src, e))?;
        let size = file
            .metadata()
            .map_err(|e| err("cannot look at", &src, e))?
            .len();
        if size > MAX_INBOUND_BYTES {
            return Err(too_large(&src.display().to_string(), size));
        }
        // The file may grow while it is copied: copy one byte past the
        // limit at most, and refuse if that byte came.
        let mut copied = 0;
        let written = durable::write_atomic_with(dest, |out| {
            copied = io::copy(&mut (&file).take(MAX_INBOUND_BYTES + 1), out)?;
            if copied > MAX_INBOUND_BYTES {
                return Err(io::Error::other("over the limit"));
            }
            Ok(())
        });
        match written {
            Ok(()) => Ok(()),
            Err(_) if copied > MAX_INBOUND_BYTES => {
                Err(too_large(&src.display().to_string(), copied))
            }
            Err(e) => Err(err("cannot write", dest, e)),
        }
    }

    fn remove(&mut self, folder: Inbound, name: &str) -> Result<()> {
        let path = self.folder(folder).join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("cannot remove", &path, e)),
        }
    }
}
