//! The scan audit on the request path (issue 18): the verdict of a scan call is read from its
//! answer as it streams to the client (see [`crate::audit`]), then counted per credential, written
//! as one `scangate::audit` line per detection, and kept for the console. Also the gateway-answered
//! `getstatistics` (`GatewayStatistics`).
//!
//! Only scan calls pay for any of it, and they pay a copy of at most
//! [`SNIFF_BYTES`](crate::audit::SNIFF_BYTES) of the answer: no frame waits for the verdict.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};

use super::body::{ProxyBody, UploadState};
use crate::audit::{self, Detection, ScanCall, ScanOp, ScanResult, Sniffer, Verdict};
use crate::auth::principal::Principal;
use crate::config::validate::connections::{now_secs, ROOT_TENANT};
use crate::config::AuditSettings;
use crate::state::{Gateway, Snapshot};

/// What the audit of one scan needs besides the answer, gathered by the handler.
pub struct ScanAudit {
    /// Where the counters, the metrics and the console's ring live.
    gw: Arc<Gateway>,
    /// Which scan call, which fixes how the answer is read.
    call: ScanCall,
    /// Who scanned; `None` with UseAccessToken 0.
    principal: Option<Principal>,
    /// The client's address; `None` on a unix socket.
    client: Option<SocketAddr>,
    /// The engine that answered (the second after a retry).
    engine: Option<Arc<str>>,
    /// The request body, when scangate read it whole anyway (`ScanningPaths`, a kept retry): the
    /// object is read from it only if a line is written.
    held: Option<Bytes>,
    /// A v2 multipart body, whose object is not read.
    multipart: bool,
    /// The upload's byte count, for `processed_data`.
    upload: Arc<UploadState>,
    /// `LogNonScanned`, as the request found it.
    log_non_scanned: bool,
    /// `RedactObjects`, as the request found it.
    redact_objects: bool,
    /// `GatewayStatistics`, as the request found it.
    gateway_statistics: bool,
    /// `RecentDetections`, as the request found it.
    recent_detections: usize,
}

impl std::fmt::Debug for ScanAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanAudit")
            .field("call", &self.call)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// The scan call to audit, when the audit is on and this is one: a POST (an OPTIONS preflight to
/// a scan path is no scan).
pub fn scan_call(settings: &AuditSettings, method: &Method, path: &str) -> Option<ScanCall> {
    (settings.enabled && method == Method::POST)
        .then(|| ScanCall::of(path))
        .flatten()
}

impl ScanAudit {
    /// The audit of a `call` by `principal` from `client`, answered by `engine`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gw: &Arc<Gateway>,
        snap: &Snapshot,
        call: ScanCall,
        principal: Option<Principal>,
        client: Option<SocketAddr>,
        engine: Option<Arc<str>>,
        held: Option<Bytes>,
        multipart: bool,
        upload: Arc<UploadState>,
    ) -> ScanAudit {
        let a = &snap.settings.gateway.audit;
        ScanAudit {
            gw: Arc::clone(gw),
            call,
            principal,
            client,
            engine,
            held,
            multipart,
            upload,
            log_non_scanned: a.log_non_scanned,
            redact_objects: a.redact_objects,
            gateway_statistics: a.gateway_statistics,
            recent_detections: a.recent_detections,
        }
    }

    /// The answer's body for the client: `body` as it is, with its verdict read on the way. An
    /// answer that is not a 2xx is the engine refusing the request: counted as `error`, not read.
    pub fn watch(self, status: StatusCode, body: ProxyBody) -> ProxyBody {
        if !status.is_success() {
            self.record(Verdict {
                result: ScanResult::Error,
                detection: None,
                reason: None,
                object: None,
            });
            return body;
        }
        body.sniffed(Box::new(Sniff {
            sniffer: Sniffer::new(self.call.wire()),
            audit: Some(self),
            reading: true,
        }))
    }

    /// Counts `verdict` and, for a detection, writes the audit line and keeps it for the console.
    fn record(self, verdict: Verdict) {
        let metrics = &self.gw.metrics;
        let meter = match &self.principal {
            Some(p) => (p.stats().meter).get_or_init(|| metrics.token_meter(p.name())),
            None => &metrics.anonymous,
        };
        meter.scan_result(verdict.result);
        // The per-credential getstatistics counters are kept while they are served: measuring a
        // v3 object means parsing the request body.
        if let (Some(p), true) = (&self.principal, self.gateway_statistics) {
            let bytes = self.object_bytes();
            p.stats().scans.record(self.call.op, verdict.result, bytes);
        }
        let audited = verdict.result.is_detection()
            || (self.log_non_scanned && verdict.result == ScanResult::NonScanned);
        if audited {
            self.write(verdict);
        }
    }

    /// The scanned object's size, where scangate sees it: a `scanmemory` body (v1 raw; v3 the
    /// Base64 `object`, decoded length, exactly when the body was kept, else estimated from the
    /// body's size). A `scanfile` object lies on the engine's host.
    fn object_bytes(&self) -> u64 {
        if self.call.op != ScanOp::ScanMemory {
            return 0;
        }
        let sent = self.upload.bytes();
        if self.call.version == "v1" {
            return sent;
        }
        let exact = self.held.as_deref().and_then(base64_object_len);
        exact.unwrap_or(sent / 4 * 3)
    }

    fn write(self, verdict: Verdict) {
        let object = match self.redact_objects {
            true => None,
            false => (self.held.as_deref())
                .and_then(|body| audit::request_object(self.call, body, self.multipart))
                .or_else(|| match self.call.op {
                    ScanOp::CheckUrl => verdict.object.as_deref().and_then(audit::url_host),
                    _ => verdict.object.clone(),
                }),
        };
        let (credential, kind, tenants) = match &self.principal {
            Some(p) => (Arc::from(p.name()), kind(p), tenants(p)),
            None => (Arc::from(""), "none", Vec::new()),
        };
        let d = Detection {
            at: now_secs(),
            credential,
            kind,
            tenants,
            client: self.client,
            engine: self.engine,
            call: self.call.name(),
            version: self.call.version,
            object,
            result: verdict.result,
            detection: verdict.detection,
            reason: verdict.reason,
        };
        line(&d);
        self.gw.recent.push(d, self.recent_detections);
    }
}

