//! Refused requests, each with its exact status and body.

use scangate::emulator::EmulatorOptions;

use crate::harness::*;

#[tokio::test]
async fn v1_requires_protocol_version_1() {
    let emu = Emulator::plain().await;
    let expected = (400, "X-KAV-ProtocolVersion: 1 header is required");
    let missing = emu.post("/scanmemory", "hello").await;
    assert_eq!((missing.status, missing.body.as_str()), expected);
    assert_eq!(missing.header("x-kav-protocolversion"), "1");
    let req = emu
        .client
        .post(emu.url("/scanmemory"))
        .header("X-KAV-ProtocolVersion", "2");
    let v2 = send(req.body("hello")).await;
    assert_eq!((v2.status, v2.body.as_str()), expected);
    let get = emu.get("/version").await;
    assert_eq!((get.status, get.body.as_str()), expected);
}

#[tokio::test]
async fn bad_input_gets_exact_statuses_and_bodies() {
    let emu = Emulator::plain().await;
    let too_long_name = serde_json::json!({ "object": "", "name": "n".repeat(301) }).to_string();
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "/api/v3.0/scanmemory",
            "not json",
            400,
            r#"{"error":"invalid JSON body"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            "",
            400,
            r#"{"error":"invalid JSON body"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            r#"["object"]"#,
            400,
            r#"{"error":"invalid JSON body"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            "{}",
            400,
            r#"{"error":"missing field: object"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            r#"{"object":5}"#,
            400,
            r#"{"error":"field object must be a string"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            r#"{"object":"!!"}"#,
            400,
            r#"{"error":"object is not valid base64"}"#,
        ),
        (
            "/api/v3.0/scanmemory",
            r#"{"object":"","timeout":"soon"}"#,
            400,
            r#"{"error":"field timeout must be a number of milliseconds"}"#,
        ),
        (
            "/api/v3.1/scanmemory",
            r#"{"object":"","name":""}"#,
            400,
            r#"{"error":"field name must be 1 to 300 characters"}"#,
        ),
        (
            "/api/v3.1/scanmemory",
            &too_long_name,
            400,
            r#"{"error":"field name must be 1 to 300 characters"}"#,
        ),
        (
            "/api/v3.1/scanmemory",
            r#"{"object":"","name":7}"#,
            400,
            r#"{"error":"field name must be a string"}"#,
        ),
        (
            "/api/v3.0/scanfile",
            r#"{"timeout":"1"}"#,
            400,
            r#"{"error":"missing field: object"}"#,
        ),
        (
            "/api/v3.0/checkurl",
            r#"{"object":"x"}"#,
            400,
            r#"{"error":"missing field: url"}"#,
        ),
        (
            "/api/v3.0/checkurl",
            r#"{"url":null}"#,
            400,
            r#"{"error":"field url must be a string"}"#,
        ),
    ];
    for (path, body, status, expected) in cases {
        let reply = emu.post(path, body).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (*status, *expected),
            "{path} {body}"
        );
        assert_eq!(reply.header("x-kav-protocolversion"), "3");
    }
    let stats = emu.get("/api/v3.0/getstatistics").await.json();
    assert_eq!(
        stats["statistics"]["total_requests"], 0,
        "bad input is not a scan"
    );
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow() {
    let emu = Emulator::plain().await;
    let get = emu.get("/api/v3.0/scanmemory").await;
    let expected = (405, "OPTIONS, POST", r#"{"error":"method not allowed"}"#);
    assert_eq!(
        (get.status, get.header("allow"), get.body.as_str()),
        expected
    );
    let post = emu.post("/api/v3.0/basesdate", "{}").await;
    let expected = (405, "OPTIONS, GET", r#"{"error":"method not allowed"}"#);
    assert_eq!(
        (post.status, post.header("allow"), post.body.as_str()),
        expected
    );
    let v1 = emu.v1(reqwest::Method::GET, "/scanmemory", b"").await;
    assert_eq!(
        (v1.status, v1.header("allow"), v1.body.as_str()),
        (405, "OPTIONS, POST", "method not allowed")
    );
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let emu = Emulator::plain().await;
    for path in [
        "/api/v3.0/nope",
        "/api/v3.1/checkurl",
        "/api/v3.0/ksninfo",
        "/api/v4.0/scanmemory",
        "/",
    ] {
        let reply = emu.get(path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, r#"{"error":"not found"}"#),
            "{path}"
        );
        assert_eq!(reply.header("server"), "KAVHTTPD/1.0");
    }
}

const TOO_LARGE: &str = r#"{"error":"request body too large"}"#;

#[tokio::test]
async fn body_over_the_cap_gets_413() {
    let emu = Emulator::start(EmulatorOptions {
        max_body_bytes: 64,
        ..Default::default()
    })
    .await;
    let at_cap = format!("{:<64}", r#"{"object":"aGVsbG8="}"#);
    assert_eq!(
        emu.post("/api/v3.0/scanmemory", &at_cap).await.body,
        CLEAN_MEMORY
    );

    // Content-Length over the cap: refused before any body byte is sent.
    let head = "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\
                Connection: close\r\n\r\n";
    let (status, body) = raw_exchange(emu.addr, head).await;
    assert_eq!((status, body.as_str()), (413, TOO_LARGE));

    // Chunked, so only the streamed size can tell: refused once it passes the cap.
    let chunked = format!(
        "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n41\r\n{}\r\n",
        "x".repeat(65)
    );
    let (status, body) = raw_exchange(emu.addr, &chunked).await;
    assert_eq!((status, body.as_str()), (413, TOO_LARGE));

    let v1 = "POST /scanmemory HTTP/1.1\r\nHost: x\r\nX-KAV-ProtocolVersion: 1\r\n\
              Content-Length: 1000\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_exchange(emu.addr, v1).await;
    assert_eq!((status, body.as_str()), (413, "request body too large"));
}
