//! One module per subcommand.

pub mod cache;
pub mod caps;
pub mod node;
pub mod status;
pub mod submit;
