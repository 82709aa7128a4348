//! Facts about this machine: CPU, memory, GPUs, names. Read from /proc, /sys and /dev;
//! anything unreadable is reported as unknown rather than failing.

use std::collections::BTreeSet;
use std::path::Path;

use rendermesh_protocol::{Capabilities, Gpu, CAPS_VERSION};

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `key: value` lines of /proc files.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

fn meminfo_bytes(text: &str, key: &str) -> u64 {
    field(text, key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Physical cores from /proc/cpuinfo (distinct physical id + core id), else threads.
fn physical_cores(cpuinfo: &str, threads: u32) -> u32 {
    let mut seen = BTreeSet::new();
    let (mut phys, mut core) = (None, None);
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                seen.insert((p, c));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => phys = Some(v.trim().to_string()),
                "core id" => core = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    if seen.is_empty() {
        threads
    } else {
        seen.len() as u32
    }
}

fn vendor_name(id: &str) -> String {
    match id.trim().trim_start_matches("0x") {
        "10de" => "nvidia".into(),
        "8086" => "intel".into(),
        "1002" => "amd".into(),
        other => other.to_string(),
    }
}

/// NVIDIA devices (/dev/nvidiaN) and DRM render nodes (/dev/dri/renderD*), unless hidden.
fn gpus() -> Vec<Gpu> {
    let mut out = Vec::new();
    for n in 0..16 {
        let dev = format!("/dev/nvidia{n}");
        if Path::new(&dev).exists() {
            let name = std::fs::read_dir("/proc/driver/nvidia/gpus")
                .ok()
                .and_then(|mut d| d.nth(n))
                .and_then(|e| e.ok())
                .and_then(|e| read(e.path().join("information")))
                .and_then(|t| field(&t, "Model").map(str::to_string))
                .unwrap_or_else(|| "NVIDIA GPU".into());
            out.push(Gpu {
                vendor: "nvidia".into(),
                device: dev,
                name,
            });
        }
    }
    if let Ok(rd) = std::fs::read_dir("/dev/dri") {
        let mut nodes: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("renderD"))
            .collect();
        nodes.sort();
        for node in nodes {
            let sys = Path::new("/sys/class/drm").join(&node).join("device");
            let vendor = read(sys.join("vendor"))
                .map(|v| vendor_name(&v))
                .unwrap_or_else(|| "unknown".into());
            let name = read(sys.join("device"))
                .map(|d| format!("device {}", d.trim()))
                .unwrap_or_default();
            out.push(Gpu {
                vendor,
                device: format!("/dev/dri/{node}"),
                name,
            });
        }
    }
    out
}

/// The CPU time this process may use, in CPUs (e.g. 0.5), when its cgroup sets a quota (the
/// cgroup cpu controller: `cpu.max` on cgroup v2, `cpu.cfs_quota_us` on v1); `None` = no quota.
pub fn cpu_quota() -> Option<f64> {
    let own = read("/proc/self/cgroup")?;
    quota_of(&own, |path| read(path))
}

/// [`cpu_quota`] from the text of `/proc/self/cgroup`, reading cgroup files through `read`.
fn quota_of(own: &str, read: impl Fn(&str) -> Option<String>) -> Option<f64> {
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim();
        if controllers.is_empty() {
            // v2: "<quota|max> <period>" in cpu.max, here or in the nearest ancestor with one
            for dir in Path::new(path).ancestors() {
                let Some(text) = read(&format!("/sys/fs/cgroup{}/cpu.max", dir.display())) else {
                    continue;
                };
                let mut f = text.split_whitespace();
                let (q, p) = (f.next()?, f.next()?);
                return match (q.parse::<f64>(), p.parse::<f64>()) {
                    (Ok(q), Ok(p)) if q > 0.0 && p > 0.0 => Some(q / p),
                    _ => None, // "max": no quota
                };
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            for base in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                let q = read(&format!("{base}{path}/cpu.cfs_quota_us"));
                let p = read(&format!("{base}{path}/cpu.cfs_period_us"));
                if let (Some(q), Some(p)) = (q, p) {
                    let (q, p) = (q.trim().parse::<f64>().ok()?, p.trim().parse::<f64>().ok()?);
                    return (q > 0.0 && p > 0.0).then(|| q / p);
                }
            }
        }
    }
    None
}

