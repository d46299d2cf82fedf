//! The SQLite store over real files: single use under concurrency, across handles and restarts,
//! and every way a file can be wrong.

use super::*;

fn store_in(dir: &tempfile::TempDir) -> (SqliteStore, PathBuf) {
    let path = dir.path().join("state.db");
    (SqliteStore::open(&path).unwrap(), path)
}

#[tokio::test]
async fn first_use_is_fresh_and_every_later_one_is_a_reuse_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(&dir);
    assert_eq!(
        store.consume("c", "f", "j1", 2000).await.unwrap(),
        Consumed::Fresh
    );
    assert_eq!(
        store.consume("c", "f", "j1", 2000).await.unwrap(),
        Consumed::Reused
    );
    assert_eq!(
        store.consume("c", "f", "j2", 2000).await.unwrap(),
        Consumed::Fresh
    );
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.consume("c", "f", "j1", 2000).await.unwrap(),
        Consumed::Reused
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn twenty_concurrent_consumes_over_two_handles_give_exactly_one_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (a, path) = store_in(&dir);
    // A second handle on the same file stands in for a second process.
    let b = SqliteStore::open(&path).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.consume("c", "f", "same", 2000).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        if t.await.unwrap() == Consumed::Fresh {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
}

#[tokio::test]
async fn dead_families_exchanges_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(&dir);
    let dead = |family: &str, until| DeadFamily {
        client_id: "c".into(),
        family: family.into(),
        until,
    };
    store.kill_family(&dead("old", 100)).await.unwrap();
    store.kill_family(&dead("new", 500)).await.unwrap();
    // Idempotent, and it never shortens a death.
    store.kill_family(&dead("new", 300)).await.unwrap();
    assert_eq!(store.dead_families(200).await.unwrap(), [dead("new", 500)]);
    store.record_exchange("c", 10).await.unwrap();
    store.record_exchange("c", 30).await.unwrap();
    store.record_exchange("d", 20).await.unwrap();
    let mut last = store.last_exchanges().await.unwrap();
    last.sort();
    assert_eq!(last, [("c".to_owned(), 30), ("d".to_owned(), 20)]);
    store.consume("c", "f", "expired", 150).await.unwrap();
    store.consume("c", "f", "live", 900).await.unwrap();
    // At 200: the mark that expired at 150 and the family dead until 100 go.
    assert_eq!(store.purge(200).await.unwrap(), 2);
    assert_eq!(
        store.consume("c", "f", "live", 900).await.unwrap(),
        Consumed::Reused
    );
    assert_eq!(store.dead_families(0).await.unwrap(), [dead("new", 500)]);
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_naming_it_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x55; 8192]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: cannot open the session store: file is not a database",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x55; 8192]);
}

#[test]
fn a_folder_that_cannot_hold_the_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("state.db");
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot open the session store: ",
            path.display()
        )),
        "{err}"
    );
    let missing = SqliteStore::open_read_only(&dir.path().join("absent.db")).unwrap_err();
    assert!(missing.to_string().contains("absent.db"), "{missing}");
}

#[test]
fn a_store_from_a_newer_scangate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 9).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("schema version 9 is newer than this scangate's 1"),
        "{err}"
    );
}
