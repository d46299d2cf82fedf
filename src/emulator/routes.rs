//! The request filter: path → endpoint, method, local-only and protocol-header checks, the body cap,
//! the response envelope, and the one place where a refused request becomes a status.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, SERVER};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::engine::Engine;
use super::{v1, v3};

/// The protocol-version header, on requests (v1: mandatory) and on every response.
pub const PROTOCOL_HEADER: &str = "x-kav-protocolversion";

/// Which protocol a path belongs to; it picks the body format of answers and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/api/v3.0/…`: JSON.
    V30,
    /// `/api/v3.1/…`: JSON with `name` and `reason`.
    V31,
    /// `/…`: plain text, `X-KAV-ProtocolVersion: 1` required.
    V1,
}

/// An engine method, whatever the protocol; each variant is named after its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ScanFile,
    ScanMemory,
    CheckUrl,
    BasesDate,
    Version,
    LicenseInfo,
    GetStatistics,
    ClearStatistics,
    UpdateStart,
    UpdateStatus,
    KsnInfo,
}

impl Endpoint {
    fn is_post(self) -> bool {
        use Endpoint::*;
        matches!(
            self,
            ScanFile | ScanMemory | CheckUrl | ClearStatistics | UpdateStart
        )
    }

    fn allow(self) -> &'static str {
        if self.is_post() {
            "OPTIONS, POST"
        } else {
            "OPTIONS, GET"
        }
    }
}

/// Maps a path to its protocol and endpoint, following the engine's tables (reference §4.2, §4.6).
/// v1 `getstatistics` is left out: its body format is not documented.
pub fn route(path: &str) -> Option<(Api, Endpoint)> {
    use Endpoint::*;
    let (api, name) = if let Some(rest) = path.strip_prefix("/api/v3.0/") {
        (Api::V30, rest)
    } else if let Some(rest) = path.strip_prefix("/api/v3.1/") {
        (Api::V31, rest)
    } else {
        (Api::V1, path.strip_prefix('/')?)
    };
    let endpoint = match name {
        "scanfile" => ScanFile,
        "scanmemory" => ScanMemory,
        "checkurl" => CheckUrl,
        "basesdate" => BasesDate,
        "version" => Version,
        "licenseinfo" => LicenseInfo,
        "getstatistics" => GetStatistics,
        "clearstatistics" => ClearStatistics,
        "update/start" => UpdateStart,
        "update/status" => UpdateStatus,
        "ksninfo" => KsnInfo,
        _ => return None,
    };
    let exists = match api {
        Api::V30 => endpoint != KsnInfo,
        Api::V31 => matches!(endpoint, ScanFile | ScanMemory | UpdateStatus | KsnInfo),
        Api::V1 => !matches!(
            endpoint,
            GetStatistics | UpdateStart | UpdateStatus | KsnInfo
        ),
    };
    exists.then_some((api, endpoint))
}

/// Why a request was refused before or instead of a scan. Each message is the exact `error` text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// No such path.
    #[error("not found")]
    NotFound,
    /// A method other than the path's one or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed(Endpoint),
    /// `update/*` from a non-loopback peer; the engine answers these with 405.
    #[error("update is available to local clients only")]
    RemoteClient(Endpoint),
    /// Content-Length or the streamed body exceeds `max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client broke off while sending the body.
    #[error("failed to read request body")]
    BodyUnreadable,
    /// A v1 request without `X-KAV-ProtocolVersion: 1` (v2 multipart is not emulated).
    #[error("X-KAV-ProtocolVersion: 1 header is required")]
    ProtocolVersion,
    /// The body is not a JSON object.
    #[error("invalid JSON body")]
    InvalidJson,
    /// A mandatory field is absent.
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// A field that must be a string is something else.
    #[error("field {0} must be a string")]
    NotAString(&'static str),
    /// `object` of scanmemory does not decode.
    #[error("object is not valid base64")]
    InvalidBase64,
    /// `timeout` is neither a non-negative integer nor a string holding one.
    #[error("field timeout must be a number of milliseconds")]
    InvalidTimeout,
    /// `name` (v3.1) is outside the documented 1–300 characters.
    #[error("field name must be 1 to 300 characters")]
    InvalidName,
}

impl Rejection {
    /// The one mapping from refusal to status.
    fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed(_) | Rejection::RemoteClient(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn into_response(self, api: Api) -> Response<Full<Bytes>> {
        let body = match api {
            Api::V1 => self.to_string(),
            Api::V30 | Api::V31 => serde_json::json!({ "error": self.to_string() }).to_string(),
        };
        let mut response = reply(api, self.status(), body);
        if let Rejection::MethodNotAllowed(e) | Rejection::RemoteClient(e) = self {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(e.allow()));
        }
        response
    }
}

/// Answers one request. `local` is whether the peer is on loopback or a unix socket.
pub async fn handle<B>(req: Request<B>, engine: &Engine, local: bool) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some((api, endpoint)) = route(req.uri().path()) else {
        return Rejection::NotFound.into_response(Api::V30);
    };
    match dispatch(req, engine, local, api, endpoint).await {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(api),
    }
}

async fn dispatch<B>(
    req: Request<B>,
    engine: &Engine,
    local: bool,
    api: Api,
    endpoint: Endpoint,
) -> Result<Response<Full<Bytes>>, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // OPTIONS first: it answers any client, with or without the protocol header.
    if req.method() == Method::OPTIONS {
        let mut response = reply(api, StatusCode::OK, Bytes::new());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(endpoint.allow()));
        return Ok(response);
    }
    let expected = if endpoint.is_post() {
        Method::POST
    } else {
        Method::GET
    };
    if req.method() != expected {
        return Err(Rejection::MethodNotAllowed(endpoint));
    }
    if matches!(endpoint, Endpoint::UpdateStart | Endpoint::UpdateStatus) && !local {
        return Err(Rejection::RemoteClient(endpoint));
    }
    if api == Api::V1 && req.headers().get(PROTOCOL_HEADER).is_none_or(|v| v != "1") {
        return Err(Rejection::ProtocolVersion);
    }
    let body = if endpoint.is_post() {
        read_body(req.into_body(), engine.max_body_bytes).await?
    } else {
        Bytes::new()
    };
    match api {
        Api::V1 => v1::respond(engine, endpoint, &body).await,
        Api::V30 | Api::V31 => v3::respond(engine, api, endpoint, &body).await,
    }
}

/// Reads the whole body, refusing it past `max` bytes: at once when Content-Length says so, else as
/// soon as the streamed bytes pass the cap. Scans need the whole object, so buffering is the point.
async fn read_body<B>(body: B, max: u64) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // For hyper's Incoming, the lower size hint is the Content-Length when there is one.
    if body.size_hint().lower() > max {
        return Err(Rejection::BodyTooLarge);
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge),
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}

/// The engine's response envelope (reference §4.2): `Server`, the protocol version, and
/// `Content-Type: text/plain` even for JSON. Unlike the engine, no `Connection: close`: benchmarks
/// and the gateway's pool need keep-alive, so hyper keeps HTTP/1.1 connections open.
pub fn reply(api: Api, status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let body = body.into();
    let version = if api == Api::V1 { "1" } else { "3" };
    let mut response = Response::builder()
        .status(status)
        .header(SERVER, "KAVHTTPD/1.0")
        .header(PROTOCOL_HEADER, version);
    if !body.is_empty() {
        response = response.header(CONTENT_TYPE, "text/plain");
    }
    response
        .body(Full::new(body))
        .expect("static headers are valid")
}
