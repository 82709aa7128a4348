//! `/metrics`: two real nodes on loopback. The scrape parses clean with `promtool check
//! metrics` (Debian's `prometheus` package, tests/deps.sh), needs the control token unless
//! `metrics_open`, and its counters move by the truth as a transcode runs across both nodes:
//! one job finished, every shard finished and timed, bytes fetched and served on both nodes,
//! cache lookups made. No label names a file or a job.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mesh::*;
use common::*;

/// One answer of `GET /metrics`.
struct Scrape {
    status: u16,
    content_type: String,
    body: String,
}

fn get_metrics(node: &Daemon, token: Option<&str>, accept: Option<&str>) -> Scrape {
    let mut s = std::net::TcpStream::connect(&node.addr).expect("connect to the control API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = String::from("GET /metrics HTTP/1.0\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(a) = accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Scrape {
        status,
        content_type,
        body: body.to_string(),
    }
}

fn token(node: &Daemon) -> String {
    std::fs::read_to_string(node.data_dir.join("control.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// Scrape `node` with its token; the answer must be 200 in the Prometheus text format.
fn scrape(node: &Daemon) -> String {
    let s = get_metrics(node, Some(&token(node)), None);
    assert_eq!(s.status, 200, "{}", s.body);
    assert!(
        s.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        s.content_type
    );
    s.body
}

/// `promtool check metrics` on `text` (saved in `dir`): it must pass without a word.
/// promtool missing is a failure, not a skip (tests/deps.sh installs it).
fn promtool_check(dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool is installed (Debian package prometheus, tests/deps.sh)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {}: {said}",
        file.display()
    );
}

/// Samples of a scrape: `name` → (labels, value) rows.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").expect("a label");
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

/// The value of the series `name` whose labels include `labels`, summed (0 when absent).
fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.get(name)
        .map(|rows| {
            rows.iter()
                .filter(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0.0)
}

fn label_values(s: &Samples) -> Vec<String> {
    s.values()
        .flatten()
        .flat_map(|(l, _)| l.values().cloned())
        .collect()
}

#[test]
fn metrics_parse_need_the_token_and_count_a_job_across_two_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start_cfg(tmp.path(), "a", &key, &[], "", &[]);
    let caps = a.data_dir.join("caps.json");
    wait_for(Duration::from_secs(120), || caps.exists())
        .unwrap_or_else(|| panic!("a never calibrated: {}", a.log()));
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    std::fs::copy(&caps, tmp.path().join("b").join("caps.json")).unwrap();
    let b = start(tmp.path(), "b", &key, &[a.mesh_addr()]);
    let nodes = vec![a, b];
    meet(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);

    // without the token: 401, one line
    let denied = get_metrics(a, None, None);
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(denied.body.trim().lines().count(), 1, "{}", denied.body);
    assert_eq!(get_metrics(a, Some("wrong"), None).status, 401);

    // a scraper that asks for OpenMetrics gets it
    let om = get_metrics(
        a,
        Some(&token(a)),
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert_eq!(om.status, 200);
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);

    let before_text = scrape(a);
    promtool_check(tmp.path(), "a-before.prom", &before_text);
    let before = parse(&before_text);
    let before_b = parse(&scrape(b));
    assert_eq!(
        value(&before, "rendermesh_peers_up", &[]),
        1.0,
        "{before_text}"
    );
    assert_eq!(value(&before, "rendermesh_slots", &[]), 1.0);
    assert_eq!(
        value(&before, "rendermesh_mesh_slots", &[]),
        2.0,
        "{before_text}"
    );
    assert_eq!(
        value(
            &before,
            "rendermesh_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        value(&before, "rendermesh_encoder_frames_per_second", &[]) > 0.0,
        "no measured speed: {before_text}"
    );
    let done = [("kind", "transcode"), ("state", "done")];
    let lookups = |s: &Samples| value(s, "rendermesh_cache_lookups_total", &[]);

    // a transcode through a, over both nodes
    let src = clip_720p_open_gop(tmp.path(), 8);
    let out = tmp.path().join("out.mp4");
    let o = transcode_1s(&a.data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), a.log());
    let job = last_job(a);
    assert_eq!(job["state"], "Done", "{job}");
    let shards = job["shards"].as_array().unwrap();
    let ran = shards.iter().filter(|s| s["state"] == "Done").count() as f64;
    assert_eq!(ran as usize, shards.len(), "{job}");
    assert!(shards.len() >= 2, "{job}");
    assert!(peers_of(&job).contains("b"), "b ran no shard: {job}");

    let after_text = scrape(a);
    promtool_check(tmp.path(), "a-after.prom", &after_text);
    let after = parse(&after_text);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        moved("rendermesh_jobs_finished_total", &done),
        1.0,
        "{after_text}"
    );
    assert_eq!(
        moved("rendermesh_jobs_finished_total", &[]),
        1.0,
        "{after_text}"
    );
    assert_eq!(
        moved("rendermesh_shards_finished_total", &done),
        ran,
        "{after_text}"
    );
    assert_eq!(
        moved("rendermesh_shards_finished_total", &[]),
        ran,
        "{after_text}"
    );
    let transcode = [("kind", "transcode")];
    assert_eq!(
        moved("rendermesh_shard_duration_seconds_count", &transcode),
        ran,
        "{after_text}"
    );
    assert_eq!(
        moved("rendermesh_job_duration_seconds_count", &transcode),
        1.0,
        "{after_text}"
    );
    assert!(moved("rendermesh_job_duration_seconds_sum", &transcode) > 0.0);
    assert_eq!(value(&after, "rendermesh_jobs", &done), 1.0, "{after_text}");
    assert_eq!(
        value(&after, "rendermesh_shards", &done),
        ran,
        "{after_text}"
    );
    // a served the chunks b ran, and fetched b's segments back
    assert!(
        moved("rendermesh_served_bytes_total", &[]) > 0.0,
        "{after_text}"
    );
    assert!(
        moved("rendermesh_fetched_bytes_total", &[]) > 0.0,
        "{after_text}"
    );
    assert!(lookups(&after) > lookups(&before), "{after_text}");
    // and b the other way round; b coordinates nothing
    let after_b_text = scrape(b);
    promtool_check(tmp.path(), "b-after.prom", &after_b_text);
    let after_b = parse(&after_b_text);
    for name in [
        "rendermesh_fetched_bytes_total",
        "rendermesh_served_bytes_total",
    ] {
        assert!(
            value(&after_b, name, &[]) > value(&before_b, name, &[]),
            "{name} on b: {after_b_text}"
        );
    }
    assert_eq!(value(&after_b, "rendermesh_jobs_finished_total", &[]), 0.0);

    // no label names a file or a job
    let id = job["id"].as_str().unwrap().to_string();
    for text in [&after_text, &after_b_text] {
        assert!(!text.contains(&id), "a job id in the metrics: {text}");
        assert!(
            !text.contains(tmp.path().to_str().unwrap()),
            "a path in the metrics: {text}"
        );
    }
    for v in label_values(&after)
        .into_iter()
        .chain(label_values(&after_b))
    {
        assert!(
            !v.starts_with('/') && !v.contains(".mp4") && v != id,
            "label value {v:?}"
        );
    }
    no_panic(&nodes);
}

#[test]
fn metrics_open_lets_a_scrape_in_without_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let open = Daemon::start_with(
        &tmp.path().join("open"),
        "listen = \"/ip4/127.0.0.1/tcp/0\"\nslots = 1\nmetrics_open = true\n",
    );
    let s = get_metrics(&open, None, None);
    assert_eq!(s.status, 200, "{}", s.body);
    promtool_check(tmp.path(), "open.prom", &s.body);
    // the rest of the control API still wants the token
    let jobs = get_metrics_path(&open, "/v1/jobs");
    assert_eq!(jobs, 401);
}

/// The status of `GET path` without a token.
fn get_metrics_path(node: &Daemon, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(&node.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap()
}
