//! Command-line interface. Keep these forms stable: scripts depend on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A peer-to-peer render mesh for video: transcode and analyse on every box you own.
#[derive(Parser, Debug)]
#[command(name = "rendermesh", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: /etc/rendermesh/node.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node daemon (what systemd starts on every box).
    Node(NodeArgs),
    /// Submit a job to the local node (or run it in-process when no node answers).
    #[command(subcommand)]
    Submit(SubmitCmd),
    /// Show jobs and their shards.
    Status(StatusArgs),
    /// Inspect and maintain the node's cache (entries and blobs) while no node runs on it.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// What this box can do: CPU, memory, GPUs, encoders verified by a test encode, speeds.
    Caps(CapsArgs),
    /// Who is in the mesh and what each can do (asks the local node).
    Peers(PeersArgs),
    /// Print a new pre-shared mesh key: `rendermesh keygen > /etc/rendermesh/swarm.key`.
    Keygen,
    /// Stop the local node gently: it takes no new shards, finishes those it runs for peers,
    /// then exits (what SIGTERM does too).
    Drain,
    /// Stop a job on every node that runs part of it (any node's job: the local node asks
    /// the mesh). It ends as cancelled.
    Cancel(CancelArgs),
    /// Where this box's dashboard is and the token to log in with (readable by the node's
    /// user and group only).
    Dashboard,
    /// Read a password on standard input and print the `dashboard_password` line for
    /// node.toml: an Argon2id hash, never the password.
    Passwd,
    /// Watch a folder: every video file that lands in it (subfolders too) is transcoded, or
    /// made into a proxy, once it has stopped growing; each file once, even across restarts.
    Watch(WatchArgs),
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job's id, as `status` or the dashboard shows it.
    #[arg(value_name = "JOB")]
    pub job: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["transcode", "proxy"])))]
