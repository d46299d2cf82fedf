//! Stage two: the raw element tree → typed [`Settings`], collecting every error with its position.
//!
//! Each block has its own file: [`server`] (`ServerSettings`, `KeepAliveSettings`), [`auth`]
//! (`AuthSettings`, `Token`) and [`gateway`] (`GatewaySettings`, its `ScanningPaths` in
//! [`scan_paths`]). This file holds the error types, the entry point and the helpers they share:
//! [`Group`] sorts a container's children into the names it knows, [`Leaf`] is one text element
//! ready to check.
//!
//! Validation never stops at the first error. A bad value is reported and replaced by its default so
//! the rest of the file is still checked; any error at all makes [`parse`] fail.

mod audit;
mod auth;
pub mod connections;
mod engines;
mod gateway;
mod limits;
mod scan_paths;
mod server;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

pub use auth::{check_description, check_name, check_tenant, parse_role};
/// The address rules of `ConnectionString` and `Upstream`, shared with the command line's `--listen`.
pub(crate) use server::{socket_addr, unix_path};

use super::xml::{self, Element, LineIndex};
use super::{Settings, TokenEntry};

/// One validation error: `file:line:column: element/path: rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file label (the path as given).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// Element path below `<Configuration>`, e.g. `ServerSettings/AuthSettings/AccessTokens/Token[3]/Name`.
    /// Empty for faults outside any element (a DTD, the root itself).
    pub path: String,
    /// The rule that failed.
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.rule)
    }
}

/// Every error found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses and validates a whole config text. `file` labels errors. Relative paths in the result are
/// left as written; [`super::load`] resolves them.
///
/// The `Token`s are first read as they close, without an element tree (most of a large file's
/// memory and time, see `benches/RESULTS.md`). Any fault at all, and the file is read again the
/// general way, so every error is found and worded by one path.
pub fn parse(text: &str, file: &str) -> Result<Settings, ConfigErrors> {
    parse_into(text, file, Vec::new())
}

/// [`parse`], reading the `Token`s into `tokens` (cleared first): a reload passes the list the
/// last one used, whose pages are in memory already.
pub fn parse_into(
    text: &str,
    file: &str,
    tokens: Vec<TokenEntry>,
) -> Result<Settings, ConfigErrors> {
    match streaming(text, tokens) {
        Some(settings) => Ok(settings),
        None => general(text, file),
    }
}

/// [`parse`] with `Token`s streamed into `tokens`: `None` on any fault, or if the streamed tokens
/// are not the ones validation asked for (a case that also has a fault, but this does not rely on
/// it).
fn streaming(text: &str, tokens: Vec<TokenEntry>) -> Option<Settings> {
    let mut ctx = Ctx::new(text);
    let mut stream = auth::TokenStream::reusing(text, tokens);
    let mut sink = |token: &Element<'_>, parent: usize| stream.token(&mut ctx, token, parent);
    let divert = xml::Divert {
        path: auth::TOKEN_PATH,
        sink: &mut sink,
    };
    let root = xml::parse_diverting(text, divert).ok()?;
    if !ctx.faults.is_empty() || stream.spoiled() {
        return None;
    }
    ctx.stream = Some(stream);
    let settings = settings(&mut ctx, &root)?;
    let unread = ctx.stream.as_ref().is_some_and(|s| !s.is_empty());
    (ctx.faults.is_empty() && !unread).then_some(settings)
}

/// [`parse`] over the whole element tree: the path that reports errors.
fn general(text: &str, file: &str) -> Result<Settings, ConfigErrors> {
    let mut ctx = Ctx::new(text);
    let settings = match xml::parse(text) {
        Ok(root) => settings(&mut ctx, &root),
        Err(e) => {
            let path: Vec<String> = (e.open.iter())
                .map(|(name, i)| {
                    if REPEATED.contains(&name.as_str()) {
                        format!("{name}[{i}]")
                    } else {
                        name.clone()
                    }
                })
                .collect();
            ctx.fault(e.offset, path.join("/"), e.message);
            None
        }
    };
    match settings {
        Some(settings) if ctx.faults.is_empty() => Ok(settings),
        _ => Err(ctx.into_errors(text, file)),
    }
}

