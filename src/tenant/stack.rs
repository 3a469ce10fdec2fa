//! Stacks (SPEC §10): `stacks/<name>/compose.yml`, a plain Compose file naming images, built
//! in or in the site dir (the site's winning). A service declares the client tiers it joins
//! (`agency.tiers`), the one the ingress routes to its container port (`agency.http.port`), a
//! database its engine (`agency.db`). Per client, [`Stack::render_override`] puts the services
//! on the client's networks with labels, limits and hardened defaults; the stack's own file is
//! used as it is, its `${VAR}` references filled from the compose process's environment.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    drivers::docker::LABEL_MANAGED,
    tenant::policy::{CLIENT_LABEL, TIER_NAMES as TIERS},
};

/// The stack a client gets when create-client is given no `STACK`.
pub const DEFAULT_STACK: &str = "wordpress";

/// Engines the db-passwords plugin knows.
pub const DB_ENGINES: [&str; 4] = ["mariadb", "mysql", "postgres", "postgresql"];

pub(crate) use crate::drivers::docker::{LABEL_DEPLOY, LABEL_SERVICE};
pub const LABEL_STACK: &str = "agency.stack";

/// Service keys a stack may not set: agency owns networks and hardening, and these would
/// reach the host or other tenants (published ports bypass the ingress, host namespaces and
/// devices the isolation).
const FORBIDDEN_SERVICE_KEYS: [&str; 14] = [
    "networks",
    "network_mode",
    "ports",
    "privileged",
    "pid",
    "ipc",
    "uts",
    "userns_mode",
    "devices",
    "cap_add",
    "security_opt",
    "container_name",
    "volumes_from",
    "extends",
];

/// Per-client limits and the names of the client's resources.
#[derive(Debug, Clone)]
pub struct ClientSpec<'a> {
    pub id: &'a str,
    pub cpus: f64,
    pub memory: &'a str,
    pub pids: i64,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub tiers: Vec<&'static str>,
    pub http_port: Option<u16>,
    pub db: Option<String>,
    /// The `image:` text, `${VAR}` references unresolved.
    pub image: String,
    /// The service's section of the stack file.
    pub config: Value,
}

impl Service {
    /// The environment variable carrying this service's deploy fingerprint.
    pub fn deploy_variable(&self) -> String {
        let name: String =
            self.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        format!("AGENCY_DEPLOY_{name}")
    }
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    /// `built-in` or the file's path.
    pub origin: String,
    /// The stack's compose.yml as written.
    pub text: String,
    pub services: Vec<Service>,
    pub volumes: Vec<String>,
    volumes_config: Value,
}

/// A reference to a variable in a Compose value: `${NAME}`, `${NAME:-default}` ..., `$NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    /// `${NAME:-x}` / `${NAME-x}`: the value when unset.
    pub default: Option<String>,
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

/// Checks a stack name (a directory name under `stacks/`).
pub fn check_name(name: &str) -> Result<()> {
    if !valid_name(name, 32) {
        bail!("invalid stack name {name:?}: lowercase letters, digits, '-' and '_', at most 32, starting alphanumeric");
    }
    Ok(())
}

/// The names of the built-in stacks.
pub fn builtin_names() -> Vec<String> {
    crate::builtin::BUILTIN_FILES
        .iter()
        .filter_map(|(key, _)| key.strip_prefix("stacks/")?.strip_suffix("/compose.yml"))
        .map(str::to_string)
        .collect()
}

