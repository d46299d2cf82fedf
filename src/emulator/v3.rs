//! KAV protocol v3 (JSON bodies): request fields in, the engine's reply objects out (reference
//! §4.3–§4.5). Reply types are structs rather than `json!` so fields keep the engine's order.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::bases::{self, UpdateStatus};
use super::engine::{Engine, LICENSE_EXPIRATION, LICENSE_NAME, SDK_VERSION};
use super::routes::{reply, Api, Endpoint, Rejection};
use super::scan::Verdict;

/// The documented upper bound of v3.1's `name`, in characters.
const MAX_NAME_CHARS: usize = 300;

/// Answers a v3.0 or v3.1 request whose method and body were already checked.
pub async fn respond(
    engine: &Engine,
    api: Api,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rejection> {
    let text = match endpoint {
        Endpoint::ScanMemory => {
            let fields = Fields::parse(body)?;
            let object = fields.required("object")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(object)
                .map_err(|_| Rejection::InvalidBase64)?;
            // `name` is a v3.1 field; v3.0 ignores it, as it ignores any unknown field.
            let name = if api == Api::V31 {
                fields.name()?
            } else {
                None
            };
            let verdict = engine.scan_memory(&bytes, fields.timeout()?).await;
            to_json(&ObjectReply::new(api, "memory", verdict, name))
        }
        Endpoint::ScanFile => {
            let fields = Fields::parse(body)?;
            let path = fields.required("object")?;
            let verdict = engine.scan_path(path, fields.timeout()?).await;
            to_json(&ObjectReply::new(api, path, verdict, None))
        }
        Endpoint::CheckUrl => {
            let fields = Fields::parse(body)?;
            let url = fields.required("url")?;
            let verdict = engine.check_url(url, fields.timeout()?).await;
            let (scan_result, detection_name, _) = words(Api::V30, verdict);
            to_json(&UrlReply {
                url,
                scan_result,
                detection_name,
            })
        }
        Endpoint::BasesDate => {
            let date = bases::format_bases_date(engine.bases.released());
            json!({ "databaseVersion": date }).to_string()
        }
        Endpoint::Version => json!({ "KAVSDKVersion": SDK_VERSION }).to_string(),
        Endpoint::LicenseInfo => to_json(&LicenseReply {
            license_name: LICENSE_NAME,
            license_expiration_date: LICENSE_EXPIRATION,
        }),
        Endpoint::GetStatistics => json!({ "statistics": engine.stats.snapshot() }).to_string(),
        Endpoint::ClearStatistics => {
            engine.stats.clear();
            // Success is reported in an `error` field: that is the engine's documented answer.
            json!({ "error": "CLEARED" }).to_string()
        }
        Endpoint::UpdateStart => {
            let status = if engine.bases.start() {
                "update started"
            } else {
                "update already launched"
            };
            json!({ "status": status }).to_string()
        }
        Endpoint::UpdateStatus => to_json(&match engine.bases.status() {
            UpdateStatus::InProgress { progress } => StatusReply {
                status: "in progress",
                progress: Some(progress),
                last_update_result: None,
                last_update_time: None,
            },
            UpdateStatus::Idle { last_update } => StatusReply {
                status: "not started",
                progress: None,
                last_update_result: Some("success"),
                last_update_time: Some(bases::format_update_time(last_update)),
            },
        }),
        // KSN is the vendor's cloud; an offline emulator reports it off.
        Endpoint::KsnInfo => json!({ "ksnStatus": "KSN turned off" }).to_string(),
    };
    Ok(reply(api, StatusCode::OK, text))
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("reply types serialize infallibly")
}

/// `(scanResult, detectionName, reason)` for a verdict: v3.0 folds the reason into scanResult,
/// v3.1 puts it in its own field.
fn words(api: Api, verdict: Verdict) -> (String, Option<&'static str>, Option<&'static str>) {
    match verdict {
        Verdict::Clean => ("CLEAN".into(), None, None),
        Verdict::Detect(name) => ("DETECT".into(), Some(name), None),
        Verdict::NonScanned(reason) if api == Api::V31 => {
            ("NON_SCANNED".into(), None, Some(reason.title()))
        }
        Verdict::NonScanned(reason) => (format!("NON_SCANNED ({})", reason.upper()), None, None),
    }
}

/// The answer to scanmemory and scanfile.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReply<'a> {
    object: &'a str,
    scan_result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl<'a> ObjectReply<'a> {
    fn new(api: Api, object: &'a str, verdict: Verdict, name: Option<&'a str>) -> Self {
        let (scan_result, detection_name, reason) = words(api, verdict);
        ObjectReply {
            object,
            scan_result,
            detection_name,
            reason,
            name,
        }
    }
}

/// The answer to checkurl.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UrlReply<'a> {
    url: &'a str,
    scan_result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection_name: Option<&'static str>,
}

/// The offline form of licenseinfo.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LicenseReply {
    license_name: &'static str,
    license_expiration_date: &'static str,
}

/// The answer to update/status; fields appear only in the state the docs give them.
#[derive(Serialize)]
struct StatusReply {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_update_result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_update_time: Option<String>,
}

/// A scan request's JSON object, read field by field so each fault gets its own exact message.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8]) -> Result<Fields, Rejection> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            _ => Err(Rejection::InvalidJson),
        }
    }

    fn required(&self, key: &'static str) -> Result<&str, Rejection> {
        match self.0.get(key) {
            None => Err(Rejection::MissingField(key)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Rejection::NotAString(key)),
        }
    }

    /// `timeout` in ms: a string in every vendor example, but numbers are accepted too.
    fn timeout(&self) -> Result<Option<Duration>, Rejection> {
        let ms = match self.0.get("timeout") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => None,
        };
        ms.map(|ms| Some(Duration::from_millis(ms)))
            .ok_or(Rejection::InvalidTimeout)
    }

    fn name(&self) -> Result<Option<&str>, Rejection> {
        match self.0.get("name") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if (1..=MAX_NAME_CHARS).contains(&s.chars().count()) => {
                Ok(Some(s))
            }
            Some(Value::String(_)) => Err(Rejection::InvalidName),
            Some(_) => Err(Rejection::NotAString("name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::scan::Reason;

    #[test]
    fn timeout_accepts_strings_and_numbers() {
        let t = |body: &str| Fields::parse(body.as_bytes()).unwrap().timeout();
        assert_eq!(
            t(r#"{"timeout":"10000"}"#),
            Ok(Some(Duration::from_secs(10)))
        );
        assert_eq!(
            t(r#"{"timeout":250}"#),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(t(r#"{}"#), Ok(None));
        assert_eq!(t(r#"{"timeout":"10s"}"#), Err(Rejection::InvalidTimeout));
        assert_eq!(t(r#"{"timeout":-1}"#), Err(Rejection::InvalidTimeout));
        assert_eq!(t(r#"{"timeout":true}"#), Err(Rejection::InvalidTimeout));
    }

    #[test]
    fn non_scanned_words_differ_by_version() {
        let v = Verdict::NonScanned(Reason::AccessDenied);
        assert_eq!(
            words(Api::V30, v),
            ("NON_SCANNED (ACCESS DENIED)".into(), None, None)
        );
        assert_eq!(
            words(Api::V31, v),
            ("NON_SCANNED".into(), None, Some("Access denied"))
        );
    }
}
