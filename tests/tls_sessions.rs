//! TLS session resumption on the HTTPS listener: TLS 1.3 handshakes are full ones unless
//! `TlsSessionTickets` is set, TLS 1.2 clients resume by session ID, sessions outlive a reload
//! that keeps the certificate, and a replaced certificate is never resumed under.

mod common;

use std::sync::Arc;

use common::pki::{leaf_serial, serial_bytes, Pki};
use common::*;
use rustls::HandshakeKind;
use scangate::state::ReloadOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "sg_TlsSessions-1";
const TICKETS: &str = "<TlsSessionTickets>2</TlsSessionTickets>";

fn cfg(up: &Upstream, server_extra: &str) -> Cfg {
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("sessions", TOKEN, true)]);
    cfg.connection = "https://127.0.0.1:0".into();
    cfg.server_extra = format!(
        "<TlsCertificateFile>tls.crt</TlsCertificateFile>\
         <TlsCertificateKeyFile>tls.key</TlsCertificateKeyFile>{server_extra}"
    );
    cfg
}

/// An upstream, a CA, and a gateway with `server_extra` and a certificate of serial 1001.
async fn gateway(server_extra: &str) -> (Upstream, Pki, TestGateway) {
    let up = Upstream::start(Behaviour::Ok).await;
    let pki = Pki::new();
    let gw = start(&pki, &cfg(&up, server_extra), 1001).await;
    (up, pki, gw)
}

/// A gateway on `cfg` with a certificate of `serial`, reloaded only when a test says so.
async fn start(pki: &Pki, cfg: &Cfg, serial: u64) -> TestGateway {
    let dir = ConfigDir::new(cfg);
    write_leaf(pki, &dir.dir.path().join("tls.crt"), serial);
    TestGateway::start_in(dir, false).await
}

/// Reloads the config now, and checks that a new generation came into force.
fn reload(gw: &TestGateway) {
    let reloaded = gw.gw.reload().unwrap();
    assert!(matches!(reloaded, ReloadOutcome::Applied { .. }));
}

fn write_leaf(pki: &Pki, crt: &std::path::Path, serial: u64) {
    let (cert, key) = pki.leaf(serial);
    write_atomic(&crt.with_file_name("tls.key"), &key);
    write_atomic(crt, &cert);
}

/// One request on a new connection made with `client`, read to the end, so that the tickets
/// the server sends after the handshake reach the client's session cache. Returns how the
/// handshake went, the serial of the certificate the session was made with, and the status line.
async fn request(
    client: &Arc<rustls::ClientConfig>,
    gw: &TestGateway,
) -> (HandshakeKind, Vec<u8>, String) {
    let mut tls = Pki::connect(client, gw.addr).await;
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let serial = leaf_serial(&tls);
    let head = format!(
        "GET /v HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (kind, serial, status)
}

#[tokio::test]
async fn by_default_every_tls13_handshake_is_a_full_one() {
    let (_up, pki, gw) = gateway("").await;
    let client = pki.client_config_for(&[&rustls::version::TLS13]);
    for _ in 0..3 {
        let (kind, _, status) = request(&client, &gw).await;
        assert_eq!(kind, HandshakeKind::Full);
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
}

#[tokio::test]
async fn with_tls_session_tickets_a_tls13_client_that_reconnects_resumes() {
    let (_up, pki, gw) = gateway(TICKETS).await;
    let client = pki.client_config_for(&[&rustls::version::TLS13]);
    let first = request(&client, &gw).await;
    assert_eq!(first.0, HandshakeKind::Full);
    assert_eq!(first.2, "HTTP/1.1 200 OK");
    let second = request(&client, &gw).await;
    assert_eq!(second.0, HandshakeKind::Resumed);
    assert_eq!(second.2, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn by_default_a_tls12_client_resumes_by_session_id() {
    let (_up, pki, gw) = gateway("").await;
    let client = pki.client_config_for(&[&rustls::version::TLS12]);
    assert_eq!(request(&client, &gw).await.0, HandshakeKind::Full);
    let (kind, _, status) = request(&client, &gw).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn tls_session_tickets_past_8_is_a_config_error() {
    let up = Upstream::start(Behaviour::Ok).await;
    let dir = ConfigDir::new(&cfg(&up, "<TlsSessionTickets>9</TlsSessionTickets>"));
    let err = scangate::state::Gateway::start(&dir.path)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "ServerSettings/TlsSessionTickets: TlsSessionTickets must be a whole number from 0 to 8, found \"9\""
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_that_keeps_the_certificate_keeps_the_sessions() {
    let up = Upstream::start(Behaviour::Ok).await;
    let pki = Pki::new();
    let mut config = cfg(&up, TICKETS);
    let gw = start(&pki, &config, 1001).await;
    let client = pki.client_config();
    assert_eq!(request(&client, &gw).await.0, HandshakeKind::Full);

    // A token added: a new generation, the same certificate.
    config
        .tokens
        .push(Tok::new("another", "sg_TlsSessions-2", true));
    gw.rewrite(&config);
    reload(&gw);

    let (kind, serial, status) = request(&client, &gw).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert_eq!(serial, serial_bytes(1001));
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_session_made_under_a_replaced_certificate_is_not_resumed() {
    let (_up, pki, gw) = gateway(TICKETS).await;
    let client = pki.client_config();
    let (kind, serial, _) = request(&client, &gw).await;
    assert_eq!((kind, serial), (HandshakeKind::Full, serial_bytes(1001)));

    write_leaf(&pki, &gw.config.dir.path().join("tls.crt"), 2002);
    reload(&gw);

    // The client offers its ticket from 1001; the server must make it verify 2002 instead.
    let (kind, serial, status) = request(&client, &gw).await;
    assert_eq!(kind, HandshakeKind::Full);
    assert_eq!(serial, serial_bytes(2002));
    assert_eq!(status, "HTTP/1.1 200 OK");
    // And the session made under 2002 resumes.
    assert_eq!(request(&client, &gw).await.0, HandshakeKind::Resumed);
}
