//! `keycloak::` — a client's Keycloak realm: the realm file, and the live realm through the
//! Admin API (curl, see `drivers::keycloak`) when `KEYCLOAK_URL` is set.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `keycloak::live()` | no | whether `KEYCLOAK_URL` is set (environment, command line or the credentials file) |
//! | `keycloak::setting_names()` | no | the client.env keys of the realm settings (`KEYCLOAK_LOGIN_THEME` ... `SSO_SESSION_IDLE`) |
//! | `keycloak::realm_json(realm, display_name, settings)` | no | the realm.json text for a fresh file; `settings` is a map holding those keys (a client.env map; other keys are ignored) |
//! | `keycloak::write_realm_file(path, realm, display_name, settings)` | yes | outcome; creates realm.json or brings it up to date, keeping what else it holds |
//! | `keycloak::setup_realm(realm, display_name, secrets_file, settings)` | yes | array of `#{action, target, outcome}`: realm with its settings, roles, composites, groups and their roles, admin user, its password (set only when it has none), its role mapping, its groups |
//! | `keycloak::setup_realm(realm, display_name, secrets_file, settings, reset_password)` | yes | the same; `true` sets the password even when the user has one |
//! | `keycloak::set_admin_password(realm, secrets_file, key)` | yes | outcome (`updated`): the realm admin's password becomes the value of `key` in `secrets_file` |
//! | `keycloak::client_secret_names(settings)` | no | the secrets.env keys of the OIDC clients of the routed services in `settings.OIDC_SERVICES` (`OIDC_SECRET_WEB` for `web`) |
//! | `keycloak::set_client_secret(realm, settings, secrets_file, key)` | yes | outcome: the OIDC client whose secret is `key` gets the value of `key` in `secrets_file` in Keycloak (rotation) |
//! | `keycloak::partial_import(realm, json, policy)` | yes | `#{added, skipped, overwritten}`; policy `FAIL`, `SKIP` or `OVERWRITE` |
//! | `keycloak::realm_status(realm, realm_file, settings)` | no | `#{ok, source, problems}`: the file always (roles, groups, admin user); when live the realm's settings (and display name, when `settings` holds `CLIENT_NAME`), roles, groups with their roles, the OIDC clients' fields, and the admin user in its groups |
//! | `keycloak::realm_status(realm, realm_file, settings, secrets_file)` | no | the same, and when live each OIDC client's secret in Keycloak compared with its key in `secrets_file` (never shown) |
//!
//! Example: `let env = envfile::read(c.env_file);
//! keycloak::write_realm_file(c.realm_file, CLIENT_ID, CLIENT_NAME, env);
//! if keycloak::live() { keycloak::setup_realm(CLIENT_ID, CLIENT_NAME, c.secrets_file, env); }`
//!
//! The Keycloak admin credentials come from `KEYCLOAK_URL`, `KEYCLOAK_ADMIN` (settings) and
//! `KEYCLOAK_ADMIN_PASSWORD` (environment only, never the command line); whatever those leave
//! unset is read from `$AGENCY_ROOT/secrets/keycloak.env` (`KEY='value'` lines, mode 0600).
//! Passwords are read by the host and never pass through scripts.

use std::{cell::RefCell, path::Path, rc::Rc};

use anyhow::{Context, Result, anyhow, bail};
use indexmap::IndexMap;
use rhai::{Array, Dynamic, Map, Module};
use serde_json::Value;

use super::{Host, ScriptResult, fs::write_file, script_error};
use crate::{
    drivers::keycloak::{IfExists, Keycloak, KeycloakSettings, Secret},
    effects::Outcome,
    fsutil,
    tenant::layout::Roots,
    tenant::realm::{self, OidcClientSpec, RealmSettings, RealmSpec, reconcile},
    tenant::settings::SETTINGS,
};

/// The key of the realm admin's password in a client's secrets.env.
pub const PASSWORD_KEY: &str = "REALM_ADMIN_PASSWORD";
/// Mode of realm.json (no secrets in it).
const REALM_FILE_MODE: u32 = 0o640;

