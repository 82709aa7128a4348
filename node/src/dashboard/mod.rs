//! The dashboard: one page, served by the node itself, that shows the whole mesh live.

pub mod password;
pub mod session;