impl Stack {
    /// `<site>/stacks/<name>/compose.yml`, else the built-in one.
    pub fn load(site_dir: &Path, name: &str) -> Result<Stack> {
        check_name(name)?;
        let path = site_dir.join("stacks").join(name).join("compose.yml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Stack::parse(name, &path.display().to_string(), &text);
        }
        let key = format!("stacks/{name}/compose.yml");
        match crate::builtin::file(&key) {
            Some(text) => Stack::parse(name, "built-in", text),
            None => bail!(
                "no stack {name:?}: neither {} nor a built-in one (built in: {})",
                path.display(),
                builtin_names().join(", ")
            ),
        }
    }

    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Stack> {
        let fail = |message: String| anyhow!("stack {name} ({origin}): {message}");
        let docs = YamlLoader::load_from_str(text).map_err(|e| fail(format!("not valid YAML: {e}")))?;
        let doc = match docs.as_slice() {
            [doc] => to_json(doc).map_err(|e| fail(e.to_string()))?,
            _ => return Err(fail("must hold exactly one YAML document".into())),
        };
        let top = doc.as_object().ok_or_else(|| fail("is not a map".into()))?;
        for key in top.keys() {
            if !matches!(key.as_str(), "services" | "volumes" | "version" | "name") && !key.starts_with("x-") {
                return Err(fail(format!(
                    "top-level `{key}` is not allowed (agency provides the networks; secrets come by variables)"
                )));
            }
        }
        let volumes_config = top.get("volumes").cloned().unwrap_or_else(|| json!({}));
        let volumes = parse_volumes(&volumes_config).map_err(|e| fail(e.to_string()))?;
        let services_map =
            top.get("services").and_then(Value::as_object).ok_or_else(|| fail("has no `services` map".into()))?;
        if services_map.is_empty() {
            return Err(fail("has no services".into()));
        }
        let mut services = Vec::new();
        let mut deploy_variables = BTreeSet::new();
        for (service_name, config) in services_map {
            let service = parse_service(service_name, config, &volumes)
                .map_err(|e| fail(format!("service {service_name}: {e}")))?;
            if !deploy_variables.insert(service.deploy_variable()) {
                return Err(fail(format!("service names {service_name} and another differ only in '-', '_' or case")));
            }
            services.push(service);
        }
        if services.iter().filter(|s| s.http_port.is_some()).count() > 1 {
            return Err(fail("more than one service carries agency.http.port; the ingress routes to one".into()));
        }
        Ok(Stack { name: name.into(), origin: origin.into(), text: text.into(), services, volumes, volumes_config })
    }

    /// The service the ingress routes to.
    pub fn routed(&self) -> Option<&Service> {
        self.services.iter().find(|s| s.http_port.is_some())
    }

    /// Every variable the stack refers to, once each (the first reference's default).
    pub fn references(&self) -> Vec<Reference> {
        let mut seen = BTreeMap::new();
        for service in &self.services {
            for reference in references_in(&service.config) {
                seen.entry(reference.name.clone()).or_insert(reference);
            }
        }
        for reference in references_in(&self.volumes_config) {
            seen.entry(reference.name.clone()).or_insert(reference);
        }
        seen.into_values().collect()
    }

    /// The client's compose override as data (SPEC §10): networks external by the client's
    /// names, per the tiers; labels; named volumes `<id>_<volume>` labelled with the client;
    /// limits; no NET_RAW, no new privileges, a restart policy, logs tagged with the client.
    pub fn render_override(&self, client: &ClientSpec) -> Value {
        let id = client.id;
        let mut networks = Map::new();
        let mut used: BTreeSet<&str> = self.services.iter().flat_map(|s| s.tiers.iter().copied()).collect();
        used.insert("network");
        for tier in used {
            networks.insert(tier.into(), json!({ "name": format!("{id}_{tier}"), "external": true }));
        }
        // Nothing may land on a network Compose would create (`<id>_default`).
        networks.insert("default".into(), json!({ "name": format!("{id}_network"), "external": true }));

        let mut services = Map::new();
        for service in &self.services {
            let mut attached = Map::new();
            for tier in &service.tiers {
                let entry = if *tier == "frontend" {
                    json!({ "aliases": [format!("{id}-{}", service.name)] })
                } else {
                    json!({})
                };
                attached.insert((*tier).into(), entry);
            }
            let labels = json!({
                CLIENT_LABEL: id,
                LABEL_MANAGED: "true",
                LABEL_STACK: self.name,
                LABEL_SERVICE: service.name,
                LABEL_DEPLOY: format!("${{{}}}", service.deploy_variable()),
                "traefik.enable": "false",
            });
            services.insert(
                service.name.clone(),
                json!({
                    "networks": attached,
                    "labels": labels,
                    "cap_drop": ["NET_RAW"],
                    "security_opt": ["no-new-privileges:true"],
                    "restart": "unless-stopped",
                    "cpus": client.cpus,
                    "mem_limit": client.memory,
                    "pids_limit": client.pids,
                    "logging": {
                        "driver": "json-file",
                        "options": { "tag": format!("agency.{id}.{{{{.Name}}}}"), "max-size": "10m", "max-file": "5" },
                    },
                }),
            );
        }
        let mut volumes = Map::new();
        for volume in &self.volumes {
            volumes.insert(
                volume.clone(),
                json!({
                    "name": format!("{id}_{volume}"),
                    "labels": { CLIENT_LABEL: id, LABEL_MANAGED: "true", "agency.volume": volume },
                }),
            );
        }
        let mut root = Map::new();
        root.insert("networks".into(), networks.into());
        root.insert("services".into(), services.into());
        if !volumes.is_empty() {
            root.insert("volumes".into(), volumes.into());
        }
        root.into()
    }
}

