//! The operator console in a real browser (headless Chromium through
//! WebDriver) against `velonotify run`: the login, the overview of the
//! outbox, the log-out, and each page at a desktop's and a phone's width.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use velonotify_test_support::browser::Browser;
use velonotify_test_support::peers::{SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::service::{Running, post_events};
use velonotify_test_support::{modules_dir, scratch};

use super::velociraptor::ALERTS_TO_SOC;
use super::{EXE, write_config};

const TOKEN: &str = "console-ingest-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// A service e-mailing alerts posted to `ingest`, with its console on
/// port `console` for ann, an operator.
fn config(dir: &Path, smtp_port: u16, ingest: u16, console: u16) -> std::path::PathBuf {
    let hash = velonotify::operator::console::hash_password(PASSWORD).unwrap();
    write_config(
        dir,
        &format!(
            "[smtp]\nserver = \"127.0.0.1\"\nserver_port = {smtp_port}\nfrom = \"velonotify@example.org\"\n\
             [host]\nstate = \"state.db\"\n\
             [ingest]\nlisten = \"127.0.0.1:{ingest}\"\ntoken = \"{TOKEN}\"\n\
             [console]\nlisten = \"127.0.0.1:{console}\"\n\
             [[console.user]]\nname = \"ann\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n\
             {ALERTS_TO_SOC}"
        ),
    )
}

/// Lays the page out `width` pixels wide, keeps a screenshot, and checks
/// that nothing reaches past the window's right edge.
fn fits(browser: &Browser, url: &str, name: &str, width: u32) {
    let shots = velonotify_test_support::workspace().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    assert_eq!(browser.lay_out_at(width), width);
    browser.goto(url);
    let widest = browser.execute(
        "const right = [...document.querySelectorAll('body *')]
             .map(e => Math.ceil(e.getBoundingClientRect().right));
         return Math.max(document.documentElement.scrollWidth, ...right);",
    );
    std::fs::write(
        shots.join(format!("console-{name}-{width}px.png")),
        browser.screenshot(),
    )
    .unwrap();
    assert!(
        widest.as_u64().unwrap() <= u64::from(width),
        "{name} at {width} px reaches {widest} px (screenshot in {})",
        shots.display()
    );
}

/// Fills the login form of a fresh login page as ann and sends it.
fn log_in(browser: &Browser, url: &str, password: &str) {
    browser.goto(&format!("{url}/login"));
    browser.type_into("input[name=user]", "ann");
    browser.type_into("input[name=password]", password);
    browser.click("button[type=submit]");
}

/// Waits (10 s at most) until the element `css` of the page shown says
/// `text`: a click may return before the next page is in.
fn wait_for(browser: &Browser, css: &str, text: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while browser.text_if_any(css).as_deref() != Some(text) {
        assert!(
            std::time::Instant::now() < until,
            "{css} never said {text:?}: {}",
            browser.source()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_operator_logs_in_sees_the_outbox_move_and_logs_out() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, console) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, console);
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the console", Duration::from_secs(120), |r| {
        r.log().contains("operator console at")
    });
    let url = format!("http://127.0.0.1:{console}");

    let browser = Browser::start();
    browser.goto(&format!("{url}/"));
    assert_eq!(browser.title(), "Log in · velonotify", "sent to the login");
    fits(&browser, &format!("{url}/login"), "login", 390);
    fits(&browser, &format!("{url}/login"), "login", 1280);
    log_in(&browser, &url, "wrong password");
    wait_for(&browser, "#problem", "Wrong user name or password.");
    log_in(&browser, &url, PASSWORD);
    wait_for(&browser, "h1", "Overview");
    assert_eq!(browser.text("header .who"), "ann (operator)");
    assert_eq!(
        browser.execute("return document.cookie"),
        json!(""),
        "the session cookie is not a script's to read"
    );
    assert_eq!(browser.scripts(), 0);

    let row = json!({"name": "Honeyfile accessed", "client_id": "C.1", "timestamp": "2026-11-30T10:00:00Z",
                     "event_data": {"Severity": "high"}, "_ts": 1_780_000_000u64});
    let (status, answer) = post_events(
        ingest,
        Some(TOKEN),
        "queue=Server.Internal.Alerts",
        format!("{row}\n").as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(smtp.wait_for(1, Duration::from_secs(60)).len(), 1);
    // The item is marked sent once the server has answered: reload until
    // the overview shows it.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        browser.goto(&format!("{url}/"));
        if browser.text_if_any("#outbox tr.status").as_deref() == Some("sent 1") {
            break;
        }
        assert!(std::time::Instant::now() < until, "{}", browser.source());
        std::thread::sleep(Duration::from_millis(100));
    }
    fits(&browser, &format!("{url}/"), "overview", 390);
    fits(&browser, &format!("{url}/"), "overview", 1280);

    browser.click("#logout");
    wait_for(&browser, "h1", "Log in");
    browser.goto(&format!("{url}/"));
    assert_eq!(browser.title(), "Log in · velonotify", "the session ended");
    drop(run);
}
