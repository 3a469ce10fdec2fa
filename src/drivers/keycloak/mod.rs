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

mod clients;
mod groups;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::process;
use crate::tenant::realm::{ClientRole, RealmSpec, RoleSpec, UserSpec};

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
pub struct Settings {
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

impl Settings {
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
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
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
pub fn normalize_prefix(prefix: &str) -> String {
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
pub fn encode(text: &str) -> String {
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
pub fn segment(text: &str) -> String {
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

/// What a created/updated/unchanged step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change a check found still needed. Its description names what changes and never holds
/// a secret; [`Keycloak::apply`] carries it out (ids are looked up then, so a plan made before
/// the realm exists still applies).
#[derive(Debug, Clone)]
pub struct Change {
    pub outcome: Outcome,
    pub description: String,
    action: Action,
}

impl Change {
    /// True for the changes that send a password.
    pub fn sets_password(&self) -> bool {
        matches!(self.action, Action::SetPassword { .. })
    }
}

#[derive(Debug, Clone)]
enum Action {
    CreateRealm(Value),
    UpdateRealm { realm: String, rep: Value },
    CreateRole { realm: String, rep: Value },
    UpdateRole { realm: String, name: String, rep: Value },
    AddComposites { realm: String, role: String, realm_roles: Vec<String>, client_roles: Vec<ClientRole> },
    CreateUser { realm: String, rep: Value },
    UpdateUser { realm: String, username: String, rep: Value },
    SetPassword { realm: String, username: String, password: Secret },
    MapRealmRoles { realm: String, username: String, roles: Vec<String> },
    CreateGroup { realm: String, name: String },
    MapGroupRoles { realm: String, group: String, roles: Vec<String> },
    JoinGroups { realm: String, username: String, groups: Vec<String> },
    CreateClient { realm: String, rep: Value, secret: Secret },
    UpdateClient { realm: String, client_id: String, rep: Value },
    SetClientSecret { realm: String, client_id: String, secret: Secret },
}

/// What a partial import does with a resource that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Skip,
    Overwrite,
}

impl IfExists {
    pub fn as_str(self) -> &'static str {
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

/// One line of a realm setup: what it is about and the change it needs (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct Step {
    /// `keycloak realm`, `keycloak role`, `keycloak composites`, `keycloak user`,
    /// `keycloak password`, `keycloak role mapping`.
    pub action: &'static str,
    /// `acme`, `acme/editor`, `acme/realm-admin`: the realm, and the role or user in it.
    pub target: String,
    pub change: Option<Change>,
}

impl Step {
    fn new(action: &'static str, target: String, change: Option<Change>) -> Self {
        Self { action, target, change }
    }

    /// `keycloak role acme/editor`.
    pub fn subject(&self) -> String {
        format!("{} {}", self.action, self.target)
    }

    pub fn outcome(&self) -> Outcome {
        self.change.as_ref().map_or(Outcome::Unchanged, |c| c.outcome)
    }
}

/// An HTTP answer as curl received it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!("Keycloak answered HTTP {} with a body that is not JSON: {}", self.status, self.snippet())
        })
    }

    /// Keycloak's own words: `errorMessage` (admin API), `error_description` and `error`
    /// (OAuth and exception mapper), else the start of a non-JSON body.
    pub fn message(&self) -> String {
        if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&self.body) {
            let text = |key: &str| body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(message) = text("errorMessage") {
                return message.to_string();
            }
            match (text("error"), text("error_description")) {
                (Some(error), Some(description)) => return format!("{description} ({error})"),
                (None, Some(description)) => return description.to_string(),
                (Some(error), None) => return error.to_string(),
                (None, None) => {}
            }
        }
        if self.body.trim().is_empty() { "no details in the answer".into() } else { self.snippet() }
    }

    fn snippet(&self) -> String {
        let text: String = self.body.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() > 160 { format!("{}...", text.chars().take(160).collect::<String>()) } else { text }
    }
}

/// Splits curl's stdout (`dump-header -`, the body, then `\n<http_code>` from `write-out`).
fn parse_curl_output(stdout: &str) -> Result<HttpResponse> {
    let (mut rest, code) = stdout.rsplit_once('\n').ok_or_else(|| anyhow!("curl printed no HTTP status"))?;
    let status: u16 = code.trim().parse().map_err(|_| anyhow!("curl printed no HTTP status (got {code:?})"))?;
    let mut headers = Vec::new();
    // One header block per response received (a `100 Continue` comes before the final one).
    while rest.starts_with("HTTP/") {
        let (block, after) = match rest.find("\r\n\r\n") {
            Some(end) => (&rest[..end], &rest[end + 4..]),
            None => match rest.find("\n\n") {
                Some(end) => (&rest[..end], &rest[end + 2..]),
                None => (rest, ""),
            },
        };
        let mut lines = block.lines();
        let block_status: u16 = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        rest = after;
        if !(100..200).contains(&block_status) {
            break;
        }
    }
    Ok(HttpResponse { status, headers, body: rest.to_string() })
}

