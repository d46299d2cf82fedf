use super::*;

const SO: Grant = Grant {
    role: Some(Role::SecurityOfficer),
    scan_file: false,
};
const SSO: Grant = Grant {
    role: Some(Role::SeniorSecurityOfficer),
    scan_file: true,
};
const ADMIN: Grant = Grant {
    role: Some(Role::Administrator),
    scan_file: true,
};

fn allowed(grant: Grant, path: &str) -> bool {
    decide(grant, path, false) == Decision::Allow
}

#[test]
fn roles_scope_operations() {
    // Path, then whether SecurityOfficer and SeniorSecurityOfficer may call it.
    let table = [
        ("/api/v3.0/scanmemory", true, true),
        ("/api/v3.1/scanmemory", true, true),
        ("/scanmemory", true, true),
        ("/api/v3.0/checkurl", true, true),
        ("/checkurl", true, true),
        ("/api/v3.0/basesdate", true, true),
        ("/basesdate", true, true),
        ("/api/v3.0/version", true, true),
        ("/version", true, true),
        ("/api/v3.0/licenseinfo", true, true),
        ("/licenseinfo", true, true),
        ("/api/v3.1/ksninfo", true, true),
        ("/api/v3.0/getstatistics", false, true),
        ("/getstatistics", false, true),
        ("/api/v3.1/update/status", false, true),
        ("/api/v3.0/update/status", false, true),
        ("/api/v3.0/clearstatistics", false, false),
        ("/clearstatistics", false, false),
        ("/api/v3.0/update/start", false, false),
        ("/api/v3.0/scanfile", false, true),
        ("/scanfile", false, true),
    ];
    for (path, so, sso) in table {
        assert_eq!(allowed(SO, path), so, "SecurityOfficer {path}");
        assert_eq!(allowed(SSO, path), sso, "SeniorSecurityOfficer {path}");
        assert!(allowed(ADMIN, path), "Administrator {path}");
        assert!(allowed(Grant::UNCHECKED, path), "unchecked {path}");
    }
    assert!(allowed(Grant::new(None, None), "/anything"));
    assert!(allowed(ADMIN, "/api/v9/x/../y//"));
}

/// Every trick of the security review (F6), and more, for both restricted roles.
#[test]
fn restricted_roles_get_only_the_engine_spelling() {
    let tricks = [
        "/api/v3.0%2Fclearstatistics%3F/scanmemory",
        "/api/../scanmemory",
        "/api//scanmemory",
        "/api/v3.0/scanmemory/",
        "/api/v3.0/scanmemory////",
        "/api/v3.0//scanmemory",
        "/api/v3.0/./scanmemory",
        "/api/v3.0/../v3.0/scanmemory",
        "/api/%2e%2e/scanmemory",
        "/api/v3.0/scan%6demory",
        "/api/v3.0\\scanmemory",
        "/api/v3.0/scanmemory;x",
        "/api/v3.0/ScanMemory",
        "/API/v3.0/scanmemory",
        "/api/v3/scanmemory",
        "/api/v3.2/scanmemory",
        "/api/v2.0/scanmemory",
        "/api/x/scanmemory",
        "/api/scanmemory",
        "/api/v3.0/",
        "/api/v3.0",
        "/api",
        "/api/",
        "scanmemory",
        "api/v3.0/scanmemory",
        "*",
        "",
        "/",
        "//scanmemory",
        "/scanmemory/",
        "/./scanmemory",
        "/scanmemoryX",
        "/api/v3.0/scanmemoryX",
        "/api/v3.0/update",
        "/api/v3.0/update/",
        "/api/v3.0/update/status/x",
        // v3-only operations have no v1 path.
        "/ksninfo",
        "/update/status",
        "/update/start",
    ];
    for path in tricks {
        for grant in [SO, SSO] {
            assert_eq!(
                decide(grant, path, false),
                Decision::Deny,
                "{grant:?} {path}"
            );
            assert_eq!(
                decide(grant, path, true),
                Decision::Deny,
                "{grant:?} {path}"
            );
        }
    }
}