/// The credentials file's entries; none when it is missing. A file others can read is refused.
fn read_credentials_file(path: &Path) -> Result<IndexMap<String, String>> {
    let Some(mode) = fsutil::mode(path) else { return Ok(IndexMap::new()) };
    if mode & 0o077 != 0 {
        bail!(
            "{} has mode {mode:04o}: it holds the Keycloak admin password and must be readable by its owner only (chmod 600)",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::format::envfile::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Resolves the Keycloak settings: command line > environment > credentials file > default.
pub fn resolve_settings(host: &Host) -> Result<Option<KeycloakSettings>> {
    let file = read_credentials_file(&host.roots.keycloak_credentials())?;
    let lookup = |name: &str| -> Option<String> {
        if let Some(setting) = SETTINGS.iter().find(|s| s.name == name) {
            let value = host.settings.get(name);
            if value != setting.default {
                return Some(value.to_string());
            }
            return file.get(name).cloned().or_else(|| Some(value.to_string()));
        }
        std::env::var(name).ok().filter(|v| !v.is_empty()).or_else(|| file.get(name).cloned())
    };
    KeycloakSettings::from_vars(lookup)
}

/// The run's Keycloak connection, made on first use and shared by every call (one token, one
/// path prefix detection): the `keycloak::` functions and the issuer handed to stacks.
#[derive(Default)]
pub struct Connection {
    client: RefCell<Option<Rc<Keycloak>>>,
    live: std::cell::OnceCell<bool>,
}

impl Connection {
    /// Whether this run talks to a live Keycloak, resolved once (status asks for every client).
    fn live(&self, host: &Host) -> Result<bool> {
        if let Some(live) = self.live.get() {
            return Ok(*live);
        }
        let live = resolve_settings(host)?.is_some();
        Ok(*self.live.get_or_init(|| live))
    }

    fn get(&self, host: &Host) -> Result<Rc<Keycloak>> {
        if let Some(client) = self.client.borrow().as_ref() {
            return Ok(client.clone());
        }
        let settings = resolve_settings(host)?
            .ok_or_else(|| anyhow!("KEYCLOAK_URL is not set; the realm can only be written to realm.json"))?;
        let client = Rc::new(Keycloak::new(settings)?);
        *self.client.borrow_mut() = Some(client.clone());
        Ok(client)
    }
}

/// Where the issuers of the realms of the run's Keycloak start: `KEYCLOAK_URL` with the path
/// prefix as the driver resolves it (`KEYCLOAK_PATH_PREFIX`, else detected through the run's
/// connection); `None` without Keycloak.
pub fn issuer_base(host: &Host) -> Result<Option<String>> {
    if !host.keycloak.live(host)? {
        return Ok(None);
    }
    host.keycloak.get(host)?.base().map(Some)
}

fn outcome(outcome: reconcile::RealmOutcome) -> Outcome {
    match outcome {
        reconcile::RealmOutcome::Created => Outcome::Created,
        reconcile::RealmOutcome::Updated => Outcome::Updated,
        reconcile::RealmOutcome::Unchanged => Outcome::Unchanged,
    }
}

/// The realm admin's password from a client's secrets file (read here, never by a script).
fn read_password(host: &Host, secrets_file: &str, key: &str) -> Result<Secret> {
    let path = host.roots.confine(secrets_file)?;
    let values = crate::tenant::secrets::read_planned(&host.effects, &path)?;
    values
        .get(key)
        .filter(|v| !v.is_empty())
        .map(|v| Secret::new(v.clone()))
        .ok_or_else(|| anyhow!("{} holds no {key}; create-client generates it", path.display()))
}

/// Plans the realm with read-only calls, then applies each step through the effects layer.
fn setup_realm(
    host: &Host,
    kc: &Keycloak,
    spec: &RealmSpec,
    secrets_file: &str,
    reset_password: bool,
) -> ScriptResult<Array> {
    // A dry run of a first create-client reads the secrets.env it only planned.
    let password = read_password(host, secrets_file, PASSWORD_KEY).map_err(script_error)?;
    let mut client_secrets = Vec::new();
    for client in &spec.clients {
        client_secrets.push(read_password(host, secrets_file, &client.secret_key()).map_err(script_error)?);
    }
    let steps = kc.plan_with_clients(spec, Some(&password), reset_password, &client_secrets).map_err(script_error)?;
    let mut report = Array::new();
    for step in steps {
        let detail = step.change.as_ref().map(|c| c.description.clone()).unwrap_or_default();
        let done = host
            .effects
            .apply(step.action, &step.target, &detail, outcome(step.outcome()), || match &step.change {
                Some(change) => kc.apply(change),
                None => Ok(()),
            })
            .map_err(script_error)?
            .outcome;
        let mut entry = Map::new();
        entry.insert("action".into(), step.action.into());
        entry.insert("target".into(), step.target.clone().into());
        entry.insert("outcome".into(), done.as_str().into());
        report.push(entry.into());
    }
    Ok(report)
}

/// The realm file checked on its own: parses, names the realm, holds the roles, the groups
/// and the admin.
fn file_problems(path: &Path, spec: &RealmSpec) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) => return vec![format!("realm file {} is missing", path.display())],
    };
    // Only what is checked is read (status reads every client's file).
    #[derive(serde::Deserialize)]
    struct RealmFile {
        #[serde(default)]
        realm: Value,
        #[serde(default)]
        roles: Roles,
        #[serde(default)]
        groups: Vec<Named>,
        #[serde(default)]
        users: Vec<User>,
    }
    #[derive(serde::Deserialize, Default)]
    struct Roles {
        #[serde(default)]
        realm: Vec<Named>,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(default)]
        name: Value,
    }
    #[derive(serde::Deserialize)]
    struct User {
        #[serde(default)]
        username: Value,
        credentials: Option<serde::de::IgnoredAny>,
    }
    let file: RealmFile = match serde_json::from_str(&text) {
        Ok(file) => file,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return vec![format!("realm file {} does not have the shape of a realm: {e}", path.display())];
        }
        Err(e) => return vec![format!("realm file {} is not valid JSON: {e}", path.display())],
    };
    let mut problems = Vec::new();
    if file.realm != spec.realm.as_str() {
        problems.push(format!("realm file names realm {} instead of {}", file.realm, spec.realm));
    }
    for role in &spec.roles {
        if !file.roles.realm.iter().any(|r| r.name == role.name.as_str()) {
            problems.push(format!("realm file lacks role {}", role.name));
        }
    }
    for group in &spec.groups {
        if !file.groups.iter().any(|g| g.name == group.name.as_str()) {
            problems.push(format!("realm file lacks group {}", group.name));
        }
    }
    match file.users.iter().find(|u| u.username == spec.admin.username.as_str()) {
        None => problems.push(format!("realm file lacks user {}", spec.admin.username)),
        Some(user) if user.credentials.is_some() => {
            problems.push(format!("realm file holds credentials of user {}", spec.admin.username))
        }
        Some(_) => {}
    }
    problems
}

