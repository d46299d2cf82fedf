//! Reload triggers: a folder watch (inotify on Linux, notify elsewhere), SIGHUP and an optional poll interval, all feeding one
//! debounced reload loop that calls [`Gateway::reload`].
//!
//! The watch is on the config file's folder, not the file: editors that save by rename, Kubernetes
//! ConfigMap `..data` symlink swaps and `token` commands (temp file + rename) all replace the inode,
//! which a watch on the file itself would lose.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::state::{Gateway, ReloadOutcome};

/// Quiet time after the last event before reloading: an editor's save or a ConfigMap swap is several
/// events in a row, all within a few milliseconds. 100 ms covers them with a wide margin and leaves
/// the reload-latency budget (100k tokens applied ≤ 300 ms after the rename) to parsing; a file
/// written slowly in place may still be read half-written, which fails validation, keeps the last
/// good config and is followed by the next event's reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Longest a steady stream of events can hold a reload back: a folder that changes every 100 ms
/// still reloads at least once a second.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// How long a reload's large buffers are kept for the next one (see
/// [`crate::config::load::Buffers`]): reloads closer together than this (`token` commands run
/// one after another, an editor saving twice) reuse them; after this much quiet they are dropped,
/// so the memory between reloads is what the config in force needs.
pub const KEEP_BUFFERS: Duration = Duration::from_secs(10);

/// Why the reload triggers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The folder could not be watched (no such folder, too many inotify watches).
    #[error("{}: cannot watch folder: {source}", path.display())]
    Watch {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot install SIGHUP handler: {0}")]
    Signal(std::io::Error),
}

/// Keeps the triggers alive; dropping it stops the folder watch.
pub struct Reloader {
    _watcher: Option<FolderWatch>,
}

/// The folder watch: a task reading inotify events on Linux, notify's watcher elsewhere. Dropping
/// it stops the watch.
#[cfg(target_os = "linux")]
struct FolderWatch(tokio::task::AbortHandle);

#[cfg(target_os = "linux")]
impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(not(target_os = "linux"))]
struct FolderWatch(#[allow(dead_code)] notify::RecommendedWatcher);

/// Which reload triggers to run. `serve` runs all three (poll only with `--reload-poll`).
#[derive(Debug, Clone, Copy)]
pub struct Triggers {
    /// Watch the folders of the config, key and certificate files.
    pub watch_folder: bool,
    /// Reload on SIGHUP.
    pub sighup: bool,
    /// Also reload every this often.
    pub poll: Option<Duration>,
}

impl Triggers {
    /// Folder watch and SIGHUP, with an optional poll.
    pub fn all(poll: Option<Duration>) -> Triggers {
        Triggers {
            watch_folder: true,
            sighup: true,
            poll,
        }
    }
}

/// Starts the reload triggers for `gw`.
pub fn start(gw: Arc<Gateway>, triggers: Triggers) -> Result<Reloader, WatchError> {
    let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
    let watcher = match triggers.watch_folder {
        true => Some(watch_folders(&gw, tx.clone())?),
        false => None,
    };

    if triggers.sighup {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(WatchError::Signal)?;
        let hup_tx = tx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if hup_tx.send("sighup").is_err() {
                    break;
                }
            }
        });
    }

    if let Some(every) = triggers.poll {
        let poll_tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if poll_tx.send("poll").is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(reload_loop(gw, rx));
    Ok(Reloader { _watcher: watcher })
}

/// The files whose folders are watched, and the names in those folders that matter.
fn watched(gw: &Gateway) -> (HashSet<PathBuf>, HashSet<OsString>) {
    let snap = gw.snapshot.load();
    let mut files = vec![
        gw.config_path.clone(),
        snap.settings.gateway.token_key_file.clone(),
    ];
    // A config reached through a symlink is edited at its target (that is where `token` commands
    // write), so the target's folder is watched too.
    if let Ok(real) = std::fs::canonicalize(&gw.config_path) {
        files.push(real);
    }
    if let Some(tls) = &snap.settings.server.tls {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    let names = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_owned()))
        .collect();
    let folders = files.iter().map(|f| folder_of(f)).collect();
    (folders, names)
}

