//! The per-client realm settings: themes, password policy, brute-force protection and the SSO
//! idle timeout, as create-client and setup-roles record them in client.env.

use anyhow::{Result, bail};

/// The per-client realm settings an operator chooses (recorded in client.env under these
/// names). Empty means the documented default; an unset theme is left to Keycloak.
pub(crate) const SETTING_KEYS: &[&str] = &[
    "KEYCLOAK_LOGIN_THEME",
    "KEYCLOAK_ACCOUNT_THEME",
    "KEYCLOAK_EMAIL_THEME",
    "PASSWORD_POLICY",
    "BRUTE_FORCE_FAILURES",
    "BRUTE_FORCE_MAX_WAIT",
    "SSO_SESSION_IDLE",
];

/// The realm settings of [`SETTING_KEYS`], resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmSettings {
    pub login_theme: Option<String>,
    pub account_theme: Option<String>,
    pub email_theme: Option<String>,
    pub password_policy: String,
    /// Failed logins before a temporary lockout (`failureFactor`).
    pub brute_force_failures: u32,
    /// The longest temporary lockout, in seconds (`maxFailureWaitSeconds`).
    pub brute_force_max_wait: u64,
    /// Idle time after which a login session ends, in seconds (`ssoSessionIdleTimeout`).
    pub sso_session_idle: u64,
}

impl Default for RealmSettings {
    fn default() -> Self {
        Self {
            login_theme: None,
            account_theme: None,
            email_theme: None,
            password_policy: "length(12) and notUsername".into(),
            brute_force_failures: 5,
            brute_force_max_wait: 900,
            sso_session_idle: 1800,
        }
    }
}

impl RealmSettings {
    /// Reads the settings from `get` (a client.env or the task's variables), checking each.
    pub(crate) fn from_values(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let value = |key: &str| get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let theme = |key: &str| -> Result<Option<String>> {
            match value(key) {
                Some(name)
                    if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
                {
                    Ok(Some(name))
                }
                Some(name) => bail!("{key}: {name:?} is not a theme name (letters, digits, '.', '_', '-')"),
                None => Ok(None),
            }
        };
        let seconds = |key: &str, default: u64| -> Result<u64> {
            match value(key) {
                Some(text) => humantime::parse_duration(&text)
                    .map(|d| d.as_secs())
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| anyhow::anyhow!("{key}: {text:?} is not a duration like 30m or 8h")),
                None => Ok(default),
            }
        };
        let defaults = Self::default();
        let password_policy = match value("PASSWORD_POLICY") {
            Some(policy) => {
                check_password_policy(&policy)?;
                policy
            }
            None => defaults.password_policy,
        };
        let brute_force_failures = match value("BRUTE_FORCE_FAILURES") {
            Some(text) => text.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                anyhow::anyhow!("BRUTE_FORCE_FAILURES: {text:?} is not a number of failed logins from 1 to 1000")
            })?,
            None => defaults.brute_force_failures,
        };
        Ok(Self {
            login_theme: theme("KEYCLOAK_LOGIN_THEME")?,
            account_theme: theme("KEYCLOAK_ACCOUNT_THEME")?,
            email_theme: theme("KEYCLOAK_EMAIL_THEME")?,
            password_policy,
            brute_force_failures,
            brute_force_max_wait: seconds("BRUTE_FORCE_MAX_WAIT", defaults.brute_force_max_wait)?,
            sso_session_idle: seconds("SSO_SESSION_IDLE", defaults.sso_session_idle)?,
        })
    }
}

/// Keycloak's policy syntax: `name` or `name(argument)` joined by ` and `. Arguments are kept
/// free of parentheses and quotes, so a value stays one policy string wherever it goes.
fn check_password_policy(policy: &str) -> Result<()> {
    for part in policy.split(" and ") {
        let (name, argument) = match part.split_once('(') {
            Some((name, rest)) => (name, rest.strip_suffix(')')),
            None => (part, Some("")),
        };
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
        let argument_ok = argument.is_some_and(|a| a.chars().all(|c| !c.is_control() && !"()\"'\\`".contains(c)));
        if !name_ok || !argument_ok {
            bail!("PASSWORD_POLICY: {part:?} is not a policy like length(12) (policies are joined by ' and ')");
        }
    }
    Ok(())
}
