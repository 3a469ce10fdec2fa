//! Parsing the `docker` CLI's output: `ls`/`ps` lines with exact labels, `network inspect`,
//! and the redaction of secrets from messages.

use super::*;

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::format::ipv4::Ipv4Net;

/// Orders networks by creation time (then ID): Docker prints RFC 3339 times with a variable
/// number of fraction digits, so the fraction is padded before comparing.
pub(crate) fn network_age_key(network: &NetworkDetails) -> (String, String) {
    let created = &network.created;
    let key = match created.split_once('.') {
        Some((seconds, rest)) => {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let zone = &rest[digits.len()..];
            format!("{seconds}.{digits:0<9}{zone}")
        }
        None => match created.find(['Z', '+']) {
            Some(at) => format!("{}.000000000{}", &created[..at], &created[at..]),
            None => created.clone(),
        },
    };
    (key, network.id.clone())
}

/// The `--format` of an `ls`/`ps` call: the `{{json .}}` line, then a tab and the JSON string
/// of each of `keys` (`.Label`, exact). JSON never holds a raw tab, so the fields split cleanly.
pub(crate) fn exact_format(keys: &[&str]) -> String {
    with_labels("{{json .}}", keys)
}

/// The fields of a `docker ps` line that [`parse_ps`] reads, as one JSON object. `{{json .}}`
/// would do, but the CLI sees such a template touch `.Size` and asks the daemon for every
/// container's size, which walks each container's files: 2 s for one MariaDB container here,
/// against 25 ms for these fields.
const CONTAINER_FIELDS: &str = concat!(
    r#"{"ID":{{json .ID}},"Names":{{json .Names}},"Image":{{json .Image}},"State":{{json .State}},"#,
    r#""Labels":{{json .Labels}},"Networks":{{json .Networks}},"Ports":{{json .Ports}}}"#
);

/// [`exact_format`] for `docker ps` (see [`CONTAINER_FIELDS`]).
pub(crate) fn container_format(keys: &[&str]) -> String {
    with_labels(CONTAINER_FIELDS, keys)
}

fn with_labels(head: &str, keys: &[&str]) -> String {
    let mut format = head.to_string();
    for key in keys {
        format.push_str(&format!("\t{{{{json (.Label \"{key}\")}}}}"));
    }
    format
}

/// True for a label key that can go into a Go template and a `--filter` unquoted.
pub(crate) fn plain_label_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

/// Splits an [`exact_format`] line into its `{{json .}}` part and the labels: those of the
/// joined string without any `agency.*` key, then the exact values of `keys` (empty = absent).
fn split_exact_line<'a>(what: &str, line: &'a str, keys: &[&str]) -> Result<(&'a str, ExactLabels)> {
    let mut fields = line.split('\t');
    let json = fields.next().unwrap_or("");
    let mut exact = Vec::new();
    for key in keys {
        let Some(field) = fields.next() else { break };
        let value: String = serde_json::from_str(field)
            .with_context(|| format!("could not read the output of `docker {what}`: {line}"))?;
        if !value.is_empty() {
            exact.push((key.to_string(), value));
        }
    }
    Ok((json, exact))
}

/// The labels of one `ls`/`ps` line: the joined string's, minus every `agency.*` key, plus the
/// exact ones.
fn merge_labels(joined: &str, exact: ExactLabels) -> BTreeMap<String, String> {
    let mut labels = parse_label_list(joined);
    labels.retain(|key, _| !key.starts_with("agency."));
    labels.extend(exact);
    labels
}

/// Labels read with `.Label`, as (key, value) pairs.
type ExactLabels = Vec<(String, String)>;

/// Each line of `docker {what}` output read as `T` (its JSON) and its exact labels, then made
/// into what the caller keeps by `make`, line by line: thousands of networks never hold
/// their raw lines all at once.
fn exact_lines<T: for<'de> Deserialize<'de>, R>(
    what: &str,
    stdout: &str,
    keys: &[&str],
    make: impl Fn(T, ExactLabels) -> R,
) -> Result<Vec<R>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (json, exact) = split_exact_line(what, line, keys)?;
            let raw = serde_json::from_str(json)
                .with_context(|| format!("could not read the output of `docker {what}`: {line}"))?;
            Ok(make(raw, exact))
        })
        .collect()
}

