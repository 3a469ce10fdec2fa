//! Reconciling a realm with its model: each `check_*` only reads and returns the [`RealmChange`]
//! still needed (or `None`), [`Keycloak::apply`] carries one out, and the `ensure_*` helpers
//! do both. A dry run runs the checks and shows the changes; a real run applies them.

mod clients;
mod groups;

use crate::drivers::keycloak::*;

use std::fmt;

use anyhow::{Result, anyhow};
use serde_json::{Map, Value, json};

use crate::tenant::realm::{ClientRole, RealmSpec, RoleSpec, UserSpec};

/// What a created/updated/unchanged step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmOutcome {
    Created,
    Updated,
    Unchanged,
}

impl RealmOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RealmOutcome::Created => "created",
            RealmOutcome::Updated => "updated",
            RealmOutcome::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for RealmOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change a check found still needed. Its description names what changes and never holds
/// a secret; [`Keycloak::apply`] carries it out (ids are looked up then, so a plan made before
/// the realm exists still applies).
#[derive(Debug, Clone)]
pub struct RealmChange {
    pub outcome: RealmOutcome,
    pub description: String,
    action: Action,
}

impl RealmChange {}

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

/// One line of a realm setup: what it is about and the change it needs (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct Step {
    /// `keycloak realm`, `keycloak role`, `keycloak composites`, `keycloak user`,
    /// `keycloak password`, `keycloak role mapping`.
    pub action: &'static str,
    /// `acme`, `acme/editor`, `acme/realm-admin`: the realm, and the role or user in it.
    pub target: String,
    pub change: Option<RealmChange>,
}

impl Step {
    fn new(action: &'static str, target: String, change: Option<RealmChange>) -> Self {
        Self { action, target, change }
    }

    /// `keycloak role acme/editor`.
    pub(crate) fn subject(&self) -> String {
        format!("{} {}", self.action, self.target)
    }

    pub(crate) fn outcome(&self) -> RealmOutcome {
        self.change.as_ref().map_or(RealmOutcome::Unchanged, |c| c.outcome)
    }
}

impl Keycloak {
    // ---- checks: read-only, return the change still needed --------------------------------

