//! Stage one: config text → a tree of raw elements, each with the byte offset of its start tag.
//!
//! This stage knows XML, not scangate's schema, so [`super::validate`] stays the one place that knows
//! which elements exist. It is also the gate for hostile input: no DTDs, no entities beyond the five
//! predefined ones, bounded nesting and a bounded element count. The first XML fault ends parsing:
//! after it, positions and structure can no longer be trusted.

use std::borrow::Cow;

use quick_xml::escape::{resolve_xml_entity, EscapeError};
use quick_xml::events::Event;
use quick_xml::Reader;

/// Deepest nesting accepted. scangate's own elements go 7 deep; the cap also bounds the recursion in
/// validation and in dropping the tree.
pub const MAX_DEPTH: usize = 32;

/// Most elements accepted: two million fully dressed tokens (8 elements each) plus room. Bounds the
/// memory the tree takes (about 80 bytes an element) well below what the file-size cap would allow.
pub const MAX_ELEMENTS: usize = 16_000_000;

/// A UTF-8 byte-order mark, which some Windows editors put first.
const BOM: char = '\u{feff}';

/// One element as written. Its Debug leaves the text out: a Token's `Value` is the text of one.
#[derive(Clone, PartialEq, Eq)]
pub struct Element<'a> {
    /// Tag name as written, prefix included.
    pub name: &'a str,
    /// Byte offset of the `<` of its start tag: where errors about it point.
    pub offset: usize,
    /// Character data directly inside it (text and CDATA, entities resolved), untrimmed. Whitespace-only
    /// runs before any other text may be merged, which is harmless because values are trimmed.
    pub text: Cow<'a, str>,
    /// Child elements, in file order.
    pub children: Vec<Element<'a>>,
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Element")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// Why the text is not acceptable XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Byte offset of the fault.
    pub offset: usize,
    /// The elements still open below the root, outermost first, each with its 1-based place among
    /// its parent's children of the same name: enough for `validate` to write the path its way.
    pub open: Vec<(String, usize)>,
    /// What is wrong, in quick-xml's words where it found the fault.
    pub message: String,
}

/// Reads a whole document into its root element.
pub fn parse(text: &str) -> Result<Element<'_>, XmlError> {
    parse_capped(text, MAX_ELEMENTS, None)
}

/// Elements handed over as they close instead of joining the tree: a million-token file would
/// otherwise hold four million elements at once only to walk them once.
pub struct Divert<'s, 'a> {
    /// The names of the diverted element's ancestors below the root, then its own name.
    pub path: &'static [&'static str],
    /// Called with each diverted element (children and text complete) and its parent's offset.
    pub sink: &'s mut dyn FnMut(&Element<'a>, usize),
}

/// [`parse`], handing each element at `divert.path` to its sink instead of its parent. Those
/// elements are left out of the tree, so an [`XmlError`]'s `open` places do not count them: a
/// caller that reports errors parses again without diverting.
pub fn parse_diverting<'a>(text: &'a str, divert: Divert<'_, 'a>) -> Result<Element<'a>, XmlError> {
    parse_capped(text, MAX_ELEMENTS, Some(divert))
}

