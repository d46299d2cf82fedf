//! The built `scangate` binary as a child process: spawn it, read its stdout line by line, stop it
//! with a signal and collect its exit code. A child left running by a failed test is killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bind port 0, read it, release it), and that this process
/// has not handed out before. The kernel may give a released port to the very next bind, so two
/// calls in a row (a replica's listen and admin ports) could otherwise return the same port, and
/// the second listener then fails with "Address already in use".
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Whether something accepts connections on 127.0.0.1:`port` within `deadline`.
pub async fn accepts(port: u16, deadline: Duration) -> bool {
    super::eventually(deadline, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
}

/// A running `scangate` child.
pub struct Scangate {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Drains stderr as it comes, so a chatty child never blocks on a full pipe.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Scangate {
    /// Starts `scangate ARGS…` with stdout piped (read by [`Scangate::lines_until`]) and stderr
    /// collected (returned by [`Scangate::stop`]).
    pub fn spawn(args: &[&str]) -> Scangate {
        Self::spawn_logging(args, "info")
    }

    /// Like [`Scangate::spawn`], with `RUST_LOG` set to `level`.
    pub fn spawn_logging(args: &[&str], level: &str) -> Scangate {
        Self::spawn_with(args, level, &[])
    }

    /// Like [`Scangate::spawn_logging`], with more environment variables.
    pub fn spawn_with(args: &[&str], level: &str, env: &[(&str, &str)]) -> Scangate {
        Self::spawn_full(args, level, env, None)
    }

    /// Like [`Scangate::spawn`], with stderr written to `log` (as `2>>file` would) rather than
    /// collected: [`Scangate::stop`] then returns no text.
    pub fn spawn_to_file(args: &[&str], log: std::fs::File) -> Scangate {
        Self::spawn_full(args, "info", &[], Some(log))
    }

    fn spawn_full(
        args: &[&str],
        level: &str,
        env: &[(&str, &str)],
        log: Option<std::fs::File>,
    ) -> Scangate {
        let to_file = log.is_some();
        let mut child = Command::new(env!("CARGO_BIN_EXE_scangate"))
            .args(args)
            .env("RUST_LOG", level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.map_or_else(Stdio::piped, Stdio::from))
            .spawn()
            .unwrap();
        let stderr = (!to_file).then(|| {
            let mut stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Scangate {
            child,
            lines,
            stderr,
        }
    }

    /// Stdout lines up to and including the first one that `last` accepts; panics after `deadline`.
    pub fn lines_until(&self, deadline: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
        let end = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = last(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("stdout ended or stalled ({e}); so far: {seen:#?}"),
            }
        }
    }

    /// The child's process ID (for /proc).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (as `kill -SIGNAL` names it: TERM, INT, HUP) without waiting.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal`, then [`Scangate::wait`]s.
    pub fn stop(self, signal: &str) -> (ExitStatus, String) {
        self.signal(signal);
        self.wait()
    }

    /// Waits up to 10 s for the child to exit. Returns the exit status and everything the child
    /// wrote to stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < end, "scangate did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = match self.stderr.take() {
            Some(reader) => reader.join().unwrap(),
            None => String::new(),
        };
        (status, stderr)
    }
}

impl Drop for Scangate {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
