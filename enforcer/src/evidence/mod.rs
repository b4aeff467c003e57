//! Evidence that arrives from the MTA enforcer protects, and the answers the refused sender reads:
//! the milter and the Postfix policy service.

pub mod milter;
pub mod policy;
pub mod reply;