fn parse_volumes(config: &Value) -> Result<Vec<String>> {
    let Some(map) = config.as_object() else { bail!("`volumes` must be a map") };
    let mut names = Vec::new();
    for (name, definition) in map {
        if !valid_name(name, 40) {
            bail!("volume name {name:?}: lowercase letters, digits, '-' and '_'");
        }
        match definition {
            Value::Null => {}
            Value::Object(keys) => {
                if let Some(key) = keys.keys().find(|k| !matches!(k.as_str(), "labels" | "driver")) {
                    bail!("volume {name}: `{key}` is not allowed (agency names and labels the client's volumes)");
                }
            }
            _ => bail!("volume {name} must be a map"),
        }
        names.push(name.clone());
    }
    Ok(names)
}

/// A service's `labels`, in either Compose form.
fn labels_of(config: &Map<String, Value>) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    match config.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                labels.insert(k.clone(), scalar_text(v).ok_or_else(|| anyhow!("label {k} must be a scalar"))?);
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                let text = item.as_str().ok_or_else(|| anyhow!("labels must be strings"))?;
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                labels.insert(k.to_string(), v.to_string());
            }
        }
        Some(_) => bail!("`labels` must be a map or a list"),
    }
    Ok(labels)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_service(name: &str, config: &Value, volumes: &[String]) -> Result<Service> {
    if !valid_name(name, 40) {
        bail!("the name must be lowercase letters, digits, '-' and '_' (at most 40)");
    }
    let Some(map) = config.as_object() else { bail!("must be a map") };
    if let Some(key) = FORBIDDEN_SERVICE_KEYS.iter().find(|k| map.contains_key(**k)) {
        bail!("`{key}` is not allowed (agency sets networks and hardening; declare tiers with agency.tiers)");
    }
    let image = map.get("image").and_then(Value::as_str).ok_or_else(|| anyhow!("has no `image`"))?.to_string();
    let labels = labels_of(map)?;
    let tiers_text = labels
        .get("agency.tiers")
        .ok_or_else(|| anyhow!("has no label agency.tiers (a comma list of {})", TIERS.join(", ")))?;
    let mut tiers = Vec::new();
    for item in tiers_text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let tier = TIERS
            .iter()
            .find(|t| **t == item)
            .ok_or_else(|| anyhow!("agency.tiers names {item:?}; tiers are {}", TIERS.join(", ")))?;
        if !tiers.contains(tier) {
            tiers.push(*tier);
        }
    }
    if tiers.is_empty() {
        bail!("agency.tiers names no tier");
    }
    let http_port = match labels.get("agency.http.port") {
        None => None,
        Some(text) => Some(
            text.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| anyhow!("agency.http.port must be a port number, got {text:?}"))?,
        ),
    };
    let db = labels.get("agency.db").cloned();
    if let Some(engine) = &db
        && !DB_ENGINES.contains(&engine.as_str())
    {
        bail!("agency.db must be one of {}, got {engine:?}", DB_ENGINES.join(", "));
    }
    let on_frontend = tiers.contains(&"frontend");
    if on_frontend && http_port.is_none() {
        bail!("joins the frontend tier without agency.http.port; only the service the ingress routes to may");
    }
    if http_port.is_some() && !on_frontend {
        bail!("carries agency.http.port but does not join the frontend tier, where the ingress reaches it");
    }
    if db.is_some() && on_frontend {
        bail!("a database (agency.db) must not join the frontend tier");
    }
    check_mounts(map.get("volumes"), volumes)?;
    Ok(Service { name: name.into(), tiers, http_port, db, image, config: config.clone() })
}

