//! An in-process fake of the Keycloak Admin REST API subset the runner uses: HTTP/1.1 on
//! 127.0.0.1, one thread per connection, state in memory. It answers with Keycloak's status
//! codes and bodies (as in Keycloak's `RealmsAdminResource`, `RoleContainerResource`,
//! `UsersResource`, `RoleMapperResource` and `KeycloakErrorHandler`):
//!
//! - token endpoint (password and refresh_token grants): 200 token JSON; 401
//!   `{"error":"invalid_grant","error_description":"Invalid user credentials"}`; 401
//!   `invalid_client`; 400 `Token is not active` for a dead refresh token. Tokens expire
//!   (60 s by default) and can be made to die after N admin calls or on demand.
//! - Admin API: 401 `{"error":"HTTP 401 Unauthorized"}` on a missing, unknown or expired
//!   bearer token; 403 `{"error":"HTTP 403 Forbidden"}` for a user who is not an admin of the
//!   realm; 201 + `Location` on create; 409 `{"errorMessage":...}` on duplicates ("Conflict
//!   detected. See logs for details", "Role with name X already exists", "User exists with same
//!   username"); 404 `{"error":"Realm not found."}`, `Could not find role`, `User not found`,
//!   `Role not found`, `Could not find composite role`; 204 on updates, password resets,
//!   composites and role mappings.
//! - A realm comes with what Keycloak creates in every realm: `offline_access`,
//!   `uma_authorization`, `default-roles-<realm>` (mapped to every new user), the clients
//!   `realm-management` (with `realm-admin`, the composite of all the realm's admin roles),
//!   `account`, `admin-cli`, `broker`, `security-admin-console`. `POST /admin/realms` also
//!   imports `roles.realm` (with composites) and `users` of a full realm representation.
//! - Served under no path prefix (Keycloak >= 17) or `/auth` (legacy), per instance; the other
//!   one answers 404 with an HTML page, like a server that does not know the path.
//!
//! Every request is recorded (method, raw path, query, headers, body, answered status), so tests
//! can assert exactly what was sent.

#![allow(dead_code)] // a test fixture: each test binary uses a different part of it

mod clients;
mod groups;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value, json};

/// One HTTP request as the fake received it, and the status it answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The raw (still percent-encoded) path, including the prefix, without the query.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A call that can change the server's state: a POST, PUT or DELETE of the Admin API.
    pub fn is_mutation(&self) -> bool {
        self.method != "GET" && self.path.contains("/admin/")
    }

    pub fn is_token_request(&self) -> bool {
        self.path.ends_with("/protocol/openid-connect/token")
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_params(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `POST /admin/realms`-style one-line summary, for assertion messages.
    pub fn line(&self) -> String {
        let query = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!("{} {}{} -> {}", self.method, self.path, query, self.status)
    }
}

/// Builds a [`FakeKeycloak`].
pub struct Builder {
    prefix: String,
    admin_user: String,
    admin_password: String,
    token_lifespan: Duration,
    reported_lifespan: Option<Duration>,
    token_uses: Option<u32>,
}

impl Builder {
    /// `""` (Keycloak >= 17) or `"/auth"` (legacy).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// The master realm's admin user (default `admin` / `admin-password`).
    pub fn admin(mut self, user: &str, password: &str) -> Self {
        self.admin_user = user.to_string();
        self.admin_password = password.to_string();
        self
    }

    /// Lifetime of access tokens (Keycloak's default for the master realm: 60 s).
    pub fn token_lifespan(mut self, lifespan: Duration) -> Self {
        self.token_lifespan = lifespan;
        self
    }

    /// The `expires_in` the token answers announce, when it should differ from the real
    /// lifespan (e.g. 0: the client renews before every call, without sleeping in a test).
    pub fn announce_lifespan(mut self, lifespan: Duration) -> Self {
        self.reported_lifespan = Some(lifespan);
        self
    }

    /// Every access token dies (401) after this many Admin API calls, whatever the clock says:
    /// a token that expires in the middle of a run, without sleeping in a test.
    pub fn expire_tokens_after(mut self, admin_calls: u32) -> Self {
        self.token_uses = Some(admin_calls);
        self
    }

    pub fn start(self) -> FakeKeycloak {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let mut state = State {
            token_lifespan: self.token_lifespan,
            reported_lifespan: self.reported_lifespan.unwrap_or(self.token_lifespan),
            token_uses: self.token_uses,
            prefix: self.prefix.clone(),
            base_url: format!("http://{addr}{}", self.prefix),
            ..State::default()
        };
        state.create_master(&self.admin_user, &self.admin_password);
        let shared = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    thread::spawn(move || serve(stream, &shared));
                }
            })
        };
        FakeKeycloak { addr, prefix: self.prefix, shared, stop, thread: Some(thread) }
    }
}

/// A running fake Keycloak; stops when dropped.
pub struct FakeKeycloak {
    addr: SocketAddr,
    prefix: String,
    shared: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeKeycloak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl FakeKeycloak {
    pub fn builder() -> Builder {
        Builder {
            prefix: String::new(),
            admin_user: "admin".into(),
            admin_password: "admin-password".into(),
            token_lifespan: Duration::from_secs(60),
            reported_lifespan: None,
            token_uses: None,
        }
    }

    /// A fake with the defaults: no prefix, admin/admin-password, 60 s tokens.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The server's base URL, without the path prefix (what `KEYCLOAK_URL` holds).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// The requests that could change state (POST/PUT/DELETE of the Admin API).
    pub fn mutations(&self) -> Vec<Request> {
        self.requests().into_iter().filter(Request::is_mutation).collect()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Every access and refresh token handed out so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// Kills every token now (the next Admin API call with one gets 401).
    pub fn expire_all_tokens(&self) {
        let mut state = self.state();
        state.tokens.clear();
        state.refresh_tokens.clear();
    }

    /// Imports a realm representation as `POST /admin/realms` would; panics on failure.
    pub fn import_realm(&self, rep: &Value) {
        let answer = self.state().create_realm(rep);
        assert_eq!(answer.status, 201, "import failed: {}", answer.body);
    }

    /// The stored realm representation (settings only).
    pub fn realm(&self, realm: &str) -> Option<Value> {
        let state = self.state();
        state.realms.get(realm).map(|r| Value::Object(r.rep.clone()))
    }

    pub fn realm_names(&self) -> Vec<String> {
        self.state().realms.keys().cloned().collect()
    }

    /// Names of a realm's realm roles.
    pub fn realm_role_names(&self, realm: &str) -> Vec<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else {
            return vec![];
        };
        r.roles.iter().filter(|role| role.client.is_none()).map(|role| role.name.clone()).collect()
    }

    /// The direct composites of a realm role: realm roles by name, client roles as
    /// `clientId/role`, sorted.
    pub fn composite_names(&self, realm: &str, role: &str) -> Vec<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else {
            return vec![];
        };
        let Some(role) = r.realm_role(role) else {
            return vec![];
        };
        let mut names: Vec<String> =
            role.composites.iter().filter_map(|id| r.role_by_id(id)).map(|c| r.qualified(c)).collect();
        names.sort();
        names
    }

