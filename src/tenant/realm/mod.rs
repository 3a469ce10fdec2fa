//! A client's Keycloak realm as one model: its settings, the realm roles `realm_admin` /
//! `editor` / `viewer` with their composites, and the realm admin user. The same model renders
//! `clients/<id>/keycloak/realm.json` (importable by `kc.sh import` as is, and free of secrets)
//! and drives the live Admin API calls of `drivers::keycloak`.

mod clients;
pub mod reconcile;
mod settings;

pub use clients::OidcClientSpec;
pub(crate) use clients::{ISSUER_VARIABLE, issuer};
pub use settings::RealmSettings;
pub(crate) use settings::SETTING_KEYS;

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

/// The role that administers a client's realm.
pub(crate) const ROLE_REALM_ADMIN: &str = "realm_admin";
/// The role that edits a client's content.
pub(crate) const ROLE_EDITOR: &str = "editor";
/// The read-only role.
pub(crate) const ROLE_VIEWER: &str = "viewer";
/// The client Keycloak creates in every realm to hold that realm's admin permissions.
pub(crate) const REALM_MANAGEMENT_CLIENT: &str = "realm-management";
/// The `realm-management` role that is the composite of every admin permission of the realm.
pub(crate) const REALM_MANAGEMENT_ADMIN_ROLE: &str = "realm-admin";

/// A role of another client in the same realm, named by that client's `clientId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRole {
    pub client_id: String,
    pub role: String,
}

impl ClientRole {
    pub(crate) fn new(client_id: &str, role: &str) -> Self {
        Self { client_id: client_id.to_string(), role: role.to_string() }
    }
}

impl std::fmt::Display for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.client_id, self.role)
    }
}

/// A realm role and the roles it contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: String,
    pub description: String,
    /// Realm roles this role contains.
    pub composites: Vec<String>,
    /// Client roles this role contains (e.g. `realm-management/realm-admin`).
    pub client_composites: Vec<ClientRole>,
}

impl RoleSpec {
    pub(crate) fn is_composite(&self) -> bool {
        !self.composites.is_empty() || !self.client_composites.is_empty()
    }
}

/// A user of the realm. Its password is never part of the model: it lives in secrets.env and
/// reaches Keycloak only through the Admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Keycloak stores usernames in lower case; this one is lower case already.
    pub username: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub realm_roles: Vec<String>,
    /// Names of top-level groups the user is a member of.
    pub groups: Vec<String>,
}

/// A top-level group of the realm and the realm roles its members get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub realm_roles: Vec<String>,
}

impl GroupSpec {
    /// Keycloak's path of a top-level group, the way users name their groups in realm.json.
    pub(crate) fn path(&self) -> String {
        format!("/{}", self.name)
    }
}

/// The three standard groups: `admins`, `editors`, `viewers`, each holding its role.
pub(crate) fn standard_groups() -> Vec<GroupSpec> {
    [("admins", ROLE_REALM_ADMIN), ("editors", ROLE_EDITOR), ("viewers", ROLE_VIEWER)]
        .into_iter()
        .map(|(name, role)| GroupSpec { name: name.into(), realm_roles: vec![role.into()] })
        .collect()
}

/// Everything the runner manages in a client's realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmSpec {
    pub realm: String,
    pub display_name: String,
    pub options: RealmSettings,
    pub roles: Vec<RoleSpec>,
    pub groups: Vec<GroupSpec>,
    pub admin: UserSpec,
    /// One per routed service of a deployed stack.
    pub clients: Vec<OidcClientSpec>,
}

/// The username of the realm admin in every client's realm.
pub(crate) const REALM_ADMIN_USER: &str = "realm-admin";

/// The three standard roles: `realm_admin` (editor + the realm's own admin permissions),
/// `editor` (viewer), `viewer`. Listed so that a role comes after the roles it contains.
pub(crate) fn standard_roles() -> Vec<RoleSpec> {
    vec![
        RoleSpec {
            name: ROLE_VIEWER.into(),
            description: "Read-only access to the client's applications".into(),
            composites: vec![],
            client_composites: vec![],
        },
        RoleSpec {
            name: ROLE_EDITOR.into(),
            description: "Edits content in the client's applications; includes viewer".into(),
            composites: vec![ROLE_VIEWER.into()],
            client_composites: vec![],
        },
        RoleSpec {
            name: ROLE_REALM_ADMIN.into(),
            description: "Administers this realm (users, roles, clients); includes editor".into(),
            composites: vec![ROLE_EDITOR.into()],
            client_composites: vec![ClientRole::new(REALM_MANAGEMENT_CLIENT, REALM_MANAGEMENT_ADMIN_ROLE)],
        },
    ]
}

