//! The container image end to end, where Docker works: build it with `docker/build.sh`, run a
//! gateway and an emulator from it on a private network, scan EICAR through the gateway, disable a
//! token by editing the mounted config folder from the host, and `docker stop` with a request in
//! flight.
//!
//! Where `docker info` fails the test prints why and passes, unless `SCANGATE_REQUIRE_DOCKER=1`
//! (CI sets it), which turns the skip into a failure.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::*;

const SCANNER: &str = "sg_ContainerScanner-5k";
const STOPPER: &str = "sg_ContainerStopper-6m";
/// The EICAR test string, built at run time so this file itself is no test virus.
const EICAR: &str = concat!(
    r"X5O!P%@AP[4\PZX54(P^)7CC)7}$",
    "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
);
const MAX_IMAGE_BYTES: u64 = 30_000_000;

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// Runs docker and returns its trimmed stdout, failing the test with its stderr otherwise.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Everything the test created, removed even when an assertion fails.
#[derive(Default)]
struct Cleanup {
    image: Option<String>,
    network: Option<String>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "--force", "--volumes", c]);
        }
        if let Some(n) = &self.network {
            let _ = docker(&["network", "rm", n]);
        }
        if let Some(i) = &self.image {
            let _ = docker(&["image", "rm", "--force", i]);
        }
    }
}

/// Polls `f` every 100 ms until it holds or `deadline` passes.
fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scan_body() -> String {
    let object = base64::engine::general_purpose::STANDARD.encode(EICAR);
    format!(r#"{{"object":"{object}"}}"#)
}

/// A config folder the container's non-root user can read.
fn config_dir(cfg: &Cfg) -> ConfigDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = ConfigDir::new(cfg);
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(dir.dir.path(), 0o755).unwrap();
    for f in ["scangate.xml", "scangate.key"] {
        mode(&dir.dir.path().join(f), 0o644).unwrap();
    }
    dir
}

