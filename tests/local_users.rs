//! The users of a box and their node: a node running as its own unprivileged user; a member of
//! its group whose home is private (0700) transcodes and scene-detects a file of that home
//! through the local socket (the command opens the file and passes it open); a file the node
//! could read and that user may not is refused, both by the command and when a hand-made
//! request names it by path; a user outside the group cannot reach the node. Needs root
//! (it makes three users and removes them).

use crate::common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Three users made for this test, removed on drop.
struct Users {
    node: String,
    member: String,
    outsider: String,
}

impl Users {
    fn make(home: &Path) -> Users {
        let tag = std::process::id() % 100_000;
        let u = Users {
            node: format!("rmnode{tag}"),
            member: format!("rmmember{tag}"),
            outsider: format!("rmoutside{tag}"),
        };
        u.remove();
        let useradd = |args: &[&str]| {
            let o = Command::new("useradd").args(args).output().unwrap();
            assert!(o.status.success(), "useradd {args:?}: {}", stderr(&o));
        };
        useradd(&["--system", "--user-group", "--no-create-home", &u.node]);
        for (name, groups) in [(&u.member, u.node.as_str()), (&u.outsider, "")] {
            let dir = home.join(name);
            let mut args = vec!["--user-group", "--create-home", "--home-dir"];
            let dir_s = dir.to_str().unwrap().to_string();
            args.push(&dir_s);
            if !groups.is_empty() {
                args.extend(["--groups", groups]);
            }
            args.push(name);
            useradd(&args);
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        u
    }

    fn remove(&self) {
        for name in [&self.member, &self.outsider, &self.node] {
            let _ = Command::new("userdel").arg(name).output();
            let _ = Command::new("groupdel").arg(name).output();
        }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.remove();
    }
}

fn ids(user: &str) -> (u32, u32) {
    let o = Command::new("id").args(["-u", user]).output().unwrap();
    let uid = stdout(&o).trim().parse().unwrap();
    let o = Command::new("id").args(["-g", user]).output().unwrap();
    (uid, stdout(&o).trim().parse().unwrap())
}

/// `command` run as `user` (with that user's groups and home).
fn as_user(user: &str, home: &Path, command: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(command)
        .env("HOME", home)
        .env("RENDERMESH_LOG", "warn")
        .current_dir(home);
    c
}

fn chown(path: &Path, user: &str) {
    let (uid, gid) = ids(user);
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

struct Node {
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn member_runs(users: &Users, home: &Path, data: &Path, args: &[&str]) -> Output {
    as_user(&users.member, home, &bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_member_of_the_nodes_group_submits_files_of_a_private_home_and_nothing_more() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        assert!(
            !must_run(),
            "the local users test needs root and setpriv (util-linux)"
        );
        eprintln!("SKIPPED: local users test: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let users = Users::make(tmp.path());
    let member_home = tmp.path().join(&users.member);
    let outsider_home = tmp.path().join(&users.outsider);

    // the node's data dir: its user's, open to its group (as the service has it)
    let data = tmp.path().join("node-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    chown(&data, &users.node);
    let cfg = data.join("node.toml");
    std::fs::write(&cfg, "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n").unwrap();
    chown(&cfg, &users.node);
    let log = std::fs::File::create(tmp.path().join("node.log")).unwrap();
    let (node_uid, node_gid) = ids(&users.node);
    let child = Command::new("setpriv")
        .args([
            "--reuid",
            &users.node,
            "--regid",
            &users.node,
            "--init-groups",
            "--",
        ])
        .arg(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .args(["node", "--control-listen", "127.0.0.1:0"])
        .env("HOME", &data)
        .env("RENDERMESH_LOG", "info")
        .env("RENDERMESH_CALIBRATION_FRAMES", "2")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = Node { child };
    let node_log = || std::fs::read_to_string(tmp.path().join("node.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sock = data.join("control.sock");
    while !(sock.exists() && data.join("control.json").exists()) {
        assert!(
            Instant::now() < deadline,
            "the node did not start: {}",
            node_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (node_uid, node_gid));
    assert_eq!(
        meta.mode() & 0o777,
        0o660,
        "the socket is for the node's group"
    );
    let token = std::fs::metadata(data.join("control.token")).unwrap();
    assert_eq!(
        token.mode() & 0o777,
        0o600,
        "the token is the node user's alone"
    );

    // a clip in the member's private home, private itself: the node's user may not read it
    let clip = scenes_clip(&member_home);
    let clip_s = clip.to_str().unwrap().to_string();
    chown(&clip, &users.member);
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = as_user(&users.node, &data, Path::new("/bin/cat"))
        .arg(&clip)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the node's user can read the member's clip"
    );

    // `submit KIND CLIP FLAG OUT` as the member, in 4 s shards
    let submit = |kind: &str, flag: &str, out: &Path| {
        let args = [
            "submit",
            kind,
            clip_s.as_str(),
            flag,
            out.to_str().unwrap(),
            "--chunk-seconds",
            "4",
            "-q",
        ];
        let o = member_runs(&users, &member_home, &data, &args);
        assert!(o.status.success(), "{}\n{}", stderr(&o), node_log());
    };
    let out = member_home.join("out.mkv");
    submit("transcode", "-o", &out);
    assert_eq!(video_frames(&out), SCENE_FRAMES);
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), ids(&users.member).0);

    let json = member_home.join("cuts.json");
    submit("scenes", "--json", &json);
    let cuts = cuts_of_json(&json);
    assert_eq!(cuts.len(), SCENE_CUTS.len(), "{cuts:?}");
    for (c, t) in cuts.iter().zip(SCENE_CUTS) {
        assert!(c.abs_diff(t) <= 1, "{cuts:?}");
    }
    // the cut list names the member's file, not the node's handle of it
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(text.contains("\"title\": \"scenes.mp4\""), "{text}");
    assert!(!text.contains("rendermesh-fd:"), "{text}");

    // a file the node's user reads and the member may not
    let secret_dir = tmp.path().join("node-only");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(&secret_dir, &users.node);
    let secret = small_clip(&secret_dir, "secret.mp4", 1, &[]);
    chown(&secret, &users.node);
    let secret_s = secret.to_str().unwrap().to_string();
    let o = member_runs(
        &users,
        &member_home,
        &data,
        &[
            "submit",
            "scenes",
            &secret_s,
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("secret.mp4") && stderr(&o).contains("ermission denied"),
        "{}",
        stderr(&o)
    );
    // a hand-made request that names it by path, on the socket, as the member
    let ask = serde_json::json!({
        "method": "POST",
        "path": "/v1/jobs",
        "body": {"kind": "checksum", "params": {"inputs": [secret_s], "rounds": 1}},
        "files": []
    })
    .to_string();
    let script = format!(
        "import socket,struct,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({sock:?})\nb={ask:?}.encode()\ntry:\n  s.sendall(struct.pack('>I',len(b))+b)\nexcept BrokenPipeError:\n  pass\nd=b''\nwhile True:\n  c=s.recv(65536)\n  if not c: break\n  d+=c\nsys.stdout.write(d[4:].decode('utf-8','replace'))\n",
        sock = sock.to_str().unwrap()
    );
    let o = as_user(&users.member, &member_home, Path::new("/usr/bin/python3"))
        .args(["-c", &script])
        .output()
        .unwrap();
    let answer = stdout(&o);
    assert!(
        answer.contains("\"status\":400")
            && answer.contains(
                "secret.mp4: through the local socket every input is passed as an open file"
            ),
        "{answer} {}",
        stderr(&o)
    );

    // a user outside the group reaches neither the node's data dir nor its socket
    let o = as_user(&users.outsider, &outsider_home, &bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["submit", "scenes", &secret_s, "-q"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    // even with the socket's file opened to all, the node refuses by the caller's credentials
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_user(
        &users.outsider,
        &outsider_home,
        Path::new("/usr/bin/python3"),
    )
    .args(["-c", &script])
    .output()
    .unwrap();
    let answer = stdout(&o);
    assert!(
        answer.contains("\"status\":403") && answer.contains("is not in the node's group"),
        "{answer} {}",
        stderr(&o)
    );
    let jobs: serde_json::Value = {
        let o = member_runs(&users, &member_home, &data, &["status", "--json"]);
        serde_json::from_str(&stdout(&o)).unwrap_or_default()
    };
    let n = jobs.as_array().map(|a| a.len()).unwrap_or(usize::MAX);
    assert_eq!(n, 2, "only the member's two jobs ran: {jobs:#}");
    drop(node);
}
