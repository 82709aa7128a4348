//! A CPU quota for a node under test: a cgroup of the cpu controller (cgroup v2 `cpu.max`, or
//! v1 `cpu.cfs_quota_us`) that a running process is moved into, so it really runs at a share
//! of one CPU. Needs root; removed on drop (after the processes in it have ended).

use std::path::PathBuf;

pub struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    /// A group allowing `share` of one CPU (e.g. 0.3) in 10 ms periods.
    pub fn new(name: &str, share: f64) -> Result<CpuQuota, String> {
        let period = 10_000u64;
        let quota = (share * period as f64) as u64;
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let unique = format!("rendermesh-test-{name}-{}", std::process::id());
        if v2.join("cgroup.controllers").exists() {
            let control = v2.join("cgroup.subtree_control");
            let on = std::fs::read_to_string(&control).unwrap_or_default();
            if !on.split_whitespace().any(|c| c == "cpu") {
                std::fs::write(&control, "+cpu")
                    .map_err(|e| format!("enabling the cpu controller: {e}"))?;
            }
            let dir = v2.join(unique);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))
                .map_err(|e| format!("cpu.max: {e}"))?;
            return Ok(CpuQuota { dir });
        }
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        if !v1.join("cpu.cfs_quota_us").exists() {
            return Err("no cgroup cpu controller under /sys/fs/cgroup".into());
        }
        let dir = v1.join(unique);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())
            .and_then(|_| std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()))
            .map_err(|e| format!("cpu.cfs_quota_us: {e}"))?;
        Ok(CpuQuota { dir })
    }

    /// Move process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.dir.display()));
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
