//! The OpenID Connect clients of a realm: one per routed service of the client's stack.

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// The variable that hands a stack the issuer of the client's realm (`${OIDC_ISSUER}`).
pub(crate) const ISSUER_VARIABLE: &str = "OIDC_ISSUER";

/// The issuer of `realm` on the Keycloak at `keycloak_url` (KEYCLOAK_URL, with its `/auth`
/// prefix when the server has one): `<url>/realms/<realm>`.
pub(crate) fn issuer(keycloak_url: &str, realm: &str) -> String {
    format!("{}/realms/{realm}", keycloak_url.trim_end_matches('/'))
}

/// A confidential OpenID Connect client of the realm for one routed service of the client's
/// stack, reachable at the client's domain. Its secret lives in secrets.env under
/// [`OidcClientSpec::secret_key`] and reaches Keycloak only through the Admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClientSpec {
    /// The service's name, also the client's `clientId` in the realm.
    pub service: String,
    pub domain: String,
}

impl OidcClientSpec {
    /// `OIDC_SECRET_<SERVICE>`, the service name upper-cased with `-` as `_`.
    pub(crate) fn secret_key(&self) -> String {
        format!("OIDC_SECRET_{}", self.service.to_ascii_uppercase().replace('-', "_"))
    }

    /// The representation the runner manages (never with the secret).
    pub(crate) fn json(&self) -> Value {
        let root = format!("https://{}", self.domain);
        json!({
            "clientId": self.service,
            "name": self.service,
            "enabled": true,
            "protocol": "openid-connect",
            "publicClient": false,
            "clientAuthenticatorType": "client-secret",
            "standardFlowEnabled": true,
            "directAccessGrantsEnabled": false,
            "rootUrl": root,
            "redirectUris": [format!("{root}/*")],
            "webOrigins": [root],
        })
    }

    /// The routed services named in `OIDC_SERVICES` (comma-separated), for `CLIENT_DOMAIN`.
    pub(crate) fn from_values(get: impl Fn(&str) -> Option<String>) -> Result<Vec<Self>> {
        let services = get("OIDC_SERVICES").unwrap_or_default();
        let names: Vec<&str> = services.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let Some(domain) = get("CLIENT_DOMAIN").filter(|d| crate::format::validate::Kind::Domain.check(d).is_ok())
        else {
            bail!("OIDC_SERVICES needs the client's CLIENT_DOMAIN (a DNS name) for the redirect URIs");
        };
        names
            .into_iter()
            .map(|name| {
                let valid = name.len() <= 63
                    && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
                if !valid {
                    bail!("OIDC_SERVICES: {name:?} is not a service name (lowercase letters, digits, '-', '_')");
                }
                Ok(Self { service: name.to_string(), domain: domain.clone() })
            })
            .collect()
    }
}
