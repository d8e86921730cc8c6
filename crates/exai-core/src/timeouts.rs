//! The timeout hierarchy: tool < daemon < shim < client, derived from the workflow tool timeout
//! so that the innermost layer always reports an error before an outer one gives up. This is the
//! only place that turns configured seconds into layer deadlines.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::source::Source;

/// The `timeouts` section of the configuration: what the hierarchy is derived from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConfig {
    pub workflow_tool_secs: f64,
    pub simple_tool_secs: f64,
    pub expert_analysis_secs: f64,
    pub model_multipliers: BTreeMap<String, f64>,
}

/// Longest deadline any layer may have, in seconds.
pub const MAX_SECS: f64 = 3600.0;

const DAEMON_FACTOR: f64 = 1.5;
const SHIM_FACTOR: f64 = 2.0;
const CLIENT_FACTOR: f64 = 2.5;

/// The derived deadlines, all in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeoutHierarchy {
    pub simple_tool: f64,
    pub workflow_tool: f64,
    pub expert_analysis: f64,
    /// The largest per-model multiplier (at least 1): the slowest model's tool deadline is
    /// `workflow_tool × max_multiplier`, and every outer layer must wait longer than that.
    pub max_multiplier: f64,
    /// The longest tool deadline any call can have; the base of the derived layers.
    pub tool_ceiling: f64,
    pub daemon: f64,
    pub shim: f64,
    pub client: f64,
    multipliers: Vec<(String, f64)>,
}

/// Why a hierarchy is invalid, and which key to blame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct HierarchyError {
    pub key: &'static str,
    pub reason: String,
}

impl HierarchyError {
    /// The configuration error, naming where the blamed key's value came from.
    pub fn into_config_error(self, source: &dyn Fn(&str) -> Source) -> ConfigError {
        ConfigError::Hierarchy {
            origin: source(self.key),
            reason: self.to_string(),
        }
    }
}

fn in_range(key: &'static str, value: f64) -> Result<(), HierarchyError> {
    if value.is_finite() && value > 0.0 && value <= MAX_SECS {
        Ok(())
    } else {
        Err(HierarchyError {
            key,
            reason: format!("{value} s is outside (0, {MAX_SECS}] seconds"),
        })
    }
}

impl TimeoutHierarchy {
    pub fn derive(cfg: &TimeoutConfig) -> Result<Self, HierarchyError> {
        in_range("timeouts.workflow_tool_secs", cfg.workflow_tool_secs)?;
        in_range("timeouts.simple_tool_secs", cfg.simple_tool_secs)?;
        in_range("timeouts.expert_analysis_secs", cfg.expert_analysis_secs)?;
        let t = cfg.workflow_tool_secs;
        if cfg.simple_tool_secs > t {
            return Err(HierarchyError {
                key: "timeouts.simple_tool_secs",
                reason: format!(
                    "simple tool timeout {} s exceeds the workflow tool timeout {t} s",
                    cfg.simple_tool_secs
                ),
            });
        }
        if cfg.expert_analysis_secs >= t {
            return Err(HierarchyError {
                key: "timeouts.expert_analysis_secs",
                reason: format!(
                    "expert analysis {} s must end before the workflow tool timeout {t} s that contains it",
                    cfg.expert_analysis_secs
                ),
            });
        }
        let mut max_multiplier: f64 = 1.0;
        for (model, m) in &cfg.model_multipliers {
            if !(m.is_finite() && *m > 0.0 && *m <= 10.0) {
                return Err(HierarchyError {
                    key: "timeouts.model_multipliers",
                    reason: format!("multiplier {m} for model `{model}` is outside (0, 10]"),
                });
            }
            max_multiplier = max_multiplier.max(*m);
        }
        let tool_ceiling = t * max_multiplier;
        in_range("timeouts.model_multipliers", tool_ceiling).map_err(|e| HierarchyError {
            reason: format!(
                "the slowest model's tool timeout {tool_ceiling} s ({t} s × {max_multiplier}): {}",
                e.reason
            ),
            ..e
        })?;
        let daemon = (tool_ceiling * DAEMON_FACTOR).ceil();
        let shim = (tool_ceiling * SHIM_FACTOR).ceil();
        let client = (tool_ceiling * CLIENT_FACTOR).ceil();
        let order = [
            ("tool", tool_ceiling),
            ("daemon", daemon),
            ("shim", shim),
            ("client", client),
        ];
        for pair in order.windows(2) {
            if pair[0].1 >= pair[1].1 {
                return Err(HierarchyError {
                    key: "timeouts.workflow_tool_secs",
                    reason: format!(
                        "{} {} s is not below {} {} s after rounding up to whole seconds; use a workflow tool timeout of at least 2 s",
                        pair[0].0, pair[0].1, pair[1].0, pair[1].1
                    ),
                });
            }
        }
        for (name, value) in &order[1..] {
            if *value > MAX_SECS {
                return Err(HierarchyError {
                    key: "timeouts.workflow_tool_secs",
                    reason: format!(
                        "derived {name} timeout {value} s exceeds {MAX_SECS} s; the largest workflow tool timeout is {} s",
                        (MAX_SECS / CLIENT_FACTOR / max_multiplier).floor()
                    ),
                });
            }
        }
        Ok(Self {
            simple_tool: cfg.simple_tool_secs,
            workflow_tool: t,
            expert_analysis: cfg.expert_analysis_secs,
            max_multiplier,
            tool_ceiling,
            daemon,
            shim,
            client,
            multipliers: cfg
                .model_multipliers
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        })
    }

