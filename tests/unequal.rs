//! Unequal boxes on one machine: three real nodes on loopback, the third moved under a CPU
//! quota (the cgroup cpu controller, a third of one CPU) once it has started. It starts from
//! the others' calibration, so at the start of the job the mesh believes it as fast as them:
//! what it really does must come from the job's own runs. Needs root for the cgroup.
//!
//! - It gets shards in proportion to the speed it shows (frames ÷ the time its shards took),
//!   not the third of them its calibration would give it.
//! - The job's tail does not wait on it: when the last shard ends, no faster node has been
//!   idle for longer than one of its own shards (plus the coordinator's tick).

mod common;

use std::collections::BTreeMap;

use common::mesh::*;
use common::quota::CpuQuota;
use common::*;

/// Per node: (frames, seconds of shard runs, end of its last shard in ms, longest shard in ms).
fn per_node(job: &serde_json::Value) -> BTreeMap<String, (u64, f64, u64, u64)> {
    let mut out: BTreeMap<String, (u64, f64, u64, u64)> = BTreeMap::new();
    for s in job["shards"].as_array().expect("a shard table") {
        assert_eq!(s["state"], "Done", "{job}");
        let peer = s["peer"].as_str().expect("who ran it").to_string();
        let e = out.entry(peer).or_default();
        e.0 += s["frames"].as_u64().unwrap();
        e.1 += s["millis"].as_u64().unwrap() as f64 / 1000.0;
        e.2 =
            e.2.max(s["end_ms"].as_u64().expect("end_ms of a done shard"));
        e.3 = e.3.max(s["millis"].as_u64().unwrap());
    }
    out
}

#[test]
fn a_throttled_peer_gets_shards_in_proportion_to_its_speed_and_the_tail_does_not_wait_for_it() {
    // declared first, dropped last: the nodes in it have ended by then
    let quota = CpuQuota::new("unequal", 0.33).unwrap_or_else(|e| {
        panic!("this test needs a writable cgroup cpu controller (run it as root): {e}")
    });
    let tmp = tempfile::tempdir().unwrap();
    let src = clip_720p_open_gop(tmp.path(), 40);
    let nodes = three(tmp.path());
    quota.add(nodes[2].child.id());
    let out = tmp.path().join("out.mp4");
    // 40 s with a keyframe every 2 s: 20 shards of 60 frames
    let o = transcode_1s(&nodes[0].data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let job = last_job(&nodes[0]);
    let by = per_node(&job);
    eprintln!("MEASURED per node (frames, shard seconds, last end ms, longest ms): {by:?}");
    let total: u64 = by.values().map(|v| v.0).sum();
    assert_eq!(total, video_frames(&src), "{job}");
    let speed = |n: &str| by.get(n).map_or(0.0, |v| v.0 as f64 / v.1.max(1e-3));
    let all: f64 = ["a", "b", "c"].iter().map(|n| speed(n)).sum();
    let frames_c = by.get("c").map_or(0, |v| v.0) as f64;
    let fair_c = total as f64 * speed("c") / all;
    // it ran at most its fair share plus one shard: a third of the shards (what equal
    // calibrations would give it) is far more
    assert!(
        frames_c <= fair_c + 60.0,
        "the throttled node did {frames_c} frames, its speed is worth {fair_c:.0}: {by:?}\n{job}"
    );
    assert!(
        frames_c < total as f64 / 4.0,
        "the throttled node did {frames_c} of {total} frames: {by:?}"
    );
    assert!(
        speed("c") < 0.6 * speed("a").min(speed("b")),
        "the quota did not slow the node: {by:?}"
    );
    // the tail: from each faster node's last shard to the job's last, at most one of its
    // own shards and the coordinator's half-second tick
    let last = by.values().map(|v| v.2).max().unwrap();
    for fast in ["a", "b"] {
        let Some(&(_, _, end, longest)) = by.get(fast) else {
            panic!("{fast} ran no shard: {by:?}");
        };
        let idle = last - end;
        assert!(
            idle <= longest + 500,
            "{fast} sat idle {idle} ms at the tail, its longest shard took {longest} ms: {by:?}\n{job}"
        );
    }
    no_panic(&nodes);
}
