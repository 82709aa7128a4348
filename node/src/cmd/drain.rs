//! `rendermesh drain`: ask the local node to drain and exit.

use crate::api::connect;
use crate::config::NodeConfig;

pub fn run(cfg: NodeConfig) -> anyhow::Result<i32> {
    let Some((info, client)) = connect(&cfg.data_dir) else {
        anyhow::bail!(
            "no node is running with data dir {}",
            cfg.data_dir.display()
        );
    };
    client.drain()?;
    println!(
        "{} (pid {}) is draining: it takes no new shards, finishes its running ones, then exits",
        info.name, info.pid
    );
    Ok(0)
}
