//! Bad input: one clear line naming the file and the cause, non-zero exit, no partial
//! output; a running node keeps running.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

struct Case {
    name: &'static str,
    file: PathBuf,
    /// Words the error line must contain (besides the file name).
    cause: &'static str,
}

fn bad_files(dir: &Path) -> Vec<Case> {
    let text = dir.join("notes.mp4");
    std::fs::write(
        &text,
        "these are not the frames you are looking for\n".repeat(100),
    )
    .unwrap();
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    // truncated with the index up front: frames are missing
    let fast = small_clip(dir, "fast.mp4", 4, &["-movflags", "+faststart"]);
    let bytes = std::fs::read(&fast).unwrap();
    let cut_fast = dir.join("cut-faststart.mp4");
    std::fs::write(&cut_fast, &bytes[..bytes.len() * 6 / 10]).unwrap();
    // truncated with the index at the end: the index is gone
    let plain = small_clip(dir, "plain.mp4", 4, &[]);
    let bytes = std::fs::read(&plain).unwrap();
    let cut_plain = dir.join("cut-plain.mp4");
    std::fs::write(&cut_plain, &bytes[..bytes.len() / 2]).unwrap();
    let audio = dir.join("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:r=48000",
        "-t",
        "2",
        "-c:a",
        "aac",
        audio.to_str().unwrap(),
    ]);
    // an AVI whose video fourcc no decoder knows: write MPEG-4 Part 2, then rename its tag
    let avi = dir.join("mpeg4.avi");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=10",
        "-t",
        "1",
        "-c:v",
        "mpeg4",
        avi.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&avi).unwrap();
    let mut patched = 0;
    for i in 0..bytes.len().saturating_sub(4) {
        if &bytes[i..i + 4] == b"FMP4" {
            bytes[i..i + 4].copy_from_slice(b"QQQQ");
            patched += 1;
        }
    }
    assert!(patched > 0, "no FMP4 tag to patch");
    let odd = dir.join("odd-codec.avi");
    std::fs::write(&odd, bytes).unwrap();
    vec![
        Case {
            name: "missing",
            file: dir.join("no-such-file.mp4"),
            cause: "no such file",
        },
        Case {
            name: "not media",
            file: text,
            cause: "not a media file",
        },
        Case {
            name: "zero-length",
            file: empty,
            cause: "empty file",
        },
        Case {
            name: "truncated (index first)",
            file: cut_fast,
            cause: "truncated",
        },
        Case {
            name: "truncated (index last)",
            file: cut_plain,
            cause: "truncated",
        },
        Case {
            name: "no video",
            file: audio,
            cause: "no video stream",
        },
        Case {
            name: "unsupported codec",
            file: odd,
            cause: "unsupported video codec",
        },
    ]
}

/// Exactly one line of error, naming the file and the cause; no output, no temp files.
fn assert_clean_failure(o: &std::process::Output, case: &Case, out_dir: &Path, outputs: &[&Path]) {
    assert!(!o.status.success(), "{}: exit status 0", case.name);
    let err = stderr(o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rendermesh: ") && !l.contains("mesh of one"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: expected one error line, got:\n{err}",
        case.name
    );
    let name = case.file.file_name().unwrap().to_str().unwrap();
    assert!(
        lines[0].contains(name),
        "{}: error does not name the file: {}",
        case.name,
        lines[0]
    );
    assert!(
        lines[0].contains(case.cause),
        "{}: error does not say {:?}: {}",
        case.name,
        case.cause,
        lines[0]
    );
    assert!(!err.contains("panicked"), "{}: panic: {err}", case.name);
    for p in outputs {
        assert!(
            !p.exists(),
            "{}: partial output {} left",
            case.name,
            p.display()
        );
    }
    let stray: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".rendermesh-"))
        .collect();
    assert!(
        stray.is_empty(),
        "{}: temp files left: {stray:?}",
        case.name
    );
}

#[test]
fn bad_inputs_fail_cleanly_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let outd = tmp.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let data = tmp.path().join("data");
    for case in bad_files(tmp.path()) {
        let f = case.file.to_str().unwrap();
        let out = outd.join("t.mp4");
        let o = rendermesh(
            &data,
            &["submit", "transcode", f, "-o", out.to_str().unwrap(), "-q"],
        );
        assert_clean_failure(&o, &case, &outd, &[&out]);
        let csv = outd.join("s.csv");
        let o = rendermesh(
            &data,
            &["submit", "scenes", f, "--csv", csv.to_str().unwrap(), "-q"],
        );
        assert_clean_failure(&o, &case, &outd, &[&csv]);
    }
}

