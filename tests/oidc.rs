//! A deployed stack's routed service and the client's realm (issue 23): deploy-client gives
//! it a confidential OIDC client (secret generated once, handed over by Compose
//! interpolation with the realm's issuer), a second deploy sends Keycloak nothing that
//! changes, and live status fails a routed service whose environment names another issuer,
//! and a client whose secret in Keycloak is not the one of secrets.env.

use std::fs;

use crate::{
    containers,
    create_client::{bash_value, create, record_oidc_service},
    stacks::{Deployed, busybox_stack, inspect, project},
    support::fake_keycloak::FakeKeycloak,
    test::Site,
};

const ADMIN_PASSWORD: &str = "Kc-admin-pw-0123";

/// The busybox stack with the routed service `web` reading its OIDC client's secret and the
/// realm's issuer (`issuer` is what its ISSUER variable holds).
fn stack_with_issuer(issuer: &str) -> String {
    let stack = busybox_stack();
    let with = stack.replace(
        "      SECRET: ${DB_PASSWORD}\n",
        &format!("      SECRET: ${{DB_PASSWORD}}\n      OIDC_SECRET: ${{OIDC_SECRET_WEB}}\n      ISSUER: {issuer}\n"),
    );
    assert_ne!(with, stack, "the busybox stack changed its environment");
    with
}

fn env_of(container: &str, name: &str) -> String {
    let env = inspect(container)["Config"]["Env"].clone();
    let prefix = format!("{name}=");
    env.as_array().unwrap().iter().filter_map(|v| v.as_str()?.strip_prefix(&prefix)).next().unwrap_or("").to_string()
}

#[test]
fn a_deployed_routed_service_gets_an_oidc_client_of_the_realm_and_names_its_issuer() {
    if !containers::engine_or_skip("oidc::routed_service") {
        return;
    }
    if crate::compose::compose_tool().is_none() {
        containers::skip("oidc::routed_service", "neither `docker compose` nor `docker-compose` is installed");
        return;
    }
    let fake = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let site = Site::with_docker();
    site.site_file("stacks/bb/compose.yml", &stack_with_issuer("${OIDC_ISSUER}"));
    let id = containers::unique("oi");
    let _cleanup = Deployed::new(std::slice::from_ref(&id));
    let run = |args: &[&str], status: i32| {
        let test = site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .env("KEYCLOAK_URL", &fake.url())
            .env("KEYCLOAK_ADMIN", "admin")
            .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .args(args);
        test.status(status).run()
    };
    let client_id = format!("CLIENT_ID={id}");
    run(&["create-client", &client_id, "CLIENT_NAME=OIDC", &format!("CLIENT_DOMAIN={id}.example.test"), "STACK=bb"], 0);
    assert!(fake.client_rep(&id, "web").is_none(), "no client before the stack is deployed");

    let deployed = run(&["deploy-client", &client_id], 0);
    let env_file = site.client_dir(&id).join("client.env");
    assert_eq!(bash_value(&env_file, "OIDC_SERVICES"), "web");
    let secret = bash_value(&site.secrets_file(&id), "OIDC_SECRET_WEB");
    assert!(secret.len() >= 32, "a generated secret");
    let client = fake.client_rep(&id, "web").expect("the routed service's client");
    assert_eq!(client["publicClient"], false);
    assert_eq!(client["secret"], secret.as_str());
    assert_eq!(client["redirectUris"], serde_json::json!([format!("https://{id}.example.test/*")]));
    let web = project(&id).into_iter().find(|(s, _)| s == "web").unwrap().1;
    assert_eq!(env_of(&web, "OIDC_SECRET"), secret, "handed over by Compose interpolation");
    let issuer = format!("{}/realms/{id}", fake.url().trim_end_matches('/'));
    assert_eq!(env_of(&web, "ISSUER"), issuer);
    assert!(!deployed.stdout.contains(&secret) && !deployed.stderr.contains(&secret), "the secret was shown");
    for file in ["client.env", "keycloak/realm.json", "compose.yml", "docker-compose.override.yml"] {
        let text = fs::read_to_string(site.client_dir(&id).join(file)).unwrap();
        assert!(!text.contains(&secret), "{file} holds the client secret");
    }

    // A second deploy: the same secret, and no request that changes anything.
    fake.clear_requests();
    run(&["deploy-client", &client_id], 0);
    let mutations: Vec<String> = fake.mutations().iter().map(|r| r.line()).collect();
    assert!(mutations.is_empty(), "a second deploy changed Keycloak: {mutations:#?}");
    assert_eq!(bash_value(&site.secrets_file(&id), "OIDC_SECRET_WEB"), secret, "generated once");

    // Live status: the realm, its client and the service's issuer check out.
    let status = run(&["--json", "multi-tenancy-status", &client_id], 0).json();
    let report = status.to_string();
    assert!(!report.contains(&secret), "status showed the secret");
    let checks = status["tasks"][0]["result"]["clients"][0]["checks"].as_array().unwrap().clone();
    let stack = checks.iter().find(|c| c["name"] == "stack").unwrap();
    assert_eq!(stack["status"], "ok", "{stack:#}");
    let realm = checks.iter().find(|c| c["name"] == "realm").unwrap();
    assert_eq!(realm["status"], "ok", "{realm:#}");

    // The service wired to another realm's issuer: status fails it, naming the right one.
    site.site_file("stacks/bb/compose.yml", &stack_with_issuer(&format!("{}/realms/master", fake.url())));
    run(&["deploy-client", &client_id], 0);
    let output = run(&["multi-tenancy-status", &client_id], 1);
    assert!(output.stdout.contains(&format!("does not name the realm's issuer {issuer}")), "{}", output.stdout);
}