/// The live realm checked: exists with the recorded settings, has the roles, the groups with
/// their roles, the OIDC clients with their fields and (given `client_secrets`, in the order
/// of `spec.clients`) the secrets of secrets.env, and the admin user in its groups.
fn live_problems(
    kc: &Keycloak,
    spec: &RealmSpec,
    check_display_name: bool,
    client_secrets: Option<&[Result<Secret>]>,
) -> Result<Vec<String>> {
    if kc.realm(&spec.realm)?.is_none() {
        return Ok(vec![format!("realm {} does not exist in Keycloak", spec.realm)]);
    }
    let roles = kc.realm_roles(&spec.realm)?;
    let mut problems: Vec<String> = spec
        .roles
        .iter()
        .filter(|role| !roles.iter().any(|r| r["name"] == role.name.as_str()))
        .map(|role| format!("realm {} lacks role {} in Keycloak", spec.realm, role.name))
        .collect();
    let groups = kc.groups(&spec.realm)?;
    for group in &spec.groups {
        if groups.iter().any(|g| g["name"] == group.name.as_str()) {
            if let Some(change) = kc.check_group_roles(&spec.realm, group, &groups)? {
                problems.push(format!("Keycloak: {} (setup-roles does it)", change.description));
            }
        } else {
            problems.push(format!("realm {} lacks group {} in Keycloak", spec.realm, group.name));
        }
    }
    if let Some(current) = kc.realm(&spec.realm)? {
        let mut wanted = spec.settings();
        if !check_display_name {
            wanted.remove("displayName");
        }
        let differing: Vec<String> = reconcile::differing_fields(&wanted, &current).keys().cloned().collect();
        if !differing.is_empty() {
            problems.push(format!(
                "realm {} in Keycloak differs from the recorded settings in {} (setup-roles puts them back)",
                spec.realm,
                differing.join(", ")
            ));
        }
    }
    for (index, client) in spec.clients.iter().enumerate() {
        match kc.client(&spec.realm, &client.service)? {
            None => problems.push(format!("realm {} lacks client {} in Keycloak", spec.realm, client.service)),
            Some(current) => {
                let wanted = client.json();
                let differing: Vec<String> =
                    reconcile::differing_fields(wanted.as_object().expect("an object"), &current)
                        .keys()
                        .cloned()
                        .collect();
                if !differing.is_empty() {
                    problems.push(format!(
                        "client {} of realm {} differs in {} (setup-roles puts it back)",
                        client.service,
                        spec.realm,
                        differing.join(", ")
                    ));
                }
                // Only compared, never shown: neither value reaches a problem.
                match client_secrets.and_then(|secrets| secrets.get(index)) {
                    Some(Err(e)) => problems.push(format!("client {} of realm {}: {e:#}", client.service, spec.realm)),
                    Some(Ok(secret)) if kc.check_client_secret(&spec.realm, client, secret)?.is_some() => problems
                        .push(format!(
                            "client {} of realm {} has another secret in Keycloak than {} in secrets.env \
                             (setup-roles puts it back)",
                            client.service,
                            spec.realm,
                            client.secret_key()
                        )),
                    None | Some(Ok(_)) => {}
                }
            }
        }
    }
    match kc.user(&spec.realm, &spec.admin.username)? {
        None => problems.push(format!("realm {} lacks user {} in Keycloak", spec.realm, spec.admin.username)),
        Some(_) => {
            if let Some(change) = kc.check_user_groups(&spec.realm, &spec.admin)? {
                problems.push(format!("Keycloak: {} (setup-roles does it)", change.description));
            }
        }
    }
    Ok(problems)
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("live", move || -> ScriptResult<bool> {
        Ok(resolve_settings(&h).map_err(script_error)?.is_some())
    });

    module.set_native_fn("setting_names", || -> ScriptResult<Array> {
        Ok(realm::SETTING_KEYS.iter().map(|key| Dynamic::from(key.to_string())).collect())
    });

    module.set_native_fn("realm_json", |realm: &str, display_name: &str, settings: Map| -> ScriptResult<String> {
        Ok(client_realm(realm, display_name, &settings)?.render())
    });

    let h = host.clone();
    module.set_native_fn(
        "write_realm_file",
        move |path: &str, realm: &str, display_name: &str, settings: Map| -> ScriptResult<String> {
            let spec = client_realm(realm, display_name, &settings)?;
            let file = h.roots.confine(path).map_err(script_error)?;
            let text = match std::fs::read_to_string(&file) {
                Ok(current) => {
                    let current: Value = serde_json::from_str(&current)
                        .with_context(|| format!("{} is not valid JSON; fix or remove it", file.display()))
                        .map_err(script_error)?;
                    realm::render(&spec.update_json(&current).map_err(script_error)?)
                }
                Err(_) => spec.render(),
            };
            let detail = format!(
                "realm {realm}; roles {}; groups {}; user {}",
                role_names(&spec),
                group_names(&spec),
                spec.admin.username
            );
            write_file(&h, path, text.as_bytes(), REALM_FILE_MODE, &detail).map(|o| o.as_str().into())
        },
    );

    let h = host.clone();
    module.set_native_fn(
        "setup_realm",
        move |realm: &str, display_name: &str, secrets_file: &str, settings: Map| -> ScriptResult<Array> {
            let kc = h.keycloak.get(&h).map_err(script_error)?;
            setup_realm(&h, &kc, &client_realm(realm, display_name, &settings)?, secrets_file, false)
        },
    );

    let h = host.clone();
    module.set_native_fn(
        "setup_realm",
        move |realm: &str,
              display_name: &str,
              secrets_file: &str,
              settings: Map,
              reset_password: bool|
              -> ScriptResult<Array> {
            let kc = h.keycloak.get(&h).map_err(script_error)?;
            setup_realm(&h, &kc, &client_realm(realm, display_name, &settings)?, secrets_file, reset_password)
        },
    );

    let h = host.clone();
    module.set_native_fn(
        "set_admin_password",
        move |realm: &str, secrets_file: &str, key: &str| -> ScriptResult<String> {
            let kc = h.keycloak.get(&h).map_err(script_error)?;
            let password = read_password(&h, secrets_file, key).map_err(script_error)?;
            let username = realm::REALM_ADMIN_USER;
            let change = kc.check_password(realm, username, &password, true).map_err(script_error)?;
            let target = format!("{realm}/{username}");
            let detail = format!("from {key}");
            let needed = change.as_ref().map_or(Outcome::Unchanged, |c| outcome(c.outcome));
            h.effects
                .apply("keycloak password", &target, &detail, needed, || match &change {
                    Some(change) => kc.apply(change),
                    None => Ok(()),
                })
                .map(|applied| applied.outcome.as_str().into())
                .map_err(script_error)
        },
    );

    module.set_native_fn("client_secret_names", |settings: Map| -> ScriptResult<Array> {
        let spec = client_realm("", "", &settings)?;
        Ok(spec.clients.iter().map(|c| Dynamic::from(c.secret_key())).collect())
    });

    let h = host.clone();
    module.set_native_fn(
        "set_client_secret",
        move |realm: &str, settings: Map, secrets_file: &str, key: &str| -> ScriptResult<String> {
            let spec = client_realm(realm, realm, &settings)?;
            let client = spec
                .clients
                .iter()
                .find(|c| c.secret_key() == key)
                .ok_or_else(|| script_error(anyhow!("{key} is the secret of no service in OIDC_SERVICES")))?;
            let kc = h.keycloak.get(&h).map_err(script_error)?;
            let secret = read_password(&h, secrets_file, key).map_err(script_error)?;
            let change = kc.check_client_secret(realm, client, &secret).map_err(script_error)?;
            let target = format!("{realm}/{}", client.service);
            let needed = change.as_ref().map_or(Outcome::Unchanged, |c| outcome(c.outcome));
            h.effects
                .apply("keycloak client secret", &target, &format!("from {key}"), needed, || match &change {
                    Some(change) => kc.apply(change),
                    None => Ok(()),
                })
                .map(|applied| applied.outcome.as_str().into())
                .map_err(script_error)
        },
    );

    let h = host.clone();
    module.set_native_fn("partial_import", move |realm: &str, json: &str, policy: &str| -> ScriptResult<Map> {
        let policy = IfExists::parse(policy).map_err(script_error)?;
        let rep: Value =
            serde_json::from_str(json).context("the partial import is not valid JSON").map_err(script_error)?;
        let count = |key: &str| rep.pointer(key).and_then(Value::as_array).map_or(0, Vec::len);
        let detail =
            format!("policy {}; {} realm role(s), {} user(s)", policy.as_str(), count("/roles/realm"), count("/users"));
        let kc = h.keycloak.get(&h).map_err(script_error)?;
        let imported = h
            .effects
            .apply("keycloak partial import", realm, &detail, Outcome::Updated, || {
                kc.partial_import(realm, &rep, policy)
            })
            .map_err(script_error)?;
        let mut map = Map::new();
        if let Some(summary) = imported.value {
            map.insert("added".into(), Dynamic::from(summary.added as rhai::INT));
            map.insert("skipped".into(), Dynamic::from(summary.skipped as rhai::INT));
            map.insert("overwritten".into(), Dynamic::from(summary.overwritten as rhai::INT));
        }
        Ok(map)
    });

    let h = host.clone();
    module.set_native_fn("realm_status", move |realm: &str, realm_file: &str, settings: Map| -> ScriptResult<Map> {
        realm_status(&h, realm, realm_file, &setting_of(&settings), None).map(realm_status_map)
    });

    let h = host.clone();
    module.set_native_fn(
        "realm_status",
        move |realm: &str, realm_file: &str, settings: Map, secrets_file: &str| -> ScriptResult<Map> {
            realm_status(&h, realm, realm_file, &setting_of(&settings), Some(secrets_file)).map(realm_status_map)
        },
    );

    module
}

