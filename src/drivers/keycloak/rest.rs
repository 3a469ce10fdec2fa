//! The plain Admin REST calls: read, create, update, delete realms, roles, users, clients.

use super::*;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

impl Keycloak {
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

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
        what: &str,
    ) -> Result<HttpResponse> {
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
    pub(crate) fn get_optional(&self, path: &str, what: &str) -> Result<Option<Value>> {
        let response = self.call("GET", path, None, &[200, 404], what)?;
        if response.status == 404 { Ok(None) } else { response.json().map(Some) }
    }

    /// A GET of a list whose 404 (its parent is absent) means "empty".
    pub(crate) fn get_list(&self, path: &str, what: &str) -> Result<Vec<Value>> {
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

    pub(crate) fn realm_roles(&self, realm: &str) -> Result<Vec<Value>> {
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
    pub(crate) fn client_role(&self, realm: &str, client_uuid: &str, role: &str) -> Result<Option<Value>> {
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

    pub(crate) fn user_credentials(&self, realm: &str, user_id: &str) -> Result<Vec<Value>> {
        let path = format!("{}/users/{}/credentials", realm_path(realm), segment(user_id));
        self.get_list(&path, &format!("list the credentials of a user in realm {realm}"))
    }

    /// The realm roles mapped directly to a user.
    pub(crate) fn user_realm_roles(&self, realm: &str, user_id: &str) -> Result<Vec<Value>> {
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

    pub(crate) fn update_realm_role(&self, realm: &str, role: &str, rep: &Value) -> Result<()> {
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

    pub(crate) fn update_user(&self, realm: &str, user_id: &str, rep: &Value) -> Result<()> {
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
    pub(crate) fn add_user_realm_roles(&self, realm: &str, user_id: &str, roles: &[Value]) -> Result<()> {
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
}

pub(crate) fn realm_path(realm: &str) -> String {
    format!("/admin/realms/{}", segment(realm))
}

pub(crate) fn user_id(user: &Value) -> Result<String> {
    user["id"].as_str().map(String::from).ok_or_else(|| anyhow!("Keycloak's user representation holds no id"))
}

/// The part of a role representation the role-mapping and composite endpoints need.
pub(crate) fn brief_role(role: &Value) -> Value {
    let mut brief = json!({"id": role["id"], "name": role["name"]});
    for key in ["clientRole", "containerId"] {
        if let Some(value) = role.get(key) {
            brief[key] = value.clone();
        }
    }
    brief
}
