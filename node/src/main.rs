//! `rendermesh`: parse the command line, load the config, set up logging, run the command.

mod api;
mod cli;
mod cmd;
mod config;
mod dashboard;
mod delivery;
mod engine;
mod history;
mod host;
mod jobs;
mod metrics;
mod models;
mod notify;
mod runtime;
mod watch;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    // SVT-AV1 prints its own banner unless told otherwise; set before any thread starts.
    if std::env::var_os("SVT_LOG").is_none() {
        std::env::set_var("SVT_LOG", "1");
    }
    let cli = cli::Cli::parse();
    let daemon = matches!(cli.command, cli::Command::Node(_));
    if !matches!(cli.command, cli::Command::Node(_) | cli::Command::Submit(_)) {
        quiet_broken_pipe();
    }
    let level = match (cli.verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("RENDERMESH_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // colours only on a terminal: the journal and log files get plain text
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rendermesh: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Table and listing commands end quietly when their reader goes away (`rendermesh peers |
/// head`), as command-line tools do, instead of failing on a closed stdout. The daemon and
/// submits keep ignoring the signal: they write to sockets and report errors themselves.
fn quiet_broken_pipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    let mut cfg = config::NodeConfig::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
    }
    match cli.command {
        cli::Command::Node(args) => cmd::node::run(cfg, args),
        cli::Command::Submit(sub) => cmd::submit::run(cfg, sub),
        cli::Command::Status(args) => cmd::status::run(cfg, args),
        cli::Command::Cache(sub) => cmd::cache::run(cfg, sub),
        cli::Command::Caps(args) => cmd::caps::run(cfg, args),
        cli::Command::Peers(args) => cmd::peers::run(cfg, args),
        cli::Command::Keygen => cmd::keygen::run(),
        cli::Command::Drain => cmd::drain::run(cfg),
        cli::Command::Cancel(args) => cmd::dashboard::cancel(cfg, &args.job),
        cli::Command::Dashboard => cmd::dashboard::show(cfg),
        cli::Command::Passwd => cmd::dashboard::passwd(),
        cli::Command::Watch(args) => cmd::watch::run(cfg, args),
    }
}
