//! Evidence that arrives from the MTA enforcer protects, and the answers the refused sender reads:
//! the milter and the Postfix policy service. Codecs and sessions are sans-IO; `listen` and each
//! `listener` are the thin tokio shell.

pub mod listen;
pub mod milter;
pub mod policy;
pub mod reply;
