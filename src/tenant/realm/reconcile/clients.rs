//! The realm's OpenID Connect clients for routed services: created confidential with the secret
//! from secrets.env, their managed fields put back when they drift, and their secret set when
//! Keycloak holds another one. The secret travels only in a request body on curl's stdin.

use anyhow::{Result, anyhow};
use serde_json::Value;

use super::{Action, Keycloak, RealmChange, RealmOutcome, Secret, differing_fields, realm_path, segment};
use crate::tenant::realm::OidcClientSpec;

impl Keycloak {
    pub(crate) fn create_client(&self, realm: &str, rep: &Value) -> Result<()> {
        let name = rep["clientId"].as_str().unwrap_or("");
        let path = format!("{}/clients", realm_path(realm));
        self.call("POST", &path, Some(rep), &[201], &format!("create client {name} in realm {realm}"))?;
        Ok(())
    }

    pub fn update_client(&self, realm: &str, uuid: &str, rep: &Value) -> Result<()> {
        let path = format!("{}/clients/{}", realm_path(realm), segment(uuid));
        self.call("PUT", &path, Some(rep), &[204], &format!("update a client of realm {realm}"))?;
        Ok(())
    }

    /// The secret Keycloak holds for a confidential client (`None` when it has none).
    pub fn client_secret(&self, realm: &str, uuid: &str) -> Result<Option<Secret>> {
        let path = format!("{}/clients/{}/client-secret", realm_path(realm), segment(uuid));
        let answer =
            self.call("GET", &path, None, &[200], &format!("read a client secret in realm {realm}"))?.json()?;
        Ok(answer["value"].as_str().map(Secret::new))
    }

    /// The client exists with the fields the runner manages.
    pub(crate) fn check_oidc_client(
        &self,
        realm: &str,
        spec: &OidcClientSpec,
        secret: &Secret,
    ) -> Result<Option<RealmChange>> {
        let wanted = spec.json();
        let Some(current) = self.client(realm, &spec.service)? else {
            return Ok(Some(RealmChange {
                outcome: RealmOutcome::Created,
                description: format!("create confidential client {} in realm {realm}", spec.service),
                action: Action::CreateClient { realm: realm.into(), rep: wanted, secret: secret.clone() },
            }));
        };
        let differing = differing_fields(wanted.as_object().expect("an object"), &current);
        if differing.is_empty() {
            return Ok(None);
        }
        let keys: Vec<&str> = differing.keys().map(String::as_str).collect();
        Ok(Some(RealmChange {
            outcome: RealmOutcome::Updated,
            description: format!("update client {} in realm {realm} ({})", spec.service, keys.join(", ")),
            action: Action::UpdateClient {
                realm: realm.into(),
                client_id: spec.service.clone(),
                rep: Value::Object(differing),
            },
        }))
    }

    /// Keycloak holds the secret of secrets.env for the client (checked only once it exists).
    pub(crate) fn check_client_secret(
        &self,
        realm: &str,
        spec: &OidcClientSpec,
        secret: &Secret,
    ) -> Result<Option<RealmChange>> {
        let current = match self.client(realm, &spec.service)? {
            Some(client) => self.client_secret(realm, client_uuid(&client)?.as_str())?,
            // A client created by this run gets the secret with it.
            None => return Ok(None),
        };
        if current.as_ref().is_some_and(|c| c.expose() == secret.expose()) {
            return Ok(None);
        }
        Ok(Some(RealmChange {
            outcome: RealmOutcome::Updated,
            description: format!(
                "set the secret of client {} in realm {realm} from {}",
                spec.service,
                spec.secret_key()
            ),
            action: Action::SetClientSecret {
                realm: realm.into(),
                client_id: spec.service.clone(),
                secret: secret.clone(),
            },
        }))
    }

    /// Carries out one of the client changes above.
    pub(super) fn apply_client_change(&self, action: &Action) -> Result<()> {
        match action {
            Action::CreateClient { realm, rep, secret } => {
                let mut rep = rep.clone();
                rep["secret"] = Value::String(secret.expose().to_string());
                self.create_client(realm, &rep)
            }
            Action::UpdateClient { realm, client_id, rep } => {
                self.update_client(realm, &self.require_client(realm, client_id)?, rep)
            }
            Action::SetClientSecret { realm, client_id, secret } => {
                let body = serde_json::json!({ "secret": secret.expose() });
                self.update_client(realm, &self.require_client(realm, client_id)?, &body)
            }
            other => unreachable!("not a client change: {other:?}"),
        }
    }

    fn require_client(&self, realm: &str, client_id: &str) -> Result<String> {
        let client =
            self.client(realm, client_id)?.ok_or_else(|| anyhow!("realm {realm} has no client {client_id}"))?;
        client_uuid(&client)
    }
}

fn client_uuid(client: &Value) -> Result<String> {
    client["id"].as_str().map(String::from).ok_or_else(|| anyhow!("Keycloak's client representation holds no id"))
}
