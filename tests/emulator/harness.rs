//! Starts emulators in-process on port 0 and talks to them, through reqwest or raw HTTP/1.1 where
//! the test needs control over the bytes on the wire.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use scangate::emulator::{self, EmulatorOptions, EICAR};
use scangate::net::Listener;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One running emulator on 127.0.0.1:0 and a client for it.
pub struct Emulator {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Emulator {
    pub async fn start(opts: EmulatorOptions) -> Emulator {
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(emulator::run(listener, opts, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Emulator {
            addr,
            client,
            stop: Some(stop),
            task,
        }
    }

    /// With the default options.
    pub async fn plain() -> Emulator {
        Emulator::start(EmulatorOptions::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        send(self.client.post(self.url(path)).body(body.to_owned())).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.client.get(self.url(path))).await
    }

    /// A v1 request: the protocol header set, the raw body as given.
    pub async fn v1(&self, method: reqwest::Method, path: &str, body: &'static [u8]) -> Reply {
        let req = self.client.request(method, self.url(path));
        send(req.header("X-KAV-ProtocolVersion", "1").body(body)).await
    }

    pub async fn stop(mut self) -> io::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap()
    }
}

/// Sends a request built by hand and reduces its response.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    Reply::of(req.send().await.unwrap()).await
}

/// A response reduced to what the tests compare.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    async fn of(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("<none>", |v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn eicar_padded() -> Vec<u8> {
    [b"some prefix ".as_slice(), EICAR, b" and a suffix"].concat()
}

pub fn scan_body(object: &str) -> String {
    serde_json::json!({ "timeout": "10000", "object": object }).to_string()
}

pub const CLEAN_MEMORY: &str = r#"{"object":"memory","scanResult":"CLEAN"}"#;
pub const EICAR_MEMORY: &str =
    r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File"}"#;

/// `DD.MM.YYYY hh:mm GMT`
pub fn is_bases_date(s: &str) -> bool {
    is_shape(s, "00.00.0000 00:00 GMT")
}

/// Whether `s` matches `shape`, where each `0` stands for any digit.
pub fn is_shape(s: &str, shape: &str) -> bool {
    s.len() == shape.len()
        && s.bytes().zip(shape.bytes()).all(|(c, p)| {
            if p == b'0' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// Writes `request` on a fresh connection and reads one response, without sending anything more.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    read_response(&mut stream).await
}

/// Reads one HTTP/1.1 response with a Content-Length (or none, for 1xx) from `stream`, failing
/// instead of hanging when the server never answers.
pub async fn read_response(stream: &mut BufReader<TcpStream>) -> (u16, String) {
    let read = read_response_unbounded(stream);
    tokio::time::timeout(RAW_READ_LIMIT, read)
        .await
        .expect("no response in time")
}

/// Long enough for a loaded CI machine; only reached when the emulator fails to answer.
pub const RAW_READ_LIMIT: Duration = Duration::from_secs(10);

async fn read_response_unbounded(stream: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let status = line.split(' ').nth(1).expect(&line).parse().unwrap();
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}
