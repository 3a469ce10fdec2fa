//! Docker Compose, for a client's stack: `docker compose` when the CLI plugin is there, else
//! Debian's `docker-compose` (1.29). Both take the same options for what agency runs. The
//! stack's `${VAR}` references are filled from the compose process's environment, which is
//! where the client's values and secrets go (never its arguments, never a file). Compose would
//! also read a `.env` in the project directory: [`Compose::run`] refuses to run with one.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::drivers::{
    docker::{ContainerSummary, EXACT_LABELS, container_format, parse_ps},
    process::{self, Command},
};

/// What to install when neither Compose is there.
pub const INSTALL_HINT: &str =
    "install Docker Compose (Debian/Ubuntu: `apt-get install docker-compose`, or the `docker-compose-plugin`)";

/// Compose's label naming a container's project (agency's project is the client id).
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Compose's label naming a container's service.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";

/// The files and environment of one project.
pub struct Project<'a> {
    pub name: &'a str,
    pub directory: &'a Path,
    pub files: [&'a Path; 2],
    /// Every variable the files refer to: client values and secrets.
    pub env: &'a [(String, String)],
}

#[derive(Debug, Clone)]
pub struct Compose {
    /// `docker` with the `compose` subcommand first, or `docker-compose`.
    program: PathBuf,
    plugin: bool,
}

impl Compose {
    /// `docker compose` if `docker compose version` answers, else `docker-compose` on PATH.
    pub fn locate(docker: &Path) -> Result<Compose> {
        let plugin = Command::new(docker).args(["compose", "version"]).output().is_ok_and(|o| o.success());
        if plugin {
            return Ok(Compose { program: docker.to_path_buf(), plugin: true });
        }
        let program = process::locate("docker-compose", INSTALL_HINT)?;
        Ok(Compose { program, plugin: false })
    }

    /// The command line as an operator would type it, for plans and reports.
    pub fn describe(&self, project: &Project, action: &[&str]) -> String {
        let mut words = vec![if self.plugin { "docker compose".to_string() } else { "docker-compose".to_string() }];
        words.extend(self.project_args(project).into_iter().map(|a| a.to_string_lossy().into_owned()));
        words.extend(action.iter().map(|a| a.to_string()));
        words.join(" ")
    }

    fn project_args(&self, project: &Project) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--project-name".into(), project.name.into(), "--project-directory".into(), project.directory.into()];
        for file in project.files {
            args.push("--file".into());
            args.push(file.into());
        }
        args
    }

    /// Runs `action` (`up -d ...`, `rm -s -f`) on the project; a failure quotes Compose's
    /// last error line with every value of the environment masked.
    pub fn run(&self, project: &Project, action: &[&str]) -> Result<()> {
        let stray = project.directory.join(".env");
        if stray.exists() {
            bail!(
                "{} exists: Compose would read it; agency passes every value by environment, remove it",
                stray.display()
            );
        }
        let mut command = Command::new(&self.program);
        if self.plugin {
            command = command.arg("compose");
        }
        command = command.args(self.project_args(project)).args(action);
        run_with_values(command, project.env, || self.describe(project, action))
    }
}

/// Runs `command` with the values of `env` in its environment (never its argv); a failure
/// names the command (`describe`) and quotes its last error line, the values masked.
pub fn run_with_values(
    mut command: Command,
    env: &[(String, String)],
    describe: impl FnOnce() -> String,
) -> Result<()> {
    for (key, value) in env {
        command = command.env(key, value);
    }
    let output = command.output()?;
    if output.success() {
        return Ok(());
    }
    Err(anyhow!("`{}` failed (exit {}): {}", describe(), output.code, masked_last_error(&output, env)))
}

/// The last non-empty stderr line, every value of `env` (of 4 characters or more) masked.
fn masked_last_error(output: &process::ProcessOutput, env: &[(String, String)]) -> String {
    let mut line =
        output.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no error output").to_string();
    for (_, value) in env.iter().filter(|(_, v)| v.len() >= 4) {
        line = line.replace(value.as_str(), "<redacted>");
    }
    line
}