/// `<Configuration>`: the two blocks scangate reads. Every other parent belongs to Scan Engine.
fn settings(ctx: &mut Ctx, root: &Element<'_>) -> Option<Settings> {
    if root.name != "Configuration" {
        let rule = format!(
            "the root element must be <Configuration>, found <{}>",
            root.name
        );
        ctx.fault(root.offset, "", rule);
        return None;
    }
    let top = Group::new(ctx, root, String::new(), TOP, Unknown::Ignore);
    // Both blocks are checked before either can end the walk, so all their errors are reported.
    let server = top
        .required(ctx, "ServerSettings")
        .map(|el| server::server(ctx, el));
    let max_sessions = (server.as_ref().and_then(|(s, _)| s.as_ref()))
        .map_or(server::DEFAULT_MAX_SESSIONS, |s| s.max_sessions);
    let gateway = top
        .required(ctx, "GatewaySettings")
        .map(|el| gateway::gateway(ctx, el, max_sessions));
    let (server, mut auth) = server?;
    let gateway = gateway?;
    cluster_needs_redis(ctx, &gateway);
    limits::apply_defaults(&mut auth, &gateway.limits);
    Some(Settings {
        server: server?,
        auth,
        gateway,
    })
}

/// `LimitScope` cluster counts quotas in the shared store: with SQLite there is none to share.
fn cluster_needs_redis(ctx: &mut Ctx, gateway: &super::GatewaySettings) {
    if matches!(gateway.sessions.state_store, super::StateStore::Redis(_)) {
        return;
    }
    for (offset, path) in std::mem::take(&mut ctx.cluster_scopes) {
        let rule =
            "LimitScope cluster needs a shared store: set GatewaySettings/Sessions/StateStore \
                    to a redis:// URL, or use replica";
        ctx.fault(offset, path, rule);
    }
}

const TOP: &[&str] = &["ServerSettings", "GatewaySettings"];

/// Errors found so far, by byte offset; positions are worked out once, at the end. It also keeps
/// the text, for the few elements whose attributes scangate reads (the tree leaves them out).
struct Ctx<'t> {
    faults: Vec<Fault>,
    text: &'t str,
    /// Where `LimitScope` says cluster: checked against the state store once it is known.
    cluster_scopes: Vec<(usize, String)>,
    /// The `Token`s read while the file was parsed, for the `AccessTokens` they came from.
    stream: Option<auth::TokenStream>,
}

struct Fault {
    offset: usize,
    path: String,
    rule: String,
}

impl<'t> Ctx<'t> {
    fn new(text: &'t str) -> Ctx<'t> {
        Ctx {
            faults: Vec::new(),
            text,
            cluster_scopes: Vec::new(),
            stream: None,
        }
    }

    /// The attributes of `el`'s start tag, names and unescaped values, in file order. The tree
    /// does not keep them (its elements stay small for million-token files), so they are read
    /// again from the text at the element's offset. An unreadable one is reported at `path`.
    fn attributes(&mut self, el: &Element<'_>, path: &str) -> Vec<(String, String)> {
        let Some(from) = self.text.get(el.offset..) else {
            return Vec::new();
        };
        let mut reader = quick_xml::Reader::from_str(from);
        let tag = match reader.read_event() {
            Ok(quick_xml::events::Event::Start(tag) | quick_xml::events::Event::Empty(tag)) => tag,
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for attr in tag.attributes() {
            let parsed = attr.map_err(|e| e.to_string()).and_then(|a| {
                let name = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                let value = a.unescape_value().map_err(|e| e.to_string())?;
                Ok((name, value.into_owned()))
            });
            match parsed {
                Ok(pair) => out.push(pair),
                Err(why) => self.fault(el.offset, path, format!("unreadable attribute: {why}")),
            }
        }
        out
    }

    /// Records one error.
    fn fault(&mut self, offset: usize, path: impl Into<String>, rule: impl Into<String>) {
        self.faults.push(Fault {
            offset,
            path: path.into(),
            rule: rule.into(),
        });
    }

    /// Records an error about a leaf's value.
    fn bad(&mut self, leaf: &Leaf<'_, '_>, rule: impl Into<String>) {
        self.fault(leaf.offset, leaf.path(), rule);
    }

    fn into_errors(mut self, text: &str, file: &str) -> ConfigErrors {
        // Checks that span several elements report after the elements; file order reads better.
        self.faults.sort_by_key(|f| f.offset);
        let lines = LineIndex::new(text);
        let errors = self.faults.into_iter().map(|f| {
            let (line, column) = lines.position(f.offset);
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                path: f.path,
                rule: f.rule,
            }
        });
        ConfigErrors(errors.collect())
    }
}

/// What to do with a child a container does not know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Scan Engine's own containers: their other children are Scan Engine's business.
    Ignore,
    /// scangate's containers: an unknown child is most likely a typo.
    Reject,
}

