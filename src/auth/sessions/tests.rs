//! Tests of the SQLite store: single use under concurrency and across handles and restarts, the
//! family and exchange records, and every way the file can be wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

const EXP: u64 = 1_800_000_000;

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    (dir, path)
}

fn dead(family: &str, until: u64) -> DeadFamily {
    DeadFamily {
        client_id: "c1".into(),
        family: family.into(),
        until,
    }
}

/// `n` concurrent consumes of one jti, spread round-robin over `stores`; returns how many were
/// Fresh.
async fn race(stores: &[Arc<SqliteStore>], n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(&stores[i % stores.len()]);
            tokio::spawn(async move { store.consume("c1", "fam", "jti-race", EXP).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Consumed::Fresh {
            fresh += 1;
        }
    }
    fresh
}

fn open_err(path: &Path) -> String {
    SqliteStore::open(path).unwrap_err().to_string()
}

#[tokio::test]
async fn consume_is_fresh_once_then_reused() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Fresh
    );
    assert_eq!(
        store.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Reused
    );
    assert_eq!(
        store.consume("c1", "f", "j2", EXP).await.unwrap(),
        Consumed::Fresh
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_consumes_on_one_store_give_one_fresh() {
    let (_dir, path) = temp();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(race(&[store], 20).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_give_one_fresh() {
    // Two connections to one file, as two gateway processes would have.
    let (_dir, path) = temp();
    let a = Arc::new(SqliteStore::open(&path).unwrap());
    let b = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(race(&[a, Arc::clone(&b)], 20).await, 1);
    assert_eq!(
        b.consume("c1", "fam", "jti-race", EXP).await.unwrap(),
        Consumed::Reused
    );
}

#[tokio::test]
async fn a_used_token_stays_used_after_a_restart() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Fresh
    );
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.consume("c1", "f", "j1", EXP).await.unwrap(),
        Consumed::Reused
    );
}

#[tokio::test]
async fn dead_families_are_kept_until_they_expire() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    store.kill_family(&dead("f1", 100)).await.unwrap();
    store.kill_family(&dead("f2", 200)).await.unwrap();
    // Idempotent, and a later `until` wins over an earlier one in either order.
    store.kill_family(&dead("f1", 100)).await.unwrap();
    store.kill_family(&dead("f2", 300)).await.unwrap();
    store.kill_family(&dead("f2", 250)).await.unwrap();
    assert_eq!(
        store.dead_families(99).await.unwrap(),
        vec![dead("f1", 100), dead("f2", 300)]
    );
    assert_eq!(
        store.dead_families(100).await.unwrap(),
        vec![dead("f2", 300)]
    );
    assert_eq!(store.dead_families(300).await.unwrap(), vec![]);
}

#[tokio::test]
async fn purge_drops_only_what_expired_before_now() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    store.consume("c1", "f", "j100", 100).await.unwrap();
    store.consume("c1", "f", "j200", 200).await.unwrap();
    store.kill_family(&dead("f100", 100)).await.unwrap();
    store.kill_family(&dead("f200", 200)).await.unwrap();
    assert_eq!(store.purge(100).await.unwrap(), 0);
    assert_eq!(store.purge(101).await.unwrap(), 2);
    assert_eq!(store.purge(101).await.unwrap(), 0);
    assert_eq!(
        store.dead_families(0).await.unwrap(),
        vec![dead("f200", 200)]
    );
    // The purged mark is gone (the token had expired anyway); the other is still there.
    assert_eq!(
        store.consume("c1", "f", "j100", 100).await.unwrap(),
        Consumed::Fresh
    );
    assert_eq!(
        store.consume("c1", "f", "j200", 200).await.unwrap(),
        Consumed::Reused
    );
    assert_eq!(store.purge(u64::MAX).await.unwrap(), 3);
}

