//! A `[[watch]]` table of `node.toml` (and what `rendermesh watch` builds from its
//! arguments): checked by [`WatchConfig::validate`], turned into a [`WatchSpec`].

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rendermesh_protocol::VideoCodec;
use serde::{Deserialize, Serialize};

use super::WatchSpec;
use crate::jobs::batch::work::{proxy_work, transcode_work, PROXY_CODECS};

/// Seconds a file's size and mtime must stay the same before it is taken.
pub const DEFAULT_SETTLE_SECONDS: f64 = 5.0;
/// Seconds between two scans of the folder.
pub const DEFAULT_INTERVAL_SECONDS: f64 = 2.0;
/// Quality of the outputs when `crf` is not given.
pub const DEFAULT_CRF: u8 = 23;
/// Height of proxies when `height` is not given.
pub const DEFAULT_PROXY_HEIGHT: u32 = 540;
/// x264 preset of h264 proxies when `preset` is not given.
pub const DEFAULT_PROXY_PRESET: &str = "veryfast";

/// What a watched folder makes of its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// A transcode of each file, as `rendermesh submit transcode IN… -o DIR/` makes.
    Transcode,
    /// An editing proxy of each file, as `rendermesh submit proxy` makes (kept in the
    /// node's store, so asking again costs no encode).
    Proxy,
}

impl WatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchMode::Transcode => "transcode",
            WatchMode::Proxy => "proxy",
        }
    }
}

fn default_settle() -> f64 {
    DEFAULT_SETTLE_SECONDS
}

fn default_interval() -> f64 {
    DEFAULT_INTERVAL_SECONDS
}

/// A watched folder: every video file that lands in `dir` (subfolders too) is made into an
/// output in `out`, once. A file is taken when it has stopped growing (size and mtime the
/// same for `settle_seconds`); it is made again only when its content changes. What was
/// done with each file is kept in the node's store, so a restart redoes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The folder watched (absolute), subfolders included. Hidden names (starting with
    /// `.`), links and files without a video extension are left alone.
    pub dir: PathBuf,
    /// Where outputs go (absolute); a file of a subfolder of `dir` goes to the same
    /// subfolder here. It may lie inside `dir` (it is not watched), not the other way round.
    pub out: PathBuf,
    /// `"transcode"` or `"proxy"`.
    pub mode: WatchMode,
    /// Output names: `{name}` is the source's name without extension, `{ext}` the
    /// container's. Default `"{name}.{ext}"` (transcode; an extension written here picks
    /// the container), `"{name}_proxy.{ext}"` (proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Video codec. Transcode: h264, h265, av1, vp9, prores, dnxhr; proxy: h264 (in .mp4),
    /// prores or dnxhr (in .mov, PCM audio). Default h264.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Constant rate factor (quality; lower is better): 0–63, proxies 0–51. Default 23.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf: Option<u8>,
    /// Encoder preset (x264/x265: ultrafast…veryslow). Default: the encoder's own for a
    /// transcode, veryfast for h264 proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Proxies only: their height, 16–4320 (the width follows the picture). Default 540.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Target chunk length in seconds, 0.5–3600, when a long file is cut into shards.
    /// Default: the node's `chunk_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_seconds: Option<f64>,
    /// Seconds a file's size and mtime must stay unchanged before it is taken (0–86400).
    #[serde(default = "default_settle")]
    pub settle_seconds: f64,
    /// Seconds between two scans of `dir` (0.1–3600).
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
}

impl WatchConfig {
    /// A watch of `dir` into `out` with every option at its default.
    pub fn new(dir: PathBuf, out: PathBuf, mode: WatchMode) -> Self {
        Self {
            dir,
            out,
            mode,
            name: None,
            codec: None,
            crf: None,
            preset: None,
            height: None,
            chunk_seconds: None,
            settle_seconds: DEFAULT_SETTLE_SECONDS,
            interval_seconds: DEFAULT_INTERVAL_SECONDS,
        }
    }

