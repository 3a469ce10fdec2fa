//! The admin token: password grant, refresh before expiry, forgotten on a 401.

use super::*;

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

pub(crate) struct Token {
    access: Secret,
    expires_at: Instant,
    renew_at: Instant,
    refresh: Option<Secret>,
    refresh_renew_at: Option<Instant>,
}

impl Token {
    pub(crate) fn from_response(value: &Value, now: Instant) -> Result<Token> {
        let access = value["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("Keycloak's token answer holds no access_token"))?;
        let lifetime = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(60));
        let refresh = value["refresh_token"].as_str().filter(|t| !t.is_empty()).map(Secret::new);
        let refresh_renew_at = match value["refresh_expires_in"].as_u64() {
            Some(0) | None => None,
            Some(secs) => Some(now + renew_after(Duration::from_secs(secs))),
        };
        Ok(Token {
            access: Secret::new(access),
            expires_at: now + lifetime,
            renew_at: now + renew_after(lifetime),
            refresh,
            refresh_renew_at,
        })
    }

    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now < self.renew_at && now < self.expires_at
    }

    pub(crate) fn refreshable(&self, now: Instant) -> bool {
        self.refresh.is_some() && self.refresh_renew_at.is_none_or(|at| now < at)
    }
}

/// How long a token of this lifetime is used before it is renewed.
pub(crate) fn renew_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / RENEW_FRACTION).min(RENEW_MARGIN_CAP);
    lifetime - margin
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) prefix: Option<String>,
    pub(crate) token: Option<Token>,
}

impl Keycloak {
    // ---- token --------------------------------------------------------------------------

    pub(crate) fn token_url(&self) -> Result<String> {
        Ok(format!("{}/realms/{}/protocol/openid-connect/token", self.base()?, segment(&self.settings.admin_realm)))
    }

    /// A valid admin access token: the cached one, a refreshed one, or a new login.
    pub(crate) fn token(&self) -> Result<Secret> {
        let url = self.token_url()?;
        let now = Instant::now();
        let cached = self.state().token.take();
        if let Some(token) = cached {
            if token.fresh(now) {
                let access = token.access.clone();
                self.state().token = Some(token);
                return Ok(access);
            }
            if token.refreshable(now)
                && let Some(refresh) = &token.refresh
                && let Ok(renewed) = self.refresh_grant(&url, refresh)
            {
                let access = renewed.access.clone();
                self.state().token = Some(renewed);
                return Ok(access);
            }
        }
        let token = self.password_grant(&url)?;
        let access = token.access.clone();
        self.state().token = Some(token);
        Ok(access)
    }

    pub(crate) fn password_grant(&self, url: &str) -> Result<Token> {
        let s = &self.settings;
        let form = format!(
            "grant_type=password&client_id={}&username={}&password={}",
            encode(&s.admin_client_id),
            encode(&s.admin_user),
            encode(s.admin_password.expose())
        );
        let now = Instant::now();
        let response = self.execute("POST", url, &Body::Form(Secret::new(form)), None)?;
        match response.status {
            200 => Token::from_response(&response.json()?, now),
            400 | 401 => {
                let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
                let hint = match body["error"].as_str() {
                    Some("invalid_grant") => "; check KEYCLOAK_ADMIN and KEYCLOAK_ADMIN_PASSWORD",
                    Some("invalid_client" | "unauthorized_client") => {
                        "; check KEYCLOAK_ADMIN_CLIENT_ID (a public client with direct access grants)"
                    }
                    _ => "",
                };
                bail!(
                    "Keycloak rejected the admin login of user {} in realm {}: HTTP {} {}{hint}",
                    s.admin_user,
                    s.admin_realm,
                    response.status,
                    response.message()
                )
            }
            _ => bail!(
                "Keycloak refused the admin token request for realm {}: HTTP {} {}",
                s.admin_realm,
                response.status,
                response.message()
            ),
        }
    }

    pub(crate) fn refresh_grant(&self, url: &str, refresh: &Secret) -> Result<Token> {
        let form = format!(
            "grant_type=refresh_token&client_id={}&refresh_token={}",
            encode(&self.settings.admin_client_id),
            encode(refresh.expose())
        );
        let now = Instant::now();
        let response = self.execute("POST", url, &Body::Form(Secret::new(form)), None)?;
        if response.status != 200 {
            bail!("token refresh answered HTTP {} {}", response.status, response.message());
        }
        Token::from_response(&response.json()?, now)
    }

    /// Forgets the cached token (the server no longer accepts it).
    pub(crate) fn drop_token(&self) {
        self.state().token = None;
    }
}
