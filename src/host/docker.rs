//! `docker::` — the client's containers, for plugins (e.g. `db-passwords`). Each function is
//! one `docker` process; `DOCKER_HOST` and `DOCKER_CONTEXT` pass through. Secrets go to a
//! container on stdin, never in an argument, and are masked in error messages.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `docker::available()` | no | whether a `docker` program is on PATH (the engine may still be down) |
//! | `docker::list_containers(labels)` | no | containers, running or not, carrying every `label: value` of the map (`""` matches any value): array of `#{ id, name, image, state, labels }` |
//! | `docker::exec_with_stdin(container, argv, stdin)` | yes | runs `argv` in a running container with `stdin` fed to it (`docker exec -i`); its stdout (`""` in a dry run). Errors mask every word of `stdin` |
//! | `docker::exec_with_stdin(container, argv, stdin, secrets)` | yes | the same; errors mask exactly the values of the array `secrets` (so the tool's message stays readable) |
//!
//! These call `docker` through `drivers::process` directly; when the Docker driver
//! (`drivers::docker`) lands they become thin wrappers of its `list_containers` and
//! `exec_with_stdin`, with the same script signatures.

use std::{cell::RefCell, path::PathBuf, rc::Rc};

use anyhow::{Context, Result, anyhow, bail};
use rhai::{Array, Dynamic, Map, Module, NativeCallContext};

use super::{Host, ScriptResult, located_error};
use crate::{drivers::process, effects::Outcome};

const INSTALL_HINT: &str = "install Docker Engine (Debian: apt-get install docker.io) or put `docker` on PATH";

fn docker() -> Result<PathBuf> {
    process::locate("docker", INSTALL_HINT)
}

/// Docker's own first error line, without "Error response from daemon: ".
fn docker_line(stderr: &str) -> String {
    let line = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no error output");
    line.trim_start_matches("Error response from daemon: ").to_string()
}

fn failure(what: &str, stderr: &str) -> anyhow::Error {
    let line = docker_line(stderr);
    if line.contains("Cannot connect to the Docker daemon") || line.contains("Is the docker daemon running") {
        anyhow!("the Docker engine is not reachable ({line}); start it (e.g. `systemctl start docker`)")
    } else if line.contains("permission denied") && line.contains("docker") {
        anyhow!("no permission to use the Docker engine ({line}); run as root or join the docker group")
    } else {
        anyhow!("`docker {what}` failed: {line}")
    }
}

/// Masks every word of `secret` (longer than 3 bytes) found in `text`, so a tool that echoes
/// its input in an error cannot leak a password into a message.
pub fn redact(text: &str, secret: &str) -> String {
    let mut words: Vec<&str> = secret.split(|c: char| c.is_whitespace() || "'\";".contains(c)).collect();
    words.retain(|w| w.len() > 3);
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.into_iter().fold(text.to_string(), |text, word| text.replace(word, "<redacted>"))
}

/// A container as `docker ps` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub labels: Vec<(String, String)>,
}

/// Parses `docker ps --no-trunc --format '{{json .}}'` (one JSON object a line).
pub fn parse_ps(stdout: &str) -> Result<Vec<Container>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("unexpected `docker ps` output: {line}"))?;
            let field = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let labels = field("Labels")
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            Ok(Container {
                id: field("ID"),
                name: field("Names").split(',').next().unwrap_or_default().to_string(),
                image: field("Image"),
                state: field("State"),
                labels,
            })
        })
        .collect()
}

/// Containers carrying every label of `labels` (an empty value matches any value), in one call.
pub fn list_containers(labels: &[(String, String)]) -> Result<Vec<Container>> {
    let mut args: Vec<String> = vec!["ps".into(), "-a".into(), "--no-trunc".into()];
    for (key, value) in labels {
        if key.is_empty() || key.contains(['=', ',', '\n']) || value.contains([',', '\n']) {
            bail!("label filter {key:?}={value:?} is not a valid Docker label");
        }
        args.push("--filter".into());
        args.push(if value.is_empty() { format!("label={key}") } else { format!("label={key}={value}") });
    }
    args.extend(["--format".into(), "{{json .}}".into()]);
    let output = process::Command::new(&docker()?).args(&args).output()?;
    if !output.success() {
        return Err(failure("ps", &output.stderr));
    }
    parse_ps(&output.stdout)
}

