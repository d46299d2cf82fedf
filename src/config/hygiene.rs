//! Files and settings that load and work but weaken the gateway: a key file others may touch, the
//! public Docker demo key, tokens over cleartext HTTP, a file the gateway's user cannot read.
//! `serve` logs [`at_startup`] once when it starts; `check` reports the same and fails on the ones
//! marked as errors.

use std::path::Path;

use super::perms::{self, Access, KeyExposure, Reader};
use super::{ListenAddr, Settings};
use crate::auth::token::is_demo_key;

/// One thing to tell the operator, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concern {
    /// `check` fails on it; `serve` only warns.
    pub error: bool,
    /// What is wrong and what to do about it.
    pub text: String,
}

/// Everything `serve` warns about when it starts.
pub fn at_startup(settings: &Settings) -> Vec<String> {
    let key = key_file(&settings.gateway.token_key_file);
    let texts = key.into_iter().map(|c| c.text);
    texts
        .chain(cleartext_tokens(settings))
        .chain(deprecated(settings))
        .collect()
}

/// Settings that still work under an old name.
pub fn deprecated(settings: &Settings) -> Option<String> {
    settings
        .gateway
        .upstream
        .legacy_max_upstream_connections
        .then(|| {
            "GatewaySettings/MaxUpstreamConnections is deprecated: it sets the per-engine session \
             cap, which is now GatewaySettings/UpstreamSettings/MaxSessions (default 10); \
             MaxSessions wins when both are present"
                .to_owned()
        })
}

/// The key file's mode (see [`perms::key_exposure`]), and whether it is the public demo key.
/// Nothing for a key file that does not exist: loading reports that when it matters.
pub fn key_file(path: &Path) -> Vec<Concern> {
    let p = path.display();
    let mut concerns = Vec::new();
    // A folder or device in its place is an error of its own, which loading reports.
    if let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) {
        let a = Access::of(&meta);
        match perms::key_exposure(a.mode) {
            Some(KeyExposure::Others) => concerns.push(Concern {
                error: true,
                text: format!(
                    "{p}: token key file is readable or writable by others (mode {:04o}); run \
                     chmod o-rwx on it",
                    a.mode
                ),
            }),
            Some(KeyExposure::GroupWrite) => concerns.push(Concern {
                error: false,
                text: format!(
                    "{p}: token key file is writable by group {} (mode {:04o}), so any member can \
                     replace the key; run chmod g-w on it",
                    a.gid, a.mode
                ),
            }),
            None => {}
        }
    }
    if is_demo_key(path) {
        concerns.push(Concern {
            error: false,
            text: format!(
                "{p}: THIS IS THE PUBLIC DOCKER DEMO KEY, published with a demo token: anyone can \
                 compute Values with it; write a new key and rotate every token before real use"
            ),
        });
    }
    concerns
}

/// Token auth on a plain `http://` listener that is not loopback: bearer tokens cross the network
/// in cleartext. Scan Engine refuses that combination; scangate warns. A unix socket is fine.
pub fn cleartext_tokens(settings: &Settings) -> Option<String> {
    let ListenAddr::Tcp { addr, tls: false } = &settings.server.listen else {
        return None;
    };
    if !settings.auth.use_access_token || addr.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "UseAccessToken is 1 on the plain http:// listener {addr}, which is not loopback: tokens \
         cross the network in cleartext (Scan Engine refuses token auth without HTTPS); use \
         https://, a loopback address or a unix socket"
    ))
}

