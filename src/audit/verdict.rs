//! Reading the engine's verdict from the first bytes of its answer (reference §4.4, §4.6).
//!
//! [`Sniffer`] is fed the response body's frames as they pass to the client and keeps a copy of at
//! most [`SNIFF_BYTES`] of them; it never holds a frame back. The engine writes the parent object's
//! fields (`object`, `scanResult`, `detectionName`, `name`, `reason`) before the list of sub-objects,
//! so the verdict of an archive with thousands of entries is still in the first few KiB.

use std::borrow::Cow;

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

/// A string value as it stands in the answer, with its quotes; decoded only when needed.
#[derive(Debug, Clone, Copy)]
struct Raw<'a> {
    quoted: &'a [u8],
    escaped: bool,
}

impl<'a> Raw<'a> {
    /// The string's text: borrowed unless it holds an escape. `None` if it is not valid.
    fn text(self) -> Option<Cow<'a, str>> {
        match self.escaped {
            false => std::str::from_utf8(&self.quoted[1..self.quoted.len() - 1])
                .ok()
                .map(Cow::Borrowed),
            true => serde_json::from_slice::<String>(self.quoted)
                .ok()
                .map(Cow::Owned),
        }
    }
}

/// The top-level string fields of a v3 answer that matter, as met in order (the first of a
/// repeated key wins, as for a client reading top-down).
#[derive(Debug, Default)]
struct Fields<'a> {
    scan_result: Option<Raw<'a>>,
    detection: Option<Raw<'a>>,
    reason: Option<Raw<'a>>,
    object: Option<Raw<'a>>,
    name: Option<Raw<'a>>,
    url: Option<Raw<'a>>,
    error: bool,
}

/// Why a scan stopped.
enum Stop {
    /// The input ended: the answer was cut off (or is longer than what was read).
    Eof,
    /// Not a JSON object as the engine writes one.
    Bad,
}