    /// The user (representation as the Admin API shows it), by exact username.
    pub fn user(&self, realm: &str, username: &str) -> Option<Value> {
        let state = self.state();
        let r = state.realms.get(realm)?;
        r.user_by_name(username).map(|u| u.rep(false))
    }

    pub fn user_password(&self, realm: &str, username: &str) -> Option<String> {
        let state = self.state();
        state.realms.get(realm)?.user_by_name(username)?.password.clone()
    }

    /// The realm roles mapped directly to a user, sorted.
    pub fn user_realm_role_names(&self, realm: &str, username: &str) -> Vec<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else {
            return vec![];
        };
        let Some(user) = r.user_by_name(username) else {
            return vec![];
        };
        let mut names: Vec<String> = user
            .roles
            .iter()
            .filter_map(|id| r.role_by_id(id))
            .filter(|role| role.client.is_none())
            .map(|role| role.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every role a user holds, directly or through composites, as `name` / `clientId/name`.
    pub fn effective_role_names(&self, realm: &str, username: &str) -> BTreeSet<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else {
            return BTreeSet::new();
        };
        let Some(user) = r.user_by_name(username) else {
            return BTreeSet::new();
        };
        r.effective(&user.roles).iter().filter_map(|id| r.role_by_id(id)).map(|role| r.qualified(role)).collect()
    }
}