/// This host's facts as a capabilities record with no encoders measured yet (what a node
/// announces before its encoder probe finishes). `force_cpu` hides every GPU.
pub fn probe(force_cpu: bool) -> Capabilities {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let meminfo = read("/proc/meminfo").unwrap_or_default();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let cpu_model = ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|k| field(&cpuinfo, k))
        .unwrap_or("unknown")
        .to_string();
    let os = read("/etc/os-release")
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let hostname = read("/proc/sys/kernel/hostname")
        .or_else(|| read("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    Capabilities {
        version: CAPS_VERSION,
        models: Vec::new(),
        hostname,
        arch: std::env::consts::ARCH.to_string(),
        os,
        cpu_model,
        cores: physical_cores(&cpuinfo, threads),
        threads,
        ram_total_bytes: meminfo_bytes(&meminfo, "MemTotal"),
        ram_available_bytes: meminfo_bytes(&meminfo, "MemAvailable"),
        gpus: if force_cpu { Vec::new() } else { gpus() },
        encoders: Vec::new(),
        scene_fps_720p: 0.0,
        scene_fps_1080p: 0.0,
        force_cpu,
        speeds: Default::default(),
        lacks: Default::default(),
        binary_version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: String::new(),
        calibrated_unix_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_cpu_quota_is_read_on_v1_and_v2() {
        let files = |entries: &'static [(&'static str, &'static str)]| {
            move |p: &str| {
                entries
                    .iter()
                    .find(|(k, _)| *k == p)
                    .map(|(_, v)| v.to_string())
            }
        };
        // v2: the nearest ancestor with a cpu.max counts
        let v2 = files(&[
            ("/sys/fs/cgroup/lab/cpu.max", "25000 100000\n"),
            ("/sys/fs/cgroup/cpu.max", "max 100000\n"),
        ]);
        assert_eq!(quota_of("0::/lab/node\n", v2), Some(0.25));
        let unlimited = files(&[("/sys/fs/cgroup/lab/cpu.max", "max 100000\n")]);
        assert_eq!(quota_of("0::/lab\n", unlimited), None);
        // v1: the cpu controller's quota and period; -1 = none
        let v1 = files(&[
            ("/sys/fs/cgroup/cpu/slow/cpu.cfs_quota_us", "5000\n"),
            ("/sys/fs/cgroup/cpu/slow/cpu.cfs_period_us", "10000\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(quota_of("4:memory:/x\n1:cpu:/slow\n0::/\n", v1), Some(0.5));
        assert_eq!(quota_of("1:cpu:/\n", v1), None);
        assert_eq!(quota_of("", v1), None);
    }

    #[test]
    fn parses_proc_text() {
        let cpu = "processor\t: 0\nmodel name\t: Test CPU @ 3GHz\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 1\nmodel name\t: Test CPU @ 3GHz\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(field(cpu, "model name"), Some("Test CPU @ 3GHz"));
        assert_eq!(physical_cores(cpu, 3), 2);
        assert_eq!(physical_cores("processor : 0\n", 4), 4);
        let mem = "MemTotal:       16318488 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_bytes(mem, "MemTotal"), 16318488 * 1024);
        assert_eq!(meminfo_bytes(mem, "Nope"), 0);
        assert_eq!(vendor_name("0x8086\n"), "intel");
    }

    #[test]
    fn this_host_has_sane_facts_and_force_cpu_hides_gpus() {
        let h = probe(true);
        assert!(h.threads >= 1 && h.cores >= 1 && h.cores <= h.threads);
        assert!(h.ram_total_bytes > 0 && h.ram_available_bytes <= h.ram_total_bytes);
        assert!(h.gpus.is_empty());
        assert!(!h.hostname.is_empty());
    }
}
