//! `/metrics`: the node and its view of the mesh in Prometheus text format.

/// The node's metrics.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }
}