    fn multiplier(&self, model: Option<&str>) -> f64 {
        model
            .and_then(|m| self.multipliers.iter().find(|(name, _)| name == m))
            .map_or(1.0, |(_, v)| *v)
    }

    /// Deadline of a simple tool call using `model` (if any).
    pub fn simple_tool_for(&self, model: Option<&str>) -> Duration {
        Duration::from_secs_f64(self.simple_tool * self.multiplier(model))
    }

    /// Deadline of a workflow tool call using `model` (if any).
    pub fn workflow_tool_for(&self, model: Option<&str>) -> Duration {
        Duration::from_secs_f64(self.workflow_tool * self.multiplier(model))
    }

    /// Deadline of the expert-model call inside a workflow tool.
    pub fn expert_for(&self, model: Option<&str>) -> Duration {
        Duration::from_secs_f64(self.expert_analysis * self.multiplier(model))
    }

    pub fn daemon_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.daemon)
    }
    pub fn shim_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shim)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.client)
    }
    /// How long a stopping daemon waits for in-flight calls: the longest a call can take.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.tool_ceiling + 1.0)
    }
}

impl fmt::Display for TimeoutHierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  simple tool      {:>8.1} s", self.simple_tool)?;
        writeln!(
            f,
            "  expert analysis  {:>8.1} s   (inside a workflow tool call)",
            self.expert_analysis
        )?;
        writeln!(f, "  workflow tool T  {:>8.1} s", self.workflow_tool)?;
        if self.max_multiplier > 1.0 {
            writeln!(
                f,
                "  slowest model    {:>8.1} s   (T × {} model multiplier)",
                self.tool_ceiling, self.max_multiplier
            )?;
        }
        writeln!(
            f,
            "  daemon           {:>8.1} s   (1.5 × {:.1}, rounded up)",
            self.daemon, self.tool_ceiling
        )?;
        writeln!(
            f,
            "  shim             {:>8.1} s   (2 × {:.1}, rounded up)",
            self.shim, self.tool_ceiling
        )?;
        write!(
            f,
            "  client           {:>8.1} s   (2.5 × {:.1}, rounded up; set your MCP client's timeout to at least this)",
            self.client, self.tool_ceiling
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(t: f64, simple: f64, expert: f64) -> TimeoutConfig {
        TimeoutConfig {
            workflow_tool_secs: t,
            simple_tool_secs: simple,
            expert_analysis_secs: expert,
            model_multipliers: BTreeMap::new(),
        }
    }

    #[test]
    fn default_hierarchy() {
        let h = TimeoutHierarchy::derive(&cfg(46.0, 30.0, 40.0)).unwrap();
        assert_eq!((h.daemon, h.shim, h.client), (69.0, 92.0, 115.0));
    }

    #[test]
    fn rounding_up_and_strict_order() {
        let h = TimeoutHierarchy::derive(&cfg(45.1, 30.0, 40.0)).unwrap();
        assert_eq!((h.daemon, h.shim, h.client), (68.0, 91.0, 113.0));
        let e = TimeoutHierarchy::derive(&cfg(0.5, 0.2, 0.3)).unwrap_err();
        assert!(e.reason.contains("not below"), "{e:?}");
    }

    #[test]
    fn bounds() {
        assert!(TimeoutHierarchy::derive(&cfg(0.0, 0.0, 0.0)).is_err());
        assert!(TimeoutHierarchy::derive(&cfg(1440.0, 30.0, 40.0)).is_ok());
        let e = TimeoutHierarchy::derive(&cfg(1441.0, 30.0, 40.0)).unwrap_err();
        assert!(e.reason.contains("1440"), "{e:?}");
        assert!(TimeoutHierarchy::derive(&cfg(46.0, 50.0, 40.0)).is_err());
        assert!(TimeoutHierarchy::derive(&cfg(46.0, 30.0, 46.0)).is_err());
        assert!(TimeoutHierarchy::derive(&cfg(f64::NAN, 30.0, 40.0)).is_err());
    }

    #[test]
    fn multipliers_raise_the_ceiling() {
        let mut c = cfg(46.0, 30.0, 40.0);
        c.model_multipliers.insert("slow".into(), 2.0);
        let h = TimeoutHierarchy::derive(&c).unwrap();
        assert_eq!(h.tool_ceiling, 92.0);
        assert_eq!(h.daemon, 138.0);
        assert_eq!(h.workflow_tool_for(Some("slow")), Duration::from_secs(92));
        assert_eq!(h.workflow_tool_for(Some("other")), Duration::from_secs(46));
        assert!(h.workflow_tool_for(Some("slow")) < h.daemon_timeout());
        c.model_multipliers.insert("bad".into(), 0.0);
        assert!(TimeoutHierarchy::derive(&c).is_err());
    }
}
