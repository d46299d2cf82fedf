//! In-place credential edits: the `token` and `connection` commands change Token and Connection
//! elements and nothing else.
//!
//! [`Document`] reads the text once with quick-xml's event reader ([`outline`]), which records the
//! byte spans of the Token and Connection elements and of the containers above them. Each edit
//! splices new bytes into the original text: comments, order, indentation, unknown Scan Engine
//! elements and the XML declaration stay byte for byte. New elements ([`entry`]) are written by
//! quick-xml's writer with the indentation of their neighbours ([`layout`]); [`add`] appends them,
//! [`change`] sets children and removes elements.
//!
//! [`ConfigFile`] ([`file`]) is the filesystem side: an advisory lock beside the config, the same
//! validation `serve` runs, and an atomic replace (temp file, fsync, rename, fsync of the folder).

mod add;
mod change;
mod entry;
mod file;
mod layout;
mod outline;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::PathBuf;

pub use entry::{EntryKind, NewConnection, NewToken};
pub use file::ConfigFile;
use outline::{EntryNode, Outline};

use super::load::LoadError;
use super::perms::Reader;
use super::validate::{self, check_name, ConfigError, ConfigErrors};

/// Why an edit was not made. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The config file could not be read.
    #[error(transparent)]
    Read(#[from] LoadError),
    /// The file is not XML that can be edited in place; the validator's errors say where.
    #[error("{}", prefixed("cannot edit: ", .0))]
    Unreadable(ConfigErrors),
    /// The edited file would not pass validation; nothing was written.
    #[error("{}", prefixed("not written: ", .0))]
    Rejected(ConfigErrors),
    /// No Token (or Connection) has this Name.
    #[error("no {kind} named {name:?}")]
    UnknownName {
        /// Token or Connection.
        kind: EntryKind,
        /// The name.
        name: String,
    },
    /// Several elements of one kind have this Name (the file is invalid); editing one would be a
    /// guess.
    #[error("{count} {kind}s are named {name:?}; fix the file by hand first")]
    AmbiguousName {
        /// Token or Connection.
        kind: EntryKind,
        /// The name.
        name: String,
        /// How many have it.
        count: usize,
    },
    /// `add` with a Name that a Token or a Connection already has: one namespace for both.
    #[error("a {kind} named {name:?} already exists")]
    NameTaken {
        /// The kind of the element that has it.
        kind: EntryKind,
        /// The name.
        name: String,
    },
    /// The token's digest is already the Value of another Token: the same token twice.
    #[error("that token is already in the file, as {0:?}")]
    ValueTaken(String),
    /// The lock file beside the config could not be opened or locked.
    #[error("{}: cannot lock: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the new file failed; the old one is untouched.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file or folder that could not be written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// This user cannot give the new file an owner and group that keep it readable by everyone
    /// who reads the config now (the gateway among them), so nothing was written: the gateway
    /// would keep its last config and the edit would never apply.
    #[error(
        "{}: not written: {lost} can read it now but not the new file, which would belong to \
         uid {uid} and gid {gid}; run the command as root or as {hint}",
        path.display()
    )]
    Readers {
        /// The config.
        path: PathBuf,
        /// Who would lose read access.
        lost: Reader,
        /// The owner the new file would have.
        uid: u32,
        /// The group the new file would have.
        gid: u32,
        /// Who could make the edit instead.
        hint: String,
    },
}

impl EditError {
    /// The arguments, not the file, are at fault: a name that is missing or taken, a token already
    /// present. The `token` and `connection` commands exit 64 for these and 1 for the rest.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EditError::UnknownName { .. } | EditError::NameTaken { .. } | EditError::ValueTaken(_)
        )
    }
}

/// A Name for a new Token or Connection: the validator's rule, and no XML whitespace at either end,
/// which the validator would trim so the name would not read back as given.
pub fn check_new_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.trim_matches([' ', '\t', '\r', '\n']) != name {
        return Err("Name must not start or end with whitespace".into());
    }
    Ok(())
}

