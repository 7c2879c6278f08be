//! Git over HTTPS for the GitHub stand-in's repositories: the real `git http-backend` behind
//! a small front that, like GitHub, accepts only installation tokens the stand-in knows
//! (HTTP Basic, the token as the password): a clone needs `contents: read` on the
//! repository, a push `contents: write`. No credential is answered 401 with a Basic
//! challenge (so git asks its credential helper); a token that does not reach the repository
//! or lacks the permission is answered 403, an unknown or expired one 401.
//!
//! The front speaks TLS with a certificate made for 127.0.0.1 (git trusts it through
//! `GIT_SSL_CAINFO`, [`GitFront::ca_file`]). Its bare repositories start from the stand-in's
//! files at [`GithubStandin::serve_git`] and then live on their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

use crate::github::{GithubStandin, Logged};

/// The git server.
#[derive(Debug)]
pub struct GitFront {
    url: String,
    ca_file: PathBuf,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitFront {
    /// `https://127.0.0.1:PORT`: repositories are at `/{owner}/{name}.git`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The certificate git must trust (`GIT_SSL_CAINFO`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The bare repository of `owner/name`, to inspect what was pushed.
    pub fn bare(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }
}

struct Front {
    standin: GithubStandin,
    root: PathBuf,
}

fn git(args: &[&str], dir: &Path) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("git is required for this test: {e}"));
    assert!(status.success(), "git {args:?} failed");
}

impl GithubStandin {
    /// Serves the stand-in's repositories over HTTPS through `git http-backend`.
    pub async fn serve_git(&self) -> GitFront {
        let dir = tempfile::TempDir::new().expect("a temp dir");
        let root = dir.path().join("repos");
        let repositories = self.repositories_with_files();
        let seed_root = root.clone();
        tokio::task::spawn_blocking(move || {
            for (owner, name, files) in repositories {
                let work = seed_root.join(".work").join(&owner).join(&name);
                std::fs::create_dir_all(&work).expect("a work tree");
                git(&["init", "-q", "-b", "main"], &work);
                for (path, content) in files {
                    let file = work.join(path);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).expect("a directory");
                    }
                    std::fs::write(file, content).expect("the file is written");
                }
                git(&["add", "-A"], &work);
                git(
                    &[
                        "-c",
                        "user.name=standin",
                        "-c",
                        "user.email=standin@example.com",
                    ]
                    .into_iter()
                    .chain(["commit", "-qm", "initial"])
                    .collect::<Vec<_>>(),
                    &work,
                );
                let bare = seed_root.join(&owner).join(format!("{name}.git"));
                std::fs::create_dir_all(bare.parent().expect("a parent")).expect("a directory");
                git(
                    &["clone", "-q", "--bare", ".", &bare.display().to_string()],
                    &work,
                );
                git(&["config", "http.receivepack", "true"], &bare);
            }
        })
        .await
        .expect("the repositories are made");
        let (acceptor, ca_pem) = tls_for_loopback();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("the file is written");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the git front binds");
        let url = format!("https://{}", listener.local_addr().expect("an address"));
        let front = Arc::new(Front {
            standin: self.clone(),
            root: root.clone(),
        });
        let router = axum::Router::new()
            .fallback(serve_git_request)
            .with_state(front);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        GitFront {
            url,
            ca_file,
            root,
            _dir: dir,
        }
    }
}

/// A TLS acceptor with a fresh self-signed certificate for 127.0.0.1, and that certificate.
fn tls_for_loopback() -> (tokio_rustls::TlsAcceptor, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a certificate");
    let cert_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("the certificate is usable");
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert_pem)
}

/// The token of HTTP Basic credentials (the password).
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let text = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    text.split_once(':').map(|(_, p)| p.to_owned())
}

async fn serve_git_request(
    State(front): State<Arc<Front>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (Some(owner), Some(repo)) = (parts.next(), parts.next()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(name) = repo.strip_suffix(".git") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let push = query.contains("service=git-receive-pack") || path.ends_with("/git-receive-pack");
    let record = |caller: &str, status: u16| {
        front.standin.record(Logged {
            method: method.to_string(),
            path: path.clone(),
            caller: caller.to_owned(),
            status,
        });
    };
    let Some(token) = basic_password(&headers) else {
        record("anonymous", 401);
        return challenge("Authentication required\n");
    };
    if !front.standin.token_known(&token) {
        record("token (refused)", 401);
        return challenge("Invalid username or token.\n");
    }
    if !front.standin.token_allows(&token, owner, name, push) {
        record("token (forbidden)", 403);
        return (
            StatusCode::FORBIDDEN,
            format!("Permission to {owner}/{name}.git denied.\n"),
        )
            .into_response();
    }
    let answer = http_backend(&front.root, &method, &path, &query, &headers, body).await;
    record(
        if push { "git push" } else { "git fetch" },
        answer.status().as_u16(),
    );
    answer
}

/// 401 with a Basic challenge, so that git asks its credential helper.
fn challenge(message: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Basic realm=\"GitHub\"")],
        message,
    )
        .into_response()
}

/// Runs `git http-backend` as a CGI program for one request.
async fn http_backend(
    root: &Path,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    use tokio::io::AsyncWriteExt as _;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("git http-backend is required for this test: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let output = child
        .wait_with_output()
        .await
        .expect("git http-backend ends");
    cgi_response(&output.stdout)
}

/// A CGI program's output as an HTTP response: headers (`Status:` among them), a blank line,
/// the body.
fn cgi_response(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| (at, 2))
        });
    let Some((at, gap)) = split else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let head = String::from_utf8_lossy(&output[..at]);
    let mut response = Response::new(axum::body::Body::from(output[at + gap..].to_vec()));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse::<u16>().ok());
            *response.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
