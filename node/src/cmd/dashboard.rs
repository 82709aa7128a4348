//! `rendermesh dashboard`, `rendermesh passwd` and `rendermesh cancel`: the dashboard's
//! address and login, its password hash, and stopping a job from a shell.

use std::io::BufRead;

use crate::api::read_control;
use crate::config::NodeConfig;

fn control(cfg: &NodeConfig) -> anyhow::Result<(crate::api::ControlInfo, String)> {
    read_control(&cfg.data_dir).ok_or_else(|| {
        anyhow::anyhow!(
            "no node is running with data dir {} (or its token is not readable by you: \
             it is for the node's user; `sudo rendermesh dashboard` shows it)",
            cfg.data_dir.display()
        )
    })
}

/// Print where the dashboard is and the token to log in with.
pub fn show(cfg: NodeConfig) -> anyhow::Result<i32> {
    let (info, token) = control(&cfg)?;
    println!("dashboard of {}: http://{}/", info.name, info.addr);
    if let Some(lan) = &info.dashboard {
        println!("on the LAN: http://{lan}/ (0.0.0.0 = any of this box's addresses)");
    }
    println!("log in with the token: {token}");
    Ok(0)
}

/// Read a password (one line on standard input) and print its config line.
pub fn passwd() -> anyhow::Result<i32> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("password (it is shown as you type; pipe it in to hide it):");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.chars().count() < 8 {
        anyhow::bail!("a dashboard password needs at least 8 characters");
    }
    let hash = crate::api::password::hash(password)?;
    println!("dashboard_password = \"{hash}\"");
    Ok(0)
}

/// Cancel a job of any node of the mesh.
pub fn cancel(cfg: NodeConfig, job: &str) -> anyhow::Result<i32> {
    job.parse::<rendermesh_protocol::JobId>()
        .map_err(|e| anyhow::anyhow!("{job:?} is not a job id: {e}"))?;
    let (_, client) = crate::api::connect(&cfg.data_dir).ok_or_else(|| {
        anyhow::anyhow!(
            "no node is running with data dir {}",
            cfg.data_dir.display()
        )
    })?;
    let line = client.cancel(job)?;
    println!("{line}");
    Ok(0)
}
