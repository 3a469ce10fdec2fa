//! The Docker engine, driven through the `docker` CLI.
//!
//! Every method is one `docker` process (two for [`Docker::inspect_all_networks`]), whatever
//! the number of clients, so status checks stay O(1) in docker calls: list everything once,
//! then work on the parsed lists. `DOCKER_HOST` and `DOCKER_CONTEXT` reach the CLI through the
//! inherited environment, so one runner can drive a remote engine.
//!
//! Measured on the development engine (Docker 20.10, 200 networks): `network create` ≈ 100 ms,
//! `network rm` ≈ 210 ms (both serialized by the daemon), `network ls` ≈ 18 ms, `ps -a` ≈ 11 ms,
//! `network ls -q` + `network inspect` of all ≈ 235 ms, `version` ≈ 16 ms.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Result, anyhow, bail};

use crate::{
    drivers::process::{self, ProcessOutput},
    format::ipv4::Ipv4Net,
};

/// What to install when there is no `docker` on PATH.
pub(crate) const INSTALL_HINT: &str = "install the Docker CLI and engine (Debian/Ubuntu: `apt-get install docker.io`; \
     elsewhere see https://docs.docker.com/engine/install/), or put `docker` on PATH";

/// Label every network and container the runner manages carries.
pub const LABEL_MANAGED: &str = "agency.managed";
/// Label naming the client a resource belongs to.
pub const LABEL_CLIENT: &str = "agency.client";
/// Label naming a network's tier (frontend, backend, database, network).
pub(crate) const LABEL_TIER: &str = "agency.tier";
/// Label on throwaway probe containers.
pub(crate) const LABEL_PROBE: &str = "agency.probe";
/// Label of a container allowed on several clients' frontend networks (a shared reverse proxy).
pub(crate) const LABEL_SHARED_INGRESS: &str = "agency.shared-ingress";

/// Label of every container agency deploys: the fingerprint of what it was deployed from, so
/// a deploy of an unchanged stack starts no Compose process.
pub(crate) const LABEL_DEPLOY: &str = "agency.deploy";
/// Label naming the stack service a container was deployed for.
pub(crate) const LABEL_SERVICE: &str = "agency.service";

/// Labels read exactly from `ls`/`ps` output. Docker prints a resource's labels there as one
/// comma-joined `k=v,k=v` string, so `--label 'x=1,agency.client=b'` would read as two labels;
/// these keys are asked for one by one with the template function `.Label`, and any other
/// `agency.*` key found in the joined string is dropped (it cannot be told from a spoof).
pub(crate) const EXACT_LABELS: [&str; 10] = [
    LABEL_MANAGED,
    LABEL_CLIENT,
    LABEL_TIER,
    LABEL_PROBE,
    LABEL_SHARED_INGRESS,
    "agency.role",
    "agency.test",
    // The db-passwords plugin's labels on a client's database containers.
    "agency.db",
    "agency.db-user",
    "agency.db-admin",
];

/// A Docker engine reached through the `docker` CLI. Cheap to clone; clones share the call
/// counter.
#[derive(Debug, Clone)]
pub struct Docker {
    program: PathBuf,
    env: Vec<(String, String)>,
    calls: Arc<AtomicUsize>,
}

mod containers;
mod error;
mod image;
mod model;
mod parse;
mod peers;
mod probe;
#[cfg(test)]
mod tests;

pub(crate) use containers::*;
pub use error::*;
pub use image::*;
pub use model::*;
pub(crate) use parse::*;
pub use peers::ForgerSpec;
pub(crate) use peers::{PEER_PORT, forger_script, parse_in_echos};
pub use probe::*;

impl Docker {
    /// Finds `docker` on PATH and checks that the engine answers; errors say what to install
    /// or start.
    pub fn connect() -> Result<Docker> {
        let program = process::locate("docker", INSTALL_HINT).map_err(|e| ConnectError::Missing(e.to_string()))?;
        let docker = Docker::with_program(program);
        docker.check()?;
        Ok(docker)
    }

    /// Finds `docker` on PATH without asking the engine anything (the first real call reports
    /// an unreachable daemon in the same words as [`Docker::connect`]).
    pub fn locate() -> Result<Docker> {
        let program = process::locate("docker", INSTALL_HINT).map_err(|e| ConnectError::Missing(e.to_string()))?;
        Ok(Docker::with_program(program))
    }

    /// A client for a given `docker` program, without checking the engine.
    pub fn with_program(program: impl Into<PathBuf>) -> Docker {
        Docker { program: program.into(), env: Vec::new(), calls: Arc::new(AtomicUsize::new(0)) }
    }

