//! `AuthSettings` and its `Token`s: Scan Engine's rules (reference §1.3), plus scangate's `Role`,
//! `Tenants` and `AllowScanFile` and a check that no two tokens share a Value.

use std::borrow::Cow;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::BuildHasher;
use std::sync::Arc;

use http::HeaderName;

use super::connections::connections;
use super::{has_control, join, limits, trim, Ctx, ElPath, Group, Leaf, Unknown};
use compact_str::CompactString;

use crate::auth::store::{digest_key, DigestKey};
use crate::auth::token::{decode_value, Digest};
use crate::config::xml::{is_blank, Element};
use crate::config::{AuthSettings, Role, TokenEntry};

const KNOWN: &[&str] = &[
    "UseAccessToken",
    "AuthRequestField",
    "UseBearerAuthScheme",
    "AccessTokens",
    "ApiConnections",
];

const TOKEN: &[&str] = &[
    "Name",
    "Value",
    "Description",
    "Enabled",
    "Role",
    "Tenants",
    "AllowScanFile",
    "RateLimit",
];

/// Headers HTTP itself or scangate's forwarding relies on. Carrying the token in one of them would
/// break framing or routing, and scangate strips the token header before forwarding.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `AuthSettings`; absent means Scan Engine's defaults (no token check).
pub(super) fn auth(ctx: &mut Ctx, el: Option<&Element<'_>>, parent: &str) -> AuthSettings {
    let mut auth = AuthSettings {
        use_access_token: false,
        request_field: http::header::AUTHORIZATION,
        bearer: true,
        tokens: Vec::new(),
        connections: Vec::new(),
    };
    let Some(el) = el else {
        return auth;
    };
    let g = Group::new(
        ctx,
        el,
        join(parent, "AuthSettings"),
        KNOWN,
        Unknown::Reject,
    );
    auth.use_access_token = g.flag(ctx, "UseAccessToken").unwrap_or(false);
    let field = g.leaf(ctx, "AuthRequestField");
    if let Some(field) = field.and_then(|leaf| request_field(ctx, &leaf)) {
        auth.request_field = field;
    }
    auth.bearer = g.flag(ctx, "UseBearerAuthScheme").unwrap_or(true);
    // With a Connection, a file may hold no Token at all.
    let has_connections = g
        .one("ApiConnections")
        .is_some_and(|el| el.children.iter().any(|c| c.name == "Connection"));
    if let Some(el) = g.one("AccessTokens") {
        let required = auth.use_access_token && !has_connections;
        auth.tokens = tokens(ctx, el, &g.path(), required);
    }
    if let Some(el) = g.one("ApiConnections") {
        auth.connections = connections(ctx, el, &g.path(), &auth.tokens);
    }
    if auth.use_access_token {
        let mandatory = ["AuthRequestField", "UseBearerAuthScheme", "AccessTokens"];
        // A file whose credentials are all Connections needs no AccessTokens.
        for name in mandatory
            .into_iter()
            .take(if has_connections { 2 } else { 3 })
        {
            if g.one(name).is_none() {
                let rule = format!("UseAccessToken is 1 but <{name}> is missing");
                ctx.fault(g.offset(), g.path(), rule);
            }
        }
    }
    auth
}

/// Where the `Token`s stand below `<Configuration>`: the elements [`TokenStream`] reads.
pub(super) const TOKEN_PATH: &[&str] = &["ServerSettings", "AuthSettings", "AccessTokens", "Token"];

/// [`TOKEN_PATH`]'s parent, as errors write it.
const TOKENS_PARENT: &str = "ServerSettings/AuthSettings/AccessTokens";

/// Token index by name and by digest key, to name the first holder of a duplicate. Digests compare
/// by the token store's key, their first 32 bytes: two Values that share it are one token there.
#[derive(Default)]
struct Seen {
    names: HashMap<CompactString, usize>,
    digests: HashMap<DigestKey, usize>,
}

