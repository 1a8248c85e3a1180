//! The operator console in a real browser (headless Chromium through
//! WebDriver) against `velonotify run` and a real SMTP server: the login,
//! a module's counters moving, an e-mail in its sandboxed frame, a
//! preview, a silence holding the next alert, a dead e-mail retried, a
//! viewer who cannot act, a hostile subject shown as text, the log-out, and
//! each page at a desktop's and a phone's width.

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
const VIEWER_PASSWORD: &str = "viewer horse battery staple";

/// A service e-mailing alerts posted to `ingest`, with its console on
/// port `console` for ann, an operator, and vic, a viewer.
fn config(dir: &Path, smtp_port: u16, ingest: u16, console: u16) -> std::path::PathBuf {
    let hash = velonotify::operator::console::hash_password(PASSWORD).unwrap();
    let viewer = velonotify::operator::console::hash_password(VIEWER_PASSWORD).unwrap();
    write_config(
        dir,
        &format!(
            "[smtp]\nserver = \"127.0.0.1\"\nserver_port = {smtp_port}\nfrom = \"velonotify@example.org\"\n\
             [host]\nstate = \"state.db\"\n\
             [ingest]\nlisten = \"127.0.0.1:{ingest}\"\ntoken = \"{TOKEN}\"\n\
             [console]\nlisten = \"127.0.0.1:{console}\"\n\
             [[console.user]]\nname = \"ann\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n\
             [[console.user]]\nname = \"vic\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n\
             {ALERTS_TO_SOC}"
        ),
    )
}

/// The page loaded no script but the console's own.
fn assert_only_our_script(browser: &Browser) {
    assert_eq!(
        browser.execute("return [...document.scripts].map(s => s.getAttribute('src'))"),
        json!(["/static/console.js"]),
        "{}",
        browser.source()
    );
}

/// Starts the service with its console; returns it, the console's address
/// and the ingest port.
fn start(dir: &Path, smtp_port: u16) -> (Running, String, u16) {
    let (ingest, console) = (free_port(), free_port());
    let config = config(dir, smtp_port, ingest, console);
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the console", Duration::from_secs(120), |r| {
        r.log().contains("operator console at")
    });
    (run, format!("http://127.0.0.1:{console}"), ingest)
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
    log_in_as(browser, url, "ann", password);
}

