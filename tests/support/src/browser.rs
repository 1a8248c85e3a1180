//! A real browser for the pages velonotify serves: Debian's headless
//! Chromium driven through chromedriver (WebDriver) with fantoccini, each
//! call made blocking for the tests. scripts/setup installs both.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::peers::free_port;

/// One Chromium session; the driver is killed when it is dropped.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless window.
    pub fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/setup (Debian's chromium-driver)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,900"],
            },
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let started = Instant::now();
        let client = loop {
            let attempt = runtime.block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match attempt {
                Ok(client) => break client,
                // The driver is still starting.
                Err(_) if started.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => panic!("no Chromium session through chromedriver within 30 s: {e}"),
            }
        };
        Self {
            runtime,
            client,
            driver,
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client.goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The text of the element `css` selects, as the reader sees it.
    pub fn text(&self, css: &str) -> String {
        self.runtime.block_on(async {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            element.text().await.unwrap()
        })
    }

    /// The text of the element `css` selects, or None when the page has
    /// none (or is being replaced by the next one).
    pub fn text_if_any(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// Whether the page has an element `css` selects.
    pub fn has(&self, css: &str) -> bool {
        self.runtime
            .block_on(self.client.find_all(Locator::Css(css)))
            .is_ok_and(|found| !found.is_empty())
    }

    /// Types `text` into the field `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        self.runtime.block_on(async {
            let field = self.client.find(Locator::Css(css)).await.unwrap();
            field.send_keys(text).await.unwrap();
        })
    }

    /// Clicks the element `css` selects (a submit button: the next page
    /// has loaded when this returns).
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let element = self.client.find(Locator::Css(css)).await.unwrap();
            element.click().await.unwrap();
        })
    }

    /// The text of the `index`-th frame's body, and the `<script>`
    /// elements it holds (a sandboxed frame is entered as any other).
    pub fn frame_text(&self, index: u16) -> (String, usize) {
        self.runtime.block_on(async {
            self.client.enter_frame(index).await.unwrap();
            let body = self.client.find(Locator::Css("body")).await.unwrap();
            let text = body.text().await.unwrap();
            let scripts = self
                .client
                .find_all(Locator::Css("script"))
                .await
                .map_or(0, |s| s.len());
            self.client.enter_parent_frame().await.unwrap();
            (text, scripts)
        })
    }

    /// Waits (10 s at most) until the page shown is titled `title`: a
    /// click on a submit button may return before the next page is in.
    pub fn wait_for_title(&self, title: &str) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.title() != title {
            assert!(
                Instant::now() < until,
                "the page never was {title:?}: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.runtime.block_on(self.client.title()).unwrap()
    }

    /// The page's markup as the browser holds it.
    pub fn source(&self) -> String {
        self.runtime.block_on(self.client.source()).unwrap()
    }

    /// Resizes the window so that the page is laid out `width` CSS pixels
    /// wide (the window's frame is added), as a mail client of that width
    /// shows a message; the width the page got.
    pub fn lay_out_at(&self, width: u32) -> u32 {
        self.runtime.block_on(async {
            let inner_width = async || {
                let inner = self.client.execute("return window.innerWidth", vec![]).await.unwrap();
                inner.as_u64().unwrap_or(0) as u32
            };
            self.client.set_window_size(width, 900).await.unwrap();
            let frame = width.saturating_sub(inner_width().await);
            if frame > 0 {
                self.client.set_window_size(width + frame, 900).await.unwrap();
            }
            inner_width().await
        })
    }

    /// Runs `script` in the page; what it returns.
    pub fn execute(&self, script: &str) -> serde_json::Value {
        self.runtime
            .block_on(self.client.execute(script, vec![]))
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        self.runtime.block_on(self.client.screenshot()).unwrap()
    }

    /// Whether the page ran any script the test did not put there: the
    /// number of `<script>` elements in the document.
    pub fn scripts(&self) -> usize {
        self.runtime
            .block_on(self.client.find_all(Locator::Css("script")))
            .map_or(0, |found| found.len())
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver.id())
            .finish_non_exhaustive()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
