//! One running plugin process: the pipes, the requests in flight, and the tasks that read
//! its stdout (answers) and stderr (log lines).
//!
//! A connection is *dead* once the process exits or breaks the protocol (an unparsable or
//! oversized frame, an answer to nothing). Then every call in flight fails at once with
//! [`HostError::Unavailable`] and the supervisor starts a new process.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};

use super::HostError;
use crate::frame::{FrameError, read_frame, write_frame};
use crate::protocol::{MAX_FRAME, Request, Response, RpcError};

/// Environment variables passed through from the server when set.
const PASSED_THROUGH: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
/// The longest stderr line copied into the log.
const MAX_LOG_LINE: usize = 4096;

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>;

/// A live plugin process.
#[derive(Debug)]
pub(crate) struct Connection {
    child: AsyncMutex<Child>,
    stdin: AsyncMutex<ChildStdin>,
    pending: std::sync::Arc<Pending>,
    next_id: AtomicU64,
    dead: watch::Receiver<Option<Death>>,
    alive: std::sync::Arc<AtomicBool>,
    /// Answers that arrived after their call had given up (or for no call): dropped.
    late: std::sync::Arc<AtomicU64>,
    backend: String,
}

/// How many times a start refused with "text file busy" is tried again: 2 ms doubling to
/// 1 s, about 2 s in all (five tries, 62 ms, were not always enough on a loaded CI machine,
/// where a forked child can take that long to reach its exec).
const BUSY_RETRIES: u32 = 10;

/// Spawns `command`, trying again (after 2, 4, 8, … ms) while the kernel answers ETXTBSY: a
/// child that another thread of this process forked a moment earlier holds, until its own
/// exec, a copy of every descriptor open at that moment, including the close-on-exec one the
/// verified image was written through; the image is then "busy" for that instant.
async fn spawn_past_busy_images(command: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && attempt < BUSY_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1 << attempt)).await;
            }
            other => return other,
        }
    }
}

impl Connection {
    /// Starts `program serve` (the verified image of `binary`, which it sees as its name)
    /// with a cleared environment and wires up its pipes.
    pub(crate) async fn spawn(
        program: &Path,
        binary: &Path,
        backend: &str,
        home: Option<&Path>,
    ) -> Result<Self, HostError> {
        let mut command = Command::new(program);
        command
            .arg0(binary)
            .arg("serve")
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("TZ", "UTC")
            .env("LANG", "C.UTF-8")
            .env("CREDDY_PLUGIN_PROTOCOL", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(home) = home
            .map(Path::as_os_str)
            .or(std::env::var_os("HOME").as_deref())
            .map(ToOwned::to_owned)
        {
            command.env("HOME", home);
        }
        for name in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let mut child = spawn_past_busy_images(&mut command).await.map_err(|e| {
            HostError::Unavailable(format!("cannot start {}: {e}", binary.display()))
        })?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    return Err(HostError::Unavailable(
                        "the plugin's pipes could not be opened".into(),
                    ));
                }
            };
        let pending: std::sync::Arc<Pending> = std::sync::Arc::default();
        let alive = std::sync::Arc::new(AtomicBool::new(true));
        let late = std::sync::Arc::new(AtomicU64::new(0));
        let (dead_tx, dead) = watch::channel(None);
        tokio::spawn(read_answers(
            stdout,
            pending.clone(),
            alive.clone(),
            late.clone(),
            dead_tx,
            backend.to_owned(),
        ));
        tokio::spawn(forward_log(stderr, backend.to_owned()));
        Ok(Self {
            child: AsyncMutex::new(child),
            stdin: AsyncMutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
            dead,
            alive,
            late,
            backend: backend.to_owned(),
        })
    }

    /// How many answers this process sent after their call had given up, all dropped.
    pub(crate) fn late_answers(&self) -> u64 {
        self.late.load(Ordering::SeqCst)
    }

    /// True until the process exits or breaks the protocol.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Resolves when the connection dies.
    pub(crate) async fn died(&self) {
        let mut dead = self.dead.clone();
        let _ = dead.wait_for(Option::is_some).await;
    }

    /// Why the connection died, as the error for calls it took down.
    fn death(&self) -> HostError {
        match self.dead.borrow().clone() {
            Some(Death::Violation(reason)) => HostError::Protocol(reason),
            Some(Death::Exited(reason)) => HostError::Unavailable(reason),
            None => HostError::Unavailable("the plugin stopped while handling the call".into()),
        }
    }

    /// Calls `method` and waits up to `timeout` for the answer. A late answer is dropped.
    pub(crate) async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, HostError> {
        if !self.is_alive() {
            return Err(HostError::Unavailable("the plugin is not running".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let params = serde_json::to_value(params)
            .map_err(|e| HostError::Protocol(format!("cannot encode {method} parameters: {e}")))?;
        let request = Request {
            jsonrpc: "2.0".into(),
            id,
            method: method.to_owned(),
            params,
        };
        let text =
            serde_json::to_string(&request).map_err(|e| HostError::Protocol(e.to_string()))?;
        if text.len() > MAX_FRAME {
            return Err(HostError::Protocol(format!(
                "the {method} call is larger than the frame limit"
            )));
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let written = {
            let mut stdin = self.stdin.lock().await;
            write_frame(&mut *stdin, &text).await
        };
        if written.is_err() {
            lock(&self.pending).remove(&id);
            return Err(HostError::Unavailable(
                "the plugin stopped reading its input".into(),
            ));
        }
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                // The reader records the cause before it fails the calls in flight.
                return Err(self.death());
            }
            Err(_) => {
                lock(&self.pending).remove(&id);
                return Err(HostError::Timeout {
                    method: method.to_owned(),
                    after: timeout,
                });
            }
        };
        match answer {
            Ok(value) => serde_json::from_value(value)
                .map_err(|e| HostError::Protocol(format!("malformed {method} result: {e}"))),
            Err(error) => Err(HostError::from_rpc(error)),
        }
    }

    /// Stops the process: asks politely when it is alive, then kills it after `grace`.
    pub(crate) async fn stop(&self, grace: Duration) {
        if self.is_alive() {
            let _: Result<Value, _> = self
                .call(
                    crate::protocol::method::SHUTDOWN,
                    &serde_json::json!({}),
                    grace,
                )
                .await;
        }
        let mut child = self.child.lock().await;
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            tracing::warn!(backend = %self.backend, "plugin did not exit after shutdown; killing it");
            let _ = child.kill().await;
        }
        self.alive.store(false, Ordering::SeqCst);
    }

    /// Kills the process at once.
    pub(crate) async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        self.alive.store(false, Ordering::SeqCst);
    }
}

