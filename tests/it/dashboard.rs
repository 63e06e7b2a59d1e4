//! The dashboard in headless Chromium (issue 14), driven over WebDriver
//! (chromedriver, fantoccini): the page asks for the token, shows the tags,
//! a value sent over HTTP ingest updates on screen through the live stream,
//! a trend draws, an alarm of a `[[rule]]` is acknowledged with a click, the
//! page switches to French; a screenshot is kept in `target/dashboard.png`
//! (a CI artifact). Skipped with a message when `chromium` or
//! `chromedriver` is missing, unless `RELAIS_REQUIRE_CHROMIUM=1` (`.ci/run`
//! installs both and sets it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use relais::app::{Gateway, RunOptions};

use crate::admin_api::{TOKEN, post};
use crate::common::{free_port, gateway_config};

/// chromedriver on a free port, killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

/// chromedriver and the chromium binary, or `None` (skip) when either is missing.
fn tools() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let found = find(&["chromedriver"]).zip(find(&["chromium", "chromium-browser", "google-chrome"]));
    if found.is_none() {
        assert!(std::env::var_os("RELAIS_REQUIRE_CHROMIUM").is_none(), "RELAIS_REQUIRE_CHROMIUM=1 but chromium or chromedriver is missing");
        eprintln!("dashboard test skipped: chromium or chromedriver not found (apt-get install chromium chromium-driver)");
    }
    found
}

async fn driver(chromedriver: &std::path::Path) -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let d = Driver(child, port);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen within 10 s");
}

async fn browser(d: &Driver, chromium: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    let args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800", "--lang=en"];
    caps.insert("goog:chromeOptions".into(), serde_json::json!({"args": args, "binary": chromium}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&format!("http://127.0.0.1:{}", d.1)).await.expect("a WebDriver session")
}

/// Waits until `css` exists and its text satisfies `ok`; the text.
async fn text_becomes(c: &Client, css: &str, within: Duration, ok: impl Fn(&str) -> bool) -> String {
    let t0 = std::time::Instant::now();
    let mut last = String::new();
    while t0.elapsed() < within {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if ok(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: text {last:?} did not become what was expected within {within:?}");
}

#[tokio::test]
async fn the_dashboard_updates_draws_a_trend_and_acknowledges_an_alarm() {
    let Some((chromedriver, chromium)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (free_port(), free_port());
    std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"admin.token\"\n\
         [[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{ingest}\"\nallow_anonymous = true\nformat = \"json\"\n\
         [[rule]]\nname = \"hot\"\ntag = \"lab/temp\"\nabove = 50\nclear_below = 40\nseverity = \"warning\"\nmessage = \"lab too hot\"\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    assert_eq!(post(ingest, r#"{"temp": 21.5, "rpm": 1200}"#).await, 200);

    let d = driver(&chromedriver).await;
    let c = browser(&d, &chromium).await;
    let t0 = std::time::Instant::now();
    c.goto(&format!("http://127.0.0.1:{admin}/")).await.unwrap();
    // The token form, then the page.
    c.find(Locator::Id("token")).await.expect("the token form").send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();
    let v = text_becomes(&c, r#"tr[data-tag="lab/temp"] .value"#, Duration::from_secs(10), |t| t == "21.5").await;
    let first_paint = t0.elapsed();
    assert_eq!(v, "21.5");
    let q = c.find(Locator::Css(r#"tr[data-tag="lab/temp"] .quality"#)).await.unwrap().text().await.unwrap();
    assert!(q.contains("good"), "quality in words, not colour alone: {q:?}");

    // A value update through the live stream.
    let sent = std::time::Instant::now();
    assert_eq!(post(ingest, r#"{"temp": 33.25}"#).await, 200);
    text_becomes(&c, r#"tr[data-tag="lab/temp"] .value"#, Duration::from_secs(5), |t| t == "33.25").await;
    let on_screen = sent.elapsed();

    // A trend: tick the tag, send more values, a line with every point.
    c.find(Locator::Css(r#"tr[data-tag="lab/temp"] input.trend-toggle"#)).await.unwrap().click().await.unwrap();
    for v in [35.0, 38.5, 36.0] {
        assert_eq!(post(ingest, &format!(r#"{{"temp": {v}}}"#)).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    text_becomes(&c, "#trend-legend li", Duration::from_secs(5), |t| t.starts_with("lab/temp: 36")).await;
    let points =
        c.find(Locator::Css(r#"#trend polyline[data-tag="lab/temp"]"#)).await.unwrap().attr("points").await.unwrap().unwrap_or_default();
    assert!(points.split(' ').count() >= 4, "a line through 21.5, 33.25, 35, 38.5, 36: {points:?}");

    // An alarm: raised by the rule, acknowledged with a click.
    assert_eq!(post(ingest, r#"{"temp": 80}"#).await, 200);
    let button = text_becomes(&c, r#"button.ack[data-rule="hot"]"#, Duration::from_secs(10), |t| t == "Acknowledge").await;
    assert_eq!(button, "Acknowledge");
    c.find(Locator::Css(r#"button.ack[data-rule="hot"]"#)).await.unwrap().click().await.unwrap();
    text_becomes(&c, r#"tr[data-rule="hot"] .alarm-state"#, Duration::from_secs(10), |t| t == "acknowledged").await;
    let events = gw.status.ingest.stats.event_log.recent();
    assert!(
        events.iter().any(|e| &*e.kind == "alarm" && e.details["transition"] == "acknowledged" && e.details["by"] == "admin API"),
        "the acknowledgement went through the rules engine: {events:?}"
    );

    let png = c.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    std::fs::write(&out, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    // French: every label from the one string table.
    c.find(Locator::Css("#lang option[value=fr]")).await.unwrap().click().await.unwrap();
    text_becomes(&c, "#h-tags", Duration::from_secs(3), |t| t == "Variables").await;
    let lang = c.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap();
    assert_eq!(lang.as_deref(), Some("fr"));
    eprintln!("dashboard: first paint with values {first_paint:?}, commit to screen {on_screen:?}; screenshot {}", out.display());
    c.close().await.unwrap();
    gw.shutdown().await.unwrap();
}
