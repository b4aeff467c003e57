//! (scaffold: its owner fills this module)
