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
];

/// Resolved settings: command line > environment > default.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
}

impl Settings {
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
