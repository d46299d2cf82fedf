//! Scan audit (issue 18): who scanned what, and what the engine found, per credential.
//!
//! scangate is the one hop where the caller's identity and the engine's verdict both pass. This
//! module is the vocabulary of that: it imports nothing else of scangate's, and
//! [`crate::proxy::audit`] wires it into the request path.
//!
//! - [`ScanCall`]: which KAV scan call a request path is (`scanmemory`, `scanfile`, `checkurl`;
//!   v3.0, v3.1 or v1). Only those are read; every other path pays nothing.
//! - `verdict`: the verdict, read from at most [`SNIFF_BYTES`] of the answer as it streams past.
//! - `object`: what was scanned, from what the request already had in memory or the answer named.
//! - `counters`: the engine's `getstatistics` counters, per credential.
//! - `recent`: the console's bounded list of the latest detections and counts per credential.

mod counters;
mod object;
mod recent;
mod verdict;

pub use counters::{ScanCounters, StatisticsSnapshot};
pub use object::{request_object, url_host};
pub use recent::{Detection, Recent, DAY_HOURS};
pub use verdict::{Sniffer, Verdict, Wire, MAX_FIELD_CHARS, SNIFF_BYTES};

/// The `result` label of `scangate_scan_results_total`: a fixed set, whatever the engine says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanResult {
    /// `CLEAN`.
    Clean,
    /// `DETECT`: something was found.
    Detect,
    /// `DISINFECTED` (modes that clean).
    Disinfected,
    /// `DELETED` (modes that delete).
    Deleted,
    /// `NON_SCANNED`, whatever the reason.
    NonScanned,
    /// `SERVER_ERROR`: the engine failed on this object.
    ServerError,
    /// A `scanResult` word the reference does not list (a newer engine).
    Unknown,
    /// `{"error": …}` or a non-2xx status: the engine refused the request, no object was scanned.
    Error,
    /// No verdict could be read: not the engine's format, or cut off.
    Unparsed,
}

impl ScanResult {
    /// Every value, in label order.
    pub const ALL: [ScanResult; 9] = [
        ScanResult::Clean,
        ScanResult::Detect,
        ScanResult::Disinfected,
        ScanResult::Deleted,
        ScanResult::NonScanned,
        ScanResult::ServerError,
        ScanResult::Unknown,
        ScanResult::Error,
        ScanResult::Unparsed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanResult::Clean => "clean",
            ScanResult::Detect => "detect",
            ScanResult::Disinfected => "disinfected",
            ScanResult::Deleted => "deleted",
            ScanResult::NonScanned => "non_scanned",
            ScanResult::ServerError => "server_error",
            ScanResult::Unknown => "unknown",
            ScanResult::Error => "error",
            ScanResult::Unparsed => "unparsed",
        }
    }

    /// Index in [`ScanResult::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Something was found in the object: the engine's `infected_requests` (DETECT, DISINFECTED,
    /// DELETED), and what `scangate_detections_total` and the audit log count.
    pub fn is_detection(self) -> bool {
        matches!(
            self,
            ScanResult::Detect | ScanResult::Disinfected | ScanResult::Deleted
        )
    }

    /// The result a `scanResult` word stands for, and the reason folded into a v3.0 or v1
    /// `NON_SCANNED (REASON)`.
    pub fn from_word(word: &str) -> (ScanResult, Option<String>) {
        let result = match word {
            "CLEAN" => ScanResult::Clean,
            "DETECT" => ScanResult::Detect,
            "DISINFECTED" => ScanResult::Disinfected,
            "DELETED" => ScanResult::Deleted,
            "SERVER_ERROR" => ScanResult::ServerError,
            "NON_SCANNED" => ScanResult::NonScanned,
            _ => {
                let reason = (word.strip_prefix("NON_SCANNED ("))
                    .and_then(|rest| rest.strip_suffix(')'))
                    .filter(|r| !r.is_empty());
                return match reason {
                    Some(reason) => (ScanResult::NonScanned, Some(reason.to_owned())),
                    None => (ScanResult::Unknown, None),
                };
            }
        };
        (result, None)
    }
}

/// The three scan operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOp {
    /// The object is in the body.
    ScanMemory,
    /// The engine reads a path on its host.
    ScanFile,
    /// A URL.
    CheckUrl,
}

/// A KAV scan call, recognised by its path in the engine's exact spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCall {
    /// Which operation.
    pub op: ScanOp,
    /// `v3.0`, `v3.1` or `v1` (protocol v1 and v2 share their paths).
    pub version: &'static str,
}

impl ScanCall {
    /// The scan call `path` is, if any. The query is not part of `path`.
    pub fn of(path: &str) -> Option<ScanCall> {
        let (version, name) = match path.strip_prefix("/api/v3.") {
            Some(rest) => match rest.split_once('/')? {
                ("0", name) => ("v3.0", name),
                ("1", name) => ("v3.1", name),
                _ => return None,
            },
            None => ("v1", path.strip_prefix('/')?),
        };
        let op = match name {
            "scanmemory" => ScanOp::ScanMemory,
            "scanfile" => ScanOp::ScanFile,
            "checkurl" => ScanOp::CheckUrl,
            _ => return None,
        };
        Some(ScanCall { op, version })
    }

    /// How the answer is written.
    pub fn wire(self) -> Wire {
        match self.version {
            "v1" => Wire::Text,
            _ => Wire::Json,
        }
    }

    /// The call as the audit line names it: `scanmemory`, `scanfile` or `checkurl`.
    pub fn name(self) -> &'static str {
        match self.op {
            ScanOp::ScanMemory => "scanmemory",
            ScanOp::ScanFile => "scanfile",
            ScanOp::CheckUrl => "checkurl",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_calls_are_known_by_their_exact_path() {
        let call = |p: &str| ScanCall::of(p).map(|c| (c.name(), c.version));
        assert_eq!(call("/api/v3.0/scanmemory"), Some(("scanmemory", "v3.0")));
        assert_eq!(call("/api/v3.1/scanmemory"), Some(("scanmemory", "v3.1")));
        assert_eq!(call("/api/v3.1/scanfile"), Some(("scanfile", "v3.1")));
        assert_eq!(call("/api/v3.0/checkurl"), Some(("checkurl", "v3.0")));
        assert_eq!(call("/scanmemory"), Some(("scanmemory", "v1")));
        assert_eq!(call("/checkurl"), Some(("checkurl", "v1")));
        for other in [
            "/api/v3.0/getstatistics",
            "/api/v3.2/scanmemory",
            "/api/v3.0/scanmemory/",
            "/api/v3.0//scanmemory",
            "/API/v3.0/scanmemory",
            "/version",
            "",
            "/",
            "/scanmemoryx",
        ] {
            assert_eq!(call(other), None, "{other}");
        }
        assert_eq!(ScanCall::of("/scanfile").unwrap().wire(), Wire::Text);
        assert_eq!(
            ScanCall::of("/api/v3.1/scanfile").unwrap().wire(),
            Wire::Json
        );
    }

    #[test]
    fn labels_are_a_fixed_set_in_index_order() {
        for (i, r) in ScanResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let labels: Vec<_> = ScanResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "clean",
                "detect",
                "disinfected",
                "deleted",
                "non_scanned",
                "server_error",
                "unknown",
                "error",
                "unparsed"
            ]
        );
        assert_eq!(
            ScanResult::from_word("NON_SCANNED ()"),
            (ScanResult::Unknown, None)
        );
    }
}