/// Only the stack's own named volumes, anonymous volumes and tmpfs: a host path would share
/// data between tenants or reach the host.
fn check_mounts(mounts: Option<&Value>, volumes: &[String]) -> Result<()> {
    let Some(mounts) = mounts else { return Ok(()) };
    let items = mounts.as_array().ok_or_else(|| anyhow!("`volumes` must be a list"))?;
    for item in items {
        let source = match item {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                if parts.len() == 1 { None } else { Some(parts[0].to_string()) }
            }
            Value::Object(long) => match long.get("type").and_then(Value::as_str).unwrap_or("volume") {
                "volume" => long.get("source").and_then(Value::as_str).map(str::to_string),
                "tmpfs" => None,
                other => bail!("mount type {other:?} is not allowed (named volumes and tmpfs only)"),
            },
            _ => bail!("a mount must be a string or a map"),
        };
        if let Some(source) = source
            && !volumes.contains(&source)
        {
            bail!("mounts {source:?}, which is not a volume of the stack (host paths are not allowed)");
        }
    }
    Ok(())
}

/// YAML as JSON data: string keys, no anchors.
fn to_json(yaml: &Yaml) -> Result<Value> {
    Ok(match yaml {
        Yaml::Real(text) => {
            text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
        }
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => bail!("map key {other:?} is not a string"),
                };
                if key == "<<" {
                    bail!("YAML merge keys (<<) are not supported");
                }
                map.insert(key, to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => bail!("YAML anchors and aliases are not supported"),
        Yaml::BadValue => bail!("a value could not be read"),
    })
}

/// The variable references in every string of `value` (keys are not interpolated).
pub fn references_in(value: &Value) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut walk = vec![value];
    while let Some(value) = walk.pop() {
        match value {
            Value::String(text) => found.extend(parse_references(text)),
            Value::Array(items) => walk.extend(items),
            Value::Object(map) => walk.extend(map.values()),
            _ => {}
        }
    }
    found
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A piece of text in Compose's interpolation syntax.
enum Piece<'a> {
    /// Plain text; `$$` is the text `$`.
    Text(&'a str),
    /// `$NAME`, or `${NAME}` followed by its modifier (`:-x`, `-x`, `:?msg`, `?msg`, `:+x`,
    /// `+x`; `""` for none). The name is empty for a `$` that starts none.
    Reference { name: &'a str, modifier: &'a str },
}

/// `text` cut into its pieces: `$$` a dollar, `$NAME`, `${NAME}`, `${NAME:-x}`, `${NAME-x}`,
/// `${NAME:?msg}`, `${NAME?msg}`, `${NAME:+x}`, `${NAME+x}`.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        found.push(Piece::Text(&rest[..at]));
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            found.push(Piece::Text("$"));
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            let body = &inner[..end];
            rest = inner.get(end + 1..).unwrap_or("");
            let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
            let (name, modifier) = body.split_at(name_end);
            found.push(Piece::Reference { name, modifier });
        } else {
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            found.push(Piece::Reference { name: &rest[..end], modifier: "" });
            rest = &rest[end..];
        }
    }
    found.push(Piece::Text(rest));
    found
}

/// The variables `text` refers to, each with the default it gives (`""` for `:+x`/`+x`).
fn parse_references(text: &str) -> Vec<Reference> {
    pieces(text)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Reference { name, modifier } if !name.is_empty() => {
                let default = modifier
                    .strip_prefix(":-")
                    .or_else(|| modifier.strip_prefix('-'))
                    .or_else(|| modifier.strip_prefix(":+").map(|_| ""))
                    .or_else(|| modifier.strip_prefix('+').map(|_| ""))
                    .map(str::to_string);
                Some(Reference { name: name.into(), default })
            }
            _ => None,
        })
        .collect()
}