    /// The realm exists with the managed settings of `spec`.
    pub(crate) fn check_realm(&self, spec: &RealmSpec) -> Result<Option<RealmChange>> {
        let desired = spec.settings();
        let Some(current) = self.realm(&spec.realm)? else {
            return Ok(Some(RealmChange {
                outcome: RealmOutcome::Created,
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
        Ok(Some(RealmChange {
            outcome: RealmOutcome::Updated,
            description: format!("update realm {} ({})", spec.realm, keys.join(", ")),
            action: Action::UpdateRealm { realm: spec.realm.clone(), rep: Value::Object(differing) },
        }))
    }

    /// The realm role exists with its description.
    pub(crate) fn check_role(&self, realm: &str, role: &RoleSpec) -> Result<Option<RealmChange>> {
        let rep = json!({"name": role.name, "description": role.description});
        match self.realm_role(realm, &role.name)? {
            None => Ok(Some(RealmChange {
                outcome: RealmOutcome::Created,
                description: format!("create role {} in realm {realm}", role.name),
                action: Action::CreateRole { realm: realm.into(), rep },
            })),
            Some(current) if current["description"] != role.description.as_str() => Ok(Some(RealmChange {
                outcome: RealmOutcome::Updated,
                description: format!("update the description of role {} in realm {realm}", role.name),
                action: Action::UpdateRole { realm: realm.into(), name: role.name.clone(), rep },
            })),
            Some(_) => Ok(None),
        }
    }

    /// The realm role contains the roles of `role` (composites are only ever added).
    pub(crate) fn check_composites(&self, realm: &str, role: &RoleSpec) -> Result<Option<RealmChange>> {
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
        Ok(Some(RealmChange {
            outcome: if current.is_empty() { RealmOutcome::Created } else { RealmOutcome::Updated },
            description: format!("add {} to role {} in realm {realm}", names.join(", "), role.name),
            action: Action::AddComposites {
                realm: realm.into(),
                role: role.name.clone(),
                realm_roles: missing_realm,
                client_roles: missing_client,
            },
        }))
    }

    /// The user has a password. A user that has one keeps it unless `reset` (rotation):
    /// Keycloak cannot say whether a stored password equals ours without a login.
    pub(crate) fn check_password(
        &self,
        realm: &str,
        username: &str,
        password: &Secret,
        reset: bool,
    ) -> Result<Option<RealmChange>> {
        let current = self.user(realm, username)?;
        self.password_change(realm, username, current.as_ref(), password, reset)
    }

    fn password_change(
        &self,
        realm: &str,
        username: &str,
        user: Option<&Value>,
        password: &Secret,
        reset: bool,
    ) -> Result<Option<RealmChange>> {
        let has_password = match user {
            None => false,
            Some(user) => self.user_credentials(realm, &user_id(user)?)?.iter().any(|c| c["type"] == "password"),
        };
        let (outcome, description) = match (has_password, reset) {
            (true, false) => return Ok(None),
            (true, true) => (RealmOutcome::Updated, format!("reset the password of user {username} in realm {realm}")),
            (false, _) => (RealmOutcome::Created, format!("set the password of user {username} in realm {realm}")),
        };
        Ok(Some(RealmChange {
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
    ) -> Result<Option<RealmChange>> {
        let current = match user {
            None => Vec::new(),
            Some(user) => self.user_realm_roles(realm, &user_id(user)?)?,
        };
        let missing: Vec<String> =
            roles.iter().filter(|role| !current.iter().any(|c| c["name"] == role.as_str())).cloned().collect();
        if missing.is_empty() {
            return Ok(None);
        }
        Ok(Some(RealmChange {
            outcome: if user.is_none() { RealmOutcome::Created } else { RealmOutcome::Updated },
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
    pub(crate) fn plan_with_clients(
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
    ) -> Result<Vec<(String, RealmOutcome)>> {
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
    pub fn apply(&self, change: &RealmChange) -> Result<()> {
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
    pub(crate) fn ensure(&self, change: Option<RealmChange>) -> Result<RealmOutcome> {
        match change {
            None => Ok(RealmOutcome::Unchanged),
            Some(change) => {
                self.apply(&change)?;
                Ok(change.outcome)
            }
        }
    }

    pub fn ensure_realm(&self, spec: &RealmSpec) -> Result<RealmOutcome> {
        self.ensure(self.check_realm(spec)?)
    }

    pub fn ensure_role(&self, realm: &str, role: &RoleSpec) -> Result<RealmOutcome> {
        self.ensure(self.check_role(realm, role)?)
    }

    pub fn ensure_composites(&self, realm: &str, role: &RoleSpec) -> Result<RealmOutcome> {
        self.ensure(self.check_composites(realm, role)?)
    }

    pub fn ensure_password(&self, realm: &str, username: &str, password: &Secret, reset: bool) -> Result<RealmOutcome> {
        self.ensure(self.check_password(realm, username, password, reset)?)
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
pub(crate) fn differing_fields(wanted: &Map<String, Value>, current: &Value) -> Map<String, Value> {
    wanted
        .iter()
        .filter(|(key, value)| current.get(key.as_str()) != Some(*value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn user_change(realm: &str, user: &UserSpec, current: Option<&Value>) -> Option<RealmChange> {
    let desired = RealmSpec::user_json(user);
    let Some(current) = current else {
        return Some(RealmChange {
            outcome: RealmOutcome::Created,
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
    Some(RealmChange {
        outcome: RealmOutcome::Updated,
        description: format!("update user {} in realm {realm} ({})", user.username, keys.join(", ")),
        action: Action::UpdateUser {
            realm: realm.into(),
            username: user.username.clone(),
            rep: Value::Object(differing),
        },
    })
}