impl RealmSpec {
    /// The realm of a client: named after the client id, shown with the client's name.
    pub fn for_client(client_id: &str, client_name: &str, options: RealmSettings) -> Self {
        Self {
            realm: client_id.to_string(),
            display_name: client_name.to_string(),
            options,
            roles: standard_roles(),
            groups: standard_groups(),
            admin: UserSpec {
                username: REALM_ADMIN_USER.into(),
                email: None,
                first_name: "Realm".into(),
                last_name: "Administrator".into(),
                realm_roles: vec![ROLE_REALM_ADMIN.into()],
                groups: vec!["admins".into()],
            },
            clients: Vec::new(),
        }
    }

    /// The realm attributes the runner owns: written to realm.json, sent on create, and
    /// converged (PUT) on a live realm whose values differ. `displayNameHtml` is deliberately
    /// absent: Keycloak renders it unescaped on the login page.
    pub(crate) fn settings(&self) -> Map<String, Value> {
        let value = json!({
            "realm": self.realm,
            "enabled": true,
            "displayName": self.display_name,
            "sslRequired": "external",
            "registrationAllowed": false,
            "loginWithEmailAllowed": true,
            "duplicateEmailsAllowed": false,
            "resetPasswordAllowed": true,
            "editUsernameAllowed": false,
            "rememberMe": false,
            "bruteForceProtected": true,
            "permanentLockout": false,
            "failureFactor": self.options.brute_force_failures,
            "waitIncrementSeconds": 60,
            "maxFailureWaitSeconds": self.options.brute_force_max_wait,
            "minimumQuickLoginWaitSeconds": 60,
            "quickLoginCheckMilliSeconds": 1000,
            "maxDeltaTimeSeconds": 43200,
            "passwordPolicy": self.options.password_policy,
            "ssoSessionIdleTimeout": self.options.sso_session_idle,
        });
        let Value::Object(mut map) = value else { unreachable!("a JSON object literal") };
        for (key, theme) in [
            ("loginTheme", &self.options.login_theme),
            ("accountTheme", &self.options.account_theme),
            ("emailTheme", &self.options.email_theme),
        ] {
            if let Some(theme) = theme {
                map.insert(key.into(), json!(theme));
            }
        }
        map
    }

    /// The group representation of realm.json (`groups[]`).
    pub(crate) fn group_json(group: &GroupSpec) -> Value {
        json!({ "name": group.name, "path": group.path(), "realmRoles": group.realm_roles, "subGroups": [] })
    }

    /// The role representation of realm.json (`roles.realm[]`).
    pub(crate) fn role_json(role: &RoleSpec) -> Value {
        let mut value = json!({
            "name": role.name,
            "description": role.description,
            "composite": role.is_composite(),
        });
        if role.is_composite() {
            let mut composites = Map::new();
            if !role.composites.is_empty() {
                composites.insert("realm".into(), json!(role.composites));
            }
            if !role.client_composites.is_empty() {
                let mut clients: Map<String, Value> = Map::new();
                for client_role in &role.client_composites {
                    let entry = clients.entry(client_role.client_id.clone()).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = entry {
                        list.push(Value::String(client_role.role.clone()));
                    }
                }
                composites.insert("client".into(), Value::Object(clients));
            }
            value["composites"] = Value::Object(composites);
        }
        value
    }

    /// The user representation, without any credential.
    pub(crate) fn user_json(user: &UserSpec) -> Value {
        let mut value = json!({
            "username": user.username,
            "enabled": true,
            "firstName": user.first_name,
            "lastName": user.last_name,
        });
        if let Some(email) = &user.email {
            value["email"] = json!(email);
            value["emailVerified"] = json!(true);
        }
        value
    }

