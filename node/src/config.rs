//! `keel node --config FILE`: the node's settings in a TOML file. Every field is optional and a
//! command-line flag wins over the file. Unknown fields are refused, naming the field and line.
//!
//! ```toml
//! id = "n1"
//! listen = "127.0.0.1:7001"
//! http = "127.0.0.1:8001"
//! data_dir = "data/n1"
//! cluster = "keel"                 # peers of another cluster are refused
//! log_format = "text"              # or "json"
//!
//! [peers]
//! n2 = "127.0.0.1:7002"
//! n3 = "127.0.0.1:7003"
//!
//! [core]                           # any field of keel_core::RaftConfig or CoordinationConfig
//! heartbeat_interval = "25ms"
//! election_timeout_min = "100ms"
//! node_capacity = 64
//!
//! [transport]                      # keel_node::transport::TransportConfig
//! peer_queue = 1024
//! reconnect_max = "1s"
//! io_timeout = "2s"
//!
//! [supervisor]                     # keel_node::supervisor::SupervisorConfig
//! stop_grace = "5s"
//!
//! [watchdog]                       # keel_node::watchdog::WatchdogConfig
//! stall_limit = "2s"
//!
//! [shutdown]                       # ShutdownConfig
//! transfer_wait = "1s"
//!
//! [storage]                        # keel_node::storage::StorageOptions
//! segment_bytes = 67108864
//! preallocate_bytes = 4194304      # 0: no preallocation
//! ```
//!
//! Durations are written as in scenario files: `"250ms"`, `"5s"`, `"1.5s"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_core::Config;

use crate::supervisor::SupervisorConfig;
use crate::transport::TransportConfig;
use crate::watchdog::WatchdogConfig;

/// A configuration file that cannot be used, with what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("core.{field}: {message}")]
    Core { field: String, message: String },
}

/// The whole file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<String>,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub cluster: Option<String>,
    pub log_format: Option<String>,
    pub peers: BTreeMap<String, SocketAddr>,
    /// Overrides of the core's defaults, checked by [`apply_core`].
    pub core: BTreeMap<String, toml::Value>,
    /// The membership settings of the core, in a table of their own: `dead_server_cleanup`
    /// (autopilot, off by default), `dead_server_cleanup_after`, `min_voters`,
    /// `promote_max_lag`. Read into `core` when the file is parsed.
    pub membership: BTreeMap<String, toml::Value>,
    pub transport: Option<TransportConfig>,
    pub supervisor: SupervisorConfig,
    pub watchdog: WatchdogConfig,
    pub shutdown: ShutdownConfig,
    pub storage: crate::storage::StorageOptions,
}

/// The settings the `[membership]` table takes.
const MEMBERSHIP_SETTINGS: [&str; 4] = [
    "dead_server_cleanup",
    "dead_server_cleanup_after",
    "min_voters",
    "promote_max_lag",
];

/// What a node does on SIGTERM or Ctrl-C.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// A leader that is asked to stop first hands leadership to a caught-up follower and waits
    /// this long for it to take over before it stops anyway. Default 1 s.
    #[serde(with = "duration")]
    pub transfer_wait: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            transfer_wait: Duration::from_secs(1),
        }
    }
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigFileError> {
        let mut cfg: FileConfig = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: path.to_path_buf(),
            message: located(text, &e),
        })?;
        for (name, value) in std::mem::take(&mut cfg.membership) {
            let problem = if !MEMBERSHIP_SETTINGS.contains(&name.as_str()) {
                Some(format!(
                    "no such setting (the table takes {MEMBERSHIP_SETTINGS:?})"
                ))
            } else if cfg.core.contains_key(&name) {
                Some(format!("also set as core.{name}: set it once"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigFileError::Parse {
                    path: path.to_path_buf(),
                    message: format!("membership.{name}: {problem}"),
                });
            }
            cfg.core.insert(name, value);
        }
        // Check the core overrides now, so a mistake is reported before anything starts.
        let mut probe = Config::new(keel_core::NodeId(1), vec![keel_core::NodeId(1)], 0);
        apply_core(&mut probe, &cfg.core).map_err(|e| ConfigFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }
}

