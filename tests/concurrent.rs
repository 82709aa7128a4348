//! Several jobs on one mesh at once, each coordinated by another node: every node bids with
//! its slot held by the others' shards, so a coordinator often has shards left that nobody
//! takes *now*. It must wait for slots to free (its 500 ms tick awards them) — it once
//! retried at once, recursively, until the node's stack overflowed and it aborted.

use crate::common::mesh::three;
use crate::common::*;

#[test]
fn three_jobs_coordinated_by_three_nodes_at_once_all_finish_and_no_node_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three(tmp.path());
    let media = tmp.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let jobs: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let src = small_clip(&media, &format!("c{i}.mp4"), 8, &["-vf", "scale=640:360"]);
            let out = tmp.path().join(format!("out{i}.mp4"));
            let data = n.data_dir.clone();
            let (s, o) = (src.clone(), out.clone());
            let t = std::thread::spawn(move || {
                rendermesh(&data, &transcode_args(&s, &o, &["--preset", "veryfast"]))
            });
            (src, out, t)
        })
        .collect();
    for (src, out, t) in jobs {
        let o = t.join().unwrap();
        let story: Vec<String> = nodes.iter().map(|n| n.story()).collect();
        assert!(
            o.status.success(),
            "{}{}\n{}",
            stdout(&o),
            stderr(&o),
            story.join("\n")
        );
        assert_eq!(video_frames(&out), video_frames(&src));
    }
    for n in nodes.iter_mut() {
        assert!(n.alive(), "a node died: {}", n.story());
        assert!(!n.log().contains("overflowed its stack"), "{}", n.story());
    }
    no_panic(&nodes);
}