/// The credential's kind as the audit line names it.
fn kind(p: &Principal) -> &'static str {
    match p {
        Principal::Token(_) => "token",
        Principal::Connection(_) => "connection",
    }
}

/// The principal's tenants, with MDR's "Root without tenants" by its config name.
fn tenants(p: &Principal) -> Vec<String> {
    let header = p.tenants_header().and_then(|h| h.to_str().ok());
    let mut list: Vec<String> = header
        .map(|h| h.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if p.root_tenant() {
        list.push(ROOT_TENANT.to_owned());
    }
    list
}

/// The audit line: the credential's Name, never a token; the object's name, never its content.
fn line(d: &Detection) {
    let tenants = d.tenants.join(",");
    let client = d.client.map(|c| c.to_string());
    macro_rules! audit_line {
        ($level:ident) => {
            tracing::$level!(
                target: "scangate::audit",
                credential = &*d.credential,
                kind = d.kind,
                tenants = tenants.as_str(),
                client = client.as_deref().unwrap_or("unix"),
                engine = d.engine.as_deref(),
                call = d.call,
                version = d.version,
                object = d.object.as_deref(),
                result = d.result.as_str(),
                detection = d.detection.as_deref(),
                reason = d.reason.as_deref(),
                "scan"
            )
        };
    }
    match d.result.is_detection() {
        true => audit_line!(warn),
        false => audit_line!(info),
    }
}

/// The decoded length of a v3 body's Base64 `object`.
fn base64_object_len(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(borrow)]
        object: std::borrow::Cow<'a, str>,
    }
    let b64 = serde_json::from_slice::<Object<'_>>(body).ok()?.object;
    let b64 = b64.trim_end();
    let padding = b64.bytes().rev().take_while(|&b| b == b'=').count();
    Some((b64.len() / 4 * 3).saturating_sub(padding) as u64)
}

/// The verdict reader riding on a response body (see [`ProxyBody::sniffed`]).
#[derive(Debug)]
pub struct Sniff {
    sniffer: Sniffer,
    /// Taken when the verdict is recorded.
    audit: Option<ScanAudit>,
    /// Still copying the answer's head.
    reading: bool,
}

impl Sniff {
    /// One data frame on its way to the client; `last` when the body ends with it.
    pub fn frame(&mut self, data: &[u8], last: bool) {
        if last && self.reading && self.sniffer.is_empty() {
            // The whole answer in one frame, the usual case: read it where it lies, no copy.
            if let Some(audit) = self.audit.take() {
                audit.record(Sniffer::verdict_of(self.sniffer.wire(), data));
            }
            return;
        }
        if self.reading && self.sniffer.feed(data) {
            self.reading = false;
        }
        if last {
            self.end(true);
        }
    }

    /// The body ended: normally (`complete`), or broken off.
    pub fn end(&mut self, complete: bool) {
        if let Some(audit) = self.audit.take() {
            audit.record(self.sniffer.verdict(complete));
        }
    }
}

impl Drop for Sniff {
    /// The client went away before the end: what was read so far decides.
    fn drop(&mut self) {
        self.end(false);
    }
}

/// `GET /api/v3.0/getstatistics` answered by scangate with the caller's own counters, when
/// `GatewayStatistics` is on and the caller is authenticated. `None`: forward as usual.
pub fn statistics(
    snap: &Snapshot,
    method: &Method,
    path: &str,
    principal: Option<&Principal>,
) -> Option<Response<ProxyBody>> {
    let a = &snap.settings.gateway.audit;
    if !a.gateway_statistics || path != "/api/v3.0/getstatistics" || method != Method::GET {
        return None;
    }
    let body = principal?.stats().scans.snapshot().to_json();
    let mut resp = Response::new(ProxyBody::full(body));
    let h = resp.headers_mut();
    // The engine's envelope (reference §4.2): JSON under text/plain, protocol version 3.
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert("x-kav-protocolversion", HeaderValue::from_static("3"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_objects_are_measured_decoded() {
        assert_eq!(base64_object_len(br#"{"object":"aGVsbG8="}"#), Some(5));
        assert_eq!(base64_object_len(br#"{"object":"aGVsbG8h"}"#), Some(6));
        assert_eq!(base64_object_len(br#"{"object":"aGVsbA=="}"#), Some(4));
        assert_eq!(base64_object_len(br#"{"object":""}"#), Some(0));
        assert_eq!(base64_object_len(b"nope"), None);
    }
}
