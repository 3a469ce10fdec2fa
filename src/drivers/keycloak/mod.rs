//! The Keycloak Admin REST API, spoken through the `curl` binary.
//!
//! Secrets never reach curl's argument list: every request is a curl config (`-K -`) written to
//! curl's stdin, holding the URL, the `Authorization` header and the body. curl's argv is always
//! `curl -q -sS -K -`. The HTTP status of every call is checked, and errors quote Keycloak's own
//! `errorMessage` / `error_description` / `error`.
//!
//! The admin token (password grant on the admin realm, `admin-cli` by default) is cached,
//! refreshed shortly before it expires (refresh token first, password grant as fallback), and a
//! call answered 401 is retried once with a fresh token. The legacy `/auth` path prefix
//! (Keycloak < 17) is detected from the admin realm's OpenID discovery document, or set with
//! `KEYCLOAK_PATH_PREFIX`.
//!
//! On top of the plain calls sit idempotent checks: each `check_*` only reads and returns the
//! [`Change`] still needed (or `None`), [`Keycloak::apply`] carries one out, and the `ensure_*`
//! helpers do both. A dry run runs the checks and shows the changes; a real run applies them.

mod rest;
mod token;
mod transport;

pub(crate) use rest::*;
pub(crate) use token::*;
pub use transport::*;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use super::process;

/// Seconds curl may spend connecting, and on a whole request.
const CONNECT_TIMEOUT_SECS: u32 = 10;
const REQUEST_TIMEOUT_SECS: u32 = 60;
/// A token is renewed when less than this part of its lifetime is left (capped at 15 s).
const RENEW_FRACTION: u32 = 4;
const RENEW_MARGIN_CAP: Duration = Duration::from_secs(15);

/// A value that must not be shown: Debug and Display print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the Keycloak server is and how to log in to its admin realm.
#[derive(Debug, Clone)]
pub struct KeycloakSettings {
    /// Base URL without a trailing slash, e.g. `https://sso.example.com` (may include `/auth`).
    pub url: String,
    pub admin_user: String,
    pub admin_password: Secret,
    /// The realm the admin logs in to (`master`).
    pub admin_realm: String,
    /// The public client used for the password grant (`admin-cli`).
    pub admin_client_id: String,
    /// `Some("")` or `Some("/auth")` to skip the detection.
    pub path_prefix: Option<String>,
    /// A CA bundle for a server whose certificate is not in the system store.
    pub ca_cert: Option<PathBuf>,
}

impl KeycloakSettings {
    pub fn new(url: &str, admin_user: &str, admin_password: Secret) -> Result<Self> {
        Ok(Self {
            url: normalize_url(url)?,
            admin_user: admin_user.to_string(),
            admin_password,
            admin_realm: "master".into(),
            admin_client_id: "admin-cli".into(),
            path_prefix: None,
            ca_cert: None,
        })
    }

    /// Reads `KEYCLOAK_URL` (none set or empty: `Ok(None)`, the offline mode),
    /// `KEYCLOAK_ADMIN` (default `admin`), `KEYCLOAK_ADMIN_PASSWORD` (required),
    /// `KEYCLOAK_ADMIN_REALM` (`master`), `KEYCLOAK_ADMIN_CLIENT_ID` (`admin-cli`),
    /// `KEYCLOAK_PATH_PREFIX` (`/auth` or empty; detected when unset) and `KEYCLOAK_CA_CERT`.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let Some(url) = get("KEYCLOAK_URL") else {
            return Ok(None);
        };
        let password = get("KEYCLOAK_ADMIN_PASSWORD").ok_or_else(|| {
            anyhow!(
                "KEYCLOAK_URL is set but KEYCLOAK_ADMIN_PASSWORD is not; give the admin password \
                 in the environment or in the Keycloak credentials file"
            )
        })?;
        let user = get("KEYCLOAK_ADMIN").unwrap_or_else(|| "admin".into());
        let mut settings = Self::new(&url, &user, Secret::new(password))?;
        if let Some(realm) = get("KEYCLOAK_ADMIN_REALM") {
            settings.admin_realm = realm;
        }
        if let Some(client) = get("KEYCLOAK_ADMIN_CLIENT_ID") {
            settings.admin_client_id = client;
        }
        // Unset or empty: detected (no prefix is tried first).
        settings.path_prefix = get("KEYCLOAK_PATH_PREFIX").map(|p| normalize_prefix(&p));
        settings.ca_cert = get("KEYCLOAK_CA_CERT").map(PathBuf::from);
        Ok(Some(settings))
    }
}

/// `auth`, `/auth/` → `/auth`; `/`, `` → ``.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}

fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("KEYCLOAK_URL must start with http:// or https://, got {url:?}"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        bail!("KEYCLOAK_URL has no host: {url:?}");
    }
    if authority.contains('@') {
        bail!("KEYCLOAK_URL must not carry credentials; use KEYCLOAK_ADMIN and KEYCLOAK_ADMIN_PASSWORD");
    }
    if rest.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("KEYCLOAK_URL must be a plain base URL without query, fragment or spaces: {url:?}");
    }
    Ok(url.to_string())
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a path segment,
/// a query value or a form field.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Encodes one path segment. A segment of dots alone (`.`, `..`) would be a relative-path
/// step that curl and servers squash; its dots are percent-encoded too.
pub(crate) fn segment(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c == '.') {
        return "%2E".repeat(text.len());
    }
    encode(text)
}