/// `text` with its references filled from `env` the way Compose fills them.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for piece in pieces(text) {
        let text = match piece {
            Piece::Text(text) => text,
            Piece::Reference { name, modifier } => {
                let value = env.get(name);
                if let Some(default) = modifier.strip_prefix(":-") {
                    value.filter(|v| !v.is_empty()).map_or(default, String::as_str)
                } else if let Some(default) = modifier.strip_prefix('-') {
                    value.map_or(default, String::as_str)
                } else if let Some(alternative) = modifier.strip_prefix(":+") {
                    if value.is_some_and(|v| !v.is_empty()) { alternative } else { "" }
                } else if let Some(alternative) = modifier.strip_prefix('+') {
                    if value.is_some() { alternative } else { "" }
                } else {
                    value.map_or("", String::as_str)
                }
            }
        };
        out.push_str(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "services:\n  web:\n    image: ${WEB_IMAGE:-busybox}\n    labels:\n      agency.tiers: frontend,backend\n      agency.http.port: 8080\n    environment:\n      PASSWORD: ${DB_PASSWORD}\n      PRICE: $$5\n    volumes:\n      - data:/data\n  db:\n    image: db\n    labels: [\"agency.tiers=database\", \"agency.db=mariadb\"]\nvolumes:\n  data: {}\n";

    #[test]
    fn parses_tiers_ports_and_references() {
        let stack = Stack::parse("site", "test", SITE).unwrap();
        assert_eq!(stack.routed().unwrap().name, "web");
        assert_eq!(stack.routed().unwrap().http_port, Some(8080));
        assert_eq!(stack.services[0].tiers, ["database"]);
        assert_eq!(stack.services[0].db.as_deref(), Some("mariadb"));
        let names: Vec<_> = stack.references().into_iter().map(|r| (r.name, r.default)).collect();
        assert_eq!(names, [("DB_PASSWORD".into(), None), ("WEB_IMAGE".into(), Some("busybox".into()))]);
    }

    #[test]
    fn renders_the_client_override() {
        let stack = Stack::parse("site", "test", SITE).unwrap();
        let rendered = stack.render_override(&ClientSpec { id: "acme", cpus: 0.5, memory: "64m", pids: 50 });
        assert_eq!(rendered["networks"]["frontend"], json!({"name": "acme_frontend", "external": true}));
        assert_eq!(rendered["networks"]["default"]["name"], "acme_network");
        let web = &rendered["services"]["web"];
        assert_eq!(web["networks"]["frontend"]["aliases"], json!(["acme-web"]));
        assert_eq!(web["labels"][LABEL_DEPLOY], "${AGENCY_DEPLOY_WEB}");
        assert_eq!(web["cap_drop"], json!(["NET_RAW"]));
        assert_eq!(web["pids_limit"], 50);
        assert_eq!(rendered["services"]["db"]["networks"], json!({"database": {}}));
        assert_eq!(rendered["volumes"]["data"]["name"], "acme_data");
    }

    #[test]
    fn refuses_what_would_break_isolation() {
        for (text, message) in [
            ("services:\n  a:\n    image: x\n    labels: {agency.tiers: backend}\n    ports: ['80:80']\n", "`ports`"),
            ("services:\n  a:\n    image: x\n    labels: {agency.tiers: frontend}\n", "without agency.http.port"),
            ("services:\n  a:\n    image: x\n", "agency.tiers"),
            (
                "services:\n  a:\n    image: x\n    labels: {agency.tiers: backend}\n    volumes: ['/etc:/h']\n",
                "host paths",
            ),
            (
                "services:\n  a:\n    image: x\n    labels: {agency.tiers: 'frontend,database', agency.http.port: 80, agency.db: mysql}\n",
                "frontend",
            ),
            ("networks: {}\nservices:\n  a:\n    image: x\n", "top-level `networks`"),
            ("services:\n  a:\n    image: x\n    labels: {agency.tiers: public}\n", "\"public\""),
        ] {
            let error = Stack::parse("bad", "test", text).unwrap_err().to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn interpolates_like_compose() {
        let env: BTreeMap<String, String> = [("A".to_string(), "1".to_string()), ("E".into(), String::new())].into();
        assert_eq!(interpolate("x${A}y$A ${B:-d} ${E:-d} ${E-d} $$A ${A:+s}", &env), "x1y1 d d  $A s");
    }
}
