//! The OpenID Connect clients of a realm: one per routed service of the client's stack.

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// The variable that hands a stack the issuer of the client's realm (`${OIDC_ISSUER}`).
pub(crate) const ISSUER_VARIABLE: &str = "OIDC_ISSUER";

/// The issuer of `realm` on the Keycloak whose realms start at `keycloak_base` (KEYCLOAK_URL
/// with the path prefix the driver resolves, `/auth` on a legacy server; see
/// `Keycloak::base`): `<url><prefix>/realms/<realm>`.
pub(crate) fn issuer(keycloak_base: &str, realm: &str) -> String {
    format!("{}/realms/{realm}", keycloak_base.trim_end_matches('/'))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::drivers::keycloak::{Keycloak, KeycloakSettings, Secret};

    fn keycloak(url: &str, prefix: Option<&str>, curl: &str) -> Keycloak {
        let mut settings = KeycloakSettings::new(url, "admin", Secret::new("pw")).unwrap();
        settings.path_prefix = prefix.map(str::to_string);
        Keycloak::with_curl(settings, Path::new(curl))
    }

    #[test]
    fn the_issuer_carries_the_path_prefix_the_driver_resolves() {
        // A set KEYCLOAK_PATH_PREFIX is taken as it is (no call to Keycloak: curl is missing).
        let legacy = keycloak("https://sso.example.com/", Some("auth/"), "/nonexistent/curl");
        assert_eq!(issuer(&legacy.base().unwrap(), "acme"), "https://sso.example.com/auth/realms/acme");
        let current = keycloak("https://sso.example.com", Some(""), "/nonexistent/curl");
        assert_eq!(issuer(&current.base().unwrap(), "acme"), "https://sso.example.com/realms/acme");
        // Unset, it is detected: never guessed as none when Keycloak cannot be asked.
        let unset = keycloak("https://sso.example.com", None, "/bin/false");
        assert!(unset.base().is_err());
        assert_eq!(legacy.requests_sent() + current.requests_sent(), 0);
    }

    #[test]
    fn a_stack_gets_the_issuer_with_the_prefix() {
        let text = "services:\n  web:\n    image: x\n    labels: {agency.tiers: 'frontend', agency.http.port: 80}\n    \
                    environment:\n      ISSUER: ${OIDC_ISSUER:-none}\n";
        let stack = crate::tenant::stack::Stack::parse("s", "test", text).unwrap();
        let client = [("CLIENT_ID".to_string(), "acme".to_string())].into();
        let env = crate::tenant::deploy::compose_env(
            &stack,
            &client,
            &Default::default(),
            Some("http://kc:8080/auth"),
            &|_| None,
        )
        .unwrap();
        assert_eq!(env[ISSUER_VARIABLE], "http://kc:8080/auth/realms/acme");
        let offline =
            crate::tenant::deploy::compose_env(&stack, &client, &Default::default(), None, &|_| None).unwrap();
        assert!(!offline.contains_key(ISSUER_VARIABLE));
    }
}
