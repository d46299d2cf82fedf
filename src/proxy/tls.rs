//! TLS for the client listener: PEM loading (PKCS#8, RSA or EC keys), TLS 1.2 and 1.3, ALPN h2 and
//! http/1.1. The server config lives in the reloadable snapshot, so new handshakes pick up replaced
//! certificate files while open connections keep the certificate they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsFiles;

/// Why the certificate or key could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("{}: cannot load TLS certificate: {reason}", path.display())]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file is unreadable, holds no private key, or does not match the certificate.
    #[error("{}: cannot load TLS private key: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The crypto provider of every rustls config the gateway builds: ring, or aws-lc-rs with the
/// `aws-lc` feature.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// The HTTPS listener's TLS: the rustls config new handshakes use, and the certificate chain it
/// presents, which decides whether the next reload keeps the sessions this one issued.
#[derive(Clone)]
pub struct ServerTls {
    /// What new handshakes use. Its session store holds session secrets.
    pub config: Arc<ServerConfig>,
    /// The chain `config` presents, leaf first.
    chain: Vec<CertificateDer<'static>>,
}

/// Names the chain's length and the tickets setting; the session store is left out, as it holds
/// session secrets.
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain_certificates", &self.chain.len())
            .field("session_tickets", &self.config.send_tls13_tickets)
            .finish_non_exhaustive()
    }
}

/// Builds the server config from the PEM files. It sends `session_tickets` TLS 1.3 session
/// tickets after each handshake (`ServerSettings/TlsSessionTickets`, 0 by default: with ring, a
/// resumed handshake costs the server as much as a full one, and each ticket costs it more; see
/// benches/RESULTS.md). TLS 1.2 clients resume by session ID from rustls's cache of 256
/// sessions either way, which spares the server the key exchange and the signature.
///
/// When `previous` presents the same chain, the new config shares its session cache, so a reload
/// (a token added, say) does not make every client handshake in full again. Another chain gets an
/// empty cache: no session made under the old certificate is resumed under the new one, as nginx
/// ties its session ID context to the certificate.
pub fn load(
    files: &TlsFiles,
    session_tickets: usize,
    previous: Option<&ServerTls>,
) -> Result<ServerTls, TlsError> {
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("both providers support TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.send_tls13_tickets = session_tickets;
    if let Some(previous) = previous.filter(|p| p.chain == chain) {
        config.session_storage = Arc::clone(&previous.config.session_storage);
    }
    Ok(ServerTls {
        config: Arc::new(config),
        chain,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_certs(path).map_err(|reason| TlsError::Certificate {
        path: path.to_owned(),
        reason,
    })
}

/// Every certificate in a PEM file, or why there is none. Shared by the listener's chain and the
/// upstream CA bundle; each caller names the file in its own error.
pub(crate) fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |reason: String| TlsError::Key {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no PKCS#8, RSA or EC private key found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn debug_names_the_settings_and_leaves_the_session_cache_out() {
        let dir = tempfile::tempdir().unwrap();
        let tls = load(&files(dir.path()), 1, None).unwrap();
        assert_eq!(
            format!("{tls:?}"),
            "ServerTls { chain_certificates: 1, session_tickets: 1, .. }"
        );
    }

    #[test]
    fn a_reload_shares_the_session_cache_only_with_the_same_chain() {
        let dir = tempfile::tempdir().unwrap();
        let pem = files(dir.path());
        let first = load(&pem, 0, None).unwrap();
        let same = load(&pem, 2, Some(&first)).unwrap();
        let shared = |a: &ServerTls, b: &ServerTls| {
            Arc::ptr_eq(&a.config.session_storage, &b.config.session_storage)
        };
        assert!(shared(&first, &same));
        assert_eq!(same.config.send_tls13_tickets, 2);
        let other_dir = tempfile::tempdir().unwrap();
        let other = load(&files(other_dir.path()), 2, Some(&same)).unwrap();
        assert!(!shared(&same, &other));
    }
}