fn lock(
    pending: &Pending,
) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>> {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a connection ended.
#[derive(Debug, Clone)]
pub(crate) enum Death {
    /// The process exited or its output closed.
    Exited(String),
    /// The process broke the protocol.
    Violation(String),
}

/// Reads answers until the process ends or breaks the protocol, then fails what is pending.
async fn read_answers<R: AsyncRead + Unpin>(
    stdout: R,
    pending: std::sync::Arc<Pending>,
    alive: std::sync::Arc<AtomicBool>,
    late: std::sync::Arc<AtomicU64>,
    dead: watch::Sender<Option<Death>>,
    backend: String,
) {
    let mut reader = BufReader::new(stdout);
    let death = loop {
        let line = match read_frame(&mut reader, MAX_FRAME).await {
            Ok(Some(line)) => line,
            Ok(None) => break Death::Exited("the plugin exited".to_owned()),
            Err(FrameError::TooLarge { limit }) => {
                break Death::Violation(format!("the plugin sent a message over {limit} bytes"));
            }
            Err(FrameError::Io(e)) => {
                break Death::Exited(format!("reading from the plugin failed: {e}"));
            }
        };
        let response: Response = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(_) => {
                break Death::Violation(
                    "the plugin wrote something that is not a JSON-RPC response on stdout"
                        .to_owned(),
                );
            }
        };
        let Some(id) = response.id else {
            break Death::Violation("the plugin could not parse a request".to_owned());
        };
        let outcome = match (response.result, response.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        };
        match lock(&pending).remove(&id) {
            Some(waiter) => {
                let _ = waiter.send(outcome);
            }
            None => {
                late.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(%backend, id, "dropped a late or unknown answer from the plugin")
            }
        }
    };
    alive.store(false, Ordering::SeqCst);
    tracing::warn!(%backend, "plugin connection lost: {death:?}");
    let _ = dead.send(Some(death));
    // Dropping the senders fails every call in flight at once.
    lock(&pending).clear();
}

/// Copies the plugin's stderr into the log, one event per line, tagged with the backend.
async fn forward_log<R: AsyncRead + Unpin>(stderr: R, backend: String) {
    let mut reader = BufReader::new(stderr);
    loop {
        match read_frame(&mut reader, MAX_LOG_LINE).await {
            Ok(Some(line)) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "creddy_plugin::log", %backend, "{}", text.trim_end());
            }
            Ok(None) | Err(FrameError::Io(_)) => return,
            Err(FrameError::TooLarge { .. }) => {
                tracing::info!(target: "creddy_plugin::log", %backend, "(a log line over {MAX_LOG_LINE} bytes was dropped)")
            }
        }
    }
}
