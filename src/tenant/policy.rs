//! The tenant policy in one table: a client's network tiers and the client.env keys that
//! record them, its log files and the modes of its private places, and the label that marks
//! what belongs to it. The Rust checks read it from here and scripts through
//! `layout::policy()`, so a change here reaches create-client, status and the checks at once.

/// One of a client's networks (`<id>_<tier>`) and how client.env records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    /// Internal networks have no route out of the host.
    pub internal: bool,
    /// client.env key holding the network's name.
    pub env_network: &'static str,
    /// client.env key holding the network's subnet.
    pub env_subnet: &'static str,
    /// client.env key holding the name of the network's bridge interface (bridge driver).
    pub env_bridge: &'static str,
}

pub const TIERS: [Tier; 4] = [
    Tier {
        name: "frontend",
        internal: false,
        env_network: "FRONTEND_NETWORK",
        env_subnet: "FRONTEND_SUBNET",
        env_bridge: "FRONTEND_BRIDGE",
    },
    Tier {
        name: "backend",
        internal: true,
        env_network: "BACKEND_NETWORK",
        env_subnet: "BACKEND_SUBNET",
        env_bridge: "BACKEND_BRIDGE",
    },
    Tier {
        name: "database",
        internal: true,
        env_network: "DATABASE_NETWORK",
        env_subnet: "DATABASE_SUBNET",
        env_bridge: "DATABASE_BRIDGE",
    },
    Tier {
        name: "network",
        internal: false,
        env_network: "CLIENT_NETWORK",
        env_subnet: "CLIENT_SUBNET",
        env_bridge: "CLIENT_BRIDGE",
    },
];

/// The tier names, in the order of [`TIERS`].
pub const TIER_NAMES: [&str; 4] = [TIERS[0].name, TIERS[1].name, TIERS[2].name, TIERS[3].name];

pub fn tier(name: &str) -> Option<Tier> {
    TIERS.iter().copied().find(|t| t.name == name)
}

/// The log files every client has in its log dir (setup-log-segmentation creates them).
pub const LOG_FILES: [&str; 4] = ["access.log", "error.log", "audit.log", "backup.log"];
/// Mode of a client's log dir.
pub const LOG_DIR_MODE: u32 = 0o750;
/// Mode of a client's log files.
pub const LOG_FILE_MODE: u32 = 0o640;
/// Mode of a client's secrets dir.
pub const SECRETS_DIR_MODE: u32 = 0o700;
/// Mode of a client's secrets.env.
pub const SECRETS_FILE_MODE: u32 = 0o600;

/// The label (`agency.client=<id>`) on the containers, volumes and networks of a client. The
/// Docker driver reads it exactly (its `EXACT_LABELS`), so its literal lives there.
pub const CLIENT_LABEL: &str = crate::drivers::docker::LABEL_CLIENT;
