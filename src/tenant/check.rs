//! Status reports as lists of named checks: `multi-tenancy-status` builds one
//! [`ClientReport`] per client from checks that any host module or script can add (networks,
//! cross-tenant containers, logs, secrets, realm file, backups, live realm, probes ...).
//!
//! A check is a plain map in scripts — `#{ name, status, summary, evidence, fix }` — so a task
//! or plugin adds its own with `checks::fail("backup", "no snapshot for 3 days", #{ ... })`.
//! `status` is `ok`, `warn` (reported, does not break isolation), `fail` (the client is not
//! fully isolated) or `skip` (not checked, with the reason as summary).
//!
//! Checks of the client's health ([`HEALTH_CHECKS`]: backups, logs) are reported apart from
//! its isolation: a failing one makes the client unhealthy, never NOT ISOLATED.

/// Checks that judge the client's health, not its isolation from other tenants.
pub const HEALTH_CHECKS: &[&str] = &["backup", "logs"];

fn is_health(check: &Check) -> bool {
    HEALTH_CHECKS.contains(&check.name.as_str())
}

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "warn" => Some(Self::Warn),
            "fail" => Some(Self::Fail),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }
}

/// One named check of one client, with the evidence it is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// One line for people: what is wrong, or what was found.
    pub summary: String,
    /// What was looked at (names, modes, ids, addresses), for `--json`.
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// What `FIX=1` does about it, or why it cannot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Check {
    pub fn new(name: &str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            status,
            summary: summary.into(),
            evidence: serde_json::Value::Null,
            fix: String::new(),
        }
    }

    pub fn evidence(mut self, evidence: serde_json::Value) -> Self {
        self.evidence = evidence;
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

/// Everything status found about one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    pub client: String,
    /// False when the directory is not a client at all (no client.env).
    pub valid: bool,
    /// Valid and no isolation check failed.
    pub isolated: bool,
    /// `isolated`, `NOT ISOLATED` or `INVALID`.
    pub verdict: String,
    /// No health check failed.
    pub healthy: bool,
    /// `ok`, `warn` (a health check warned) or `FAIL`.
    pub health: String,
    pub checks: Vec<Check>,
    /// What `FIX=1` changed, and what it refused to touch.
    #[serde(default)]
    pub repairs: Vec<String>,
}

impl ClientReport {
    pub fn new(client: &str, valid: bool, checks: Vec<Check>, repairs: Vec<String>) -> Self {
        let isolated = valid && checks.iter().all(|c| is_health(c) || c.status != Status::Fail);
        let verdict = if !valid {
            "INVALID"
        } else if isolated {
            "isolated"
        } else {
            "NOT ISOLATED"
        };
        let health_status = |status| checks.iter().any(|c| is_health(c) && c.status == status);
        let healthy = !health_status(Status::Fail);
        let health = if !healthy {
            "FAIL"
        } else if health_status(Status::Warn) {
            "warn"
        } else {
            "ok"
        };
        Self {
            client: client.to_string(),
            valid,
            isolated,
            verdict: verdict.to_string(),
            healthy,
            health: health.to_string(),
            checks,
            repairs,
        }
    }
}

