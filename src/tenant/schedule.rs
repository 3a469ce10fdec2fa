//! What `schedule` installs (SPEC §13): a systemd service and timer per job (templates
//! instantiated per client where a job is per client), each timer `Persistent=true` and each
//! service `OnFailure=` the notification unit; or, where systemd does not run, the same jobs
//! as lines of one cron file. Calendars are systemd calendar expressions; the cron lines are
//! derived from their normalized form (`systemd-analyze calendar`).

use anyhow::{Result, bail};

/// The prefix of every unit `schedule` writes.
pub const UNIT_PREFIX: &str = "agency-";
/// The first words of every file `schedule` writes: what it converges and `REMOVE=1` removes
/// (never another `agency-*` unit, such as setup-firewall's boot unit).
pub const MARKER: &str = "# Written by `agency schedule`";
/// The template unit a failed job's `OnFailure=` starts, with the failed unit as instance.
pub const NOTIFY_UNIT: &str = "agency-notify@";
/// The task that unit runs.
pub const NOTIFY_TASK: &str = "notify-failure";

/// One scheduled job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `backup` → units `agency-backup@.service` / `.timer` (or `agency-status.*`).
    pub name: &'static str,
    pub task: String,
    /// Variables after the task name (a per-client job also gets `CLIENT_ID=<id>`).
    pub args: Vec<String>,
    pub per_client: bool,
    /// A systemd calendar expression, as given.
    pub calendar: String,
    /// `RandomizedDelaySec=` (systemd time span), so clients do not all start at once.
    pub delay: Option<String>,
}

impl Job {
    pub fn unit(&self) -> String {
        if self.per_client { format!("{UNIT_PREFIX}{}@", self.name) } else { format!("{UNIT_PREFIX}{}", self.name) }
    }
}

/// Where and how the jobs run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The agency binary the units start.
    pub agency: String,
    /// `-C` for the runs; empty: agency's default (`AGENCY_HOME`, else /etc/agency_stack).
    pub site_dir: String,
    /// The settings of the runs (0600: webhook and ping URLs are credentials).
    pub env_file: String,
    pub jobs: Vec<Job>,
    pub clients: Vec<String>,
}

/// A path or value that goes into a unit file or a cron line as it is: no whitespace,
/// quotes, `%` (a specifier in units, a newline in cron), `$`, `\` or control characters.
pub fn check_plain(what: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'%$\\`;&|<>".contains(*c)) {
        bail!("{what} {value:?} cannot go into a unit file or cron line: it contains {c:?}");
    }
    Ok(())
}

fn command_line(plan: &Plan, job: &Job, client: &str) -> String {
    let mut words = vec![plan.agency.clone()];
    if !plan.site_dir.is_empty() {
        words.push("-C".into());
        words.push(plan.site_dir.clone());
    }
    words.push(job.task.clone());
    if job.per_client {
        words.push(format!("CLIENT_ID={client}"));
    }
    words.extend(job.args.iter().cloned());
    words.join(" ")
}

/// The service and timer files of every job: `(file name, contents)`.
pub fn unit_files(plan: &Plan) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for job in &plan.jobs {
        let unit = job.unit();
        // No `SuccessExitStatus=`: status's exit 1 on a problem is the spec's; the runner's
        // record of the run (`tenant::notify::Ending`) tells notify-failure it was reported.
        let (who, instance) = if job.per_client { (" of client %i", "%i") } else { ("", "") };
        files.push((
            format!("{unit}.service"),
            format!(
                "{MARKER}; re-run it rather than editing.\n[Unit]\n\
Description=agency {task}{who}\nOnFailure={NOTIFY_UNIT}%n.service\nAfter=docker.service\n\n\
[Service]\nType=oneshot\nEnvironmentFile=-{env}\nExecStart={command}\nNice=10\n",
                task = job.task,
                env = plan.env_file,
                command = command_line(plan, job, instance),
            ),
        ));
        let delay = job.delay.as_ref().map(|d| format!("RandomizedDelaySec={d}\n")).unwrap_or_default();
        files.push((
            format!("{unit}.timer"),
            format!(
                "{MARKER}.\n[Unit]\nDescription=agency {task}{who} on {calendar}\n\n\
[Timer]\nOnCalendar={calendar}\n{delay}Persistent=true\n\n[Install]\nWantedBy=timers.target\n",
                task = job.task,
                calendar = job.calendar,
            ),
        ));
    }
    files.push((
        format!("{NOTIFY_UNIT}.service"),
        format!(
            "{MARKER}: started by a failed agency unit (OnFailure=).\n[Unit]\n\
Description=agency failure notice for %i\n\n[Service]\nType=oneshot\nEnvironmentFile=-{env}\n\
ExecStart={agency}{site} {NOTIFY_TASK} UNIT=%i\n",
            env = plan.env_file,
            agency = plan.agency,
            site = if plan.site_dir.is_empty() { String::new() } else { format!(" -C {}", plan.site_dir) },
        ),
    ));
    files
}

/// The timers to enable: `timers.target.wants/<name>` links to their (template) unit file.
pub fn enabled_timers(plan: &Plan) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for job in &plan.jobs {
        let unit = job.unit();
        if job.per_client {
            for client in &plan.clients {
                links.push((format!("{unit}{client}.timer"), format!("{unit}.timer")));
            }
        } else {
            links.push((format!("{unit}.timer"), format!("{unit}.timer")));
        }
    }
    links
}

