//! The Postfix policy delegation service (`check_policy_service`): a sans-IO codec.

pub mod codec;