pub struct WatchArgs {
    /// The folder to watch.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Transcode every file (as `submit transcode IN… -o DIR/` does).
    #[arg(long)]
    pub transcode: bool,
    /// Make an editing proxy of every file (as `submit proxy` does).
    #[arg(long)]
    pub proxy: bool,
    /// The folder outputs go to; a file of a subfolder goes to the same subfolder there.
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Output names: {name} is the source's name without extension, {ext} the container's
    /// (default {name}.{ext}; proxies {name}_proxy.{ext}).
    #[arg(long, value_name = "TEMPLATE")]
    pub name: Option<String>,
    /// Video codec: h264, h265, av1, vp9, prores, dnxhr; proxies h264, prores, dnxhr
    /// (default h264).
    #[arg(long)]
    pub codec: Option<String>,
    /// Constant rate factor (quality; lower is better; default 23).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=63))]
    pub crf: Option<u8>,
    /// Encoder preset (x264/x265: ultrafast…veryslow; proxies default veryfast).
    #[arg(long)]
    pub preset: Option<String>,
    /// Height of proxies (default 540; the width follows the picture's aspect).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=4320))]
    pub height: Option<u32>,
    /// Target chunk length in seconds, 0.5 to 3600 (default: the node's chunk_seconds).
    #[arg(long, value_name = "SECONDS", value_parser = chunk_seconds)]
    pub chunk_seconds: Option<f64>,
    /// A file is taken once its size and mtime have not changed for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub settle: f64,
    /// How often the folder is scanned.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub interval: f64,
    /// Take what is there (once it has settled), make it, and exit.
    #[arg(long)]
    pub once: bool,
    /// Run in this process even when a node is running.
    #[arg(long)]
    pub local: bool,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Control API address (overrides the config's control_listen).
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SubmitCmd {
    /// Transcode a file (cut into chunks encoded in parallel), or a batch of files into a
    /// directory, one output each, all in one auction.
    Transcode(TranscodeArgs),
    /// Editing proxies of many files: smaller, same frames, rate, timecode and audio; kept
    /// by content, so asking again on any box costs no encode.
    Proxy(ProxyArgs),
    /// Detect scene cuts in one or more files.
    Scenes(ScenesArgs),
    /// Digest files on the mesh, then combine the digests (two stages): a check that every
    /// box computes the same, and the smallest job kind.
    Checksum(ChecksumArgs),
    /// Track tempo, beats, bars and sections of songs (audio files, or videos' audio).
    Beats(BeatsArgs),
    /// Cut clips to a song: a beat-synced montage, with timelines an editor opens.
    Montage(Box<MontageArgs>),
}

#[derive(Args, Debug)]
pub struct MontageArgs {
    /// Video files, or directories of them.
    #[arg(required_unless_present = "from_plan")]
    pub clips: Vec<PathBuf>,
    /// The song (with --from-plan: the plan's song).
    #[arg(long, value_name = "SONG", required_unless_present = "from_plan")]
    pub music: Option<PathBuf>,
    /// Output file; its extension picks the container (.mp4, .mkv, .mov, .webm, .nut).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Length in seconds (default: the song from --start to its end, at most 60 s).
    #[arg(long, value_name = "SECONDS")]
    pub length: Option<f64>,
    /// Output size, WxH (default: that of the most common clip format).
    #[arg(long, value_name = "WxH", value_parser = size)]
    pub size: Option<(u32, u32)>,
    /// Output frame rate, e.g. 30, 25, 29.97 or 30000/1001 (default: the most common clip's).
    #[arg(long, value_name = "N", value_parser = fps)]
    pub fps: Option<rendermesh_protocol::Rational>,
    /// How fast the cuts come: auto (from the music's energy), fast, medium, slow.
    #[arg(long, default_value = "auto", value_parser = ["auto", "fast", "medium", "slow"])]
    pub pace: String,
    /// Seed of the choices; the same seed gives the same montage.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where in the song the montage starts, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub start: f64,
    /// Use footage twice when there is too little to fill the length.
    #[arg(long)]
    pub allow_reuse: bool,
    /// Write the cut as an OpenTimelineIO timeline.
    #[arg(long, value_name = "FILE")]
    pub otio: Option<PathBuf>,
    /// Write the cut as a CMX 3600 EDL.
    #[arg(long, value_name = "FILE")]
    pub edl: Option<PathBuf>,
    /// Write the cut as FCPXML (1.9).
    #[arg(long, value_name = "FILE")]
    pub fcpxml: Option<PathBuf>,
    /// Write the plan (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Render this plan (JSON, e.g. an edited --plan) instead of making one.
    #[arg(long, value_name = "FILE")]
    pub from_plan: Option<PathBuf>,
    /// Video codec: h264, h265, av1, vp9.
    #[arg(long, default_value = "h264")]
    pub codec: String,
    /// Constant rate factor (quality; lower is better).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=63))]
    pub crf: u8,
    /// Encoder preset (x264/x265: ultrafast…veryslow).
    #[arg(long)]
    pub preset: Option<String>,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(Args, Debug)]
pub struct BeatsArgs {
    /// Audio or video files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the grid as JSON to FILE (with several inputs, `{name}` in FILE is each input's
    /// name, else it is appended).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per beat to FILE: time_s,is_downbeat,bar,beat_in_bar,loudness,onset.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Slowest tempo to consider.
    #[arg(long, value_name = "BPM", default_value_t = 50.0)]
    pub min_bpm: f32,
    /// Fastest tempo to consider.
    #[arg(long, value_name = "BPM", default_value_t = 240.0)]
    pub max_bpm: f32,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(Args, Debug)]
pub struct ChecksumArgs {
    /// Files to digest.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Extra rounds of blake3 over each file's digest (work of a known result).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// Write the digests as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonSubmit,
}

/// Options every submit takes.
#[derive(Args, Debug, Clone)]
pub struct CommonSubmit {
    /// Run in this process even when a node is running.
    #[arg(long)]
    pub local: bool,
    /// Target chunk length in seconds, 0.5 to 3600 (default: the node's chunk_seconds).
    #[arg(long, value_name = "SECONDS", value_parser = chunk_seconds)]
    pub chunk_seconds: Option<f64>,
    /// Write the final job status (shards, counters) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct TranscodeArgs {
    /// Source file; or several files (or directories of them): a batch, one output each.
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// Output file; its extension picks the container (.mp4, .mkv, .mov, .webm, .nut). For a
    /// batch (several inputs, or OUT ending in /): the directory.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// A batch's output names: {name} is the input's name without extension, {ext} the
    /// container's usual extension; the extension written picks the container.
    #[arg(long, value_name = "TEMPLATE", default_value = "{name}.{ext}")]
    pub name: String,
    /// A batch replaces outputs that exist (else they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Video codec: h264, h265, av1, vp9 (also prores, dnxhr).
    #[arg(long, default_value = "h264")]
    pub codec: String,
    /// Constant rate factor (quality; lower is better).
    #[arg(long, default_value_t = 23, value_parser = clap::value_parser!(u8).range(0..=63))]
    pub crf: u8,
    /// Encoder preset (x264/x265: ultrafast…veryslow; SVT-AV1: 0–13; VP9: cpu-used 0–8).
    #[arg(long)]
    pub preset: Option<String>,
    /// A specific encoder, e.g. h264_nvenc, hevc_vaapi, h264_qsv (sets the codec). One that
    /// cannot encode on the node falls back to the codec's software encoder, with a note.
    #[arg(long, value_name = "NAME")]
    pub encoder: Option<String>,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyCodec {
    H264,
    Prores,
    Dnxhr,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Source files, or directories of them.
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// The directory the proxies go to.
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Height of the proxies (the width follows the picture's aspect).
    #[arg(long, default_value_t = 540, value_parser = clap::value_parser!(u32).range(16..=4320))]
    pub height: u32,
    /// h264 (in .mp4), prores (ProRes Proxy in .mov, PCM audio) or dnxhr (DNxHR LB in .mov,
    /// PCM audio).
    #[arg(long, value_enum, default_value = "h264")]
    pub codec: ProxyCodec,
    /// Output names: {name} is the source's name without extension, {ext} the container's.
    #[arg(long, value_name = "TEMPLATE", default_value = "{name}_proxy.{ext}")]
    pub name: String,
    /// Replace proxies that exist (else they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// h264 proxies: constant rate factor.
    #[arg(long, default_value_t = 23, value_parser = clap::value_parser!(u8).range(0..=51))]
    pub crf: u8,
    /// h264 proxies: x264 preset.
    #[arg(long, default_value = "veryfast")]
    pub preset: String,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorArg {
    /// The content scores of every frame, and the network (when a node holds its weights)
    /// on the stretches they cannot settle: dissolves, fades, flashes, fast moves.
    Auto,
    Content,
    Adaptive,
    /// The shot-boundary network (TransNetV2) on every frame; needs its weights on a node.
    Neural,
}

#[derive(Args, Debug)]
pub struct ScenesArgs {
    /// Source files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the scene list as CSV (PySceneDetect's list-scenes layout).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the scene list as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the scene list as a CMX 3600 EDL.
    #[arg(long, value_name = "FILE")]
    pub edl: Option<PathBuf>,
    /// Detector.
    #[arg(long, value_enum, default_value = "auto")]
    pub detector: DetectorArg,
    /// Content and auto detectors: score at which a cut is made.
    #[arg(long, default_value_t = 27.0)]
    pub threshold: f32,
    /// Neural and auto detectors: transition probability above which the network cuts.
    #[arg(long, default_value_t = 0.5)]
    pub neural_threshold: f32,
    /// Adaptive detector: how far a score must stand out from its neighbours.
    #[arg(long, default_value_t = 3.0)]
    pub adaptive_threshold: f32,
    /// Adaptive detector: minimum score of a cut.
    #[arg(long, default_value_t = 15.0)]
    pub min_content_val: f32,
    /// Adaptive detector: neighbours on each side.
    #[arg(long, default_value_t = 2)]
    pub window_width: u32,
    /// Minimum scene length in frames.
    #[arg(long, default_value_t = 15)]
    pub min_scene_len: u32,
    /// Width frames are scaled to for analysis (0 = like PySceneDetect: width / ⌊width/256⌋).
    #[arg(long, default_value_t = 0)]
    pub analysis_width: u32,
    /// Decode with the loop filter on (slower; by default it is skipped, which is invisible after downscaling).
    #[arg(long)]
    pub full_decode: bool,
    #[command(flatten)]
    pub common: CommonSubmit,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A job id; without it, every job (and the node's watched folders).
    pub job: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the watched folders: counters and recent errors (with --json, as JSON).
    #[arg(long, conflicts_with = "job")]
    pub watches: bool,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CapsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Probe and calibrate again even if the cached result still fits this hardware.
    #[arg(long)]
    pub recalibrate: bool,
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Entries by kind, blobs and their bytes, the quota.
    Stat(CacheStatArgs),
    /// Entry keys (hex), one per line; or the blobs with --blobs.
    Ls(CacheLsArgs),
    /// Print one entry as JSON, decoded when its kind is known.
    Get(CacheGetArgs),
    /// Re-hash every entry and blob and drop the bad ones; exit status 2 if any was bad.
    Verify,
    /// Delete every blob no job has pinned, and temp files of processes that are gone.
    Gc(CacheGcArgs),
}

#[derive(Args, Debug)]
pub struct CacheStatArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CacheLsArgs {
    /// List blobs (id and size) instead of entries.
    #[arg(long)]
    pub blobs: bool,
    /// Entries: also print kind and record size.
    #[arg(short, long)]
    pub long: bool,
    /// Entries of this kind only (probe, scene-shard, scene-list, unmarked).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
}

#[derive(Args, Debug)]
pub struct CacheGetArgs {
    /// Entry key (64 hex digits, as `cache ls` prints it).
    pub key: String,
}

#[derive(Args, Debug)]
pub struct CacheGcArgs {
    /// Keep up to this many bytes of blobs, deleting the least recently used first
    /// (default: delete every unpinned blob).
    #[arg(long, value_name = "BYTES")]
    pub keep: Option<u64>,
}

/// `--chunk-seconds`: a number of seconds within [`crate::jobs::kind::CHUNK_SECONDS`].
fn size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WxH (e.g. 1920x1080)"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not WxH (e.g. 1920x1080)"))
    };
    let (w, h) = (n(w)?, n(h)?);
    if !rendermesh_protocol::montage::size_ok(w, h) {
        return Err(format!("{w}x{h}: sides must be even, 16 to 8192"));
    }
    Ok((w, h))
}

fn fps(text: &str) -> Result<rendermesh_protocol::Rational, String> {
    use rendermesh_protocol::Rational;
    let bad = || format!("{text:?} is not a frame rate (e.g. 30, 29.97, 30000/1001)");
    let r = match text.split_once('/') {
        Some((a, b)) => Rational::new(
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let v: f64 = text.trim().parse().map_err(|_| bad())?;
            match [23.976, 29.97, 59.94]
                .iter()
                .position(|s| (v - s).abs() < 0.005)
            {
                Some(i) => Rational::new([24000, 30000, 60000][i], 1001),
                None if v.fract() == 0.0 => Rational::new(v as i32, 1),
                None => Rational::new((v * 1000.0).round() as i32, 1000),
            }
        }
    };
    if r.den <= 0 || r.num <= 0 || !(1.0..=240.0).contains(&r.as_f64()) {
        return Err(format!("{text}: frame rates run from 1 to 240"));
    }
    Ok(r)
}

fn chunk_seconds(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    crate::jobs::kind::check_chunk_seconds(v)
}