#[test]
fn routes_name_protocol_and_operation() {
    let r = |api, op| Some(Route { api, op });
    assert_eq!(route("/api/v3.0/scanfile"), r(Api::V3, Operation::ScanFile));
    assert_eq!(route("/api/v3.1/scanfile"), r(Api::V3, Operation::ScanFile));
    assert_eq!(route("/scanfile"), r(Api::V1, Operation::ScanFile));
    assert_eq!(
        route("/api/v3.0/update/start"),
        r(Api::V3, Operation::UpdateStart)
    );
    assert_eq!(
        route("/api/v3.0/update/status"),
        r(Api::V3, Operation::UpdateStatus)
    );
    assert_eq!(route("/api/v3.1/ksninfo"), r(Api::V3, Operation::KsnInfo));
    assert_eq!(
        route("/getstatistics"),
        r(Api::V1, Operation::GetStatistics)
    );
    assert_eq!(
        route("/clearstatistics"),
        r(Api::V1, Operation::ClearStatistics)
    );
    assert_eq!(route("/update/start"), None);
    assert_eq!(route("/api/v3.0/nothing"), None);
}

#[test]
fn scanfile_is_a_permission_of_its_own() {
    let so = Some(Role::SecurityOfficer);
    let sso = Some(Role::SeniorSecurityOfficer);
    let admin = Some(Role::Administrator);
    // The role's default, and AllowScanFile over it either way.
    assert!(!Grant::new(so, None).scan_file);
    assert!(Grant::new(so, Some(true)).scan_file);
    assert!(Grant::new(sso, None).scan_file);
    assert!(!Grant::new(sso, Some(false)).scan_file);
    assert!(Grant::new(admin, None).scan_file);
    assert!(!Grant::new(admin, Some(false)).scan_file);
    assert!(Grant::new(None, None).scan_file);
    assert!(!Grant::new(None, Some(false)).scan_file);
    assert_eq!(Grant::new(sso, None).role, sso);

    let so_granted = Grant::new(so, Some(true));
    assert_eq!(decide(SO, "/api/v3.0/scanfile", false), Decision::Deny);
    assert_eq!(
        decide(so_granted, "/api/v3.0/scanfile", false),
        Decision::Allow
    );
    assert_eq!(decide(so_granted, "/scanfile", false), Decision::Allow);
    // The grant covers scanfile only, not the rest of the matrix.
    assert_eq!(
        decide(so_granted, "/api/v3.0/getstatistics", false),
        Decision::Deny
    );
    let admin_without = Grant::new(admin, Some(false));
    assert_eq!(
        decide(admin_without, "/api/v3.0/scanfile", false),
        Decision::Deny
    );
    assert_eq!(
        decide(admin_without, "/api/v3.0/update/start", false),
        Decision::Allow
    );
}

#[test]
fn scanfile_under_scanning_paths_needs_the_body_checked() {
    for grant in [
        SSO,
        ADMIN,
        Grant::UNCHECKED,
        Grant::new(SO.role, Some(true)),
    ] {
        let check = |path| decide(grant, path, true);
        assert_eq!(
            check("/api/v3.0/scanfile"),
            Decision::CheckScanPath(Api::V3)
        );
        assert_eq!(
            check("/api/v3.1/scanfile"),
            Decision::CheckScanPath(Api::V3)
        );
        assert_eq!(check("/scanfile"), Decision::CheckScanPath(Api::V1));
        assert_eq!(check("/api/v3.0/scanmemory"), Decision::Allow);
    }
    assert_eq!(decide(SO, "/api/v3.0/scanfile", true), Decision::Deny);
}

#[test]
fn full_access_cannot_reach_a_limited_scanfile_by_another_spelling() {
    let respelled = [
        "/api/v3.0/scanfile/",
        "/api/v3.0//scanfile",
        "/api/v3.0/ScanFile",
        "/API/V3.0/SCANFILE",
        "/api/v3.0/scan%66ile",
        "/api/v3.0%2fscanfile",
        "/api/v3.0\\scanfile",
        "/api/v3.0/scanfile;x",
        "/api/v3.2/scanfile",
        "/SCANFILE",
    ];
    let admin_without = Grant::new(Some(Role::Administrator), Some(false));
    for path in respelled {
        for grant in [ADMIN, Grant::UNCHECKED] {
            assert_eq!(
                decide(grant, path, true),
                Decision::Deny,
                "{grant:?} {path}"
            );
            // Without a limit on scanfile, full access means any path.
            assert_eq!(
                decide(grant, path, false),
                Decision::Allow,
                "{grant:?} {path}"
            );
        }
        assert_eq!(decide(admin_without, path, false), Decision::Deny, "{path}");
    }
    for path in ["/anything", "/api/v3.0/scanmemory/", "/scanfil", "/canfile"] {
        assert_eq!(decide(ADMIN, path, true), Decision::Allow, "{path}");
        assert_eq!(
            decide(admin_without, path, false),
            Decision::Allow,
            "{path}"
        );
    }
}