/// What `keycloak::realm_status` found: the problems of the realm file, and of the live realm
/// when Keycloak is configured.
pub(super) struct RealmStatus {
    pub live: bool,
    pub problems: Vec<String>,
}

impl RealmStatus {
    pub(super) fn source(&self) -> &'static str {
        if self.live { "live" } else { "file" }
    }
}

/// A client's realm as its settings (`setting`: its client.env) describe it, and the problems
/// of its realm file. Needs nothing of the run but the roots, so status runs it for many clients
/// at once.
pub(super) fn realm_file_status(
    roots: &Roots,
    realm: &str,
    realm_file: &str,
    setting: &dyn Fn(&str) -> Option<String>,
) -> Result<(RealmSpec, Vec<String>)> {
    // The display name is checked when the settings (a client.env) name the client.
    let spec = realm_from_settings(realm, setting("CLIENT_NAME").as_deref().unwrap_or(realm), setting)?;
    let problems = file_problems(&roots.confine(realm_file)?, &spec);
    Ok((spec, problems))
}

/// `keycloak::realm_status`: the realm file, and the live realm when Keycloak is configured
/// (with `secrets_file`, its OIDC clients' secrets compared with the file's).
pub(super) fn realm_status(
    host: &Host,
    realm: &str,
    realm_file: &str,
    setting: &dyn Fn(&str) -> Option<String>,
    secrets_file: Option<&str>,
) -> ScriptResult<RealmStatus> {
    let (spec, mut problems) = realm_file_status(&host.roots, realm, realm_file, setting).map_err(script_error)?;
    let live = host.keycloak.live(host).map_err(script_error)?;
    if live {
        let kc = host.keycloak.get(host).map_err(script_error)?;
        let secrets: Option<Vec<Result<Secret>>> = secrets_file
            .map(|file| spec.clients.iter().map(|client| read_password(host, file, &client.secret_key())).collect());
        let named = setting("CLIENT_NAME").is_some();
        problems.extend(live_problems(&kc, &spec, named, secrets.as_deref()).map_err(script_error)?);
    }
    Ok(RealmStatus { live, problems })
}

