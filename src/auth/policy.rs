//! What a caller may call, after the MDR role model mapped onto the KAV API.
//!
//! - `Administrator` (or no Role, or UseAccessToken=0): everything, including `update/start` and
//!   `clearstatistics`, and paths scangate does not know.
//! - `SeniorSecurityOfficer`: scans, liveness, `getstatistics` and `update/status`.
//! - `SecurityOfficer`: scans other than `scanfile`, and liveness calls.
//!
//! `scanfile` is a permission of its own ([`Grant`]): it makes the engine open a path on *its*
//! host, and the engine limits that (`ScanningPaths`) only for remote clients, which scangate never
//! is. A restricted role reaches only paths in the engine's exact spelling ([`route`]), whatever the
//! method: OPTIONS is allowed exactly where the role may call the path, so a backend that routes by
//! path alone cannot be made to run anything else.
//!
//! A known token that may not make the call gets 403, not 401: it authenticated fine.

use crate::config::Role;

/// The protocol a path belongs to, which fixes the body format of `scanfile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/api/v3.0/<op>` and `/api/v3.1/<op>`: JSON bodies.
    V3,
    /// `/<op>`: KAV protocol v1/v2, plain-text bodies.
    V1,
}

/// The engine's operations (reference §4.2, §4.6), each named after its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `scanfile`: the engine reads a path on its own host.
    ScanFile,
    /// `scanmemory`: the object is in the body.
    ScanMemory,
    /// `checkurl`.
    CheckUrl,
    /// `basesdate`: liveness.
    BasesDate,
    /// `version`: liveness.
    Version,
    /// `licenseinfo`: liveness.
    LicenseInfo,
    /// `ksninfo` (v3 only): liveness.
    KsnInfo,
    /// `getstatistics`.
    GetStatistics,
    /// `clearstatistics`.
    ClearStatistics,
    /// `update/start` (v3 only).
    UpdateStart,
    /// `update/status` (v3 only).
    UpdateStatus,
}

/// A path in the engine's exact spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Which protocol.
    pub api: Api,
    /// Which operation.
    pub op: Operation,
}

/// What one caller may do: its role and whether it may `scanfile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// `Role`; `None` = full access.
    pub role: Option<Role>,
    /// May call `scanfile`.
    pub scan_file: bool,
}

impl Grant {
    /// Requests when UseAccessToken is 0: nobody is checked, so everything is allowed, as by the
    /// engine itself; only `ScanningPaths` still applies.
    pub const UNCHECKED: Grant = Grant {
        role: None,
        scan_file: true,
    };

    /// A token's grant. `allow_scan_file` is its `AllowScanFile` (scangate extension) and wins
    /// when present; absent, the role decides:
    ///
    /// - Administrator and no Role: yes, they may call everything else too.
    /// - SeniorSecurityOfficer: yes. It is the role trusted with the engine's own state (statistics,
    ///   update status) and with incident work on the scanning host, where naming a server-side
    ///   file is the point; it is what the engine gives every local client.
    /// - SecurityOfficer: no. It is the role handed to many integrations (mail relays, upload
    ///   scanners) that only submit content, so its token must not open the engine host's files
    ///   (with `KAV_DELETE` modes, delete them) or probe which exist.
    pub fn new(role: Option<Role>, allow_scan_file: Option<bool>) -> Grant {
        let by_role = !matches!(role, Some(Role::SecurityOfficer));
        Grant {
            role,
            scan_file: allow_scan_file.unwrap_or(by_role),
        }
    }
}

/// What the policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// `scanfile` while `ScanningPaths` is set: forward it once the object its body names lies
    /// under a listed path.
    CheckScanPath(Api),
    /// 403.
    Deny,
}

/// Decides on one request path. `scan_paths` is whether `GatewaySettings/ScanningPaths` is set.
pub fn decide(grant: Grant, path: &str, scan_paths: bool) -> Decision {
    let route = route(path);
    if let Some(Route {
        api,
        op: Operation::ScanFile,
    }) = route
    {
        return match (grant.scan_file, scan_paths) {
            (false, _) => Decision::Deny,
            (true, true) => Decision::CheckScanPath(api),
            (true, false) => Decision::Allow,
        };
    }
    let allowed = match (grant.role, route) {
        (None | Some(Role::Administrator), None) => {
            // Any path, but not another spelling of scanfile while scanfile is limited: a backend
            // that decodes `%`, folds case or drops a trailing `/` would run it unchecked.
            let limited = scan_paths || !grant.scan_file;
            !(limited && may_reach_scan_file(path))
        }
        (None | Some(Role::Administrator), Some(_)) => true,
        (Some(role), Some(route)) => role_allows(role, route.op),
        (Some(_), None) => false,
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

/// The engine path `path` names, in its exact spelling only: `/api/v3.0/<op>`, `/api/v3.1/<op>`
/// or, for the v1 operations, `/<op>`. Percent-escapes, `\`, empty or dot segments, a trailing `/`,
/// another version, a relative path: all `None`, so a backend that reads them differently never
/// sees a path the policy did not.
pub fn route(path: &str) -> Option<Route> {
    use Operation::*;
    let (api, name) = match path.strip_prefix("/api/") {
        Some(rest) => match rest.split_once('/')? {
            ("v3.0" | "v3.1", name) => (Api::V3, name),
            _ => return None,
        },
        None => (Api::V1, path.strip_prefix('/')?),
    };
    let op = match name {
        "scanfile" => ScanFile,
        "scanmemory" => ScanMemory,
        "checkurl" => CheckUrl,
        "basesdate" => BasesDate,
        "version" => Version,
        "licenseinfo" => LicenseInfo,
        "ksninfo" => KsnInfo,
        "getstatistics" => GetStatistics,
        "clearstatistics" => ClearStatistics,
        "update/start" => UpdateStart,
        "update/status" => UpdateStatus,
        _ => return None,
    };
    let v3_only = matches!(op, KsnInfo | UpdateStart | UpdateStatus);
    (api == Api::V3 || !v3_only).then_some(Route { api, op })
}

/// The role matrix for every operation but `scanfile`, which [`Grant`] decides.
fn role_allows(role: Role, op: Operation) -> bool {
    use Operation::*;
    let scan_or_liveness = matches!(
        op,
        ScanMemory | CheckUrl | BasesDate | Version | LicenseInfo | KsnInfo
    );
    match role {
        Role::Administrator => true,
        Role::SeniorSecurityOfficer => {
            scan_or_liveness || matches!(op, GetStatistics | UpdateStatus)
        }
        Role::SecurityOfficer => scan_or_liveness,
    }
}

/// Whether a path that is not in the engine's spelling could still reach `scanfile` at some
/// backend: it holds an escape (`%`, `\`) or `scanfile` in any case.
fn may_reach_scan_file(path: &str) -> bool {
    const NAME: &[u8] = b"scanfile";
    let bytes = path.as_bytes();
    bytes.iter().any(|&b| b == b'%' || b == b'\\')
        || bytes
            .windows(NAME.len())
            .any(|w| w.eq_ignore_ascii_case(NAME))
}

#[cfg(test)]
mod tests;
