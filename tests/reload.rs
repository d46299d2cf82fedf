//! Hot reload: folder watch (rename, Kubernetes `..data` swap), SIGHUP, bad files, and a token that
//! stays valid through many reloads under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const OLD: &str = "sg_OldToken-1";
const NEW: &str = "sg_NewToken-2";

#[tokio::test]
async fn token_added_by_rename_is_accepted_within_2s_and_disabled_is_rejected() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    let url = gw.url("/api/v3.0/version");
    assert_eq!(status_with(&c, &url, NEW).await, 401);

    cfg.tokens.push(Tok::new("new", NEW, true));
    gw.rewrite(&cfg);
    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, NEW).await == 200
        })
        .await,
        "new token not accepted within 2 s"
    );
    assert_eq!(status_with(&c, &url, OLD).await, 200);
    assert_eq!(gw.gw.generation(), 2);

    cfg.tokens[0].enabled = false;
    gw.rewrite(&cfg);
    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, OLD).await == 401
        })
        .await,
        "disabled token still accepted after 2 s"
    );
    assert_eq!(status_with(&c, &url, NEW).await, 200);
}

#[tokio::test]
async fn kubernetes_data_symlink_swap_is_picked_up() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    // Lay the folder out like a ConfigMap volume: files live in a timestamped folder, `..data` points
    // at it, and the visible names are symlinks through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("..2026_11_22_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("scangate.xml"), cfg.xml()).unwrap();
    std::fs::write(v1.join("scangate.key"), base64_key()).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/scangate.xml", dir.path().join("scangate.xml")).unwrap();
    std::os::unix::fs::symlink("..data/scangate.key", dir.path().join("scangate.key")).unwrap();
    let path = dir.path().join("scangate.xml");
    let gw = TestGateway::start_in(ConfigDir { dir, path }, true).await;
    let c = client();
    let url = gw.url("/");
    assert_eq!(status_with(&c, &url, NEW).await, 401);

    // kubelet's swap: write the new version, point `..data_tmp` at it, rename over `..data`.
    cfg.tokens.push(Tok::new("new", NEW, true));
    let root = gw.config.dir.path();
    let v2 = root.join("..2026_11_22_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("scangate.xml"), cfg.xml()).unwrap();
    std::fs::write(v2.join("scangate.key"), base64_key()).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_22_v1")).unwrap();

    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, NEW).await == 200
        })
        .await,
        "..data swap not picked up"
    );
}

/// SIGHUP goes to the whole test process, so only this test may use it: its gateway has no folder
/// watch, and the other gateways in this binary ignore an unchanged file.
#[tokio::test]
async fn sighup_reloads() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let config = ConfigDir::new(&cfg);
    let gw = TestGateway::start_in(config, false).await;
    let only_hup = scangate::config::watch::Triggers {
        watch_folder: false,
        sighup: true,
        poll: None,
    };
    let _reloader = scangate::config::watch::start(gw.gw.clone(), only_hup).unwrap();
    let c = client();
    let url = gw.url("/");
    cfg.tokens.push(Tok::new("new", NEW, true));
    gw.rewrite(&cfg);
    // No watch: the change is not seen without a signal.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        status_with(&c, &url, NEW).await,
        401,
        "reloaded without a trigger"
    );

    let pid = std::process::id();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, NEW).await == 200
        })
        .await,
        "SIGHUP did not reload"
    );
}

#[tokio::test]
async fn invalid_file_keeps_old_tokens_and_reports_the_error() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/");

    // Half-written XML.
    let xml = cfg.xml();
    std::fs::write(&gw.config.path, &xml[..xml.len() / 2]).unwrap();
    let err = gw.gw.reload().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:", gw.config.path.display())),
        "{err}"
    );
    assert_eq!(status_with(&c, &url, OLD).await, 200);
    assert_eq!(gw.gw.generation(), 1);

    // Deleted file.
    std::fs::remove_file(&gw.config.path).unwrap();
    let err = gw.gw.reload().unwrap_err().to_string();
    assert!(err.contains("cannot read config"), "{err}");
    assert_eq!(status_with(&c, &url, OLD).await, 200);

    // Back to the same good file: it is what is running already, so nothing to do.
    std::fs::write(&gw.config.path, &xml).unwrap();
    assert_eq!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Unchanged
    );
    // A changed good file applies.
    std::fs::write(&gw.config.path, xml.replace("test-realm", "other-realm")).unwrap();
    assert!(matches!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Applied { generation: 2, .. }
    ));
}

