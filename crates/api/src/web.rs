//! The web admin site's files: everything outside `/api` and `/metrics` is a static file of the
//! UI's directory (built by `scripts/web.sh` from `web/`: the pages and the npm packages they use),
//! answered without a login — the pages themselves speak only the REST API, which needs one.
//! When the directory is missing the daemon still runs and `/` says how to install the UI.

use std::path::{Component, Path, PathBuf};

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Router};

use crate::routes::ApiError;

/// Environment variable naming the UI's directory (when `--web-dir` is not given).
pub const ENV: &str = "VINE_WEB_DIR";
/// Where a packaged vine keeps the UI.
pub const INSTALLED: &str = "/usr/share/vine/web";
/// The UI as `scripts/web.sh` builds it in this source tree.
pub const SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist");

/// Largest file served (the UI's biggest bundle is well under this).
const MAX_FILE: u64 = 16 << 20;

/// The directory the UI's files are served from.
#[derive(Debug, Clone)]
pub struct WebRoot(pub PathBuf);

/// The UI's directory: `flag`, else `$VINE_WEB_DIR`, else this source tree's `web/dist` when it
/// exists, else [`INSTALLED`].
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    if let Some(f) = flag.or_else(|| std::env::var_os(ENV).map(PathBuf::from)) {
        return f;
    }
    let tree = PathBuf::from(SOURCE_TREE);
    if tree.join("index.html").is_file() {
        return tree.canonicalize().unwrap_or(tree);
    }
    PathBuf::from(INSTALLED)
}

/// The router serving the UI from `dir` besides the API.
pub fn with_ui(api: Router, dir: PathBuf) -> Router {
    api.layer(Extension(WebRoot(dir)))
}

/// The content type of a file name.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `url_path` as a path below the root, or `None` when it tries to leave it.
fn relative(url_path: &str) -> Option<PathBuf> {
    let trimmed = url_path.trim_start_matches('/');
    let rel = if trimmed.is_empty() { "index.html" } else { trimmed };
    let p = Path::new(rel);
    p.components().all(|c| matches!(c, Component::Normal(_))).then(|| p.to_path_buf())
}

fn missing_ui(dir: &Path) -> Response {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>vine</title>\
         <h1>vine: the web UI is not installed</h1>\
         <p>The daemon runs and its REST API answers under <code>/api</code> \
         (see <code>/api/openapi.json</code>), but the web admin site's files are missing from \
         <code>{}</code>.</p><p>Build them with <code>bash scripts/web.sh</code> (run by \
         <code>scripts/setup.sh</code>), or point the daemon at them with <code>--web-dir</code> \
         or <code>{ENV}</code>.</p>",
        html_escape(&dir.display().to_string())
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

/// A path that is neither an endpoint nor a file of the UI.
fn no_such(path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint or file: {path} (the API is under /api, see /api/openapi.json)"),
    )
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Security headers of every UI file: only this origin's scripts, no framing.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    r
}

/// Everything no endpoint matched: an API 404, or a file of the UI.
pub async fn fallback(root: Option<Extension<WebRoot>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/api" || path.starts_with("/api/") || path == "/metrics" {
        return ApiError::new(StatusCode::NOT_FOUND, "no such endpoint (see /api/openapi.json)")
            .into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no {} endpoint at {path}", req.method()))
            .into_response();
    }
    let dir = match root {
        Some(Extension(WebRoot(d))) => d,
        None => resolve(None),
    };
    if !dir.join("index.html").is_file() {
        return if path == "/" || path == "/index.html" { missing_ui(&dir) } else { no_such(&path) };
    }
    let Some(rel) = relative(&path) else { return no_such(&path) };
    let file = dir.join(&rel);
    let served = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE => std::fs::read(&file).map(Some),
            _ => Ok(None),
        }
    })
    .await;
    match served {
        Ok(Ok(Some(bytes))) => {
            let cache = if rel.starts_with("vendor") { "max-age=3600" } else { "no-cache" };
            harden(
                (
                    [
                        (CONTENT_TYPE, HeaderValue::from_static(content_type(&rel))),
                        (CACHE_CONTROL, HeaderValue::from_static(cache)),
                    ],
                    bytes,
                )
                    .into_response(),
            )
        }
        Ok(Ok(None)) => no_such(&path),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, %path, "reading a web UI file failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "reading the file failed").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_never_leave_the_root() {
        assert_eq!(relative("/"), Some(PathBuf::from("index.html")));
        assert_eq!(relative("/app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(relative("/vendor/xterm.css"), Some(PathBuf::from("vendor/xterm.css")));
        assert_eq!(relative("/../etc/passwd"), None);
        assert_eq!(relative("/vendor/../../x"), None);
        assert_eq!(relative("//etc/passwd"), Some(PathBuf::from("etc/passwd")));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type(Path::new("a.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }
}

#[cfg(test)]
mod serving {
    use super::*;
    use axum::body::Body;

    async fn get(root: &Path, path: &str) -> (StatusCode, String) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let r = fallback(Some(Extension(WebRoot(root.to_path_buf()))), req).await;
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn without_the_ui_files_the_root_page_says_how_to_build_them() {
        let dir = tempfile::tempdir().unwrap();
        let (status, body) = get(dir.path(), "/").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("scripts/web.sh") && body.contains("/api/openapi.json"), "{body}");
        let (status, body) = get(dir.path(), "/api/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"error\""), "API paths answer JSON: {body}");
    }

    #[tokio::test]
    async fn ui_files_are_served_and_nothing_outside_them() {
        let dir = tempfile::tempdir().unwrap();
        let ui = dir.path().join("ui");
        std::fs::create_dir_all(ui.join("vendor")).unwrap();
        std::fs::write(ui.join("index.html"), "<p>vine</p>").unwrap();
        std::fs::write(ui.join("vendor/v.js"), "let x = 1;").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        assert_eq!(get(&ui, "/").await, (StatusCode::OK, "<p>vine</p>".to_string()));
        assert_eq!(get(&ui, "/vendor/v.js").await.1, "let x = 1;");
        assert_eq!(get(&ui, "/../secret").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&ui, "/vendor/%2e%2e/%2e%2e/secret").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&ui, "/missing.js").await.0, StatusCode::NOT_FOUND);
    }
}
