//! Sending-server classifier (being written).
