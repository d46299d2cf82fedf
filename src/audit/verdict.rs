//! Reading the engine's verdict from the first bytes of its answer (reference §4.4, §4.6).
//!
//! [`Sniffer`] is fed the response body's frames as they pass to the client and keeps a copy of at
//! most [`SNIFF_BYTES`] of them; it never holds a frame back. The engine writes the parent object's
//! fields (`object`, `scanResult`, `detectionName`, `name`, `reason`) before the list of sub-objects,
//! so the verdict of an archive with thousands of entries is still in the first few KiB.

use std::fmt;

use std::borrow::Cow;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::ScanResult;

/// The most of a response body that is copied to read its verdict. The parent object's fields of
/// a v3 answer (a path of PATH_MAX included) fit; what follows is only sub-object detail.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// The longest detection name, reason or object kept from an answer; longer ones are cut (on a
/// character boundary) so an odd engine answer cannot make an audit line arbitrarily long.
pub const MAX_FIELD_CHARS: usize = 1024;

/// Which protocol the answer is in: fixed by the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `/api/v3.x/…`: a JSON object.
    Json,
    /// `/scanfile`, `/scanmemory`, `/checkurl`: one text line.
    Text,
}

/// What the answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The bounded result, the metric label.
    pub result: ScanResult,
    /// `detectionName` (v3) or the word after `DETECT` (v1).
    pub detection: Option<String>,
    /// Why the object was not scanned: v3.1 `reason`, or the text in `NON_SCANNED (…)`.
    pub reason: Option<String>,
    /// The object as the engine names it: v3 `object` (scanfile path), `name` (v3.1 scanmemory) or
    /// `url` (checkurl). `object` of a scanmemory answer is the literal `memory` and is left out.
    pub object: Option<String>,
}

impl Verdict {
    fn only(result: ScanResult) -> Verdict {
        Verdict {
            result,
            detection: None,
            reason: None,
            object: None,
        }
    }
}

/// Collects the head of one response body and reads the verdict from it.
#[derive(Debug)]
pub struct Sniffer {
    wire: Wire,
    head: Vec<u8>,
    /// More than [`SNIFF_BYTES`] arrived: the answer is longer than what is read.
    capped: bool,
}

impl Sniffer {
    /// A sniffer for an answer in `wire` form.
    pub fn new(wire: Wire) -> Sniffer {
        Sniffer {
            wire,
            head: Vec::new(),
            capped: false,
        }
    }

    /// The protocol the answer is read in.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Takes note of one data frame. Returns true once nothing more is needed (the cap is
    /// reached), so the caller can stop feeding.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        let room = SNIFF_BYTES - self.head.len();
        if data.len() > room {
            self.capped = true;
        }
        self.head.extend_from_slice(&data[..data.len().min(room)]);
        self.capped
    }

    /// The verdict. `complete` is whether the body ended normally; a body that broke off, or that
    /// the client abandoned, is only read if more than [`SNIFF_BYTES`] had arrived.
    pub fn verdict(&self, complete: bool) -> Verdict {
        if !complete && !self.capped {
            return Verdict::only(ScanResult::Unparsed);
        }
        match self.wire {
            Wire::Json => read_json(&self.head, self.capped),
            Wire::Text => read_text(&self.head),
        }
    }

    /// Reads a whole body at once (a body that arrived in one frame), without copying it.
    pub fn verdict_of(wire: Wire, body: &[u8]) -> Verdict {
        let mut s = Sniffer::new(wire);
        if body.len() > SNIFF_BYTES {
            s.capped = true;
            return s.verdict_head(&body[..SNIFF_BYTES]);
        }
        s.verdict_head(body)
    }

    fn verdict_head(&self, head: &[u8]) -> Verdict {
        match self.wire {
            Wire::Json => read_json(head, self.capped),
            Wire::Text => read_text(head),
        }
    }
}

