//! KAV protocol v1 (plain-text bodies, reference §4.6), as rspamd and older clients speak it.
//! `X-KAV-Timeout` is not applied here: v1 scans always run the configured delay in full.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::bases;
use super::engine::{Engine, LICENSE_EXPIRATION, LICENSE_NAME, SDK_VERSION};
use super::routes::{reply, Api, Endpoint, Rejection};
use super::scan::Verdict;

/// Answers a v1 request whose method, protocol header and body were already checked.
pub async fn respond(
    engine: &Engine,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rejection> {
    // Paths and URLs arrive as the raw body; trim so `echo path | curl --data-binary @-` works.
    let text_body = || String::from_utf8_lossy(body).trim().to_owned();
    let text = match endpoint {
        Endpoint::ScanMemory => verdict_line(engine.scan_memory(body, None).await),
        Endpoint::ScanFile => verdict_line(engine.scan_path(&text_body(), None).await),
        Endpoint::CheckUrl => verdict_line(engine.check_url(&text_body(), None).await),
        Endpoint::BasesDate => {
            let date = bases::format_bases_date(engine.bases.released());
            format!("database version: {date}")
        }
        Endpoint::Version => format!("KAV SDK version: {SDK_VERSION}"),
        Endpoint::LicenseInfo => {
            format!("key file name: {LICENSE_NAME}\nlicense expiration date: {LICENSE_EXPIRATION}")
        }
        Endpoint::ClearStatistics => {
            engine.stats.clear();
            String::new()
        }
        // route() keeps the v3-only methods off v1 paths.
        Endpoint::GetStatistics
        | Endpoint::UpdateStart
        | Endpoint::UpdateStatus
        | Endpoint::KsnInfo => return Err(Rejection::NotFound),
    };
    Ok(reply(Api::V1, StatusCode::OK, text))
}

/// The v1 result line: `CLEAN`, `DETECT <name>` or `NON_SCANNED (<REASON>)`.
fn verdict_line(verdict: Verdict) -> String {
    match verdict {
        Verdict::Clean => "CLEAN".into(),
        Verdict::Detect(name) => format!("DETECT {name}"),
        Verdict::NonScanned(reason) => format!("NON_SCANNED ({})", reason.upper()),
    }
}
