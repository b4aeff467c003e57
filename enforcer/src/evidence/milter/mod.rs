//! The milter (Postfix `smtpd_milters`, Sendmail `INPUT_MAIL_FILTER`): a sans-IO codec for protocol
//! version 6, a pure per-connection session, and the listener that drives them.

pub mod codec;
pub mod listener;
pub mod session;
