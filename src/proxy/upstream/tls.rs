//! The rustls client config for `https://` upstreams: system roots plus `UpstreamCaFile`.

use std::path::Path;
use std::sync::OnceLock;

use crate::proxy::tls::provider;

use super::UpstreamError;

/// System roots are read once per process: they do not change under a running gateway.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

pub(super) fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let err = |reason: String| UpstreamError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = crate::proxy::tls::pem_certs(path).map_err(err)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(err("no usable CA certificate".into()));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("both providers support the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Plain-http upstreams never handshake; an empty root store keeps `system_roots` unread.
pub(super) fn plain_tls_placeholder() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("both providers support the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}