/// Each error on its own line, after `prefix`.
fn prefixed(prefix: &str, errors: &ConfigErrors) -> String {
    let lines: Vec<String> = errors.0.iter().map(|e| format!("{prefix}{e}")).collect();
    lines.join("\n")
}

/// A config text with the spans an edit needs. Every edit returns the whole new text; the caller
/// validates it before writing. Its Debug shows the label and the token count, not the text.
pub struct Document<'t> {
    text: &'t str,
    label: &'t str,
    outline: Outline,
}

impl std::fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("label", &self.label)
            .field("tokens", &self.token_count())
            .finish_non_exhaustive()
    }
}

impl<'t> Document<'t> {
    /// Reads `text`; `label` names the file in errors.
    pub fn read(text: &'t str, label: &'t str) -> Result<Document<'t>, EditError> {
        match Outline::read(text) {
            Ok(outline) => Ok(Document {
                text,
                label,
                outline,
            }),
            Err(fault) => {
                let single = single(text, label, fault.offset, fault.message);
                Err(EditError::Unreadable(
                    invalid(text, label).unwrap_or(single),
                ))
            }
        }
    }

    /// `GatewaySettings/TokenKeyFile` as written (default `scangate.key`), before path resolution.
    /// The file may be invalid, and `token add` needs the key before the edited file is validated.
    pub fn key_file(&self) -> PathBuf {
        PathBuf::from(self.outline.key_file.as_deref().unwrap_or("scangate.key"))
    }

    /// How many Token elements the file holds.
    pub fn token_count(&self) -> usize {
        self.count(EntryKind::Token)
    }

    /// How many elements of `kind` the file holds.
    pub fn count(&self, kind: EntryKind) -> usize {
        self.outline.entries(kind).len()
    }

    /// The trimmed text of `child` of the one element of `kind` called `name`; `None` when it has
    /// no such child.
    pub fn child_text(
        &self,
        kind: EntryKind,
        name: &str,
        child: &str,
    ) -> Result<Option<&str>, EditError> {
        let entry = self.find(kind, name)?;
        Ok(entry.child(child).map(|c| c.text.as_str()))
    }

    /// The one element of `kind` called `name`.
    fn find(&self, kind: EntryKind, name: &str) -> Result<&EntryNode, EditError> {
        let entries = self.outline.entries(kind);
        let mut found = entries.iter().filter(|t| t.name() == Some(name));
        let first = found.next();
        let more = found.count();
        match first {
            None => Err(EditError::UnknownName {
                kind,
                name: name.to_owned(),
            }),
            Some(_) if more > 0 => Err(EditError::AmbiguousName {
                kind,
                name: name.to_owned(),
                count: more + 1,
            }),
            Some(entry) => Ok(entry),
        }
    }

    /// The file's own errors, for an edit that has nowhere to go.
    fn rejected(&self) -> EditError {
        let fallback = single(
            self.text,
            self.label,
            0,
            "no <ServerSettings> to add to".into(),
        );
        EditError::Rejected(invalid(self.text, self.label).unwrap_or(fallback))
    }
}

/// `text` with `range` replaced by `with`.
fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    splice_all(text, vec![(range, with.to_owned())])
}

/// `text` with each range replaced. Ranges do not overlap; insertions at one position keep the
/// order they are given in.
fn splice_all(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(range, _)| range.start);
    let added: usize = edits.iter().map(|(_, with)| with.len()).sum();
    let mut out = String::with_capacity(text.len() + added);
    let mut at = 0;
    for (range, with) in &edits {
        out.push_str(&text[at..range.start]);
        out.push_str(with);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The validator's errors for `text`, if it has any.
fn invalid(text: &str, label: &str) -> Option<ConfigErrors> {
    validate::parse(text, label).err()
}

/// One error at a byte offset, for faults the validator does not see.
fn single(text: &str, label: &str, offset: usize, rule: String) -> ConfigErrors {
    let (line, column) = super::xml::LineIndex::new(text).position(offset);
    ConfigErrors(vec![ConfigError {
        file: label.to_owned(),
        line,
        column,
        path: String::new(),
        rule,
    }])
}
