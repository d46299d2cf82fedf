//! The object a scan names, for the audit line: the path for `scanfile`, the URL's host for
//! `checkurl`, the `name` of a v3.1 `scanmemory`. Read only from a request body scangate already
//! holds (a `scanfile` body checked against `ScanningPaths`, a small scan kept for a retry); a
//! streamed body is never read for it, and then the engine's answer names the object instead.

use std::borrow::Cow;

use serde::Deserialize;

use super::{ScanCall, ScanOp, MAX_FIELD_CHARS};

/// The fields of a v3 request body that name its object. Borrowed: a kept `scanmemory` body's
/// Base64 `object` is skipped, not copied.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// The object named by a whole request `body` of `call`, if it names one. `multipart` is a v2
/// multipart body, whose object sits in a part and is not read.
pub fn request_object(call: ScanCall, body: &[u8], multipart: bool) -> Option<String> {
    let object = match (call.version, call.op) {
        ("v1", _) if multipart => return None,
        ("v1", ScanOp::ScanMemory) => return None,
        ("v1", ScanOp::ScanFile) => v1_line(body)?.to_owned(),
        ("v1", ScanOp::CheckUrl) => url_host(v1_line(body)?.trim())?,
        (_, op) => {
            let fields: Fields<'_> = serde_json::from_slice(body).ok()?;
            match op {
                ScanOp::ScanFile => fields.object?.into_owned(),
                ScanOp::CheckUrl => url_host(&fields.url?)?,
                ScanOp::ScanMemory => fields.name?.into_owned(),
            }
        }
    };
    Some(bounded(object))
}

/// The host of `url` (`http://user@Host:8080/x` → `host`), or `None` when it is not a URL with
/// one. The path and query may carry tokens or personal data; the host says where the client
/// was going, which is what a security team looks for.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.host_str().map(str::to_owned)
}

/// A v1 body: the object, without one trailing line break.
fn v1_line(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    (!text.is_empty()).then_some(text)
}

fn bounded(mut text: String) -> String {
    if let Some((i, _)) = text.char_indices().nth(MAX_FIELD_CHARS) {
        text.truncate(i);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, body: &str) -> Option<String> {
        request_object(ScanCall::of(path).unwrap(), body.as_bytes(), false)
    }

    #[test]
    fn each_call_names_its_object() {
        assert_eq!(
            obj("/api/v3.0/scanfile", r#"{"object":"\/scan\/a b"}"#).as_deref(),
            Some("/scan/a b")
        );
        assert_eq!(obj("/scanfile", "/scan/a\r\n").as_deref(), Some("/scan/a"));
        assert_eq!(
            obj(
                "/api/v3.0/checkurl",
                r#"{"url":"https://User:pw@Phish.Example:8443/login?token=s3cret"}"#
            )
            .as_deref(),
            Some("phish.example")
        );
        assert_eq!(
            obj("/checkurl", "http://malware.example/x?k=v\n").as_deref(),
            Some("malware.example")
        );
        assert_eq!(
            obj(
                "/api/v3.1/scanmemory",
                r#"{"object":"WDVPIVAlQEFQ","name":"invoice.pdf"}"#
            )
            .as_deref(),
            Some("invoice.pdf")
        );
    }

    #[test]
    fn content_is_never_an_object() {
        assert_eq!(
            obj("/api/v3.0/scanmemory", r#"{"object":"WDVPIVAlQEFQ"}"#),
            None
        );
        assert_eq!(
            obj("/api/v3.1/scanmemory", r#"{"object":"WDVPIVAlQEFQ"}"#),
            None
        );
        assert_eq!(obj("/scanmemory", "X5O!P%@AP"), None);
    }

    #[test]
    fn what_cannot_be_read_names_nothing() {
        assert_eq!(obj("/api/v3.0/scanfile", "not json"), None);
        assert_eq!(obj("/api/v3.0/scanfile", r#"{"object":7}"#), None);
        assert_eq!(
            obj("/api/v3.0/checkurl", r#"{"url":"[from:a@b.example]"}"#),
            None
        );
        assert_eq!(obj("/api/v3.0/checkurl", r#"{"url":"not a url"}"#), None);
        assert_eq!(obj("/scanfile", ""), None);
        assert_eq!(obj("/scanfile", "\u{0}\u{ff}"), Some("\u{0}\u{ff}".into()));
        assert_eq!(
            request_object(ScanCall::of("/scanfile").unwrap(), b"/scan/a", true),
            None
        );
        assert_eq!(
            request_object(ScanCall::of("/scanfile").unwrap(), b"/scan/\xff", false),
            None
        );
    }
}
