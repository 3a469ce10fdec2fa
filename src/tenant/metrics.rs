//! Prometheus textfile metrics (node_exporter's textfile collector, SPEC §13): what status,
//! backup-client and verify-backup found, as gauges in `METRICS_DIR/<name>.prom`, each file
//! written to a temp file in the same directory and renamed, so the collector never reads half.
//!
//! Each file has one writer and no two files share a series (node_exporter rejects duplicates):
//! `agency-status.prom` (isolation, checks, firewall, subnet pool), `agency-backup-<id>.prom`
//! (the last successful backup) and `agency-verify-<id>.prom` (the last successful verify).
//! Labels are `client` and `check` only, so the series grow with clients, never with events.

use std::{fmt::Write, path::Path, time::SystemTime};

use crate::tenant::check::{ClientReport, Status};

/// The status check whose verdict `agency_firewall_enforced` reports (SPEC §9's nft table).
pub const FIREWALL_CHECK: &str = "firewall";

struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Gauge families in the text exposition format, in the order they were added.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// Adds a sample to the gauge `name` (declared with `help` on first use).
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(family) => family.samples.push((labels, value)),
            None => self.families.push(Family { name, help, samples: vec![(labels, value)] }),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} gauge", family.name);
            for (labels, value) in &family.samples {
                out.push_str(family.name);
                if !labels.is_empty() {
                    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                    let _ = write!(out, "{{{}}}", pairs.join(","));
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

/// A label value in the exposition format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The subnet pool as status reports it.
pub struct PoolUsage {
    pub used: u64,
    pub total: u64,
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// What one status run found: per client its verdict and each check (1 ok; 0 failed or
/// warned; a skipped check has no series), the firewall check's verdict, and the host's pool.
pub fn status(reports: &[&ClientReport], pool: &PoolUsage, now: SystemTime) -> Exposition {
    let mut metrics = Exposition::default();
    for report in reports {
        let client = [("client", report.client.as_str())];
        metrics.gauge(
            "agency_client_isolated",
            "Whether the client passed every status check that decides isolation (1) or not (0).",
            &client,
            flag(report.isolated),
        );
    }
    for report in reports {
        for check in report.checks.iter().filter(|c| c.status != Status::Skip) {
            metrics.gauge(
                "agency_check_ok",
                "Whether a status check of the client passed (1), or failed or warned (0); skipped checks have no series.",
                &[("client", report.client.as_str()), ("check", check.name.as_str())],
                flag(check.status == Status::Ok),
            );
        }
    }
    for report in reports {
        if let Some(check) = report.checks.iter().find(|c| c.name == FIREWALL_CHECK && c.status != Status::Skip) {
            metrics.gauge(
                "agency_firewall_enforced",
                "Whether the host firewall's rules for the client are in place (the status check `firewall`).",
                &[("client", report.client.as_str())],
                flag(check.status == Status::Ok),
            );
        }
    }
    metrics.gauge("agency_clients", "Clients status reported on.", &[], reports.len() as f64);
    metrics.gauge(
        "agency_subnet_pool_used_blocks",
        "Subnet blocks of AGENCY_SUBNET_POOL in use.",
        &[],
        pool.used as f64,
    );
    metrics.gauge("agency_subnet_pool_size_blocks", "Subnet blocks AGENCY_SUBNET_POOL holds.", &[], pool.total as f64);
    metrics.gauge(
        "agency_status_last_run_timestamp_seconds",
        "When status last wrote these metrics.",
        &[],
        unix_seconds(now),
    );
    metrics
}

/// A successful backup of `client`: when, the repository's snapshots, and its size on disk
/// (local repositories only).
pub fn backup(client: &str, snapshots: Option<u64>, repository_bytes: Option<u64>, now: SystemTime) -> Exposition {
    let mut metrics = Exposition::default();
    let labels = [("client", client)];
    metrics.gauge(
        "agency_backup_last_success_timestamp_seconds",
        "When backup-client last finished a snapshot of the client.",
        &labels,
        unix_seconds(now),
    );
    if let Some(count) = snapshots {
        metrics.gauge("agency_backup_snapshots", "Snapshots in the client's restic repository.", &labels, count as f64);
    }
    if let Some(bytes) = repository_bytes {
        metrics.gauge(
            "agency_backup_repository_bytes",
            "Size of the client's local restic repository on disk.",
            &labels,
            bytes as f64,
        );
    }
    metrics
}

/// A successful verify-backup of `client` (check and test restore).
pub fn verify(client: &str, now: SystemTime) -> Exposition {
    let mut metrics = Exposition::default();
    metrics.gauge(
        "agency_verify_last_success_timestamp_seconds",
        "When verify-backup last checked the client's repository and restored a sample from it.",
        &[("client", client)],
        unix_seconds(now),
    );
    metrics
}

/// The bytes of the regular files under `dir` (a local restic repository), not following links.
pub fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_file() {
            total += entry.metadata().map_err(std::io::Error::other)?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::check::Check;

    #[test]
    fn status_metrics_carry_each_check_and_the_verdict() {
        let acme = ClientReport::new(
            "acme",
            true,
            vec![
                Check::new("networks", Status::Ok, ""),
                Check::new("firewall", Status::Fail, ""),
                Check::new("probe", Status::Skip, ""),
            ],
            vec![],
        );
        let text = status(&[&acme], &PoolUsage { used: 4, total: 1024 }, SystemTime::UNIX_EPOCH).render();
        assert!(text.contains("# TYPE agency_client_isolated gauge\nagency_client_isolated{client=\"acme\"} 0\n"));
        assert!(text.contains("agency_check_ok{client=\"acme\",check=\"networks\"} 1\n"));
        assert!(text.contains("agency_check_ok{client=\"acme\",check=\"firewall\"} 0\n"));
        assert!(!text.contains("check=\"probe\""));
        assert!(text.contains("agency_firewall_enforced{client=\"acme\"} 0\n"));
        assert!(text.contains("\nagency_subnet_pool_used_blocks 4\n"));
        assert!(text.contains("\nagency_subnet_pool_size_blocks 1024\n"));
        assert_eq!(text.matches("# HELP agency_check_ok ").count(), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Exposition::default();
        metrics.gauge("x", "h", &[("check", "a\"b\\c\nd")], 1.5);
        assert_eq!(metrics.render(), "# HELP x h\n# TYPE x gauge\nx{check=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }
}
