//! One HTTP request through curl: the config on stdin (URL, header, body, never in argv),
//! curl's output split into headers, body and status.

use super::*;

use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::process;

/// An HTTP answer as curl received it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!("Keycloak answered HTTP {} with a body that is not JSON: {}", self.status, self.snippet())
        })
    }

    /// Keycloak's own words: `errorMessage` (admin API), `error_description` and `error`
    /// (OAuth and exception mapper), else the start of a non-JSON body.
    pub(crate) fn message(&self) -> String {
        if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&self.body) {
            let text = |key: &str| body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(message) = text("errorMessage") {
                return message.to_string();
            }
            match (text("error"), text("error_description")) {
                (Some(error), Some(description)) => return format!("{description} ({error})"),
                (None, Some(description)) => return description.to_string(),
                (Some(error), None) => return error.to_string(),
                (None, None) => {}
            }
        }
        if self.body.trim().is_empty() { "no details in the answer".into() } else { self.snippet() }
    }

    pub(crate) fn snippet(&self) -> String {
        let text: String = self.body.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() > 160 { format!("{}...", text.chars().take(160).collect::<String>()) } else { text }
    }
}

/// Splits curl's stdout (`dump-header -`, the body, then `\n<http_code>` from `write-out`).
pub(crate) fn parse_curl_output(stdout: &str) -> Result<HttpResponse> {
    let (mut rest, code) = stdout.rsplit_once('\n').ok_or_else(|| anyhow!("curl printed no HTTP status"))?;
    let status: u16 = code.trim().parse().map_err(|_| anyhow!("curl printed no HTTP status (got {code:?})"))?;
    let mut headers = Vec::new();
    // One header block per response received (a `100 Continue` comes before the final one).
    while rest.starts_with("HTTP/") {
        let (block, after) = match rest.find("\r\n\r\n") {
            Some(end) => (&rest[..end], &rest[end + 4..]),
            None => match rest.find("\n\n") {
                Some(end) => (&rest[..end], &rest[end + 2..]),
                None => (rest, ""),
            },
        };
        let mut lines = block.lines();
        let block_status: u16 = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        rest = after;
        if !(100..200).contains(&block_status) {
            break;
        }
    }
    Ok(HttpResponse { status, headers, body: rest.to_string() })
}

pub(crate) enum Body {
    None,
    Json(String),
    /// A form holds the admin password or a refresh token.
    Form(Secret),
}

impl Keycloak {
    // ---- transport ----------------------------------------------------------------------

    pub(crate) fn execute(
        &self,
        method: &str,
        url: &str,
        body: &Body,
        bearer: Option<&Secret>,
    ) -> Result<HttpResponse> {
        // The path is sent as built (no dot-segment squashing by curl).
        let mut config = String::from("path-as-is\n");
        let mut line = |key: &str, value: &str| {
            config.push_str(key);
            config.push_str(" = ");
            config.push_str(&config_quote(value));
            config.push('\n');
        };
        line("url", url);
        line("request", method);
        line("header", "Accept: application/json");
        // No `Expect: 100-continue` round trip for larger bodies.
        line("header", "Expect:");
        if let Some(token) = bearer {
            line("header", &format!("Authorization: Bearer {}", token.expose()));
        }
        match body {
            Body::None => {}
            Body::Json(text) => {
                line("header", "Content-Type: application/json");
                line("data-raw", text);
            }
            Body::Form(form) => {
                line("header", "Content-Type: application/x-www-form-urlencoded");
                line("data-raw", form.expose());
            }
        }
        line("dump-header", "-");
        line("write-out", "\n%{http_code}");
        line("connect-timeout", &CONNECT_TIMEOUT_SECS.to_string());
        line("max-time", &REQUEST_TIMEOUT_SECS.to_string());
        if let Some(ca) = &self.settings.ca_cert {
            line("cacert", &ca.to_string_lossy());
        }

        self.requests.fetch_add(1, Ordering::Relaxed);
        let output =
            process::Command::new(&self.curl).args(["-q", "-sS", "-K", "-"]).stdin(config.into_bytes()).output()?;
        if !output.success() {
            // `curl: (7) Failed to connect ...` -> `Failed to connect ...`
            let line = output.first_error_line().trim_start_matches("curl: ");
            let reason = match line.split_once(") ") {
                Some((code, rest)) if code.starts_with('(') => rest,
                _ => line,
            };
            bail!("could not reach Keycloak at {}: {reason} (curl exit {})", self.settings.url, output.code);
        }
        parse_curl_output(&output.stdout)
    }

    /// The path prefix in front of `/realms` and `/admin`: `KEYCLOAK_PATH_PREFIX`, else the one
    /// under which the admin realm's discovery document answers (none first, then `/auth`).
    pub(crate) fn path_prefix(&self) -> Result<String> {
        if let Some(prefix) = &self.settings.path_prefix {
            return Ok(normalize_prefix(prefix));
        }
        if let Some(prefix) = &self.state().prefix {
            return Ok(prefix.clone());
        }
        let mut tried = Vec::new();
        for candidate in ["", "/auth"] {
            let path =
                format!("{candidate}/realms/{}/.well-known/openid-configuration", segment(&self.settings.admin_realm));
            let response = self.execute("GET", &format!("{}{path}", self.settings.url), &Body::None, None)?;
            let is_discovery =
                response.status == 200 && response.json().is_ok_and(|doc| doc.get("token_endpoint").is_some());
            if is_discovery {
                self.state().prefix = Some(candidate.to_string());
                return Ok(candidate.to_string());
            }
            tried.push(format!("GET {path} answered HTTP {}", response.status));
        }
        bail!(
            "no Keycloak admin realm {} found at {}: {}; check KEYCLOAK_URL (or set KEYCLOAK_PATH_PREFIX)",
            self.settings.admin_realm,
            self.settings.url,
            tried.join(", ")
        )
    }

    pub(crate) fn base(&self) -> Result<String> {
        Ok(format!("{}{}", self.settings.url, self.path_prefix()?))
    }
}