// ---- HTTP ---------------------------------------------------------------------------------

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: vec![], content_type: "application/json", body: body.to_string() }
    }

    fn empty(status: u16) -> Self {
        Self { status, headers: vec![], content_type: "", body: String::new() }
    }

    fn created(location: String) -> Self {
        Self { status: 201, headers: vec![("Location".into(), location)], content_type: "", body: String::new() }
    }

    /// The exception mapper's shape: `{"error": message}`.
    fn error(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "error": message }))
    }

    /// `ErrorResponse.exists(..)` / `ErrorResponse.error(..)`: `{"errorMessage": message}`.
    fn error_message(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "errorMessage": message }))
    }

    fn oauth(status: u16, error: &str, description: &str) -> Self {
        Self::json(status, json!({ "error": error, "error_description": description }))
    }

    fn unauthorized() -> Self {
        let mut answer = Self::error(401, "HTTP 401 Unauthorized");
        answer.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
        answer
    }

    fn html_not_found() -> Self {
        Self {
            status: 404,
            headers: vec![],
            content_type: "text/html;charset=UTF-8",
            body: "<html><head><title>Error</title></head><body>Not Found</body></html>".into(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        415 => "Unsupported Media Type",
        _ => "Internal Server Error",
    }
}

fn serve(stream: TcpStream, shared: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // One request per connection (every answer says `Connection: close`).
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    if header("Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let length: usize = header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let mut request = Request {
        method,
        path,
        query,
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
    };
    let answer = {
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        let answer = if header("Transfer-Encoding").is_some() {
            Answer::error(411, "HTTP 411 Length Required")
        } else {
            state.handle(&request)
        };
        request.status = answer.status;
        state.requests.push(request);
        answer
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    if !answer.content_type.is_empty() {
        head.push_str(&format!("Content-Type: {}\r\n", answer.content_type));
    }
    for (key, value) in &answer.headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", answer.body.len()));
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(answer.body.as_bytes());
    let _ = writer.flush();
}

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push(high * 16 + low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_params(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn new_token(kind: &str) -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("eyJ{kind}.{hex}")
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ---- model --------------------------------------------------------------------------------

/// Keycloak's `AdminRoles.ALL_REALM_ROLES`, the roles of every realm's `realm-management`.
const REALM_MANAGEMENT_ROLES: &[&str] = &[
    "create-client",
    "impersonation",
    "manage-authorization",
    "manage-clients",
    "manage-events",
    "manage-identity-providers",
    "manage-realm",
    "manage-users",
    "query-clients",
    "query-groups",
    "query-realms",
    "query-users",
    "view-authorization",
    "view-clients",
    "view-events",
    "view-identity-providers",
    "view-realm",
    "view-users",
];

#[derive(Debug, Clone)]
struct Role {
    id: String,
    name: String,
    description: Option<String>,
    /// The client's internal id for a client role; `None` for a realm role.
    client: Option<String>,
    composites: BTreeSet<String>,
    attributes: Value,
}

#[derive(Debug, Clone)]
struct Client {
    id: String,
    client_id: String,
    public: bool,
    bearer_only: bool,
    /// Other fields of the representation a client was created or updated with.
    attributes: Map<String, Value>,
    /// A confidential client's secret.
    secret: Option<String>,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    username: String,
    enabled: bool,
    email: Option<String>,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    attributes: Value,
    password: Option<String>,
    password_created: u64,
    roles: BTreeSet<String>,
    /// Ids of the groups the user is a member of.
    groups: BTreeSet<String>,
    created: u64,
}

impl User {
    fn rep(&self, _brief: bool) -> Value {
        let mut rep = json!({
            "id": self.id,
            "username": self.username,
            "enabled": self.enabled,
            "emailVerified": self.email_verified,
            "createdTimestamp": self.created,
            "totp": false,
            "disableableCredentialTypes": [],
            "requiredActions": [],
            "notBefore": 0,
            "access": {"manageGroupMembership": true, "view": true, "mapRoles": true, "impersonate": true, "manage": true},
        });
        if let Some(v) = &self.email {
            rep["email"] = json!(v);
        }
        if let Some(v) = &self.first_name {
            rep["firstName"] = json!(v);
        }
        if let Some(v) = &self.last_name {
            rep["lastName"] = json!(v);
        }
        if self.attributes.as_object().is_some_and(|a| !a.is_empty()) {
            rep["attributes"] = self.attributes.clone();
        }
        rep
    }
}

#[derive(Debug, Clone)]
struct Realm {
    id: String,
    rep: Map<String, Value>,
    roles: Vec<Role>,
    clients: Vec<Client>,
    users: Vec<User>,
    groups: Vec<groups::Group>,
}

impl Realm {
    fn name(&self) -> &str {
        self.rep["realm"].as_str().unwrap_or_default()
    }

    fn realm_role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.client.is_none() && r.name == name)
    }

    fn role_by_id(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    fn client_by_client_id(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    fn client_role(&self, client_uuid: &str, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.client.as_deref() == Some(client_uuid) && r.name == name)
    }

    fn user_by_name(&self, username: &str) -> Option<&User> {
        let wanted = username.to_lowercase();
        self.users.iter().find(|u| u.username == wanted)
    }

    fn qualified(&self, role: &Role) -> String {
        match &role.client {
            None => role.name.clone(),
            Some(uuid) => {
                let client = self.clients.iter().find(|c| &c.id == uuid).map(|c| c.client_id.as_str()).unwrap_or("?");
                format!("{client}/{}", role.name)
            }
        }
    }

    fn add_role(&mut self, name: &str, description: Option<&str>, client: Option<&str>) -> String {
        let id = new_id();
        self.roles.push(Role {
            id: id.clone(),
            name: name.to_string(),
            description: description.map(String::from),
            client: client.map(String::from),
            composites: BTreeSet::new(),
            attributes: json!({}),
        });
        id
    }

    fn add_client(&mut self, client_id: &str, public: bool, bearer_only: bool) -> String {
        let id = new_id();
        self.clients.push(Client {
            id: id.clone(),
            client_id: client_id.into(),
            public,
            bearer_only,
            attributes: Map::new(),
            secret: None,
        });
        id
    }

    fn role_rep(&self, role: &Role, full: bool) -> Value {
        let container = role.client.clone().unwrap_or_else(|| self.id.clone());
        let mut rep = json!({
            "id": role.id,
            "name": role.name,
            "composite": !role.composites.is_empty(),
            "clientRole": role.client.is_some(),
            "containerId": container,
        });
        if let Some(description) = &role.description {
            rep["description"] = json!(description);
        }
        if full {
            rep["attributes"] = role.attributes.clone();
        }
        rep
    }

    fn client_rep(&self, client: &Client) -> Value {
        let mut rep = json!({
            "id": client.id,
            "clientId": client.client_id,
            "enabled": true,
            "publicClient": client.public,
            "bearerOnly": client.bearer_only,
            "directAccessGrantsEnabled": client.client_id == "admin-cli",
            "protocol": "openid-connect",
        });
        for (key, value) in &client.attributes {
            rep[key.as_str()] = value.clone();
        }
        // Keycloak shows an admin the secret of a confidential client.
        if let Some(secret) = client.secret.as_ref().filter(|_| !client.public) {
            rep["secret"] = json!(secret);
        }
        rep
    }

    /// Role ids reachable from `roots` through composites (roots included).
    fn effective(&self, roots: &BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = roots.iter().cloned().collect();
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone())
                && let Some(role) = self.role_by_id(&id)
            {
                stack.extend(role.composites.iter().cloned());
            }
        }
        seen
    }

    fn new(name: &str) -> Realm {
        let mut rep = Map::new();
        for (key, value) in [
            ("realm", json!(name)),
            ("enabled", json!(false)),
            ("sslRequired", json!("external")),
            ("registrationAllowed", json!(false)),
            ("registrationEmailAsUsername", json!(false)),
            ("rememberMe", json!(false)),
            ("verifyEmail", json!(false)),
            ("loginWithEmailAllowed", json!(true)),
            ("duplicateEmailsAllowed", json!(false)),
            ("resetPasswordAllowed", json!(false)),
            ("editUsernameAllowed", json!(false)),
            ("bruteForceProtected", json!(false)),
            ("permanentLockout", json!(false)),
            ("failureFactor", json!(30)),
            ("waitIncrementSeconds", json!(60)),
            ("maxFailureWaitSeconds", json!(900)),
            ("minimumQuickLoginWaitSeconds", json!(60)),
            ("quickLoginCheckMilliSeconds", json!(1000)),
            ("maxDeltaTimeSeconds", json!(43200)),
            ("accessTokenLifespan", json!(300)),
            ("notBefore", json!(0)),
        ] {
            rep.insert(key.into(), value);
        }
        let mut realm = Realm { id: new_id(), rep, roles: vec![], clients: vec![], users: vec![], groups: vec![] };
        realm.rep.insert("id".into(), json!(realm.id));

        let offline = realm.add_role("offline_access", Some("${role_offline-access}"), None);
        let uma = realm.add_role("uma_authorization", Some("${role_uma_authorization}"), None);

        let management = realm.add_client("realm-management", false, true);
        let mut all = BTreeSet::new();
        for role in REALM_MANAGEMENT_ROLES {
            all.insert(realm.add_role(role, Some(&format!("${{role_{role}}}")), Some(&management)));
        }
        let admin = realm.add_role("realm-admin", Some("${role_realm-admin}"), Some(&management));
        realm.roles.iter_mut().find(|r| r.id == admin).unwrap().composites = all;

        let account = realm.add_client("account", true, false);
        let mut account_defaults = BTreeSet::new();
        for role in [
            "manage-account",
            "view-profile",
            "manage-account-links",
            "view-applications",
            "view-consent",
            "manage-consent",
            "delete-account",
            "view-groups",
        ] {
            let id = realm.add_role(role, Some(&format!("${{role_{role}}}")), Some(&account));
            if role == "manage-account" || role == "view-profile" {
                account_defaults.insert(id);
            }
        }
        realm.add_client("admin-cli", true, false);
        let broker = realm.add_client("broker", false, true);
        realm.add_role("read-token", Some("${role_read-token}"), Some(&broker));
        realm.add_client("security-admin-console", true, false);

        let default_role = realm.add_role(&format!("default-roles-{name}"), Some("${role_default-roles}"), None);
        let mut defaults: BTreeSet<String> = [offline, uma].into_iter().collect();
        defaults.extend(account_defaults);
        realm.roles.iter_mut().find(|r| r.id == default_role).unwrap().composites = defaults;
        realm.rep.insert("defaultRole".into(), json!({"id": default_role, "name": format!("default-roles-{name}")}));
        realm
    }

    /// Realm roles of a representation: all created first, then their composites (as
    /// `RepresentationToModel.importRoles`). An unknown composite fails like Keycloak: 500.
    fn import_roles(&mut self, roles: &[Value]) -> Result<(), Answer> {
        let server_error = || Answer::oauth(500, "unknown_error", "For more on this error consult the server log.");
        for role in roles {
            let Some(name) = role["name"].as_str() else {
                return Err(server_error());
            };
            if self.realm_role(name).is_none() {
                self.add_role(name, role["description"].as_str(), None);
            }
        }
        for role in roles {
            let name = role["name"].as_str().unwrap_or_default();
            let mut ids = BTreeSet::new();
            for composite in role["composites"]["realm"].as_array().into_iter().flatten() {
                let found = self.realm_role(composite.as_str().unwrap_or_default()).ok_or_else(server_error)?;
                ids.insert(found.id.clone());
            }
            for (client_id, names) in role["composites"]["client"].as_object().into_iter().flatten() {
                let client = self.client_by_client_id(client_id).cloned().ok_or_else(server_error)?;
                for composite in names.as_array().into_iter().flatten() {
                    let found = self
                        .client_role(&client.id, composite.as_str().unwrap_or_default())
                        .ok_or_else(server_error)?;
                    ids.insert(found.id.clone());
                }
            }
            let id = self.realm_role(name).unwrap().id.clone();
            self.roles.iter_mut().find(|r| r.id == id).unwrap().composites.extend(ids);
        }
        Ok(())
    }

    /// A user of a representation, with its credentials and `realmRoles`.
    fn import_user(&mut self, user: &Value) -> Result<String, Answer> {
        let id = self.insert_user(user)?;
        let mut ids = BTreeSet::new();
        for name in user["realmRoles"].as_array().into_iter().flatten() {
            let found = self
                .realm_role(name.as_str().unwrap_or_default())
                .ok_or_else(|| Answer::oauth(500, "unknown_error", "For more on this error consult the server log."))?;
            ids.insert(found.id.clone());
        }
        let groups = self.group_ids_of_paths(&user["groups"])?;
        let entry = self.users.iter_mut().find(|u| u.id == id).unwrap();
        entry.roles.extend(ids);
        entry.groups.extend(groups);
        Ok(id)
    }

    fn remove_role(&mut self, id: &str) {
        self.roles.retain(|r| r.id != id);
        for other in &mut self.roles {
            other.composites.remove(id);
        }
        for user in &mut self.users {
            user.roles.remove(id);
        }
    }

    /// `POST /admin/realms/{realm}/partialImport` for realm roles and users
    /// (`PartialImportManager`): FAIL answers 409 at the first existing resource and changes
    /// nothing; SKIP and OVERWRITE report each resource.
    fn partial_import(&mut self, body: &Value) -> Answer {
        let policy = body["ifResourceExists"].as_str().unwrap_or("FAIL").to_string();
        let roles = body["roles"]["realm"].as_array().cloned().unwrap_or_default();
        let users = body["users"].as_array().cloned().unwrap_or_default();
        let groups = body["groups"].as_array().cloned().unwrap_or_default();
        let role_exists =
            |realm: &Realm, role: &Value| realm.realm_role(role["name"].as_str().unwrap_or_default()).is_some();
        let user_exists =
            |realm: &Realm, user: &Value| realm.user_by_name(user["username"].as_str().unwrap_or_default()).is_some();
        if policy == "FAIL" {
            if let Some(role) = roles.iter().find(|r| role_exists(self, r)) {
                return Answer::error_message(
                    409,
                    &format!("Realm role '{}' already exists.", role["name"].as_str().unwrap_or_default()),
                );
            }
            if let Some(name) = self.existing_group(&groups) {
                return Answer::error_message(409, &format!("Top level group named '{name}' already exists."));
            }
            if let Some(user) = users.iter().find(|u| user_exists(self, u)) {
                return Answer::error_message(
                    409,
                    &format!("User with user name {} already exists.", user["username"].as_str().unwrap_or_default()),
                );
            }
        }
        let mut backup = self.clone();
        let mut results = Vec::new();
        let (mut added, mut skipped, mut overwritten) = (0, 0, 0);
        let mut to_create = Vec::new();
        for role in &roles {
            let name = role["name"].as_str().unwrap_or_default().to_string();
            let action = if role_exists(self, role) {
                if policy == "SKIP" {
                    skipped += 1;
                    "SKIPPED"
                } else {
                    let id = self.realm_role(&name).unwrap().id.clone();
                    self.remove_role(&id);
                    to_create.push(role.clone());
                    overwritten += 1;
                    "OVERWRITTEN"
                }
            } else {
                to_create.push(role.clone());
                added += 1;
                "ADDED"
            };
            results.push((action, "REALM_ROLE", name));
        }
        if let Err(answer) = self.import_roles(&to_create) {
            std::mem::swap(self, &mut backup);
            return answer;
        }
        for group in &groups {
            let name = group["name"].as_str().unwrap_or_default().to_string();
            let action = match (self.existing_group(std::slice::from_ref(group)).is_some(), policy.as_str()) {
                (true, "SKIP") => {
                    skipped += 1;
                    results.push(("SKIPPED", "GROUP", name));
                    continue;
                }
                (true, _) => {
                    self.remove_group(&name);
                    overwritten += 1;
                    "OVERWRITTEN"
                }
                (false, _) => {
                    added += 1;
                    "ADDED"
                }
            };
            if let Err(answer) = self.import_group(group) {
                std::mem::swap(self, &mut backup);
                return answer;
            }
            results.push((action, "GROUP", name));
        }
        for user in &users {
            let name = user["username"].as_str().unwrap_or_default().to_lowercase();
            let action = if user_exists(self, user) {
                if policy == "SKIP" {
                    skipped += 1;
                    results.push(("SKIPPED", "USER", name));
                    continue;
                }
                let id = self.user_by_name(&name).unwrap().id.clone();
                self.users.retain(|u| u.id != id);
                overwritten += 1;
                "OVERWRITTEN"
            } else {
                added += 1;
                "ADDED"
            };
            if let Err(answer) = self.import_user(user) {
                std::mem::swap(self, &mut backup);
                return answer;
            }
            results.push((action, "USER", name));
        }
        let results: Vec<Value> = results
            .into_iter()
            .map(|(action, kind, name)| {
                let id = match kind {
                    "USER" => self.user_by_name(&name).map(|u| u.id.clone()),
                    "GROUP" => self.group_id(&name),
                    _ => self.realm_role(&name).map(|r| r.id.clone()),
                };
                json!({"action": action, "resourceType": kind, "resourceName": name, "id": id})
            })
            .collect();
        Answer::json(200, json!({"overwritten": overwritten, "added": added, "skipped": skipped, "results": results}))
    }

    fn default_role_id(&self) -> Option<String> {
        self.rep.get("defaultRole").and_then(|d| d["id"].as_str()).map(String::from)
    }

    /// Creates a user from a representation (Admin API or import). Returns its id.
    fn insert_user(&mut self, rep: &Value) -> Result<String, Answer> {
        let Some(username) = rep["username"].as_str().map(str::to_lowercase).filter(|u| !u.trim().is_empty()) else {
            return Err(Answer::json(
                400,
                json!({"field": "username", "errorMessage": "error-user-attribute-required", "params": ["username"]}),
            ));
        };
        if self.user_by_name(&username).is_some() {
            return Err(Answer::error_message(409, "User exists with same username"));
        }
        let email = rep["email"].as_str().filter(|e| !e.is_empty()).map(str::to_lowercase);
        if let Some(email) = &email
            && self.users.iter().any(|u| u.email.as_ref() == Some(email))
        {
            return Err(Answer::error_message(409, "User exists with same email"));
        }
        let mut user = User {
            id: new_id(),
            username,
            enabled: rep["enabled"].as_bool().unwrap_or(false),
            email,
            email_verified: rep["emailVerified"].as_bool().unwrap_or(false),
            first_name: rep["firstName"].as_str().map(String::from),
            last_name: rep["lastName"].as_str().map(String::from),
            attributes: rep.get("attributes").cloned().unwrap_or(json!({})),
            password: None,
            password_created: 0,
            roles: BTreeSet::new(),
            groups: BTreeSet::new(),
            created: now_millis(),
        };
        if let Some(credentials) = rep["credentials"].as_array() {
            for credential in credentials {
                if credential["type"] == "password"
                    && let Some(value) = credential["value"].as_str()
                {
                    user.password = Some(value.to_string());
                    user.password_created = now_millis();
                }
            }
        }
        if let Some(default_role) = self.default_role_id() {
            user.roles.insert(default_role);
        }
        let id = user.id.clone();
        self.users.push(user);
        Ok(id)
    }
}

struct TokenInfo {
    realm: String,
    username: String,
    expires: Instant,
    uses_left: Option<u32>,
}

#[derive(Default)]
struct State {
    realms: BTreeMap<String, Realm>,
    tokens: BTreeMap<String, TokenInfo>,
    refresh_tokens: BTreeMap<String, TokenInfo>,
    issued: Vec<String>,
    requests: Vec<Request>,
    token_lifespan: Duration,
    reported_lifespan: Duration,
    token_uses: Option<u32>,
    prefix: String,
    base_url: String,
}

/// Who is calling the Admin API.
enum Caller {
    /// A master-realm user with the realm role `admin`: every realm.
    SuperAdmin,
    /// A user holding `realm-management/realm-admin` in one realm: that realm only.
    RealmAdmin(String),
    Nobody,
}

impl State {
    fn create_master(&mut self, user: &str, password: &str) {
        let mut master = Realm::new("master");
        master.rep.insert("enabled".into(), json!(true));
        master.rep.insert("accessTokenLifespan".into(), json!(60));
        let admin_role = master.add_role("admin", Some("${role_admin}"), None);
        master.add_role("create-realm", Some("${role_create-realm}"), None);
        let id = master
            .insert_user(
                &json!({"username": user, "enabled": true, "credentials": [{"type": "password", "value": password}]}),
            )
            .unwrap_or_else(|_| panic!("master admin"));
        master.users.iter_mut().find(|u| u.id == id).unwrap().roles.insert(admin_role);
        self.realms.insert("master".into(), master);
    }

    fn handle(&mut self, request: &Request) -> Answer {
        let Some(path) = request.path.strip_prefix(&self.prefix) else {
            return Answer::html_not_found();
        };
        if !path.starts_with('/') {
            return Answer::html_not_found();
        }
        let segments: Vec<String> = path.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["realms", realm, ".well-known", "openid-configuration"] if request.method == "GET" => {
                self.discovery(realm)
            }
            ["realms", realm, "protocol", "openid-connect", "token"] if request.method == "POST" => {
                self.token(realm, request)
            }
            ["admin", "realms", rest @ ..] => {
                let caller = match self.authenticate(request) {
                    Ok(caller) => caller,
                    Err(answer) => return answer,
                };
                self.admin(&caller, request, rest)
            }
            _ => Answer::html_not_found(),
        }
    }

    fn discovery(&self, realm: &str) -> Answer {
        if !self.realms.contains_key(realm) {
            return Answer::error(404, "Realm does not exist");
        }
        let issuer = format!("{}/realms/{realm}", self.base_url);
        Answer::json(
            200,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
                "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
                "userinfo_endpoint": format!("{issuer}/protocol/openid-connect/userinfo"),
                "end_session_endpoint": format!("{issuer}/protocol/openid-connect/logout"),
                "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
                "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
            }),
        )
    }

    fn token(&mut self, realm_name: &str, request: &Request) -> Answer {
        let Some(realm) = self.realms.get(realm_name) else {
            return Answer::error(404, "Realm does not exist");
        };
        let content_type = request.header("Content-Type").unwrap_or("");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Answer::error(415, "HTTP 415 Unsupported Media Type");
        }
        let form = form_params(&request.body);
        let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let Some(grant_type) = param("grant_type") else {
            return Answer::oauth(400, "invalid_request", "Missing form parameter: grant_type");
        };
        let client_ok = param("client_id")
            .and_then(|id| realm.client_by_client_id(&id).cloned())
            .is_some_and(|client| client.public && !client.bearer_only);
        if !client_ok {
            return Answer::oauth(401, "invalid_client", "Invalid client or Invalid client credentials");
        }
        let username = match grant_type.as_str() {
            "password" => {
                let username = param("username").unwrap_or_default();
                let password = param("password").unwrap_or_default();
                let Some(user) = realm.user_by_name(&username) else {
                    return Answer::oauth(401, "invalid_grant", "Invalid user credentials");
                };
                if user.password.as_deref() != Some(password.as_str()) || password.is_empty() {
                    return Answer::oauth(401, "invalid_grant", "Invalid user credentials");
                }
                if !user.enabled {
                    return Answer::oauth(400, "invalid_grant", "Account disabled");
                }
                user.username.clone()
            }
            "refresh_token" => {
                let presented = param("refresh_token").unwrap_or_default();
                let Some(info) = self.refresh_tokens.get(&presented) else {
                    return Answer::oauth(400, "invalid_grant", "Invalid refresh token");
                };
                if info.realm != realm_name || Instant::now() >= info.expires {
                    return Answer::oauth(400, "invalid_grant", "Token is not active");
                }
                info.username.clone()
            }
            _ => return Answer::oauth(400, "unsupported_grant_type", "Unsupported grant_type"),
        };
        let access = new_token("access");
        let refresh = new_token("refresh");
        let now = Instant::now();
        self.tokens.insert(
            access.clone(),
            TokenInfo {
                realm: realm_name.into(),
                username: username.clone(),
                expires: now + self.token_lifespan,
                uses_left: self.token_uses,
            },
        );
        self.refresh_tokens.insert(
            refresh.clone(),
            TokenInfo { realm: realm_name.into(), username, expires: now + Duration::from_secs(1800), uses_left: None },
        );
        self.issued.push(access.clone());
        self.issued.push(refresh.clone());
        Answer::json(
            200,
            json!({
                "access_token": access,
                "expires_in": self.reported_lifespan.as_secs(),
                "refresh_expires_in": 1800,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "session_state": new_id(),
                "scope": "profile email",
            }),
        )
    }

    fn authenticate(&mut self, request: &Request) -> Result<Caller, Answer> {
        let Some(token) = request.header("Authorization").and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(Answer::unauthorized());
        };
        let Some(info) = self.tokens.get_mut(token.trim()) else {
            return Err(Answer::unauthorized());
        };
        if Instant::now() >= info.expires || info.uses_left == Some(0) {
            return Err(Answer::unauthorized());
        }
        if let Some(uses) = &mut info.uses_left {
            *uses -= 1;
        }
        let (realm_name, username) = (info.realm.clone(), info.username.clone());
        let Some(realm) = self.realms.get(&realm_name) else {
            return Err(Answer::unauthorized());
        };
        let Some(user) = realm.user_by_name(&username) else {
            return Err(Answer::unauthorized());
        };
        let effective = realm.effective(&user.roles);
        if realm_name == "master" && realm.realm_role("admin").is_some_and(|r| effective.contains(&r.id)) {
            return Ok(Caller::SuperAdmin);
        }
        let admin = realm
            .client_by_client_id("realm-management")
            .and_then(|c| realm.client_role(&c.id, "realm-admin"))
            .is_some_and(|r| effective.contains(&r.id));
        Ok(if admin { Caller::RealmAdmin(realm_name) } else { Caller::Nobody })
    }

    fn admin(&mut self, caller: &Caller, request: &Request, rest: &[&str]) -> Answer {
        let method = request.method.as_str();
        match rest {
            [] => match method {
                "GET" => match caller {
                    Caller::SuperAdmin => Answer::json(
                        200,
                        json!(self.realms.values().map(|r| Value::Object(r.rep.clone())).collect::<Vec<_>>()),
                    ),
                    Caller::RealmAdmin(realm) => Answer::json(200, json!([self.realms[realm].rep.clone()])),
                    Caller::Nobody => Answer::error(403, "HTTP 403 Forbidden"),
                },
                "POST" => {
                    if !matches!(caller, Caller::SuperAdmin) {
                        return Answer::error(403, "HTTP 403 Forbidden");
                    }
                    match serde_json::from_str::<Value>(&request.body) {
                        Ok(rep) => self.create_realm(&rep),
                        Err(_) => Answer::oauth(400, "invalid_request", "Cannot parse the JSON"),
                    }
                }
                _ => Answer::error(405, "HTTP 405 Method Not Allowed"),
            },
            [realm_name, tail @ ..] => {
                let realm_name = realm_name.to_string();
                if !self.realms.contains_key(&realm_name) {
                    return Answer::error(404, "Realm not found.");
                }
                let allowed = match caller {
                    Caller::SuperAdmin => true,
                    Caller::RealmAdmin(own) => *own == realm_name,
                    Caller::Nobody => false,
                };
                if !allowed {
                    return Answer::error(403, "HTTP 403 Forbidden");
                }
                let body = if request.body.is_empty() {
                    Value::Null
                } else {
                    match serde_json::from_str::<Value>(&request.body) {
                        Ok(body) => body,
                        Err(_) => {
                            return Answer::oauth(400, "invalid_request", "Cannot parse the JSON");
                        }
                    }
                };
                if matches!(method, "POST" | "PUT")
                    && !request.body.is_empty()
                    && !request.header("Content-Type").unwrap_or("").starts_with("application/json")
                {
                    return Answer::error(415, "HTTP 415 Unsupported Media Type");
                }
                let base = format!("{}/admin/realms/{}", self.base_url, encode_segment(&realm_name));
                if tail.is_empty() && method == "DELETE" {
                    self.realms.remove(&realm_name);
                    return Answer::empty(204);
                }
                let realm = self.realms.get_mut(&realm_name).unwrap();
                realm_resource(realm, method, tail, &body, &request.query, &base)
            }
        }
    }

    /// `POST /admin/realms`: a bare realm or a full representation with roles and users.
    fn create_realm(&mut self, rep: &Value) -> Answer {
        let Some(name) = rep["realm"].as_str().filter(|n| !n.trim().is_empty()) else {
            return Answer::error_message(400, "Realm name cannot be empty");
        };
        if self.realms.contains_key(name) {
            return Answer::error_message(409, "Conflict detected. See logs for details");
        }
        let mut realm = Realm::new(name);
        if let Some(fields) = rep.as_object() {
            for (key, value) in fields {
                if !matches!(key.as_str(), "id" | "roles" | "users" | "clients" | "defaultRole" | "groups") {
                    realm.rep.insert(key.clone(), value.clone());
                }
            }
        }
        let roles = rep["roles"]["realm"].as_array().cloned().unwrap_or_default();
        if let Err(answer) = realm.import_roles(&roles) {
            return answer;
        }
        for group in rep["groups"].as_array().into_iter().flatten() {
            if let Err(answer) = realm.import_group(group) {
                return answer;
            }
        }
        for user in rep["users"].as_array().into_iter().flatten() {
            if let Err(answer) = realm.import_user(user) {
                return answer;
            }
        }
        let location = format!("{}/admin/realms/{}", self.base_url, encode_segment(name));
        self.realms.insert(name.to_string(), realm);
        Answer::created(location)
    }
}

fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Resolves role representations (`id` required, as Keycloak does) to role ids.
fn resolve_by_id(realm: &Realm, body: &Value, missing: &str) -> Result<Vec<String>, Answer> {
    let Some(list) = body.as_array() else {
        return Err(Answer::oauth(400, "invalid_request", "Cannot parse the JSON"));
    };
    let mut ids = Vec::new();
    for rep in list {
        match rep["id"].as_str().and_then(|id| realm.role_by_id(id)) {
            Some(role) => ids.push(role.id.clone()),
            None => return Err(Answer::error(404, missing)),
        }
    }
    Ok(ids)
}

fn realm_resource(realm: &mut Realm, method: &str, tail: &[&str], body: &Value, query: &str, base: &str) -> Answer {
    let query = form_params(query);
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (method, tail) {
        ("GET", []) => Answer::json(200, Value::Object(realm.rep.clone())),
        ("PUT", []) => {
            let Some(fields) = body.as_object() else {
                return Answer::oauth(400, "invalid_request", "Cannot parse the JSON");
            };
            for (key, value) in fields {
                if !value.is_null() && key != "id" && key != "realm" {
                    realm.rep.insert(key.clone(), value.clone());
                }
            }
            Answer::empty(204)
        }

        ("POST", ["partialImport"]) => realm.partial_import(body),

        // ---- realm roles
        ("GET", ["roles"]) => {
            let list: Vec<Value> =
                realm.roles.iter().filter(|r| r.client.is_none()).map(|r| realm.role_rep(r, false)).collect();
            Answer::json(200, json!(list))
        }
        ("POST", ["roles"]) => {
            let Some(name) = body["name"].as_str() else {
                return Answer::error(400, "HTTP 400 Bad Request");
            };
            if realm.realm_role(name).is_some() {
                return Answer::error_message(409, &format!("Role with name {name} already exists"));
            }
            realm.add_role(name, body["description"].as_str(), None);
            Answer::created(format!("{base}/roles/{}", encode_segment(name)))
        }
        (_, ["roles", name, rest @ ..]) => {
            let Some(role) = realm.realm_role(name).cloned() else {
                return Answer::error(404, "Could not find role");
            };
            role_resource(realm, &role, method, rest, body)
        }

        // ---- clients
        ("GET", ["clients"]) => {
            let wanted = param("clientId");
            let list: Vec<Value> = realm
                .clients
                .iter()
                .filter(|c| wanted.as_ref().is_none_or(|w| &c.client_id == w))
                .map(|c| realm.client_rep(c))
                .collect();
            Answer::json(200, json!(list))
        }
        ("POST", ["clients"]) => clients::create(realm, body, base),
        (_, ["clients", uuid, rest @ ..]) => {
            let Some(client) = realm.clients.iter().find(|c| c.id == *uuid).cloned() else {
                return Answer::error(404, "Could not find client");
            };
            match (method, rest) {
                ("GET", []) => Answer::json(200, realm.client_rep(&client)),
                ("PUT", []) => clients::update(realm, &client.id, body),
                ("GET", ["client-secret"]) => clients::secret(&client),
                ("GET", ["roles"]) => {
                    let list: Vec<Value> = realm
                        .roles
                        .iter()
                        .filter(|r| r.client.as_deref() == Some(client.id.as_str()))
                        .map(|r| realm.role_rep(r, false))
                        .collect();
                    Answer::json(200, json!(list))
                }
                ("POST", ["roles"]) => {
                    let Some(name) = body["name"].as_str() else {
                        return Answer::error(400, "HTTP 400 Bad Request");
                    };
                    if realm.client_role(&client.id, name).is_some() {
                        return Answer::error_message(409, &format!("Role with name {name} already exists"));
                    }
                    realm.add_role(name, body["description"].as_str(), Some(&client.id));
                    Answer::created(format!("{base}/clients/{}/roles/{}", client.id, encode_segment(name)))
                }
                (_, ["roles", name, rest @ ..]) => {
                    let Some(role) = realm.client_role(&client.id, name).cloned() else {
                        return Answer::error(404, "Could not find role");
                    };
                    role_resource(realm, &role, method, rest, body)
                }
                _ => Answer::error(405, "HTTP 405 Method Not Allowed"),
            }
        }

        // ---- groups (fake_keycloak/groups.rs)
        (_, ["groups", rest @ ..]) => groups::resource(realm, method, rest, body, base),

        // ---- users
        ("GET", ["users"]) => {
            let exact = param("exact").is_some_and(|v| v == "true");
            let username = param("username").map(|u| u.to_lowercase());
            let search = param("search").map(|u| u.to_lowercase());
            let list: Vec<Value> = realm
                .users
                .iter()
                .filter(|u| match &username {
                    Some(wanted) if exact => &u.username == wanted,
                    Some(wanted) => u.username.contains(wanted.as_str()),
                    None => true,
                })
                .filter(|u| search.as_ref().is_none_or(|s| u.username.contains(s.as_str())))
                .map(|u| u.rep(true))
                .collect();
            Answer::json(200, json!(list))
        }
        ("POST", ["users"]) => match realm.insert_user(body) {
            Ok(id) => Answer::created(format!("{base}/users/{id}")),
            Err(answer) => answer,
        },
        (_, ["users", id, rest @ ..]) => {
            let Some(index) = realm.users.iter().position(|u| u.id == *id) else {
                return Answer::error(404, "User not found");
            };
            user_resource(realm, index, method, rest, body)
        }

        _ => Answer::error(404, "Unable to find matching target resource method"),
    }
}

