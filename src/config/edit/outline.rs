//! One pass of quick-xml's event reader over the file, recording the byte spans an edit needs: the
//! containers on the way to `AccessTokens` and `ApiConnections`, every `Token` and `Connection`
//! with its children, and `TokenKeyFile`.
//!
//! Only spans are kept, never a re-serialisable tree: an edit splices new bytes into the original
//! text, so every byte it does not touch stays as written.

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::EntryKind;

/// A UTF-8 byte-order mark; quick-xml skips it without counting it.
const BOM: char = '\u{feff}';

/// Where one element lies in the text. For `<X/>`, `open_end == close_start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The `<` of the start tag.
    pub start: usize,
    /// Just past the `>` of the start tag.
    pub open_end: usize,
    /// The `<` of the end tag.
    pub close_start: usize,
    /// Just past the `>` of the end tag.
    pub end: usize,
}

impl Span {
    /// Written as `<X/>`.
    pub fn is_empty_tag(&self) -> bool {
        self.open_end == self.end
    }
}

/// A container on the way to the entries, with its last child element (of any name), after which an
/// appended child goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container {
    /// The container itself.
    pub span: Span,
    /// Its last child element.
    pub last_child: Option<Span>,
}

/// A direct child of a `Token` or a `Connection`. No Debug: its text may be a `Value`.
#[derive(Clone, PartialEq, Eq)]
pub struct Child {
    /// Tag name as written.
    pub name: String,
    /// Where it lies.
    pub span: Span,
    /// Its character data, entities resolved, trimmed as the validator trims it.
    pub text: String,
}

/// One `Token` or `Connection` element. No Debug: a Token's children hold its `Value`.
#[derive(Clone, PartialEq, Eq)]
pub struct EntryNode {
    /// Where it lies.
    pub span: Span,
    /// Its child elements in file order.
    pub children: Vec<Child>,
}

impl EntryNode {
    /// The first child called `name`: the one the validator reads.
    pub fn child(&self, name: &str) -> Option<&Child> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Its `Name`, trimmed.
    pub fn name(&self) -> Option<&str> {
        self.child("Name").map(|c| c.text.as_str())
    }
}

/// The spans of one document that token and connection edits use. Only the first of each
/// container counts, as in the validator (which reports the duplicates). No Debug: its tokens
/// hold their `Value`s.
#[derive(Default)]
pub struct Outline {
    /// `<Configuration>` (or whatever the root is: the validator judges it).
    pub root: Option<Container>,
    /// `ServerSettings`.
    pub server: Option<Container>,
    /// `ServerSettings/AuthSettings`.
    pub auth: Option<Container>,
    /// `ServerSettings/AuthSettings/AccessTokens`.
    pub access: Option<Container>,
    /// Its `Token` children in file order.
    pub tokens: Vec<EntryNode>,
    /// `ServerSettings/AuthSettings/ApiConnections`.
    pub api: Option<Container>,
    /// Its `Connection` children in file order.
    pub connections: Vec<EntryNode>,
    /// `GatewaySettings/TokenKeyFile`, trimmed; `None` when absent.
    pub key_file: Option<String>,
}

/// The text is not XML the reader can walk: byte offset and quick-xml's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Where the fault is.
    pub offset: usize,
    /// What it is.
    pub message: String,
}

/// What an open element is to the outline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Root,
    Server,
    Auth,
    Access,
    Api,
    Gateway,
    KeyFile,
    Entry(EntryKind, usize),
    EntryChild(EntryKind, usize),
    Other,
}