/// The token reader checks each `Token` as it closes; a file cut right after a new, complete
/// token still fails as a whole, and neither that token nor any change before the cut applies.
#[tokio::test]
async fn a_file_cut_after_a_whole_new_token_changes_nothing() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let (c, url) = (client(), gw.url("/"));

    let next = Cfg::new(
        &up.url(),
        &[Tok::new("new", NEW, true), Tok::new("old", OLD, false)],
    );
    let xml = next.xml();
    let cut = xml.find("</Token>").unwrap() + "</Token>".len();
    std::fs::write(&gw.config.path, &xml[..cut]).unwrap();
    let err = gw.gw.reload().unwrap_err().to_string();
    assert!(err.contains("not found before end of input"), "{err}");
    assert_eq!(status_with(&c, &url, NEW).await, 401);
    assert_eq!(status_with(&c, &url, OLD).await, 200);
    assert_eq!(gw.gw.generation(), 1);

    std::fs::write(&gw.config.path, &xml).unwrap();
    gw.gw.reload().unwrap();
    assert_eq!(status_with(&c, &url, NEW).await, 200);
    assert_eq!(status_with(&c, &url, OLD).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_token_never_fails_during_50_reloads_under_load() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("stable", OLD, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let url = gw.url("/api/v3.0/scanmemory");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, bad) = (url.clone(), stop.clone(), ok.clone(), bad.clone());
        loops.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                if status_with(&c, &url, OLD).await == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for i in 0..50 {
        // Churn other tokens and flip a second one, so every reload really changes the map.
        cfg.tokens.truncate(1);
        for j in 0..20 {
            cfg.tokens.push(Tok::new(
                &format!("t{i}-{j}"),
                &format!("sg_Churn{i}x{j}-A"),
                j % 2 == 0,
            ));
        }
        write_atomic(&gw.config.path, &cfg.xml());
        let worker = gw.gw.clone();
        let outcome = tokio::task::spawn_blocking(move || worker.reload())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            outcome,
            scangate::state::ReloadOutcome::Applied { .. }
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(gw.gw.generation(), 51);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "the stable token failed during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "too few requests to mean anything"
    );
}

#[tokio::test]
async fn a_changed_key_file_alone_is_a_reload() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/");
    assert_eq!(status_with(&c, &url, OLD).await, 200);
    // Same config bytes, new key: every Value now belongs to a different token.
    use base64::Engine;
    let new_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    write_atomic(&gw.config.dir.path().join("scangate.key"), &new_key);
    assert!(matches!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Applied { generation: 2, .. }
    ));
    assert_eq!(status_with(&c, &url, OLD).await, 401);
    assert_eq!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Unchanged
    );
}

/// The content decides, not the file: the same bytes renamed over the config, then looked at
/// again, change nothing; other bytes written in place apply.
#[tokio::test]
async fn the_same_bytes_under_a_new_stamp_are_unchanged() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let xml = cfg.xml();
    write_atomic(&gw.config.path, &xml);
    for _ in 0..2 {
        assert_eq!(
            gw.gw.reload().unwrap(),
            scangate::state::ReloadOutcome::Unchanged
        );
    }
    std::fs::write(&gw.config.path, xml.replace("test-realm", "other-realm")).unwrap();
    assert!(matches!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Applied { generation: 2, .. }
    ));
    assert_eq!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Unchanged
    );
}

/// A reload keeps its large buffers for the next one, which reads its own file whole and nothing
/// of the last one's; releasing them drops them. A start keeps none.
#[tokio::test]
async fn a_reload_reuses_the_last_ones_buffers_and_reads_only_its_own_file() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(
        &up.url(),
        &[Tok::new("old", OLD, true), Tok::new("new", NEW, true)],
    );
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/");
    assert_eq!(gw.gw.buffers_held(), 0, "a start keeps nothing");
    cfg.tokens[0].enabled = false;
    gw.rewrite(&cfg);
    assert!(matches!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Applied { generation: 2, .. }
    ));
    let held = gw.gw.buffers_held();
    assert!(held > cfg.xml().len(), "{held}");
    assert_eq!(status_with(&c, &url, OLD).await, 401);

    // A shorter file, read into the longer file's buffer: nothing of that file may follow it.
    cfg.tokens.remove(0);
    gw.rewrite(&cfg);
    assert!(matches!(
        gw.gw.reload().unwrap(),
        scangate::state::ReloadOutcome::Applied { generation: 3, .. }
    ));
    assert_eq!(status_with(&c, &url, NEW).await, 200);
    assert_eq!(gw.gw.tokens.len(), 1);
    // And a file cut short is refused as before, buffers or not.
    let xml = cfg.xml();
    std::fs::write(&gw.config.path, &xml[..xml.len() / 2]).unwrap();
    assert!(gw.gw.reload().is_err());
    assert_eq!(status_with(&c, &url, NEW).await, 200);

    assert!(gw.gw.release_buffers() > 0);
    assert_eq!(gw.gw.buffers_held(), 0);
    assert_eq!(gw.gw.release_buffers(), 0);
}

