//! One module per subcommand.

pub mod cache;
pub mod caps;
pub mod dashboard;
pub mod drain;
pub mod interrupt;
pub mod keygen;
pub mod node;
pub mod peers;
pub mod status;
pub mod submit;
pub mod watch;