impl Seen {
    fn with_capacity(n: usize) -> Self {
        Seen {
            names: HashMap::with_capacity(n),
            digests: HashMap::with_capacity(n),
        }
    }

    /// Records the plain token `entry` as `Token[i + 1]`, unless its name or Value was seen
    /// before: then nothing is recorded, and the general path reports the duplicate.
    fn first(&mut self, entry: &TokenEntry, i: usize) -> bool {
        let Entry::Vacant(digest_slot) = self.digests.entry(digest_key(&entry.digest)) else {
            return false;
        };
        let Entry::Vacant(name_slot) = self.names.entry(entry.name.clone()) else {
            return false;
        };
        name_slot.insert(i);
        digest_slot.insert(i);
        true
    }
}

/// The `Token`s of the file's `AccessTokens`, checked as the reader closes each one, so that no
/// element tree of a million tokens is built. Validation then takes them instead of reading
/// `AccessTokens`' children (which the tree does not have).
pub(super) struct TokenStream {
    /// A hash of each name read, and the first 8 bytes of each digest (HMAC output, so already a
    /// good hash), sorted at the end to find repeats. The stream has only to find that there is
    /// no duplicate: a repeated hash, a duplicate or a collision, hands the file to the general
    /// path, whose exact maps report it (or find none). Two lists of 8 bytes a token, written in
    /// order and sorted once, cost a third of what a million random inserts into hash sets cost
    /// (`benches/RESULTS.md`).
    names: Vec<u64>,
    digests: Vec<u64>,
    hasher: RandomState,
    entries: Vec<TokenEntry>,
    /// `Token`s read, valid or not.
    count: usize,
    /// The offset of the `AccessTokens` they stand in.
    parent: Option<usize>,
    /// Tokens came from two `AccessTokens` (a file with a duplicate block).
    spoiled: bool,
}

impl TokenStream {
    /// A stream sized for `text`, its tokens read into `entries` (cleared first): a reload passes
    /// the last one's list, whose pages are in memory already. The lists are sized once rather than
    /// grown through twenty copies; the size is a bound from the file's length, not a count of its
    /// `<Token`s (a pass over the whole file): capacity that is never written costs address space,
    /// not memory.
    pub fn reusing(text: &str, mut entries: Vec<TokenEntry>) -> Self {
        let expected = text.len() / MIN_TOKEN_BYTES;
        entries.clear();
        entries.reserve(expected);
        TokenStream {
            names: Vec::with_capacity(expected),
            digests: Vec::with_capacity(expected),
            hasher: RandomState::new(),
            entries,
            count: 0,
            parent: None,
            spoiled: false,
        }
    }

    /// Checks one `Token` whose parent starts at byte `parent`. Any fault in it lands in `ctx`.
    pub fn token(&mut self, ctx: &mut Ctx, el: &Element<'_>, parent: usize) {
        self.spoiled |= *self.parent.get_or_insert(parent) != parent;
        let entry = plain_token(el).or_else(|| {
            // Duplicates are the stream's to find, below.
            let mut alone = Seen::default();
            general_token(ctx, el, self.count, TOKENS_PARENT, &mut alone)
        });
        if let Some(entry) = entry {
            let name = self.hasher.hash_one(entry.name.as_str());
            let (digest, _) = entry.digest.split_first_chunk::<8>().expect("64 bytes");
            self.names.push(name);
            self.digests.push(u64::from_le_bytes(*digest));
            self.entries.push(entry);
        }
        self.count += 1;
    }

    /// The stream cannot stand for the file: read from two places, or a repeated hash.
    pub fn spoiled(&mut self) -> bool {
        let repeats = |hashes: &mut Vec<u64>| {
            hashes.sort_unstable();
            hashes.windows(2).any(|pair| pair[0] == pair[1])
        };
        self.spoiled || repeats(&mut self.names) || repeats(&mut self.digests)
    }

