//! Generated docker-compose.override.yml files checked by the real Compose tool
//! (`docker compose`, else Debian's `docker-compose`) with a minimal base file.

use std::{fs, process::Command};

use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    containers::{self, ClientNetworks},
    test::Site,
};

pub const BASE: &str =
    "services:\n  app:\n    image: nginx:alpine\n  db:\n    image: mysql:8\n    labels:\n      agency.db: mysql\n";

/// `docker compose` when the plugin is there, else `docker-compose`.
pub fn compose_tool() -> Option<Vec<&'static str>> {
    let works =
        |program: &str, args: &[&str]| Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

fn names(map: &Yaml) -> Vec<&str> {
    let mut names: Vec<&str> =
        map.as_hash().unwrap_or_else(|| panic!("not a map: {map:?}")).keys().map(|k| k.as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

#[test]
fn each_generated_override_passes_compose_config_with_a_base_file() {
    let Some(tool) = compose_tool() else {
        containers::skip(
            "compose::each_generated_override_passes_compose_config",
            "neither `docker compose` nor `docker-compose` is installed",
        );
        return;
    };
    let site = Site::new();
    let ids: Vec<String> = (0..3).map(|_| containers::unique("cc")).collect();
    let _networks = ClientNetworks(ids.clone());
    let base = site.path().join("docker-compose.yml");
    fs::write(&base, BASE).unwrap();
    for id in &ids {
        site.test()
            .arg("create-client")
            .arg(&format!("CLIENT_ID={id}"))
            .arg("CLIENT_NAME=Compose Test")
            .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
            .run();
        let override_file = site.client_dir(id).join("docker-compose.override.yml");
        let output = Command::new(tool[0])
            .args(&tool[1..])
            .arg("-f")
            .arg(&base)
            .arg("-f")
            .arg(&override_file)
            .args(["-p", id, "config"])
            .current_dir(site.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} config rejected {}:\n{}\n{}",
            tool.join(" "),
            override_file.display(),
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(&override_file).unwrap()
        );
        let config = &YamlLoader::load_from_str(&stdout).unwrap()[0];

        // The client's own networks, created by agency, so external.
        for (key, tier) in
            [("frontend", "frontend"), ("backend", "backend"), ("database", "database"), ("default", "network")]
        {
            let network = &config["networks"][key];
            assert_eq!(network["name"].as_str(), Some(format!("{id}_{tier}").as_str()), "{stdout}");
            assert_eq!(network["external"].as_bool(), Some(true), "{key} is not external:\n{stdout}");
        }
        let app = &config["services"]["app"];
        let db = &config["services"]["db"];
        assert_eq!(names(&app["networks"]), ["backend", "database", "default", "frontend"], "{stdout}");
        assert_eq!(names(&db["networks"]), ["database"], "the database is only on the database network:\n{stdout}");
        let aliases = app["networks"]["frontend"]["aliases"].as_vec().unwrap();
        assert!(aliases.iter().any(|a| a.as_str() == Some(&format!("{id}-app"))), "{stdout}");
        // Labels from the override, merged with the base file's own.
        for service in [app, db] {
            assert_eq!(service["labels"]["agency.client"].as_str(), Some(id.as_str()), "{stdout}");
            assert_eq!(service["labels"]["agency.managed"].as_str(), Some("true"), "{stdout}");
            let tag = service["logging"]["options"]["tag"].as_str().unwrap();
            assert!(tag.starts_with(&format!("agency.{id}.")), "{tag}");
        }
        assert_eq!(db["labels"]["agency.db"].as_str(), Some("mysql"), "{stdout}");
        assert_eq!(db["labels"]["agency.role"].as_str(), Some("database"), "{stdout}");
        assert_eq!(db["image"].as_str(), Some("mysql:8"));
    }
}