impl Outline {
    /// Walks `text` once.
    pub fn read(text: &str) -> Result<Outline, Unreadable> {
        let bom = if text.starts_with(BOM) {
            BOM.len_utf8()
        } else {
            0
        };
        let mut reader = Reader::from_str(&text[bom..]);
        let mut outline = Outline::default();
        // Each open element: what it is and where its start tag lies.
        let mut open: Vec<(Kind, usize, usize)> = Vec::new();
        let mut gateway_seen = false;
        loop {
            // Before an event is read, the position is where that event starts; after, where it ends.
            let at = bom + reader.buffer_position() as usize;
            let fail = |offset: usize, message: String| Unreadable { offset, message };
            let event = reader
                .read_event()
                .map_err(|e| fail(bom + reader.error_position() as usize, e.to_string()))?;
            let here = bom + reader.buffer_position() as usize;
            let empty = matches!(event, Event::Empty(_));
            match event {
                Event::Start(tag) | Event::Empty(tag) => {
                    let name = std::str::from_utf8(tag.name().as_ref())
                        .map_err(|e| fail(at, e.to_string()))?
                        .to_owned();
                    let parent = open.last().map(|f| f.0);
                    let kind = outline.open(parent, name, at, &mut gateway_seen);
                    if empty {
                        outline.close(&open, kind, at, here, here, here);
                    } else {
                        open.push((kind, at, here));
                    }
                }
                Event::End(_) => {
                    let (kind, start, open_end) = open
                        .pop()
                        .ok_or_else(|| fail(at, "unmatched end tag".into()))?;
                    outline.close(&open, kind, start, open_end, at, here);
                }
                Event::Text(t) => {
                    let piece = t
                        .unescape_with(resolve_xml_entity)
                        .map_err(|e| fail(at, e.to_string()))?;
                    outline.add_text(open.last().map(|f| f.0), &piece);
                }
                Event::CData(c) => {
                    let piece = c.decode().map_err(|e| fail(at, e.to_string()))?;
                    outline.add_text(open.last().map(|f| f.0), &piece);
                }
                Event::DocType(_) => {
                    return Err(fail(
                        at,
                        "DTDs and entity declarations are not allowed".into(),
                    ))
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
                Event::Eof => {
                    return match open.last() {
                        Some(&(_, start, _)) => Err(fail(start, "start tag not closed".into())),
                        None => Ok(outline),
                    }
                }
            }
        }
    }

    /// Decides what a new element is from its parent and name, and makes room for it.
    fn open(&mut self, parent: Option<Kind>, name: String, at: usize, gateway: &mut bool) -> Kind {
        let span = Span {
            start: at,
            open_end: at,
            close_start: at,
            end: at,
        };
        let container = Some(Container {
            span,
            last_child: None,
        });
        let kind = match (parent, name.as_str()) {
            (None, _) if self.root.is_none() => Kind::Root,
            (Some(Kind::Root), "ServerSettings") if self.server.is_none() => Kind::Server,
            (Some(Kind::Root), "GatewaySettings") if !*gateway => {
                *gateway = true;
                return Kind::Gateway;
            }
            (Some(Kind::Server), "AuthSettings") if self.auth.is_none() => Kind::Auth,
            (Some(Kind::Auth), "AccessTokens") if self.access.is_none() => Kind::Access,
            (Some(Kind::Auth), "ApiConnections") if self.api.is_none() => Kind::Api,
            (Some(Kind::Access), "Token") => return self.push_entry(EntryKind::Token, span),
            (Some(Kind::Api), "Connection") => return self.push_entry(EntryKind::Connection, span),
            (Some(Kind::Entry(kind, i)), _) => {
                let text = String::new();
                self.entries_mut(kind)[i]
                    .children
                    .push(Child { name, span, text });
                return Kind::EntryChild(kind, i);
            }
            (Some(Kind::Gateway), "TokenKeyFile") if self.key_file.is_none() => {
                self.key_file = Some(String::new());
                return Kind::KeyFile;
            }
            _ => return Kind::Other,
        };
        *self.container(kind).expect("a container kind") = container;
        kind
    }

    /// Records a finished element's span, and tells its parent it is the last child so far.
    fn close(
        &mut self,
        open: &[(Kind, usize, usize)],
        kind: Kind,
        start: usize,
        open_end: usize,
        close_start: usize,
        end: usize,
    ) {
        let span = Span {
            start,
            open_end,
            close_start,
            end,
        };
        match kind {
            Kind::Entry(kind, i) => self.entries_mut(kind)[i].span = span,
            Kind::EntryChild(kind, i) => {
                let child =
                    (self.entries_mut(kind)[i].children.last_mut()).expect("pushed on open");
                child.span = span;
                child.text = trim(&child.text).to_owned();
            }
            Kind::KeyFile => self.key_file = self.key_file.as_deref().map(|t| trim(t).to_owned()),
            _ => {
                if let Some(Some(c)) = self.container(kind) {
                    c.span = span;
                }
            }
        }
        if let Some(Some(parent)) = open.last().and_then(|f| self.container(f.0)) {
            parent.last_child = Some(span);
        }
    }

    fn container(&mut self, kind: Kind) -> Option<&mut Option<Container>> {
        match kind {
            Kind::Root => Some(&mut self.root),
            Kind::Server => Some(&mut self.server),
            Kind::Auth => Some(&mut self.auth),
            Kind::Access => Some(&mut self.access),
            Kind::Api => Some(&mut self.api),
            _ => None,
        }
    }

    /// The Token or Connection elements, in file order.
    pub fn entries(&self, kind: EntryKind) -> &[EntryNode] {
        match kind {
            EntryKind::Token => &self.tokens,
            EntryKind::Connection => &self.connections,
        }
    }

    fn entries_mut(&mut self, kind: EntryKind) -> &mut Vec<EntryNode> {
        match kind {
            EntryKind::Token => &mut self.tokens,
            EntryKind::Connection => &mut self.connections,
        }
    }

    /// Records a new Token or Connection; its span is completed when it closes.
    fn push_entry(&mut self, kind: EntryKind, span: Span) -> Kind {
        let entries = self.entries_mut(kind);
        entries.push(EntryNode {
            span,
            children: Vec::new(),
        });
        Kind::Entry(kind, entries.len() - 1)
    }

    /// Collects character data directly inside an entry's child or `TokenKeyFile`.
    fn add_text(&mut self, innermost: Option<Kind>, piece: &str) {
        match innermost {
            Some(Kind::EntryChild(kind, i)) => {
                let child =
                    (self.entries_mut(kind)[i].children.last_mut()).expect("pushed on open");
                child.text.push_str(piece);
            }
            Some(Kind::KeyFile) => {
                if let Some(text) = self.key_file.as_mut() {
                    text.push_str(piece);
                }
            }
            _ => {}
        }
    }
}

/// Trims XML whitespace, as the validator does.
fn trim(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}