    /// No `Token` read.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The fewest bytes a valid `Token` takes: its tags, a one-character Name, an 88-character
/// Value and Enabled.
const MIN_TOKEN_BYTES: usize =
    "<Token><Name>a</Name><Value></Value><Enabled>1</Enabled></Token>".len() + 88;

/// `AccessTokens`: every Token, checked alone and against the others (already, when the file was
/// streamed).
fn tokens(ctx: &mut Ctx, el: &Element<'_>, parent: &str, required: bool) -> Vec<TokenEntry> {
    let g = Group::new(
        ctx,
        el,
        join(parent, "AccessTokens"),
        &["Token"],
        Unknown::Reject,
    );
    let streamed = ctx.stream.take_if(|s| s.parent == Some(el.offset));
    let elements = g.all("Token");
    let count = elements.len() + streamed.as_ref().map_or(0, |s| s.count);
    if required && count == 0 {
        let rule = "UseAccessToken is 1 but AccessTokens has no Token";
        ctx.fault(g.offset(), g.path(), rule);
    }
    if let Some(stream) = streamed {
        return stream.entries;
    }
    let parent = g.path();
    let mut seen = Seen::with_capacity(elements.len());
    let mut entries = Vec::with_capacity(elements.len());
    for (i, el) in elements.iter().enumerate() {
        entries.extend(token(ctx, el, i, &parent, &mut seen));
    }
    entries
}

/// `Token[i + 1]` below `parent`: on the plain path when it can, else on the general one, which
/// reports whatever is wrong.
fn token(
    ctx: &mut Ctx,
    el: &Element<'_>,
    i: usize,
    parent: &str,
    seen: &mut Seen,
) -> Option<TokenEntry> {
    match plain_token(el) {
        Some(entry) if seen.first(&entry, i) => Some(entry),
        _ => general_token(ctx, el, i, parent, seen),
    }
}

/// `Token[i + 1]` read with [`Group`] and [`Leaf`]: every fault is reported.
fn general_token(
    ctx: &mut Ctx,
    el: &Element<'_>,
    i: usize,
    parent: &str,
    seen: &mut Seen,
) -> Option<TokenEntry> {
    let path = ElPath::Nth {
        parent,
        name: "Token",
        index: i + 1,
    };
    let t = Group::new(ctx, el, path, TOKEN, Unknown::Reject);

    let name = t.required_leaf(ctx, "Name").filter(|l| name_ok(ctx, l));
    if let Some(leaf) = &name {
        match seen.names.contains_key(leaf.text) {
            true => ctx.bad(leaf, format!("duplicate name {:?}", leaf.text)),
            false => _ = seen.names.insert(leaf.text.into(), i),
        }
    }
    let digest = t.required_leaf(ctx, "Value").and_then(|leaf| {
        let digest = value(ctx, &leaf)?;
        match seen.digests.entry(digest_key(&digest)) {
            Entry::Occupied(first) => {
                let rule = format!("duplicate value (same token as Token[{}])", first.get() + 1);
                ctx.bad(&leaf, rule);
            }
            Entry::Vacant(slot) => _ = slot.insert(i),
        }
        Some(digest)
    });
    let description = t.maybe_empty_leaf(ctx, "Description").and_then(|leaf| {
        if let Err(rule) = check_description(leaf.text) {
            ctx.bad(&leaf, rule);
        }
        (!leaf.text.is_empty()).then(|| leaf.text.to_owned())
    });
    let enabled = t.required(ctx, "Enabled").and(t.flag(ctx, "Enabled"));
    let role = t.leaf(ctx, "Role").and_then(|leaf| role(ctx, &leaf));
    let tenants = match t.one("Tenants") {
        Some(el) => tenants(ctx, el, &t.path()),
        None => Vec::new(),
    };
    let allow_scan_file = t.flag(ctx, "AllowScanFile");
    let own_limits = (t.one("RateLimit"))
        .map(|el| Arc::new(limits::limits(ctx, el, join(&t.path(), "RateLimit"))));
    let (name, digest, enabled) = (name?, digest?, enabled?);
    Some(TokenEntry {
        name: name.text.into(),
        digest,
        description,
        enabled,
        role,
        tenants,
        allow_scan_file,
        limits: own_limits,
    })
}

/// The common case, read without [`Group`] and [`Leaf`]: a Token whose children are known names, once
/// each, holding plain text, without Tenants, and whose every value and rule checks out. `None`
/// means "take the general path", which then finds and reports whatever is wrong. Duplicates are
/// the caller's to check. With a million tokens this is most of a reload's validation.
fn plain_token(el: &Element<'_>) -> Option<TokenEntry> {
    if !is_blank(&el.text) {
        return None;
    }
    // Name, Value, Description, Enabled, Role, AllowScanFile.
    let mut texts: [Option<&str>; 6] = [None; 6];
    for child in &el.children {
        let slot = match child.name {
            "Name" => 0,
            "Value" => 1,
            "Description" => 2,
            "Enabled" => 3,
            "Role" => 4,
            "AllowScanFile" => 5,
            _ => return None,
        };
        let Cow::Borrowed(text) = child.text else {
            return None;
        };
        if !child.children.is_empty() || texts[slot].replace(trim(text)).is_some() {
            return None;
        }
    }
    let name = texts[0].filter(|name| check_name(name).is_ok())?;
    let digest = decode_value(texts[1]?)?;
    let description = match texts[2] {
        Some(text) => check_description(text).ok().map(|()| text),
        None => Some(""),
    }?;
    let enabled = match texts[3]? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let role = match texts[4] {
        Some(text) => Some(parse_role(text).ok()?),
        None => None,
    };
    let allow_scan_file = match texts[5] {
        Some("0") => Some(false),
        Some("1") => Some(true),
        Some(_) => return None,
        None => None,
    };
    Some(TokenEntry {
        name: name.into(),
        digest,
        description: (!description.is_empty()).then(|| description.to_owned()),
        enabled,
        role,
        tenants: Vec::new(),
        allow_scan_file,
        limits: None,
    })
}

/// `Name` as the validator sees it, for errors found by the reader (empty) and by [`check_name`].
fn name_ok(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> bool {
    check_name(leaf.text)
        .map_err(|rule| ctx.bad(leaf, rule))
        .is_ok()
}

/// `Name`: 1–40 Unicode characters, no control characters because the name goes into log lines and
/// a request header. Shared with the `token` commands so they refuse a bad name in the same words.
pub fn check_name(name: &str) -> Result<(), String> {
    short_text("Name", name, 40)
}

/// 1 to `max` characters, none of them a control character or a bidirectional control.
fn short_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    // Printable ASCII holds no control or bidirectional character and counts a character a byte:
    // one pass over the bytes settles it, 6.3 % fewer instructions for a token file's parse than
    // the character walks below (`benches/RESULTS.md`).
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) && (1..=max).contains(&text.len()) {
        return Ok(());
    }
    let chars = text.chars().count();
    if !(1..=max).contains(&chars) {
        Err(format!(
            "{what} must be 1 to {max} characters, found {chars}"
        ))
    } else if has_control(text) {
        Err(format!("{what} must not contain control characters"))
    } else {
        no_bidi(what, text)
    }
}

