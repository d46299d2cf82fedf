//! `scangate demo` as a process: the printed URL and token work, every printed curl line gives the
//! printed output, SIGTERM exits 0 and removes the config folder, and a busy port is said so.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::process::{free_port, Scangate};
use common::*;

/// A printed curl line, reduced to what it sends: `-H` headers, the `-d` body (which makes it a
/// POST) and the URL. Splits words as a POSIX shell does for the quoting the demo uses ('…').
#[derive(Debug, Default)]
struct Curl {
    headers: Vec<(String, String)>,
    data: Option<String>,
    url: String,
}

impl Curl {
    fn parse(line: &str) -> Curl {
        let mut words = Vec::new();
        let (mut word, mut quoted, mut started) = (String::new(), false, false);
        for ch in line.chars() {
            match ch {
                '\'' => {
                    quoted = !quoted;
                    started = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if started {
                        words.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                c => {
                    word.push(c);
                    started = true;
                }
            }
        }
        assert!(!quoted, "unbalanced quote in {line}");
        if started {
            words.push(word);
        }
        assert_eq!(words[0], "curl");
        let mut curl = Curl::default();
        let mut args = words[1..].iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-sS" => {}
                "-w" => assert_eq!(args.next().unwrap(), r"\n"),
                "-H" => {
                    let (name, value) = args.next().unwrap().split_once(": ").unwrap();
                    curl.headers.push((name.into(), value.into()));
                }
                "-d" => curl.data = Some(args.next().unwrap().clone()),
                url if url.starts_with("http://") => curl.url = url.into(),
                other => panic!("unexpected curl argument {other:?} in {line}"),
            }
        }
        curl
    }

    /// The response body, as `curl -sS` prints it.
    async fn run(&self, c: &reqwest::Client) -> String {
        let mut req = c.post(&self.url).body(self.data.clone().unwrap());
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        req.send().await.unwrap().text().await.unwrap()
    }
}

#[tokio::test]
async fn demo_prints_a_working_token_and_curl_lines_and_cleans_up_on_sigterm() {
    let port = free_port();
    let demo = Scangate::spawn(&["demo", "--listen", &format!("127.0.0.1:{port}")]);
    let lines = demo.lines_until(Duration::from_secs(20), |l| l.starts_with("Ctrl-C"));
    let field = |prefix: &str| {
        let found = lines.iter().find_map(|l| l.strip_prefix(prefix));
        found.unwrap_or_else(|| panic!("no {prefix:?} line in {lines:#?}"))
    };
    let url = field("URL: ");
    let token = field("Token: ");
    let folder = PathBuf::from(field("Config folder: "));
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    assert!(token.starts_with("sg_") && token.len() == 47, "{token}");
    let config = std::fs::read_to_string(folder.join("scangate.xml")).unwrap();
    assert!(
        !config.contains(token),
        "the token is written in the config"
    );

    // Every printed curl line, sent as curl would send it, gives the printed `expected:` line.
    let commands: Vec<Curl> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .map(|l| Curl::parse(l.trim()))
        .collect();
    let expected: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("expected: "))
        .collect();
    assert_eq!(expected.len(), 3, "{lines:#?}");
    assert_eq!(expected[0], r#"{"object":"memory","scanResult":"CLEAN"}"#);
    assert_eq!(
        expected[1],
        r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File"}"#
    );
    assert_eq!(expected[2], r#"{"error":"missing API token"}"#);
    assert_eq!(commands.len(), expected.len());
    let c = client();
    for (command, expected) in commands.iter().zip(&expected) {
        assert!(command.url.starts_with(url), "{command:?}");
        assert_eq!(command.run(&c).await, *expected, "{command:?}");
    }
    // The token the scans carry is the one printed on the `Token:` line.
    assert_eq!(
        commands[1].headers,
        [("Authorization".to_owned(), format!("Bearer {token}"))]
    );

    let (status, logs) = demo.stop("TERM");
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!folder.exists(), "{} outlived the demo", folder.display());
    assert!(!logs.contains(token), "the token is in the logs");
}

#[test]
fn demo_on_a_busy_port_says_so_and_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let demo = Scangate::spawn(&["demo", "--listen", &addr.to_string()]);
    let (status, err) = demo.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err.trim_end(),
        format!(
            "scangate demo: {addr} is already in use; stop whatever listens there, or pick a \
             free port with --listen 127.0.0.1:PORT"
        )
    );
}
