//! Changing an existing Token or Connection: a child's text (added at its place when missing), the
//! description, the Value, or the whole element removed.

use std::ops::Range;

use super::entry::{tenants as tenants_node, EntryKind};
use super::layout::{deeper, render, sep_before, Node};
use super::outline::{EntryNode, Span};
use super::{splice, splice_all, Document, EditError};
use crate::auth::token::decode_value;

impl Document<'_> {
    /// Sets `Enabled`. `None` when it already has that value.
    pub fn set_enabled(
        &self,
        kind: EntryKind,
        name: &str,
        enabled: bool,
    ) -> Result<Option<String>, EditError> {
        let entry = self.find(kind, name)?;
        let value = if enabled { "1" } else { "0" };
        if entry.child("Enabled").map(|c| c.text.as_str()) == Some(value) {
            return Ok(None);
        }
        Ok(Some(self.set_children(kind, entry, &[("Enabled", value)])))
    }

    /// Sets text children of one element at once, in one new text: each child's text is replaced
    /// (keeping the whitespace around it), or the child is added at its place when missing.
    pub fn set(
        &self,
        kind: EntryKind,
        name: &str,
        children: &[(&str, &str)],
    ) -> Result<String, EditError> {
        Ok(self.set_children(kind, self.find(kind, name)?, children))
    }

    /// Replaces a Token's `Value`: `rotate`.
    pub fn set_value(&self, name: &str, value: &str) -> Result<String, EditError> {
        let token = self.find(EntryKind::Token, name)?;
        self.value_free(value)?;
        Ok(self.set_children(EntryKind::Token, token, &[("Value", value)]))
    }

    /// Refuses a Value that a Token already holds: that would be the same token twice.
    pub(super) fn value_free(&self, value: &str) -> Result<(), EditError> {
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
    pub fn set_description(
        &self,
        kind: EntryKind,
        name: &str,
        description: &str,
    ) -> Result<String, EditError> {
        let entry = self.find(kind, name)?;
        if !description.is_empty() {
            return Ok(self.set_children(kind, entry, &[("Description", description)]));
        }
        Ok(match entry.child("Description") {
            Some(child) => self.remove_span(child.span),
            None => self.text.to_owned(),
        })
    }

    /// Removes the child element `child` (and the separator before it); the text unchanged when
    /// there is none.
    pub fn remove_child(
        &self,
        kind: EntryKind,
        name: &str,
        child: &str,
    ) -> Result<String, EditError> {
        Ok(match self.find(kind, name)?.child(child) {
            Some(c) => self.remove_span(c.span),
            None => self.text.to_owned(),
        })
    }

    /// Removes the element and the line break and indentation before it.
    pub fn remove(&self, kind: EntryKind, name: &str) -> Result<String, EditError> {
        Ok(self.remove_span(self.find(kind, name)?.span))
    }

    fn set_children(
        &self,
        kind: EntryKind,
        entry: &EntryNode,
        children: &[(&str, &str)],
    ) -> String {
        let edits = children
            .iter()
            .map(|&(name, value)| self.child_edit(kind, entry, name, value))
            .collect();
        splice_all(self.text, edits)
    }

    /// The splice that sets one text child: its text replaced, or the element added after the last
    /// child that comes before it in scangate's order.
    fn child_edit(
        &self,
        kind: EntryKind,
        entry: &EntryNode,
        name: &str,
        value: &str,
    ) -> (Range<usize>, String) {
        let text = self.text;
        let Some(child) = entry.child(name) else {
            return self.insert_child(kind, entry, name, render(&Node::leaf(name, value)));
        };
        let span = child.span;
        if span.is_empty_tag() {
            return (span.start..span.end, render(&Node::leaf(name, value)));
        }
        let escaped = quick_xml::escape::partial_escape(value).into_owned();
        let inner = &text[span.open_end..span.close_start];
        let ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        let lead = inner.len() - inner.trim_start_matches(ws).len();
        let trail = inner.len() - inner.trim_end_matches(ws).len();
        let range = if lead == inner.len() {
            span.open_end..span.close_start
        } else {
            span.open_end + lead..span.close_start - trail
        };
        (range, escaped)
    }

    /// The splice that adds the rendered child `node`, called `name`, after the last child that
    /// comes before it in scangate's order.
    fn insert_child(
        &self,
        kind: EntryKind,
        entry: &EntryNode,
        name: &str,
        node: String,
    ) -> (Range<usize>, String) {
        let text = self.text;
        let rank = |n: &str| kind.order().iter().position(|k| *k == n);
        let before = (entry.children.iter().rev()).find(|c| rank(&c.name) < rank(name));
        match (before, entry.children.first()) {
            (Some(prev), _) => {
                let sep = sep_before(text, prev.span.start);
                (prev.span.end..prev.span.end, format!("{sep}{node}"))
            }
            (None, Some(first)) => {
                let sep = sep_before(text, first.span.start);
                (first.span.start..first.span.start, format!("{node}{sep}"))
            }
            (None, None) => (entry.span.open_end..entry.span.open_end, node),
        }
    }

    /// Replaces `Tenants` with `tenants` (and `RootWithoutTenants` when `root`, for a
    /// Connection), indented like the element's other children; none removes it.
    pub fn set_tenants(
        &self,
        kind: EntryKind,
        name: &str,
        tenants: &[String],
        root: bool,
    ) -> Result<String, EditError> {
        let entry = self.find(kind, name)?;
        let outer = sep_before(self.text, entry.span.start);
        let inner = match entry.children.first() {
            Some(first) => sep_before(self.text, first.span.start).to_owned(),
            None => deeper(outer, outer),
        };
        let Some(node) = tenants_node(tenants, root, &deeper(outer, &inner), &inner) else {
            return self.remove_child(kind, name, "Tenants");
        };
        let rendered = render(&node);
        Ok(match entry.child("Tenants") {
            Some(child) => splice(self.text, child.span.start..child.span.end, &rendered),
            None => splice_all(
                self.text,
                vec![self.insert_child(kind, entry, "Tenants", rendered)],
            ),
        })
    }

    /// Cuts an element and the separator before it.
    fn remove_span(&self, span: Span) -> String {
        let sep = sep_before(self.text, span.start);
        splice(self.text, span.start - sep.len()..span.end, "")
    }
}