/// Whether realms are checked live (`KEYCLOAK_URL` set).
pub(super) fn live(host: &Host) -> Result<bool> {
    host.keycloak.live(host)
}

fn realm_status_map(status: RealmStatus) -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), status.problems.is_empty().into());
    map.insert("source".into(), status.source().into());
    map.insert("problems".into(), status.problems.into_iter().map(Dynamic::from).collect::<Array>().into());
    map
}

/// A client's realm with the settings recorded in `settings` (a client.env map; other keys
/// are ignored), and an OIDC client for each of its `OIDC_SERVICES`.
fn client_realm(realm: &str, display_name: &str, settings: &Map) -> ScriptResult<RealmSpec> {
    realm_from_settings(realm, display_name, &setting_of(settings)).map_err(script_error)
}

/// A script's settings map read as `realm_status` reads settings.
fn setting_of(settings: &Map) -> impl Fn(&str) -> Option<String> + '_ {
    |key: &str| settings.get(key).map(ToString::to_string)
}

fn realm_from_settings(realm: &str, display_name: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<RealmSpec> {
    let options = RealmSettings::from_values(get)?;
    let mut spec = RealmSpec::for_client(realm, display_name, options);
    spec.clients = OidcClientSpec::from_values(get)?;
    Ok(spec)
}

fn group_names(spec: &RealmSpec) -> String {
    spec.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(" ")
}

fn role_names(spec: &RealmSpec) -> String {
    spec.roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" ")
}
