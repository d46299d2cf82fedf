//! Adding a Token or a Connection: after the last one of its kind, copying its layout, or into its
//! container, creating the containers that are missing with the surrounding indentation.

use super::entry::{EntryKind, NewConnection, NewEntry, NewToken};
use super::layout::{deeper, render, sep_before, wrapped, Node};
use super::outline::Container;
use super::{splice, Document, EditError};

impl Document<'_> {
    /// Appends a Token to `AccessTokens`, creating `AccessTokens` (and `AuthSettings`) if missing.
    /// It copies the layout of the last Token, or of the enclosing elements when there is none.
    pub fn add(&self, token: &NewToken) -> Result<String, EditError> {
        self.name_free(&token.name)?;
        self.value_free(&token.value)?;
        self.add_entry(token)
    }

    /// Appends a Connection to `ApiConnections`, creating `ApiConnections` (and `AuthSettings`) if
    /// missing, with the layout of the last Connection or of the enclosing elements.
    pub fn add_connection(&self, connection: &NewConnection) -> Result<String, EditError> {
        self.name_free(&connection.name)?;
        self.add_entry(connection)
    }

    /// Refuses a Name that a Token or a Connection already has.
    fn name_free(&self, name: &str) -> Result<(), EditError> {
        for kind in [EntryKind::Token, EntryKind::Connection] {
            if (self.outline.entries(kind).iter()).any(|e| e.name() == Some(name)) {
                let name = name.to_owned();
                return Err(EditError::NameTaken { kind, name });
            }
        }
        Ok(())
    }

    fn add_entry(&self, entry: &dyn NewEntry) -> Result<String, EditError> {
        let Some(last) = self.outline.entries(entry.kind()).last() else {
            // None of its kind to copy: build from the containers' own indentation.
            return self.append(entry);
        };
        let sep = sep_before(self.text, last.span.start);
        let (inner, outer) = match last.children.first() {
            Some(first) if !last.span.is_empty_tag() => (
                sep_before(self.text, first.span.start).to_owned(),
                sep_before(self.text, last.span.close_start).to_owned(),
            ),
            _ => (deeper(sep, sep), sep.to_owned()),
        };
        let node = entry.node(&deeper(sep, &inner), inner, outer);
        let at = last.span.end;
        Ok(splice(
            self.text,
            at..at,
            &format!("{sep}{}", render(&node)),
        ))
    }

    /// `add` where none of its kind exists yet: into its container, `AuthSettings` or
    /// `ServerSettings`, whichever is the deepest that exists, creating what lies below it.
    fn append(&self, entry: &dyn NewEntry) -> Result<String, EditError> {
        let o = &self.outline;
        let kind = entry.kind();
        let own = match kind {
            EntryKind::Token => o.access,
            EntryKind::Connection => o.api,
        };
        // The containers to create, outermost first: none, the kind's own, or AuthSettings too.
        let chain = ["AuthSettings", kind.container()];
        let (container, missing, parent) = match (own, o.auth, o.server) {
            (Some(own), auth, _) => (own, 2, auth.map(|c| c.span.start)),
            (None, Some(auth), server) => (auth, 1, server.map(|c| c.span.start)),
            (None, None, Some(server)) => (server, 0, o.root.map(|c| c.span.start)),
            (None, None, None) => return Err(self.rejected()),
        };
        let name = match missing {
            2 => kind.container(),
            1 => "AuthSettings",
            _ => "ServerSettings",
        };
        let own = sep_before(self.text, container.span.start);
        let parent = parent.map_or("", |at| sep_before(self.text, at));
        // The separator before the new child, and what lies between it and the entry.
        let sep = match container.last_child {
            Some(last) => sep_before(self.text, last.start).to_owned(),
            None => deeper(parent, own),
        };
        let node = wrapped(entry, &chain[missing..], own, &sep);
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
}