/// Whether an entry of a watched folder is one a reload reads: a watched file's name, or one of
/// Kubernetes' atomic-swap entries (`..data`, `..2026_…`).
fn relevant(name: &std::ffi::OsStr, names: &HashSet<OsString>) -> bool {
    names.contains(name) || name.to_string_lossy().starts_with("..")
}

/// On Linux the kernel is asked only for the events a reload needs: a file closed after writing,
/// renamed in or out, created, deleted, or its attributes changed (`touch`, `chmod`). Not for every
/// `write` or `open`: a log or state file kept in the config folder would otherwise wake this task
/// on every line it writes.
#[cfg(target_os = "linux")]
fn watch_folders(
    gw: &Gateway,
    tx: mpsc::UnboundedSender<&'static str>,
) -> Result<FolderWatch, WatchError> {
    use futures_util::StreamExt;
    use inotify::{Inotify, WatchMask};

    let (folders, names) = watched(gw);
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| WatchError::Watch { path, source }
    };
    let inotify = Inotify::init().map_err(err(&gw.config_path))?;
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
    for folder in &folders {
        inotify.watches().add(folder, mask).map_err(err(folder))?;
    }
    let mut events = inotify
        .into_event_stream([0u8; 4096])
        .map_err(err(&gw.config_path))?;
    let received = gw.metrics.watch_events();
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            received.inc();
            let Ok(event) = event else {
                // The queue overflowed or the descriptor failed: reload to be safe.
                if tx.send("watch").is_err() {
                    return;
                }
                continue;
            };
            // An event on a folder itself (deleted, moved) has no name: reload, which reports
            // the missing file and keeps the last good config.
            let wanted = match event.name {
                Some(name) => relevant(&name, &names),
                None => true,
            };
            if wanted && tx.send("watch").is_err() {
                return;
            }
        }
    });
    Ok(FolderWatch(task.abort_handle()))
}

/// Elsewhere, notify's watcher, which cannot narrow its events, filtered by name here.
#[cfg(not(target_os = "linux"))]
fn watch_folders(
    gw: &Gateway,
    tx: mpsc::UnboundedSender<&'static str>,
) -> Result<FolderWatch, WatchError> {
    use notify::{RecursiveMode, Watcher};

    let (folders, names) = watched(gw);
    let received = gw.metrics.watch_events();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        received.inc();
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let wanted = event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| relevant(n, &names)));
        if wanted {
            let _ = tx.send("watch");
        }
    })
    .map_err(|source| WatchError::Watch {
        path: gw.config_path.clone(),
        source: std::io::Error::other(source),
    })?;
    for folder in folders {
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch {
                path: folder.clone(),
                source: std::io::Error::other(source),
            })?;
    }
    Ok(FolderWatch(watcher))
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

async fn reload_loop(gw: Arc<Gateway>, mut rx: mpsc::UnboundedReceiver<&'static str>) {
    let mut holding = false;
    loop {
        let trigger = match next_or_quiet(&mut rx, holding).await {
            Next::Trigger(trigger) => trigger,
            Next::Quiet => {
                let worker = Arc::clone(&gw);
                let released = tokio::task::spawn_blocking(move || worker.release_buffers());
                if let Ok(bytes) = released.await {
                    tracing::debug!(bytes, "reload buffers released");
                }
                holding = false;
                continue;
            }
            Next::Closed => return,
        };
        let Some(trigger) = debounce(trigger, &mut rx).await else {
            return;
        };
        reload_now(&gw, trigger).await;
        holding = true;
    }
}

/// What the reload loop does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Reload.
    Trigger(&'static str),
    /// [`KEEP_BUFFERS`] passed without a trigger: drop the last reload's buffers.
    Quiet,
    /// Every trigger is gone.
    Closed,
}

/// Waits for the next trigger, or while the last reload's buffers are held, for [`KEEP_BUFFERS`]
/// at most.
async fn next_or_quiet(rx: &mut mpsc::UnboundedReceiver<&'static str>, holding: bool) -> Next {
    let next = match holding {
        true => match tokio::time::timeout(KEEP_BUFFERS, rx.recv()).await {
            Ok(next) => next,
            Err(_) => return Next::Quiet,
        },
        false => rx.recv().await,
    };
    next.map_or(Next::Closed, Next::Trigger)
}