/// Sends one request on an open HTTP/1.1 connection and returns the status. The test upstream and
/// the gateway's own answers both carry a Content-Length.
async fn status_on(conn: &mut tokio::net::TcpStream, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET /api/v3.0/version HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return head[9..12].parse().unwrap();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn one_keep_alive_connection_has_every_token_checked_and_sees_a_disable_at_once() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(
        &up.url(),
        &[Tok::new("old", OLD, true), Tok::new("new", NEW, true)],
    );
    let gw = TestGateway::start(&cfg).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Tokens may change between requests on one connection; each is judged on its own.
    assert_eq!(status_on(&mut conn, OLD).await, 200);
    assert_eq!(status_on(&mut conn, OLD).await, 200);
    assert_eq!(status_on(&mut conn, "sg_NotAToken-3").await, 401);
    assert_eq!(status_on(&mut conn, NEW).await, 200);
    assert_eq!(status_on(&mut conn, OLD).await, 200);

    cfg.tokens[0].enabled = false;
    gw.rewrite(&cfg);
    let generation = gw.gw.generation();
    assert!(
        eventually(Duration::from_secs(2), || async {
            gw.gw.generation() > generation
        })
        .await,
        "reload not applied within 2 s"
    );
    // The very next request on the same connection is refused.
    assert_eq!(status_on(&mut conn, OLD).await, 401);
    assert_eq!(status_on(&mut conn, NEW).await, 200);
}

/// `scangate_config_watch_events_total` as the gateway's `/metrics` would show it.
fn watch_events(gw: &TestGateway) -> u64 {
    let text = gw.gw.metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("scangate_config_watch_events_total "))
        .unwrap_or_else(|| panic!("no watch event counter in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_log_written_line_by_line_in_the_config_folder_does_not_wake_the_watch_per_line() {
    use std::io::Write;
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start(&cfg).await;
    let before = watch_events(&gw);

    // A log kept beside the config: one open, 200 lines written a millisecond apart (the kernel
    // merges identical events the watch has not read yet, so lines written in a burst would not
    // show a watch that hears every write), one close.
    let mut log = std::fs::File::create(gw.config.dir.path().join("gateway.log")).unwrap();
    for i in 0..200 {
        writeln!(log, "request {i}").unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(log);
    // Then a config edit, whose events come after the log's: once it has been applied, every
    // event the log caused has been counted.
    cfg.tokens.push(Tok::new("new", NEW, true));
    gw.rewrite(&cfg);
    let c = client();
    let url = gw.url("/api/v3.0/version");
    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, NEW).await == 200
        })
        .await,
        "the edit after the log was not applied within 2 s"
    );
    let events = watch_events(&gw) - before;
    // The log's create and close, and the edit's few (a temp file, its close, the rename). A
    // watch that heard every write would count about 200 more.
    assert!(
        events <= 12,
        "{events} watch events for 200 log lines and one edit"
    );
    assert_eq!(gw.gw.generation(), 2, "the log itself caused no reload");
}

#[tokio::test]
async fn a_config_rewritten_in_place_is_reloaded_when_the_writer_closes_it() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("old", OLD, true)]);
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    let url = gw.url("/api/v3.0/version");
    assert_eq!(status_with(&c, &url, NEW).await, 401);

    // As `cat > scangate.xml` or an editor that saves in place does: same inode, truncated and
    // written, then closed.
    cfg.tokens.push(Tok::new("new", NEW, true));
    std::fs::write(&gw.config.path, cfg.xml()).unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            status_with(&c, &url, NEW).await == 200
        })
        .await,
        "in-place rewrite not applied within 2 s"
    );
}