/// Quotes a value for a curl config file: inside double quotes curl understands `\\`, `\"`,
/// `\n`, `\r`, `\t`; every other byte stands for itself.
pub(crate) fn config_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a partial import does with a resource that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Skip,
    Overwrite,
}

impl IfExists {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            IfExists::Fail => "FAIL",
            IfExists::Skip => "SKIP",
            IfExists::Overwrite => "OVERWRITE",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_uppercase().as_str() {
            "FAIL" => Ok(IfExists::Fail),
            "SKIP" => Ok(IfExists::Skip),
            "OVERWRITE" => Ok(IfExists::Overwrite),
            _ => bail!("unknown partial import policy {text:?}; use FAIL, SKIP or OVERWRITE"),
        }
    }
}

/// What a partial import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub added: u64,
    pub skipped: u64,
    pub overwritten: u64,
    /// `{"action": "ADDED", "resourceType": "REALM_ROLE", "resourceName": .., "id": ..}` each.
    pub results: Vec<Value>,
}

/// A Keycloak server, reached with curl.
pub struct Keycloak {
    settings: KeycloakSettings,
    curl: PathBuf,
    state: Mutex<State>,
    requests: AtomicUsize,
}

impl fmt::Debug for Keycloak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keycloak").field("url", &self.settings.url).finish_non_exhaustive()
    }
}

impl Keycloak {
    /// Finds curl on PATH; the server is not contacted yet.
    pub fn new(settings: KeycloakSettings) -> Result<Self> {
        let curl = process::locate("curl", "install curl (Debian: apt-get install curl)")?;
        Ok(Self::with_curl(settings, &curl))
    }

    pub fn with_curl(settings: KeycloakSettings, curl: &Path) -> Self {
        Self { settings, curl: curl.to_path_buf(), state: Mutex::new(State::default()), requests: AtomicUsize::new(0) }
    }

    /// How many HTTP requests curl has been asked to make so far.
    pub fn requests_sent(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(encode("acme"), "acme");
        assert_eq!(encode("realm_admin-1.x~"), "realm_admin-1.x~");
        assert_eq!(encode("a b/c?d&e=f#g%"), "a%20b%2Fc%3Fd%26e%3Df%23g%25");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a.b"), "a.b");
    }

    #[test]
    fn config_values_are_quoted_for_curl() {
        assert_eq!(config_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(config_quote("x\ny\r\tz"), r#""x\ny\r\tz""#);
    }

    #[test]
    fn parses_headers_body_and_status() {
        let out = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: http://kc/admin/realms/acme/users/42\r\nContent-Length: 0\r\n\r\n\n201";
        let response = parse_curl_output(out).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("location"), Some("http://kc/admin/realms/acme/users/42"));
        assert_eq!(response.body, "");

        let out = "HTTP/2 409 \r\ncontent-type: application/json\r\n\r\n{\"errorMessage\":\"Conflict detected. See logs for details\"}\n409";
        let response = parse_curl_output(out).unwrap();
        assert_eq!(response.status, 409);
        assert_eq!(response.message(), "Conflict detected. See logs for details");
    }

    #[test]
    fn quotes_keycloak_error_fields() {
        let response = |body: &str| HttpResponse { status: 401, headers: vec![], body: body.into() };
        assert_eq!(
            response(r#"{"error":"invalid_grant","error_description":"Invalid user credentials"}"#).message(),
            "Invalid user credentials (invalid_grant)"
        );
        assert_eq!(response(r#"{"error":"Realm not found."}"#).message(), "Realm not found.");
        assert_eq!(response("<html><body>Not   Found</body></html>").message(), "<html><body>Not Found</body></html>");
        assert_eq!(response("").message(), "no details in the answer");
    }

    #[test]
    fn settings_from_vars() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
        };
        assert!(KeycloakSettings::from_vars(vars(&[])).unwrap().is_none());
        let err = KeycloakSettings::from_vars(vars(&[("KEYCLOAK_URL", "http://kc:8080")])).unwrap_err();
        assert!(err.to_string().contains("KEYCLOAK_ADMIN_PASSWORD"), "{err}");
        let s = KeycloakSettings::from_vars(vars(&[
            ("KEYCLOAK_URL", "https://sso.example.com/auth/"),
            ("KEYCLOAK_ADMIN_PASSWORD", "pw"),
            ("KEYCLOAK_PATH_PREFIX", "auth/"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.url, "https://sso.example.com/auth");
        assert_eq!(s.admin_user, "admin");
        assert_eq!(s.path_prefix.as_deref(), Some("/auth"));
        assert_eq!(format!("{s:?}").matches("pw").count(), 0);
        assert!(KeycloakSettings::new("ftp://x", "a", Secret::new("p")).is_err());
        assert!(KeycloakSettings::new("http://user:pw@x", "a", Secret::new("p")).is_err());
    }

    #[test]
    fn tokens_renew_before_they_expire() {
        assert_eq!(renew_after(Duration::from_secs(60)), Duration::from_secs(45));
        assert_eq!(renew_after(Duration::from_secs(300)), Duration::from_secs(285));
        assert_eq!(renew_after(Duration::from_secs(4)), Duration::from_secs(3));
        let now = Instant::now();
        let token = Token::from_response(
            &json!({"access_token": "a", "expires_in": 60, "refresh_token": "r", "refresh_expires_in": 1800}),
            now,
        )
        .unwrap();
        assert!(token.fresh(now + Duration::from_secs(44)));
        assert!(!token.fresh(now + Duration::from_secs(46)));
        assert!(token.refreshable(now + Duration::from_secs(100)));
        assert!(!token.refreshable(now + Duration::from_secs(1790)));
    }
}