#[tokio::test]
async fn last_exchanges_keep_the_latest_time_and_are_readable_read_only() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    store.record_exchange("c2", 50).await.unwrap();
    store.record_exchange("c1", 20).await.unwrap();
    store.record_exchange("c1", 30).await.unwrap();
    store.record_exchange("c1", 25).await.unwrap();
    let expected = vec![("c1".to_string(), 30), ("c2".to_string(), 50)];
    assert_eq!(store.last_exchanges().await.unwrap(), expected);
    // The CLI reads while the gateway holds the file open; it cannot write.
    let cli = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(cli.last_exchanges().await.unwrap(), expected);
    let err = cli.record_exchange("c3", 1).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
    assert!(err.contains("readonly"), "{err}");
}

#[tokio::test]
async fn a_missing_file_is_created_0600() {
    let (_dir, path) = temp();
    assert!(matches!(
        SqliteStore::open_read_only(&path),
        Err(StoreError::Missing { .. })
    ));
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.last_exchanges().await.unwrap(), vec![]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(format!("{store:?}").contains("state.db"));
}

#[test]
fn a_file_of_garbage_is_an_error_naming_it() {
    let (_dir, path) = temp();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = open_err(&path);
    assert_eq!(
        err,
        format!(
            "{}: cannot open session state store: file is not a database",
            path.display()
        )
    );
    // Never a silent reset: the bytes are still there.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_corrupt_database_is_an_error_naming_it() {
    let (_dir, path) = temp();
    drop(SqliteStore::open(&path).unwrap());
    // Page 1 holds the header and the schema: scribbling over it fails the open itself.
    let pristine = std::fs::read(&path).unwrap();
    let mut bytes = pristine.clone();
    bytes[108..4096].fill(0xA5);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        open_err(&path),
        format!(
            "{}: cannot open session state store: database disk image is malformed",
            path.display()
        )
    );
    // A table page (page 2 onwards): the schema reads fine, the integrity check at open does not.
    let mut bytes = pristine;
    bytes[4096..].fill(0xA5);
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(&path);
    assert!(
        err.starts_with(&format!(
            "{}: session state store is corrupt: ",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn another_applications_database_or_a_newer_schema_is_refused() {
    let (_dir, path) = temp();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
    assert_eq!(
        open_err(&path),
        format!(
            "{}: not a scangate session state store (schema version 0, this scangate uses 1)",
            path.display()
        )
    );
    other
        .execute_batch("DROP TABLE notes; PRAGMA user_version = 7")
        .unwrap();
    drop(other);
    assert_eq!(
        open_err(&path),
        format!(
            "{}: not a scangate session state store (schema version 7, this scangate uses 1)",
            path.display()
        )
    );
    let err = SqliteStore::open_read_only(&path).unwrap_err().to_string();
    assert!(err.contains("schema version 7"), "{err}");
}

#[test]
fn a_path_that_cannot_be_a_file_is_an_error_naming_it() {
    let (dir, _) = temp();
    // A folder that cannot be created: its parent is a regular file. Root gets this too.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("state.db");
    assert_eq!(
        open_err(&under),
        format!(
            "{}: cannot create or inspect session state store: Not a directory (os error 20)",
            under.display()
        )
    );
    let missing = dir.path().join("no-such-folder").join("state.db");
    let err = open_err(&missing);
    assert!(
        err.starts_with(&format!("{}: cannot create", missing.display())),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    // A folder where the file should be.
    assert_eq!(
        open_err(dir.path()),
        format!(
            "{}: cannot create or inspect session state store: not a regular file",
            dir.path().display()
        )
    );
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp();
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        // Root reads a 000 file; the folder test above covers root.
        eprintln!("skipped: permissions do not bind this user");
        return;
    }
    let err = open_err(&path);
    assert!(
        err.starts_with(&format!("{}: cannot open", path.display())),
        "{err}"
    );
}

#[test]
fn the_store_is_usable_as_a_trait_object() {
    let (_dir, path) = temp();
    let _store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).unwrap());
}
