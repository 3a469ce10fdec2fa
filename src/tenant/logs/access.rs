//! The ingress's JSON access log (Traefik `--accessLog.format=json`), split by client.
//!
//! A request belongs to the client whose router served it: agency names every router of a
//! client after it (`<id>-web`, `<id>-web-redirect`, tasks/lib/traefik.rhai) and its service
//! `<id>-app`; Traefik logs them as `RouterName` / `ServiceName` with the provider suffix
//! (`acme-web@file`). A request no client's router served (an unknown host: Traefik's 404, a
//! client deleted since) goes to the one host-level file, never into a client's.
//!
//! Each line written is one request, eight fields separated by one space:
//!
//! ```text
//! time method host path status duration client bytes
//! 2026-12-02T07:40:01.123456789Z GET acme.example.com /wp-login.php 200 12.345ms 172.18.0.1 5120
//! ```
//!
//! `time` is the request's start in UTC as Traefik gives it (`StartUTC`), `duration` the
//! whole request in milliseconds, `client` the downstream address without its port, `bytes`
//! the response body's size. A field that is empty is `-`; in a field, every byte that is not
//! printable ASCII, a space or `%` is written `%XX`, so a hostile path can neither split a
//! line nor forge a field.

use std::{borrow::Cow, collections::HashMap};

use serde::Deserialize;

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "StartUTC", borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(rename = "time", borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(rename = "RequestMethod", borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(rename = "RequestHost", borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(rename = "RequestPath", borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(rename = "DownstreamStatus")]
    status: Option<u64>,
    #[serde(rename = "Duration")]
    duration_ns: Option<u64>,
    #[serde(rename = "ClientHost", borrow)]
    client: Option<Cow<'a, str>>,
    #[serde(rename = "DownstreamContentSize")]
    bytes: Option<u64>,
    #[serde(rename = "RouterName", borrow)]
    router: Option<Cow<'a, str>>,
    #[serde(rename = "ServiceName", borrow)]
    service: Option<Cow<'a, str>>,
}

/// Which client a router or service name belongs to.
pub struct Routes {
    names: HashMap<String, usize>,
}

impl Routes {
    /// The names agency gives the routers and the service of each of `clients`.
    pub fn new(clients: &[String]) -> Self {
        let mut names = HashMap::new();
        for (index, id) in clients.iter().enumerate() {
            for name in [format!("{id}-web"), format!("{id}-web-redirect"), format!("{id}-app")] {
                names.insert(name, index);
            }
        }
        Self { names }
    }

    fn lookup(&self, name: Option<&str>) -> Option<usize> {
        let name = name?;
        let bare = name.rsplit_once('@').map_or(name, |(bare, _)| bare);
        self.names.get(bare).copied()
    }
}

/// Writes `value` as one field: `-` when empty, `%XX` for what could split or forge a field.
pub fn push_field(out: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    for &byte in value.as_bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
}

fn push_number(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.push(b'-'),
    }
}

/// One access-log line (with its newline) and the index of its client among those given to
/// [`Routes::new`], `None` for the host-level file. A line that is not Traefik's JSON goes
/// to the host-level file as `- - - <the line> - - - -`.
pub fn split_line(routes: &Routes, line: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let entry = std::str::from_utf8(line).ok().and_then(|text| serde_json::from_str::<Entry>(text).ok());
    let Some(entry) = entry else {
        out.extend_from_slice(b"- - - ");
        push_field(out, &String::from_utf8_lossy(line));
        out.extend_from_slice(b" - - - -\n");
        return None;
    };
    let owner = routes.lookup(entry.router.as_deref()).or_else(|| routes.lookup(entry.service.as_deref()));
    fn field<'b>(value: &'b Option<Cow<str>>) -> &'b str {
        value.as_deref().unwrap_or("")
    }
    push_field(out, field(if entry.start.is_some() { &entry.start } else { &entry.time }));
    out.push(b' ');
    push_field(out, field(&entry.method));
    out.push(b' ');
    push_field(out, field(&entry.host));
    out.push(b' ');
    push_field(out, field(&entry.path));
    out.push(b' ');
    push_number(out, entry.status);
    out.push(b' ');
    match entry.duration_ns {
        Some(ns) => out.extend_from_slice(format!("{}.{:03}ms", ns / 1_000_000, ns / 1_000 % 1_000).as_bytes()),
        None => out.push(b'-'),
    }
    out.push(b' ');
    push_field(out, field(&entry.client));
    out.push(b' ');
    push_number(out, entry.bytes);
    out.push(b'\n');
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(routes: &Routes, line: &str) -> (Option<usize>, String) {
        let mut out = Vec::new();
        let owner = split_line(routes, line.as_bytes(), &mut out);
        (owner, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_request_goes_to_the_client_of_its_router() {
        let routes = Routes::new(&["acme".into(), "acme-web".into()]);
        let line = r#"{"StartUTC":"2026-12-02T07:40:01.5Z","RequestMethod":"GET","RequestHost":"acme.example.com","RequestPath":"/a b\n1 2 3","DownstreamStatus":200,"Duration":12345678,"ClientHost":"172.18.0.1","DownstreamContentSize":5120,"RouterName":"acme-web@file","ServiceName":"acme-app@file"}"#;
        let (owner, text) = split(&routes, line);
        assert_eq!(owner, Some(0));
        assert_eq!(
            text,
            "2026-12-02T07:40:01.5Z GET acme.example.com /a%20b%0A1%202%203 200 12.345ms 172.18.0.1 5120\n"
        );
        let other = line.replace("acme-web@file", "acme-web-web@file");
        assert_eq!(split(&routes, &other).0, Some(1));
        let redirect = line.replace("acme-web@file", "acme-web-redirect@file");
        assert_eq!(split(&routes, &redirect).0, Some(0));
    }

    #[test]
    fn unknown_hosts_and_garbage_belong_to_no_client() {
        let routes = Routes::new(&["acme".into()]);
        let (owner, text) =
            split(&routes, r#"{"RequestHost":"x.test","DownstreamStatus":404,"RouterName":"beta-web@file"}"#);
        assert_eq!(owner, None);
        assert_eq!(text, "- - x.test - 404 - - -\n");
        let (owner, text) = split(&routes, "not json % here");
        assert_eq!(owner, None);
        assert_eq!(text, "- - - not%20json%20%25%20here - - - -\n");
    }
}