fn log_in_as(browser: &Browser, url: &str, user: &str, password: &str) {
    browser.goto(&format!("{url}/login"));
    browser.type_into("input[name=user]", user);
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

/// Opens `url` again and again (10 s at most) until the element `css`
/// says `text`: what the page shows follows the service.
fn reload_until(browser: &Browser, url: &str, css: &str, text: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        browser.goto(url);
        if browser.text_if_any(css).as_deref() == Some(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{css} never said {text:?} at {url}: {}",
            browser.source()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (10 s at most) until the page's first frame has loaded and says
/// `text`; returns the scripts in it.
fn frame_says(browser: &Browser, text: &str) -> usize {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (shown, scripts) = browser.frame_text(0);
        if shown.contains(text) {
            return scripts;
        }
        assert!(
            std::time::Instant::now() < until,
            "the frame never said {text:?}: {shown}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Posts one alert named `name` to the ingest port.
fn post_alert(ingest: u16, name: &str) {
    let row = json!({"name": name, "client_id": "C.1", "timestamp": "2026-11-30T10:00:00Z",
                     "event_data": {"Severity": "high"}, "_ts": 1_780_000_000u64});
    let (status, answer) = post_events(
        ingest,
        Some(TOKEN),
        "queue=Server.Internal.Alerts",
        format!("{row}\n").as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn an_operator_logs_in_sees_the_outbox_move_and_logs_out() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (run, url, ingest) = start(dir.path(), smtp.port);

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
    assert_only_our_script(&browser);

    let handled = ".module[data-module=alerts] .handled";
    assert_eq!(browser.text(handled), "0");
    assert_eq!(
        browser.text(".module[data-module=alerts] .version").split(',').next(),
        Some("Rust")
    );
    post_alert(ingest, "Honeyfile accessed");
    assert_eq!(smtp.wait_for(1, Duration::from_secs(60)).len(), 1);
    // The item is marked sent once the server has answered: reload until
    // the overview shows it.
    reload_until(&browser, &format!("{url}/"), "#outbox tr.status", "sent 1");
    assert_eq!(browser.text(handled), "1", "the module's counter moved");
    fits(&browser, &format!("{url}/"), "overview", 390);
    fits(&browser, &format!("{url}/"), "overview", 1280);

    // The e-mail, as it was sent, in its sandboxed frame.
    browser.goto(&format!("{url}/outbox"));
    browser.click("#items tr.item a");
    wait_for(&browser, "#item .status", "sent");
    assert_eq!(
        frame_says(&browser, "Honeyfile accessed"),
        0,
        "no script in the e-mail's frame"
    );
    for (page, path) in [
        ("outbox", "/outbox".to_string()),
        (
            "item",
            browser
                .execute("return location.pathname")
                .as_str()
                .unwrap()
                .to_string(),
        ),
    ] {
        fits(&browser, &format!("{url}{path}"), page, 390);
        fits(&browser, &format!("{url}{path}"), page, 1280);
    }

    // A preview of a row: what the modules would send, nothing sent.
    browser.goto(&format!("{url}/preview"));
    fits(&browser, &format!("{url}/preview"), "preview", 390);
    fits(&browser, &format!("{url}/preview"), "preview", 1280);
    let row = json!({"name": "Preview drill", "client_id": "C.2", "timestamp": "2026-11-30T10:00:00Z",
                     "event_data": {}, "_ts": 1_780_000_000u64, "_Source": "Server.Internal.Alerts"});
    browser.type_into("textarea[name=rows]", &row.to_string());
    browser.click("#run-preview");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !browser.has("#replayed") {
        assert!(std::time::Instant::now() < until, "{}", browser.source());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        browser.text("#replayed").starts_with("1 rows replayed"),
        "{}",
        browser.source()
    );
    assert!(
        browser.text(".action .subject").contains("Preview drill"),
        "{}",
        browser.source()
    );
    frame_says(&browser, "Preview drill");
    let shown = browser
        .execute("return location.pathname")
        .as_str()
        .unwrap()
        .to_string();
    fits(&browser, &format!("{url}{shown}"), "preview-result", 390);
    fits(&browser, &format!("{url}{shown}"), "preview-result", 1280);
    assert_eq!(smtp.received().len(), 1, "a preview delivers nothing");

    browser.click("#logout");
    wait_for(&browser, "h1", "Log in");
    browser.goto(&format!("{url}/"));
    assert_eq!(browser.title(), "Log in · velonotify", "the session ended");
    drop(run);
}

/// Event data is hostile: a subject full of markup shows as text, on every
/// page. A viewer sees a dead e-mail but cannot retry it; an operator
/// retries it once the SMTP server takes mail again, and makes a silence
/// that holds the next matching alert.
#[test]
fn a_dead_e_mail_is_retried_a_silence_holds_the_next_alert_and_a_viewer_only_looks() {
    let dir = scratch();
    let smtp_dir = dir.path().join("smtp");
    let refusing = SmtpOptions {
        reject: Some("soc@".into()),
        ..SmtpOptions::default()
    };
    let mut smtp = SmtpPeer::started(&smtp_dir, refusing);
    let (run, url, ingest) = start(dir.path(), smtp.port);
    let hostile = "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">";
    post_alert(ingest, hostile);

    let browser = Browser::start();
    log_in_as(&browser, &url, "vic", VIEWER_PASSWORD);
    wait_for(&browser, "header .who", "vic (viewer)");
    let dead = format!("{url}/outbox?status=dead");
    reload_until(&browser, &dead, "#items tr.item .status", "dead");
    // Subjects are cut to a length: the markup's start is there, as text.
    let shown = "<script>document.title='owned'";
    assert!(
        browser.text("#items tr.item .what").contains(shown),
        "{}",
        browser.source()
    );
    assert_eq!(browser.title(), "Outbox · velonotify");
    assert_only_our_script(&browser);
    browser.click("#items tr.item a");
    wait_for(&browser, "#item .status", "dead");
    assert!(browser.text("#item .what").contains(shown));
    assert!(
        browser.text("#item .last-error").contains("550"),
        "{}",
        browser.source()
    );
    assert!(!browser.has("#retry"), "a viewer is offered no retry");
    let item = browser
        .execute("return location.pathname")
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(frame_says(&browser, "document.title='owned'"), 0);
    assert!(!browser.title().contains("owned"));
    // Nor can a viewer post the form the page does not offer.
    browser.execute(
        "const form = document.createElement('form');
         form.method = 'post';
         form.action = location.pathname + '/retry';
         const token = document.createElement('input');
         token.name = 'csrf';
         token.value = document.querySelector('input[name=csrf]').value;
         form.append(token);
         document.body.append(form);
         form.submit();
         return null;",
    );
    wait_for(
        &browser,
        "#refusal",
        "only an operator may do this; you are logged in as a viewer",
    );
    browser.goto(&format!("{url}{item}"));
    assert_eq!(browser.text("#item .status"), "dead");
    browser.click("#logout");
    wait_for(&browser, "h1", "Log in");

    // The SMTP server takes mail again; the operator retries.
    smtp.stop();
    let mut smtp = SmtpPeer::new(smtp.port, &smtp_dir, SmtpOptions::default());
    smtp.start();
    log_in(&browser, &url, PASSWORD);
    wait_for(&browser, "h1", "Overview");
    browser.goto(&format!("{url}{item}"));
    fits(&browser, &format!("{url}{item}"), "dead-item", 390);
    fits(&browser, &format!("{url}{item}"), "dead-item", 1280);
    browser.click("#retry");
    let received = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(received.len(), 1, "the retried e-mail reached the SMTP server");
    assert!(
        received[0]["subject"].as_str().unwrap().contains("<script>"),
        "{received:?}"
    );
    reload_until(&browser, &format!("{url}{item}"), "#item .status", "sent");
    let outcomes = browser.execute(
        "return [...document.querySelectorAll('#attempts tr.attempt')]
             .map(r => r.querySelector('.outcome').textContent + ' ' + r.querySelector('.error').textContent)",
    );
    let outcomes: Vec<String> = serde_json::from_value(outcomes).unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes[0].starts_with("dead ") && outcomes[0].contains("550"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], "sent ");

    // A silence, counted first, then made; the next matching alert is held.
    browser.goto(&format!("{url}/silences"));
    browser.type_into("input[name=matchers]", "alertname=\"Quiet drill\"");
    // The count follows the matchers as they are typed.
    wait_for(
        &browser,
        "#would-hold",
        "Would have held 0 of those notifications of the last 24 hours.",
    );
    browser.type_into("input[name=comment]", "a drill");
    browser.click("#create");
    wait_for(&browser, "#silences tr.silence .state", "active");
    fits(&browser, &format!("{url}/silences"), "silences", 390);
    fits(&browser, &format!("{url}/silences"), "silences", 1280);
    post_alert(ingest, "Quiet drill");
    reload_until(
        &browser,
        &format!("{url}/outbox?status=silenced"),
        "#items tr.item .status",
        "silenced",
    );
    assert!(browser.text("#items tr.item .what").contains("Quiet drill"));
    browser.click("#items tr.item a");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !browser
        .text_if_any("#item .held-by")
        .is_some_and(|t| t.starts_with("silence "))
    {
        assert!(std::time::Instant::now() < until, "{}", browser.source());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(smtp.received().len(), 1, "the silenced alert was not sent");
    drop(run);
}