/// The checks of the one client of a `--json` multi-tenancy-status report.
fn checks_of(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["tasks"][0]["result"]["clients"][0]["checks"].as_array().unwrap().clone()
}

fn check<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

/// A legacy Keycloak under `/auth` (KEYCLOAK_URL without it, the prefix detected, or set):
/// the stack gets `<url>/auth/realms/<realm>` and status checks that one.
#[test]
fn on_a_legacy_keycloak_the_issuer_carries_the_auth_prefix() {
    if !containers::engine_or_skip("oidc::auth_prefix") {
        return;
    }
    if crate::compose::compose_tool().is_none() {
        containers::skip("oidc::auth_prefix", "neither `docker compose` nor `docker-compose` is installed");
        return;
    }
    let fake = FakeKeycloak::builder().prefix("/auth").admin("admin", ADMIN_PASSWORD).start();
    let site = Site::with_docker();
    site.site_file("stacks/bb/compose.yml", &stack_with_issuer("${OIDC_ISSUER}"));
    let id = containers::unique("oa");
    let _cleanup = Deployed::new(std::slice::from_ref(&id));
    let run = |args: &[&str], prefix: Option<&str>, status: i32| {
        let mut test = site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .env("KEYCLOAK_URL", &fake.url())
            .env("KEYCLOAK_ADMIN", "admin")
            .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD);
        if let Some(prefix) = prefix {
            test = test.env("KEYCLOAK_PATH_PREFIX", prefix);
        }
        test.args(args).status(status).run()
    };
    let client_id = format!("CLIENT_ID={id}");
    run(
        &["create-client", &client_id, "CLIENT_NAME=OIDC", &format!("CLIENT_DOMAIN={id}.example.test"), "STACK=bb"],
        None,
        0,
    );
    run(&["deploy-client", &client_id], None, 0);
    let issuer = format!("{}/auth/realms/{id}", fake.url().trim_end_matches('/'));
    let web = project(&id).into_iter().find(|(s, _)| s == "web").unwrap().1;
    assert_eq!(env_of(&web, "ISSUER"), issuer, "the issuer of the realm under /auth");
    assert!(fake.client_rep(&id, "web").is_some());

    // Status: the prefix detected, or set, the service's issuer checks out.
    for prefix in [None, Some("/auth")] {
        let checks = checks_of(&run(&["--json", "multi-tenancy-status", &client_id], prefix, 0).json());
        assert_eq!(check(&checks, "stack")["status"], "ok", "{prefix:?}: {checks:#?}");
        assert_eq!(check(&checks, "realm")["status"], "ok", "{prefix:?}: {checks:#?}");
    }

    // The service naming the issuer without the prefix signs its users in nowhere: status fails it.
    let bare = format!("{}/realms/{id}", fake.url().trim_end_matches('/'));
    site.site_file("stacks/bb/compose.yml", &stack_with_issuer(&bare));
    run(&["deploy-client", &client_id], None, 0);
    assert_eq!(env_of(&project(&id).into_iter().find(|(s, _)| s == "web").unwrap().1, "ISSUER"), bare);
    let output = run(&["multi-tenancy-status", &client_id], None, 1);
    assert!(output.stdout.contains(&format!("does not name the realm's issuer {issuer} ")), "{}", output.stdout);
}

