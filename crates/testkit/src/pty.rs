//! Driving a program on a pseudo-terminal, for tests of interactive prompts.
//!
//! The program runs under util-linux `script`, which gives it a terminal; the test waits for
//! each prompt to appear on the terminal before typing the answer (typing ahead would be
//! discarded when a password prompt switches the terminal's mode).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A program on a terminal.
#[derive(Debug)]
pub struct Terminal {
    child: Child,
    stdin: ChildStdin,
    screen: Arc<(Mutex<String>, Condvar)>,
    /// How much of the screen earlier expectations consumed.
    cursor: usize,
}

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

impl Terminal {
    /// Starts `program ARGS…` on a terminal with only `PATH` and `envs` in its environment.
    pub fn spawn(program: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .map(|a| quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-qfec", &command_line, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "dumb")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("script (util-linux) is needed for terminal tests: {e}"));
        let stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        let mut stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let screen = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, changed) = &*sink;
                if let Ok(mut text) = lock.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                changed.notify_all();
            }
            sink.1.notify_all();
        });
        Self {
            child,
            stdin,
            screen,
            cursor: 0,
        }
    }

    /// Waits until `text` appears on the terminal after what earlier expectations matched
    /// (as `expect` does), up to a generous limit; panics with the screen if it does not.
    pub fn expect(&mut self, text: &str) {
        if !self.expect_within(text, Duration::from_secs(60)) {
            let screen = self.screen.0.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("{text:?} never appeared; the terminal shows:\n{screen}");
        }
    }

    /// Like [`Terminal::expect`], but reports whether `text` appeared within `limit`.
    pub fn expect_within(&mut self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (lock, changed) = &*self.screen;
        let mut screen = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(at) = screen.get(self.cursor..).and_then(|rest| rest.find(text)) {
                self.cursor += at + text.len();
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            screen = changed
                .wait_timeout(screen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Answers a hidden (password) prompt and waits for `next`. A password prompt switches
    /// the terminal's mode with TCSAFLUSH, which discards input that arrived a moment too
    /// early; if `next` does not follow, the answer was discarded and is typed once more.
    pub fn answer_hidden(&mut self, line: &str, next: &str) {
        self.send_line(line);
        if !self.expect_within(next, Duration::from_secs(5)) {
            self.send_line(line);
            self.expect(next);
        }
    }

    /// Types a line.
    pub fn send_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\r").as_bytes())
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("typing: {e}"));
    }

    /// Asserts that `secret` was read by a hidden prompt and never shown once accepted.
    ///
    /// dialoguer writes `…: [hidden]` when it accepts a hidden answer; the secret must not
    /// appear after the last such line. (Before it, the terminal may have echoed an answer
    /// typed a moment before the prompt turned echo off; that answer was discarded and typed
    /// again by [`Terminal::answer_hidden`].)
    pub fn assert_hidden(screen: &str, secret: &str) {
        let (_, after) = screen
            .rsplit_once(": [hidden]")
            .unwrap_or_else(|| panic!("no hidden prompt was answered:\n{screen}"));
        assert!(
            !after.contains(secret),
            "a hidden answer was shown:\n{screen}"
        );
    }

    /// Waits for the program to end; returns its exit code and everything it showed.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().ok().and_then(|s| s.code());
        let screen = self.screen.0.lock().map(|s| s.clone()).unwrap_or_default();
        (status, screen)
    }
}