fn parse_capped<'a>(
    text: &'a str,
    max_elements: usize,
    mut divert: Option<Divert<'_, 'a>>,
) -> Result<Element<'a>, XmlError> {
    // quick-xml skips a byte-order mark without counting it; strip it here so offsets stay true.
    let bom = if text.starts_with(BOM) {
        BOM.len_utf8()
    } else {
        0
    };
    let mut reader = Reader::from_str(&text[bom..]);
    let mut open: Vec<Element<'_>> = Vec::new();
    let mut root = None;
    let mut count = 0usize;
    // A diverted element's children, cleared and reused by the next one.
    let mut spare: Vec<Element<'a>> = Vec::new();
    // Bytes read by `plain_run` rather than by the reader, which does not count them.
    let mut skipped = 0usize;
    loop {
        // Before an event is read, the position is where that event starts.
        let offset = bom + skipped + reader.buffer_position() as usize;
        let fail = |offset: usize, open: &[Element<'_>], message: String| XmlError {
            offset,
            open: open_places(open),
            message,
        };
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = bom + skipped + reader.error_position() as usize;
                return Err(fail(at, &open, e.to_string()));
            }
        };
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                if root.is_some() {
                    let message = "a second root element; only <Configuration> may be at the top";
                    return Err(fail(offset, &open, message.into()));
                }
                count += 1;
                if count > max_elements {
                    let message = format!("more than {max_elements} elements");
                    return Err(fail(offset, &open, message));
                }
                if open.len() >= MAX_DEPTH {
                    let message = format!("elements nested deeper than {MAX_DEPTH} levels");
                    return Err(fail(offset, &open, message));
                }
                // The name follows the `<` directly; slicing the input keeps it borrowed.
                let qname = tag.name();
                let end = offset + 1 + qname.as_ref().len();
                let name = match text.get(offset + 1..end) {
                    Some(name) if name.as_bytes() == qname.as_ref() => name,
                    _ => return Err(fail(offset, &open, "unreadable tag name".into())),
                };
                let reuse = divert.as_ref().is_some_and(|d| open.len() == d.path.len());
                let element = Element {
                    name,
                    offset,
                    text: Cow::Borrowed(""),
                    children: if reuse {
                        std::mem::take(&mut spare)
                    } else {
                        Vec::new()
                    },
                };
                if empty {
                    close(element, &mut open, &mut root, &mut divert, &mut spare);
                } else {
                    open.push(element);
                }
            }
            // quick-xml has already checked that the end tag matches.
            Event::End(_) => {
                let element = open.pop().expect("quick-xml rejects unmatched end tags");
                close(element, &mut open, &mut root, &mut divert, &mut spare);
            }
            Event::Text(t) => {
                let piece = text_run(text, offset, &t).map_err(|e| {
                    let (at, message) = escape_fault(&e);
                    fail(offset + at, &open, message)
                })?;
                add_text(&mut open, piece).map_err(|m| fail(offset, &open, m.into()))?;
                continue;
            }
            Event::CData(c) => {
                let piece = c.decode().map_err(|e| fail(offset, &open, e.to_string()))?;
                add_text(&mut open, piece).map_err(|m| fail(offset, &open, m.into()))?;
                continue;
            }
            Event::DocType(_) => {
                let message = "DTDs and entity declarations are not allowed";
                return Err(fail(offset, &open, message.into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => continue,
            Event::Eof => {
                if let Some(unclosed) = open.last() {
                    let message = format!(
                        "ill-formed document: start tag not closed: `</{}>` not found before end of input",
                        unclosed.name
                    );
                    return Err(fail(unclosed.offset, &open, message));
                }
                return root.ok_or_else(|| fail(0, &open, "the file holds no XML element".into()));
            }
        }
        // A tag opened or closed: where the diverted elements stand, read the plain ones straight
        // off the input.
        if let Some(d) = divert.as_mut().filter(|d| at_parent(d.path, &open)) {
            let from = bom + skipped + reader.buffer_position() as usize;
            let rest: &'a [u8] = reader.get_ref();
            // The reader's unread input is the text from `from` on; should it ever not be, the
            // reader reads on alone.
            if text
                .as_bytes()
                .get(from..)
                .is_some_and(|t| t.as_ptr() == rest.as_ptr())
                && open.len() + 1 < MAX_DEPTH
            {
                let own = d.path.last().expect("at_parent: a path");
                let parent = open.last().map_or(0, |p| p.offset);
                let budget = max_elements - count;
                let (end, used) = plain_run(text, from, own, budget, &mut spare, &mut |el| {
                    (d.sink)(el, parent)
                });
                count += used;
                *reader.get_mut() = &rest[end - from..];
                skipped += end - from;
            }
        }
    }
}

/// A text run's characters, entities resolved. The run is the input's own bytes from `offset`, so
/// it is sliced from `text` (checked UTF-8 already) rather than checked again, which took 1.9 %
/// of a token file's parse (`benches/RESULTS.md`). quick-xml's own decoding is the fallback
/// should the run ever not be the input's bytes at that place.
fn text_run<'a>(
    text: &'a str,
    offset: usize,
    run: &quick_xml::events::BytesText<'a>,
) -> Result<Cow<'a, str>, quick_xml::Error> {
    let raw: &[u8] = run;
    let Some(slice) = text
        .get(offset..offset + raw.len())
        .filter(|s| s.as_ptr() == raw.as_ptr())
    else {
        return run.unescape_with(resolve_xml_entity);
    };
    Ok(quick_xml::escape::unescape_with(slice, resolve_xml_entity)?)
}