/// The top-level fields of a v3 answer that matter, captured as the parser meets them so that a
/// head cut off after them still yields them. Borrowed from the head unless the JSON escaped them.
#[derive(Debug, Default)]
struct Fields<'de> {
    scan_result: Option<Cow<'de, str>>,
    detection: Option<Cow<'de, str>>,
    reason: Option<Cow<'de, str>>,
    object: Option<Cow<'de, str>>,
    name: Option<Cow<'de, str>>,
    url: Option<Cow<'de, str>>,
    error: bool,
}

/// A top-level key, matched without allocating.
enum Key {
    ScanResult,
    Detection,
    Reason,
    Object,
    Name,
    Url,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "scanResult" => Key::ScanResult,
                    "detectionName" => Key::Detection,
                    "reason" => Key::Reason,
                    "object" => Key::Object,
                    "name" => Key::Name,
                    "url" => Key::Url,
                    "error" => Key::Error,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A string value, borrowed from the input when it holds no escape.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

struct Capture<'a, 'de>(&'a mut Fields<'de>);

impl<'de> DeserializeSeed<'de> for Capture<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Capture<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::ScanResult => &mut self.0.scan_result,
                Key::Detection => &mut self.0.detection,
                Key::Reason => &mut self.0.reason,
                Key::Object => &mut self.0.object,
                Key::Name => &mut self.0.name,
                Key::Url => &mut self.0.url,
                Key::Error | Key::Other => {
                    self.0.error |= matches!(key, Key::Error);
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // A second `scanResult` is not the engine's: keep the first, as a client reading
            // top-down would.
            let value = map.next_value::<Option<Text<'de>>>()?;
            if slot.is_none() {
                *slot = value.map(|t| t.0);
            }
        }
        Ok(())
    }
}

/// `text`, cut to [`MAX_FIELD_CHARS`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        Some((i, _)) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// A v3 answer. A head that ends mid-document counts only when the answer was longer than the cap
/// (`capped`): an answer that ended mid-document is broken, whatever it said first.
fn read_json(head: &[u8], capped: bool) -> Verdict {
    let mut fields = Fields::default();
    let mut de = serde_json::Deserializer::from_slice(head);
    let parsed = Capture(&mut fields)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    let readable = match parsed {
        Ok(()) => true,
        Err(e) => capped && e.is_eof(),
    };
    if !readable {
        return Verdict::only(ScanResult::Unparsed);
    }
    let Some(word) = fields.scan_result else {
        let result = match fields.error {
            true => ScanResult::Error,
            false => ScanResult::Unparsed,
        };
        return Verdict::only(result);
    };
    let (result, folded_reason) = ScanResult::from_word(&word);
    if !result.is_detection() && result != ScanResult::NonScanned {
        // Nothing to write a line about: the common, clean case allocates nothing.
        return Verdict::only(result);
    }
    let object = match (fields.name, fields.url, fields.object) {
        (Some(name), _, _) => Some(name),
        (None, Some(url), _) => Some(url),
        (None, None, Some(object)) if object != "memory" => Some(object),
        _ => None,
    };
    Verdict {
        detection: (fields.detection)
            .filter(|_| result.is_detection())
            .map(|d| bounded(&d)),
        reason: (fields.reason.map(|r| bounded(&r)))
            .or(folded_reason)
            .filter(|_| result == ScanResult::NonScanned),
        result,
        object: object.map(|o| bounded(&o)),
    }
}