/// Refuses the bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069):
/// they reorder how the text around them is displayed, so a token in `token list` or a log line
/// could pose as another ("Trojan Source").
fn no_bidi(what: &str, text: &str) -> Result<(), String> {
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    match text.chars().any(bidi) {
        true => Err(format!(
            "{what} must not contain bidirectional control characters"
        )),
        false => Ok(()),
    }
}

/// `Description`: at most 1000 characters; no control character but tab, since `token list`
/// prints it to a terminal (an escape sequence would run there) and XML 1.0 forbids most of them.
pub fn check_description(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if chars > 1000 {
        Err(format!(
            "Description must be at most 1000 characters, found {chars}"
        ))
    } else if text.chars().any(|c| c.is_control() && c != '\t') {
        Err("Description must not contain control characters other than tab".into())
    } else {
        no_bidi("Description", text)
    }
}

/// `Tenant`: 1–100 characters, no control characters, no comma and no whitespace at either end.
/// Tenants travel as one comma-separated `X-Scangate-Tenants` value, so a comma inside one would
/// split it into two, and edge whitespace would not survive the backend's list parsing.
pub fn check_tenant(text: &str) -> Result<(), String> {
    short_text("Tenant", text, 100)?;
    if text.contains(',') {
        Err(
            "Tenant must not contain a comma: X-Scangate-Tenants separates tenants with commas"
                .into(),
        )
    } else if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        Err("Tenant must not start or end with whitespace".into())
    } else {
        Ok(())
    }
}

