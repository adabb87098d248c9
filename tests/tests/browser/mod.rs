//! Headless Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`; `make test` installs them), finding controls the way a
//! screen reader does: by their computed role and accessible name.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookline_tests::{children_of, poll_until};
use thirtyfour::common::command::FormatRequestData;
use thirtyfour::prelude::*;
use thirtyfour::{RequestData, SessionId};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what an action leads to.
pub const UI_TIMEOUT: Duration = Duration::from_secs(20);

/// The CSS selectors of the elements that can take each role, to ask the browser
/// about only those.
fn candidates(role: &str) -> &'static str {
    match role {
        "button" => "button, [role=button], input[type=submit], input[type=button]",
        "switch" | "checkbox" => "input[type=checkbox], [role=switch], [role=checkbox]",
        "textbox" => "input:not([type]), input[type=text], input[type=url], textarea",
        "spinbutton" => "input[type=number]",
        "combobox" => "select, [role=combobox]",
        "table" => "table, [role=table]",
        "heading" => "h1, h2, h3, h4, [role=heading]",
        "dialog" => "dialog, [role=dialog]",
        "alert" => "[role=alert]",
        "status" => "[role=status]",
        other => panic!("no candidates for role {other}"),
    }
}

/// WebDriver's "Get Computed Role" and "Get Computed Label" of an element.
#[derive(Debug)]
struct Computed {
    element: String,
    what: &'static str,
}

impl FormatRequestData for Computed {
    fn format_request(&self, session_id: &SessionId) -> RequestData {
        RequestData::new(
            axum::http::Method::GET,
            format!(
                "session/{session_id}/element/{}/{}",
                self.element, self.what
            ),
        )
    }
}

pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
}

/// Starts of chromedriver tried before a test gives up.
const CHROMEDRIVER_STARTS: usize = 3;

/// chromedriver on a free port, and the port; `None` if it ended before it said
/// where it listens.
fn start_chromedriver() -> Option<(Child, String)> {
    let mut chromedriver = Command::new(CHROMEDRIVER)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{CHROMEDRIVER} starts ({e}): run `make browser`"));
    let stdout = chromedriver.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
        line.split_once("started successfully on port ")
            .map(|(_, port)| port.trim_end_matches('.').trim().to_string())
    });
    let Some(port) = port else {
        let _ = chromedriver.kill();
        let _ = chromedriver.wait();
        return None;
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Some((chromedriver, port))
}

impl Browser {
    /// A fresh headless Chromium whose window is `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        // Once, with a whole test suite starting processes beside it, chromedriver
        // ended without a word; another start is what a person would try.
        let (chromedriver, port) = (0..CHROMEDRIVER_STARTS)
            .find_map(|_| start_chromedriver())
            .expect("chromedriver says where it listens");

        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).unwrap();
        for arg in [
            "--headless=new",
            // The tests may run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            &format!("--window-size={width},{height}"),
        ] {
            caps.add_arg(arg).unwrap();
        }
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .expect("chromedriver opens a Chromium session");
        Self {
            driver,
            chromedriver,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.driver.goto(url).await.expect("the page loads");
    }

    async fn computed(&self, element: &WebElement, what: &'static str) -> Option<String> {
        let command = Computed {
            element: element.element_id().to_string(),
            what,
        };
        let answer = self.driver.handle().cmd(command).await.ok()?;
        answer.value::<String>().ok()
    }

    /// The displayed elements under `scope` (the page when `None`) whose role is
    /// `role` and whose accessible name is `name`.
    pub async fn find_all(
        &self,
        scope: Option<&WebElement>,
        role: &str,
        name: &str,
    ) -> Vec<WebElement> {
        let by = By::Css(candidates(role));
        let elements = match scope {
            Some(scope) => scope.find_all(by).await,
            None => self.driver.find_all(by).await,
        }
        .unwrap_or_default();
        let mut found = Vec::new();
        for element in elements {
            // An element replaced meanwhile answers nothing and is skipped.
            if self.computed(&element, "computedlabel").await.as_deref() == Some(name)
                && self.computed(&element, "computedrole").await.as_deref() == Some(role)
                && element.is_displayed().await.unwrap_or(false)
            {
                found.push(element);
            }
        }
        found
    }

    /// The one displayed element with this role and name, waited for.
    pub async fn get(&self, role: &str, name: &str) -> WebElement {
        self.get_within(None, role, name).await
    }

    pub async fn get_within(
        &self,
        scope: Option<&WebElement>,
        role: &str,
        name: &str,
    ) -> WebElement {
        poll_until(UI_TIMEOUT, &format!("the {role} {name:?}"), || async {
            let mut found = self.find_all(scope, role, name).await;
            assert!(found.len() <= 1, "{} {role}s named {name:?}", found.len());
            found.pop()
        })
        .await
    }

    pub async fn click(&self, role: &str, name: &str) {
        self.get(role, name).await.click().await.unwrap();
    }

    /// Types `text` into the field named `name`, in place of what it held.
    pub async fn fill(&self, role: &str, name: &str, text: &str) {
        let field = self.get(role, name).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Picks the option whose text is `option` in the select named `name`.
    pub async fn select(&self, name: &str, option: &str) {
        let select = self.get("combobox", name).await;
        let options = select.find_all(By::Css("option")).await.unwrap();
        for candidate in options {
            if candidate.text().await.unwrap() == option {
                return candidate.click().await.unwrap();
            }
        }
        panic!("{name} has no option {option:?}");
    }

    /// Waits until a displayed element with this role has text containing `text`; returns its text.
    pub async fn wait_for_text(&self, role: &str, text: &str) -> String {
        poll_until(UI_TIMEOUT, &format!("a {role} saying {text:?}"), || async {
            for element in self
                .driver
                .find_all(By::Css(candidates(role)))
                .await
                .unwrap_or_default()
            {
                let shown = element.text().await.unwrap_or_default();
                if shown.contains(text)
                    && element.is_displayed().await.unwrap_or(false)
                    && self.computed(&element, "computedrole").await.as_deref() == Some(role)
                {
                    return Some(shown);
                }
            }
            None
        })
        .await
    }

    /// The text of the whole page as shown.
    pub async fn page_text(&self) -> String {
        let body = self.driver.find(By::Css("body")).await.unwrap();
        body.text().await.unwrap()
    }

    /// Saves a PNG of the window as `target/portal-screenshots/<name>.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let directory = hookline_tests::target_dir().join("portal-screenshots");
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(format!("{name}.png"));
        self.driver.screenshot(&path).await.unwrap();
        path
    }

    /// Ends the session, which closes Chromium, then chromedriver (on drop).
    pub async fn quit(self) {
        let _ = self.driver.clone().quit().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Whatever is left of Chromium (a test that failed never quit) ends with
        // chromedriver: every process it started, then itself.
        let mut started = Vec::new();
        let mut parents = vec![self.chromedriver.id()];
        while let Some(parent) = parents.pop() {
            let children = children_of(parent);
            parents.extend(&children);
            started.extend(children);
        }
        for pid in started {
            // SAFETY: kill(2) on a process this browser started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}