enum Body {
    None,
    Json(String),
    /// A form holds the admin password or a refresh token.
    Form(Secret),
}

struct Token {
    access: Secret,
    expires_at: Instant,
    renew_at: Instant,
    refresh: Option<Secret>,
    refresh_renew_at: Option<Instant>,
}

impl Token {
    fn from_response(value: &Value, now: Instant) -> Result<Token> {
        let access = value["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("Keycloak's token answer holds no access_token"))?;
        let lifetime = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(60));
        let refresh = value["refresh_token"].as_str().filter(|t| !t.is_empty()).map(Secret::new);
        let refresh_renew_at = match value["refresh_expires_in"].as_u64() {
            Some(0) | None => None,
            Some(secs) => Some(now + renew_after(Duration::from_secs(secs))),
        };
        Ok(Token {
            access: Secret::new(access),
            expires_at: now + lifetime,
            renew_at: now + renew_after(lifetime),
            refresh,
            refresh_renew_at,
        })
    }

    fn fresh(&self, now: Instant) -> bool {
        now < self.renew_at && now < self.expires_at
    }

    fn refreshable(&self, now: Instant) -> bool {
        self.refresh.is_some() && self.refresh_renew_at.is_none_or(|at| now < at)
    }
}

/// How long a token of this lifetime is used before it is renewed.
fn renew_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / RENEW_FRACTION).min(RENEW_MARGIN_CAP);
    lifetime - margin
}

#[derive(Default)]
struct State {
    prefix: Option<String>,
    token: Option<Token>,
}

/// A Keycloak server, reached with curl.
pub struct Keycloak {
    settings: Settings,
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
    pub fn new(settings: Settings) -> Result<Self> {
        let curl = process::locate("curl", "install curl (Debian: apt-get install curl)")?;
        Ok(Self::with_curl(settings, &curl))
    }

