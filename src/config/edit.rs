//! In-place token edits: the `token` commands change Token elements and nothing else.
//!
//! [`Document`] reads the text once with quick-xml's event reader ([`outline`]), which records the
//! byte spans of the Token elements and of the containers above them. Each edit splices new bytes
//! into the original text: comments, order, indentation, unknown Scan Engine elements and the XML
//! declaration stay byte for byte. New elements are written by quick-xml's writer with the
//! indentation of their neighbours ([`layout`]).
//!
//! [`ConfigFile`] ([`file`]) is the filesystem side: an advisory lock beside the config, the same
//! validation `serve` runs, and an atomic replace (temp file, fsync, rename, fsync of the folder).

mod file;
mod layout;
mod outline;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::PathBuf;

pub use file::ConfigFile;
use layout::{deeper, render, sep_before, token_node, wrapped, Node};
use outline::{Container, Outline, Span, TokenNode};

use super::load::LoadError;
use super::perms::Reader;
use super::validate::{self, ConfigError, ConfigErrors};
use super::Role;
use crate::auth::token::decode_value;

/// The children of a Token in the order scangate writes them (and Scan Engine documents them).
const TOKEN_ORDER: &[&str] = &["Name", "Value", "Description", "Enabled", "Role", "Tenants"];

/// A Token element to write. Holds the `Value` (a digest), never a token; its Debug leaves the
/// Value out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// `Name`, already checked against the validator's rule.
    pub name: String,
    /// `Value`: base64 of the keyed digest.
    pub value: String,
    /// `Description`, if any.
    pub description: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// `Role`, if any; written in scangate's spelling.
    pub role: Option<Role>,
    /// `Tenants/Tenant`, in order; none writes no `Tenants`.
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("value", &format_args!("<redacted>"))
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .field("role", &self.role)
            .field("tenants", &self.tenants)
            .finish()
    }
}

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
    /// No Token has this Name.
    #[error("no token named {0:?}")]
    UnknownName(String),
    /// Several Tokens have this Name (the file is invalid); editing one would be a guess.
    #[error("{count} tokens are named {name:?}; fix the file by hand first")]
    AmbiguousName {
        /// The name.
        name: String,
        /// How many tokens have it.
        count: usize,
    },
    /// `add` with a Name that a Token already has.
    #[error("a token named {0:?} already exists")]
    NameTaken(String),
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
    /// present. The `token` commands exit 64 for these and 1 for the rest.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EditError::UnknownName(_) | EditError::NameTaken(_) | EditError::ValueTaken(_)
        )
    }
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
        self.outline.tokens.len()
    }

    /// Appends a Token to `AccessTokens`, creating `AccessTokens` (and `AuthSettings`) if missing.
    /// It copies the layout of the last Token, or of the enclosing elements when there is none.
    pub fn add(&self, token: &NewToken) -> Result<String, EditError> {
        let o = &self.outline;
        if o.tokens
            .iter()
            .any(|t| t.name() == Some(token.name.as_str()))
        {
            return Err(EditError::NameTaken(token.name.clone()));
        }
        self.value_free(&token.value)?;
        let Some(last) = o.tokens.last() else {
            // No Token to copy: build from the containers' own indentation.
            return self.append(token);
        };
        let sep = sep_before(self.text, last.span.start);
        let (inner, outer) = match last.children.first() {
            Some(first) if !last.span.is_empty_tag() => (
                sep_before(self.text, first.span.start).to_owned(),
                sep_before(self.text, last.span.close_start).to_owned(),
            ),
            _ => (deeper(sep, sep), sep.to_owned()),
        };
        let node = token_node(token, &deeper(sep, &inner), inner, outer);
        let at = last.span.end;
        Ok(splice(
            self.text,
            at..at,
            &format!("{sep}{}", render(&node)),
        ))
    }

    /// `add` where no Token exists yet: into `AccessTokens`, `AuthSettings` or `ServerSettings`,
    /// whichever is the deepest that exists, creating what lies below it.
    fn append(&self, token: &NewToken) -> Result<String, EditError> {
        let o = &self.outline;
        let (container, name, parent) = match (o.access, o.auth, o.server) {
            (Some(access), auth, _) => (access, "AccessTokens", auth.map(|c| c.span.start)),
            (None, Some(auth), server) => (auth, "AuthSettings", server.map(|c| c.span.start)),
            (None, None, Some(server)) => (server, "ServerSettings", o.root.map(|c| c.span.start)),
            (None, None, None) => return Err(self.rejected()),
        };
        let own = sep_before(self.text, container.span.start);
        let parent = parent.map_or("", |at| sep_before(self.text, at));
        // The separator before the new child, and what lies between it and the Token.
        let sep = match container.last_child {
            Some(last) => sep_before(self.text, last.start).to_owned(),
            None => deeper(parent, own),
        };
        let wrap: &[&str] = match name {
            "AccessTokens" => &[],
            "AuthSettings" => &["AccessTokens"],
            _ => &["AuthSettings", "AccessTokens"],
        };
        let node = wrapped(token, wrap, own, &sep);
        Ok(self.append_child(container, name, own, &sep, &node))
    }

    /// Appends `node` as the last child of `container`, separated by `sep`.
    fn append_child(&self, c: Container, name: &str, own: &str, sep: &str, node: &Node) -> String {
        let rendered = render(node);
        let text = self.text;
        // Where the end tag goes back to the container's indentation, if the container is on a line
        // of its own.
        let close = if own.contains('\n') { own } else { "" };
        if let Some(last) = c.last_child {
            return splice(text, last.end..last.end, &format!("{sep}{rendered}"));
        }
        if c.span.is_empty_tag() {
            // `<AccessTokens/>` becomes `<AccessTokens>…</AccessTokens>`, attributes kept.
            let start_tag = text[c.span.start..c.span.end - 2].trim_end();
            let whole = format!("{start_tag}>{sep}{rendered}{close}</{name}>");
            return splice(text, c.span.start..c.span.end, &whole);
        }
        let trail = sep_before(text, c.span.close_start);
        let at = c.span.close_start - trail.len();
        let close = if trail.contains('\n') { "" } else { close };
        splice(text, at..at, &format!("{sep}{rendered}{close}"))
    }

    /// Sets `Enabled`. `None` when it already has that value.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<Option<String>, EditError> {
        let token = self.find(name)?;
        let value = if enabled { "1" } else { "0" };
        if token.child("Enabled").map(|c| c.text.as_str()) == Some(value) {
            return Ok(None);
        }
        Ok(Some(self.set_child(token, "Enabled", value)))
    }

    /// Replaces `Value`: `rotate`.
    pub fn set_value(&self, name: &str, value: &str) -> Result<String, EditError> {
        let token = self.find(name)?;
        self.value_free(value)?;
        Ok(self.set_child(token, "Value", value))
    }

    /// Refuses a Value that a Token already holds: that would be the same token twice.
    fn value_free(&self, value: &str) -> Result<(), EditError> {
        let Some(digest) = decode_value(value) else {
            return Ok(());
        };
        let holder = self.outline.tokens.iter().find(|t| {
            let held = t.child("Value").map(|c| c.text.as_str());
            held.and_then(decode_value) == Some(digest)
        });
        match holder {
            Some(t) => Err(EditError::ValueTaken(
                t.name().unwrap_or_default().to_owned(),
            )),
            None => Ok(()),
        }
    }

    /// Sets `Description`; an empty text removes the element.
    pub fn set_description(&self, name: &str, description: &str) -> Result<String, EditError> {
        let token = self.find(name)?;
        if !description.is_empty() {
            return Ok(self.set_child(token, "Description", description));
        }
        Ok(match token.child("Description") {
            Some(child) => self.remove_span(child.span),
            None => self.text.to_owned(),
        })
    }

    /// Removes the Token and the line break and indentation before it.
    pub fn remove(&self, name: &str) -> Result<String, EditError> {
        Ok(self.remove_span(self.find(name)?.span))
    }

    /// The one Token called `name`.
    fn find(&self, name: &str) -> Result<&TokenNode, EditError> {
        let mut found = self
            .outline
            .tokens
            .iter()
            .filter(|t| t.name() == Some(name));
        let first = found.next();
        let more = found.count();
        match first {
            None => Err(EditError::UnknownName(name.to_owned())),
            Some(_) if more > 0 => Err(EditError::AmbiguousName {
                name: name.to_owned(),
                count: more + 1,
            }),
            Some(token) => Ok(token),
        }
    }

    /// Sets a text child of a Token: replaces its text (keeping the whitespace around it), or adds
    /// the element in scangate's order when missing.
    fn set_child(&self, token: &TokenNode, name: &str, value: &str) -> String {
        let text = self.text;
        let Some(child) = token.child(name) else {
            let rank = |n: &str| TOKEN_ORDER.iter().position(|k| *k == n);
            let before = token
                .children
                .iter()
                .rev()
                .find(|c| rank(&c.name) < rank(name));
            let node = render(&Node::Leaf(name, value));
            return match (before, token.children.first()) {
                (Some(prev), _) => {
                    let sep = sep_before(text, prev.span.start);
                    splice(text, prev.span.end..prev.span.end, &format!("{sep}{node}"))
                }
                (None, Some(first)) => {
                    let sep = sep_before(text, first.span.start);
                    let at = first.span.start;
                    splice(text, at..at, &format!("{node}{sep}"))
                }
                (None, None) => {
                    let at = token.span.open_end;
                    splice(text, at..at, &node)
                }
            };
        };
        let escaped = quick_xml::escape::partial_escape(value);
        let span = child.span;
        if span.is_empty_tag() {
            return splice(
                text,
                span.start..span.end,
                &render(&Node::Leaf(name, value)),
            );
        }
        let inner = &text[span.open_end..span.close_start];
        let ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        let lead = inner.len() - inner.trim_start_matches(ws).len();
        let trail = inner.len() - inner.trim_end_matches(ws).len();
        let range = if lead == inner.len() {
            span.open_end..span.close_start
        } else {
            span.open_end + lead..span.close_start - trail
        };
        splice(text, range, &escaped)
    }

    /// Cuts an element and the separator before it.
    fn remove_span(&self, span: Span) -> String {
        let sep = sep_before(self.text, span.start);
        splice(self.text, span.start - sep.len()..span.end, "")
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
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
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
