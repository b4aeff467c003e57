//! Evidence that arrives from the MTA enforcer protects, and the answers the refused sender reads:
//! the milter and the Postfix policy service. Codecs and sessions are sans-IO; `listen` and each
//! `listener` are the thin tokio shell.

mod attribute;
pub mod inbox;
pub mod listen;
pub mod milter;
pub mod policy;
pub mod reply;
pub use attribute::attribute;

use listen::Endpoint;
use reply::Texts;

/// The listener a sighting came through; names the `source` of the evidence counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Milter,
    Policy,
}

impl Channel {
    pub fn id(self) -> &'static str {
        match self {
            Channel::Milter => "milter",
            Channel::Policy => "policy",
        }
    }
}

/// Where the MTA listeners listen and what they answer (flags and `[milter]`, `[policy]`,
/// `[replies]` in the configuration file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MtaSettings {
    pub milter: Option<Endpoint>,
    pub policy: Option<Endpoint>,
    pub texts: Texts,
}

impl MtaSettings {
    /// True when a channel that can show a refused sender the reply text is configured (a
    /// requirement of the `notice` refusal).
    pub fn has_notice_channel(&self) -> bool {
        self.milter.is_some() || self.policy.is_some()
    }
}

#[cfg(test)]
mod tests;