/// A v1 answer: its first line, `CLEAN`, `DETECT <name>`, `NON_SCANNED (<REASON>)`,
/// `SERVER_ERROR`, each maybe followed by ` AND CONTAINS OFFICE MACRO`.
fn read_text(head: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(head) else {
        return Verdict::only(ScanResult::Unparsed);
    };
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    let line = line
        .strip_suffix(" AND CONTAINS OFFICE MACRO")
        .unwrap_or(line);
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (result, reason) = match word {
        "DETECT" | "DISINFECTED" | "DELETED" if !rest.is_empty() => {
            let (result, _) = ScanResult::from_word(word);
            return Verdict {
                result,
                detection: Some(bounded(rest)),
                reason: None,
                object: None,
            };
        }
        "NON_SCANNED" => ScanResult::from_word(line),
        "CLEAN" | "SERVER_ERROR" if rest.is_empty() => ScanResult::from_word(word),
        _ => (ScanResult::Unparsed, None),
    };
    Verdict {
        result,
        detection: None,
        reason,
        object: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Verdict {
        Sniffer::verdict_of(Wire::Json, body.as_bytes())
    }

    fn text(body: &str) -> Verdict {
        Sniffer::verdict_of(Wire::Text, body.as_bytes())
    }

    #[test]
    fn v3_answers_give_result_detection_reason_and_object() {
        let v = json(
            r#"{"object":"\/scan\/eicar","scanResult":"DETECT","detectionName":"EICAR-Test-File","containsOfficeMacro":"false"}"#,
        );
        assert_eq!(v.result, ScanResult::Detect);
        assert_eq!(v.detection.as_deref(), Some("EICAR-Test-File"));
        assert_eq!(v.object.as_deref(), Some("/scan/eicar"));
        assert_eq!(v.reason, None);

        let v = json(r#"{"object":"memory","scanResult":"CLEAN"}"#);
        assert_eq!(v, Verdict::only(ScanResult::Clean));

        let v = json(
            r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File","name":"report.pdf"}"#,
        );
        assert_eq!(v.object.as_deref(), Some("report.pdf"));

        let v = json(
            r#"{"url":"http://phish.example/x","scanResult":"DETECT","detectionName":"PHISHING_URL"}"#,
        );
        assert_eq!(v.object.as_deref(), Some("http://phish.example/x"));
        assert_eq!(v.detection.as_deref(), Some("PHISHING_URL"));
    }

    #[test]
    fn non_scanned_keeps_its_reason_in_either_spelling() {
        let v = json(r#"{"object":"memory","scanResult":"NON_SCANNED (PASSWORD PROTECTED)"}"#);
        assert_eq!(v.result, ScanResult::NonScanned);
        assert_eq!(v.reason.as_deref(), Some("PASSWORD PROTECTED"));
        let v = json(r#"{"object":"memory","scanResult":"NON_SCANNED","reason":"Corrupted"}"#);
        assert_eq!(v.result, ScanResult::NonScanned);
        assert_eq!(v.reason.as_deref(), Some("Corrupted"));
        let v = json(r#"{"object":"memory","scanResult":"NON_SCANNED"}"#);
        assert_eq!((v.result, v.reason), (ScanResult::NonScanned, None));
        let v = text("NON_SCANNED (CORRUPTED)");
        assert_eq!(v.result, ScanResult::NonScanned);
        assert_eq!(v.reason.as_deref(), Some("CORRUPTED"));
    }

    #[test]
    fn every_documented_result_word_has_its_label() {
        for (word, result) in [
            ("CLEAN", ScanResult::Clean),
            ("DETECT", ScanResult::Detect),
            ("DISINFECTED", ScanResult::Disinfected),
            ("DELETED", ScanResult::Deleted),
            ("NON_SCANNED", ScanResult::NonScanned),
            ("SERVER_ERROR", ScanResult::ServerError),
            ("SOMETHING_NEW", ScanResult::Unknown),
        ] {
            let v = json(&format!(r#"{{"object":"memory","scanResult":"{word}"}}"#));
            assert_eq!(v.result, result, "{word}");
        }
    }

    #[test]
    fn v1_lines() {
        let v = text("DETECT EICAR-Test-File");
        assert_eq!(v.result, ScanResult::Detect);
        assert_eq!(v.detection.as_deref(), Some("EICAR-Test-File"));
        let v = text("DETECT EICAR-Test-File AND CONTAINS OFFICE MACRO\r\n");
        assert_eq!(v.detection.as_deref(), Some("EICAR-Test-File"));
        assert_eq!(text("CLEAN").result, ScanResult::Clean);
        assert_eq!(text("CLEAN\n").result, ScanResult::Clean);
        assert_eq!(
            text("CLEAN AND CONTAINS OFFICE MACRO").result,
            ScanResult::Clean
        );
        assert_eq!(text("SERVER_ERROR").result, ScanResult::ServerError);
        assert_eq!(text("DETECT").result, ScanResult::Unparsed);
        assert_eq!(text("CLEANISH").result, ScanResult::Unparsed);
        assert_eq!(text("").result, ScanResult::Unparsed);
        assert_eq!(text("KAV SDK version: 8.8").result, ScanResult::Unparsed);
        assert_eq!(
            Sniffer::verdict_of(Wire::Text, b"DETECT \xff").result,
            ScanResult::Unparsed
        );
    }

    #[test]
    fn what_is_not_a_verdict_is_unparsed_or_an_error() {
        assert_eq!(json("<html>busy</html>").result, ScanResult::Unparsed);
        assert_eq!(json("").result, ScanResult::Unparsed);
        assert_eq!(
            json(r#"{"KAVSDKVersion":"8"}"#).result,
            ScanResult::Unparsed
        );
        assert_eq!(json(r#"["CLEAN"]"#).result, ScanResult::Unparsed);
        assert_eq!(
            json(r#"{"scanResult":"CLEAN"} trailing"#).result,
            ScanResult::Unparsed
        );
        assert_eq!(json(r#"{"scanResult":7}"#).result, ScanResult::Unparsed);
        assert_eq!(
            json(r#"{"error":"invalid object"}"#).result,
            ScanResult::Error
        );
        // Cut off: the verdict came first, but the answer is broken.
        assert_eq!(
            json(r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR"#).result,
            ScanResult::Unparsed
        );
    }

    #[test]
    fn a_long_answer_is_read_from_its_head_only() {
        let subs: Vec<String> = (0..2000)
            .map(|i| format!(r#"{{"object":"/a.tar//f{i}","scanResult":"CLEAN"}}"#))
            .collect();
        let body = format!(
            r#"{{"object":"/a.tar","scanResult":"DETECT","detectionName":"multiple","subObjectsScanResults":[{}]}}"#,
            subs.join(",")
        );
        assert!(body.len() > 4 * SNIFF_BYTES);
        let mut s = Sniffer::new(Wire::Json);
        let mut done = false;
        for chunk in body.as_bytes().chunks(1000) {
            if done {
                break;
            }
            done = s.feed(chunk);
        }
        assert!(done, "the sniffer stops asking after the cap");
        assert_eq!(s.head.len(), SNIFF_BYTES);
        // Complete or not, the head held the verdict.
        for complete in [true, false] {
            let v = s.verdict(complete);
            assert_eq!(v.result, ScanResult::Detect);
            assert_eq!(v.detection.as_deref(), Some("multiple"));
            assert_eq!(v.object.as_deref(), Some("/a.tar"));
        }
        assert_eq!(json(&body).result, ScanResult::Detect);
    }

    #[test]
    fn frames_are_joined_and_an_abandoned_short_answer_is_unparsed() {
        let body =
            br#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File"}"#;
        let mut s = Sniffer::new(Wire::Json);
        for chunk in body.chunks(7) {
            assert!(!s.feed(chunk));
        }
        assert_eq!(s.verdict(true).result, ScanResult::Detect);
        assert_eq!(s.verdict(false).result, ScanResult::Unparsed);
    }

    #[test]
    fn fields_are_bounded() {
        let long = "x".repeat(5000);
        let v = json(&format!(
            r#"{{"object":"memory","scanResult":"DETECT","detectionName":"{long}"}}"#
        ));
        assert_eq!(v.detection.map(|d| d.len()), Some(MAX_FIELD_CHARS));
        let v = text(&format!("DETECT é{long}"));
        assert_eq!(
            v.detection.map(|d| d.chars().count()),
            Some(MAX_FIELD_CHARS)
        );
    }
}
