//! Whitespace: how the operator laid the file out, so inserted elements look as if they had written
//! them. New elements are built as [`Node`]s (see `entry`, and [`wrapped`] for the containers around
//! them) and written by quick-xml's writer, which escapes their text.

use std::borrow::Cow;

use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::entry::NewEntry;

/// Indentation step when the file shows none to copy.
const DEFAULT_STEP: &str = "  ";

/// The separator before the element starting at `pos`: the whitespace run just before it, from its
/// last line break on (`\r\n` kept whole). Without a line break it is the whole run, often empty.
pub fn sep_before(text: &str, pos: usize) -> &str {
    let before = &text[..pos];
    let run = before.len() - before.trim_end_matches([' ', '\t', '\r', '\n']).len();
    let run = &before[pos - run..];
    match run.rfind('\n') {
        Some(nl) if nl > 0 && run.as_bytes()[nl - 1] == b'\r' => &run[nl - 1..],
        Some(nl) => &run[nl..],
        None => run,
    }
}

/// The indentation in a separator, when it starts a new line.
fn indent(sep: &str) -> Option<&str> {
    sep.rfind('\n').map(|nl| &sep[nl + 1..])
}

/// The separator one level deeper than `sep`, stepping as `outer` → `sep` steps (or two spaces).
/// Inline layouts stay inline.
pub fn deeper(outer: &str, sep: &str) -> String {
    let Some(inner) = indent(sep) else {
        return sep.to_owned();
    };
    let step = match indent(outer) {
        Some(outer) if inner.len() > outer.len() && inner.starts_with(outer) => {
            &inner[outer.len()..]
        }
        _ if inner.starts_with('\t') => "\t",
        _ => DEFAULT_STEP,
    };
    format!("{sep}{step}")
}

/// One new element, given as the events that make it.
pub enum Node<'a> {
    /// `<name>text</name>`.
    Leaf(&'a str, Cow<'a, str>),
    /// `<name/>`: an element that is a value by being there.
    Empty(&'a str),
    /// `<name>` children `</name>`, each child after `inner`, the end tag after `outer`.
    Parent {
        /// Tag name.
        name: &'a str,
        /// Children in order.
        children: Vec<Node<'a>>,
        /// Separator before each child.
        inner: String,
        /// Separator before the end tag.
        outer: String,
    },
}

impl<'a> Node<'a> {
    /// `<name>text</name>` with borrowed text.
    pub fn leaf(name: &'a str, text: &'a str) -> Node<'a> {
        Node::Leaf(name, Cow::Borrowed(text))
    }
}

/// Writes `node` with quick-xml's writer. Text is escaped (`<`, `>`, `&`); separators are whitespace.
pub fn render(node: &Node<'_>) -> String {
    let mut writer = Writer::new(Vec::new());
    write(&mut writer, node);
    String::from_utf8(writer.into_inner()).expect("the writer emits the UTF-8 it is given")
}

fn write(w: &mut Writer<Vec<u8>>, node: &Node<'_>) {
    match node {
        Node::Leaf(name, text) => {
            emit(w, Event::Start(BytesStart::new(*name)));
            let text = BytesText::from_escaped(partial_escape(text.as_ref()));
            emit(w, Event::Text(text));
            emit(w, Event::End(BytesEnd::new(*name)));
        }
        Node::Empty(name) => emit(w, Event::Empty(BytesStart::new(*name))),
        Node::Parent {
            name,
            children,
            inner,
            outer,
        } => {
            emit(w, Event::Start(BytesStart::new(*name)));
            for child in children {
                whitespace(w, inner);
                write(w, child);
            }
            whitespace(w, outer);
            emit(w, Event::End(BytesEnd::new(*name)));
        }
    }
}

fn whitespace(w: &mut Writer<Vec<u8>>, sep: &str) {
    if !sep.is_empty() {
        emit(w, Event::Text(BytesText::from_escaped(sep)));
    }
}

fn emit(w: &mut Writer<Vec<u8>>, event: Event<'_>) {
    w.write_event(event).expect("writing to a Vec cannot fail");
}

/// The entry inside the containers `wrap` names (outermost first), each one level deeper. `parent`
/// is the separator before the element that receives the result, `sep` the one before the result.
pub(super) fn wrapped<'a>(
    entry: &'a dyn NewEntry,
    wrap: &[&'static str],
    parent: &str,
    sep: &str,
) -> Node<'a> {
    let Some((&name, rest)) = wrap.split_first() else {
        let inner = deeper(parent, sep);
        let deepest = deeper(sep, &inner);
        return entry.node(&deepest, inner, sep.to_owned());
    };
    let inner = deeper(parent, sep);
    Node::Parent {
        name,
        children: vec![wrapped(entry, rest, sep, &inner)],
        inner,
        outer: sep.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_start_at_the_last_line_break() {
        let text = "<a>\n\n    <b/>\r\n  <c/><d/> <e/>";
        assert_eq!(sep_before(text, text.find("<b").unwrap()), "\n    ");
        assert_eq!(sep_before(text, text.find("<c").unwrap()), "\r\n  ");
        assert_eq!(sep_before(text, text.find("<d").unwrap()), "");
        assert_eq!(sep_before(text, text.find("<e").unwrap()), " ");
        assert_eq!(sep_before(text, 0), "");
    }

    #[test]
    fn deeper_copies_the_step() {
        assert_eq!(deeper("\n  ", "\n    "), "\n      ");
        assert_eq!(deeper("\n\t", "\n\t\t"), "\n\t\t\t");
        assert_eq!(deeper("", "\n\t"), "\n\t\t");
        assert_eq!(deeper("", "\n"), "\n  ");
        assert_eq!(deeper("\n ", ""), "");
    }

    #[test]
    fn render_escapes_text_only() {
        let node = Node::Parent {
            name: "Token",
            children: vec![Node::leaf("Name", "R&D <ops> \"x\""), Node::Empty("Root")],
            inner: "\n  ".into(),
            outer: "\n".into(),
        };
        assert_eq!(
            render(&node),
            "<Token>\n  <Name>R&amp;D &lt;ops&gt; \"x\"</Name>\n  <Root/>\n</Token>"
        );
    }
}