    /// Sets a variable for every `docker` process of this client (e.g. `DOCKER_HOST` for one
    /// engine among several); by default the CLI sees the runner's own environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// How many `docker` processes this client (and its clones) started.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    fn command<I, S>(&self, args: I) -> process::Command
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let mut command = process::Command::new(&self.program).args(args);
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        command
    }

    fn run(&self, command: &process::Command) -> Result<ProcessOutput> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        command.output()
    }

    /// Runs `docker ARGS`; a failure is one sentence naming the command.
    fn checked(&self, what: &str, args: &[&str]) -> Result<ProcessOutput> {
        let output = self.run(&self.command(args))?;
        if output.success() {
            return Ok(output);
        }
        Err(self.failure(what, &output.stderr))
    }

    fn failure(&self, what: &str, stderr: &str) -> anyhow::Error {
        match classify_connect_failure(stderr) {
            Some(connect) => connect.into(),
            None => anyhow!("`docker {what}` failed: {}", docker_line(stderr)),
        }
    }

    /// Checks that the engine answers (one `docker version` call).
    pub fn check(&self) -> Result<()> {
        self.server_version().map(drop)
    }

    /// The engine's version (`docker version`); the connection check.
    pub fn server_version(&self) -> Result<String> {
        let output = self.run(&self.command(["version", "--format", "{{.Server.Version}}"]))?;
        let version = output.stdout.trim().to_string();
        if output.success() && !version.is_empty() {
            return Ok(version);
        }
        Err(classify_connect_failure(&output.stderr)
            .unwrap_or_else(|| ConnectError::Other(docker_line(&output.stderr)))
            .into())
    }

    /// Every network, in one `docker network ls` call.
    pub fn list_networks(&self) -> Result<Vec<NetworkSummary>> {
        let format = exact_format(&EXACT_LABELS);
        let output = self.checked("network ls", &["network", "ls", "--no-trunc", "--format", &format])?;
        parse_network_ls(&output.stdout)
    }

    /// The named networks (names or full IDs), in one `docker network inspect` call. Names
    /// that do not exist are left out of the result, as are networks that only matched by
    /// ID prefix.
    pub fn inspect_networks(&self, names: &[&str]) -> Result<Vec<NetworkDetails>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["network", "inspect", "--"];
        args.extend_from_slice(names);
        let output = self.run(&self.command(&args))?;
        if !output.success() {
            let unexpected = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).find(|l| !is_not_found(l));
            if let Some(line) = unexpected {
                return Err(self.failure("network inspect", line));
            }
        }
        let mut networks = parse_network_inspect(&output.stdout)?;
        networks.retain(|n| names.iter().any(|name| *name == n.name || *name == n.id));
        Ok(networks)
    }

    /// The IDs among `ids` of containers that have NET_RAW, the capability that forges packets
    /// (one `docker inspect`; a container gone meanwhile is left out).
    pub fn with_net_raw(&self, ids: &[&str]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let format = "{{.Id}}\t{{.HostConfig.Privileged}}\t{{json .HostConfig.CapAdd}}\t{{json .HostConfig.CapDrop}}";
        let mut args = vec!["inspect", "--type", "container", "--format", format, "--"];
        args.extend_from_slice(ids);
        let output = self.run(&self.command(&args))?;
        if !output.success() {
            let unexpected = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).find(|l| !is_not_found(l));
            if let Some(line) = unexpected {
                return Err(self.failure("inspect", line));
            }
        }
        Ok(parse_net_raw(&output.stdout))
    }

    /// Every network with its subnets and containers: `network ls -q` then one
    /// `network inspect` (two calls).
    pub fn inspect_all_networks(&self) -> Result<Vec<NetworkDetails>> {
        let output = self.checked("network ls", &["network", "ls", "-q", "--no-trunc"])?;
        let ids: Vec<&str> = output.stdout.split_whitespace().collect();
        let mut all = Vec::with_capacity(ids.len());
        // A network removed between the two calls is simply not listed.
        for chunk in ids.chunks(1000) {
            all.extend(self.inspect_networks(chunk)?);
        }
        Ok(all)
    }

    /// Creates a network and returns its ID.
    pub fn create_network(&self, spec: &NetworkSpec) -> std::result::Result<String, CreateNetworkError> {
        self.create_with_subnet(spec, spec.subnet)
    }

    pub fn create_with_subnet(
        &self,
        spec: &NetworkSpec,
        subnet: Option<Ipv4Net>,
    ) -> std::result::Result<String, CreateNetworkError> {
        let output = self.run(&self.command(spec.create_args(subnet))).map_err(CreateNetworkError::Failed)?;
        if output.success() {
            Ok(output.stdout.trim().to_string())
        } else {
            Err(classify_create_failure(&spec.name, subnet, &output.stderr))
        }
    }

    /// Removes a network (by name or full ID; pass names you listed, since Docker also accepts
    /// an ID prefix). `Ok(false)` when it did not exist.
    pub fn remove_network(&self, name: &str) -> Result<bool> {
        let output = self.run(&self.command(["network", "rm", "--", name]))?;
        if output.success() {
            return Ok(true);
        }
        let lower = output.stderr.to_lowercase();
        if is_not_found(&output.stderr) {
            Ok(false)
        } else if lower.contains("active endpoints") {
            Err(NetworkInUse { name: name.to_string(), containers: Vec::new() }.into())
        } else {
            Err(self.failure(&format!("network rm {name}"), &output.stderr))
        }
    }

    /// Disconnects a container from a network, forcibly (also a stopped container).
    /// `Ok(false)` when it was not connected or either is gone.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<bool> {
        let output = self.run(&self.command(["network", "disconnect", "--force", "--", network, container]))?;
        if output.success() {
            return Ok(true);
        }
        let lower = output.stderr.to_lowercase();
        if is_not_found(&output.stderr) || lower.contains("is not connected") {
            Ok(false)
        } else {
            Err(self.failure(&format!("network disconnect {network} {container}"), &output.stderr))
        }
    }

    /// Whether `container` (name or ID, running or stopped) is attached to `network` (name or
    /// ID). `network inspect` lists running containers only, so the attachment is read from
    /// `ps -a`. False when either does not exist.
    pub fn is_attached(&self, network: &str, container: &str) -> Result<bool> {
        let Some(found) = self.inspect_networks(&[network])?.into_iter().next() else {
            return Ok(false);
        };
        Ok(self.containers_on(&found.name)?.iter().any(|c| c.name == container || c.id == container))
    }

    /// Every container, running or not, with its networks, in one `docker ps -a` call.
    pub fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let format = container_format(&EXACT_LABELS);
        let output = self.checked("ps", &["ps", "-a", "--no-trunc", "--format", &format])?;
        parse_ps(&output.stdout, &EXACT_LABELS)
    }

    /// The containers, running or stopped, attached to `network` now (one `docker ps -a`).
    pub fn containers_on(&self, network: &str) -> Result<Vec<ContainerSummary>> {
        Ok(self.list_containers()?.into_iter().filter(|c| c.networks.iter().any(|n| n == network)).collect())
    }

    /// Containers (running or not) carrying every label of `labels` (an empty value matches any
    /// value), in one `docker ps -a` call filtered by the engine.
    pub fn list_containers_with_labels(&self, labels: &[(String, String)]) -> Result<Vec<ContainerSummary>> {
        let mut args: Vec<String> = vec!["ps".into(), "-a".into(), "--no-trunc".into()];
        let mut keys: Vec<&str> = EXACT_LABELS.to_vec();
        for (key, value) in labels {
            if !plain_label_key(key) || value.contains([',', '\n']) {
                bail!("label filter {key:?}={value:?} is not a valid Docker label");
            }
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
            args.push("--filter".into());
            args.push(if value.is_empty() { format!("label={key}") } else { format!("label={key}={value}") });
        }
        args.extend(["--format".into(), container_format(&keys)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.checked("ps", &args)?;
        parse_ps(&output.stdout, &keys)
    }

    /// Volumes, optionally filtered by label (`key` or `key=value`), with their mountpoints,
    /// in one `docker volume ls` call.
    pub fn list_volumes(&self, label: Option<&str>) -> Result<Vec<Volume>> {
        let format = exact_format(&EXACT_LABELS);
        let mut args = vec!["volume", "ls", "--format", &format];
        let filter;
        if let Some(label) = label {
            filter = format!("label={label}");
            args.push("--filter");
            args.push(&filter);
        }
        let output = self.checked("volume ls", &args)?;
        parse_volume_ls(&output.stdout)
    }

    /// Runs `argv` in a running container with `stdin` fed to it (`docker exec -i`, the way to
    /// hand a password to a tool inside the container) and returns its stdout. A non-zero exit
    /// is an error quoting the tool's error line with every word of each of `secrets` masked
    /// (pass `&[stdin]` to mask all of the input).
    pub fn exec_with_stdin(&self, container: &str, argv: &[&str], stdin: &[u8], secrets: &[&str]) -> Result<String> {
        self.exec(container, argv, &[], Some(stdin), secrets)
    }

    /// Runs `argv` in a running container. `env` values reach the process through the docker
    /// CLI's environment (`docker exec -e NAME`), never its argument list; `stdin`, if any, is
    /// fed to it. The values of `env` and every word of `secrets` are masked in errors.
    pub fn exec(
        &self,
        container: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        secrets: &[&str],
    ) -> Result<String> {
        let mut command = self.exec_command(container, argv, env, stdin.is_some())?;
        if let Some(bytes) = stdin {
            command = command.stdin(bytes.to_vec());
        }
        let output = self.run(&command)?;
        if output.success() {
            return Ok(output.stdout);
        }
        if let Some(connect) = classify_connect_failure(&output.stderr) {
            return Err(connect.into());
        }
        let mut message = docker_line(&output.stderr);
        for secret in secrets.iter().copied().chain(env.iter().map(|(_, v)| *v)) {
            message = redact(&message, secret);
        }
        // Docker's own refusals (no such container, not running) are not the tool's failure.
        if message.contains("No such container") || message.contains("is not running") {
            bail!("`docker exec` in container {container} failed: {message}");
        }
        bail!("`{}` in container {container} failed (exit {}): {message}", argv[0], output.code)
    }
}
