//! Evidence that arrives from the MTA enforcer protects, and the answers the refused sender reads:
//! the milter, the Postfix policy service and the kernel-steered notice responder. Codecs and sessions are sans-IO; `listen` and each
//! `listener` are the thin tokio shell.

mod attribute;
pub mod inbox;
pub mod listen;
pub mod milter;
pub mod policy;
pub mod probe;
pub mod reply;
pub mod responder;
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
    /// The EHLO/HELO name a steered client sent the notice responder.
    Responder,
}

impl Channel {
    pub fn id(self) -> &'static str {
        match self {
            Channel::Milter => "milter",
            Channel::Policy => "policy",
            Channel::Responder => "responder",
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
    /// `[notice]`: the kernel-steered responder.
    pub notice: responder::NoticeSettings,
}

impl MtaSettings {
    /// True when a channel that can show a refused sender the reply text is configured (a
    /// requirement of the `notice` refusal).
    pub fn has_notice_channel(&self) -> bool {
        self.milter.is_some() || self.policy.is_some() || self.notice.responder
    }
}

#[cfg(test)]
mod tests;
