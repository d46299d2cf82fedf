//! A test CA, the leaf certificates it signs, and clients that trust it: for the HTTPS listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

/// A test CA and leaf certificates it signs, with chosen serial numbers.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "scangate test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// (certificate PEM, key PEM) for `localhost` with `serial`.
    pub fn leaf(&self, serial: u64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial.to_be_bytes().to_vec()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A rustls client config (ring, TLS 1.2 and 1.3) that trusts this CA. Each config has its
    /// own session cache: connections made with one config resume each other's sessions.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_for(rustls::DEFAULT_VERSIONS)
    }

    /// [`Pki::client_config`] offering only `versions`.
    pub fn client_config_for(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let ca_der = rustls_pemfile::certs(&mut self.ca_pem().as_bytes())
            .next()
            .unwrap()
            .unwrap();
        roots.add(ca_der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS connection to `addr` as `localhost`, handshake done.
    pub async fn connect(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    /// The serial number of the certificate a handshake with a fresh client config presents.
    pub async fn served_serial(&self, addr: SocketAddr) -> Vec<u8> {
        let tls = Pki::connect(&self.client_config(), addr).await;
        leaf_serial(&tls)
    }
}

/// The serial number of the leaf certificate `tls` was shown.
pub fn leaf_serial(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    parsed.tbs_certificate.raw_serial().to_vec()
}

/// `serial` as a DER integer's bytes, which drop leading zero bytes.
pub fn serial_bytes(serial: u64) -> Vec<u8> {
    let b = serial.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(7);
    b[first..].to_vec()
}
