//! The Postfix policy delegation service (`check_policy_service`): a sans-IO codec, the pure answer to
//! one request, and the listener that drives them.

pub mod codec;
pub mod listener;
pub mod session;
