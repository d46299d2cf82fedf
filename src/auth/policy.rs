//! What a token's role may call, after the MDR role model mapped onto the KAV API.
//!
//! - `Administrator` (or no Role): everything, including `update/start` and `clearstatistics`.
//! - `SeniorSecurityOfficer`: scans, liveness, `getstatistics` and `update/status`.
//! - `SecurityOfficer`: scans and liveness calls only.
//!
//! A known token whose role does not allow the call gets 403, not 401: it authenticated fine.

use http::Method;

use crate::config::Role;

/// Returns true when `role` may call `method path`.
pub fn allows(role: Option<Role>, method: &Method, path: &str) -> bool {
    let role = match role {
        None | Some(Role::Administrator) => return true,
        Some(r) => r,
    };
    if method == Method::OPTIONS {
        return true;
    }
    let op = operation(path);
    let scan_or_liveness = matches!(
        op,
        "scanmemory"
            | "scanfile"
            | "checkurl"
            | "basesdate"
            | "version"
            | "licenseinfo"
            | "ksninfo"
    );
    match role {
        Role::SecurityOfficer => scan_or_liveness,
        Role::SeniorSecurityOfficer => {
            scan_or_liveness || matches!(op, "getstatistics" | "update/status")
        }
        Role::Administrator => true,
    }
}

/// The KAV operation of a path: `/api/v3.1/scanmemory` and `/scanmemory` both give `scanmemory`.
fn operation(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    let rest = match path.strip_prefix("/api/") {
        Some(rest) => rest.split_once('/').map_or("", |(_version, op)| op),
        None => path.strip_prefix('/').unwrap_or(path),
    };
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_scope_operations() {
        let post = Method::POST;
        let so = Some(Role::SecurityOfficer);
        let sso = Some(Role::SeniorSecurityOfficer);
        assert!(allows(so, &post, "/api/v3.0/scanmemory"));
        assert!(allows(so, &post, "/scanmemory"));
        assert!(!allows(so, &Method::GET, "/api/v3.0/getstatistics"));
        assert!(allows(sso, &Method::GET, "/api/v3.0/getstatistics"));
        assert!(!allows(sso, &post, "/api/v3.0/clearstatistics"));
        assert!(!allows(sso, &post, "/api/v3.0/update/start"));
        assert!(allows(sso, &Method::GET, "/api/v3.1/update/status"));
        assert!(allows(
            Some(Role::Administrator),
            &post,
            "/api/v3.0/update/start"
        ));
        assert!(allows(None, &post, "/anything"));
        assert!(!allows(so, &post, "/api/v3.0/scanmemoryX"));
        assert!(!allows(so, &post, "/api"));
    }
}
