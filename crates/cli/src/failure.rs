//! Failures as the user sees them: `Error: <message>`, `Hint: <remedy>`, and an exit code
//! that scripts can rely on.
//!
//! Exit codes: 0 success; 1 other error (server or upstream); 2 invalid arguments or input;
//! 3 cannot connect or timed out; 4 authentication or authorisation failure; 6 integrity
//! failure (a signature or checksum does not match).

/// Invalid arguments or input.
pub const EXIT_USAGE: u8 = 2;
/// Cannot connect or timed out.
pub const EXIT_CONNECT: u8 = 3;
/// Authentication or authorisation failure.
pub const EXIT_AUTH: u8 = 4;
/// Any other error.
pub const EXIT_OTHER: u8 = 1;
/// An enrollment (or scope request) was rejected, expired or timed out.
pub const EXIT_ENROLLMENT: u8 = 5;
/// Integrity failure: a signature or checksum does not match.
pub const EXIT_INTEGRITY: u8 = 6;

/// A command's failure.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The process exit code.
    pub exit_code: u8,
    /// The server's error code, when the failure came from the API.
    pub api_code: Option<creddy_api::ErrorCode>,
}

impl Failure {
    /// A failure with the given exit code.
    pub fn new(exit_code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            exit_code,
            api_code: None,
        }
    }

    /// An exit code without a message (`creddy run` passing on its command's status).
    pub fn silent(exit_code: u8) -> Self {
        Self::new(exit_code, "")
    }

    /// Invalid input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Writes the failure to stderr (nothing for a silent one).
    pub fn print(&self) {
        if self.message.is_empty() {
            return;
        }
        eprintln!("Error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("Hint: {hint}");
        }
    }

    /// With `-o json`: the failure also as one JSON object on stderr, for scripts (§17).
    pub fn print_json(&self) {
        if self.message.is_empty() {
            return;
        }
        eprintln!(
            "{}",
            serde_json::json!({"error": self.message, "code": self.api_code,
                "remedy": self.hint, "exit_code": self.exit_code})
        );
    }
}

/// Shorthand for command results.
pub type Result<T, E = Failure> = std::result::Result<T, E>;