/// Only the OIDC client's secret changed in Keycloak: live status fails the realm check
/// naming the client (neither secret shown), setup-roles puts the secret back, status is ok.
#[test]
fn a_client_secret_changed_in_keycloak_fails_status_until_setup_roles() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    record_oidc_service(&site, "acme", "web");
    let fake = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start();
    let live = |args: &[&str]| {
        site.test()
            .env("KEYCLOAK_URL", &fake.url())
            .env("KEYCLOAK_ADMIN", "admin")
            .env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .args(args)
            .run_unchecked()
    };
    assert_eq!(live(&["setup-roles", "CLIENT_ID=acme"]).status, 0);
    let secret = bash_value(&site.secrets_file("acme"), "OIDC_SECRET_WEB");
    assert_eq!(fake.client_rep("acme", "web").unwrap()["secret"], secret.as_str());
    let realm_check = |output: &crate::test::Output| check(&checks_of(&output.json()), "realm").clone();
    assert_eq!(realm_check(&live(&["--json", "multi-tenancy-status", "CLIENT_ID=acme"]))["status"], "ok");

    let other = "Other-client-secret-0123456789abcdef";
    let without_secret = || {
        let mut rep = fake.client_rep("acme", "web").unwrap();
        rep.as_object_mut().unwrap().remove("secret");
        rep
    };
    let before = without_secret();
    fake.set_client_secret("acme", "web", other);
    assert_eq!(fake.client_rep("acme", "web").unwrap()["secret"], other);
    assert_eq!(without_secret(), before, "only the secret changed");

    let shown = |output: &crate::test::Output| {
        for value in [secret.as_str(), other] {
            assert!(!output.stdout.contains(value) && !output.stderr.contains(value), "a secret was shown");
        }
    };
    let text = live(&["multi-tenancy-status", "CLIENT_ID=acme"]);
    shown(&text);
    assert_eq!(text.status, 1, "{}", text.stdout);
    assert!(text.stdout.contains("client web of realm acme has another secret in Keycloak"), "{}", text.stdout);
    let json = live(&["--json", "multi-tenancy-status", "CLIENT_ID=acme"]);
    shown(&json);
    let realm = realm_check(&json);
    assert_eq!(realm["status"], "fail", "{realm:#}");
    assert!(realm["summary"].to_string().contains("has another secret in Keycloak than OIDC_SECRET_WEB"), "{realm:#}");

    let fixed = live(&["setup-roles", "CLIENT_ID=acme"]);
    shown(&fixed);
    assert_eq!(fixed.status, 0, "{}", fixed.stderr);
    assert_eq!(fake.client_rep("acme", "web").unwrap()["secret"], secret.as_str());
    let json = live(&["--json", "multi-tenancy-status", "CLIENT_ID=acme"]);
    shown(&json);
    assert_eq!(realm_check(&json)["status"], "ok", "{:#}", realm_check(&json));
}