/// Parses the `a=b,c=d` label list of `ls`/`ps` output. Not exact: a value holding a comma
/// reads as more labels (see [`EXACT_LABELS`]); inspect output is exact.
pub(crate) fn parse_label_list(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (item.to_string(), String::new()),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetworkLine {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    internal: String,
    #[serde(default)]
    labels: String,
}

/// Parses `docker network ls --no-trunc --format` [`exact_format`]`(&EXACT_LABELS)`.
pub(crate) fn parse_network_ls(stdout: &str) -> Result<Vec<NetworkSummary>> {
    exact_lines("network ls", stdout, &EXACT_LABELS, |raw: RawNetworkLine, exact| NetworkSummary {
        id: raw.id,
        name: raw.name,
        driver: raw.driver,
        scope: raw.scope,
        internal: raw.internal == "true",
        labels: merge_labels(&raw.labels, exact),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    name: String,
    id: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    attachable: bool,
    #[serde(default)]
    ingress: bool,
    #[serde(rename = "IPAM", default)]
    ipam: RawIpam,
    #[serde(default)]
    containers: Option<BTreeMap<String, RawEndpoint>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawIpam {
    #[serde(default)]
    config: Option<Vec<RawIpamConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawIpamConfig {
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    gateway: String,
}

#[derive(Deserialize)]
struct RawEndpoint {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "IPv4Address", default)]
    ipv4_address: String,
}

/// The containers of [`Docker::with_net_raw`]'s output lines that have NET_RAW: privileged,
/// adding it (or ALL), or keeping Docker's default set, which holds it, without dropping it.
pub(crate) fn parse_net_raw(stdout: &str) -> Vec<String> {
    let caps = |json: &str| -> Vec<String> {
        serde_json::from_str::<Option<Vec<String>>>(json)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.to_uppercase().trim_start_matches("CAP_").to_string())
            .collect()
    };
    let names = |list: &[String]| list.iter().any(|c| c == "NET_RAW" || c == "ALL");
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (id, privileged, add, drop) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let raw = privileged == "true" || names(&caps(add)) || !names(&caps(drop));
            raw.then(|| id.to_string())
        })
        .collect()
}

/// Parses `docker network inspect` output (a JSON array).
pub(crate) fn parse_network_inspect(stdout: &str) -> Result<Vec<NetworkDetails>> {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let raws: Vec<RawNetwork> =
        serde_json::from_str(trimmed).context("could not read the output of `docker network inspect`")?;
    Ok(raws
        .into_iter()
        .map(|raw| {
            let mut subnets = Vec::new();
            let mut gateways = Vec::new();
            for config in raw.ipam.config.unwrap_or_default() {
                let Some((address, prefix)) = config.subnet.split_once('/') else {
                    continue;
                };
                let (Ok(address), Ok(prefix)) = (address.parse::<Ipv4Addr>(), prefix.parse::<u8>()) else {
                    continue;
                };
                let net = Ipv4Net::truncating(address, prefix);
                subnets.push(net);
                gateways.push(config.gateway.parse::<Ipv4Addr>().unwrap_or_else(|_| net.first_host()));
            }
            let containers = raw
                .containers
                .unwrap_or_default()
                .into_iter()
                // Swarm's per-network load balancer endpoint is not a container.
                .filter(|(id, _)| !id.starts_with("lb-"))
                .map(|(id, endpoint)| Endpoint {
                    container_id: id,
                    name: endpoint.name,
                    ipv4: endpoint.ipv4_address.split('/').next().and_then(|a| a.parse().ok()),
                })
                .collect();
            let bridge = (raw.driver == "bridge").then(|| {
                raw.options
                    .as_ref()
                    .and_then(|o| o.get(BRIDGE_NAME_OPTION))
                    .filter(|name| !name.is_empty())
                    .cloned()
                    .unwrap_or_else(|| docker_bridge_name(&raw.id))
            });
            NetworkDetails {
                bridge,
                id: raw.id,
                name: raw.name,
                created: raw.created,
                driver: raw.driver,
                scope: raw.scope,
                internal: raw.internal,
                attachable: raw.attachable,
                ingress: raw.ingress,
                subnets,
                gateways,
                labels: raw.labels.unwrap_or_default(),
                containers,
            }
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainerLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    networks: String,
    #[serde(default)]
    ports: String,
}

/// Parses `docker ps -a --no-trunc --format` [`container_format`]`(keys)`.
pub(crate) fn parse_ps(stdout: &str, keys: &[&str]) -> Result<Vec<ContainerSummary>> {
    exact_lines("ps", stdout, keys, |raw: RawContainerLine, exact| ContainerSummary {
        id: raw.id,
        name: raw.names.split(',').next().unwrap_or("").to_string(),
        image: raw.image,
        state: raw.state,
        labels: merge_labels(&raw.labels, exact),
        networks: raw.networks.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect(),
        ports: raw.ports,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawVolumeLine {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    mountpoint: String,
}

/// Parses `docker volume ls --format` [`exact_format`]`(&EXACT_LABELS)`.
pub(crate) fn parse_volume_ls(stdout: &str) -> Result<Vec<Volume>> {
    exact_lines("volume ls", stdout, &EXACT_LABELS, |raw: RawVolumeLine, exact| Volume {
        name: raw.name,
        driver: raw.driver,
        labels: merge_labels(&raw.labels, exact),
        mountpoint: raw.mountpoint,
    })
}

/// Masks every word of `secret` (longer than 3 bytes) found in `text`, so a tool that echoes
/// its input in an error cannot leak a password into a message.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    let mut words: Vec<&str> = secret.split(|c: char| c.is_whitespace() || "'\";".contains(c)).collect();
    words.retain(|w| w.len() > 3);
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.into_iter().fold(text.to_string(), |text, word| text.replace(word, "<redacted>"))
}
