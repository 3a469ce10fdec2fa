//! The integration-test builder: runs the real `agency` binary in a temp root and checks
//! what a user would see. Each test reads like a line of the spec:
//! `Test::new().args(["--list"]).stdout_contains("create-client").run();`

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use tempfile::TempDir;

/// A temp site: AGENCY_ROOT, log, backup and logrotate roots and a site dir, all inside one
/// temp dir that is removed when the value drops, and an nftables table of its own
/// (`AGENCY_FIREWALL_TABLE`), deleted then too.
pub struct Site {
    dir: TempDir,
    /// Runs see the real Docker engine; otherwise `tests/support/fake-docker` answers.
    real_docker: bool,
    firewall_table: String,
}

impl Site {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("agency-test-").tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("site")).unwrap();
        let fake_bin = dir.path().join("fake-bin");
        fs::create_dir_all(&fake_bin).unwrap();
        std::os::unix::fs::symlink(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-docker"),
            fake_bin.join("docker"),
        )
        .unwrap();
        // The temp dir's random suffix (letters and digits) makes the table name unique.
        let suffix = dir.path().file_name().unwrap().to_string_lossy().trim_start_matches("agency-test-").to_string();
        Self { dir, real_docker: false, firewall_table: format!("agency_test_{suffix}") }
    }

    /// A site whose runs drive the real Docker engine (`DOCKER_HOST`, `DOCKER_CONTEXT` and
    /// `DOCKER_CONFIG` pass through). Tests using it create networks with unique client ids
    /// and remove them (`support::docker::Scratch`).
    pub fn with_docker() -> Self {
        let mut site = Self::new();
        site.real_docker = true;
        site
    }

    /// The site's own nftables table (family inet).
    pub fn firewall_table(&self) -> &str {
        &self.firewall_table
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.path().join("systemd")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    pub fn log_root(&self) -> PathBuf {
        self.path().join("log")
    }

    pub fn backup_root(&self) -> PathBuf {
        self.path().join("backup")
    }

    pub fn logrotate_dir(&self) -> PathBuf {
        self.path().join("logrotate.d")
    }

    pub fn site_dir(&self) -> PathBuf {
        self.path().join("site")
    }

    pub fn client_dir(&self, id: &str) -> PathBuf {
        self.root().join("clients").join(id)
    }

    pub fn secrets_file(&self, id: &str) -> PathBuf {
        self.root().join("secrets").join(id).join("secrets.env")
    }

    /// Writes a file under the site dir (e.g. `tasks/create-client.toml`).
    pub fn site_file(&self, relative: &str, text: &str) -> &Self {
        let path = self.site_dir().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    /// The environment every run gets: only PATH and HOME from outside, the roots inside.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.display().to_string();
        let system_path = std::env::var("PATH").unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                if self.real_docker {
                    system_path
                } else {
                    format!("{}:{system_path}", self.path().join("fake-bin").display())
                },
            ),
            ("HOME".into(), self.path().display().to_string()),
            ("USER".into(), "tester".into()),
            ("AGENCY_ROOT".into(), path(self.root())),
            ("AGENCY_LOG_ROOT".into(), path(self.log_root())),
            ("AGENCY_BACKUP_ROOT".into(), path(self.backup_root())),
            ("LOGROTATE_DIR".into(), path(self.logrotate_dir())),
            ("AGENCY_HOME".into(), path(self.site_dir())),
            // `schedule` writes into /etc by default: a test's runs write into the temp dir.
            ("SYSTEMD_DIR".into(), path(self.path().join("systemd"))),
            ("CRON_FILE".into(), path(self.path().join("cron.d").join("agency"))),
            ("ENV_FILE".into(), path(self.path().join("schedule.env"))),
            ("AGENCY_FIREWALL_TABLE".into(), self.firewall_table.clone()),
            ("SYSTEMD_UNIT_DIR".into(), path(self.unit_dir())),
            // Never the host's systemd: a test that wants one makes this directory.
            ("SYSTEMD_RUNTIME".into(), path(self.path().join("run-systemd"))),
        ];
        if self.real_docker {
            for key in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
                if let Ok(value) = std::env::var(key) {
                    env.push((key.into(), value));
                }
            }
            // HOME is the temp dir, so contexts are found through the real config dir.
            if std::env::var_os("DOCKER_CONFIG").is_none()
                && let Some(home) = std::env::var_os("HOME")
            {
                env.push(("DOCKER_CONFIG".into(), Path::new(&home).join(".docker").display().to_string()));
            }
        } else {
            env.push(("AGENCY_FAKE_DOCKER_STATE".into(), path(self.path().join("fake-docker"))));
        }
        env
    }

    /// A run of the binary in this site.
    pub fn test(&self) -> Test<'_> {
        Test::in_site(SiteRef::Borrowed(self))
    }

    /// Every file and dir under the site, with mode and contents (for before/after checks).
    pub fn snapshot(&self) -> Vec<(String, u32, Option<Vec<u8>>)> {
        use std::os::unix::fs::PermissionsExt;
        let fake = [self.path().join("fake-bin"), self.path().join("fake-docker")];
        let mut entries: Vec<_> = walkdir::WalkDir::new(self.path())
            .into_iter()
            .filter_entry(|e| !fake.iter().any(|f| e.path() == f))
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                let contents = meta.is_file().then(|| fs::read(e.path()).unwrap());
                (e.path().display().to_string(), meta.permissions().mode() & 0o7777, contents)
            })
            .collect();
        entries.sort();
        entries
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Ok(nft) = agency::drivers::nft::Nft::locate() {
            let _ = nft.delete_table(&self.firewall_table);
        }
    }
}