#[test]
fn unwritable_output_and_unknown_codec_fail_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "ok.mp4", 1, &[]);
    let data = tmp.path().join("data");
    let s = src.to_str().unwrap();
    let missing_dir = tmp.path().join("nope/out.mp4");
    let o = rendermesh(
        &data,
        &[
            "submit",
            "transcode",
            s,
            "-o",
            missing_dir.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("out.mp4") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    let a_dir = tmp.path().join("adir.mp4");
    std::fs::create_dir(&a_dir).unwrap();
    let o = rendermesh(
        &data,
        &[
            "submit",
            "transcode",
            s,
            "-o",
            a_dir.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    let o = rendermesh(
        &data,
        &[
            "submit",
            "scenes",
            s,
            "--csv",
            missing_dir.with_extension("csv").to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let out = tmp.path().join("x.mp4");
    let o = rendermesh(
        &data,
        &[
            "submit",
            "transcode",
            s,
            "-o",
            out.to_str().unwrap(),
            "--codec",
            "mpeg2",
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown codec"), "{}", stderr(&o));
    let o = rendermesh(
        &data,
        &[
            "submit",
            "transcode",
            s,
            "-o",
            tmp.path().join("x.avi").to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown output container"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // nothing was decoded for any of these: no chunk was ever cut
    assert!(
        !data.join("cache").exists()
            || std::fs::read_dir(data.join("cache/blobs/tmp"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn a_node_survives_bad_input_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Daemon::start(&tmp.path().join("data"));
    let outd = tmp.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    for case in bad_files(tmp.path()) {
        if case.name == "missing" {
            continue; // refused by the CLI before it reaches the node
        }
        let out = outd.join("t.mp4");
        let o = rendermesh(
            &node.data_dir,
            &[
                "submit",
                "transcode",
                case.file.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "-q",
            ],
        );
        assert!(
            !stderr(&o).contains("mesh of one"),
            "went in-process instead of to the node"
        );
        assert_clean_failure(&o, &case, &outd, &[&out]);
        assert!(node.alive(), "node died on {}", case.name);
    }
    // still serving real work
    let src = small_clip(tmp.path(), "good.mp4", 2, &[]);
    let out = outd.join("good-out.mp4");
    let o = rendermesh(
        &node.data_dir,
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&out), 50);
    no_panic(&[&node]);
}

#[test]
fn a_device_or_a_pipe_as_input_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fifo = tmp.path().join("pipe.mp4");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    for input in [std::path::Path::new("/dev/zero"), fifo.as_path()] {
        for kind in ["scenes", "transcode", "checksum"] {
            let out = tmp.path().join("out.mp4");
            let mut args = vec!["submit", kind, input.to_str().unwrap(), "--local", "-q"];
            if kind == "transcode" {
                args.extend(["-o", out.to_str().unwrap()]);
            }
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let data = data.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let _ = tx.send(rendermesh(&data, &args));
            });
            let o = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("submit {kind} {} hangs", input.display()));
            assert!(!o.status.success(), "{kind} {}", input.display());
            let err = stderr(&o);
            assert!(err.contains("not a regular file"), "{kind}: {err}");
            let lines = err
                .lines()
                .filter(|l| l.starts_with("rendermesh: ") && !l.contains("mesh of one"))
                .count();
            assert_eq!(lines, 1, "{kind}: {err}");
            assert!(!out.exists());
        }
    }
}

#[test]
fn the_input_as_its_own_output_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = small_clip(tmp.path(), "a.mp4", 1, &[]);
    let before = std::fs::read(&src).unwrap();
    // the same file, named directly and through another path
    let other = tmp.path().join(".").join("a.mp4");
    for out in [&src, &other] {
        let o = rendermesh(
            &data,
            &[
                "submit",
                "transcode",
                src.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--local",
                "-q",
            ],
        );
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("is the input file"), "{err}");
        assert_eq!(std::fs::read(&src).unwrap(), before, "the source changed");
    }
}

#[test]
fn absurd_chunk_lengths_are_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = small_clip(tmp.path(), "a.mp4", 1, &[]);
    for v in ["0", "nan", "1e9", "inf", "0.1", "abc", "-1"] {
        let arg = format!("--chunk-seconds={v}");
        let o = rendermesh(
            &data,
            &[
                "submit",
                "scenes",
                src.to_str().unwrap(),
                &arg,
                "--local",
                "-q",
            ],
        );
        assert!(!o.status.success(), "{v} was accepted");
        let err = stderr(&o);
        assert!(
            err.contains("out of range") || err.contains("not a number"),
            "{v}: {err}"
        );
    }
}

/// What the local socket's caller sends is untrusted too: garbage, a frame that claims to be
/// huge, a request that promises files and sends none, a call outside the API. Each gets one
/// line (or a closed connection), and the node goes on serving.
#[test]
fn garbled_calls_on_the_local_socket_get_one_line_and_the_node_lives() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Daemon::start(&tmp.path().join("data"));
    let sock = node.data_dir.join("control.sock");
    let call = |bytes: &[u8]| -> String {
        let mut s = UnixStream::connect(&sock).expect("the local socket");
        s.set_read_timeout(Some(std::time::Duration::from_secs(40)))
            .unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(answer.get(4..).unwrap_or_default()).into_owned()
    };
    let frame = |json: &str| {
        let mut b = (json.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "over the"),
        ("huge", 0xffff_fff0u32.to_be_bytes().to_vec(), "over the"),
        ("not json", frame("{{{{"), "not a frame"),
        (
            "files promised, none sent",
            frame(r#"{"method":"POST","path":"/v1/jobs","files":["/a","/b"]}"#),
            "the passed files",
        ),
        (
            "outside the API",
            frame(r#"{"method":"GET","path":"/../control.token"}"#),
            "not an API path",
        ),
        // and an ordinary call still gets its answer (the job list)
        (
            "the job list",
            frame(r#"{"method":"GET","path":"/v1/jobs"}"#),
            "\"status\":200",
        ),
    ];
    for (name, bytes, says) in cases {
        let answer = call(&bytes);
        assert!(answer.contains(says), "{name}: {answer}");
        assert!(node.alive(), "the node died on {name}");
    }
    // still serving: a real submit through the socket
    let src = small_clip(tmp.path(), "good.mp4", 1, &[]);
    let out = tmp.path().join("good-out.mp4");
    let o = transcode_1s(&node.data_dir, &src, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&out), 25);
    no_panic(&[&node]);
}
