//! Connections: keep-alive, h2c, unix sockets, graceful shutdown.

use std::time::{Duration, Instant};

use scangate::emulator::{self, EmulatorOptions, EICAR};
use scangate::net::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::harness::*;

#[tokio::test]
async fn http11_connections_are_kept_alive() {
    let emu = Emulator::plain().await;
    let mut stream = BufReader::new(TcpStream::connect(emu.addr).await.unwrap());
    for _ in 0..3 {
        let request = "GET /api/v3.0/version HTTP/1.1\r\nHost: x\r\n\r\n";
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"KAVSDKVersion":"8.8.2.58"}"#)
        );
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let emu = Emulator::plain().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let body = scan_body(&b64(EICAR));
    let response = client
        .post(emu.url("/api/v3.0/scanmemory"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), EICAR_MEMORY);
}

#[tokio::test]
async fn unix_socket_listener_serves_and_counts_as_local() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kav.sock");
    let listener = Listener::bind_unix(&socket).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(emulator::run(listener, EmulatorOptions::default(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .unix_socket(socket.as_path())
        .build()
        .unwrap();

    let scan = client
        .post("http://kav/api/v3.0/scanmemory")
        .body(scan_body(&b64(EICAR)));
    let reply = send(scan).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, EICAR_MEMORY));
    let update = send(client.post("http://kav/api/v3.0/update/start").body("{}")).await;
    assert_eq!(
        (update.status, update.body.as_str()),
        (200, r#"{"status":"update started"}"#)
    );

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_stops_accepting() {
    let emu = Emulator::plain().await;
    let addr = emu.addr;
    let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let head = "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\
                Expect: 100-continue\r\n\r\n";
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    // 100 Continue proves the handler is reading this request's body: it is in flight.
    assert_eq!(read_response(&mut stream).await.0, 100);

    let stopped = tokio::spawn(emu.stop());
    // The listener closes in the same step that signals the connections; once connects are refused,
    // this connection has been told to shut down while its request is still open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the emulator kept accepting after shutdown"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !stopped.is_finished(),
        "run() returned with a request in flight"
    );
    stream
        .get_mut()
        .write_all(br#"{"object":""}"#)
        .await
        .unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!((status, body.as_str()), (200, CLEAN_MEMORY));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(RAW_READ_LIMIT, stream.read_to_end(&mut rest)).await;
    closed.expect("the connection stayed open").unwrap();
    assert!(
        rest.is_empty(),
        "the connection closes after its last response"
    );

    stopped.await.unwrap().unwrap();
}
