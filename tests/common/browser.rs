//! A real headless Chromium driven over the Chrome DevTools Protocol, on a pipe: the child
//! reads commands on fd 3 and writes replies and events on fd 4, each a JSON object ended by
//! a NUL byte. Test code: everything panics with a clear message, every command has a bound.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bound of every single CDP command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of a navigation (until the load event).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

const CHROMIUM: &str = "/usr/bin/chromium";

#[derive(Default)]
struct State {
    replies: HashMap<u64, Value>,
    /// Every event, in order; never trimmed, so an index is a stable position.
    events: Vec<Value>,
    closed: bool,
}

/// The pipe to the browser, shared by the browser and its pages.
struct Conn {
    to_child: Mutex<File>,
    next_id: AtomicU64,
    state: Mutex<State>,
    cv: Condvar,
    stderr_log: PathBuf,
}

impl Conn {
    /// Wait (bounded) until `found` finds something in the state.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(t) = found(&mut st) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if st.closed || left.is_zero() {
                let why = if st.closed {
                    "chromium closed its pipe"
                } else {
                    "timed out"
                };
                return Err(format!("{what}: {why} after {timeout:?}"));
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
    }

    fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        let sent = self.to_child.lock().unwrap().write_all(&bytes);
        sent.map_err(|e| format!("writing {method} to chromium: {e}"))?;
        let reply = self.wait(&format!("reply to {method}"), timeout, |st| {
            st.replies.remove(&id)
        })?;
        match reply.get("error") {
            Some(err) => Err(format!("{method} failed: {err}")),
            None => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.stderr_tail()))
    }

    /// The first event `method` of `session` at index `since` or later.
    fn wait_event(&self, session: &str, method: &str, since: usize, timeout: Duration) -> Value {
        let r = self.wait(&format!("event {method}"), timeout, |st| {
            let mut events = st.events[since..].iter();
            events
                .find(|e| e["method"] == method && e["sessionId"] == session)
                .cloned()
        });
        r.unwrap_or_else(|e| panic!("{e}\n{}", self.stderr_tail()))
    }

    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("chromium stderr (tail):\n{tail}")
    }
}

/// Split the child's stream on NUL; replies go to their caller by id, events are kept.
fn read_loop(mut from_child: File, conn: Arc<Conn>) {
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
    loop {
        let n = match from_child.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) else {
                continue;
            };
            let mut st = conn.state.lock().unwrap();
            match v.get("id").and_then(Value::as_u64) {
                Some(id) => drop(st.replies.insert(id, v)),
                None => st.events.push(v),
            }
            conn.cv.notify_all();
        }
    }
    conn.state.lock().unwrap().closed = true;
    conn.cv.notify_all();
}

/// A pipe (read end, write end) whose fds are CLOEXEC and 10 or more, so that dup2 onto 3
/// and 4 in the child never meets one of them (dup2 of an fd onto itself keeps CLOEXEC).
fn pipe_high() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    let [r, w] = fds.map(|fd| unsafe {
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
        assert!(high >= 10, "fcntl(F_DUPFD_CLOEXEC)");
        libc::close(fd);
        OwnedFd::from_raw_fd(high)
    });
    (r, w)
}

const FLAGS: &str = "--headless --remote-debugging-pipe --no-sandbox --disable-gpu --no-first-run \
    --no-default-browser-check --hide-scrollbars --mute-audio --window-size=1280,900";