/// A stable spread of `0..span` seconds per client (cron has no RandomizedDelaySec).
fn stagger(client: &str, span: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    let hash = client.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % span
}

/// The cron file: one line per job and client, `m h dom mon dow root command`. `normalized`
/// gives a calendar's normalized form; `delay_seconds` a job's delay in seconds.
pub fn cron_file(
    plan: &Plan,
    normalized: &dyn Fn(&str) -> Result<String>,
    delay_seconds: &dyn Fn(&str) -> Result<u64>,
) -> Result<String> {
    let mut out = format!(
        "{MARKER} (no systemd here); re-run it rather than editing.\n\
SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    for job in &plan.jobs {
        let when = cron_fields(&normalized(&job.calendar)?)?;
        let span = job.delay.as_deref().map(delay_seconds).transpose()?.unwrap_or(0);
        let clients: Vec<&str> =
            if job.per_client { plan.clients.iter().map(String::as_str).collect() } else { vec![""] };
        for client in clients {
            let pause = match stagger(client, span) {
                0 => String::new(),
                seconds => format!("sleep {seconds}; "),
            };
            out.push_str(&format!(
                "{when} root set -a; [ -r {env} ] && . {env}; set +a; {pause}exec {command}\n",
                env = plan.env_file,
                command = command_line(plan, job, client),
            ));
        }
    }
    Ok(out)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One component of a normalized calendar time (`*`, `05`, `00/15`, `1,3`, `8..17`) as a cron field.
fn cron_component(text: &str, max: u32) -> Result<String> {
    let number = |s: &str| s.parse::<u32>().ok().filter(|n| *n <= max);
    let parts: Result<Vec<String>> = text
        .split(',')
        .map(|part| {
            if part == "*" {
                return Ok("*".to_string());
            }
            if let Some((start, step)) = part.split_once('/') {
                let (Some(start), Some(step)) = (number(start), number(step)) else { bail!("{part}") };
                return Ok(format!("{start}-{max}/{step}"));
            }
            if let Some((a, b)) = part.split_once("..") {
                let (Some(a), Some(b)) = (number(a), number(b)) else { bail!("{part}") };
                return Ok(format!("{a}-{b}"));
            }
            number(part).map(|n| n.to_string()).ok_or_else(|| anyhow::anyhow!("{part}"))
        })
        .collect();
    Ok(parts?.join(","))
}

/// The five time fields of cron for a normalized systemd calendar (`[weekdays] *-*-* h:m:s`).
/// Dates other than every day, and seconds other than 0, have no cron form.
pub fn cron_fields(normalized: &str) -> Result<String> {
    let unsupported =
        || anyhow::anyhow!("calendar {normalized:?} has no cron form (use daily, weekly, hourly or times of day)");
    let words: Vec<&str> = normalized.split_whitespace().collect();
    let (weekdays, date, time) = match words.as_slice() {
        [date, time] => ("*".to_string(), *date, *time),
        [days, date, time] => {
            let day = |name: &str| WEEKDAYS.iter().position(|d| *d == name).ok_or_else(unsupported);
            let mut fields = Vec::new();
            for part in days.split(',') {
                match part.split_once("..") {
                    Some((a, b)) => fields.push(format!("{}-{}", day(a)?, day(b)?)),
                    None => fields.push(day(part)?.to_string()),
                }
            }
            (fields.join(","), *date, *time)
        }
        _ => return Err(unsupported()),
    };
    if date != "*-*-*" {
        return Err(unsupported());
    }
    let [hour, minute, second] = time.split(':').collect::<Vec<_>>()[..] else { return Err(unsupported()) };
    if second != "00" {
        return Err(unsupported());
    }
    let hour = cron_component(hour, 23).map_err(|_| unsupported())?;
    let minute = cron_component(minute, 59).map_err(|_| unsupported())?;
    Ok(format!("{minute} {hour} * * {weekdays}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_calendars_become_cron_fields() {
        assert_eq!(cron_fields("*-*-* 00:00:00").unwrap(), "0 0 * * *");
        assert_eq!(cron_fields("*-*-* *:00/15:00").unwrap(), "0-59/15 * * * *");
        assert_eq!(cron_fields("*-*-* *:*:00").unwrap(), "* * * * *");
        assert_eq!(cron_fields("Mon *-*-* 00:00:00").unwrap(), "0 0 * * 1");
        assert_eq!(cron_fields("Mon..Fri *-*-* 08,12:30:00").unwrap(), "30 8,12 * * 1-5");
        assert!(cron_fields("*-*-01 00:00:00").is_err());
        assert!(cron_fields("*-*-* 00:00:30").is_err());
    }

    #[test]
    fn plain_values_only() {
        assert!(check_plain("AGENCY_BIN", "/usr/local/bin/agency").is_ok());
        for bad in ["/a b", "/a%b", "/a'b", "/a\nb", "/a$b"] {
            assert!(check_plain("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stagger_is_stable_and_within_the_span() {
        assert_eq!(stagger("acme", 3600), stagger("acme", 3600));
        assert!(stagger("acme", 3600) < 3600);
        assert_eq!(stagger("", 0), 0);
    }
}
