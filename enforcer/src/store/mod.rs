//! Durable state (redb). Sender records: [`senders`].

pub mod senders;
