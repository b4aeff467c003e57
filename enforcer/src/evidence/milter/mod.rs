//! The milter (Postfix `smtpd_milters`, Sendmail `INPUT_MAIL_FILTER`): a sans-IO codec for protocol
//! version 6.

pub mod codec;