/// The containers of project `name`, running or not, with the labels agency reads (one
/// `docker ps -a`); one-off `run` containers left out.
pub fn project_containers(docker: &Path, name: &str) -> Result<Vec<ContainerSummary>> {
    let mut keys: Vec<&str> = EXACT_LABELS.to_vec();
    keys.extend([
        LABEL_PROJECT,
        LABEL_SERVICE,
        LABEL_ONEOFF,
        crate::drivers::docker::LABEL_DEPLOY,
        crate::drivers::docker::LABEL_SERVICE,
    ]);
    let filter = format!("label={LABEL_PROJECT}={name}");
    let format = container_format(&keys);
    let output =
        Command::new(docker).args(["ps", "-a", "--no-trunc", "--filter", &filter, "--format", &format]).output()?;
    if !output.success() {
        bail!("`docker ps` failed: {}", output.first_error_line());
    }
    Ok(parse_ps(&output.stdout, &keys)?.into_iter().filter(|c| c.label(LABEL_ONEOFF) != Some("True")).collect())
}

fn docker_checked(docker: &Path, what: &str, args: &[&str]) -> Result<process::ProcessOutput> {
    let output = Command::new(docker).args(args).output()?;
    if !output.success() {
        bail!("`docker {what}` failed: {}", output.first_error_line());
    }
    Ok(output)
}

/// The image id of each of `images` the engine has (missing ones left out), in one
/// `docker image inspect` (a second, one per image, only when some are missing).
pub fn image_ids(docker: &Path, images: &[&str]) -> Result<std::collections::BTreeMap<String, String>> {
    let mut ids = std::collections::BTreeMap::new();
    if images.is_empty() {
        return Ok(ids);
    }
    let mut args = vec!["image", "inspect", "--format", "{{.Id}}", "--"];
    args.extend(images);
    let output = Command::new(docker).args(&args).output()?;
    let lines: Vec<&str> = output.stdout.lines().collect();
    if output.success() && lines.len() == images.len() {
        ids.extend(images.iter().zip(lines).map(|(image, id)| (image.to_string(), id.trim().to_string())));
        return Ok(ids);
    }
    for image in images {
        let output = Command::new(docker).args(["image", "inspect", "--format", "{{.Id}}", "--", image]).output()?;
        if output.success() {
            ids.insert(image.to_string(), output.stdout.trim().to_string());
        }
    }
    Ok(ids)
}

/// Stops (SIGTERM, then SIGKILL after `timeout` seconds) and removes containers; volumes stay.
pub fn stop_and_remove(docker: &Path, ids: &[&str], timeout: u32) -> Result<()> {
    let timeout = timeout.to_string();
    let mut stop = vec!["stop", "--time", &timeout, "--"];
    stop.extend(ids);
    docker_checked(docker, "stop", &stop)?;
    let mut remove = vec!["rm", "--"];
    remove.extend(ids);
    docker_checked(docker, "rm", &remove).map(drop)
}

/// A container by name: whether it runs, its labels and the networks it is on; `None` when
/// there is none (one `docker inspect`).
pub fn container(docker: &Path, name: &str) -> Result<Option<(bool, serde_json::Value, Vec<String>)>> {
    let format = "{{json .State.Running}}\t{{json .Config.Labels}}\t{{json .NetworkSettings.Networks}}";
    let output =
        Command::new(docker).args(["inspect", "--type", "container", "--format", format, "--", name]).output()?;
    if !output.success() {
        if output.stderr.contains("No such") {
            return Ok(None);
        }
        bail!("`docker inspect {name}` failed: {}", output.first_error_line());
    }
    let mut fields = output.stdout.trim().splitn(3, '\t');
    let parse = |text: Option<&str>| -> serde_json::Value {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(serde_json::Value::Null)
    };
    let running = parse(fields.next()).as_bool().unwrap_or(false);
    let labels = parse(fields.next());
    let networks = parse(fields.next()).as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    Ok(Some((running, labels, networks)))
}

/// `docker run -d ARGS`; the new container's id.
pub fn run_detached(docker: &Path, args: &[String]) -> Result<String> {
    let mut all = vec!["run", "-d"];
    all.extend(args.iter().map(String::as_str));
    Ok(docker_checked(docker, "run", &all)?.stdout.trim().to_string())
}

/// `docker start`, `docker rm -f`, `docker network connect` of one container.
pub fn container_command(docker: &Path, verb: &[&str], name: &str) -> Result<()> {
    let mut args = verb.to_vec();
    args.push(name);
    docker_checked(docker, &verb.join(" "), &args).map(drop)
}
