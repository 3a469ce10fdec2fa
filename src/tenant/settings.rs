//! Host-wide settings every task accepts (roots, pools, endpoints): given as `VAR=VALUE`
//! or in the environment, with documented defaults.

use std::{collections::BTreeMap, path::PathBuf};

pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting { name: "AGENCY_ROOT", default: "/opt/agency_stack", help: "client configs and secrets" },
    Setting { name: "AGENCY_LOG_ROOT", default: "/var/log/agency_stack", help: "per-client logs" },
    Setting { name: "AGENCY_BACKUP_ROOT", default: "/var/backups/agency_stack", help: "local restic repositories" },
    Setting {
        name: "RESTIC_REPOSITORY_BASE",
        default: "",
        help: "remote repository prefix (s3:..., rest:..., sftp:...)",
    },
    Setting {
        name: "AGENCY_BACKUPS",
        default: "restic",
        help: "restic: each client gets a restic repository; off: this host keeps no backups (nothing is initialized)",
    },
    Setting { name: "LOGROTATE_DIR", default: "/etc/logrotate.d", help: "where per-client logrotate policies go" },
    Setting {
        name: "AGENCY_SUBNET_POOL",
        default: "10.201.0.0/16",
        help: "CIDR the client networks' subnets come from",
    },
    Setting { name: "AGENCY_SUBNET_PREFIX", default: "26", help: "prefix length of each network's subnet" },
    Setting {
        name: "NETWORK_DRIVER",
        default: "",
        help: "bridge, or overlay for attachable Swarm networks; empty keeps a client's recorded driver (new: bridge)",
    },
    Setting {
        name: "FIREWALL",
        default: "on",
        help: "on: agency's nftables table enforces isolation (SPEC §9); off: not applied, and status fails every client",
    },
    Setting {
        name: "AGENCY_FIREWALL_TABLE",
        default: "agency",
        help: "name of agency's nftables table (family inet); one per AGENCY_ROOT on a host",
    },
    Setting {
        name: "FIREWALL_HOST_ALLOW",
        default: "",
        help: "host ports client networks may reach, e.g. 53/udp,53/tcp when the host is their resolver",
    },
    Setting {
        name: "SYSTEMD_UNIT_DIR",
        default: "/etc/systemd/system",
        help: "where setup-firewall writes agency-firewall.service",
    },
    Setting { name: "KEYCLOAK_URL", default: "", help: "Keycloak base URL; set to apply realms live" },
    Setting {
        name: "KEYCLOAK_ADMIN",
        default: "admin",
        help: "Keycloak admin user (password from KEYCLOAK_ADMIN_PASSWORD)",
    },
    Setting { name: "KEYCLOAK_PATH_PREFIX", default: "", help: "'/auth' for legacy Keycloak; detected when empty" },
    Setting { name: "INGRESS_NAME", default: "agency-ingress", help: "container name of the shared ingress (Traefik)" },
    Setting { name: "INGRESS_IMAGE", default: "traefik:v3", help: "image of the shared ingress" },
    Setting { name: "INGRESS_BIND", default: "0.0.0.0", help: "address the ingress publishes its ports on" },
    Setting { name: "INGRESS_HTTP_PORT", default: "80", help: "host port of the ingress's HTTP entry point" },
    Setting {
        name: "INGRESS_HTTPS_PORT",
        default: "443",
        help: "host port of the ingress's HTTPS entry point (with ACME_EMAIL)",
    },
    Setting {
        name: "ACME_EMAIL",
        default: "",
        help: "set: HTTPS with Let's Encrypt certificates and HTTP redirected to it; empty: HTTP only",
    },
    Setting {
        name: "METRICS_DIR",
        default: "",
        help: "node_exporter textfile directory status, backup-client and verify-backup write *.prom into; empty: none",
    },
    Setting {
        name: "NOTIFY_URL",
        default: "",
        help: "webhook (http/https) that gets a JSON event when a run fails or status finds a problem",
    },
    Setting {
        name: "HEALTHCHECK_URL",
        default: "",
        help: "healthchecks-style ping URL: /start, success, /fail per run; {task} and {client} are filled in",
    },
    Setting {
        name: "NOTIFY_REPEAT",
        default: "24h",
        help: "a failure that stands is sent again after this long (0: every failing run); a success after it sends `recovered`",
    },
];

/// Resolved settings: command line > environment > default.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
}

impl Settings {
    /// Checks the settings a run depends on, so a bad one stops it before its first change
    /// (exit 2) rather than half-way. The error names the setting.
    pub fn check(&self) -> Result<(), String> {
        for root in ["AGENCY_ROOT", "AGENCY_LOG_ROOT", "AGENCY_BACKUP_ROOT", "LOGROTATE_DIR"] {
            let value = self.get(root);
            if !value.starts_with('/') || value.contains(['\0', '\n']) {
                return Err(format!("{root} must be an absolute path, got {}", crate::format::validate::quote(value)));
            }
        }
        let metrics = self.get("METRICS_DIR");
        if !metrics.is_empty() && !metrics.starts_with('/') {
            return Err(format!(
                "METRICS_DIR must be an absolute path, got {}",
                crate::format::validate::quote(metrics)
            ));
        }
        let one_of = |name: &str, allowed: &[&str]| -> Result<(), String> {
            let value = self.get(name);
            if allowed.contains(&value) {
                Ok(())
            } else {
                let names: Vec<String> =
                    allowed.iter().map(|a| if a.is_empty() { "empty".into() } else { a.to_string() }).collect();
                Err(format!("{name} must be {}, got {}", names.join(" or "), crate::format::validate::quote(value)))
            }
        };
        one_of("AGENCY_BACKUPS", &["restic", "off"])?;
        one_of("NETWORK_DRIVER", &["", "bridge", "overlay"])?;
        crate::tenant::subnet::Pool::from_settings(
            Some(self.get("AGENCY_SUBNET_POOL")),
            Some(self.get("AGENCY_SUBNET_PREFIX")),
        )
        .map_err(|e| format!("{e:#}"))?;
        let url = self.get("KEYCLOAK_URL");
        if !url.is_empty() {
            crate::format::validate::Kind::Url.check(url).map_err(|e| format!("KEYCLOAK_URL: {e}"))?;
        }
        for port in ["INGRESS_HTTP_PORT", "INGRESS_HTTPS_PORT"] {
            let value = self.get(port);
            if !value.parse::<u16>().is_ok_and(|p| p > 0) {
                return Err(format!("{port} must be a port number, got {}", crate::format::validate::quote(value)));
            }
        }
        let bind = self.get("INGRESS_BIND");
        if bind.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("INGRESS_BIND must be an IP address, got {}", crate::format::validate::quote(bind)));
        }
        Ok(())
    }

    pub fn resolve(command_line: &BTreeMap<String, String>, env: impl Fn(&str) -> Option<String>) -> Self {
        let values = SETTINGS
            .iter()
            .map(|s| {
                let value =
                    command_line.get(s.name).cloned().or_else(|| env(s.name)).unwrap_or_else(|| s.default.to_string());
                (s.name, value)
            })
            .collect();
        Self { values }
    }

    pub fn is_setting(name: &str) -> bool {
        SETTINGS.iter().any(|s| s.name == name)
    }

    /// The value of a setting; an unknown name is a programming error caught by tests.
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or_else(|| panic!("unknown setting {name}"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.get(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }
}
