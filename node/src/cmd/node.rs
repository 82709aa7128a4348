//! `rendermesh node`: the daemon. Starts the runtime and the control API; stops on SIGTERM or
//! SIGINT (the HTTP server finishes its requests, then the process exits).

use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::api::server::{routes, write_info, write_token, ApiState};
use crate::api::{ControlInfo, INFO_FILE};
use crate::cli::NodeArgs;
use crate::config::NodeConfig;
use crate::runtime::Runtime;

pub fn run(mut cfg: NodeConfig, args: NodeArgs) -> anyhow::Result<i32> {
    if let Some(addr) = args.control_listen {
        cfg.control_listen = addr;
        cfg.validate()?;
    }
    let data_dir = cfg.data_dir.clone();
    let sys = actix::System::new();
    let result = sys.block_on(async move {
        let runtime = Arc::new(Runtime::start(cfg)?);
        let token = write_token(&runtime.cfg.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot write the control token: {e}",
                runtime.cfg.data_dir.display()
            )
        })?;
        let state = web::Data::new(ApiState {
            runtime: runtime.clone(),
            token,
        });
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
            .workers(1)
            .shutdown_timeout(10)
            .bind(&runtime.cfg.control_listen)
            .map_err(|e| anyhow::anyhow!("control API {}: {e}", runtime.cfg.control_listen))?;
        let addr = server
            .addrs()
            .first()
            .map(|a| a.to_string())
            .ok_or_else(|| anyhow::anyhow!("control API bound no address"))?;
        write_info(
            &runtime.cfg.data_dir,
            &ControlInfo {
                addr: addr.clone(),
                pid: std::process::id(),
                name: runtime.name.clone(),
            },
        )?;
        tracing::info!(%addr, data_dir = %runtime.cfg.data_dir.display(), "control API listening");
        server.run().await?;
        tracing::info!("node stopping");
        if let Err(e) = runtime.cache.entries.flush() {
            tracing::warn!(error = %e, "cache flush failed");
        }
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(data_dir.join(INFO_FILE));
    result.map(|_| 0)
}
