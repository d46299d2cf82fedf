//! The config file under edit: held under an advisory lock from read to write, validated as `serve`
//! validates it, and replaced atomically so a running gateway reads the old file or the new one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use super::{Document, EditError};
use crate::config::load::{self, LoadError};
use crate::config::perms::{self, Access, Reader};
use crate::config::Settings;

/// A config file read under its lock. The lock is released when this is dropped, so one command
/// reads, edits and writes without another command's write slipping in between. Its Debug leaves
/// out the text, which holds every Value.
pub struct ConfigFile {
    /// The path as given: it labels errors and anchors relative paths, exactly as in `serve`.
    path: PathBuf,
    /// The file itself, symlinks resolved: the file replaced, and the folder the lock lives in, so
    /// two commands reaching it by different paths still share one lock.
    real: PathBuf,
    /// The text as read under the lock.
    text: String,
    /// The locked lock file (`<config>.lock`).
    _lock: File,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("real", &self.real)
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    /// Locks the config (waiting for another command to finish) and reads it.
    pub fn open(path: &Path) -> Result<ConfigFile, EditError> {
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let real = std::fs::canonicalize(path).map_err(read_err)?;
        let lock = lock(&real)?;
        let bytes = load::read_capped(path)?;
        let label = path.display().to_string();
        load::utf8(&bytes, &label).map_err(EditError::Unreadable)?;
        let text = String::from_utf8(bytes).expect("checked just above");
        Ok(ConfigFile {
            path: path.to_owned(),
            real,
            text,
            _lock: lock,
        })
    }

    /// One whole edit: locks the config, reads it, applies `change`, validates the result as
    /// `serve` would and replaces the file. `change` returns `None` when there is nothing to write.
    /// The settings of the new file, or `None` when nothing was written.
    pub fn edit<E, F>(path: &Path, change: F) -> Result<Option<Settings>, E>
    where
        E: From<EditError>,
        F: FnOnce(&ConfigFile, &Document<'_>) -> Result<Option<String>, E>,
    {
        let file = ConfigFile::open(path)?;
        let label = path.display().to_string();
        let doc = Document::read(file.text(), &label)?;
        let Some(new) = change(&file, &doc)? else {
            return Ok(None);
        };
        Ok(Some(file.commit(&new)?))
    }

    /// The text as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The path as given, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path from the file, resolved against the config's folder as `serve` resolves it.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        self.folder().join(relative)
    }

    /// Validates `new` with the validator `serve` uses, then replaces the file with it.
    pub fn commit(&self, new: &str) -> Result<Settings, EditError> {
        let settings = self.validate(new)?;
        self.replace(new)?;
        Ok(settings)
    }

    /// Validates `new` as `serve` would load it, without writing anything.
    pub fn validate(&self, new: &str) -> Result<Settings, EditError> {
        let label = self.path.display().to_string();
        load::parse_at(new, &label, self.folder()).map_err(EditError::Rejected)
    }

    fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// Replaces the file with `new`: temp file in the same folder with the original's owner and
    /// group (as far as this user may give them) and mode, fsync, rename over the config, fsync the
    /// folder. Refuses, writing nothing, when someone who can read the config could not read the
    /// new file (see [`perms::lost_reader`]). Call [`ConfigFile::validate`] first;
    /// [`ConfigFile::commit`] does both.
    pub fn replace(&self, new: &str) -> Result<(), EditError> {
        let dir = match self.real.parent() {
            Some(dir) => dir,
            None => Path::new("/"),
        };
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| EditError::Write { path, source }
        };
        let meta = std::fs::metadata(&self.real).map_err(write_err(&self.real))?;
        let name = self.real.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp).map_err(write_err(dir))?;
        // From here on the temp file is removed on any failure. (The path is absolute: `real` is
        // canonical, so this cannot fail in practice.)
        let tmp = tempfile::TempPath::try_from_path(&tmp).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(dir)(e)
        })?;
        let before = Access::of(&meta);
        // Owner first: a chown by a non-root user may clear mode bits, so the mode follows it.
        perms::copy_owner(&file, before.uid, before.gid);
        file.set_permissions(meta.permissions())
            .map_err(write_err(&tmp))?;
        let after = Access::of(&file.metadata().map_err(write_err(&tmp))?);
        if let Some(lost) = perms::lost_reader(before, after, perms::groups_of) {
            let hint = match &lost {
                Reader::GroupMember(gid) => format!("a member of group {gid}"),
                other => other.to_string(),
            };
            return Err(EditError::Readers {
                path: self.real.clone(),
                lost,
                uid: after.uid,
                gid: after.gid,
                hint,
            });
        }
        file.write_all(new.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_err(&tmp))?;
        drop(file);
        tmp.persist(&self.real)
            .map_err(|e| write_err(&self.real)(e.error))?;
        sync_folder(dir);
        Ok(())
    }
}

/// Opens and locks `<config>.lock` beside the config. In a folder where it cannot be created, an
/// existing lock file is opened read-only (flock needs no write access).
fn lock(real: &Path) -> Result<File, EditError> {
    let mut name = real.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let path = real.with_file_name(name);
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .or_else(|e| match e.kind() {
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                File::open(&path).map_err(|_| e)
            }
            _ => Err(e),
        });
    let file = opened.and_then(|file| file.lock().map(|()| file));
    file.map_err(|source| EditError::Lock { path, source })
}

/// Makes a rename in `dir` durable. A failure here comes after the rename took effect, so it is
/// logged, not returned.
pub fn sync_folder(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(folder = %dir.display(), error = %e, "cannot fsync folder");
    }
}