/// Reads the top level of a JSON object structurally: strings (with escapes), nesting, commas and
/// colons are followed; numbers and literals are skipped, not checked. The engine's answers are a
/// flat object of strings and one array of sub-objects, and this reads one in a single pass
/// without allocating (serde_json spent about 1,400 instructions on a 41-byte CLEAN answer; see
/// benches/RESULTS.md, 2026-12-02).
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, Stop> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Stop::Eof)
    }

    fn expect(&mut self, c: u8) -> Result<(), Stop> {
        match self.peek()? {
            x if x == c => {
                self.i += 1;
                Ok(())
            }
            _ => Err(Stop::Bad),
        }
    }

    /// A string starting at the current `"`.
    fn string(&mut self) -> Result<Raw<'a>, Stop> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            match *self.b.get(self.i).ok_or(Stop::Eof)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                c if c < 0x20 => return Err(Stop::Bad),
                _ => self.i += 1,
            }
        }
        self.i += 1;
        Ok(Raw {
            quoted: &self.b[start..self.i],
            escaped,
        })
    }

    /// Skips a value that is not a string at the top level: an object or array (with the strings
    /// in it), or a number or literal.
    fn skip(&mut self) -> Result<(), Stop> {
        let mut depth = 0usize;
        loop {
            let c = *self.b.get(self.i).ok_or(Stop::Eof)?;
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return Ok(()),
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                b',' if depth == 0 => return Ok(()),
                b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return Ok(()),
                _ => {}
            }
            self.i += 1;
        }
    }

    /// The whole object, its fields into `f`.
    fn object(&mut self, f: &mut Fields<'a>) -> Result<(), Stop> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return Err(Stop::Bad);
                }
                let key = self.string()?;
                self.expect(b':')?;
                let value = match self.peek()? {
                    b'"' => Some(self.string()?),
                    _ => {
                        self.skip()?;
                        None
                    }
                };
                let slot = match &key.quoted[1..key.quoted.len() - 1] {
                    b"scanResult" => &mut f.scan_result,
                    b"detectionName" => &mut f.detection,
                    b"reason" => &mut f.reason,
                    b"object" => &mut f.object,
                    b"name" => &mut f.name,
                    b"url" => &mut f.url,
                    b"error" => {
                        f.error = true;
                        &mut None
                    }
                    _ => &mut None,
                };
                if slot.is_none() {
                    *slot = value;
                }
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Stop::Bad),
                }
            }
        }
        self.ws();
        match self.i == self.b.len() {
            true => Ok(()),
            false => Err(Stop::Bad),
        }
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
    let readable = match (Scanner { b: head, i: 0 }).object(&mut fields) {
        Ok(()) => true,
        Err(Stop::Eof) => capped,
        Err(Stop::Bad) => false,
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
    let Some(word) = word.text() else {
        return Verdict::only(ScanResult::Unparsed);
    };
    let (result, folded_reason) = ScanResult::from_word(&word);
    if !result.is_detection() && result != ScanResult::NonScanned {
        // Nothing to write a line about: the common, clean case allocates nothing.
        return Verdict::only(result);
    }
    let text = |raw: Option<Raw<'_>>| raw.and_then(Raw::text).map(|t| bounded(&t));
    let object = match (text(fields.name), text(fields.url), text(fields.object)) {
        (Some(name), _, _) => Some(name),
        (None, Some(url), _) => Some(url),
        (None, None, Some(object)) if object != "memory" => Some(object),
        _ => None,
    };
    Verdict {
        detection: text(fields.detection).filter(|_| result.is_detection()),
        reason: (text(fields.reason).or(folded_reason))
            .filter(|_| result == ScanResult::NonScanned),
        result,
        object,
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
    fn the_scanner_follows_json_structure() {
        let clean = |body: &str| json(body).result;
        assert_eq!(
            clean(" {\n \"n\" : -1.5e3 , \"t\":true,\"z\":null, \"scanResult\" : \"CLEAN\" }\r\n"),
            ScanResult::Clean
        );
        assert_eq!(
            clean(r#"{"x":{"y":"}\"]"},"a":[1,[2,{"scanResult":"DETECT"}]],"scanResult":"CLEAN"}"#),
            ScanResult::Clean,
            "nested keys are not the top level's"
        );
        assert_eq!(clean(r#"{"scanResult":"CLEAN",}"#), ScanResult::Unparsed);
        assert_eq!(clean(r#"{"scanResult" "CLEAN"}"#), ScanResult::Unparsed);
        // Whitespace ends a skipped number at the top level only, not inside an array.
        assert_eq!(
            clean(r#"{"a":[1, 2],"scanResult":"CLEAN"}"#),
            ScanResult::Clean
        );
        assert_eq!(
            clean(r#"{"scanResult":"CLEAN","n":1 "x":2}"#),
            ScanResult::Unparsed
        );
        // Where a `{` or a `:` must stand, nothing else stands in for it.
        assert_eq!(clean(r#"{"scanResult"="CLEAN"}"#), ScanResult::Unparsed);
        assert_eq!(clean(r#"("scanResult":"CLEAN"}"#), ScanResult::Unparsed);
        assert_eq!(
            clean(r#"{"scanResult":"CLEAN" "x":1}"#),
            ScanResult::Unparsed
        );
        assert_eq!(clean(r#"{"scanResult":"CL\u0045AN"}"#), ScanResult::Clean);
        assert_eq!(clean("{\"scanResult\":\"CLE\nAN\"}"), ScanResult::Unparsed);
        assert_eq!(clean(r#"{"scanResult":"CLEAN"}}"#), ScanResult::Unparsed);
        assert_eq!(clean("{}"), ScanResult::Unparsed);
        assert_eq!(clean(r#"{"scanResult":null}"#), ScanResult::Unparsed);
        assert_eq!(
            clean(r#"{"scanResult":"CLEAN","scanResult":"DETECT"}"#),
            ScanResult::Clean
        );
        assert_eq!(
            Sniffer::verdict_of(Wire::Json, b"{\"scanResult\":\"\xff\"}").result,
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
