//! The dashboard: a real headless Chromium on the page of one node of a real three-node mesh
//! (the whole mesh shows, a job of another node rises live and ends with its shard table;
//! a cancel from the page stops the job on every node), and its guards, over plain HTTP:
//! actions need a session, its anti-forgery token and this site's origin; a LAN listener
//! shows nothing without a login; the token and the password hash stay private.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::browser::{Browser, Page};
use common::http::{csrf, login, request};
use common::mesh::*;
use common::*;

/// These tests start three nodes and a browser: one at a time on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn token(node: &Daemon) -> String {
    std::fs::read_to_string(node.data_dir.join("control.token"))
        .unwrap()
        .trim()
        .to_string()
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Open `node`'s dashboard and log in through its form, as a person would.
fn open_logged_in(browser: &Browser, node: &Daemon) -> Page {
    let page = browser.open(&format!("http://{}/", node.addr));
    page.wait_for(
        "document.getElementById('secret') !== null",
        Duration::from_secs(10),
    );
    page.wait_load(|| {
        page.eval(&format!(
            "document.getElementById('secret').value = {:?}; document.getElementById('login').submit(); true",
            token(node)
        ))
    });
    let at = page.eval("location.href + ' ' + document.body.innerText.slice(0, 300)");
    assert!(
        at.as_str().unwrap().contains("Nodes"),
        "the login did not lead to the dashboard: {at}\n{}",
        node.log()
    );
    page
}

/// The names in the page's node table, with their states.
fn node_names(page: &Page) -> Vec<(String, String)> {
    let v = page.eval(
        "[...document.querySelectorAll('#nodes tbody tr')].map(r => [r.querySelector('.name').textContent, r.dataset.state])",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_page_of_one_node_shows_the_mesh_and_a_job_of_another_live() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // b and c run their shards for a peer a little slower, so the job lasts long enough to
    // be watched
    let nodes = three_env(tmp.path(), "", &[("RENDERMESH_FAULT", "slow-shards=40")]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let browser = Browser::launch();
    let page = open_logged_in(&browser, a);

    // every node of the mesh, up
    page.wait_for(
        "document.querySelectorAll('#nodes tbody tr[data-state=up]').length === 3",
        Duration::from_secs(15),
    );
    let names: BTreeSet<String> = node_names(&page)
        .into_iter()
        .map(|(n, _)| n.trim_end_matches(" (this node)").to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"].map(String::from).into(), "{names:?}");
    page.mark();

    // a transcode submitted on b shows on a's page and rises without a reload
    let src = clip_720p_open_gop(tmp.path(), 16);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&b.data_dir, &src, &out);
    let row = "document.querySelector('#jobs tbody tr[data-job]')";
    page.wait_for(
        &format!("{row} !== null && {row}.querySelector('.progress') !== null"),
        Duration::from_secs(30),
    );
    let pct = |page: &Page| -> (i64, String) {
        let v = page.eval(&format!(
            "[Number({row}.querySelector('.progress').dataset.pct), {row}.dataset.state]"
        ));
        (v[0].as_i64().unwrap(), v[1].as_str().unwrap().to_string())
    };
    let mut seen = vec![pct(&page)];
    while seen.last().unwrap().1 != "Done" {
        assert!(
            seen.len() < 600,
            "the job never ended on a's page: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = pct(&page);
        if now != *seen.last().unwrap() {
            seen.push(now);
        }
    }
    let values: Vec<i64> = seen.iter().map(|(p, _)| *p).collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {seen:?}"
    );
    let between: Vec<i64> = values
        .iter()
        .copied()
        .filter(|p| *p > 0 && *p < 100)
        .collect();
    assert!(
        !between.is_empty() && values[0] < *between.last().unwrap(),
        "no rise was seen between start and end: {seen:?}"
    );
    assert!(page.still_marked(), "the page was reloaded");
    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&out), video_frames(&src));
    let job_id = last_job(b)["id"].as_str().unwrap().to_string();
    let shown = page.eval(&format!("{row}.dataset.job"));
    assert_eq!(shown, job_id.as_str());
    let coordinator = page.eval(&format!("{row}.children[6].textContent"));
    assert_eq!(coordinator, "b");

    // its page: the shard table shows the three peers
    page.eval(&format!("{row}.querySelector('a').click(); true"));
    page.wait_for(
        "document.querySelectorAll('#shards tbody tr').length > 0 && \
         [...document.querySelectorAll('#shards tbody tr')].every(r => r.dataset.state === 'Done')",
        Duration::from_secs(15),
    );
    let peers = page.eval(
        "[...new Set([...document.querySelectorAll('#shards tbody td.peer')].map(t => t.textContent))].sort()",
    );
    assert_eq!(peers, serde_json::json!(["a", "b", "c"]), "{peers}");
    let truth = peers_of(&last_job(b));
    assert_eq!(truth.len(), 3);
    let rows = page.eval("document.querySelectorAll('#shards tbody tr').length");
    assert_eq!(
        rows.as_u64().unwrap() as usize,
        last_job(b)["shards"].as_array().unwrap().len()
    );
    assert!(page.still_marked(), "opening the job reloaded the page");
    page.screenshot(&screenshot_path("dashboard-job.png"));
    page.eval("location.hash = ''; true");
    page.wait_for(
        "!document.getElementById('mesh-view').hidden && document.querySelectorAll('#nodes tbody tr').length === 3",
        Duration::from_secs(10),
    );
    page.screenshot(&screenshot_path("dashboard.png"));
    // on a phone: nothing wider than the screen but the tables' own scroll boxes
    page.set_viewport(390, 844, true);
    page.wait_for(
        "document.documentElement.scrollWidth <= 391",
        Duration::from_secs(5),
    );
    page.screenshot(&screenshot_path("dashboard-phone.png"));
    let errors = page.errors();
    assert!(errors.is_empty(), "the page threw: {errors:?}");
    no_panic(&nodes);
}