/// Rewrites the config in place the way an operator's editor would (new file, rename), readable
/// by the container's user.
fn rewrite(dir: &ConfigDir, cfg: &Cfg) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.dir.path().join(".scangate.xml.new");
    std::fs::write(&tmp, cfg.xml()).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, &dir.path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_runs_gateway_and_emulator_reloads_from_the_host_and_drains_on_stop() {
    match docker(&["info"]) {
        out if out.status.success() => {}
        out => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            assert!(
                std::env::var("SCANGATE_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "SCANGATE_REQUIRE_DOCKER=1 but `docker info` failed: {why}"
            );
            eprintln!("SKIPPED: container tests need Docker; `docker info` failed: {why}");
            return;
        }
    }
    let id = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut cleanup = Cleanup::default();

    // The image, built by the documented command.
    let image = format!("scangate-test:{id}");
    cleanup.image = Some(image.clone());
    let build = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/build.sh"))
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "docker/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .unwrap();
    eprintln!("image {image}: {size} bytes");
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    let config = docker_ok(&["image", "inspect", "--format", "{{json .Config}}", &image]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "10001:10001");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["9090/tcp"].is_object(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/scangate", "healthcheck"])
    );

    // An emulator and a gateway on a private network; the gateway names the emulator's alias.
    let network = format!("sgtest-{id}");
    docker_ok(&["network", "create", &network]);
    cleanup.network = Some(network.clone());
    let emulator = format!("sgtest-emulator-{id}");
    cleanup.containers.push(emulator.clone());
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &emulator,
        "--network",
        &network,
        "--network-alias",
        "emulator",
        "--no-healthcheck",
        &image,
        "emulator",
        "--listen",
        "0.0.0.0:9999",
    ]);
    let mut cfg = Cfg::new(
        "http://emulator:9999",
        &[
            Tok::new("scanner", SCANNER, true),
            Tok::new("stopper", STOPPER, true),
        ],
    );
    cfg.connection = "http://0.0.0.0:8080".into();
    cfg.admin = "0.0.0.0:9090".into();
    let dir = config_dir(&cfg);
    let mount = format!("{}:/etc/scangate:ro", dir.dir.path().display());
    let gateway = format!("sgtest-gateway-{id}");
    cleanup.containers.push(gateway.clone());
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &gateway,
        "--network",
        &network,
        "--publish",
        "127.0.0.1::8080",
        "--publish",
        "127.0.0.1::9090",
        "--health-interval",
        "1s",
        "--volume",
        &mount,
        &image,
    ]);
    let client_addr = docker_ok(&["port", &gateway, "8080/tcp"]);
    let admin_addr = docker_ok(&["port", &gateway, "9090/tcp"]);
    let client_addr = client_addr.lines().next().unwrap().to_owned();
    let admin_addr = admin_addr.lines().next().unwrap().to_owned();
    let logs = || {
        let out = docker(&["logs", &gateway]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let c = client();
    let readyz = format!("http://{admin_addr}/readyz");
    let ready = eventually(Duration::from_secs(30), || async {
        c.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "gateway never ready; logs:\n{}", logs());
    let healthy = wait_until(Duration::from_secs(30), || {
        docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &gateway]) == "healthy"
    });
    assert!(healthy, "HEALTHCHECK never passed; logs:\n{}", logs());
    // `docker top` runs ps on the host: the process's real uid, not what the image claims.
    let top = docker_ok(&["top", &gateway, "-o", "pid,uid"]);
    let uids: Vec<_> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(uids, ["10001"], "{top}");

    // EICAR through the gateway, to the emulator by its service name.
    let scan = format!("http://{client_addr}/api/v3.0/scanmemory");
    let r = c
        .post(&scan)
        .bearer_auth(SCANNER)
        .body(scan_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "logs:\n{}", logs());
    let verdict = r.text().await.unwrap();
    assert!(verdict.contains(r#""scanResult":"DETECT""#), "{verdict}");

    // Disable the token from the host; the folder watch in the container picks it up.
    cfg.tokens[0].enabled = false;
    rewrite(&dir, &cfg);
    let edited = Instant::now();
    let denied = eventually(Duration::from_secs(3), || async {
        status_with(&c, &scan, SCANNER).await == 401
    })
    .await;
    assert!(
        denied,
        "still accepted {:?} after the edit; logs:\n{}",
        edited.elapsed(),
        logs()
    );

    // `docker stop` with a request in flight: its body is only half sent when the stop begins.
    let body = scan_body();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut conn = TcpStream::connect(&client_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {STOPPER}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // 100 Continue comes once the gateway streams the body upstream: the request is in flight.
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(first.as_bytes()).unwrap();
    let stopper = {
        let gateway = gateway.clone();
        std::thread::spawn(move || docker(&["stop", "--time", "20", &gateway]))
    };
    let draining = eventually(Duration::from_secs(10), || async {
        match c.get(&readyz).send().await {
            Ok(r) => r.text().await.is_ok_and(|t| t.contains("draining")),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        draining,
        "SIGTERM never started the drain; logs:\n{}",
        logs()
    );
    conn.write_all(rest.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains(r#""scanResult":"DETECT""#), "{response}");
    let stopped = tokio::task::spawn_blocking(move || stopper.join().unwrap())
        .await
        .unwrap();
    assert!(stopped.status.success(), "docker stop failed");
    let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &gateway]);
    assert_eq!(code, "0", "logs:\n{}", logs());

    // The container logged JSON access lines with names, never a token.
    let logs = logs();
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "scangate::access")
        .collect();
    assert!(
        access
            .iter()
            .any(|v| v["token"] == "scanner" && v["status"] == 200),
        "{logs}"
    );
    assert!(access.iter().any(|v| v["reason"] == "disabled"), "{logs}");
    for token in [SCANNER, STOPPER] {
        assert!(!logs.contains(token), "token in the container's logs");
    }
}

/// Needs no Docker: the compose demo's config folder loads, and the token the README prints for it
/// is the one its key and Value accept.
#[test]
fn compose_demo_config_loads_and_its_documented_token_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let xml = root.join("docker/config/scangate.xml");
    let loaded = scangate::config::load(&xml).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&xml).unwrap();
    let token = text
        .split("Demo token: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the demo config names its token");
    let digest = loaded.key.as_ref().unwrap().digest(token.as_bytes());
    let demo = &loaded.settings.auth.tokens[0];
    assert_eq!((demo.name.as_str(), demo.enabled), ("demo", true));
    assert_eq!(demo.digest, digest, "the documented token does not match");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(token),
        "README does not show the demo token"
    );
    assert_eq!(
        loaded.settings.gateway.upstreams[0].to_string(),
        "http://emulator:9999"
    );
    let compose = std::fs::read_to_string(root.join("docker/compose.yaml")).unwrap();
    assert!(
        compose.contains("- ./config:/etc/scangate:ro"),
        "compose must mount the folder"
    );
}