/// Waits until folder events stop for [`DEBOUNCE`], or [`DEBOUNCE_MAX`] after the first one.
/// SIGHUP and poll skip the wait. `None` when the channel closed.
async fn debounce(
    mut trigger: &'static str,
    rx: &mut mpsc::UnboundedReceiver<&'static str>,
) -> Option<&'static str> {
    if trigger != "watch" {
        return Some(trigger);
    }
    let latest = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet_until = (tokio::time::Instant::now() + DEBOUNCE).min(latest);
        match tokio::time::timeout_at(quiet_until, rx.recv()).await {
            Ok(Some(next)) => trigger = next,
            Ok(None) => return None,
            Err(_) => return Some(trigger),
        }
    }
}

/// Runs one reload off the async threads and logs the outcome.
pub async fn reload_now(gw: &Arc<Gateway>, trigger: &'static str) {
    let worker = Arc::clone(gw);
    let result = tokio::task::spawn_blocking(move || worker.reload()).await;
    match result {
        Ok(Ok(ReloadOutcome::Applied {
            generation,
            counts,
            elapsed,
        })) => tracing::info!(
            trigger,
            generation,
            added = counts.added,
            removed = counts.removed,
            changed = counts.changed,
            enabled = counts.enabled,
            disabled = counts.disabled,
            ms = elapsed.as_secs_f64() * 1000.0,
            "config reloaded"
        ),
        Ok(Ok(ReloadOutcome::Unchanged)) => tracing::debug!(trigger, "config unchanged"),
        Ok(Err(e)) => tracing::error!(
            trigger,
            generation = gw.generation(),
            error = %e,
            "config reload failed; keeping the last good config"
        ),
        Err(e) => tracing::error!(trigger, error = %e, "config reload task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Buffers held: the next trigger, or after KEEP_BUFFERS of quiet, a release. None held: no
    /// release, however long the quiet.
    #[tokio::test(start_paused = true)]
    async fn buffers_are_released_after_a_quiet_spell_only() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let feeder = tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(KEEP_BUFFERS - Duration::from_millis(1)).await;
                let _ = tx.send("watch");
            }
        });
        assert_eq!(next_or_quiet(&mut rx, true).await, Next::Trigger("watch"));
        assert_eq!(start.elapsed(), KEEP_BUFFERS - Duration::from_millis(1));
        feeder.await.unwrap();

        let start = Instant::now();
        assert_eq!(next_or_quiet(&mut rx, true).await, Next::Quiet);
        assert_eq!(start.elapsed(), KEEP_BUFFERS);

        let start = Instant::now();
        let feeder = tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(KEEP_BUFFERS * 3).await;
                let _ = tx.send("poll");
            }
        });
        assert_eq!(next_or_quiet(&mut rx, false).await, Next::Trigger("poll"));
        assert_eq!(start.elapsed(), KEEP_BUFFERS * 3);
        feeder.await.unwrap();
        drop(tx);
        assert_eq!(next_or_quiet(&mut rx, false).await, Next::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_waits_for_quiet_but_not_longer_than_the_cap() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // A burst that ends: reload DEBOUNCE after the last event.
        let start = Instant::now();
        for _ in 0..3 {
            tx.send("watch").unwrap();
        }
        assert_eq!(debounce("watch", &mut rx).await, Some("watch"));
        assert_eq!(start.elapsed(), DEBOUNCE);

        // Events every 50 ms (quicker than DEBOUNCE) for 5 s: the reload still happens after
        // DEBOUNCE_MAX.
        let feeder = tokio::spawn({
            let tx = tx.clone();
            async move {
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send("watch");
                }
            }
        });
        let start = Instant::now();
        assert_eq!(debounce("watch", &mut rx).await, Some("watch"));
        assert_eq!(start.elapsed(), DEBOUNCE_MAX);
        feeder.abort();

        // SIGHUP does not wait at all.
        let start = Instant::now();
        assert_eq!(debounce("sighup", &mut rx).await, Some("sighup"));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