    /// Explain what is wrong, if anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.spec().map(|_| ())
    }

    /// The watch as the engine runs it; an error says what is wrong with the table.
    pub fn spec(&self) -> anyhow::Result<WatchSpec> {
        let at = || format!("watch {}", self.dir.display());
        let dir = plain_absolute(&self.dir).map_err(|e| anyhow::anyhow!("{}: dir {e}", at()))?;
        let out = plain_absolute(&self.out).map_err(|e| anyhow::anyhow!("{}: out {e}", at()))?;
        if dir == out {
            anyhow::bail!("{}: dir and out are the same folder", at());
        }
        if dir.starts_with(&out) {
            anyhow::bail!(
                "{}: dir lies inside out {}; outputs would land among the sources",
                at(),
                out.display()
            );
        }
        if !(self.settle_seconds.is_finite() && (0.0..=86_400.0).contains(&self.settle_seconds)) {
            anyhow::bail!(
                "{}: settle_seconds must be 0 to 86400 (got {})",
                at(),
                self.settle_seconds
            );
        }
        if !(self.interval_seconds.is_finite() && (0.1..=3600.0).contains(&self.interval_seconds)) {
            anyhow::bail!(
                "{}: interval_seconds must be 0.1 to 3600 (got {})",
                at(),
                self.interval_seconds
            );
        }
        if let Some(c) = self.chunk_seconds {
            crate::jobs::kind::check_chunk_seconds(c)
                .map_err(|e| anyhow::anyhow!("{}: chunk_seconds: {e}", at()))?;
        }
        let template = self.name.clone().unwrap_or_else(|| match self.mode {
            WatchMode::Transcode => "{name}.{ext}".into(),
            WatchMode::Proxy => "{name}_proxy.{ext}".into(),
        });
        if !template.contains("{name}") || template.contains('/') || template.starts_with('.') {
            anyhow::bail!(
                "{}: name {template:?} must hold {{name}}, no '/', and not start with '.'",
                at()
            );
        }
        let codec = self.codec.as_deref().unwrap_or("h264");
        let crf = self.crf.unwrap_or(DEFAULT_CRF);
        let work = match self.mode {
            WatchMode::Transcode => {
                if self.height.is_some() {
                    anyhow::bail!("{}: height is for proxies (mode = \"proxy\")", at());
                }
                if crf > 63 {
                    anyhow::bail!("{}: crf must be 0 to 63 (got {crf})", at());
                }
                let codec: VideoCodec = codec
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("{}: codec: {e}", at()))?;
                transcode_work(codec, crf, self.preset.clone(), None, &template)
                    .map_err(|e| anyhow::anyhow!("{}: name: {e}", at()))?
            }
            WatchMode::Proxy => {
                let codec = codec
                    .parse::<VideoCodec>()
                    .ok()
                    .filter(|c| PROXY_CODECS.contains(c))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: codec {codec:?} is not a proxy codec (h264, prores, dnxhr)",
                            at()
                        )
                    })?;
                if crf > 51 {
                    anyhow::bail!("{}: crf of proxies must be 0 to 51 (got {crf})", at());
                }
                let height = self.height.unwrap_or(DEFAULT_PROXY_HEIGHT);
                if !rendermesh_protocol::SCALE_HEIGHTS.contains(&height) {
                    anyhow::bail!("{}: height must be 16 to 4320 (got {height})", at());
                }
                let preset = self.preset.as_deref().unwrap_or(DEFAULT_PROXY_PRESET);
                proxy_work(codec, height, crf, preset)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?
            }
        };
        Ok(WatchSpec {
            dir,
            out,
            mode: self.mode,
            work,
            template,
            chunk_seconds: self.chunk_seconds,
            settle: Duration::from_secs_f64(self.settle_seconds),
            interval: Duration::from_secs_f64(self.interval_seconds),
        })
    }
}

/// `p` when it is absolute, without `.` parts; `..` is refused (the comparisons between
/// folders are made on the names).
fn plain_absolute(p: &Path) -> Result<PathBuf, String> {
    if !p.is_absolute() {
        return Err(format!("{} is not an absolute path", p.display()));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{} holds '..'", p.display())),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: WatchMode) -> WatchConfig {
        WatchConfig::new("/media/in".into(), "/media/out".into(), mode)
    }

    #[test]
    fn defaults_per_mode() {
        let t = cfg(WatchMode::Transcode).spec().unwrap();
        assert_eq!(t.template, "{name}.{ext}");
        assert_eq!((t.work.container.as_str(), t.work.keep), ("mp4", false));
        assert_eq!(t.settle, Duration::from_secs(5));
        assert_eq!(t.interval, Duration::from_secs(2));
        let p = cfg(WatchMode::Proxy).spec().unwrap();
        assert_eq!(p.template, "{name}_proxy.{ext}");
        assert_eq!(p.work.options.height, Some(540));
        assert_eq!(p.work.options.preset.as_deref(), Some("veryfast"));
        assert!(p.work.keep);
        // the watch's identity follows what it makes, not how often it looks
        let mut slower = cfg(WatchMode::Proxy);
        slower.interval_seconds = 30.0;
        assert_eq!(slower.spec().unwrap().id(), p.id());
        assert_ne!(t.id(), p.id());
    }

    #[test]
    fn a_table_parses_with_its_defaults() {
        let text =
            "dir = \"/srv/in\"\nout = \"/srv/proxies\"\nmode = \"proxy\"\ncodec = \"prores\"\n";
        let c: WatchConfig = toml::from_str(text).unwrap();
        let s = c.spec().unwrap();
        assert_eq!(s.work.container, "mov");
        assert!(s.work.pcm_audio);
        assert!(toml::from_str::<WatchConfig>("dir = \"/a\"\nout = \"/b\"\nmode = \"x\"").is_err());
        assert!(toml::from_str::<WatchConfig>(
            "dir = \"/a\"\nout = \"/b\"\nmode = \"proxy\"\nbogus = 1"
        )
        .is_err());
    }

    #[test]
    fn validate_explains() {
        let wrong = |f: &dyn Fn(&mut WatchConfig), what: &str| {
            let mut c = cfg(WatchMode::Transcode);
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(what), "{e:?} should mention {what:?}");
        };
        wrong(&|c| c.dir = "in".into(), "absolute");
        wrong(&|c| c.out = "/media/in/.".into(), "same folder");
        wrong(&|c| c.out = "/media".into(), "inside out");
        wrong(&|c| c.dir = "/media/../in".into(), "'..'");
        wrong(&|c| c.codec = Some("mpeg1".into()), "codec");
        wrong(&|c| c.height = Some(360), "height");
        wrong(&|c| c.name = Some("same.mp4".into()), "{name}");
        wrong(&|c| c.name = Some("{name}.avi".into()), "name");
        wrong(&|c| c.settle_seconds = f64::NAN, "settle_seconds");
        wrong(&|c| c.interval_seconds = 0.0, "interval_seconds");
        wrong(&|c| c.chunk_seconds = Some(0.1), "chunk_seconds");
        let mut p = cfg(WatchMode::Proxy);
        p.codec = Some("h265".into());
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("proxy codec"));
        p.codec = None;
        p.crf = Some(60);
        assert!(p.validate().unwrap_err().to_string().contains("crf"));
        // outputs inside the watched folder are fine: that folder is not watched
        let mut inside = cfg(WatchMode::Proxy);
        inside.out = "/media/in/proxies".into();
        inside.validate().unwrap();
    }
}