/// The files the gateway reads besides the config (key, TLS certificate and key, upstream CA)
/// that the user presumed to run it cannot read: the config's owner, or its group when root owns
/// it and shares it (see [`perms::presumed_gateway`]). Files that do not exist are left to the
/// checks that need them.
pub fn unreadable_by_gateway(config: &Path, settings: &Settings) -> Vec<String> {
    let Ok(meta) = std::fs::metadata(config) else {
        return Vec::new();
    };
    let gateway = perms::presumed_gateway(Access::of(&meta), perms::groups_of);
    let why = match &gateway {
        Reader::Root => return Vec::new(),
        Reader::User { uid, .. } => format!("as uid {uid}, the config's owner, and that user"),
        Reader::GroupMember(gid) => {
            format!("in group {gid}, which may read the root-owned config, and that group")
        }
    };
    let tls = settings.server.tls.iter().flat_map(|t| [&t.cert, &t.key]);
    let files = std::iter::once(&settings.gateway.token_key_file)
        .chain(tls)
        .chain(settings.gateway.upstream_ca_file.as_ref());
    files
        .filter_map(|path| {
            let a = Access::of(&std::fs::metadata(path).ok()?);
            let fix = match &gateway {
                Reader::GroupMember(g) => {
                    let p = path.display();
                    format!("; run chgrp {g} {p} && chmod g+r {p}")
                }
                _ => String::new(),
            };
            (!a.readable_by(&gateway)).then(|| {
                format!(
                    "{}: the gateway presumably runs {why} cannot read this file (owner {}:{}, \
                     mode {:04o}){fix}",
                    path.display(),
                    a.uid,
                    a.gid,
                    a.mode
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::parse;

    fn settings(listen: &str, use_access_token: bool) -> Settings {
        let mut s = parse(
            &format!(
                "<Configuration><ServerSettings><ConnectionString>{listen}</ConnectionString>\
                 </ServerSettings><GatewaySettings><Upstreams><Upstream>/u</Upstream></Upstreams>\
                 </GatewaySettings></Configuration>"
            ),
            "t.xml",
        )
        .unwrap();
        s.auth.use_access_token = use_access_token;
        s
    }

    #[test]
    fn cleartext_tokens_only_on_plain_http_off_loopback() {
        let warned = |listen: &str| cleartext_tokens(&settings(listen, true));
        assert_eq!(
            warned("http://0.0.0.0:8080").unwrap(),
            "UseAccessToken is 1 on the plain http:// listener 0.0.0.0:8080, which is not \
             loopback: tokens cross the network in cleartext (Scan Engine refuses token auth \
             without HTTPS); use https://, a loopback address or a unix socket"
        );
        assert!(warned("http://10.1.2.3:80").is_some());
        assert!(warned("http://[::]:80").is_some());
        for fine in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9:8080",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "http://localhost:8080",
            "/run/scangate.sock",
        ] {
            assert_eq!(warned(fine), None, "{fine}");
        }
        let mut tls = settings("http://0.0.0.0:8443", true);
        tls.server.listen = ListenAddr::Tcp {
            addr: "0.0.0.0:8443".parse().unwrap(),
            tls: true,
        };
        assert_eq!(cleartext_tokens(&tls), None, "https");
        assert_eq!(
            cleartext_tokens(&settings("http://0.0.0.0:8080", false)),
            None,
            "no token to leak"
        );
    }

    #[test]
    fn key_file_concerns_follow_the_mode_and_the_demo_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        assert_eq!(key_file(&path), [], "missing");
        std::fs::create_dir(&path).unwrap();
        assert_eq!(key_file(&path), [], "a folder");
        std::fs::remove_dir(&path).unwrap();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/config/scangate.key");
        std::fs::copy(demo, &path).unwrap();
        let mode = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m));
        mode(0o640).unwrap();
        let p = path.display();
        let demo_text = format!(
            "{p}: THIS IS THE PUBLIC DOCKER DEMO KEY, published with a demo token: anyone can \
             compute Values with it; write a new key and rotate every token before real use"
        );
        let demo = Concern {
            error: false,
            text: demo_text,
        };
        assert_eq!(key_file(&path), std::slice::from_ref(&demo));
        mode(0o604).unwrap();
        let others = Concern {
            error: true,
            text: format!(
                "{p}: token key file is readable or writable by others (mode 0604); run chmod \
                 o-rwx on it"
            ),
        };
        assert_eq!(key_file(&path), [others, demo.clone()]);
        mode(0o620).unwrap();
        let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&path).unwrap());
        let group = Concern {
            error: false,
            text: format!(
                "{p}: token key file is writable by group {gid} (mode 0620), so any member can \
                 replace the key; run chmod g-w on it"
            ),
        };
        assert_eq!(key_file(&path), [group.clone(), demo]);

        std::fs::write(&path, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
        assert_eq!(key_file(&path), [group]);
        let mut s = settings("http://0.0.0.0:1", true);
        s.gateway.token_key_file = path.clone();
        assert_eq!(at_startup(&s).len(), 2, "{:?}", at_startup(&s));
        mode(0o600).unwrap();
        assert_eq!(at_startup(&s), [cleartext_tokens(&s).unwrap()]);
    }
}