/// `docker exec -i CONTAINER ARGV...` with `stdin` fed to the process; its stdout. A failure
/// quotes the tool's error line with every word of each of `secrets` masked.
pub fn exec_with_stdin(container: &str, argv: &[String], stdin: &str, secrets: &[&str]) -> Result<String> {
    if argv.is_empty() {
        bail!("nothing to run in container {container}: the command is empty");
    }
    let output = process::Command::new(&docker()?)
        .args(["exec", "-i", "--", container])
        .args(argv)
        .stdin(stdin.as_bytes().to_vec())
        .output()?;
    if output.success() {
        return Ok(output.stdout);
    }
    let line = secrets.iter().fold(docker_line(&output.stderr), |line, secret| redact(&line, secret));
    if [
        "No such container",
        "is not running",
        "Cannot connect to the Docker daemon",
        "permission denied while trying to connect",
    ]
    .iter()
    .any(|docker_error| line.contains(docker_error))
    {
        return Err(failure("exec", &line));
    }
    Err(anyhow!("`{}` in container {container} failed (exit {}): {line}", argv[0], output.code))
}

fn container_map(container: Container) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), container.id.into());
    map.insert("name".into(), container.name.into());
    map.insert("image".into(), container.image.into());
    map.insert("state".into(), container.state.into());
    let labels: Map = container.labels.into_iter().map(|(k, v)| (k.into(), Dynamic::from(v))).collect();
    map.insert("labels".into(), labels.into());
    map
}

/// `docker exec` through the effects layer: recorded in a dry run, done otherwise. The step
/// names the program and the size of its input, never the input.
fn exec_effect(
    context: &NativeCallContext,
    host: &Host,
    container: &str,
    argv: Array,
    stdin: &str,
    secrets: &[&str],
) -> ScriptResult<String> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let program = argv.first().cloned().unwrap_or_default();
    let detail = format!("{program}; {} bytes on stdin", stdin.len());
    let stdout = RefCell::new(String::new());
    host.effects
        .apply("docker exec", container, &detail, Outcome::Updated, || {
            *stdout.borrow_mut() = exec_with_stdin(container, &argv, stdin, secrets)?;
            Ok(())
        })
        .map_err(|e| located_error(context, e))?;
    Ok(stdout.into_inner())
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    module.set_native_fn("available", || -> ScriptResult<bool> { Ok(docker().is_ok()) });

    module.set_native_fn("list_containers", |context: NativeCallContext, labels: Map| -> ScriptResult<Array> {
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let containers = list_containers(&labels).map_err(|e| located_error(&context, e))?;
        Ok(containers.into_iter().map(|c| Dynamic::from(container_map(c))).collect())
    });

    let h = host.clone();
    module.set_native_fn(
        "exec_with_stdin",
        move |context: NativeCallContext, container: &str, argv: Array, stdin: &str| -> ScriptResult<String> {
            exec_effect(&context, &h, container, argv, stdin, &[stdin])
        },
    );

    let h = host.clone();
    module.set_native_fn(
        "exec_with_stdin",
        move |context: NativeCallContext,
              container: &str,
              argv: Array,
              stdin: &str,
              secrets: Array|
              -> ScriptResult<String> {
            let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            exec_effect(&context, &h, container, argv, stdin, &secrets)
        },
    );

    module
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ps_lines() {
        let out = r#"{"ID":"abc","Names":"acme-db","Image":"mysql:8","State":"running","Labels":"agency.client=acme,agency.db=mysql"}
{"ID":"def","Names":"x","Image":"busybox","State":"exited","Labels":""}
"#;
        let containers = parse_ps(out).unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0].name, "acme-db");
        assert_eq!(
            containers[0].labels,
            [("agency.client".into(), "acme".into()), ("agency.db".into(), "mysql".into())]
        );
        assert!(containers[1].labels.is_empty());
    }

    #[test]
    fn redacts_every_word_of_the_secret() {
        let text = "ERROR 1064: near 'IDENTIFIED BY s3cretValue' at line 1";
        let shown = redact(text, "old-pass\n\nALTER USER 'root' IDENTIFIED BY 's3cretValue';");
        assert!(!shown.contains("s3cretValue"), "{shown}");
    }
}