fn role_resource(realm: &mut Realm, role: &Role, method: &str, rest: &[&str], body: &Value) -> Answer {
    match (method, rest) {
        ("GET", []) => Answer::json(200, realm.role_rep(role, true)),
        ("PUT", []) => {
            let entry = realm.roles.iter_mut().find(|r| r.id == role.id).unwrap();
            if let Some(name) = body["name"].as_str() {
                entry.name = name.to_string();
            }
            entry.description = body["description"].as_str().map(String::from);
            Answer::empty(204)
        }
        ("DELETE", []) => {
            realm.remove_role(&role.id);
            Answer::empty(204)
        }
        ("GET", ["composites"]) => {
            let list: Vec<Value> = role
                .composites
                .iter()
                .filter_map(|id| realm.role_by_id(id))
                .map(|r| realm.role_rep(r, false))
                .collect();
            Answer::json(200, json!(list))
        }
        ("POST", ["composites"]) => match resolve_by_id(realm, body, "Could not find composite role") {
            Ok(ids) => {
                realm.roles.iter_mut().find(|r| r.id == role.id).unwrap().composites.extend(ids);
                Answer::empty(204)
            }
            Err(answer) => answer,
        },
        ("DELETE", ["composites"]) => match resolve_by_id(realm, body, "Could not find composite role") {
            Ok(ids) => {
                let entry = realm.roles.iter_mut().find(|r| r.id == role.id).unwrap();
                for id in ids {
                    entry.composites.remove(&id);
                }
                Answer::empty(204)
            }
            Err(answer) => answer,
        },
        _ => Answer::error(405, "HTTP 405 Method Not Allowed"),
    }
}

