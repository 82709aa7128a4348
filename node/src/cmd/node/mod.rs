//! `rendermesh node`: the daemon. Starts the runtime, the mesh (network task + peers actor)
//! and the control API; stops on SIGTERM, SIGINT or `rendermesh drain`: the HTTP server
//! finishes its requests, then [`shutdown`] stops the rest in order and logs its report.
//!
//! Every long-lived task runs in one [`Tasks`] tree: `node/network` (the swarm's event loop,
//! the request and blob-stream servers), `node/replica`, `node/discovery`, `node/watch` (the
//! `[[watch]]` folders, see [`crate::watch::daemon`]), and the node's own (watchdog,
//! mesh.json, calibration, fetches ahead, coordinators' cancels).
//!
//! Under systemd (`Type=notify`) it reports READY once the control API and the mesh listen,
//! pings the watchdog from its event loop, and reports STOPPING on shutdown.
//!
//! The mesh listens at once and announces host facts only; the encoder probe runs on the
//! blocking pool and its full capabilities are announced when it finishes.

mod shutdown;

use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::api::server::{routes, write_info, write_token, ApiState};
use crate::api::{ControlInfo, MeshInfo, INFO_FILE, MESH_FILE};
use crate::cli::NodeArgs;
use crate::config::NodeConfig;
use crate::engine::MediaError;
use crate::jobs::calibrate::load_or_probe;
use crate::jobs::registry::fill_speeds;
use crate::runtime::Runtime;
use actix::Actor;
use rendermesh_mesh::exec::CancelToken;
use rendermesh_mesh::net::key::load_or_create_identity;
use rendermesh_mesh::net::{self, parse_tcp_addr};
use rendermesh_mesh::remote::Coordinators;
use rendermesh_mesh::{replica, service, MeshLink, ReplicaConfig, ShardHost};
use rendermesh_mesh::{NetworkConfig, NetworkHandle, PeerView, Peers, SetCaps, SwarmKey, Tasks};

pub fn run(mut cfg: NodeConfig, args: NodeArgs) -> anyhow::Result<i32> {
    if let Some(addr) = args.control_listen {
        cfg.control_listen = addr;
        cfg.validate()?;
    }
    let data_dir = cfg.data_dir.clone();
    let sys = actix::System::new();
    let result = sys.block_on(async move {
        let runtime = Arc::new(Runtime::start(cfg)?);
        let drain = Arc::new(tokio::sync::Notify::new());
        let mesh = start_mesh(&runtime, &drain)?;
        let mut watches = crate::watch::daemon::Watches::new(&runtime.cfg);
        let board = watches.board.clone();
        let token = write_token(&runtime.cfg.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot write the control token: {e}",
                runtime.cfg.data_dir.display()
            )
        })?;
        let sessions = crate::api::session::Sessions::new(
            token.clone(),
            Some(runtime.cfg.dashboard_password.clone()),
            runtime.cfg.dashboard_open,
        );
        let memory = web::Data::new(crate::dashboard::view::Memory::default());
        let metrics = web::Data::new(crate::metrics::Metrics::new());
        let local_token = token.clone();
        let state = web::Data::new(ApiState {
            runtime: runtime.clone(),
            token,
            sessions,
            peers: mesh.view.clone(),
            drain: drain.clone(),
            watches: board,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(memory.clone())
                .app_data(metrics.clone())
                .configure(routes)
                .configure(crate::dashboard::routes)
                .configure(crate::metrics::routes)
        })
        .workers(1)
        .shutdown_timeout(10)
        .bind(&runtime.cfg.control_listen)
        .map_err(|e| anyhow::anyhow!("control API {}: {e}", runtime.cfg.control_listen))?;
        let lan = &runtime.cfg.dashboard_listen;
        if !lan.is_empty() {
            server = server
                .bind(lan)
                .map_err(|e| anyhow::anyhow!("dashboard_listen {lan}: {e}"))?;
        }
        let addrs: Vec<String> = server.addrs().iter().map(|a| a.to_string()).collect();
        let addr = addrs
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("control API bound no address"))?;
        let dashboard = addrs.get(1).cloned();
        let socket = crate::api::local::socket_path(&runtime.cfg.data_dir);
        let socket = match crate::api::local::serve(&socket, addr.clone(), local_token) {
            Ok(()) => Some(socket),
            Err(e) => {
                tracing::warn!(socket = %socket.display(), error = %e, "no local socket: the CLI needs the token");
                None
            }
        };
        write_info(
            &runtime.cfg.data_dir,
            &ControlInfo {
                addr: addr.clone(),
                pid: std::process::id(),
                name: runtime.name.clone(),
                dashboard: dashboard.clone(),
                socket,
            },
        )?;
        tracing::info!(%addr, data_dir = %runtime.cfg.data_dir.display(), "control API listening");
        tracing::info!(
            url = %format!("http://{}/", dashboard.as_deref().unwrap_or(&addr)),
            "dashboard (log in with the token `rendermesh dashboard` prints)"
        );
        // the watched folders once the node answers: they run until the drain stops them
        watches.start(&runtime, &mesh.tasks);
        crate::history::record_ends(&runtime.board, &runtime.history, &mesh.tasks);
        let drain_parts = shutdown::Drain {
            runtime: runtime.clone(),
            host: mesh.host.clone(),
            peers: mesh.peers.clone(),
            calibration: mesh.calibration.clone(),
            watches: Some(Arc::new(watches)),
            stopped_early: Arc::default(),
        };
        // systemd (Type=notify): ready now; watchdog pings from the event loop, so a hung
        // loop stops them and systemd restarts the node
        crate::notify::notify("READY=1");
        if let Some(every) = crate::notify::watchdog_interval() {
            mesh.tasks.spawn("watchdog", async move {
                loop {
                    tokio::time::sleep(every).await;
                    crate::notify::notify("WATCHDOG=1");
                }
            });
        }
        let server = server.disable_signals().run();
        // SIGTERM, Ctrl-C and `rendermesh drain` start the drain: the jobs of this node end
        // while the API answers, then the server stops; a second signal cuts the wait short
        let handle = server.handle();
        let cut_short = Arc::new(tokio::sync::Notify::new());
        mesh.tasks
            .spawn("signals", on_signals(drain.clone(), cut_short.clone()));
        let parts = drain_parts.clone();
        mesh.tasks.spawn("drain", async move {
            drain.notified().await;
            crate::notify::notify("STOPPING=1");
            shutdown::finish_jobs(&parts, &cut_short).await;
            handle.stop(true).await;
        });
        server.await?;
        crate::notify::notify("STOPPING=1");
        let report = shutdown::shutdown(&drain_parts, mesh).await;
        report.log();
        anyhow::Ok(())
    });
    // the runtime ends here: every task was stopped, every run cancelled; what is left on the
    // blocking pool (a job's planning) ends on its own
    drop(sys);
    let _ = std::fs::remove_file(data_dir.join(INFO_FILE));
    let _ = std::fs::remove_file(crate::api::local::socket_path(&data_dir));
    let _ = std::fs::remove_file(data_dir.join(MESH_FILE));
    result.map(|_| 0)
}

