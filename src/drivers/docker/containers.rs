//! Containers as the client-data steps use them: `docker exec` as a command to pipe (a dump
//! out of a database, a restore into it), a container's mounts and image, and a throwaway
//! container started with secrets in its environment (never in its argument list).

use super::*;

use anyhow::Context as _;
use serde::Deserialize;

/// A mount of a container, as `docker inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Mount {
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The volume's name (empty for a bind mount).
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Destination", default)]
    pub destination: String,
}

/// A throwaway container to start: detached, on one network, labelled, with `env` handed
/// over by the CLI's environment (`-e NAME`).
#[derive(Debug, Clone)]
pub(crate) struct ThrowawaySpec<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub network: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub env: &'a [(&'a str, &'a str)],
}

impl Docker {
    /// `docker exec [-i] -e NAME... -- <container> argv...` as a command to run or pipe: the
    /// values of `env` reach the process through the docker CLI's environment, never an
    /// argument list.
    pub(crate) fn exec_command(
        &self,
        container: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: bool,
    ) -> Result<process::Command> {
        if argv.is_empty() {
            bail!("nothing to run in container {container}: the command is empty");
        }
        let mut args: Vec<String> = vec!["exec".into()];
        if stdin {
            args.push("-i".into());
        }
        for (key, _) in env {
            if key.is_empty() || key.contains('=') {
                bail!("`{key}` is not a valid environment variable name");
            }
            args.push("-e".into());
            args.push((*key).to_string());
        }
        args.push("--".into());
        args.push(container.into());
        args.extend(argv.iter().map(|a| a.to_string()));
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut command = self.command(args);
        for (key, value) in env {
            command = command.env(key, value);
        }
        Ok(command)
    }

    /// A container's image (as it was named when created) and its mounts (one `docker inspect`).
    pub(crate) fn image_and_mounts(&self, container: &str) -> Result<(String, Vec<Mount>)> {
        let output = self.checked(
            "inspect",
            &[
                "inspect",
                "--type",
                "container",
                "--format",
                "{{json .Config.Image}}\t{{json .Mounts}}",
                "--",
                container,
            ],
        )?;
        let (image, mounts) = output
            .stdout
            .trim()
            .split_once('\t')
            .ok_or_else(|| anyhow!("`docker inspect {container}` printed no image and mounts"))?;
        let image: String = serde_json::from_str(image).context("the image of `docker inspect`")?;
        let mounts: Option<Vec<Mount>> = serde_json::from_str(mounts).context("the mounts of `docker inspect`")?;
        Ok((image, mounts.unwrap_or_default()))
    }

    /// Starts a throwaway container (`docker run -d`), its id.
    pub(crate) fn run_throwaway(&self, spec: &ThrowawaySpec) -> Result<String> {
        let mut args: Vec<String> =
            ["run", "-d", "--name", spec.name, "--network", spec.network].iter().map(|s| s.to_string()).collect();
        for (key, value) in spec.labels {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        for (key, _) in spec.env {
            if key.is_empty() || key.contains('=') {
                bail!("`{key}` is not a valid environment variable name");
            }
            args.push("-e".into());
            args.push((*key).to_string());
        }
        args.push("--".into());
        args.push(spec.image.into());
        let mut command = self.command(args);
        for (key, value) in spec.env {
            command = command.env(key, value);
        }
        let output = self.run(&command)?;
        if !output.success() {
            return Err(self.failure("run", &output.stderr));
        }
        Ok(output.stdout.trim().to_string())
    }
}
