//! Groups in the fake Admin API, with Keycloak's status codes and bodies: top-level groups
//! (`POST /groups` 201 + Location, 409 "Top level group named 'x' already exists."), their realm
//! role mappings (204; 404 "Role not found"), and users' memberships (`PUT
//! /users/{id}/groups/{groupId}` 204; 404 "Group not found").

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Answer, FakeKeycloak, Realm, encode_segment, new_id};

#[derive(Debug, Clone)]
pub(super) struct Group {
    id: String,
    name: String,
    /// Ids of the realm roles mapped to the group.
    roles: BTreeSet<String>,
}

impl Group {
    fn rep(&self) -> Value {
        json!({ "id": self.id, "name": self.name, "path": format!("/{}", self.name), "subGroupCount": 0, "subGroups": [] })
    }
}

impl Realm {
    /// A group of a realm representation (`name`, `realmRoles`), as an import creates it.
    pub(super) fn import_group(&mut self, rep: &Value) -> Result<(), Answer> {
        let Some(name) = rep["name"].as_str() else {
            return Err(Answer::error(400, "HTTP 400 Bad Request"));
        };
        let mut roles = BTreeSet::new();
        for role in rep["realmRoles"].as_array().into_iter().flatten() {
            let found = self
                .realm_role(role.as_str().unwrap_or_default())
                .ok_or_else(|| Answer::oauth(500, "unknown_error", "For more on this error consult the server log."))?;
            roles.insert(found.id.clone());
        }
        self.groups.push(Group { id: new_id(), name: name.to_string(), roles });
        Ok(())
    }

    /// The name of the first of `groups` (representations) the realm has already.
    pub(super) fn existing_group(&self, groups: &[Value]) -> Option<String> {
        groups.iter().filter_map(|g| g["name"].as_str()).find(|n| self.group_id(n).is_some()).map(String::from)
    }

    pub(super) fn group_id(&self, name: &str) -> Option<String> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.id.clone())
    }

    /// Removes a group and every membership of it (an overwriting import replaces it).
    pub(super) fn remove_group(&mut self, name: &str) {
        if let Some(id) = self.group_id(name) {
            self.groups.retain(|g| g.id != id);
            for user in &mut self.users {
                user.groups.remove(&id);
            }
        }
    }

    /// The group ids of a user representation's `groups` (paths like `/admins`).
    pub(super) fn group_ids_of_paths(&self, paths: &Value) -> Result<Vec<String>, Answer> {
        let mut ids = Vec::new();
        for path in paths.as_array().into_iter().flatten() {
            let name = path.as_str().unwrap_or_default().trim_start_matches('/');
            match self.groups.iter().find(|g| g.name == name) {
                Some(group) => ids.push(group.id.clone()),
                None => return Err(Answer::error(404, "Group not found")),
            }
        }
        Ok(ids)
    }
}

/// `/admin/realms/{realm}/groups...`
pub(super) fn resource(realm: &mut Realm, method: &str, rest: &[&str], body: &Value, base: &str) -> Answer {
    match (method, rest) {
        ("GET", []) => Answer::json(200, json!(realm.groups.iter().map(Group::rep).collect::<Vec<_>>())),
        ("POST", []) => {
            let Some(name) = body["name"].as_str().filter(|n| !n.trim().is_empty()) else {
                return Answer::error_message(400, "Group name is missing");
            };
            if realm.groups.iter().any(|g| g.name == name) {
                return Answer::error_message(409, &format!("Top level group named '{name}' already exists."));
            }
            let id = new_id();
            realm.groups.push(Group { id: id.clone(), name: name.to_string(), roles: BTreeSet::new() });
            Answer::created(format!("{base}/groups/{}", encode_segment(&id)))
        }
        (_, [id, tail @ ..]) => {
            let Some(index) = realm.groups.iter().position(|g| g.id == *id) else {
                return Answer::error(404, "Could not find group by id");
            };
            match (method, tail) {
                ("GET", []) => Answer::json(200, realm.groups[index].rep()),
                ("DELETE", []) => {
                    let name = realm.groups[index].name.clone();
                    realm.remove_group(&name);
                    Answer::empty(204)
                }
                ("GET", ["role-mappings", "realm"]) => {
                    let list: Vec<Value> = realm.groups[index]
                        .roles
                        .iter()
                        .filter_map(|id| realm.role_by_id(id))
                        .map(|r| realm.role_rep(r, false))
                        .collect();
                    Answer::json(200, json!(list))
                }
                ("POST", ["role-mappings", "realm"]) => {
                    let Some(list) = body.as_array() else {
                        return Answer::oauth(400, "invalid_request", "Cannot parse the JSON");
                    };
                    let mut ids = Vec::new();
                    for rep in list {
                        match rep["name"].as_str().and_then(|n| realm.realm_role(n)) {
                            Some(role) if rep["id"] == role.id.as_str() => ids.push(role.id.clone()),
                            _ => return Answer::error(404, "Role not found"),
                        }
                    }
                    realm.groups[index].roles.extend(ids);
                    Answer::empty(204)
                }
                _ => Answer::error(404, "Unable to find matching target resource method"),
            }
        }
        _ => Answer::error(405, "HTTP 405 Method Not Allowed"),
    }
}

/// `/admin/realms/{realm}/users/{id}/groups[/{groupId}]`
pub(super) fn membership(realm: &mut Realm, user: usize, method: &str, rest: &[&str]) -> Answer {
    match (method, rest) {
        ("GET", []) => {
            let joined = &realm.users[user].groups;
            Answer::json(
                200,
                json!(realm.groups.iter().filter(|g| joined.contains(&g.id)).map(Group::rep).collect::<Vec<_>>()),
            )
        }
        ("PUT" | "DELETE", [group]) => {
            let Some(found) = realm.groups.iter().find(|g| g.id == *group).map(|g| g.id.clone()) else {
                return Answer::error(404, "Group not found");
            };
            let groups = &mut realm.users[user].groups;
            if method == "PUT" {
                groups.insert(found);
            } else {
                groups.remove(&found);
            }
            Answer::empty(204)
        }
        _ => Answer::error(405, "HTTP 405 Method Not Allowed"),
    }
}

impl FakeKeycloak {
    /// The names of a realm's groups.
    pub fn group_names(&self, realm: &str) -> Vec<String> {
        let state = self.state();
        state.realms.get(realm).map(|r| r.groups.iter().map(|g| g.name.clone()).collect()).unwrap_or_default()
    }

    /// The realm roles mapped to a group, by name, sorted.
    pub fn group_role_names(&self, realm: &str, group: &str) -> Vec<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else { return vec![] };
        let Some(g) = r.groups.iter().find(|g| g.name == group) else { return vec![] };
        let mut names: Vec<String> = g.roles.iter().filter_map(|id| r.role_by_id(id)).map(|r| r.name.clone()).collect();
        names.sort();
        names
    }

    /// The groups a user is a member of, by name, sorted.
    pub fn user_group_names(&self, realm: &str, username: &str) -> Vec<String> {
        let state = self.state();
        let Some(r) = state.realms.get(realm) else { return vec![] };
        let Some(u) = r.user_by_name(username) else { return vec![] };
        let mut names: Vec<String> =
            r.groups.iter().filter(|g| u.groups.contains(&g.id)).map(|g| g.name.clone()).collect();
        names.sort();
        names
    }

    /// Changes a realm attribute behind agency's back (drift).
    pub fn set_realm_attribute(&self, realm: &str, key: &str, value: Value) {
        let mut state = self.state();
        if let Some(r) = state.realms.get_mut(realm) {
            r.rep.insert(key.to_string(), value);
        }
    }
}
