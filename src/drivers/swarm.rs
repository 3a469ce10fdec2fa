//! Docker Swarm stacks: `docker stack deploy` (built into the Docker CLI) for a client's stack
//! on a Swarm manager. As with Compose, the files' `${VAR}` references are filled from the CLI
//! process's environment, where the client's values and secrets go (never its arguments, never
//! a file). Services are named `<stack>_<service>` and labelled with their stack's namespace.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};

use crate::drivers::{
    compose::{Project, run_with_values},
    process::{Command, ProcessOutput},
};

/// Swarm's label naming a service's (and its task containers') stack.
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";

/// One service of a stack, as `docker service ls` and `docker service inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    /// `<stack>_<service>`.
    pub name: String,
    /// Tasks running / wanted (`docker service ls`'s REPLICAS).
    pub running: u32,
    pub desired: u32,
    /// The service's own labels (the stack file's `deploy.labels`); empty from [`list`].
    pub labels: BTreeMap<String, String>,
}

impl Service {
    /// The service's name inside its stack `namespace`.
    pub fn short_name<'a>(&'a self, namespace: &str) -> &'a str {
        self.name.strip_prefix(namespace).and_then(|rest| rest.strip_prefix('_')).unwrap_or(&self.name)
    }
}

fn not_a_manager(output: &ProcessOutput) -> bool {
    output.stderr.to_lowercase().contains("not a swarm manager")
}

/// `REPLICAS` of `docker service ls`: `1/1`, `0/3`, `2/2 (max 1 per node)`; a global
/// service's too.
fn parse_replicas(text: &str) -> Option<(u32, u32)> {
    let first = text.split_whitespace().next()?;
    let (running, desired) = first.split_once('/')?;
    Some((running.parse().ok()?, desired.parse().ok()?))
}

/// The services carrying `label` (`key=value`), without their labels; `None` when this
/// engine is not a Swarm manager (one `docker service ls`).
pub fn list(docker: &Path, label: &str) -> Result<Option<Vec<Service>>> {
    let output = Command::new(docker)
        .args(["service", "ls", "--filter", &format!("label={label}"), "--format", "{{.ID}}\t{{.Name}}\t{{.Replicas}}"])
        .output()?;
    if !output.success() {
        if not_a_manager(&output) {
            return Ok(None);
        }
        bail!("`docker service ls` failed: {}", output.first_error_line());
    }
    let mut services = Vec::new();
    for line in output.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        let [id, name, replicas] = fields[..] else { bail!("`docker service ls` printed an unexpected line: {line}") };
        let (running, desired) = parse_replicas(replicas)
            .ok_or_else(|| anyhow!("`docker service ls` printed replicas {replicas:?} for {name}"))?;
        services.push(Service { id: id.into(), name: name.into(), running, desired, labels: BTreeMap::new() });
    }
    Ok(Some(services))
}

/// The services of stack `namespace` with their labels, or `None` when this engine is not a
/// Swarm manager: one `docker service ls`, and one `docker service inspect` when there are any.
pub fn services(docker: &Path, namespace: &str) -> Result<Option<Vec<Service>>> {
    let Some(listed) = list(docker, &format!("{LABEL_NAMESPACE}={namespace}"))? else { return Ok(None) };
    if listed.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut args = vec!["service", "inspect", "--format", "{{.ID}}\t{{json .Spec.Labels}}", "--"];
    args.extend(listed.iter().map(|s| s.id.as_str()));
    let output = Command::new(docker).args(&args).output()?;
    // A service removed between the two calls fails inspect for it alone: it counts as gone.
    let mut labels: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for line in output.stdout.lines() {
        if let Some((id, json)) = line.split_once('\t') {
            labels.insert(id, serde_json::from_str(json).unwrap_or_default());
        }
    }
    Ok(Some(
        listed
            .into_iter()
            .filter_map(|service| {
                let full = labels.keys().find(|full| full.starts_with(service.id.as_str()))?;
                Some(Service { labels: labels[full].clone(), ..service })
            })
            .collect(),
    ))
}

const DEPLOY: [&str; 6] = ["stack", "deploy", "--prune", "--resolve-image", "never", "--quiet"];

fn deploy_args(project: &Project) -> Vec<String> {
    let mut args: Vec<String> = DEPLOY.iter().map(|a| a.to_string()).collect();
    for file in project.files {
        args.push("--compose-file".into());
        args.push(file.display().to_string());
    }
    args.push(project.name.to_string());
    args
}

/// The deploy command line as an operator would type it, for plans and reports.
pub fn describe_deploy(project: &Project) -> String {
    format!("docker {}", deploy_args(project).join(" "))
}

/// `docker stack deploy --prune --resolve-image never` of the project's files, the values
/// in the CLI's environment; a failure quotes the CLI's last error line, values masked. The
/// engine's own images are used as they are (no registry is asked).
pub fn deploy(docker: &Path, project: &Project) -> Result<()> {
    run_with_values(Command::new(docker).args(deploy_args(project)), project.env, || describe_deploy(project))
}

/// `docker stack rm`, then waits (up to `timeout`) until no task container of the stack runs
/// on this node, so the stack is gone when this returns; volumes stay.
pub fn remove(docker: &Path, namespace: &str, timeout: Duration) -> Result<()> {
    let output = Command::new(docker).args(["stack", "rm", "--", namespace]).output()?;
    if !output.success() {
        bail!("`docker stack rm {namespace}` failed: {}", output.first_error_line());
    }
    let filter = format!("label={LABEL_NAMESPACE}={namespace}");
    let deadline = Instant::now() + timeout;
    loop {
        let running = Command::new(docker).args(["ps", "-q", "--filter", &filter]).output()?;
        if !running.success() {
            bail!("`docker ps` failed: {}", running.first_error_line());
        }
        if running.stdout.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("stack {namespace} was removed but its containers still run after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replicas() {
        assert_eq!(parse_replicas("1/1"), Some((1, 1)));
        assert_eq!(parse_replicas("0/3 (max 1 per node)"), Some((0, 3)));
        assert_eq!(parse_replicas("n/a"), None);
    }

    #[test]
    fn names_inside_the_stack() {
        let service = Service { id: "x".into(), name: "acme_web_1".into(), running: 1, desired: 1, labels: [].into() };
        assert_eq!(service.short_name("acme"), "web_1");
    }
}
