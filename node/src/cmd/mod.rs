//! One module per subcommand.

pub mod node;
pub mod status;
pub mod submit;