/// Shards running on `node` now (its own row on its own dashboard data).
fn running_on(node: &Daemon) -> u64 {
    let v = node.api_get("/v1/mesh").expect("mesh view");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["me"] == true)
        .and_then(|n| n["running"].as_u64())
        .unwrap()
}

#[test]
fn a_cancel_from_the_page_stops_the_job_on_every_node_and_a_drain_takes_one_out() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // slow peers: the job is still running when the page cancels it
    let nodes = three_env(tmp.path(), "", &[("RENDERMESH_FAULT", "slow-shards=300")]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let src = clip_720p_open_gop(tmp.path(), 12);
    let out = tmp.path().join("out.mp4");
    // submitted on b, cancelled from a's page
    let submit = transcode_1s_in_background(&b.data_dir, &src, &out);
    // a and c run shards of b's job
    assert!(
        wait_for(Duration::from_secs(60), || [&nodes[0], &nodes[2]]
            .iter()
            .all(|n| running_on(n) > 0))
        .is_some(),
        "the job never ran on the peers: {}",
        b.log()
    );
    let browser = Browser::launch();
    let page = open_logged_in(&browser, a);
    let button = "document.querySelector('#jobs button[data-action=cancel]')";
    page.wait_for(
        &format!("{button} !== null && !{button}.disabled"),
        Duration::from_secs(15),
    );
    // a first click only arms the button
    page.eval(&format!("{button}.click(); true"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(last_job(b)["state"] == "Running", "{}", last_job(b));
    page.eval(&format!("{button}.click(); true"));
    page.wait_for(
        "document.querySelector('#jobs tbody tr[data-job]').dataset.state === 'Cancelled'",
        Duration::from_secs(15),
    );
    let job = last_job(b);
    assert_eq!(job["state"], "Cancelled", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("cancelled by"),
        "{job}"
    );
    // no shard left running anywhere, and none starts later
    assert!(
        wait_for(Duration::from_secs(10), || nodes
            .iter()
            .all(|n| running_on(n) == 0))
        .is_some(),
        "shards still run after the cancel: {:?}",
        nodes.iter().map(running_on).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        nodes.iter().map(running_on).collect::<Vec<_>>(),
        vec![0, 0, 0]
    );
    let o = submit.join().unwrap();
    assert!(!o.status.success(), "the submit did not see the cancel");
    assert!(stderr(&o).contains("cancelled"), "{}", stderr(&o));
    assert!(!out.exists(), "a cancelled job left an output");
    // the message line says what happened
    page.wait_for(
        "document.getElementById('message').textContent.includes('cancelled')",
        Duration::from_secs(5),
    );

    // run again from a's page: b starts the same job anew; a's CLI cancels it on b
    let rerun = "document.querySelector('#jobs button[data-action=rerun]')";
    page.wait_for(
        &format!("{rerun} !== null && !{rerun}.disabled"),
        Duration::from_secs(10),
    );
    page.eval(&format!("{rerun}.click(); true"));
    let said = page.wait_for(
        "(document.getElementById('message').textContent.match(/running again as job ([0-9a-f]{16})/) || [])[1] || ''",
        Duration::from_secs(10),
    );
    let again = said.as_str().unwrap().to_string();
    let first = job["id"].as_str().unwrap();
    assert_ne!(again, first);
    let state_on_b =
        |id: &str| b.api_get(&format!("/v1/jobs/{id}")).unwrap_or_default()["state"].clone();
    assert!(
        wait_for(Duration::from_secs(30), || state_on_b(&again) == "Running").is_some(),
        "the job run again does not run on b: {}",
        state_on_b(&again)
    );
    assert_eq!(
        b.api_get(&format!("/v1/jobs/{again}")).unwrap()["inputs"],
        job["inputs"]
    );
    let o = rendermesh(&a.data_dir, &["cancel", &again]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cancelled on b"), "{}", stdout(&o));
    assert_eq!(state_on_b(&again), "Cancelled");
    assert!(
        wait_for(Duration::from_secs(10), || nodes
            .iter()
            .all(|n| running_on(n) == 0))
        .is_some(),
        "shards still run after the second cancel"
    );

    // c drained from a's page: it leaves the mesh, and the page shows it lost
    let c = &nodes[2];
    let drain = format!(
        "document.querySelector('#nodes tr[data-peer=\"{}\"] button[data-action=drain]')",
        c.peer_id()
    );
    page.wait_for(&format!("{drain} !== null"), Duration::from_secs(5));
    page.eval(&format!("{drain}.click(); true"));
    page.eval(&format!("{drain}.click(); true"));
    page.wait_for(
        &format!(
            "document.querySelector('#nodes tr[data-peer=\"{}\"]').dataset.state === 'lost'",
            c.peer_id()
        ),
        Duration::from_secs(30),
    );
    assert!(c.log().contains("asked to drain"), "{}", c.log());
    let errors = page.errors();
    assert!(errors.is_empty(), "the page threw: {errors:?}");
    no_panic(&nodes);
}

#[test]
fn actions_need_a_session_its_token_and_this_sites_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Daemon::start(&tmp.path().join("n"));
    let addr = node.addr.clone();
    let path = "/v1/jobs/00000000000000ff/cancel";
    let json = [("Content-Type", "application/json")];

    // nothing: refused before the body is read
    let a = request(&addr, "POST", path, &json, "{not json");
    assert_eq!(a.status, 401, "{}", a.body);

    // a wrong secret gives no session
    let wrong = request(
        &addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "secret=guess",
    );
    assert_eq!(wrong.status, 303);
    assert_eq!(wrong.header("location"), Some("/?failed=1"));
    assert!(wrong.cookie("rendermesh_session").is_none());
    // a login posted by another site's page is refused
    let forged = request(
        &addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        &format!("secret={}", token(&node)),
    );
    assert_eq!(forged.status, 403);
    assert!(forged.cookie("rendermesh_session").is_none());

    let cookie = login(&addr, &token(&node)).expect("a session cookie");
    let set = request(
        &addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("secret={}", token(&node)),
    );
    let set_cookie = set.header("set-cookie").unwrap().to_ascii_lowercase();
    assert!(set_cookie.contains("httponly"), "{set_cookie}");
    assert!(set_cookie.contains("samesite=strict"), "{set_cookie}");
    let c = format!("rendermesh_session={cookie}");
    let token_ = csrf(&addr, &cookie);

    // the session alone may look…
    assert_eq!(
        request(&addr, "GET", "/v1/mesh", &[("Cookie", &c)], "").status,
        200
    );
    // …but not act: without its anti-forgery token, with a wrong one, from another site
    for headers in [
        vec![("Cookie", c.as_str())],
        vec![("Cookie", c.as_str()), ("X-Rendermesh-Csrf", "0000")],
        vec![
            ("Cookie", c.as_str()),
            ("X-Rendermesh-Csrf", token_.as_str()),
            ("Origin", "http://evil.example"),
        ],
        vec![
            ("Cookie", c.as_str()),
            ("X-Rendermesh-Csrf", token_.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ] {
        let a = request(&addr, "POST", path, &headers, "{}");
        assert_eq!(a.status, 401, "{headers:?}: {}", a.body);
        let s = request(&addr, "POST", "/v1/jobs", &headers, "{}");
        assert_eq!(s.status, 401, "submit {headers:?}: {}", s.body);
    }
    // the page's own request goes through (and finds no such job)
    let own_origin = format!("http://{addr}");
    let ok = request(
        &addr,
        "POST",
        path,
        &[
            ("Cookie", c.as_str()),
            ("X-Rendermesh-Csrf", token_.as_str()),
            ("Origin", own_origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "{}",
    );
    assert_eq!(ok.status, 409, "{}", ok.body);
    assert!(ok.body.contains("knows job"), "{}", ok.body);

    // logged out: the cookie is worth nothing
    let out = request(&addr, "POST", "/logout", &[("Cookie", c.as_str())], "");
    assert_eq!(out.status, 303);
    assert_eq!(
        request(&addr, "GET", "/v1/mesh", &[("Cookie", &c)], "").status,
        401
    );

    // the CLI's cancel: one clear line for a job nobody knows
    let o = rendermesh(&node.data_dir, &["cancel", "00000000000000ff"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no node of the mesh knows job"),
        "{}",
        stderr(&o)
    );
    let o = rendermesh(&node.data_dir, &["cancel", "not-a-job"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not a job id"), "{}", stderr(&o));
    no_panic(&[node]);
}

/// `rendermesh passwd` with `password` on its standard input: the config line it prints.
fn passwd_line(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn a_lan_listener_shows_nothing_without_a_login_and_the_secrets_stay_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    std::fs::create_dir_all(&dir).unwrap();
    let line = passwd_line("render farm 42");
    assert!(
        line.starts_with("dashboard_password = \"$argon2id$"),
        "{line}"
    );
    assert!(!line.contains("render farm 42"));
    let config = format!(
        "mdns = false\nname = \"lan\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\ndashboard_listen = \"0.0.0.0:0\"\n{line}\n"
    );
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, &config).unwrap();
    // a hash other users can read: the node refuses to start, in one line
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .args(["node", "--control-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("any user can read it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));

    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let node = Daemon::spawn(&dir, &[]);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("control.json")).unwrap()).unwrap();
    let lan = info["dashboard"]
        .as_str()
        .expect("the LAN address")
        .to_string();
    assert!(lan.starts_with("0.0.0.0:"), "{lan}");
    let addr = lan.replace("0.0.0.0", "127.0.0.1");

    // the secrets: readable by the node's user and group only
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("control.token")) & 0o007, 0, "token file");
    assert_eq!(mode(&cfg) & 0o007, 0, "config with the password hash");

    // no view without a login
    for path in [
        "/v1/mesh",
        "/v1/events",
        "/v1/peers",
        "/v1/jobs",
        "/v1/session",
    ] {
        let a = request(&addr, "GET", path, &[], "");
        assert_eq!(a.status, 401, "{path}: {}", a.body);
    }
    let page = request(&addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"secret\""), "{}", page.body);
    assert!(
        !page.body.contains("id=\"nodes\""),
        "the page showed the mesh"
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // the password logs in, a wrong one does not
    assert!(login(&addr, "render+farm+43").is_none());
    let cookie = login(&addr, "render+farm+42").expect("the password logs in");
    let c = format!("rendermesh_session={cookie}");
    let view = request(&addr, "GET", "/v1/mesh", &[("Cookie", &c)], "");
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.json()["node"], "lan");
    let full = request(&addr, "GET", "/", &[("Cookie", &c)], "");
    assert!(full.body.contains("id=\"nodes\""));
    let token_before = token(&node);
    drop(node);

    // a trusted LAN: views open, actions still closed
    std::fs::write(&cfg, format!("{config}dashboard_open = true\n")).unwrap();
    let node = Daemon::spawn(&dir, &[]);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("control.json")).unwrap()).unwrap();
    let addr = info["dashboard"]
        .as_str()
        .unwrap()
        .replace("0.0.0.0", "127.0.0.1");
    let view = request(&addr, "GET", "/v1/mesh", &[], "");
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.json()["can_act"], false);
    // the token outlives a restart (a scraper keeps its copy); sessions do not
    assert_eq!(token(&node), token_before);
    let old = request(&addr, "GET", "/v1/session", &[("Cookie", c.as_str())], "");
    assert_eq!(
        old.status, 200,
        "open views answer, but with no session: {}",
        old.body
    );
    assert!(old.json()["csrf"].is_null(), "{}", old.body);
    let act = request(
        &addr,
        "POST",
        &format!("/v1/nodes/{}/drain", node.peer_id()),
        &[],
        "",
    );
    assert_eq!(act.status, 401, "{}", act.body);
    let submit = request(&addr, "POST", "/v1/jobs", &[], "{}");
    assert_eq!(submit.status, 401, "{}", submit.body);
    no_panic(&[node]);
}