/// An element's path below `<Configuration>`, written out only when an error needs it: the path of
/// every `Token[i]` would otherwise cost an allocation per token.
pub(super) enum ElPath<'p> {
    /// A path already written out.
    Ready(String),
    /// `parent/name[index]`.
    Nth {
        parent: &'p str,
        name: &'static str,
        index: usize,
    },
}

impl ElPath<'_> {
    /// The path as errors show it.
    pub fn render(&self) -> Cow<'_, str> {
        match self {
            ElPath::Ready(path) => Cow::Borrowed(path),
            ElPath::Nth {
                parent,
                name,
                index,
            } => Cow::Owned(format!("{}[{index}]", join(parent, name))),
        }
    }
}

impl From<String> for ElPath<'_> {
    fn from(path: String) -> Self {
        ElPath::Ready(path)
    }
}

/// Most names a [`Group`] can know; the longest list (`GatewaySettings`) has 13, and a
/// compile-time check beside it keeps it within this.
const MAX_KNOWN: usize = 16;

/// A container's children, sorted into the names it knows. Unknown and duplicate children are
/// reported while sorting, so the accessors below only ever see the first of each name. Sorting
/// allocates nothing, because a config holds one Token group per token.
struct Group<'e, 'a, 'p> {
    /// The container, for errors about what it lacks.
    element: &'e Element<'a>,
    /// Its path, for the same reason and as the parent of its children's paths.
    path: ElPath<'p>,
    known: &'static [&'static str],
    /// Per known name, its first element.
    first: [Option<&'e Element<'a>>; MAX_KNOWN],
}

/// Elements that may repeat; any other name may appear once per container.
const REPEATED: &[&str] = &["Token", "Tenant", "Upstream", "ScanningPath", "Connection"];