/// Hangs a finished element under its parent, makes it the root, or hands it to the sink (keeping
/// its children's vector as `spare`).
fn close<'a>(
    element: Element<'a>,
    open: &mut [Element<'a>],
    root: &mut Option<Element<'a>>,
    divert: &mut Option<Divert<'_, 'a>>,
    spare: &mut Vec<Element<'a>>,
) {
    if let Some(divert) = divert.as_mut().filter(|d| diverted(d.path, open, &element)) {
        let parent = open.last().map_or(0, |p| p.offset);
        (divert.sink)(&element, parent);
        *spare = element.children;
        spare.clear();
        return;
    }
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Whether `element`, closing inside `open`, stands at `path` (below the root, its own name last).
fn diverted(path: &[&str], open: &[Element<'_>], element: &Element<'_>) -> bool {
    path.last().is_some_and(|own| element.name == *own) && at_parent(path, open)
}

/// Whether the innermost of `open` is the parent of the elements at `path`.
fn at_parent(path: &[&str], open: &[Element<'_>]) -> bool {
    let Some((_, ancestors)) = path.split_last() else {
        return false;
    };
    open.len() == path.len() && (open[1..].iter().zip(ancestors)).all(|(el, name)| el.name == *name)
}

/// The most children a plain element has: a Token has at most six kinds, each once.
const MAX_PLAIN_CHILDREN: usize = 8;

/// The longest child name a plain element has.
const MAX_PLAIN_NAME: usize = 16;

/// Reads the elements named `own` that follow `from` straight off the input, for as long as they
/// have the plain shape a token file gives them, and hands each to `sink`: `<own>` without
/// attributes; children `<Name>text</Name>` whose names are ASCII letters and whose text holds no
/// `&` (nor `<`); whitespace between the children and between the elements; then `</own>`. Each
/// is the element quick-xml's events build from the same bytes (same names, offsets, borrowed
/// texts, the first non-empty whitespace run as its own text), in half the instructions of a
/// token file's parse through the reader (`benches/RESULTS.md`, 2026-12-03). Anything else ends the
/// run at the end of the last whole element before it (so comments, entities, CDATA, attributes,
/// self-closing tags and every fault are the reader's), as does an element that would take the
/// count past `budget`.
///
/// Returns where the run ended (`from` if it read nothing) and how many elements it read.
fn plain_run<'a>(
    text: &'a str,
    from: usize,
    own: &str,
    budget: usize,
    spare: &mut Vec<Element<'a>>,
    sink: &mut dyn FnMut(&Element<'a>),
) -> (usize, usize) {
    let bytes = text.as_bytes();
    let (mut end, mut used) = (from, 0);
    loop {
        let at = skip_blank(bytes, end);
        if !tag_at(bytes, at, b"<", own, b">") {
            break;
        }
        spare.clear();
        let Some((own_text, after)) = plain_children(text, at, own, spare) else {
            break;
        };
        if used + 1 + spare.len() > budget {
            break;
        }
        let element = Element {
            name: &text[at + 1..at + 1 + own.len()],
            offset: at,
            text: Cow::Borrowed(own_text),
            children: std::mem::take(spare),
        };
        sink(&element);
        *spare = element.children;
        used += 1 + spare.len();
        end = after;
    }
    spare.clear();
    (end, used)
}

/// The children of the plain `<own>` at `at` (see [`plain_run`]), pushed onto `children`: its own
/// text and where its end tag ends, or `None` if it is not plain.
fn plain_children<'a>(
    text: &'a str,
    at: usize,
    own: &str,
    children: &mut Vec<Element<'a>>,
) -> Option<(&'a str, usize)> {
    let bytes = text.as_bytes();
    let mut i = at + own.len() + 2;
    let mut own_text = "";
    loop {
        let next = skip_blank(bytes, i);
        if own_text.is_empty() {
            own_text = &text[i..next];
        }
        if tag_at(bytes, next, b"</", own, b">") {
            return Some((own_text, next + own.len() + 3));
        }
        if bytes.get(next) != Some(&b'<') || children.len() == MAX_PLAIN_CHILDREN {
            return None;
        }
        let len = (bytes[next + 1..].iter())
            .take(MAX_PLAIN_NAME + 1)
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let name = &text[next + 1..next + 1 + len];
        if len == 0 || len > MAX_PLAIN_NAME || !tag_at(bytes, next, b"<", name, b">") {
            return None;
        }
        let start = next + len + 2;
        // The text ends at the next `<`; an `&` before it is an entity, for the reader.
        let end = start + memchr::memchr2(b'<', b'&', &bytes[start..])?;
        if bytes[end] == b'&' || !tag_at(bytes, end, b"</", name, b">") {
            return None;
        }
        let body = &text[start..end];
        children.push(Element {
            name,
            offset: next,
            text: Cow::Borrowed(body),
            children: Vec::new(),
        });
        i = end + len + 3;
    }
}

/// Whether `open`, `name` and `close` stand at `at` in `bytes`, one after the other.
fn tag_at(bytes: &[u8], at: usize, open: &[u8], name: &str, close: &[u8]) -> bool {
    let Some(rest) = bytes.get(at..) else {
        return false;
    };
    rest.strip_prefix(open)
        .and_then(|r| r.strip_prefix(name.as_bytes()))
        .is_some_and(|r| r.starts_with(close))
}

/// The index of the first byte at or after `i` that is not XML whitespace.
fn skip_blank(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Appends character data to the innermost open element. Outside the root only whitespace may stand.
fn add_text<'a>(open: &mut [Element<'a>], piece: Cow<'a, str>) -> Result<(), &'static str> {
    let Some(element) = open.last_mut() else {
        return if is_blank(&piece) {
            Ok(())
        } else {
            Err("text outside the root element")
        };
    };
    if element.text.is_empty() {
        // Most elements hold one run of text: it stays borrowed.
        element.text = piece;
    } else if !(is_blank(&element.text) && is_blank(&piece)) {
        // Whitespace between a container's children is never copied; it would be trimmed anyway.
        element.text.to_mut().push_str(&piece);
    }
    Ok(())
}

/// Whether text is XML whitespace only.
pub fn is_blank(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Where in a text run an entity fault is (relative to the run) and how to say it.
fn escape_fault(e: &quick_xml::Error) -> (usize, String) {
    match e {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(range, name)) => (
            // The range covers the name between `&` and `;`.
            range.start.saturating_sub(1),
            format!(
                "unknown entity `&{name};`: only the five XML entities and character references are \
                 allowed"
            ),
        ),
        quick_xml::Error::Escape(EscapeError::UnterminatedEntity(range)) => {
            (range.start, e.to_string())
        }
        other => (0, other.to_string()),
    }
}

/// Each open element below the root with its place among same-named siblings.
fn open_places(open: &[Element<'_>]) -> Vec<(String, usize)> {
    let pairs = open.windows(2).map(|pair| {
        let (parent, element) = (&pair[0], &pair[1]);
        let before = parent
            .children
            .iter()
            .filter(|c| c.name == element.name)
            .count();
        (element.name.to_owned(), before + 1)
    });
    pairs.collect()
}

/// Byte offsets → 1-based line and column (in characters), for error messages.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `text`. Only built when there is an error to report.
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let breaks = text.match_indices('\n').map(|(i, _)| i + 1);
        LineIndex {
            text,
            starts: std::iter::once(0).chain(breaks).collect(),
        }
    }

    /// Line and column of a byte offset. Columns count characters, so a CJK name does not skew them.
    pub fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = match self.text.get(start..offset) {
            Some(before) => before.trim_start_matches(BOM).chars().count(),
            None => offset - start,
        };
        (saturate(line), saturate(column + 1))
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn fault(text: &str) -> (usize, String, String) {
        let e = parse(text).unwrap_err();
        let places: Vec<String> = e.open.iter().map(|(n, i)| format!("{n}[{i}]")).collect();
        (e.offset, places.join("/"), e.message)
    }

    #[test]
    fn debug_leaves_the_text_out() {
        let root = parse("<Token><Value>c2VjcmV0</Value></Token>").unwrap();
        let shown = format!("{root:?}");
        assert!(
            shown.contains("\"Value\"") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn builds_the_tree_with_offsets_and_text() {
        let text = "<?xml version=\"1.0\"?>\n<Configuration>\n  <A>x &amp; y<!-- c --> z</A><B/>\n  <C><![CDATA[<raw>]]></C>\n</Configuration>";
        let root = parse(text).unwrap();
        assert_eq!(root.name, "Configuration");
        assert_eq!(root.offset, 22);
        let names: Vec<_> = root.children.iter().map(|e| e.name).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(root.children[0].text, "x & y z");
        assert_eq!(&text[root.children[0].offset..][..3], "<A>");
        assert_eq!(&text[root.children[1].offset..][..4], "<B/>");
        assert_eq!(root.children[2].text, "<raw>");
        assert!(is_blank(&root.text));
    }

    #[test]
    fn single_text_runs_stay_borrowed() {
        let root = parse("<R><A> v </A>\n</R>").unwrap();
        assert!(matches!(root.children[0].text, Cow::Borrowed(" v ")));
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let text = "<?xml version=\"1.0\"?>\n<!DOCTYPE c [<!ENTITY x \"y\">]>\n<c>&x;</c>";
        let (at, path, message) = fault(text);
        assert_eq!((at, path.as_str()), (22, ""));
        assert_eq!(message, "DTDs and entity declarations are not allowed");

        let (at, path, message) = fault("<c>\n <A>ok &#65; &lt; &x;</A></c>");
        assert_eq!((at, path.as_str()), (22, "A[1]"));
        assert!(message.starts_with("unknown entity `&x;`"), "{message}");
    }

    #[test]
    fn malformed_xml_reports_quick_xml_message_and_place() {
        let (at, path, message) = fault("<c>\n  <A/><B/><A>x</B>\n</c>");
        assert_eq!((at, path.as_str()), (18, "A[2]"));
        assert_eq!(
            message,
            "ill-formed document: expected `</A>`, but `</B>` was found"
        );

        let (at, path, message) = fault("<c>\n  <A>\n    <B>x</B>\n");
        assert_eq!((at, path.as_str()), (6, "A[1]"));
        assert_eq!(
            message,
            "ill-formed document: start tag not closed: `</A>` not found before end of input"
        );

        let (at, _, message) = fault("<c><A x='1></c>");
        assert_eq!(at, 3);
        assert!(message.starts_with("syntax error"), "{message}");
    }

    #[test]
    fn top_level_shape_is_checked() {
        assert_eq!(fault("<a/><b/>").0, 4);
        assert_eq!(fault("<a/>junk").2, "text outside the root element");
        assert_eq!(fault("  <!-- -->  ").2, "the file holds no XML element");
        let with_bom = "\u{feff}<a>\n <b/></a>";
        let root = parse(with_bom).unwrap();
        assert_eq!((root.offset, root.children[0].offset), (3, 8));
        assert_eq!(LineIndex::new(with_bom).position(3), (1, 1));
    }

    #[test]
    fn depth_is_capped() {
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        let (at, _, message) = fault(&deep);
        assert_eq!(at, 3 * MAX_DEPTH);
        assert_eq!(message, "elements nested deeper than 32 levels");
    }

    #[test]
    fn element_count_is_capped() {
        assert!(parse_capped("<a><b/><b/></a>", 3, None).is_ok());
        let e = parse_capped("<a><b/><b/><b/></a>", 3, None).unwrap_err();
        assert_eq!((e.offset, e.message.as_str()), (11, "more than 3 elements"));
    }

    /// Diverted elements reach the sink whole, in file order, with their parent's offset, and only
    /// at the diverted path.
    #[test]
    fn diverted_elements_go_to_the_sink_not_the_tree() {
        let text = "<R><A><T><N>1</N></T><X/><T><N>2</N><N>3</N></T><T/></A><T><N>4</N></T>\
                    <B><A><T/></A></B><A><T><N>5</N></T></A></R>";
        let mut seen = Vec::new();
        let mut sink = |el: &Element<'_>, parent: usize| {
            let texts: Vec<String> = el.children.iter().map(|c| c.text.to_string()).collect();
            seen.push((el.offset, parent, texts.join(",")));
        };
        let divert = Divert {
            path: &["A", "T"],
            sink: &mut sink,
        };
        let root = parse_diverting(text, divert).unwrap();
        let second_a = text.rfind("<A>").unwrap();
        assert_eq!(
            seen,
            [
                (6, 3, "1".to_owned()),
                (25, 3, "2,3".to_owned()),
                (48, 3, String::new()),
                (text.rfind("<T>").unwrap(), second_a, "5".to_owned()),
            ]
        );
        // What was not diverted is in the tree as before.
        let a = &root.children[0];
        assert_eq!(
            (a.name, a.children.len(), a.children[0].name),
            ("A", 1, "X")
        );
        let names: Vec<_> = root.children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["A", "T", "B", "A"]);
        assert_eq!(root.children[1].children[0].text, "4");
        assert_eq!(root.children[2].children[0].children.len(), 1);
        assert!(root.children[3].children.is_empty());
        assert_eq!(parse(text).unwrap().children[0].children.len(), 4);
    }

    #[test]
    fn a_diverting_parse_fails_where_a_plain_one_does() {
        let mut sink = |_: &Element<'_>, _: usize| {};
        let half = "<R><A><T><N>1</N></T><T><N>2</N";
        let divert = Divert {
            path: &["A", "T"],
            sink: &mut sink,
        };
        let e = parse_diverting(half, divert).unwrap_err();
        assert_eq!(e.message, parse(half).unwrap_err().message);
    }

    /// What a diverting parse hands its sink, and its tree with the elements at `path` left in.
    fn diverting<'a>(
        text: &'a str,
        path: &'static [&'static str],
    ) -> Result<Vec<Element<'a>>, (usize, String)> {
        let mut seen = Vec::new();
        let mut sink = |el: &Element<'a>, _: usize| seen.push(el.clone());
        let divert = Divert {
            path,
            sink: &mut sink,
        };
        let result = parse_diverting(text, divert);
        let root = result.map_err(|e| (e.offset, e.message))?;
        Ok(seen.into_iter().chain([root]).collect())
    }

    /// The same from the plain parse's tree: the elements at `path`, in file order, then the root
    /// without them.
    fn from_tree<'a>(text: &'a str, path: &[&str]) -> Result<Vec<Element<'a>>, (usize, String)> {
        let mut root = parse(text).map_err(|e| (e.offset, e.message))?;
        let mut out = Vec::new();
        take_at(&mut root, path, &mut out);
        out.push(root);
        Ok(out)
    }

    fn take_at<'a>(el: &mut Element<'a>, path: &[&str], out: &mut Vec<Element<'a>>) {
        let [first, rest @ ..] = path else { return };
        if rest.is_empty() {
            let (taken, kept) = std::mem::take(&mut el.children)
                .into_iter()
                .partition(|c| c.name == *first);
            out.extend::<Vec<_>>(taken);
            el.children = kept;
            return;
        }
        for child in el.children.iter_mut().filter(|c| c.name == *first) {
            take_at(child, rest, out);
        }
    }

    /// A plain run leaves out the whitespace between the elements it reads, so the text of their
    /// parent (the root's `A`s) can differ; validation only asks whether it is blank.
    fn blank_containers(mut els: Vec<Element<'_>>) -> Vec<Element<'_>> {
        let root = els.last_mut().expect("the root");
        for a in root.children.iter_mut().filter(|c| c.name == "A") {
            a.text = Cow::Borrowed(if is_blank(&a.text) { "" } else { "text" });
        }
        els
    }

    const RUN_PATH: &[&str] = &["A", "T"];

    /// A document whose `A`s hold plain `T`s, with `tokens` in the middle one.
    fn run_text(tokens: &str) -> String {
        format!(
            "<R>\n <A>\n  <T><N>a</N><V> x </V></T>\n  <T>\n   <N>b</N>\n  </T>\n</A>\n\
             <A>{tokens}</A><A><T><N>z</N></T></A><B><A><T><N>c</N></T></A></B></R>"
        )
    }

    /// What the plain run reads is what the reader's events build, element for element and
    /// offset for offset, and where the run stops the reader goes on as if it had read all.
    #[test]
    fn a_plain_run_reads_what_the_reader_would() {
        let cases = [
            "",
            "<T/>",
            "<T><N>1</N></T><T><N>2</N></T>",
            "\n<T>\n<N>1</N>\r\n\t<V>2</V> </T> \n<T><N></N></T>",
            "<T><N>1</N></T><!-- c --><T><N>2</N></T>",
            "<T><N>1 &amp; 2</N></T><T><N>3</N></T>",
            "<T><N><![CDATA[x]]></N></T><T><N>3</N></T>",
            "<T a='1'><N>1</N></T><T><N>2</N></T>",
            "<T><N a='1'>1</N></T><T><N>2</N></T>",
            "<T><N/></T><T><N>2</N></T>",
            "<T ><N>1</N></T ><T><N>2</N ></T>",
            "<T><N>1</N><M><K>x</K></M></T><T><N>2</N></T>",
            "<T>text<N>1</N></T><T><N>2</N>after</T>",
            "<T><N>1</N><N>2</N><N>3</N><N>4</N><N>5</N><N>6</N><N>7</N><N>8</N></T>",
            "<T><N>1</N><N>2</N><N>3</N><N>4</N><N>5</N><N>6</N><N>7</N><N>8</N><N>9</N></T><T/>",
            "<T><Abcdefghijklmnopq>1</Abcdefghijklmnopq></T><T><Abcdefghijklmnop>2</Abcdefghijklmnop></T>",
            "<T><N1>1</N1></T><T><N>2</N></T>",
            "<T><N>1</N><></></T><T><N>2</N></T>",
            "<T><N>a>b</N></T><T><N>ünï</N></T>",
            "<U><N>1</N></U><T><N>2</N></T>",
            "<Tx><N>1</N></Tx><T><N>2</N></T>",
            // Faults: the reader finds and words them.
            "<T><N>1</M></T>",
            "<T><N>1</N></U>",
            "<T><N>1</N>",
            "<T><N>1</N></T><T><N>1 &x; 2</N></T>",
            "<T><N>1</N></T><T><N>1 & 2</N></T>",
            "<T><N>1</N></T><T><N>1</N></T></A></A>",
            "<T><N>1</N></T>junk</A>",
        ];
        cases.into_iter().for_each(reads_alike);
    }

    /// A diverting parse of `run_text(tokens)` against the plain parse's tree.
    fn reads_alike(tokens: &str) {
        let text = run_text(tokens);
        assert_eq!(
            diverting(&text, RUN_PATH).map(blank_containers),
            from_tree(&text, RUN_PATH).map(blank_containers),
            "{tokens:?}"
        );
    }

    /// The same over thousands of documents made by cutting and splicing a plain run at random.
    #[test]
    fn mangled_runs_read_as_the_reader_reads_them() {
        let base = "<T><N>a</N><V>b c</V></T>\n <T>\n <N>d</N> <E>1</E>\n </T><T><N>e</N></T>";
        let pieces = [
            "<",
            ">",
            "/",
            "</",
            "<T>",
            "</T>",
            "<N>",
            "</N>",
            "&",
            "&lt;",
            " ",
            "\n",
            "x",
            "é",
            "<!--c-->",
            "<![CDATA[q]]>",
            "<T/>",
            "'",
            "=",
            "\"",
        ];
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut next = |n: usize| rng.gen_range(0..n);
        for _ in 0..20_000 {
            let mut tokens = base.to_owned();
            for _ in 0..1 + next(3) {
                let at = next(tokens.len() + 1);
                let at = (at..=tokens.len())
                    .find(|&i| tokens.is_char_boundary(i))
                    .unwrap();
                if next(2) == 0 {
                    tokens.insert_str(at, pieces[next(pieces.len())]);
                } else {
                    let to = (at + 1 + next(4)).min(tokens.len());
                    let to = (to..=tokens.len())
                        .find(|&i| tokens.is_char_boundary(i))
                        .unwrap();
                    tokens.replace_range(at..to, "");
                }
            }
            reads_alike(&tokens);
        }
    }

    /// A plain run reads the plain elements and stops before the first that is not, leaving the
    /// whitespace after the last one read.
    #[test]
    fn a_plain_run_stops_before_what_is_not_plain() {
        let text = "<A> <T><N>1</N> <V>2</V></T>\n<T></T><T><N>x</N><!----></T></A>";
        let mut spare = Vec::new();
        let mut seen = Vec::new();
        let (end, used) = plain_run(text, 3, "T", 100, &mut spare, &mut |el| {
            let children: Vec<_> = el
                .children
                .iter()
                .map(|c| (c.name, c.offset, c.text.to_string()))
                .collect();
            seen.push((el.offset, el.text.to_string(), children));
        });
        let third = text.rfind("<T>").unwrap();
        assert_eq!((end, used), (third, 4));
        assert_eq!(
            seen,
            [
                (
                    4,
                    " ".to_owned(),
                    vec![("N", 7, "1".into()), ("V", 16, "2".into())]
                ),
                (29, String::new(), vec![]),
            ]
        );
        // Its own text is its first whitespace; a budget of 2 elements reads none.
        let (end, used) = plain_run("<T>\n <N>1</N> </T>", 0, "T", 3, &mut spare, &mut |el| {
            assert_eq!(el.text, "\n ");
        });
        assert_eq!((end, used), (18, 2));
        assert_eq!(plain_run(text, 3, "T", 2, &mut spare, &mut |_| {}), (3, 0));
        assert_eq!(
            plain_run(text, 3, "N", 100, &mut spare, &mut |_| {}),
            (3, 0)
        );
    }

    /// The plain run is what reads a token file's tokens: it leaves out the whitespace ahead of
    /// them, which the reader would have given their parent as its text. Also after a token the
    /// reader had to read, and after a second parent.
    #[test]
    fn the_plain_run_reads_where_it_can() {
        let text = "<R><A>\n <T><N>1</N></T> </A><A><T><!----></T>\n <T><N>2</N></T>\r</A></R>";
        let parents = |text| {
            let root = diverting(text, RUN_PATH).unwrap().pop().unwrap();
            let texts: Vec<String> = root.children.iter().map(|a| a.text.to_string()).collect();
            texts
        };
        assert_eq!(parents(text), [" ", "\r"]);
        let root = parse(text).unwrap();
        let texts = (root.children.iter()).map(|a| a.text.to_string());
        assert_eq!(texts.collect::<Vec<_>>(), ["\n ", "\n "], "the reader's");
    }

    /// The element cap counts what a plain run reads, and stops it where the reader stops.
    #[test]
    fn a_plain_run_counts_toward_the_element_cap() {
        let text = "<R><A><T><N>1</N></T><T><N>2</N></T><T><N>3</N></T></A></R>";
        let cap = |max: usize| {
            let mut sink = |_: &Element<'_>, _: usize| {};
            let divert = Divert {
                path: RUN_PATH,
                sink: &mut sink,
            };
            parse_capped(text, max, Some(divert)).map_err(|e| (e.offset, e.message))
        };
        assert!(cap(8).is_ok());
        // At the top, as much as the cap leaves: the root's own count is taken off it.
        let top = "<A><T><N>1</N></T><T><N>2</N></T></A>";
        let top_cap = |max: usize| {
            let mut sink = |_: &Element<'_>, _: usize| {};
            let divert = Divert {
                path: &["T"],
                sink: &mut sink,
            };
            parse_capped(top, max, Some(divert)).map_err(|e| (e.offset, e.message))
        };
        assert!(top_cap(5).is_ok());
        let second_n = top.rfind("<N>").unwrap();
        assert_eq!(
            top_cap(4).unwrap_err(),
            (second_n, "more than 4 elements".to_owned())
        );
        assert_eq!(
            cap(7).unwrap_err(),
            (
                text.rfind("<N>").unwrap(),
                "more than 7 elements".to_owned()
            )
        );
        assert_eq!(
            cap(6).unwrap_err(),
            (
                text.rfind("<T>").unwrap(),
                "more than 6 elements".to_owned()
            )
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "ab\n名前x\n\nz";
        let lines = LineIndex::new(text);
        assert_eq!(lines.position(0), (1, 1));
        assert_eq!(lines.position(2), (1, 3));
        assert_eq!(lines.position(3), (2, 1));
        assert_eq!(lines.position(text.find('x').unwrap()), (2, 3));
        assert_eq!(lines.position(text.find('z').unwrap()), (4, 1));
        assert_eq!(lines.position(text.len() + 5), (4, 2));
    }
}
