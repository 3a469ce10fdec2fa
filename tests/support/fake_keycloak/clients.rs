//! Clients created through the fake Admin API, with Keycloak's answers: `POST /clients` 201 +
//! Location (409 "Client x already exists"), `PUT /clients/{id}` 204 (a `secret` in the body
//! sets a confidential client's secret), `GET /clients/{id}/client-secret`.

use serde_json::{Map, Value, json};

use super::{Answer, Client, FakeKeycloak, Realm, new_id};

/// The fields kept apart from `attributes`.
const OWN_FIELDS: &[&str] = &["id", "clientId", "publicClient", "bearerOnly", "secret"];

fn attributes_of(body: &Value) -> Map<String, Value> {
    body.as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn create(realm: &mut Realm, body: &Value, base: &str) -> Answer {
    let Some(client_id) = body["clientId"].as_str().filter(|c| !c.is_empty()) else {
        return Answer::error_message(400, "Client id is missing");
    };
    if realm.client_by_client_id(client_id).is_some() {
        return Answer::error_message(409, &format!("Client {client_id} already exists"));
    }
    let public = body["publicClient"].as_bool().unwrap_or(false);
    let id = new_id();
    // A confidential client created without a secret gets a generated one, as in Keycloak.
    let secret = (!public).then(|| body["secret"].as_str().map(String::from).unwrap_or_else(new_id));
    realm.clients.push(Client {
        id: id.clone(),
        client_id: client_id.to_string(),
        public,
        bearer_only: body["bearerOnly"].as_bool().unwrap_or(false),
        attributes: attributes_of(body),
        secret,
    });
    Answer::created(format!("{base}/clients/{id}"))
}

pub(super) fn update(realm: &mut Realm, id: &str, body: &Value) -> Answer {
    if !body.is_object() {
        return Answer::oauth(400, "invalid_request", "Cannot parse the JSON");
    }
    let client = realm.clients.iter_mut().find(|c| c.id == id).expect("looked up by the caller");
    client.attributes.extend(attributes_of(body));
    if let Some(public) = body["publicClient"].as_bool() {
        client.public = public;
    }
    if let Some(secret) = body["secret"].as_str() {
        client.secret = Some(secret.to_string());
    }
    Answer::empty(204)
}

pub(super) fn secret(client: &Client) -> Answer {
    match &client.secret {
        Some(value) if !client.public => Answer::json(200, json!({ "type": "secret", "value": value })),
        _ => Answer::json(200, json!({ "type": "secret" })),
    }
}

impl FakeKeycloak {
    /// A client's representation, by `clientId` (with its secret, as Keycloak shows an admin).
    pub fn client_rep(&self, realm: &str, client_id: &str) -> Option<Value> {
        let state = self.state();
        let r = state.realms.get(realm)?;
        r.client_by_client_id(client_id).map(|c| r.client_rep(c))
    }

    /// Gives a confidential client another secret, as an operator in the admin console would
    /// (nothing else of the client changes); panics when there is no such client.
    pub fn set_client_secret(&self, realm: &str, client_id: &str, secret: &str) {
        let mut state = self.state();
        let r = state.realms.get_mut(realm).expect("the realm exists");
        let client = r.clients.iter_mut().find(|c| c.client_id == client_id).expect("the client exists");
        client.secret = Some(secret.to_string());
    }
}
