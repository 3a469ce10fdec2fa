//! A client's Keycloak realm as one model: its settings, the realm roles `realm_admin` /
//! `editor` / `viewer` with their composites, and the realm admin user. The same model renders
//! `clients/<id>/keycloak/realm.json` (importable by `kc.sh import` as is, and free of secrets)
//! and drives the live Admin API calls of `drivers::keycloak`.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

/// The role that administers a client's realm.
pub const ROLE_REALM_ADMIN: &str = "realm_admin";
/// The role that edits a client's content.
pub const ROLE_EDITOR: &str = "editor";
/// The read-only role.
pub const ROLE_VIEWER: &str = "viewer";
/// The client Keycloak creates in every realm to hold that realm's admin permissions.
pub const REALM_MANAGEMENT_CLIENT: &str = "realm-management";
/// The `realm-management` role that is the composite of every admin permission of the realm.
pub const REALM_MANAGEMENT_ADMIN_ROLE: &str = "realm-admin";

/// A role of another client in the same realm, named by that client's `clientId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRole {
    pub client_id: String,
    pub role: String,
}

impl ClientRole {
    pub fn new(client_id: &str, role: &str) -> Self {
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
    pub fn is_composite(&self) -> bool {
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
}

/// Everything the runner manages in a client's realm.
#[derive(Debug, Clone, PartialEq)]
pub struct RealmSpec {
    pub realm: String,
    pub display_name: String,
    pub roles: Vec<RoleSpec>,
    pub admin: UserSpec,
}

/// The username of the realm admin in every client's realm.
pub const REALM_ADMIN_USER: &str = "realm-admin";

/// The three standard roles: `realm_admin` (editor + the realm's own admin permissions),
/// `editor` (viewer), `viewer`. Listed so that a role comes after the roles it contains.
pub fn standard_roles() -> Vec<RoleSpec> {
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
    pub fn for_client(client_id: &str, client_name: &str) -> Self {
        Self {
            realm: client_id.to_string(),
            display_name: client_name.to_string(),
            roles: standard_roles(),
            admin: UserSpec {
                username: REALM_ADMIN_USER.into(),
                email: None,
                first_name: "Realm".into(),
                last_name: "Administrator".into(),
                realm_roles: vec![ROLE_REALM_ADMIN.into()],
            },
        }
    }

    /// The realm attributes the runner owns: written to realm.json, sent on create, and
    /// converged (PUT) on a live realm whose values differ. `displayNameHtml` is deliberately
    /// absent: Keycloak renders it unescaped on the login page.
    pub fn settings(&self) -> Map<String, Value> {
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
            "failureFactor": 5,
            "waitIncrementSeconds": 60,
            "maxFailureWaitSeconds": 900,
            "minimumQuickLoginWaitSeconds": 60,
            "quickLoginCheckMilliSeconds": 1000,
            "maxDeltaTimeSeconds": 43200,
            "passwordPolicy": "length(12) and notUsername",
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }

    /// The role representation of realm.json (`roles.realm[]`).
    pub fn role_json(role: &RoleSpec) -> Value {
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
    pub fn user_json(user: &UserSpec) -> Value {
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
        let mut user = Self::user_json(&self.admin);
        user["realmRoles"] = json!(self.admin.realm_roles);
        realm.insert("users".into(), json!([user]));
        Value::Object(realm)
    }

    /// realm.json as written to disk: pretty JSON and a final newline.
    pub fn render(&self) -> String {
        render(&self.to_json())
    }

    /// Brings an existing realm.json up to date: the managed settings take this model's values,
    /// the standard roles are added or completed (composites are only ever added), the admin
    /// user is added or gets its realm roles, and any `credentials` of that user are dropped.
    /// Everything else in the file (other roles, users, clients, settings) is kept.
    pub fn update_json(&self, existing: &Value) -> Result<Value> {
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

        let users = realm.entry("users").or_insert_with(|| json!([]));
        let Value::Array(users) = users else {
            bail!("realm.json: `users` is not a list");
        };
        let wanted = self.admin.username.to_lowercase();
        let found = users.iter_mut().find(|u| u["username"].as_str().is_some_and(|name| name.to_lowercase() == wanted));
        match found {
            None => {
                let mut user = Self::user_json(&self.admin);
                user["realmRoles"] = json!(self.admin.realm_roles);
                users.push(user);
            }
            Some(user) => {
                if let Some(fields) = user.as_object_mut() {
                    fields.remove("credentials");
                }
                let roles = user.as_object_mut().map(|u| u.entry("realmRoles").or_insert_with(|| json!([])));
                if let Some(Value::Array(roles)) = roles {
                    for role in &self.admin.realm_roles {
                        if !roles.iter().any(|r| r == role.as_str()) {
                            roles.push(json!(role));
                        }
                    }
                }
            }
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
pub fn render(value: &Value) -> String {
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
        let spec = RealmSpec::for_client("acme", "ACME Corporation");
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
        let realm: Value = serde_json::from_str(&RealmSpec::for_client("evil", name).render()).unwrap();
        assert_eq!(realm["displayName"], name);
        assert_eq!(realm["enabled"], true);
        assert!(realm.get("x").is_none());
    }

    #[test]
    fn update_keeps_foreign_content_and_completes_ours() {
        let spec = RealmSpec::for_client("acme", "ACME Corporation");
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
    fn update_refuses_what_is_not_a_realm() {
        let spec = RealmSpec::for_client("acme", "ACME");
        assert!(spec.update_json(&json!([1, 2])).is_err());
        assert!(spec.update_json(&json!({"roles": []})).is_err());
    }
}
