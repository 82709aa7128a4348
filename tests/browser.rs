//! The headless-Chromium harness itself (tests/common/browser.rs), on local pages only:
//! a form filled and submitted by JS, a counter that moves without a reload, a screenshot,
//! and a page's thrown error caught.

use crate::common;

use common::browser::Browser;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>selftest</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { font: 24px sans-serif; margin: 40px; background: #f4f4f0; }
#count { font-size: 64px; color: #1a5fb4; }</style></head>
<body>
<h1>rendermesh browser selftest</h1>
<form id="login" onsubmit="event.preventDefault();
  document.getElementById('status').textContent = 'hello ' + document.getElementById('user').value;">
  <input id="user" name="user" placeholder="user">
  <input id="pass" name="pass" type="password">
  <button id="go" type="submit">Log in</button>
</form>
<p id="status">not logged in</p>
<p>counter: <span id="count">0</span></p>
<script>
  let n = 0;
  setInterval(() => { document.getElementById('count').textContent = String(++n); }, 200);
</script>
</body></html>"#;

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn count(page: &common::browser::Page) -> u64 {
    page.text("#count")
        .parse()
        .expect("the counter is a number")
}

#[test]
fn form_counter_and_screenshot() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("page.html");
    std::fs::write(&html, PAGE).unwrap();

    let browser = Browser::launch();
    let page = browser.open(&file_url(&html));
    assert_eq!(page.eval("document.title"), "selftest");
    page.mark();

    page.fill("#user", "ada");
    page.fill("#pass", "secret");
    page.click("#go");
    page.wait_for(
        "document.getElementById('status').textContent === 'hello ada'",
        Duration::from_secs(5),
    );

    let first = page.wait_for(
        "+document.getElementById('count').textContent >= 2",
        Duration::from_secs(10),
    );
    assert_eq!(first, true);
    let a = count(&page);
    std::thread::sleep(Duration::from_millis(700));
    let b = count(&page);
    assert!(b > a, "the counter moves on its own: {a} then {b}");
    assert!(page.still_marked(), "the page was reloaded");
    assert_eq!(page.errors(), Vec::<String>::new());

    let shot = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/browser-selftest.png"
    ));
    let _ = std::fs::remove_file(&shot);
    page.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    let (w, h) = (be32(&png[16..20]), be32(&png[20..24]));
    assert!(
        (1000..=2000).contains(&w) && (600..=1400).contains(&h),
        "screenshot {w}x{h}"
    );
    assert!(
        png.len() > 5_000,
        "a screenshot of a real page, {} bytes",
        png.len()
    );

    // A phone-width viewport: the page is laid out again (no reload) at 390 px.
    page.set_viewport(390, 844, true);
    assert_eq!(page.eval("window.innerWidth"), 390);
    let phone = dir.path().join("phone.png");
    page.screenshot(&phone);
    assert_eq!(be32(&std::fs::read(&phone).unwrap()[16..20]), 390);
    assert!(page.still_marked());

    // A real load (navigate, or a reload the page does itself) drops the marker.
    page.navigate(&file_url(&html));
    assert!(!page.still_marked(), "a navigation reloads the page");
    page.mark();
    page.wait_load(|| page.eval("setTimeout(() => location.reload(), 100)"));
    assert!(!page.still_marked(), "location.reload() reloads the page");
}

#[test]
fn thrown_errors_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("bad.html");
    std::fs::write(
        &html,
        "<!doctype html><body><script>console.error('loud', 7);\
         setTimeout(() => { throw new Error('boom from the page'); }, 50);</script></body>",
    )
    .unwrap();
    let browser = Browser::launch();
    let page = browser.open(&file_url(&html));
    page.wait_for(
        "new Promise(r => setTimeout(() => r(true), 200))",
        Duration::from_secs(5),
    );
    let errors = page.errors();
    assert!(
        errors.iter().any(|e| e.contains("boom from the page")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e == "console.error: loud 7"),
        "{errors:?}"
    );

    // eval's own exceptions panic with their text (and are not page errors).
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| page.eval("null.nope")));
    let msg = *caught
        .expect_err("eval of a throwing expression panics")
        .downcast::<String>()
        .unwrap();
    assert!(msg.contains("TypeError"), "{msg}");
    assert_eq!(page.errors().len(), errors.len(), "{:?}", page.errors());
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}
