//! Groups of a realm: the top-level groups, the realm roles mapped to each, and a user's
//! memberships. Like the rest of the driver, each `check_*` only reads and returns the change
//! still needed; [`Keycloak::apply`] carries it out.

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::{Action, Keycloak, RealmChange, RealmOutcome, brief_role, realm_path, segment, user_id};
use crate::tenant::realm::{GroupSpec, UserSpec};

impl Keycloak {
    /// The realm's top-level groups (`id`, `name`, `path`).
    pub fn groups(&self, realm: &str) -> Result<Vec<Value>> {
        let path = format!("{}/groups", realm_path(realm));
        self.get_list(&path, &format!("list the groups of realm {realm}"))
    }

    /// The top-level group with exactly this name.
    pub(crate) fn group(&self, realm: &str, name: &str) -> Result<Option<Value>> {
        Ok(self.groups(realm)?.into_iter().find(|g| g["name"] == name))
    }

    /// The realm roles mapped to a group.
    pub fn group_realm_roles(&self, realm: &str, group_id: &str) -> Result<Vec<Value>> {
        let path = format!("{}/groups/{}/role-mappings/realm", realm_path(realm), segment(group_id));
        self.get_list(&path, &format!("list the realm roles of a group in realm {realm}"))
    }

    /// The groups a user is a member of.
    pub fn user_groups(&self, realm: &str, user_id: &str) -> Result<Vec<Value>> {
        let path = format!("{}/users/{}/groups", realm_path(realm), segment(user_id));
        self.get_list(&path, &format!("list the groups of a user in realm {realm}"))
    }

    pub(crate) fn create_group(&self, realm: &str, name: &str) -> Result<()> {
        let path = format!("{}/groups", realm_path(realm));
        self.call(
            "POST",
            &path,
            Some(&json!({ "name": name })),
            &[201],
            &format!("create group {name} in realm {realm}"),
        )?;
        Ok(())
    }

    /// Maps realm roles (representations with `id` and `name`) to a group.
    pub(crate) fn add_group_realm_roles(&self, realm: &str, group_id: &str, roles: &[Value]) -> Result<()> {
        let path = format!("{}/groups/{}/role-mappings/realm", realm_path(realm), segment(group_id));
        let what = format!("map realm roles to a group of realm {realm}");
        self.call("POST", &path, Some(&Value::Array(roles.to_vec())), &[204], &what)?;
        Ok(())
    }

    pub(crate) fn join_group(&self, realm: &str, user_id: &str, group_id: &str) -> Result<()> {
        let path = format!("{}/users/{}/groups/{}", realm_path(realm), segment(user_id), segment(group_id));
        self.call("PUT", &path, None, &[204], &format!("add a user to a group of realm {realm}"))?;
        Ok(())
    }

    /// The group exists. `current`: the realm's groups, read once for all of them.
    pub(crate) fn check_group(&self, realm: &str, group: &GroupSpec, current: &[Value]) -> Option<RealmChange> {
        (!current.iter().any(|g| g["name"] == group.name.as_str())).then(|| RealmChange {
            outcome: RealmOutcome::Created,
            description: format!("create group {} in realm {realm}", group.name),
            action: Action::CreateGroup { realm: realm.into(), name: group.name.clone() },
        })
    }

    /// The group has its realm roles mapped (roles are only ever added).
    pub(crate) fn check_group_roles(
        &self,
        realm: &str,
        group: &GroupSpec,
        current: &[Value],
    ) -> Result<Option<RealmChange>> {
        let mapped = match current.iter().find(|g| g["name"] == group.name.as_str()) {
            Some(found) => self.group_realm_roles(realm, &group_id(found)?)?,
            None => Vec::new(),
        };
        let missing: Vec<String> = group
            .realm_roles
            .iter()
            .filter(|role| !mapped.iter().any(|m| m["name"] == role.as_str()))
            .cloned()
            .collect();
        Ok((!missing.is_empty()).then(|| RealmChange {
            outcome: if mapped.is_empty() { RealmOutcome::Created } else { RealmOutcome::Updated },
            description: format!("give group {} the realm roles {} in realm {realm}", group.name, missing.join(", ")),
            action: Action::MapGroupRoles { realm: realm.into(), group: group.name.clone(), roles: missing },
        }))
    }

    /// The user is a member of its groups (memberships are only ever added).
    pub(crate) fn check_user_groups(&self, realm: &str, spec: &UserSpec) -> Result<Option<RealmChange>> {
        let user = self.user(realm, &spec.username)?;
        self.membership_change(realm, spec, user.as_ref())
    }

    pub(super) fn membership_change(
        &self,
        realm: &str,
        spec: &UserSpec,
        user: Option<&Value>,
    ) -> Result<Option<RealmChange>> {
        let joined = match user {
            Some(user) => self.user_groups(realm, &user_id(user)?)?,
            None => Vec::new(),
        };
        let missing: Vec<String> =
            spec.groups.iter().filter(|name| !joined.iter().any(|g| g["name"] == name.as_str())).cloned().collect();
        Ok((!missing.is_empty()).then(|| RealmChange {
            outcome: if user.is_none() { RealmOutcome::Created } else { RealmOutcome::Updated },
            description: format!("add user {} to the groups {} in realm {realm}", spec.username, missing.join(", ")),
            action: Action::JoinGroups { realm: realm.into(), username: spec.username.clone(), groups: missing },
        }))
    }

    /// Carries out one of the group changes above.
    pub(super) fn apply_group_change(&self, action: &Action) -> Result<()> {
        match action {
            Action::CreateGroup { realm, name } => self.create_group(realm, name),
            Action::MapGroupRoles { realm, group, roles } => {
                let id = self.require_group(realm, group)?;
                let mut reps = Vec::new();
                for name in roles {
                    let role =
                        self.realm_role(realm, name)?.ok_or_else(|| anyhow!("realm {realm} has no role {name}"))?;
                    reps.push(brief_role(&role));
                }
                self.add_group_realm_roles(realm, &id, &reps)
            }
            Action::JoinGroups { realm, username, groups } => {
                let user =
                    self.user(realm, username)?.ok_or_else(|| anyhow!("realm {realm} has no user {username}"))?;
                let user = user_id(&user)?;
                for group in groups {
                    self.join_group(realm, &user, &self.require_group(realm, group)?)?;
                }
                Ok(())
            }
            other => unreachable!("not a group change: {other:?}"),
        }
    }

    fn require_group(&self, realm: &str, name: &str) -> Result<String> {
        let group = self.group(realm, name)?.ok_or_else(|| anyhow!("realm {realm} has no group {name}"))?;
        group_id(&group)
    }
}

fn group_id(group: &Value) -> Result<String> {
    group["id"].as_str().map(String::from).ok_or_else(|| anyhow!("Keycloak's group representation holds no id"))
}