    /// The complete realm.json: settings, roles with composites, the admin user with its realm
    /// roles and no credentials.
    pub fn to_json(&self) -> Value {
        let mut realm = self.settings();
        realm.insert("roles".into(), json!({ "realm": self.roles.iter().map(Self::role_json).collect::<Vec<_>>() }));
        realm.insert("groups".into(), json!(self.groups.iter().map(Self::group_json).collect::<Vec<_>>()));
        realm.insert("users".into(), json!([self.admin_json()]));
        if !self.clients.is_empty() {
            realm.insert("clients".into(), json!(self.clients.iter().map(OidcClientSpec::json).collect::<Vec<_>>()));
        }
        Value::Object(realm)
    }

    /// The admin user as realm.json holds it: roles and groups, never a credential.
    fn admin_json(&self) -> Value {
        let mut user = Self::user_json(&self.admin);
        user["realmRoles"] = json!(self.admin.realm_roles);
        user["groups"] = json!(self.admin_group_paths());
        user
    }

    fn admin_group_paths(&self) -> Vec<String> {
        self.admin.groups.iter().map(|g| format!("/{g}")).collect()
    }

    /// realm.json as written to disk: pretty JSON and a final newline.
    pub(crate) fn render(&self) -> String {
        render(&self.to_json())
    }

    /// Brings an existing realm.json up to date: the managed settings take this model's values,
    /// the standard roles are added or completed (composites are only ever added), the admin
    /// user is added or gets its realm roles, and any `credentials` of that user are dropped.
    /// Everything else in the file (other roles, users, clients, settings) is kept.
    pub(crate) fn update_json(&self, existing: &Value) -> Result<Value> {
        let Value::Object(existing) = existing else {
            bail!("realm.json does not hold a JSON object");
        };
        let mut realm = existing.clone();
        for (key, value) in self.settings() {
            realm.insert(key, value);
        }

        let roles = realm.entry("roles").or_insert_with(|| json!({}));
        if !roles.is_object() {
            bail!("realm.json: `roles` is not an object");
        }
        let list = roles.as_object_mut().unwrap().entry("realm").or_insert_with(|| json!([]));
        let Value::Array(list) = list else {
            bail!("realm.json: `roles.realm` is not a list");
        };
        for spec in &self.roles {
            match list.iter_mut().find(|r| r["name"] == spec.name.as_str()) {
                None => list.push(Self::role_json(spec)),
                Some(role) => merge_role(role, spec),
            }
        }

        let groups = realm.entry("groups").or_insert_with(|| json!([]));
        let Value::Array(groups) = groups else {
            bail!("realm.json: `groups` is not a list");
        };
        for spec in &self.groups {
            match groups.iter_mut().find(|g| g["name"] == spec.name.as_str()) {
                None => groups.push(Self::group_json(spec)),
                Some(group) => {
                    for role in &spec.realm_roles {
                        add_unique(&mut group["realmRoles"], role);
                    }
                }
            }
        }

        if !self.clients.is_empty() {
            let clients = realm.entry("clients").or_insert_with(|| json!([]));
            let Value::Array(clients) = clients else {
                bail!("realm.json: `clients` is not a list");
            };
            for spec in &self.clients {
                let wanted = spec.json();
                match clients.iter_mut().find(|c| c["clientId"] == spec.service.as_str()) {
                    None => clients.push(wanted),
                    Some(client) if client.is_object() => {
                        let fields = client.as_object_mut().expect("checked");
                        fields.remove("secret");
                        for (key, value) in wanted.as_object().expect("an object").clone() {
                            fields.insert(key, value);
                        }
                    }
                    Some(_) => bail!("realm.json: client {} is not an object", spec.service),
                }
            }
        }

        let users = realm.entry("users").or_insert_with(|| json!([]));
        let Value::Array(users) = users else {
            bail!("realm.json: `users` is not a list");
        };
        let wanted = self.admin.username.to_lowercase();
        let found = users.iter_mut().find(|u| u["username"].as_str().is_some_and(|name| name.to_lowercase() == wanted));
        match found {
            None => users.push(self.admin_json()),
            Some(user) if user.is_object() => {
                user.as_object_mut().expect("checked").remove("credentials");
                for role in &self.admin.realm_roles {
                    add_unique(&mut user["realmRoles"], role);
                }
                for path in self.admin_group_paths() {
                    add_unique(&mut user["groups"], &path);
                }
            }
            Some(_) => bail!("realm.json: user {} is not an object", self.admin.username),
        }
        Ok(Value::Object(realm))
    }
}

