//! The one-page status report (`multi-tenancy-status REPORT=path.html`, SPEC §13): one HTML
//! file with its style inline, no script, no external asset, readable offline and in a mail.
//! A row per client: the verdict, each check's state (a word and a colour, never colour
//! alone), backup age, services and firewall; the clients that are not isolated are listed
//! first with links to their rows, so a page of hundreds of clients still starts with the news.

use std::fmt::Write;

use crate::{
    tenant::backup::format_age,
    tenant::check::{ClientReport, Status},
    tenant::metrics::FIREWALL_CHECK,
};

/// What the page shows of one client beyond its report's checks.
pub struct Row {
    pub report: ClientReport,
    /// Seconds since the newest snapshot (from the backup check's evidence).
    pub backup_age_seconds: Option<u64>,
}

/// What the page shows of the host.
pub struct Page<'a> {
    pub rows: &'a [Row],
    pub generated: &'a str,
    pub host: &'a str,
    pub pool: &'a str,
    pub pool_used: u64,
    pub pool_total: u64,
}

/// The status check of a client's running services: the `stack` check (src/stack_status.rs).
const SERVICES_CHECK: &str = "stack";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#111}\
h1{font-size:1.4em;margin:0 0 .3em}p.meta{color:#444;margin:.2em 0}\
table{border-collapse:collapse;margin-top:1em}th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;white-space:nowrap}\
th{background:#eee;position:sticky;top:0}tr:target{outline:3px solid #06c}\
.ok{background:#d8f0d8}.warn{background:#fff0b3}.fail{background:#f8c8c8;font-weight:bold}.skip{background:#f2f2f2;color:#555}\
.invalid{background:#e0d0f0;font-weight:bold}ul.bad li{margin:.1em 0}td.detail{white-space:normal;max-width:40em;font-size:.9em}\
 td.summary{white-space:normal;min-width:12em;max-width:20em}";

/// `&`, `<`, `>`, `"` and `'` as entities: client names and summaries are data, not markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn state(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Ok => ("ok", "ok"),
        Status::Warn => ("warn", "WARN"),
        Status::Fail => ("fail", "FAIL"),
        Status::Skip => ("skip", "skip"),
    }
}

fn verdict_class(report: &ClientReport) -> &'static str {
    if !report.valid {
        "invalid"
    } else if report.isolated {
        "ok"
    } else {
        "fail"
    }
}

/// The row's anchor: client ids are `[a-z0-9-]`, anything else (an invalid directory) is
/// escaped like any attribute.
fn anchor(client: &str) -> String {
    format!("client-{}", escape(client))
}

fn check_cell(report: &ClientReport, name: &str) -> String {
    match report.checks.iter().find(|c| c.name == name) {
        None => "<td class=\"skip\">-</td>".to_string(),
        Some(check) => {
            let (class, word) = state(check.status);
            format!("<td class=\"{class}\" title=\"{}\">{word}</td>", escape(&check.summary))
        }
    }
}

/// A check shown as its word and summary (services, firewall), `-` when status has none.
fn summary_cell(report: &ClientReport, name: &str) -> String {
    match report.checks.iter().find(|c| c.name == name) {
        None => "<td class=\"skip\">-</td>".to_string(),
        Some(check) => {
            let (class, word) = state(check.status);
            format!("<td class=\"{class} summary\">{word}: {}</td>", escape(&check.summary))
        }
    }
}