/// `Role`: scangate's names, or the MDR spellings an MDR user would write.
pub fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "Administrator" | "MDR Administrator" => Ok(Role::Administrator),
        "SeniorSecurityOfficer" | "Senior Security Officer" => Ok(Role::SeniorSecurityOfficer),
        "SecurityOfficer" | "Security Officer" => Ok(Role::SecurityOfficer),
        other => Err(format!(
            "Role must be Administrator, SeniorSecurityOfficer or SecurityOfficer, found {other:?}"
        )),
    }
}

/// `Value`: 88 characters of standard base64 encoding a 64-byte digest.
fn value(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> Option<Digest> {
    if let Some(digest) = decode_value(leaf.text) {
        return Some(digest);
    }
    let chars = leaf.text.chars().count();
    let rule = if chars != 88 {
        format!("Value must be 88 characters, found {chars}")
    } else {
        "Value is not base64 of 64 bytes".to_owned()
    };
    ctx.bad(leaf, rule);
    None
}

fn role(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> Option<Role> {
    parse_role(leaf.text)
        .map_err(|rule| ctx.bad(leaf, rule))
        .ok()
}

/// `Tenants/Tenant`: 1–100 printable characters each.
fn tenants(ctx: &mut Ctx, el: &Element<'_>, parent: &str) -> Vec<String> {
    let g = Group::new(
        ctx,
        el,
        join(parent, "Tenants"),
        &["Tenant"],
        Unknown::Reject,
    );
    let mut tenants = Vec::new();
    for leaf in g.leaves(ctx, "Tenant") {
        match check_tenant(leaf.text) {
            Ok(()) => tenants.push(leaf.text.to_owned()),
            Err(rule) => ctx.bad(&leaf, rule),
        }
    }
    tenants
}

/// `AuthRequestField`: 3–40 RFC 7230 token characters, and not a header HTTP needs for itself.
fn request_field(ctx: &mut Ctx, leaf: &Leaf<'_, '_>) -> Option<HeaderName> {
    let text = leaf.text;
    let chars = text.chars().count();
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let name = HeaderName::from_bytes(text.as_bytes()).ok();
    let name = name.filter(|_| text.bytes().all(tchar));
    let lower = text.to_ascii_lowercase();
    let rule = if !(3..=40).contains(&chars) {
        format!("AuthRequestField must be 3 to 40 characters, found {chars}")
    } else if name.is_none() {
        format!(
            "AuthRequestField must hold only RFC 7230 token characters \
             (letters, digits and !#$%&'*+-.^_`|~), found {text:?}"
        )
    } else if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-scangate-") {
        format!("AuthRequestField {text:?} is a header HTTP or scangate relies on; choose another")
    } else {
        return name;
    };
    ctx.bad(leaf, rule);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::parse;

    /// Tokens from two `AccessTokens` never make one result, whatever else the file says.
    #[test]
    fn a_stream_fed_from_two_parents_is_spoiled() {
        let value = crate::auth::token::encode_value(&[1; 64]);
        let text = format!(
            "<Token><Name>a</Name><Value>{value}</Value><Enabled>1</Enabled></Token>\
             <Token><Name>b</Name><Value>{}</Value><Enabled>1</Enabled></Token>",
            crate::auth::token::encode_value(&[2; 64])
        );
        let doc = format!("<R>{text}</R>");
        let root = crate::config::xml::parse(&doc).unwrap();
        let mut ctx = Ctx::new(&text);
        let mut one = TokenStream::reusing(&text, Vec::new());
        one.token(&mut ctx, &root.children[0], 7);
        one.token(&mut ctx, &root.children[1], 7);
        assert!(!one.spoiled() && !one.is_empty());
        let mut two = TokenStream::reusing(&text, Vec::new());
        two.token(&mut ctx, &root.children[0], 7);
        two.token(&mut ctx, &root.children[1], 9);
        assert!(two.spoiled());
        assert!(ctx.faults.is_empty());
    }

    /// The lists are sized from the file's length for the most tokens it can hold: a file of
    /// the shortest valid tokens fills them without growing them.
    #[test]
    fn a_stream_has_room_for_the_most_tokens_a_file_can_hold() {
        let value = crate::auth::token::encode_value(&[3; 64]);
        let shortest =
            format!("<Token><Name>a</Name><Value>{value}</Value><Enabled>1</Enabled></Token>");
        assert_eq!(shortest.len(), MIN_TOKEN_BYTES);
        let root = crate::config::xml::parse(&shortest).unwrap();
        assert!(plain_token(&root).is_some(), "the shortest token is valid");
        let text = shortest.repeat(1000);
        let stream = TokenStream::reusing(&text, Vec::new());
        assert!(stream.entries.capacity() >= 1000 && stream.names.capacity() >= 1000);
        // A bound, not a multiple: at a million tokens a wrong one reserves terabytes.
        assert!(
            stream.entries.capacity() < 2000,
            "{}",
            stream.entries.capacity()
        );
    }

    #[test]
    fn the_streamed_tokens_parent_is_their_path() {
        assert_eq!(TOKENS_PARENT, TOKEN_PATH[..3].join("/"));
    }

    #[test]
    fn names_refuse_control_and_bidi_characters() {
        assert_eq!(check_name("ci runner"), Ok(()));
        assert_eq!(
            check_name("a\u{1b}[2Jb"),
            Err("Name must not contain control characters".into())
        );
        // U+202E turns "ci\u{202e}lanretni" into "ciinternal" on screen.
        for bidi in ['\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert_eq!(
                check_name(&format!("ci{bidi}x")),
                Err("Name must not contain bidirectional control characters".into()),
                "{bidi:?}"
            );
        }
        assert_eq!(check_name("ci\u{2029}x"), Ok(()), "not a bidi control");
        assert_eq!(check_name("ci\u{2065}x"), Ok(()), "just below the isolates");
    }

    /// Printable ASCII takes the one-pass check; every other byte and every length outside
    /// 1..=40 gets the full one, and its words.
    #[test]
    fn ascii_names_are_checked_at_their_edges() {
        for b in 0u8..=0x7f {
            let name = format!("a{}", b as char);
            let expected = match b {
                b' '..=b'~' => Ok(()),
                _ => Err("Name must not contain control characters".to_owned()),
            };
            assert_eq!(check_name(&name), expected, "{b:#x}");
        }
        assert_eq!(check_name(&"n".repeat(40)), Ok(()));
        assert_eq!(check_name(&"é".repeat(40)), Ok(()));
        for (name, found) in [
            (String::new(), 0),
            ("n".repeat(41), 41),
            ("é".repeat(41), 41),
        ] {
            let rule = format!("Name must be 1 to 40 characters, found {found}");
            assert_eq!(check_name(&name), Err(rule));
        }
        assert_eq!(
            check_name("\u{85}"),
            Err("Name must not contain control characters".into()),
            "a C1 control"
        );
    }

    #[test]
    fn descriptions_refuse_control_characters_but_a_tab() {
        assert_eq!(check_description(""), Ok(()));
        assert_eq!(check_description("CI\tnightly"), Ok(()));
        let rule = "Description must not contain control characters other than tab";
        for text in [
            "a\u{1b}[2Jb",
            "two\nlines",
            "nul\0",
            "del\u{7f}",
            "c1\u{9b}",
        ] {
            assert_eq!(check_description(text), Err(rule.into()), "{text:?}");
        }
        assert_eq!(
            check_description("x\u{202d}y"),
            Err("Description must not contain bidirectional control characters".into())
        );
        let long = "d".repeat(1001);
        assert_eq!(
            check_description(&long),
            Err("Description must be at most 1000 characters, found 1001".into())
        );
        assert_eq!(check_description(&long[1..]), Ok(()));
    }

    #[test]
    fn tenants_refuse_commas_edge_whitespace_and_control_characters() {
        assert_eq!(check_tenant("acme corp"), Ok(()));
        assert_eq!(
            check_tenant("acme,globex"),
            Err(
                "Tenant must not contain a comma: X-Scangate-Tenants separates tenants with commas"
                    .into()
            )
        );
        let edge = "Tenant must not start or end with whitespace";
        for text in [" acme", "acme ", "\u{a0}acme", "acme\u{3000}"] {
            assert_eq!(check_tenant(text), Err(edge.into()), "{text:?}");
        }
        for text in ["a\u{1b}b", "\tacme"] {
            assert_eq!(
                check_tenant(text),
                Err("Tenant must not contain control characters".into()),
                "{text:?}"
            );
        }
        assert_eq!(
            check_tenant("a\u{2067}b"),
            Err("Tenant must not contain bidirectional control characters".into())
        );
        assert_eq!(
            check_tenant(&"t".repeat(101)),
            Err("Tenant must be 1 to 100 characters, found 101".into())
        );
    }

    /// The validator applies the same rules to the file, on both the plain and the general path.
    #[test]
    fn the_file_is_held_to_the_same_rules() {
        let value = crate::auth::token::encode_value(&[1; 64]);
        let file = |extra: &str| {
            format!(
                "<Configuration><ServerSettings><ConnectionString>http://127.0.0.1:1</ConnectionString>\
                 <AuthSettings><AccessTokens><Token><Name>a</Name><Value>{value}</Value>\
                 <Enabled>1</Enabled>{extra}</Token></AccessTokens></AuthSettings></ServerSettings>\
                 <GatewaySettings><Upstreams><Upstream>/s</Upstream></Upstreams></GatewaySettings>\
                 </Configuration>"
            )
        };
        let rules = |extra: &str| -> Vec<String> {
            match parse(&file(extra), "t.xml") {
                Ok(_) => Vec::new(),
                Err(e) => {
                    e.0.into_iter()
                        .map(|e| format!("{}: {}", e.path, e.rule))
                        .collect()
                }
            }
        };
        let token = "ServerSettings/AuthSettings/AccessTokens/Token[1]";
        assert_eq!(
            rules("<Description>a&#27;[31mb</Description>"),
            [format!(
                "{token}/Description: Description must not contain control characters other than tab"
            )]
        );
        assert_eq!(
            rules("<Description>a&#9;b</Description>"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules("<Tenants><Tenant>acme,globex</Tenant><Tenant>&#160;x</Tenant></Tenants>"),
            [
                format!(
                    "{token}/Tenants/Tenant[1]: Tenant must not contain a comma: \
                     X-Scangate-Tenants separates tenants with commas"
                ),
                format!("{token}/Tenants/Tenant[2]: Tenant must not start or end with whitespace"),
            ]
        );
    }
}
