//! `scanfile`'s gateway-side allow-list (`GatewaySettings/ScanningPaths`): the object a request body
//! names, and whether it lies under a listed path.
//!
//! The check is lexical, as the engine's own `ScanningPaths` rule is: `.` and repeated `/` are
//! dropped, while `..`, control characters (NUL among them), surrounding whitespace and relative
//! paths are refused rather than interpreted. Symlinks below a listed folder are the engine's to
//! follow. Anything scangate cannot read exactly as the engine would (a v2 multipart body, JSON that
//! names `object` twice or in another case) is refused too.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};

use super::policy::Api;

/// Largest `scanfile` body scangate reads to find the object: a path and the optional fields of
/// reference §4.3 fit many times over. A larger one gets 413 while `ScanningPaths` is set.
pub const MAX_SCANFILE_BODY_BYTES: u64 = 64 * 1024;

/// `path` lexically normalised: absolute, without `.` or empty segments. The error is the rule it
/// breaks, worded for a config error or a log line.
pub fn normalise(path: &str) -> Result<PathBuf, &'static str> {
    if path.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    if path.trim() != path {
        return Err("must not start or end with whitespace");
    }
    if !path.starts_with('/') {
        return Err("must be an absolute path");
    }
    let mut normal = PathBuf::from("/");
    for part in Path::new(path).components() {
        match part {
            Component::Normal(name) => normal.push(name),
            Component::ParentDir => return Err("must not contain `..`"),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(normal)
}

/// Whether the object a `scanfile` body names lies under one of `allowed` (each [`normalise`]d).
/// `multipart` is whether the request's Content-Type is `multipart/*` (KAV protocol v2).
pub fn body_allowed(allowed: &[PathBuf], api: Api, body: &[u8], multipart: bool) -> bool {
    let object = match api {
        Api::V3 => v3_object(body),
        // A v2 multipart body names its object in a part; reading it like the engine is not worth
        // the risk of reading it differently.
        Api::V1 if multipart => None,
        Api::V1 => v1_object(body).map(str::to_owned),
    };
    object.is_some_and(|path| under(allowed, &path))
}

/// Whether `requested` lies under one of `allowed`, component by component (`/data` covers
/// `/data/x`, not `/database`).
fn under(allowed: &[PathBuf], requested: &str) -> bool {
    normalise(requested).is_ok_and(|path| allowed.iter().any(|root| path.starts_with(root)))
}

/// v1: the body is the path. One trailing line break (what `echo` adds) is dropped; any other
/// whitespace or control character is left in for [`normalise`] to refuse, so an engine that trims
/// and one that does not open the same file.
fn v1_object(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    Some(text.strip_suffix('\r').unwrap_or(text))
}

/// v3: the top-level `object` string of a JSON object.
fn v3_object(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Object>(body).ok()?.0
}

/// The `object` field of a v3 body, read by a visitor so that a second `object` (or an `Object`)
/// is an error instead of silently winning or losing, as it would in a map.
struct Object(Option<String>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut object = None;
        while let Some(key) = map.next_key::<String>()? {
            if !key.eq_ignore_ascii_case("object") {
                map.next_value::<IgnoredAny>()?;
            } else if key != "object" || object.is_some() {
                return Err(A::Error::custom("ambiguous object field"));
            } else {
                object = Some(map.next_value::<String>()?);
            }
        }
        Ok(Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(|p| normalise(p).unwrap()).collect()
    }

    #[test]
    fn normalises_lexically_and_refuses_what_it_cannot_read_safely() {
        assert_eq!(normalise("/"), Ok(PathBuf::from("/")));
        assert_eq!(
            normalise("/mnt//to_scan/./x/"),
            Ok(PathBuf::from("/mnt/to_scan/x"))
        );
        assert_eq!(normalise("/a/.../b"), Ok(PathBuf::from("/a/.../b")));
        assert_eq!(normalise("/a/../b"), Err("must not contain `..`"));
        assert_eq!(normalise("/a/.."), Err("must not contain `..`"));
        assert_eq!(normalise("a/b"), Err("must be an absolute path"));
        assert_eq!(normalise(""), Err("must be an absolute path"));
        assert_eq!(normalise("./a"), Err("must be an absolute path"));
        assert_eq!(
            normalise("/a\0/b"),
            Err("must not contain control characters")
        );
        assert_eq!(
            normalise("/a\n"),
            Err("must not contain control characters")
        );
        assert_eq!(
            normalise("/a "),
            Err("must not start or end with whitespace")
        );
        assert_eq!(
            normalise(" /a"),
            Err("must not start or end with whitespace")
        );
        assert_eq!(normalise("/a b"), Ok(PathBuf::from("/a b")));
    }

    #[test]
    fn paths_lie_under_a_listed_path_component_by_component() {
        let allowed = list(&["/mnt/to_scan", "/srv/one.bin"]);
        assert!(under(&allowed, "/mnt/to_scan"));
        assert!(under(&allowed, "/mnt/to_scan/a/b"));
        assert!(under(&allowed, "/mnt//to_scan/./a"));
        assert!(under(&allowed, "/srv/one.bin"));
        assert!(!under(&allowed, "/mnt/to_scanx"));
        assert!(!under(&allowed, "/mnt"));
        assert!(!under(&allowed, "/srv/one.bin2"));
        assert!(!under(&allowed, "/mnt/to_scan/../../etc/shadow"));
        assert!(!under(&allowed, "/etc/shadow"));
        assert!(!under(&allowed, "mnt/to_scan/a"));
        assert!(!under(&[], "/mnt/to_scan/a"));
        assert!(under(&list(&["/"]), "/etc/shadow"));
    }

    #[test]
    fn v3_bodies_name_their_object_once() {
        let allowed = list(&["/scan"]);
        let v3 = |body: &str| body_allowed(&allowed, Api::V3, body.as_bytes(), false);
        assert!(v3(r#"{"object":"/scan/a"}"#));
        assert!(v3(
            r#"{"timeout":"10000","object":"\/scan\/a","omitCleanSubobjectResults":true}"#
        ));
        assert!(v3(
            r#" {"object":"/scan/\u0061", "nested":{"object":"/etc/shadow"}} "#
        ));
        assert!(!v3(r#"{"object":"/etc/shadow"}"#));
        assert!(!v3(r#"{"object":"/scan/../etc/shadow"}"#));
        assert!(!v3(r#"{"object":"/scan/a\u0000/b"}"#));
        assert!(!v3(r#"{"object":"scan/a"}"#));
        assert!(!v3(r#"{"object":"/scan/a","object":"/etc/shadow"}"#));
        assert!(!v3(r#"{"object":"/scan/a","Object":"/etc/shadow"}"#));
        assert!(!v3(r#"{"OBJECT":"/scan/a"}"#));
        assert!(!v3(r#"{"object":["/scan/a"]}"#));
        assert!(!v3(r#"{"timeout":"1"}"#));
        assert!(!v3(r#"["/scan/a"]"#));
        assert!(!v3(r#"{"object":"/scan/a"} trailing"#));
        assert!(!v3(""));
        assert!(!v3("\u{feff}{\"object\":\"/scan/a\"}"));
    }

    #[test]
    fn the_read_cap_fits_a_whole_v3_body_and_refusals_say_why() {
        // A path of PATH_MAX (4096) and 16 KiB each of request and response headers, escaped.
        let body = serde_json::json!({
            "timeout": "10000",
            "object": format!("/scan/{}", "a".repeat(4090)),
            "requestHeaders": "H: v\r\n".repeat(16 * 1024 / 7),
            "responseHeaders": "H: v\r\n".repeat(16 * 1024 / 7),
        })
        .to_string();
        assert!(
            body.len() as u64 <= MAX_SCANFILE_BODY_BYTES,
            "{}",
            body.len()
        );
        assert!(body_allowed(
            &list(&["/scan"]),
            Api::V3,
            body.as_bytes(),
            false
        ));

        let e = serde_json::from_slice::<Object>(b"1").err().unwrap();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
        let e = serde_json::from_slice::<Object>(br#"{"object":"/a","object":"/b"}"#);
        assert!(e
            .err()
            .unwrap()
            .to_string()
            .contains("ambiguous object field"));
    }

    #[test]
    fn v1_bodies_are_the_path() {
        let allowed = list(&["/scan"]);
        let v1 = |body: &[u8]| body_allowed(&allowed, Api::V1, body, false);
        assert!(v1(b"/scan/a"));
        assert!(v1(b"/scan/a\n"));
        assert!(v1(b"/scan/a\r\n"));
        assert!(!v1(b"/scan/a\n\n"));
        assert!(!v1(b"/scan/..\n\n"));
        assert!(!v1(b" /etc/shadow"));
        assert!(!v1(b"/scan/.. "));
        assert!(!v1(b"/etc/shadow\n"));
        assert!(!v1(b"/scan/\xff"));
        assert!(!v1(b""));
        assert!(!body_allowed(&allowed, Api::V1, b"/scan/a", true));
    }
}
