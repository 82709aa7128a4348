//! `rendermesh drain`: ask the local node to drain and exit.

use crate::api::client::Client;
use crate::api::read_control;
use crate::config::NodeConfig;

pub fn run(cfg: NodeConfig) -> anyhow::Result<i32> {
    let Some((info, token)) = read_control(&cfg.data_dir) else {
        anyhow::bail!(
            "no node is running with data dir {}",
            cfg.data_dir.display()
        );
    };
    Client::new(&info, token).drain()?;
    println!(
        "{} (pid {}) is draining: it takes no new shards, finishes its running ones, then exits",
        info.name, info.pid
    );
    Ok(0)
}