    pub fn with_curl(settings: Settings, curl: &Path) -> Self {
        Self { settings, curl: curl.to_path_buf(), state: Mutex::new(State::default()), requests: AtomicUsize::new(0) }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many HTTP requests curl has been asked to make so far.
    pub fn requests_sent(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- transport ----------------------------------------------------------------------

    fn execute(&self, method: &str, url: &str, body: &Body, bearer: Option<&Secret>) -> Result<HttpResponse> {
        // The path is sent as built (no dot-segment squashing by curl).
        let mut config = String::from("path-as-is\n");
        let mut line = |key: &str, value: &str| {
            config.push_str(key);
            config.push_str(" = ");
            config.push_str(&config_quote(value));
            config.push('\n');
        };
        line("url", url);
        line("request", method);
        line("header", "Accept: application/json");
        // No `Expect: 100-continue` round trip for larger bodies.
        line("header", "Expect:");
        if let Some(token) = bearer {
            line("header", &format!("Authorization: Bearer {}", token.expose()));
        }
        match body {
            Body::None => {}
            Body::Json(text) => {
                line("header", "Content-Type: application/json");
                line("data-raw", text);
            }
            Body::Form(form) => {
                line("header", "Content-Type: application/x-www-form-urlencoded");
                line("data-raw", form.expose());
            }
        }
        line("dump-header", "-");
        line("write-out", "\n%{http_code}");
        line("connect-timeout", &CONNECT_TIMEOUT_SECS.to_string());
        line("max-time", &REQUEST_TIMEOUT_SECS.to_string());
        if let Some(ca) = &self.settings.ca_cert {
            line("cacert", &ca.to_string_lossy());
        }

        self.requests.fetch_add(1, Ordering::Relaxed);
        let output =
            process::Command::new(&self.curl).args(["-q", "-sS", "-K", "-"]).stdin(config.into_bytes()).output()?;
        if !output.success() {
            // `curl: (7) Failed to connect ...` -> `Failed to connect ...`
            let line = output.first_error_line().trim_start_matches("curl: ");
            let reason = match line.split_once(") ") {
                Some((code, rest)) if code.starts_with('(') => rest,
                _ => line,
            };
            bail!("could not reach Keycloak at {}: {reason} (curl exit {})", self.settings.url, output.code);
        }
        parse_curl_output(&output.stdout)
    }

    /// The path prefix in front of `/realms` and `/admin`: `KEYCLOAK_PATH_PREFIX`, else the one
    /// under which the admin realm's discovery document answers (none first, then `/auth`).
    pub fn path_prefix(&self) -> Result<String> {
        if let Some(prefix) = &self.settings.path_prefix {
            return Ok(normalize_prefix(prefix));
        }
        if let Some(prefix) = &self.state().prefix {
            return Ok(prefix.clone());
        }
        let mut tried = Vec::new();
        for candidate in ["", "/auth"] {
            let path =
                format!("{candidate}/realms/{}/.well-known/openid-configuration", segment(&self.settings.admin_realm));
            let response = self.execute("GET", &format!("{}{path}", self.settings.url), &Body::None, None)?;
            let is_discovery =
                response.status == 200 && response.json().is_ok_and(|doc| doc.get("token_endpoint").is_some());
            if is_discovery {
                self.state().prefix = Some(candidate.to_string());
                return Ok(candidate.to_string());
            }
            tried.push(format!("GET {path} answered HTTP {}", response.status));
        }
        bail!(
            "no Keycloak admin realm {} found at {}: {}; check KEYCLOAK_URL (or set KEYCLOAK_PATH_PREFIX)",
            self.settings.admin_realm,
            self.settings.url,
            tried.join(", ")
        )
    }

    fn base(&self) -> Result<String> {
        Ok(format!("{}{}", self.settings.url, self.path_prefix()?))
    }

    // ---- token --------------------------------------------------------------------------

    fn token_url(&self) -> Result<String> {
        Ok(format!("{}/realms/{}/protocol/openid-connect/token", self.base()?, segment(&self.settings.admin_realm)))
    }

    /// A valid admin access token: the cached one, a refreshed one, or a new login.
    fn token(&self) -> Result<Secret> {
        let url = self.token_url()?;
        let now = Instant::now();
        let cached = self.state().token.take();
        if let Some(token) = cached {
            if token.fresh(now) {
                let access = token.access.clone();
                self.state().token = Some(token);
                return Ok(access);
            }
            if token.refreshable(now)
                && let Some(refresh) = &token.refresh
                && let Ok(renewed) = self.refresh_grant(&url, refresh)
            {
                let access = renewed.access.clone();
                self.state().token = Some(renewed);
                return Ok(access);
            }
        }
        let token = self.password_grant(&url)?;
        let access = token.access.clone();
        self.state().token = Some(token);
        Ok(access)
    }

    fn password_grant(&self, url: &str) -> Result<Token> {
        let s = &self.settings;
        let form = format!(
            "grant_type=password&client_id={}&username={}&password={}",
            encode(&s.admin_client_id),
            encode(&s.admin_user),
            encode(s.admin_password.expose())
        );
        let now = Instant::now();
        let response = self.execute("POST", url, &Body::Form(Secret::new(form)), None)?;
        match response.status {
            200 => Token::from_response(&response.json()?, now),
            400 | 401 => {
                let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
                let hint = match body["error"].as_str() {
                    Some("invalid_grant") => "; check KEYCLOAK_ADMIN and KEYCLOAK_ADMIN_PASSWORD",
                    Some("invalid_client" | "unauthorized_client") => {
                        "; check KEYCLOAK_ADMIN_CLIENT_ID (a public client with direct access grants)"
                    }
                    _ => "",
                };
                bail!(
                    "Keycloak rejected the admin login of user {} in realm {}: HTTP {} {}{hint}",
                    s.admin_user,
                    s.admin_realm,
                    response.status,
                    response.message()
                )
            }
            _ => bail!(
                "Keycloak refused the admin token request for realm {}: HTTP {} {}",
                s.admin_realm,
                response.status,
                response.message()
            ),
        }
    }

    fn refresh_grant(&self, url: &str, refresh: &Secret) -> Result<Token> {
        let form = format!(
            "grant_type=refresh_token&client_id={}&refresh_token={}",
            encode(&self.settings.admin_client_id),
            encode(refresh.expose())
        );
        let now = Instant::now();
        let response = self.execute("POST", url, &Body::Form(Secret::new(form)), None)?;
        if response.status != 200 {
            bail!("token refresh answered HTTP {} {}", response.status, response.message());
        }
        Token::from_response(&response.json()?, now)
    }

    /// Forgets the cached token (the server no longer accepts it).
    fn drop_token(&self) {
        self.state().token = None;
    }

    /// One Admin API call with the admin token; a 401 (token expired or revoked on the server)
    /// is retried once after a new login.
    pub fn admin_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<HttpResponse> {
        let url = format!("{}{path}", self.base()?);
        let body = match body {
            Some(value) => Body::Json(value.to_string()),
            None => Body::None,
        };
        let token = self.token()?;
        let response = self.execute(method, &url, &body, Some(&token))?;
        if response.status != 401 {
            return Ok(response);
        }
        self.drop_token();
        let token = self.token()?;
        let response = self.execute(method, &url, &body, Some(&token))?;
        if response.status == 401 {
            bail!("Keycloak refused a fresh admin token for {method} {path}: HTTP 401 {}", response.message());
        }
        Ok(response)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>, ok: &[u16], what: &str) -> Result<HttpResponse> {
        let response = self.admin_call(method, path, body)?;
        if ok.contains(&response.status) {
            return Ok(response);
        }
        let hint = if response.status == 403 {
            format!("; the admin user {} lacks the permission", self.settings.admin_user)
        } else {
            String::new()
        };
        bail!("Keycloak refused to {what}: HTTP {} {} ({method} {path}){hint}", response.status, response.message())
    }

    /// A GET whose 404 means "absent".
    fn get_optional(&self, path: &str, what: &str) -> Result<Option<Value>> {
        let response = self.call("GET", path, None, &[200, 404], what)?;
        if response.status == 404 { Ok(None) } else { response.json().map(Some) }
    }

    /// A GET of a list whose 404 (its parent is absent) means "empty".
    fn get_list(&self, path: &str, what: &str) -> Result<Vec<Value>> {
        match self.get_optional(path, what)? {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => bail!("Keycloak answered {what} with {other} instead of a list"),
        }
    }

    // ---- reads --------------------------------------------------------------------------

    pub fn realm(&self, realm: &str) -> Result<Option<Value>> {
        self.get_optional(&realm_path(realm), &format!("read realm {realm}"))
    }

    pub fn realm_role(&self, realm: &str, role: &str) -> Result<Option<Value>> {
        let path = format!("{}/roles/{}", realm_path(realm), segment(role));
        self.get_optional(&path, &format!("read role {role} of realm {realm}"))
    }

    pub fn realm_roles(&self, realm: &str) -> Result<Vec<Value>> {
        let path = format!("{}/roles", realm_path(realm));
        self.get_list(&path, &format!("list the roles of realm {realm}"))
    }

    /// The roles a realm role contains (realm and client roles, brief representations).
    pub fn role_composites(&self, realm: &str, role: &str) -> Result<Vec<Value>> {
        let path = format!("{}/roles/{}/composites", realm_path(realm), segment(role));
        self.get_list(&path, &format!("list the composites of role {role} in realm {realm}"))
    }

    /// A client of the realm by its `clientId`.
    pub fn client(&self, realm: &str, client_id: &str) -> Result<Option<Value>> {
        let path = format!("{}/clients?clientId={}", realm_path(realm), encode(client_id));
        let clients = self.get_list(&path, &format!("find client {client_id} in realm {realm}"))?;
        Ok(clients.into_iter().find(|c| c["clientId"] == client_id))
    }

    /// A role of a client, the client given by its internal id.
    pub fn client_role(&self, realm: &str, client_uuid: &str, role: &str) -> Result<Option<Value>> {
        let path = format!("{}/clients/{}/roles/{}", realm_path(realm), segment(client_uuid), segment(role));
        self.get_optional(&path, &format!("read client role {role} in realm {realm}"))
    }

    /// The user with exactly this username (Keycloak compares usernames in lower case).
    pub fn user(&self, realm: &str, username: &str) -> Result<Option<Value>> {
        let wanted = username.to_lowercase();
        let path = format!("{}/users?username={}&exact=true", realm_path(realm), encode(&wanted));
        let users = self.get_list(&path, &format!("find user {username} in realm {realm}"))?;
        // Servers older than the `exact` parameter answer a substring search: filter here.
        Ok(users.into_iter().find(|u| u["username"].as_str().is_some_and(|name| name.to_lowercase() == wanted)))
    }

    pub fn user_credentials(&self, realm: &str, user_id: &str) -> Result<Vec<Value>> {
        let path = format!("{}/users/{}/credentials", realm_path(realm), segment(user_id));
        self.get_list(&path, &format!("list the credentials of a user in realm {realm}"))
    }

    /// The realm roles mapped directly to a user.
    pub fn user_realm_roles(&self, realm: &str, user_id: &str) -> Result<Vec<Value>> {
        let path = format!("{}/users/{}/role-mappings/realm", realm_path(realm), segment(user_id));
        self.get_list(&path, &format!("list the realm roles of a user in realm {realm}"))
    }

    // ---- writes -------------------------------------------------------------------------

    pub fn create_realm(&self, rep: &Value) -> Result<()> {
        let name = rep["realm"].as_str().unwrap_or("");
        self.call("POST", "/admin/realms", Some(rep), &[201], &format!("create realm {name}"))?;
        Ok(())
    }

    /// Sets the given attributes of a realm (the others are left as they are).
    pub fn update_realm(&self, realm: &str, rep: &Value) -> Result<()> {
        self.call("PUT", &realm_path(realm), Some(rep), &[204], &format!("update realm {realm}"))?;
        Ok(())
    }

    /// Deletes a realm; `false` when there was none.
    pub fn delete_realm(&self, realm: &str) -> Result<bool> {
        let response = self.call("DELETE", &realm_path(realm), None, &[204, 404], &format!("delete realm {realm}"))?;
        Ok(response.status == 204)
    }

    pub fn create_realm_role(&self, realm: &str, rep: &Value) -> Result<()> {
        let name = rep["name"].as_str().unwrap_or("");
        let path = format!("{}/roles", realm_path(realm));
        self.call("POST", &path, Some(rep), &[201], &format!("create role {name} in realm {realm}"))?;
        Ok(())
    }

    pub fn update_realm_role(&self, realm: &str, role: &str, rep: &Value) -> Result<()> {
        let path = format!("{}/roles/{}", realm_path(realm), segment(role));
        self.call("PUT", &path, Some(rep), &[204], &format!("update role {role} in realm {realm}"))?;
        Ok(())
    }

    /// Adds roles (representations with their `id`) to a realm role's composites.
    pub fn add_role_composites(&self, realm: &str, role: &str, roles: &[Value]) -> Result<()> {
        let path = format!("{}/roles/{}/composites", realm_path(realm), segment(role));
        let what = format!("add composites to role {role} in realm {realm}");
        self.call("POST", &path, Some(&Value::Array(roles.to_vec())), &[204], &what)?;
        Ok(())
    }

    /// Creates a user and returns its id (from the `Location` header).
    pub fn create_user(&self, realm: &str, rep: &Value) -> Result<String> {
        let username = rep["username"].as_str().unwrap_or("");
        let path = format!("{}/users", realm_path(realm));
        let what = format!("create user {username} in realm {realm}");
        let response = self.call("POST", &path, Some(rep), &[201], &what)?;
        if let Some(id) = response
            .header("Location")
            .and_then(|location| location.trim_end_matches('/').rsplit('/').next())
            .filter(|id| !id.is_empty())
        {
            return Ok(id.to_string());
        }
        let user = self
            .user(realm, username)?
            .ok_or_else(|| anyhow!("Keycloak created user {username} in realm {realm} but cannot find it"))?;
        user_id(&user)
    }

    pub fn update_user(&self, realm: &str, user_id: &str, rep: &Value) -> Result<()> {
        let path = format!("{}/users/{}", realm_path(realm), segment(user_id));
        self.call("PUT", &path, Some(rep), &[204], &format!("update a user of realm {realm}"))?;
        Ok(())
    }

    /// Sets a user's password (not temporary). The password travels only in curl's stdin.
    pub fn reset_password(&self, realm: &str, user_id: &str, password: &Secret) -> Result<()> {
        let path = format!("{}/users/{}/reset-password", realm_path(realm), segment(user_id));
        let body = json!({"type": "password", "value": password.expose(), "temporary": false});
        self.call("PUT", &path, Some(&body), &[204], &format!("set a password in realm {realm}"))?;
        Ok(())
    }

    /// Maps realm roles (representations with `id` and `name`) to a user.
    pub fn add_user_realm_roles(&self, realm: &str, user_id: &str, roles: &[Value]) -> Result<()> {
        let path = format!("{}/users/{}/role-mappings/realm", realm_path(realm), segment(user_id));
        let what = format!("map realm roles to a user of realm {realm}");
        self.call("POST", &path, Some(&Value::Array(roles.to_vec())), &[204], &what)?;
        Ok(())
    }

    /// `POST /admin/realms/{realm}/partialImport`: adds the realm roles and users (and the rest
    /// Keycloak's partial import knows) of `rep` to an existing realm. `if_exists` is `FAIL`
    /// (409, nothing imported), `SKIP` or `OVERWRITE`.
    pub fn partial_import(&self, realm: &str, rep: &Value, if_exists: IfExists) -> Result<ImportSummary> {
        let mut body = rep.clone();
        let Some(fields) = body.as_object_mut() else {
            bail!("a partial import needs a JSON object (a realm representation)");
        };
        fields.insert("ifResourceExists".into(), json!(if_exists.as_str()));
        // The realm's own attributes are not part of a partial import.
        fields.remove("realm");
        let path = format!("{}/partialImport", realm_path(realm));
        let what = format!("import into realm {realm}");
        let answer = self.call("POST", &path, Some(&body), &[200], &what)?.json()?;
        let count = |key: &str| answer[key].as_u64().unwrap_or(0);
        Ok(ImportSummary {
            added: count("added"),
            skipped: count("skipped"),
            overwritten: count("overwritten"),
            results: answer["results"].as_array().cloned().unwrap_or_default(),
        })
    }

    // ---- checks: read-only, return the change still needed --------------------------------

    /// The realm exists with the managed settings of `spec`.
    pub fn check_realm(&self, spec: &RealmSpec) -> Result<Option<Change>> {
        let desired = spec.settings();
        let Some(current) = self.realm(&spec.realm)? else {
            return Ok(Some(Change {
                outcome: Outcome::Created,
                description: format!("create realm {}", spec.realm),
                action: Action::CreateRealm(Value::Object(desired)),
            }));
        };
        let mut differing = differing_fields(&desired, &current);
        if differing.is_empty() {
            return Ok(None);
        }
        let keys: Vec<_> = differing.keys().cloned().collect();
        differing.insert("realm".into(), json!(spec.realm));
        Ok(Some(Change {
            outcome: Outcome::Updated,
            description: format!("update realm {} ({})", spec.realm, keys.join(", ")),
            action: Action::UpdateRealm { realm: spec.realm.clone(), rep: Value::Object(differing) },
        }))
    }

    /// The realm role exists with its description.
    pub fn check_role(&self, realm: &str, role: &RoleSpec) -> Result<Option<Change>> {
        let rep = json!({"name": role.name, "description": role.description});
        match self.realm_role(realm, &role.name)? {
            None => Ok(Some(Change {
                outcome: Outcome::Created,
                description: format!("create role {} in realm {realm}", role.name),
                action: Action::CreateRole { realm: realm.into(), rep },
            })),
            Some(current) if current["description"] != role.description.as_str() => Ok(Some(Change {
                outcome: Outcome::Updated,
                description: format!("update the description of role {} in realm {realm}", role.name),
                action: Action::UpdateRole { realm: realm.into(), name: role.name.clone(), rep },
            })),
            Some(_) => Ok(None),
        }
    }

    /// The realm role contains the roles of `role` (composites are only ever added).
    pub fn check_composites(&self, realm: &str, role: &RoleSpec) -> Result<Option<Change>> {
        if !role.is_composite() {
            return Ok(None);
        }
        let current = self.role_composites(realm, &role.name)?;
        let missing_realm: Vec<String> = role
            .composites
            .iter()
            .filter(|name| !current.iter().any(|c| c["clientRole"] != true && c["name"] == name.as_str()))
            .cloned()
            .collect();
        let mut missing_client = Vec::new();
        let mut client_ids: Vec<(String, Option<String>)> = Vec::new();
        for wanted in &role.client_composites {
            let uuid = match client_ids.iter().find(|(id, _)| *id == wanted.client_id) {
                Some((_, uuid)) => uuid.clone(),
                None => {
                    // No client role among the composites yet: nothing to look up.
                    let uuid = if current.iter().any(|c| c["clientRole"] == true) {
                        self.client(realm, &wanted.client_id)?.and_then(|c| c["id"].as_str().map(String::from))
                    } else {
                        None
                    };
                    client_ids.push((wanted.client_id.clone(), uuid.clone()));
                    uuid
                }
            };
            let present = uuid.is_some_and(|uuid| {
                current.iter().any(|c| {
                    c["clientRole"] == true && c["containerId"] == uuid.as_str() && c["name"] == wanted.role.as_str()
                })
            });
            if !present {
                missing_client.push(wanted.clone());
            }
        }
        if missing_realm.is_empty() && missing_client.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> =
            missing_realm.iter().cloned().chain(missing_client.iter().map(ToString::to_string)).collect();
        Ok(Some(Change {
            outcome: if current.is_empty() { Outcome::Created } else { Outcome::Updated },
            description: format!("add {} to role {} in realm {realm}", names.join(", "), role.name),
            action: Action::AddComposites {
                realm: realm.into(),
                role: role.name.clone(),
                realm_roles: missing_realm,
                client_roles: missing_client,
            },
        }))
    }

    /// The user exists (exact username) with its names and email.
    pub fn check_user(&self, realm: &str, user: &UserSpec) -> Result<Option<Change>> {
        let current = self.user(realm, &user.username)?;
        Ok(user_change(realm, user, current.as_ref()))
    }

    /// The user has a password. A user that has one keeps it unless `reset` (rotation):
    /// Keycloak cannot say whether a stored password equals ours without a login.
    pub fn check_password(
        &self,
        realm: &str,
        username: &str,
        password: &Secret,
        reset: bool,
    ) -> Result<Option<Change>> {
        let current = self.user(realm, username)?;
        self.password_change(realm, username, current.as_ref(), password, reset)
    }

    /// The user has the realm roles directly mapped.
    pub fn check_role_mappings(&self, realm: &str, username: &str, roles: &[String]) -> Result<Option<Change>> {
        let current = self.user(realm, username)?;
        self.mapping_change(realm, username, current.as_ref(), roles)
    }

    fn password_change(
        &self,
        realm: &str,
        username: &str,
        user: Option<&Value>,
        password: &Secret,
        reset: bool,
    ) -> Result<Option<Change>> {
        let has_password = match user {
            None => false,
            Some(user) => self.user_credentials(realm, &user_id(user)?)?.iter().any(|c| c["type"] == "password"),
        };
        let (outcome, description) = match (has_password, reset) {
            (true, false) => return Ok(None),
            (true, true) => (Outcome::Updated, format!("reset the password of user {username} in realm {realm}")),
            (false, _) => (Outcome::Created, format!("set the password of user {username} in realm {realm}")),
        };
        Ok(Some(Change {
            outcome,
            description,
            action: Action::SetPassword { realm: realm.into(), username: username.into(), password: password.clone() },
        }))
    }

    fn mapping_change(
        &self,
        realm: &str,
        username: &str,
        user: Option<&Value>,
        roles: &[String],
    ) -> Result<Option<Change>> {
        let current = match user {
            None => Vec::new(),
            Some(user) => self.user_realm_roles(realm, &user_id(user)?)?,
        };
        let missing: Vec<String> =
            roles.iter().filter(|role| !current.iter().any(|c| c["name"] == role.as_str())).cloned().collect();
        if missing.is_empty() {
            return Ok(None);
        }
        Ok(Some(Change {
            outcome: if user.is_none() { Outcome::Created } else { Outcome::Updated },
            description: format!("give user {username} the realm roles {} in realm {realm}", missing.join(", ")),
            action: Action::MapRealmRoles { realm: realm.into(), username: username.into(), roles: missing },
        }))
    }

    /// Every step of a realm setup, in order, with the change each still needs. Only reads.
    /// `password`: the admin user's password (`None` leaves passwords alone); `reset_password`
    /// sets it even when the user already has one.
    pub fn plan(&self, spec: &RealmSpec, password: Option<&Secret>, reset_password: bool) -> Result<Vec<Step>> {
        self.plan_with_clients(spec, password, reset_password, &[])
    }

    /// [`Keycloak::plan`], and each OIDC client of `spec` with its secret (`client_secrets`,
    /// in the order of `spec.clients`).
    pub fn plan_with_clients(
        &self,
        spec: &RealmSpec,
        password: Option<&Secret>,
        reset_password: bool,
        client_secrets: &[Secret],
    ) -> Result<Vec<Step>> {
        let realm = spec.realm.as_str();
        let within = |name: &str| format!("{realm}/{name}");
        let mut steps = vec![Step::new("keycloak realm", realm.to_string(), self.check_realm(spec)?)];
        for role in &spec.roles {
            steps.push(Step::new("keycloak role", within(&role.name), self.check_role(realm, role)?));
        }
        for role in spec.roles.iter().filter(|r| r.is_composite()) {
            steps.push(Step::new("keycloak composites", within(&role.name), self.check_composites(realm, role)?));
        }
        let groups = self.groups(realm)?;
        for group in &spec.groups {
            steps.push(Step::new("keycloak group", within(&group.name), self.check_group(realm, group, &groups)));
        }
        for group in &spec.groups {
            let change = self.check_group_roles(realm, group, &groups)?;
            steps.push(Step::new("keycloak group roles", within(&group.name), change));
        }
        let admin = &spec.admin;
        let user = self.user(realm, &admin.username)?;
        let target = within(&admin.username);
        steps.push(Step::new("keycloak user", target.clone(), user_change(realm, admin, user.as_ref())));
        if let Some(password) = password {
            let change = self.password_change(realm, &admin.username, user.as_ref(), password, reset_password)?;
            steps.push(Step::new("keycloak password", target.clone(), change));
        }
        let change = self.mapping_change(realm, &admin.username, user.as_ref(), &admin.realm_roles)?;
        steps.push(Step::new("keycloak role mapping", target.clone(), change));
        let change = self.membership_change(realm, admin, user.as_ref())?;
        steps.push(Step::new("keycloak group membership", target, change));
        for (client, secret) in spec.clients.iter().zip(client_secrets) {
            let target = within(&client.service);
            steps.push(Step::new("keycloak client", target.clone(), self.check_oidc_client(realm, client, secret)?));
            steps.push(Step::new("keycloak client secret", target, self.check_client_secret(realm, client, secret)?));
        }
        Ok(steps)
    }

    /// Plans and applies a realm setup; returns each step with its outcome.
    pub fn setup_realm(
        &self,
        spec: &RealmSpec,
        password: Option<&Secret>,
        reset_password: bool,
    ) -> Result<Vec<(String, Outcome)>> {
        let steps = self.plan(spec, password, reset_password)?;
        let mut report = Vec::with_capacity(steps.len());
        for step in steps {
            if let Some(change) = &step.change {
                self.apply(change)?;
            }
            report.push((step.subject(), step.outcome()));
        }
        Ok(report)
    }

    /// Carries out a change found by a check.
    pub fn apply(&self, change: &Change) -> Result<()> {
        match &change.action {
            Action::CreateRealm(rep) => self.create_realm(rep),
            Action::UpdateRealm { realm, rep } => self.update_realm(realm, rep),
            Action::CreateRole { realm, rep } => self.create_realm_role(realm, rep),
            Action::UpdateRole { realm, name, rep } => self.update_realm_role(realm, name, rep),
            Action::AddComposites { realm, role, realm_roles, client_roles } => {
                let mut reps = Vec::new();
                for name in realm_roles {
                    reps.push(self.require_realm_role(realm, name)?);
                }
                for wanted in client_roles {
                    let client = self.client(realm, &wanted.client_id)?.ok_or_else(|| {
                        anyhow!("realm {realm} has no client {} (needed for role {role})", wanted.client_id)
                    })?;
                    let uuid = client["id"].as_str().unwrap_or_default();
                    let found = self.client_role(realm, uuid, &wanted.role)?.ok_or_else(|| {
                        anyhow!("client {} of realm {realm} has no role {}", wanted.client_id, wanted.role)
                    })?;
                    reps.push(brief_role(&found));
                }
                self.add_role_composites(realm, role, &reps)
            }
            Action::CreateUser { realm, rep } => self.create_user(realm, rep).map(drop),
            Action::UpdateUser { realm, username, rep } => {
                let id = self.require_user(realm, username)?;
                self.update_user(realm, &id, rep)
            }
            Action::SetPassword { realm, username, password } => {
                let id = self.require_user(realm, username)?;
                self.reset_password(realm, &id, password)
            }
            Action::MapRealmRoles { realm, username, roles } => {
                let id = self.require_user(realm, username)?;
                let mut reps = Vec::new();
                for name in roles {
                    reps.push(self.require_realm_role(realm, name)?);
                }
                self.add_user_realm_roles(realm, &id, &reps)
            }
            group_change @ (Action::CreateGroup { .. } | Action::MapGroupRoles { .. } | Action::JoinGroups { .. }) => {
                self.apply_group_change(group_change)
            }
            client_change @ (Action::CreateClient { .. }
            | Action::UpdateClient { .. }
            | Action::SetClientSecret { .. }) => self.apply_client_change(client_change),
        }
    }

    /// Check and apply in one: the outcome of one change-or-not.
    pub fn ensure(&self, change: Option<Change>) -> Result<Outcome> {
        match change {
            None => Ok(Outcome::Unchanged),
            Some(change) => {
                self.apply(&change)?;
                Ok(change.outcome)
            }
        }
    }

    pub fn ensure_realm(&self, spec: &RealmSpec) -> Result<Outcome> {
        self.ensure(self.check_realm(spec)?)
    }

    pub fn ensure_role(&self, realm: &str, role: &RoleSpec) -> Result<Outcome> {
        self.ensure(self.check_role(realm, role)?)
    }

    pub fn ensure_composites(&self, realm: &str, role: &RoleSpec) -> Result<Outcome> {
        self.ensure(self.check_composites(realm, role)?)
    }

    pub fn ensure_user(&self, realm: &str, user: &UserSpec) -> Result<Outcome> {
        self.ensure(self.check_user(realm, user)?)
    }

    pub fn ensure_password(&self, realm: &str, username: &str, password: &Secret, reset: bool) -> Result<Outcome> {
        self.ensure(self.check_password(realm, username, password, reset)?)
    }

    pub fn ensure_role_mappings(&self, realm: &str, username: &str, roles: &[String]) -> Result<Outcome> {
        self.ensure(self.check_role_mappings(realm, username, roles)?)
    }

    fn require_realm_role(&self, realm: &str, name: &str) -> Result<Value> {
        let role = self.realm_role(realm, name)?.ok_or_else(|| anyhow!("realm {realm} has no role {name}"))?;
        Ok(brief_role(&role))
    }

    fn require_user(&self, realm: &str, username: &str) -> Result<String> {
        let user = self.user(realm, username)?.ok_or_else(|| anyhow!("realm {realm} has no user {username}"))?;
        user_id(&user)
    }
}

/// The fields of `wanted` whose values `current` (a representation Keycloak returned) does
/// not hold: what a PUT must send back.
pub fn differing_fields(wanted: &Map<String, Value>, current: &Value) -> Map<String, Value> {
    wanted
        .iter()
        .filter(|(key, value)| current.get(key.as_str()) != Some(*value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn realm_path(realm: &str) -> String {
    format!("/admin/realms/{}", segment(realm))
}

fn user_id(user: &Value) -> Result<String> {
    user["id"].as_str().map(String::from).ok_or_else(|| anyhow!("Keycloak's user representation holds no id"))
}

/// The part of a role representation the role-mapping and composite endpoints need.
fn brief_role(role: &Value) -> Value {
    let mut brief = json!({"id": role["id"], "name": role["name"]});
    for key in ["clientRole", "containerId"] {
        if let Some(value) = role.get(key) {
            brief[key] = value.clone();
        }
    }
    brief
}

fn user_change(realm: &str, user: &UserSpec, current: Option<&Value>) -> Option<Change> {
    let desired = RealmSpec::user_json(user);
    let Some(current) = current else {
        return Some(Change {
            outcome: Outcome::Created,
            description: format!("create user {} in realm {realm}", user.username),
            action: Action::CreateUser { realm: realm.into(), rep: desired },
        });
    };
    // Only names and email are converged; `enabled` is the operator's (a disabled admin stays so).
    let mut differing = Map::new();
    for key in ["firstName", "lastName", "email"] {
        if let Some(value) = desired.get(key)
            && current.get(key) != Some(value)
        {
            differing.insert(key.into(), value.clone());
        }
    }
    if differing.is_empty() {
        return None;
    }
    let keys: Vec<_> = differing.keys().cloned().collect();
    Some(Change {
        outcome: Outcome::Updated,
        description: format!("update user {} in realm {realm} ({})", user.username, keys.join(", ")),
        action: Action::UpdateUser {
            realm: realm.into(),
            username: user.username.clone(),
            rep: Value::Object(differing),
        },
    })
}

#[cfg(test)]
mod tests {
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
        assert!(Settings::from_vars(vars(&[])).unwrap().is_none());
        let err = Settings::from_vars(vars(&[("KEYCLOAK_URL", "http://kc:8080")])).unwrap_err();
        assert!(err.to_string().contains("KEYCLOAK_ADMIN_PASSWORD"), "{err}");
        let s = Settings::from_vars(vars(&[
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
        assert!(Settings::new("ftp://x", "a", Secret::new("p")).is_err());
        assert!(Settings::new("http://user:pw@x", "a", Secret::new("p")).is_err());
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
