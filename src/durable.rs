//! Durable file operations: the few primitives every stage uses to make a
//! change survive a crash or a power cut.
//!
//! The rules: a file others may read appears atomically (written under a
//! temporary name, fsynced, renamed), and a rename is only durable once the
//! folder that holds it is fsynced too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// fsync a folder, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary name used while `path` is being written: hidden and with a
/// `.tmp` suffix, so no watcher (ours, the fagsystem's) takes it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Write `bytes` to `path` atomically: temp name, fsync, rename, fsync folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `fill`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = create_temp(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(parent(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The first half of an atomic write: the content, fsynced, under the
/// temporary name of `path`. [`publish`] does the second half. Between the
/// two, the caller journals that the file is staged, so a restart knows
/// whether the visible file was already published (and maybe consumed).
pub fn write_staged(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut f = create_temp(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Create `tmp` afresh. Others can write in the folders we write to (the
/// fagsystem in the outbox): whatever is at `tmp` (our own leftover after a
/// crash, or a link someone planted) is removed, and the new file is created
/// exclusively, which never follows a link (O_EXCL): our content cannot be
/// written through a link into another file.
fn create_temp(tmp: &Path) -> io::Result<File> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).open(tmp)
}

/// Publish a file staged by [`write_staged`]: rename it to its final name.
/// Nothing to do if it was already published.
pub fn publish(path: &Path) -> io::Result<()> {
    let tmp = temp_path(path);
    if tmp.exists() {
        rename(&tmp, path)?;
    }
    Ok(())
}

/// Publish a file staged by [`write_staged`] without ever replacing one
/// that is there: the temporary name is renamed with `RENAME_NOREPLACE`,
/// which fails atomically if the final name is taken (a look before a
/// rename would race). As with [`publish`], a missing temporary file means
/// it was published already (and maybe taken away). `Ok(false)`: another
/// file has the name; the staged file is left where it is.
pub fn publish_new(path: &Path) -> io::Result<bool> {
    let tmp = temp_path(path);
    if fs::symlink_metadata(&tmp).is_err() {
        return Ok(true);
    }
    let moved = match rename_noreplace(&tmp, path) {
        Err(e) if no_such_rename(&e) => link_then_unlink(&tmp, path),
        other => other,
    };
    match moved {
        Ok(()) => {}
        // Someone else's file, or ours linked by the fallback before a crash?
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !same_file(&tmp, path)? {
                return Ok(false);
            }
            fs::remove_file(&tmp)?;
        }
        Err(e) => return Err(e),
    }
    sync_dir(parent(path))?;
    Ok(true)
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call;
    // AT_FDCWD resolves them like rename(2) does.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The filesystem (or kernel) has no `RENAME_NOREPLACE` (NFS, say).
fn no_such_rename(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// The fallback: link(2) also refuses a taken name. A crash between the
/// two steps leaves both names; the restart sees the same file under both
/// and removes the temporary one (if the fagsystem took the published
/// file away in that instant, it gets it once more).
fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    sync_dir(parent(to))?;
    fs::remove_file(from)
}

/// Are `a` and `b` the same file (one inode under two names)?
fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (fs::symlink_metadata(a)?, fs::symlink_metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Is `name` in `dir` taken: by a file of any kind (a dangling symlink
/// too), or by its temporary name (a write under way or abandoned)?
pub fn name_taken(dir: &Path, name: &str) -> bool {
    let path = dir.join(name);
    fs::symlink_metadata(&path).is_ok() || fs::symlink_metadata(temp_path(&path)).is_ok()
}

/// Rename and make it durable (both folders fsynced).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))?;
    if parent(from) != parent(to) {
        sync_dir(parent(from))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A name in `dir` based on `name` that is not taken yet: `name`, then
/// `stem.2.ext`, `stem.3.ext`, ... Files the fagsystem may have read are
/// never overwritten.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    // lstat, not exists(): a dangling link is something there too.
    let there = |p: &Path| fs::symlink_metadata(p).is_ok();
    let free = |p: &Path| !there(p) && !there(&temp_path(p));
    let first = dir.join(name);
    if free(&first) {
        return first;
    }
    let (stem, ext) = match name.find('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (2..)
        .map(|n| dir.join(format!("{stem}.{n}{ext}")))
        .find(|p| free(p))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.xml");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn publishing_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.read-1.xml");
        // A file someone else left under the name stays as it is.
        fs::write(&p, "theirs").unwrap();
        write_staged(&p, b"ours").unwrap();
        assert!(!publish_new(&p).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"theirs");
        assert_eq!(fs::read(temp_path(&p)).unwrap(), b"ours");
        // A free name: published, temporary name gone.
        fs::remove_file(&p).unwrap();
        assert!(publish_new(&p).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"ours");
        assert!(!temp_path(&p).exists());
        // A crash in the fallback, after the link: the same file under
        // both names is ours.
        write_staged(&dir.path().join("b.xml"), b"b").unwrap();
        let b = dir.path().join("b.xml");
        fs::hard_link(temp_path(&b), &b).unwrap();
        assert!(publish_new(&b).unwrap());
        assert!(!temp_path(&b).exists());
        assert_eq!(fs::read(&b).unwrap(), b"b");
        // Already published (and maybe taken away): nothing to do.
        assert!(publish_new(&b).unwrap());
    }

    #[test]
    fn a_link_at_the_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let p = dir.path().join("r.xml");
        std::os::unix::fs::symlink(&victim, temp_path(&p)).unwrap();
        write_staged(&p, b"receipt").unwrap();
        publish(&p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"receipt");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        std::os::unix::fs::symlink(&victim, temp_path(&p)).unwrap();
        write_atomic(&p, b"again").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn free_names_never_reuse() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            free_name(dir.path(), "a.xml.receipt.xml"),
            dir.path().join("a.xml.receipt.xml")
        );
        fs::write(dir.path().join("a.xml.receipt.xml"), "").unwrap();
        assert_eq!(
            free_name(dir.path(), "a.xml.receipt.xml"),
            dir.path().join("a.2.xml.receipt.xml")
        );
    }
}
