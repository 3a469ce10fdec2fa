//! Real-engine helpers for the plugin and generated-config tests: the engine or a loud SKIP
//! (a failure under `CI=true`), the `FROM scratch` busybox test image, unique names, and
//! guards that remove what a test created, also when it fails.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

/// The image real-engine tests run: `FROM scratch` + Debian's static busybox (no registry).
pub const TEST_IMAGE: &str = "agency-test-busybox:latest";

/// Label on everything these tests create.
pub const TEST_LABEL: &str = "agency.test=plugins";

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
LABEL agency.probe-image=true\n\
CMD [\"/bin/sh\"]\n";

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Reports a missing tool: a failure in CI, a loud SKIP line elsewhere. Returns false.
pub fn skip(test: &str, why: &str) -> bool {
    if in_ci() {
        panic!("{test}: {why} (required in CI)");
    }
    crate::support::loud_skip(&format!("{test}: {why}"));
    false
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().expect("docker runs")
}

/// True when the engine answers; otherwise SKIP (or fail in CI).
pub fn engine_or_skip(test: &str) -> bool {
    match Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            skip(test, &format!("the Docker engine is not reachable: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
        Err(e) => skip(test, &format!("no docker program ({e})")),
    }
}

/// Builds [`TEST_IMAGE`] once per test process when the engine lacks it.
pub fn busybox_image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if docker(&["image", "inspect", TEST_IMAGE]).status.success() {
            return Ok(());
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or("no busybox; install Debian's busybox-static")?;
        let context = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::copy(busybox, context.path().join("busybox")).map_err(|e| e.to_string())?;
        std::fs::write(context.path().join("Dockerfile"), DOCKERFILE).map_err(|e| e.to_string())?;
        let out = docker(&["build", "-q", "-t", TEST_IMAGE, &context.path().display().to_string()]);
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    });
    if let Err(e) = result {
        panic!("could not build {TEST_IMAGE}: {e}");
    }
    TEST_IMAGE
}

/// A name no other test uses (pid + time + counter), valid as a client id.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{:x}{:x}{}", std::process::id(), nanos % 0xffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A running container, removed (with `-f`) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// Starts `sh -c SCRIPT` in the test image with `labels`.
    pub fn start(name: &str, labels: &[(&str, &str)], script: &str) -> Self {
        let image = busybox_image();
        let mut args: Vec<String> =
            ["run", "-d", "--name", name, "--label", TEST_LABEL, "--network", "none"].map(String::from).to_vec();
        for (key, value) in labels {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        args.extend(["--entrypoint", "/bin/sh", image, "-c", script].map(String::from));
        let container = Self { name: name.to_string() };
        let out = Command::new("docker").args(&args).output().expect("docker runs");
        assert!(out.status.success(), "docker run failed: {}", String::from_utf8_lossy(&out.stderr));
        container
    }

    /// `docker exec -i NAME sh -c SCRIPT` with `stdin`; the output.
    pub fn exec(&self, script: &str, stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A file's contents inside the container, `None` when it is missing.
    pub fn read(&self, path: &str) -> Option<String> {
        let out = docker(&["exec", &self.name, "cat", path]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// Removes the networks create-client makes for `ids` (once it creates them), on drop. The
/// ids are unique to the test, so these networks can only be the test's own.
pub struct ClientNetworks(pub Vec<String>);

impl Drop for ClientNetworks {
    fn drop(&mut self) {
        if self.0.is_empty() || Command::new("docker").arg("--version").output().is_err() {
            return;
        }
        let names: Vec<String> = self
            .0
            .iter()
            .flat_map(|id| ["frontend", "backend", "database", "network"].map(|tier| format!("{id}_{tier}")))
            .collect();
        let listed = docker(&["network", "ls", "--format", "{{.Name}}"]);
        let existing = String::from_utf8_lossy(&listed.stdout);
        let ours: Vec<&str> =
            names.iter().map(String::as_str).filter(|n| existing.lines().any(|line| line == *n)).collect();
        if !ours.is_empty() {
            let mut args = vec!["network", "rm"];
            args.extend(ours);
            let _ = docker(&args);
        }
    }
}

/// A directory with a `docker` that logs its arguments (one run a line) to `log`, then runs
/// the real one: what agency put in docker's argv, for the "never in argv" checks.
pub fn docker_argv_shim(dir: &Path) -> (PathBuf, PathBuf) {
    let real = which("docker").expect("docker on PATH");
    let log = dir.join("docker-argv.log");
    let shim_dir = dir.join("shim");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let shim = shim_dir.join("docker");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    (shim_dir, log)
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}