/// toml's message with the line and column it points at.
fn located(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Sets the core fields named in `overrides` on `cfg`. Durations are written `"250ms"`; the
/// node's identity (`id`, `members`, `seed`) comes from the command line, not from here. The
/// names are flat: each is looked up in whichever part of the core's configuration holds it
/// (`raft` or `coordination`).
pub fn apply_core(
    cfg: &mut Config,
    overrides: &BTreeMap<String, toml::Value>,
) -> Result<(), ConfigFileError> {
    if overrides.is_empty() {
        return Ok(());
    }
    let err = |field: &str, message: String| ConfigFileError::Core {
        field: field.to_string(),
        message,
    };
    let mut tree = serde_json::to_value(&*cfg).map_err(|e| err("*", e.to_string()))?;
    let fields = tree
        .as_object_mut()
        .ok_or_else(|| err("*", "the core configuration is not a table".into()))?;
    for (name, value) in overrides {
        if matches!(name.as_str(), "id" | "members" | "seed" | "incarnation") {
            return Err(err(
                name,
                "is set from the command line (--id, --peers) and the data directory's \
                 identity, not the file"
                    .into(),
            ));
        }
        let part = CORE_PARTS.iter().find(|part| {
            fields
                .get(**part)
                .is_some_and(|table| table.get(name).is_some())
        });
        let Some(slot) = part
            .and_then(|part| fields.get_mut(*part))
            .and_then(|table| table.get_mut(name))
        else {
            return Err(err(name, "no such setting".into()));
        };
        let is_duration = slot.get("secs").is_some() && slot.get("nanos").is_some();
        *slot = if is_duration {
            let text = value
                .as_str()
                .ok_or_else(|| err(name, format!("{value} is not a duration like \"250ms\"")))?;
            let d = keel_core::duration::parse(text).map_err(|e| err(name, e))?;
            serde_json::json!({ "secs": d.as_secs(), "nanos": d.subsec_nanos() })
        } else {
            serde_json::to_value(value).map_err(|e| err(name, e.to_string()))?
        };
    }
    let updated: Config = serde_json::from_value(tree).map_err(|e| err("*", e.to_string()))?;
    updated
        .validate()
        .map_err(|e| err("*", format!("the settings together are invalid: {e}")))?;
    *cfg = updated;
    Ok(())
}

/// The parts of `keel_core::Config` whose fields the `[core]` table sets, by their names.
const CORE_PARTS: [&str; 2] = ["raft", "coordination"];

/// Serde for durations written as `"250ms"`.
pub mod duration {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        keel_core::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(Path::new("node.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_parses() {
        let cfg = parse(
            r#"
id = "n1"
listen = "127.0.0.1:7001"
http = "127.0.0.1:8001"
data_dir = "data/n1"
[peers]
n2 = "127.0.0.1:7002"
[core]
heartbeat_interval = "20ms"
node_capacity = 8
[transport]
reconnect_max = "2s"
[watchdog]
stall_limit = "3s"
[shutdown]
transfer_wait = "500ms"
[storage]
preallocate_bytes = 0
[membership]
dead_server_cleanup = true
dead_server_cleanup_after = "30m"
min_voters = 5
"#,
        )
        .expect("parses");
        assert_eq!(cfg.id.as_deref(), Some("n1"));
        assert_eq!(cfg.watchdog.stall_limit, Duration::from_secs(3));
        assert_eq!(cfg.shutdown.transfer_wait, Duration::from_millis(500));
        assert_eq!(cfg.storage.preallocate_bytes, 0);
        assert_eq!(
            cfg.storage.segment_bytes,
            crate::storage::StorageOptions::default().segment_bytes
        );
        let t = cfg.transport.expect("transport");
        assert_eq!(t.reconnect_max, Duration::from_secs(2));
        assert_eq!(t.peer_queue, TransportConfig::default().peer_queue);
        let mut core = Config::new(keel_core::NodeId(1), vec![keel_core::NodeId(1)], 0);
        apply_core(&mut core, &cfg.core).expect("core");
        assert_eq!(core.raft.heartbeat_interval, Duration::from_millis(20));
        assert_eq!(core.coordination.node_capacity, 8);
        assert!(core.coordination.dead_server_cleanup);
        assert_eq!(
            core.coordination.dead_server_cleanup_after,
            Duration::from_secs(1800)
        );
        assert_eq!(core.coordination.min_voters, 5);
    }

    #[test]
    fn the_membership_table_takes_only_its_settings_once() {
        let e = parse(
            "[membership]
heartbeat_interval = \"20ms\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("membership.heartbeat_interval: no such setting"),
            "{e}"
        );
        let e = parse("[core]\nmin_voters = 3\n[membership]\nmin_voters = 5\n").unwrap_err();
        assert!(e.contains("set it once"), "{e}");
        let e = parse("[membership]\nmin_voters = 0\n").unwrap_err();
        assert!(e.contains("min_voters"), "{e}");
    }

    #[test]
    fn mistakes_name_the_field_and_line() {
        let e = parse("id = \"n1\"\nlistne = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("listne"), "{e}");
        let e = parse("[core]\nheartbeat_interval = \"25\"\n").unwrap_err();
        assert!(e.contains("core.heartbeat_interval"), "{e}");
        let e = parse("[core]\nelection_timeot_min = \"1s\"\n").unwrap_err();
        assert!(
            e.contains("core.election_timeot_min") && e.contains("no such setting"),
            "{e}"
        );
        let e = parse("[core]\nid = 3\n").unwrap_err();
        assert!(e.contains("core.id"), "{e}");
        let e = parse("[watchdog]\nstall_limit = \"soon\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("not a duration"), "{e}");
        // The parts of the core's configuration are not settings themselves, and no test-only
        // switch can be reached from a file.
        for name in ["raft", "coordination", "planted_bug"] {
            let e = parse(&format!("[core]\n{name} = 1\n")).unwrap_err();
            assert!(e.contains("no such setting"), "{name}: {e}");
        }
        // Values that are fine alone but break the core's rules together.
        let e = parse("[core]\ndead_after = \"10ms\"\n").unwrap_err();
        assert!(e.contains("invalid"), "{e}");
    }
}