fn user_resource(realm: &mut Realm, index: usize, method: &str, rest: &[&str], body: &Value) -> Answer {
    match (method, rest) {
        (_, ["groups", group @ ..]) => groups::membership(realm, index, method, group),
        ("GET", []) => Answer::json(200, realm.users[index].rep(false)),
        ("PUT", []) => {
            let user = &mut realm.users[index];
            if let Some(v) = body["firstName"].as_str() {
                user.first_name = Some(v.into());
            }
            if let Some(v) = body["lastName"].as_str() {
                user.last_name = Some(v.into());
            }
            if let Some(v) = body["email"].as_str() {
                user.email = Some(v.to_lowercase());
            }
            if let Some(v) = body["enabled"].as_bool() {
                user.enabled = v;
            }
            if let Some(v) = body["emailVerified"].as_bool() {
                user.email_verified = v;
            }
            Answer::empty(204)
        }
        ("DELETE", []) => {
            realm.users.remove(index);
            Answer::empty(204)
        }
        ("PUT", ["reset-password"]) => {
            let Some(value) = body["value"].as_str() else {
                return Answer::error(400, "No password provided");
            };
            if value.trim().is_empty() {
                return Answer::error(400, "Empty password not allowed");
            }
            let policy = realm.rep.get("passwordPolicy").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(min) = policy
                .split(" and ")
                .find_map(|p| p.trim().strip_prefix("length(").and_then(|n| n.strip_suffix(')')))
                .and_then(|n| n.parse::<usize>().ok())
                && value.chars().count() < min
            {
                return Answer::oauth(
                    400,
                    "invalidPasswordMinLengthMessage",
                    &format!("Invalid password: minimum length {min}."),
                );
            }
            let user = &mut realm.users[index];
            if policy.contains("notUsername") && value.eq_ignore_ascii_case(&user.username) {
                return Answer::oauth(
                    400,
                    "invalidPasswordNotUsernameMessage",
                    "Invalid password: must not be equal to the username.",
                );
            }
            user.password = Some(value.to_string());
            user.password_created = now_millis();
            Answer::empty(204)
        }
        ("GET", ["credentials"]) => {
            let user = &realm.users[index];
            let list = match &user.password {
                None => vec![],
                Some(_) => vec![json!({
                    "id": format!("{}-password", user.id),
                    "type": "password",
                    "userLabel": "My password",
                    "createdDate": user.password_created,
                    "credentialData": "{\"hashIterations\":27500,\"algorithm\":\"pbkdf2-sha256\",\"additionalParameters\":{}}",
                })],
            };
            Answer::json(200, json!(list))
        }
        ("GET", ["role-mappings", "realm"]) => {
            let user = &realm.users[index];
            let list: Vec<Value> = user
                .roles
                .iter()
                .filter_map(|id| realm.role_by_id(id))
                .filter(|r| r.client.is_none())
                .map(|r| realm.role_rep(r, false))
                .collect();
            Answer::json(200, json!(list))
        }
        ("POST" | "DELETE", ["role-mappings", "realm"]) => {
            let Some(list) = body.as_array() else {
                return Answer::oauth(400, "invalid_request", "Cannot parse the JSON");
            };
            let mut ids = Vec::new();
            for rep in list {
                // RoleMapperResource: looked up by name, and the id must match.
                match rep["name"].as_str().and_then(|n| realm.realm_role(n)) {
                    Some(role) if rep["id"] == role.id.as_str() => ids.push(role.id.clone()),
                    _ => return Answer::error(404, "Role not found"),
                }
            }
            let user = &mut realm.users[index];
            for id in ids {
                if method == "POST" {
                    user.roles.insert(id);
                } else {
                    user.roles.remove(&id);
                }
            }
            Answer::empty(204)
        }
        _ => Answer::error(404, "Unable to find matching target resource method"),
    }
}