/// The people's view: one row per client (a column per check name, in first-seen order: the
/// isolation checks, the verdict, the health checks, the health), then one line per problem
/// and per repair.
pub fn render_table(reports: &[&ClientReport]) -> String {
    let (mut isolation, mut health): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    // An invalid client's only check says why; it gets a detail line, not a column.
    for report in reports.iter().filter(|r| r.valid) {
        for check in &report.checks {
            let columns = if is_health(check) { &mut health } else { &mut isolation };
            if !columns.contains(&check.name.as_str()) {
                columns.push(&check.name);
            }
        }
    }
    let heading = |c: &&str| c.to_uppercase().replace('_', "-");
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(reports.len() + 1);
    let mut header = vec!["CLIENT".to_string()];
    header.extend(isolation.iter().map(heading));
    header.push("VERDICT".to_string());
    header.extend(health.iter().map(heading));
    header.push("HEALTH".to_string());
    rows.push(header);
    for report in reports {
        let cells = |columns: &[&str]| -> Vec<String> {
            columns
                .iter()
                .map(|column| match report.checks.iter().find(|c| c.name == *column).map(|c| c.status) {
                    None | Some(Status::Skip) => "-",
                    Some(Status::Ok) => "ok",
                    Some(Status::Warn) => "warn",
                    Some(Status::Fail) => "FAIL",
                })
                .map(str::to_string)
                .collect()
        };
        let mut row = vec![report.client.clone()];
        row.extend(cells(&isolation));
        row.push(report.verdict.clone());
        row.extend(cells(&health));
        row.push(if report.valid { report.health.clone() } else { "-".to_string() });
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let mut details = String::new();
    for report in reports {
        for check in &report.checks {
            if matches!(check.status, Status::Fail | Status::Warn) {
                let fix = if check.fix.is_empty() { String::new() } else { format!(" [{}]", check.fix) };
                details.push_str(&format!(
                    "{} {}: {}: {}{fix}\n",
                    if check.status == Status::Fail { "FAIL" } else { "warn" },
                    report.client,
                    check.name,
                    check.summary
                ));
            }
        }
        for repair in &report.repairs {
            details.push_str(&format!("fix  {}: {repair}\n", report.client));
        }
    }
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let ok = ClientReport::new("a", true, vec![Check::new("networks", Status::Ok, "4 ok")], vec![]);
        assert!(ok.isolated);
        assert_eq!(ok.verdict, "isolated");
        let warn = ClientReport::new("b", true, vec![Check::new("probe", Status::Warn, "host reachable")], vec![]);
        assert!(warn.isolated);
        let fail = ClientReport::new("c", true, vec![Check::new("secrets", Status::Fail, "x")], vec![]);
        assert_eq!(fail.verdict, "NOT ISOLATED");
        assert!(fail.healthy);
        // A failing health check (no backup) leaves the verdict alone.
        let unhealthy = ClientReport::new("e", true, vec![Check::new("backup", Status::Fail, "no repo")], vec![]);
        assert_eq!(
            (unhealthy.verdict.as_str(), unhealthy.healthy, unhealthy.health.as_str()),
            ("isolated", false, "FAIL")
        );
        let invalid = ClientReport::new("d", false, vec![], vec![]);
        assert!(!invalid.isolated);
        assert_eq!(invalid.verdict, "INVALID");
    }

    #[test]
    fn table_has_a_column_per_check_and_a_line_per_problem() {
        let reports = [
            ClientReport::new(
                "acme",
                true,
                vec![Check::new("networks", Status::Ok, "4 ok"), Check::new("cross_tenant", Status::Ok, "none")],
                vec![],
            ),
            ClientReport::new(
                "beta",
                true,
                vec![
                    Check::new("networks", Status::Fail, "beta_database is not internal").fix("FIX=1 recreates it"),
                    Check::new("logs", Status::Warn, "w"),
                ],
                vec!["created beta_backend".into()],
            ),
        ];
        let table = render_table(&reports.iter().collect::<Vec<_>>());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "CLIENT  NETWORKS  CROSS-TENANT  VERDICT       LOGS  HEALTH");
        assert_eq!(lines[1], "acme    ok        ok            isolated      -     ok");
        assert_eq!(lines[2], "beta    FAIL      -             NOT ISOLATED  warn  warn");
        assert!(table.contains("FAIL beta: networks: beta_database is not internal [FIX=1 recreates it]"));
        assert!(table.contains("fix  beta: created beta_backend"));
    }

    #[test]
    fn checks_round_trip_through_json() {
        let check = Check::new("backup", Status::Warn, "old").evidence(serde_json::json!({"age_hours": 30}));
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["status"], "warn");
        assert_eq!(serde_json::from_value::<Check>(json).unwrap(), check);
    }
}
