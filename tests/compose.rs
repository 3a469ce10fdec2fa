//! The compose files create-client writes for each built-in stack (the stack's compose.yml and
//! the client's rendered override), checked by the real Compose tool (`docker compose`, else
//! Debian's `docker-compose`).

use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    containers::{self, ClientNetworks},
    test::Site,
};

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

/// `compose config` of a client's two files, the variables given in the environment; the
/// merged configuration, or the tool's error.
pub fn config(tool: &[&str], dir: &std::path::Path, id: &str, env: &[(&str, &str)]) -> Result<Yaml, String> {
    let output = Command::new(tool[0])
        .args(&tool[1..])
        .args(["-p", id, "--project-directory"])
        .arg(dir)
        .arg("-f")
        .arg(dir.join("compose.yml"))
        .arg("-f")
        .arg(dir.join("docker-compose.override.yml"))
        .arg("config")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(YamlLoader::load_from_str(&String::from_utf8_lossy(&output.stdout)).unwrap().remove(0))
}

fn names(map: &Yaml) -> Vec<&str> {
    let mut names: Vec<&str> =
        map.as_hash().unwrap_or_else(|| panic!("not a map: {map:?}")).keys().map(|k| k.as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

#[test]
fn each_built_in_stack_renders_files_compose_accepts() {
    let Some(tool) = compose_tool() else {
        containers::skip("compose::each_built_in_stack_renders", "neither `docker compose` nor `docker-compose`");
        return;
    };
    let site = Site::new();
    let ids: Vec<String> = (0..2).map(|_| containers::unique("cc")).collect();
    let _networks = ClientNetworks(ids.clone());
    for (id, stack) in ids.iter().zip(["wordpress", "static"]) {
        site.test()
            .env("AGENCY_BACKUPS", "off")
            .args(["create-client", "CLIENT_NAME=Compose Test", "MEMORY_LIMIT=256m"])
            .arg(&format!("CLIENT_ID={id}"))
            .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
            .arg(&format!("STACK={stack}"))
            .run();
        let dir = site.client_dir(id);
        let config = config(&tool, &dir, id, &[("DB_PASSWORD", "p"), ("DB_ROOT_PASSWORD", "r")])
            .unwrap_or_else(|e| panic!("{stack}: compose rejects the files: {e}"));
        let dump = format!("{config:?}");
        for (key, tier) in [("frontend", "frontend"), ("default", "network")] {
            let network = &config["networks"][key];
            assert_eq!(network["name"].as_str(), Some(format!("{id}_{tier}").as_str()), "{dump}");
            assert_eq!(network["external"].as_bool(), Some(true), "{key} is not external: {dump}");
        }
        let services = &config["services"];
        for name in names(services) {
            let service = &services[name];
            assert_eq!(service["labels"]["agency.client"].as_str(), Some(id.as_str()), "{dump}");
            assert_eq!(service["labels"]["agency.managed"].as_str(), Some("true"), "{dump}");
            assert!(service["logging"]["options"]["tag"].as_str().unwrap().starts_with(&format!("agency.{id}.")));
            assert_eq!(service["cap_drop"][0].as_str(), Some("NET_RAW"), "{dump}");
            assert_eq!(service["restart"].as_str(), Some("unless-stopped"), "{dump}");
        }
        let volumes = &config["volumes"];
        for name in names(volumes) {
            assert_eq!(volumes[name]["name"].as_str(), Some(format!("{id}_{name}").as_str()), "{dump}");
        }
        if stack == "wordpress" {
            assert_eq!(names(&services["wordpress"]["networks"]), ["database", "frontend"], "{dump}");
            assert_eq!(names(&services["db"]["networks"]), ["database"], "the database is only on its tier: {dump}");
            assert_eq!(services["db"]["labels"]["agency.db"].as_str(), Some("mariadb"), "{dump}");
            // The secrets come from the environment of the compose process.
            assert_eq!(services["db"]["environment"]["MARIADB_PASSWORD"].as_str(), Some("p"), "{dump}");
            assert_eq!(services["db"]["environment"]["MARIADB_ROOT_PASSWORD"].as_str(), Some("r"), "{dump}");
            assert_eq!(services["db"]["image"].as_str(), Some("mariadb:11"), "{dump}");
        }
    }
}