pub fn render(page: &Page) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in page.rows.iter().filter(|r| r.report.valid) {
        for check in &row.report.checks {
            if !columns.contains(&check.name.as_str()) && check.name != SERVICES_CHECK && check.name != FIREWALL_CHECK {
                columns.push(&check.name);
            }
        }
    }
    let isolated = page.rows.iter().filter(|r| r.report.isolated).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>agency status: {isolated} of {} isolated</title><style>{STYLE}</style></head><body>\n",
        page.rows.len()
    );
    let _ = writeln!(out, "<h1>Tenant isolation on {}</h1>", escape(page.host));
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} client(s): <b>{isolated} isolated</b>, <b>{} not</b>. Generated {}.</p>",
        page.rows.len(),
        page.rows.len() - isolated,
        escape(page.generated)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\" id=\"pool\">Subnet pool {}: {} of {} blocks in use.</p>",
        escape(page.pool),
        page.pool_used,
        page.pool_total
    );
    let bad: Vec<&Row> = page.rows.iter().filter(|r| !r.report.isolated).collect();
    if !bad.is_empty() {
        out.push_str("<h2>Not isolated</h2>\n<ul class=\"bad\">\n");
        for row in &bad {
            let failing: Vec<String> = row
                .report
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| format!("{}: {}", escape(&c.name), escape(&c.summary)))
                .collect();
            let _ = writeln!(
                out,
                "<li><a href=\"#{}\">{}</a> <span class=\"{}\">{}</span> {}</li>",
                anchor(&row.report.client),
                escape(&row.report.client),
                verdict_class(&row.report),
                escape(&row.report.verdict),
                failing.join("; ")
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<table>\n<thead><tr><th>client</th><th>verdict</th>");
    for column in &columns {
        let _ = write!(out, "<th>{}</th>", escape(column));
    }
    out.push_str("<th>backup age</th><th>services</th><th>firewall</th><th>problems</th></tr></thead>\n<tbody>\n");
    for row in page.rows {
        let report = &row.report;
        let _ = write!(
            out,
            "<tr id=\"{}\"><td>{}</td><td class=\"{}\">{}</td>",
            anchor(&report.client),
            escape(&report.client),
            verdict_class(report),
            escape(&report.verdict)
        );
        for column in &columns {
            out.push_str(&check_cell(report, column));
        }
        let age = row
            .backup_age_seconds
            .map(|s| format_age(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "no snapshot".into());
        let _ = write!(out, "<td>{}</td>", escape(&age));
        out.push_str(&summary_cell(report, SERVICES_CHECK));
        out.push_str(&summary_cell(report, FIREWALL_CHECK));
        let problems: Vec<String> = report
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
            .map(|c| format!("{}: {}", escape(&c.name), escape(&c.summary)))
            .collect();
        let _ = writeln!(out, "<td class=\"detail\">{}</td></tr>", problems.join("<br>"));
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::check::Check;

    #[test]
    fn the_page_escapes_data_and_lists_the_clients_not_isolated_first() {
        let rows = [
            Row {
                report: ClientReport::new("acme", true, vec![Check::new("networks", Status::Ok, "4 ok")], vec![]),
                backup_age_seconds: Some(7200),
            },
            Row {
                report: ClientReport::new(
                    "beta",
                    true,
                    vec![Check::new("networks", Status::Fail, "<script>alert(1)</script>")],
                    vec![],
                ),
                backup_age_seconds: None,
            },
        ];
        let page = Page {
            rows: &rows,
            generated: "2026-01-01T00:00:00Z",
            host: "h",
            pool: "10.201.0.0/16",
            pool_used: 8,
            pool_total: 1024,
        };
        let html = render(&page);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<li><a href=\"#client-beta\">beta</a>"));
        assert!(html.contains("<td class=\"fail\">NOT ISOLATED</td>"));
        assert!(html.contains("<td>2h</td>"));
        assert!(!html.contains("http"), "no external reference");
    }

    #[test]
    fn a_page_of_many_clients_has_a_row_each_and_starts_with_the_ones_not_isolated() {
        let rows: Vec<Row> = (0..150)
            .map(|i| {
                let status = if i == 120 { Status::Fail } else { Status::Ok };
                Row {
                    report: ClientReport::new(
                        &format!("c{i:03}"),
                        true,
                        vec![Check::new("networks", status, "x")],
                        vec![],
                    ),
                    backup_age_seconds: Some(60),
                }
            })
            .collect();
        let page = Page { rows: &rows, generated: "", host: "h", pool: "p", pool_used: 0, pool_total: 0 };
        let html = render(&page);
        assert_eq!(html.matches("<tr id=").count(), 150);
        let listed = html.find("<li><a href=\"#client-c120\">").unwrap();
        assert!(listed < html.find("<table>").unwrap());
        assert_eq!(html.matches("<li>").count(), 1);
    }
}
