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
    loop {
        // Before an event is read, the position is where that event starts.
        let offset = bom + reader.buffer_position() as usize;
        let fail = |offset: usize, open: &[Element<'_>], message: String| XmlError {
            offset,
            open: open_places(open),
            message,
        };
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = bom + reader.error_position() as usize;
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
            }
            Event::CData(c) => {
                let piece = c.decode().map_err(|e| fail(offset, &open, e.to_string()))?;
                add_text(&mut open, piece).map_err(|m| fail(offset, &open, m.into()))?;
            }
            Event::DocType(_) => {
                let message = "DTDs and entity declarations are not allowed";
                return Err(fail(offset, &open, message.into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
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
    let Some((own, ancestors)) = path.split_last() else {
        return false;
    };
    open.len() == path.len()
        && element.name == *own
        && (open[1..].iter().zip(ancestors)).all(|(el, name)| el.name == *name)
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