pub struct Browser {
    conn: Arc<Conn>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Start headless Chromium with a fresh profile; panics if it is missing or mute.
    pub fn launch() -> Browser {
        let exe = std::env::var("RENDERMESH_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        assert!(
            Path::new(&exe).exists(),
            "chromium not found at {exe}: install it with tests/deps.sh (or set RENDERMESH_CHROMIUM)"
        );
        let dir = tempfile::tempdir().expect("temp dir for the chromium profile");
        let stderr_log = dir.path().join("stderr.log");
        let (child_in, to_child) = pipe_high();
        let (from_child, child_out) = pipe_high();
        let (cin, cout) = (child_in.as_raw_fd(), child_out.as_raw_fd());
        let profile = dir.path().join("profile");
        let mut cmd = Command::new(&exe);
        cmd.args(FLAGS.split_whitespace())
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_log).expect("chromium stderr log"));
        // Between fork and exec: only async-signal-safe calls. dup2 clears CLOEXEC on the
        // targets; its own process group lets Drop end chromium's helpers too.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cin, 3) < 0 || libc::dup2(cout, 4) < 0 || libc::setpgid(0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe}: {e}"));
        drop((child_in, child_out)); // the child's ends: EOF reaches us when it is gone
        let conn = Arc::new(Conn {
            to_child: Mutex::new(File::from(to_child)),
            next_id: AtomicU64::new(1),
            state: Mutex::default(),
            cv: Condvar::new(),
            stderr_log,
        });
        let reader = conn.clone();
        std::thread::spawn(move || read_loop(File::from(from_child), reader));
        let browser = Browser {
            conn,
            child,
            _dir: dir,
        };
        browser.conn.call(None, "Browser.getVersion", json!({}));
        browser
    }

    /// A new tab at `url`, loaded, with the Page and Runtime domains on.
    pub fn open(&self, url: &str) -> Page {
        let target = self
            .conn
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attach = json!({ "targetId": target["targetId"], "flatten": true });
        let attached = self.conn.call(None, "Target.attachToTarget", attach);
        let session = attached["sessionId"]
            .as_str()
            .expect("a sessionId")
            .to_string();
        let page = Page {
            conn: self.conn.clone(),
            session,
        };
        page.call("Page.enable", json!({}));
        page.call("Runtime.enable", json!({}));
        page.navigate(url);
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .conn
            .try_call(None, "Browser.close", json!({}), Duration::from_secs(3));
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Page {
    conn: Arc<Conn>,
    session: String,
}

impl Page {
    /// A raw CDP command to this page.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params)
    }

    /// Go to `url` and wait for its load event.
    pub fn navigate(&self, url: &str) {
        self.wait_load(|| {
            let nav = self.call("Page.navigate", json!({ "url": url }));
            if let Some(err) = nav.get("errorText") {
                panic!("navigating to {url}: {err}");
            }
        })
    }

    /// Run `action` (a click that submits a form, say) and wait for the load it causes.
    pub fn wait_load<R>(&self, action: impl FnOnce() -> R) -> R {
        let since = self.conn.state.lock().unwrap().events.len();
        let r = action();
        self.conn
            .wait_event(&self.session, "Page.loadEventFired", since, LOAD_TIMEOUT);
        r
    }

    /// The value of a JS expression (promises awaited); a JS exception panics with its text.
    pub fn eval(&self, js: &str) -> Value {
        self.try_eval(js).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Page::eval`] with JS exceptions and protocol errors (no page yet) as `Err`.
    pub fn try_eval(&self, js: &str) -> Result<Value, String> {
        let params = json!({ "expression": js, "returnByValue": true, "awaitPromise": true });
        let r = self.conn.try_call(
            Some(&self.session),
            "Runtime.evaluate",
            params,
            COMMAND_TIMEOUT,
        )?;
        match r.get("exceptionDetails") {
            Some(ex) => Err(format!("JS threw in `{js}`: {}", exception_text(ex))),
            None => Ok(r["result"].get("value").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Poll `js` every 100 ms until it is truthy and return its value; errors (as while the
    /// page navigates) count as not yet. A panic with the last value or error on timeout.
    pub fn wait_for(&self, js: &str, timeout: Duration) -> Value {
        let probe =
            format!("(async () => {{ const v = await ({js}); return {{ ok: !!v, v }}; }})()");
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.try_eval(&probe);
            match &r {
                Ok(r) if r["ok"] == true => return r["v"].clone(),
                _ if Instant::now() >= deadline => {
                    panic!("`{js}` not truthy after {timeout:?}: last {r:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Run `body` (JS, with the element as `e`) on the first match of `selector`.
    pub fn on(&self, selector: &str, body: &str) -> Value {
        let s = json!(selector);
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({s});
             if (!e) throw new Error('no element matches ' + {s}); {body} }})()"
        ))
    }

    /// Set an input's value the way typing does (input and change events).
    pub fn fill(&self, selector: &str, value: &str) {
        let v = json!(value);
        self.on(
            selector,
            &format!(
                "e.focus(); e.value = {v};
             e.dispatchEvent(new Event('input', {{bubbles: true}}));
             e.dispatchEvent(new Event('change', {{bubbles: true}}));"
            ),
        );
    }

    pub fn click(&self, selector: &str) {
        self.on(selector, "e.click();");
    }

    /// The text of the first element matching `selector`.
    pub fn text(&self, selector: &str) -> String {
        let v = self.on(selector, "return e.textContent;");
        v.as_str().unwrap_or_default().to_string()
    }

    /// Put a marker on `window`: [`Page::still_marked`] is false once the page reloads.
    pub fn mark(&self) {
        self.eval("window.__rendermesh_mark = true");
    }

    pub fn still_marked(&self) -> bool {
        self.eval("window.__rendermesh_mark === true") == json!(true)
    }

    /// This page's events so far, in order.
    pub fn events(&self) -> Vec<Value> {
        let st = self.conn.state.lock().unwrap();
        let mine = st
            .events
            .iter()
            .filter(|e| e["sessionId"] == self.session.as_str());
        mine.cloned().collect()
    }

    /// Every console message of this page so far, as "type: text".
    pub fn console(&self) -> Vec<String> {
        let calls = self
            .events()
            .into_iter()
            .filter(|e| e["method"] == "Runtime.consoleAPICalled");
        calls
            .map(|e| {
                format!(
                    "{}: {}",
                    e["params"]["type"].as_str().unwrap_or("?"),
                    console_text(&e["params"])
                )
            })
            .collect()
    }

    /// Uncaught exceptions and console.error/assert messages of this page so far, in order.
    pub fn errors(&self) -> Vec<String> {
        let error = |e: Value| match (e["method"].as_str()?, e["params"]["type"].as_str()) {
            ("Runtime.exceptionThrown", _) => {
                Some(exception_text(&e["params"]["exceptionDetails"]))
            }
            ("Runtime.consoleAPICalled", Some(t @ ("error" | "assert"))) => {
                Some(format!("console.{t}: {}", console_text(&e["params"])))
            }
            _ => None,
        };
        self.events().into_iter().filter_map(error).collect()
    }

    /// Emulate a screen (e.g. 390x844 mobile for a phone).
    pub fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// A PNG of the viewport, written to `path` (parent directories made).
    pub fn screenshot(&self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

fn exception_text(ex: &Value) -> String {
    let desc = ex["exception"]["description"].as_str();
    desc.or(ex["text"].as_str())
        .unwrap_or("unknown exception")
        .to_string()
}

fn console_text(params: &Value) -> String {
    let args = params["args"].as_array().cloned().unwrap_or_default();
    let parts: Vec<String> = args
        .iter()
        .map(|a| match (&a["value"], a["description"].as_str()) {
            (Value::String(s), _) => s.clone(),
            (Value::Null, Some(d)) => d.to_string(),
            (v, _) => v.to_string(),
        })
        .collect();
    parts.join(" ")
}

/// Standard base64 (padding and whitespace skipped); panics on any other byte.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let (mut out, mut acc, mut bits) = (Vec::with_capacity(s.len() * 3 / 4), 0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: byte {c}"),
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