impl<'e, 'a, 'p> Group<'e, 'a, 'p> {
    /// Sorts `element`'s children into `known`, reporting the rest as `unknown` says.
    pub fn new(
        ctx: &mut Ctx,
        element: &'e Element<'a>,
        path: impl Into<ElPath<'p>>,
        known: &'static [&'static str],
        unknown: Unknown,
    ) -> Self {
        assert!(
            known.len() <= MAX_KNOWN,
            "a group knows at most {MAX_KNOWN} names"
        );
        let path = path.into();
        let mut first = [None; MAX_KNOWN];
        for child in &element.children {
            let Some(slot) = known.iter().position(|k| *k == child.name) else {
                if unknown == Unknown::Reject {
                    let rule = format!("unknown element <{}>", child.name);
                    ctx.fault(child.offset, join(&path.render(), child.name), rule);
                }
                continue;
            };
            if first[slot].is_some() && !REPEATED.contains(&child.name) {
                let rule = format!("duplicate element <{}>", child.name);
                ctx.fault(child.offset, join(&path.render(), child.name), rule);
                continue;
            }
            first[slot].get_or_insert(child);
        }
        if unknown == Unknown::Reject && !xml::is_blank(&element.text) {
            let rule = format!("unexpected text in <{}>", element.name);
            ctx.fault(element.offset, path.render(), rule);
        }
        Group {
            element,
            path,
            known,
            first,
        }
    }

    /// Its path, for errors and as the parent of its children's paths.
    pub fn path(&self) -> Cow<'_, str> {
        self.path.render()
    }

    /// Where errors about the container itself point.
    pub fn offset(&self) -> usize {
        self.element.offset
    }

    fn slot(&self, name: &str) -> usize {
        let slot = self.known.iter().position(|k| *k == name);
        slot.expect("asked for a name the group does not know")
    }

    /// Every child called `name` (a known name): all of them for a name that may repeat, else the
    /// first.
    pub fn all(&self, name: &str) -> Vec<&'e Element<'a>> {
        let first = self.first[self.slot(name)];
        if !REPEATED.contains(&name) {
            return first.into_iter().collect();
        }
        let children = self.element.children.iter();
        children.filter(|c| c.name == name).collect()
    }

    /// The child called `name`, if present.
    pub fn one(&self, name: &str) -> Option<&'e Element<'a>> {
        self.first[self.slot(name)]
    }

    /// The child called `name`; reports it missing if absent.
    pub fn required(&self, ctx: &mut Ctx, name: &str) -> Option<&'e Element<'a>> {
        let child = self.one(name);
        if child.is_none() {
            ctx.fault(self.offset(), self.path(), format!("<{name}> is mandatory"));
        }
        child
    }

    /// The text child called `name`, if present and not empty.
    pub fn leaf(&self, ctx: &mut Ctx, name: &'static str) -> Option<Leaf<'e, '_>> {
        let el = self.one(name)?;
        Leaf::read(ctx, el, &self.path, name, None).filter(|leaf| leaf.non_empty(ctx))
    }

    /// Like [`Group::leaf`], but an empty element is fine (and yields an empty text).
    pub fn maybe_empty_leaf(&self, ctx: &mut Ctx, name: &'static str) -> Option<Leaf<'e, '_>> {
        Leaf::read(ctx, self.one(name)?, &self.path, name, None)
    }

    /// Every text child called `name`, numbered `name[1]`, `name[2]` …; empty ones are reported.
    pub fn leaves(&self, ctx: &mut Ctx, name: &'static str) -> Vec<Leaf<'e, '_>> {
        let all = self.all(name).into_iter().enumerate();
        all.filter_map(|(i, el)| {
            let leaf = Leaf::read(ctx, el, &self.path, name, Some(i + 1))?;
            leaf.non_empty(ctx).then_some(leaf)
        })
        .collect()
    }

    /// A mandatory text child: reports it missing if absent.
    pub fn required_leaf(&self, ctx: &mut Ctx, name: &'static str) -> Option<Leaf<'e, '_>> {
        self.required(ctx, name)?;
        self.leaf(ctx, name)
    }

    /// An optional `0`/`1` child.
    pub fn flag(&self, ctx: &mut Ctx, name: &'static str) -> Option<bool> {
        let leaf = self.leaf(ctx, name)?;
        match leaf.text {
            "0" => Some(false),
            "1" => Some(true),
            other => {
                ctx.bad(&leaf, format!("{name} must be 0 or 1, found {other:?}"));
                None
            }
        }
    }

    /// An optional whole number from 0 to `max`.
    pub fn uint(&self, ctx: &mut Ctx, name: &'static str, max: u64) -> Option<u64> {
        let leaf = self.leaf(ctx, name)?;
        let digits = leaf.text.bytes().all(|b| b.is_ascii_digit());
        match leaf.text.parse::<u64>() {
            Ok(n) if digits && n <= max => Some(n),
            _ => {
                let rule = format!(
                    "{name} must be a whole number from 0 to {max}, found {:?}",
                    leaf.text
                );
                ctx.bad(&leaf, rule);
                None
            }
        }
    }
}

/// A text element, trimmed, with what it takes to report an error about it.
struct Leaf<'e, 'g> {
    /// Its text without surrounding whitespace.
    pub text: &'e str,
    /// Its start tag.
    pub offset: usize,
    parent: &'g ElPath<'g>,
    name: &'static str,
    index: Option<usize>,
}

impl<'e, 'g> Leaf<'e, 'g> {
    /// Reads a text element. Child elements in it are reported as unknown.
    fn read(
        ctx: &mut Ctx,
        el: &'e Element<'_>,
        parent: &'g ElPath<'g>,
        name: &'static str,
        index: Option<usize>,
    ) -> Option<Self> {
        let leaf = Leaf {
            text: trim(&el.text),
            offset: el.offset,
            parent,
            name,
            index,
        };
        for child in &el.children {
            let rule = format!("unknown element <{}>", child.name);
            ctx.fault(child.offset, join(&leaf.path(), child.name), rule);
        }
        el.children.is_empty().then_some(leaf)
    }

    /// Reports an empty leaf: an element that is present must hold a value (Scan Engine's rule).
    fn non_empty(&self, ctx: &mut Ctx) -> bool {
        if self.text.is_empty() {
            ctx.bad(self, "must not be empty");
        }
        !self.text.is_empty()
    }

    /// `Parent/Name` or `Parent/Name[i]`; built only for an error.
    pub fn path(&self) -> String {
        let parent = self.parent.render();
        match self.index {
            Some(i) => format!("{}[{i}]", join(&parent, self.name)),
            None => join(&parent, self.name),
        }
    }
}

/// A text value without the XML whitespace around it.
fn trim(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// A child's path.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether a text holds a control character (CR, LF, NUL …), which would break a log line or a header.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}