enum SiteRef<'a> {
    Owned(Box<Site>),
    Borrowed(&'a Site),
}

/// One run of `agency` and what it must show.
#[must_use]
pub struct Test<'a> {
    site: SiteRef<'a>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    status: i32,
    stdout: Option<String>,
    stdout_contains: Vec<String>,
    stdout_lacks: Vec<String>,
    stderr_contains: Vec<String>,
}

/// What a run printed, for further assertions.
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl Test<'static> {
    /// A run in a fresh site of its own.
    pub fn new() -> Self {
        Test::in_site(SiteRef::Owned(Box::new(Site::new())))
    }
}

impl<'a> Test<'a> {
    fn in_site(site: SiteRef<'a>) -> Self {
        Test {
            site,
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            status: 0,
            stdout: None,
            stdout_contains: Vec::new(),
            stdout_lacks: Vec::new(),
            stderr_contains: Vec::new(),
        }
    }

    fn site(&self) -> &Site {
        match &self.site {
            SiteRef::Owned(site) => site,
            SiteRef::Borrowed(site) => site,
        }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.into());
        self
    }

    pub fn status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout = Some(text.into());
        self
    }

    pub fn stdout_contains(mut self, text: &str) -> Self {
        self.stdout_contains.push(text.into());
        self
    }

    pub fn stdout_lacks(mut self, text: &str) -> Self {
        self.stdout_lacks.push(text.into());
        self
    }

    pub fn stderr_contains(mut self, text: &str) -> Self {
        self.stderr_contains.push(text.into());
        self
    }

    /// Runs the binary and checks every expectation; returns the output for more.
    pub fn run(self) -> Output {
        let result = self.run_unchecked();
        self.check(&result);
        result
    }

    /// Runs the binary and only returns what it did (for tests that branch on the outcome).
    pub fn run_unchecked(&self) -> Output {
        let site = self.site();
        let mut command = Command::new(env!("CARGO_BIN_EXE_agency"));
        command.args(&self.args).env_clear().envs(site.env()).envs(self.env.iter().cloned());
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command.current_dir(site.path());
        // Never a terminal: confirmations must refuse, not wait.
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = command.output().expect("agency starts");
        Output {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn check(&self, result: &Output) {
        let context = format!("agency {:?}\n--- stdout:\n{}\n--- stderr:\n{}", self.args, result.stdout, result.stderr);
        assert_eq!(result.status, self.status, "exit status\n{context}");
        if let Some(expected) = &self.stdout {
            assert_eq!(&result.stdout, expected, "stdout\n{context}");
        }
        for text in &self.stdout_contains {
            assert!(result.stdout.contains(text), "stdout lacks {text:?}\n{context}");
        }
        for text in &self.stdout_lacks {
            assert!(!result.stdout.contains(text), "stdout holds {text:?}\n{context}");
        }
        for text in &self.stderr_contains {
            assert!(result.stderr.contains(text), "stderr lacks {text:?}\n{context}");
        }
    }
}

/// The client's audit.log, every line parsed (a line that is not whole JSON fails the test).
pub fn audit_lines(site: &Site, id: &str) -> Vec<serde_json::Value> {
    let path = site.log_root().join("clients").join(id).join("audit.log");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "audit.log does not end with a newline");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("audit.log line {} is not JSON ({e}): {line:.200}", i + 1))
        })
        .collect()
}