/// Adds what `spec` asks for to an existing role entry of realm.json, keeping what else is there.
fn merge_role(role: &mut Value, spec: &RoleSpec) {
    if role.get("description").is_none_or(Value::is_null) {
        role["description"] = json!(spec.description);
    }
    if !spec.is_composite() {
        return;
    }
    role["composite"] = json!(true);
    if !role.get("composites").is_some_and(Value::is_object) {
        role["composites"] = json!({});
    }
    let composites = &mut role["composites"];
    for name in &spec.composites {
        add_unique(&mut composites["realm"], name);
    }
    for client_role in &spec.client_composites {
        if !composites.get("client").is_some_and(Value::is_object) {
            composites["client"] = json!({});
        }
        add_unique(&mut composites["client"][client_role.client_id.as_str()], &client_role.role);
    }
}

fn add_unique(list: &mut Value, item: &str) {
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().unwrap();
    if !list.iter().any(|v| v == item) {
        list.push(json!(item));
    }
}

/// Pretty JSON with a final newline, the form every realm.json is written in.
pub(crate) fn render(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role<'a>(realm: &'a Value, name: &str) -> &'a Value {
        realm["roles"]["realm"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("role {name} missing"))
    }

    #[test]
    fn realm_json_holds_roles_composites_and_the_admin_without_credentials() {
        let spec = RealmSpec::for_client("acme", "ACME Corporation", RealmSettings::default());
        let text = spec.render();
        let realm: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(realm["realm"], "acme");
        assert_eq!(realm["displayName"], "ACME Corporation");
        assert_eq!(realm["enabled"], true);
        assert_eq!(realm["sslRequired"], "external");
        assert_eq!(realm["bruteForceProtected"], true);
        assert!(realm.get("displayNameHtml").is_none());

        assert_eq!(role(&realm, "viewer")["composite"], false);
        assert_eq!(role(&realm, "editor")["composites"]["realm"], json!(["viewer"]));
        let admin = role(&realm, "realm_admin");
        assert_eq!(admin["composite"], true);
        assert_eq!(admin["composites"]["realm"], json!(["editor"]));
        assert_eq!(admin["composites"]["client"]["realm-management"], json!(["realm-admin"]));

        let users = realm["users"].as_array().unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0]["username"], "realm-admin");
        assert_eq!(users[0]["realmRoles"], json!(["realm_admin"]));
        assert!(users[0].get("credentials").is_none());
        assert!(!text.to_lowercase().contains("password\":"), "no password field: {text}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn hostile_display_name_stays_one_json_string() {
        let name = "Evil\", \"enabled\": false, \"x\": \"</script><img src=x>\\\n\u{7}";
        let realm: Value =
            serde_json::from_str(&RealmSpec::for_client("evil", name, RealmSettings::default()).render()).unwrap();
        assert_eq!(realm["displayName"], name);
        assert_eq!(realm["enabled"], true);
        assert!(realm.get("x").is_none());
    }

    #[test]
    fn update_keeps_foreign_content_and_completes_ours() {
        let spec = RealmSpec::for_client("acme", "ACME Corporation", RealmSettings::default());
        let existing = json!({
            "realm": "acme",
            "displayName": "Old name",
            "smtpServer": {"host": "mail.acme.example.com"},
            "roles": {"realm": [
                {"name": "auditor", "description": "theirs"},
                {"name": "realm_admin", "composites": {"realm": ["auditor"]}}
            ]},
            "users": [
                {"username": "Realm-Admin", "credentials": [{"type": "password", "value": "leaked"}],
                 "realmRoles": ["auditor"]},
                {"username": "bob"}
            ],
            "clients": [{"clientId": "portal"}]
        });
        let updated = spec.update_json(&existing).unwrap();
        assert_eq!(updated["displayName"], "ACME Corporation");
        assert_eq!(updated["smtpServer"]["host"], "mail.acme.example.com");
        assert_eq!(updated["clients"][0]["clientId"], "portal");
        assert_eq!(role(&updated, "auditor")["description"], "theirs");
        let admin = role(&updated, "realm_admin");
        assert_eq!(admin["composites"]["realm"], json!(["auditor", "editor"]));
        assert_eq!(admin["composites"]["client"]["realm-management"], json!(["realm-admin"]));
        assert_eq!(admin["composite"], true);
        assert!(role(&updated, "viewer").is_object());
        let users = updated["users"].as_array().unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[0].get("credentials").is_none());
        assert_eq!(users[0]["realmRoles"], json!(["auditor", "realm_admin"]));

        // Converged: a second update changes nothing.
        assert_eq!(spec.update_json(&updated).unwrap(), updated);
        // A fresh file is already up to date.
        assert_eq!(spec.update_json(&spec.to_json()).unwrap(), spec.to_json());
    }

    #[test]
    fn settings_come_from_recorded_values_with_defaults() {
        let values = std::collections::HashMap::from([
            ("KEYCLOAK_LOGIN_THEME", "acme-brand"),
            ("PASSWORD_POLICY", "length(14) and digits(2)"),
            ("SSO_SESSION_IDLE", "2h"),
            ("BRUTE_FORCE_FAILURES", "3"),
        ]);
        let options = RealmSettings::from_values(|k| values.get(k).map(|v| v.to_string())).unwrap();
        let settings = RealmSpec::for_client("acme", "ACME", options).settings();
        assert_eq!(settings["loginTheme"], "acme-brand");
        assert!(!settings.contains_key("accountTheme"), "an unset theme is left to Keycloak");
        assert_eq!(settings["passwordPolicy"], "length(14) and digits(2)");
        assert_eq!(settings["ssoSessionIdleTimeout"], 7200);
        assert_eq!(settings["failureFactor"], 3);
        assert_eq!(settings["maxFailureWaitSeconds"], 900);
        assert_eq!(RealmSettings::from_values(|_| None).unwrap(), RealmSettings::default());
        for (key, bad) in [
            ("KEYCLOAK_LOGIN_THEME", "../x"),
            ("PASSWORD_POLICY", "length(12) and x\"y"),
            ("PASSWORD_POLICY", "length(12"),
            ("SSO_SESSION_IDLE", "soon"),
            ("BRUTE_FORCE_FAILURES", "0"),
        ] {
            let error = RealmSettings::from_values(|k| (k == key).then(|| bad.to_string())).unwrap_err();
            assert!(error.to_string().starts_with(key), "{key}={bad}: {error}");
        }
    }

    #[test]
    fn groups_hold_the_roles_and_the_admin_joins_admins() {
        let spec = RealmSpec::for_client("acme", "ACME", RealmSettings::default());
        let realm = spec.to_json();
        let groups: Vec<(&str, &Value)> = realm["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["name"].as_str().unwrap(), &g["realmRoles"]))
            .collect();
        assert_eq!(
            groups,
            vec![("admins", &json!(["realm_admin"])), ("editors", &json!(["editor"])), ("viewers", &json!(["viewer"]))]
        );
        assert_eq!(realm["users"][0]["groups"], json!(["/admins"]));
        // An older file without groups gets them; a site's own group and memberships stay.
        let mut old = realm.clone();
        old["groups"] = json!([{"name": "auditors", "realmRoles": ["viewer"]}, {"name": "admins", "realmRoles": []}]);
        old["users"][0]["groups"] = json!(["/auditors"]);
        let updated = spec.update_json(&old).unwrap();
        let names: Vec<&str> =
            updated["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["auditors", "admins", "editors", "viewers"]);
        assert_eq!(updated["groups"][1]["realmRoles"], json!(["realm_admin"]));
        assert_eq!(updated["users"][0]["groups"], json!(["/auditors", "/admins"]));
        assert_eq!(spec.update_json(&updated).unwrap(), updated);
    }

    #[test]
    fn update_refuses_what_is_not_a_realm() {
        let spec = RealmSpec::for_client("acme", "ACME", RealmSettings::default());
        assert!(spec.update_json(&json!([1, 2])).is_err());
        assert!(spec.update_json(&json!({"roles": []})).is_err());
    }
}