/// The running mesh parts the daemon needs again when it stops.
struct Mesh {
    view: PeerView,
    host: ShardHost,
    peers: actix::Addr<Peers>,
    network: NetworkHandle,
    /// Stops the calibration of a node asked to stop.
    calibration: CancelToken,
    /// The node's task tree and the subtrees it stops one by one.
    tasks: Tasks,
    replica: Tasks,
    discovery: Tasks,
    net_tasks: Tasks,
}

/// Start the network task and the peers actor; call inside the actix system.
fn start_mesh(runtime: &Arc<Runtime>, drain: &Arc<tokio::sync::Notify>) -> anyhow::Result<Mesh> {
    let (cfg, name) = (&runtime.cfg, runtime.name.as_str());
    let key_file = cfg.effective_key_file();
    // a configured key file must exist; only the default one is created on first start
    let (key, created) = if cfg.key_file.as_os_str().is_empty() {
        SwarmKey::load_or_create(&key_file).map_err(|e| anyhow::anyhow!("mesh key: {e}"))?
    } else {
        let key = SwarmKey::load(&key_file).map_err(|e| {
            anyhow::anyhow!("mesh key: {e} (make one with `rendermesh keygen > FILE`)")
        })?;
        (key, false)
    };
    if created {
        tracing::info!(file = %key_file.display(), "created a new mesh key (a mesh of one until peers share it)");
    }
    let identity = load_or_create_identity(&cfg.data_dir.join("peer.key"))
        .map_err(|e| anyhow::anyhow!("node identity: {e}"))?;
    let listen = parse_tcp_addr(&cfg.listen)?;
    let static_peers = cfg
        .peers
        .iter()
        .map(|p| parse_tcp_addr(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (network, event_loop) = net::build(
        NetworkConfig {
            listen,
            static_peers,
        },
        identity,
        &key,
    )?;
    let mesh_id = key.mesh_id().to_string();
    tracing::info!(mesh_id = %mesh_id, peer_id = %network.peer_id(), static_peers = cfg.peers.len(), "mesh starting");
    let tasks = Tasks::root("node");
    let (net_tasks, replica_tasks, discovery_tasks) = (
        tasks.child("network"),
        tasks.child("replica"),
        tasks.child("discovery"),
    );
    if cfg.mdns {
        let mdns = rendermesh_mesh::discovery::DiscoveryConfig {
            interfaces: cfg.mdns_interfaces.clone(),
        };
        let started = rendermesh_mesh::discovery::start(
            mdns,
            network.clone(),
            key.mesh_id(),
            &discovery_tasks,
        );
        if let Err(e) = started {
            tracing::warn!(error = %e, "mDNS discovery is off; static peers only");
        }
    }

    let force_cpu = cfg.effective_force_cpu();
    let peers = Peers::new(
        network.clone(),
        name.to_string(),
        runtime.model.caps(),
        cfg.effective_slots() as u32,
    )
    .with_load(runtime.load.clone())
    .with_shard_ram_limit(cfg.shard_ram_limit_bytes);
    // the replicator follows who is in the mesh
    let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let peers = peers.notify_changes(changes_tx);
    let view = peers.view();
    let peers = peers.start();
    let (inbound_tx, inbound_rx) = tokio::sync::mpsc::channel(service::QUEUE);
    // heartbeats of awards on peers reach this node's coordinators through the host
    let coordinators = Coordinators::default();
    let host = ShardHost::new(
        network.clone(),
        runtime.cache.blobs.clone(),
        runtime.worker.clone(),
    )
    .with_ram_limit(cfg.shard_ram_limit_bytes)
    .with_tasks(tasks.clone())
    .with_coordinators(coordinators.clone())
    .with_bidding(
        runtime.model.clone(),
        cfg.effective_slots() as u32,
        runtime.load.clone(),
    );
    service::serve(
        inbound_rx,
        runtime.cache.clone(),
        Some(host.clone()),
        Some(Arc::new(crate::api::desk::Desk {
            runtime: runtime.clone(),
            drain: drain.clone(),
        })),
        network.accept_blob_streams(),
        &net_tasks,
    );
    runtime.board.set_mesh(MeshLink {
        net: network.clone(),
        peers: view.clone(),
        blobs: runtime.cache.blobs.clone(),
        coordinators,
        lease: cfg.shard_lease(),
        model: runtime.model.clone(),
        tasks: tasks.clone(),
    });
    replica::start(
        runtime.cache.entries.clone(),
        network.clone(),
        ReplicaConfig {
            replicas: cfg.cache_replicas,
        },
        changes_rx,
        &replica_tasks,
    );
    net_tasks.spawn(
        "event-loop",
        event_loop.run(peers.clone().recipient(), inbound_tx),
    );

    // mesh.json follows the actual listen addresses
    let mut listen_rx = network.watch_listen();
    let data_dir = cfg.data_dir.clone();
    let peer_id = network.peer_id().to_string();
    tasks.spawn("mesh-info", async move {
        loop {
            let info = MeshInfo {
                pid: std::process::id(),
                peer_id: peer_id.clone(),
                mesh_id: mesh_id.clone(),
                listen: listen_rx
                    .borrow_and_update()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
            };
            if !info.listen.is_empty() {
                if let Err(e) = write_mesh_info(&data_dir, &info) {
                    tracing::warn!(error = %e, "cannot write {MESH_FILE}");
                }
            }
            if listen_rx.changed().await.is_err() {
                break;
            }
        }
    });

    // the full capabilities when the probe (maybe a calibration) finishes
    let data_dir = cfg.data_dir.clone();
    let threads = cfg.effective_threads();
    let peers_addr = peers.clone();
    let model = runtime.model.clone();
    let models = runtime.models.clone();
    let calibration = CancelToken::default();
    let cancel = calibration.clone();
    // a model kept from a shard's fetch is announced at once
    let mut kept = runtime.models.subscribe();
    let (bidder, announce, held) = (model.clone(), peers.clone(), models.clone());
    tasks.spawn("models", async move {
        while kept.changed().await.is_ok() {
            let mut caps = bidder.caps();
            caps.models = held.caps();
            bidder.set_caps(caps.clone());
            announce.do_send(SetCaps(caps));
        }
    });
    tasks.spawn("calibration", async move {
        let probe = tokio::task::spawn_blocking(move || {
            load_or_probe(&data_dir, force_cpu, threads, false, fill_speeds, &cancel)
        })
        .await;
        match probe {
            Ok(Ok((mut caps, cached))) => {
                caps.models = models.caps();
                tracing::info!(
                    cached,
                    encoders = caps.encoders.iter().filter(|e| e.verified).count(),
                    "capabilities ready"
                );
                model.set_caps(caps.clone());
                peers.do_send(SetCaps(caps));
            }
            Ok(Err(MediaError::Cancelled)) => tracing::info!("calibration stopped"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "encoder probe failed; announcing host facts only")
            }
            Err(e) => {
                tracing::warn!(error = %e, "encoder probe crashed; announcing host facts only")
            }
        }
    });
    Ok(Mesh {
        view,
        host,
        peers: peers_addr,
        network,
        calibration,
        tasks,
        replica: replica_tasks,
        discovery: discovery_tasks,
        net_tasks,
    })
}

/// SIGTERM and SIGINT: the first one starts the drain, the later ones cut its wait for the
/// jobs of this node short.
async fn on_signals(drain: Arc<tokio::sync::Notify>, cut_short: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot catch SIGTERM and SIGINT; stop the node with `rendermesh drain`");
            return;
        }
    };
    let mut first = true;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if std::mem::take(&mut first) {
            drain.notify_one();
        } else {
            tracing::warn!("stop asked again: the jobs of this node stop now");
            cut_short.notify_one();
        }
    }
}

fn write_mesh_info(data_dir: &std::path::Path, info: &MeshInfo) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{MESH_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(info).unwrap_or_default())?;
    std::fs::rename(tmp, data_dir.join(MESH_FILE))
}
