//! The portal page in a real browser (headless Chromium), served by `hookline dev`:
//! what an account's people do there, found by role and accessible name as
//! CONTRACT's "The portal page" names them, against a real receiver.

mod browser;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use browser::{Browser, UI_TIMEOUT};
use hookline_cli::emulator::Emulator;
use hookline_tests::{Dev, Receiver, Reply, poll_until, portal_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::store::Store;
use thirtyfour::{By, Key};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
const XSS: &str = "<img src=x onerror=alert(1)>";
const DOWN: &str = "receiver down for maintenance";

/// A new portal session of `account`: its URL.
async fn portal_url(dev: &Dev, client: &reqwest::Client, account: &str) -> String {
    portal_session(dev, client, account).await["url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A new portal session of `account`: `{"token", "url", "expires_at"}`.
async fn portal_session(dev: &Dev, client: &reqwest::Client, account: &str) -> Value {
    let response = dev
        .request(
            client,
            Method::POST,
            &format!("/v1/accounts/{account}/portal-sessions"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn api(
    dev: &Dev,
    client: &reqwest::Client,
    method: Method,
    path: &str,
) -> (StatusCode, Value) {
    let response = dev.request(client, method, path).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The rows of the attempts table as shown, newest first.
async fn attempt_rows(browser: &Browser) -> Vec<String> {
    let table = browser.get("table", "Attempts").await;
    let mut shown = Vec::new();
    for row in table.find_all(By::Css("tbody > tr")).await.unwrap() {
        if row.is_displayed().await.unwrap_or(false) {
            shown.push(row.text().await.unwrap_or_default());
        }
    }
    shown
        .into_iter()
        .filter(|text| text.starts_with("succeeded") || text.starts_with("failed"))
        .collect()
}

async fn wait_for_attempts(
    browser: &Browser,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    poll_until(DELIVERY_TIMEOUT, what, || async {
        let rows = attempt_rows(browser).await;
        check(&rows).then_some(rows)
    })
    .await
}

#[tokio::test]
async fn a_customer_manages_webhooks_from_the_portal_page() {
    let failing = Arc::new(AtomicBool::new(false));
    let receiver = {
        let failing = failing.clone();
        Receiver::scripted(move |_, _| {
            if failing.load(Ordering::SeqCst) {
                Reply::status(500).text(DOWN)
            } else {
                Reply::status(204)
            }
        })
        .await
    };
    // A long retry step: a failed attempt shows its next attempt, which the test never waits for.
    let dev = Dev::start(&["--retry-schedule", "10m"]);
    let client = reqwest::Client::new();
    let settings = "/v1/accounts/jane/settings";
    let response = dev
        .request(&client, Method::PATCH, settings)
        .json(&json!({"webhooks_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let browser = Browser::start(1200, 1300).await;
    browser.goto(&portal_url(&dev, &client, "jane").await).await;
    browser.wait_for_text("heading", "Endpoints").await;
    assert!(browser.page_text().await.contains("No endpoints yet"));
    browser.screenshot("1-empty").await;

    // Enable webhooks.
    let enabled = browser.get("switch", "Webhooks enabled").await;
    assert!(!enabled.is_selected().await.unwrap());
    enabled.click().await.unwrap();
    poll_until(UI_TIMEOUT, "the account enabled", || async {
        let (_, body) = api(&dev, &client, Method::GET, settings).await;
        (body["webhooks_enabled"] == true).then_some(())
    })
    .await;

    // Add an endpoint: an API error first, shown where it happened, then two event types.
    browser.click("button", "Add endpoint").await;
    browser.fill("textbox", "URL", "ftp://nowhere").await;
    browser.click("button", "Save").await;
    let shown = browser.wait_for_text("alert", "url").await;
    let response = dev
        .request(&client, Method::POST, "/v1/accounts/jane/endpoints")
        .json(&json!({"url": "ftp://nowhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(shown, refused["error"]["message"].as_str().unwrap());
    browser.fill("textbox", "URL", &receiver.url("/hook")).await;
    browser.fill("textbox", "Description", XSS).await;
    browser
        .get("checkbox", "sample.created")
        .await
        .click()
        .await
        .unwrap();
    browser
        .get("checkbox", "dataset.created")
        .await
        .click()
        .await
        .unwrap();
    // hookline's own events are offered too.
    browser.get("checkbox", "endpoint.disabled").await;
    browser.screenshot("2-add-endpoint").await;
    browser.click("button", "Save").await;
    browser.get("button", "Send test event").await;
    // Its attempts table is there before its first attempt.
    browser.get("table", "Attempts").await;

    // It is listed, its description shown as the characters typed.
    browser.click("button", "← All endpoints").await;
    let url = receiver.url("/hook");
    let link = browser.get("button", &url).await;
    let table = browser.driver.find(By::Css("table")).await.unwrap();
    let row = table.text().await.unwrap();
    for shown in [XSS, "dataset.created", "sample.created", "Active"] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    assert!(table.find_all(By::Css("img")).await.unwrap().is_empty());
    browser.screenshot("3-endpoints").await;
    let (_, listed) = api(&dev, &client, Method::GET, "/v1/accounts/jane/endpoints").await;
    let endpoint = listed["data"][0].clone();
    assert_eq!(endpoint["description"], XSS);
    let types: Vec<&str> = endpoint["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, ["dataset.created", "sample.created"]);
    let endpoint_path = format!(
        "/v1/accounts/jane/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );

    // A test event, and its succeeded attempt.
    link.click().await.unwrap();
    browser.click("button", "Send test event").await;
    receiver.wait_for(1, DELIVERY_TIMEOUT).await;
    wait_for_attempts(&browser, "the test's attempt", |rows| {
        rows.len() == 1 && rows[0].starts_with("succeeded · 204")
    })
    .await;

    // The receiver fails; an event posted with the platform key fails there.
    failing.store(true, Ordering::SeqCst);
    let response = dev
        .request(&client, Method::POST, "/v1/events")
        .json(&json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let message_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = wait_for_attempts(&browser, "the failed attempt", |rows| rows.len() == 2).await;
    assert!(rows[0].starts_with("failed · 500"), "{rows:?}");
    assert!(rows[0].contains(&message_id), "{rows:?}");
    browser.click("button", "failed · 500").await;
    let details = browser.page_text().await;
    for shown in [
        DOWN,
        "Response status",
        "500",
        "Duration",
        "ms",
        "Next attempt",
    ] {
        assert!(details.contains(shown), "{shown} in the attempt's details");
    }
    browser.screenshot("4-failed-attempt").await;

    // Replayed once the receiver is back.
    failing.store(false, Ordering::SeqCst);
    browser.click("button", "Replay").await;
    let rows = wait_for_attempts(&browser, "the replay's attempt", |rows| rows.len() == 3).await;
    assert!(
        rows[0].starts_with("succeeded · 204") && rows[0].contains(&message_id),
        "{rows:?}"
    );
    let replayed = receiver
        .successes()
        .into_iter()
        .filter(|d| d.header("webhook-id") == message_id)
        .count();
    assert_eq!(replayed, 1);

    // The Status filter.
    browser.select("Status", "failed").await;
    wait_for_attempts(&browser, "only the failed attempt", |rows| {
        rows.len() == 1 && rows[0].starts_with("failed")
    })
    .await;
    browser.select("Status", "all").await;
    wait_for_attempts(&browser, "every attempt", |rows| rows.len() == 3).await;

    // The secret, revealed and rotated: what the page shows is what the API says.
    browser.click("button", "Reveal secret").await;
    let secret_path = format!("{endpoint_path}/secret");
    let (_, secret) = api(&dev, &client, Method::GET, &secret_path).await;
    let first = secret["secret"].as_str().unwrap().to_string();
    poll_until(UI_TIMEOUT, "the secret shown", || async {
        browser.page_text().await.contains(&first).then_some(())
    })
    .await;
    browser.click("button", "Rotate secret").await;
    browser.wait_for_text("status", "Secret rotated").await;
    let (_, secret) = api(&dev, &client, Method::GET, &secret_path).await;
    let rotated = secret["secret"].as_str().unwrap().to_string();
    assert_ne!(rotated, first);
    assert!(browser.page_text().await.contains(&rotated));
    // "Reveal secret" keeps its name while the secret shows, and shows it as it is
    // now; "Hide secret" hides it.
    browser.click("button", "Reveal secret").await;
    browser.click("button", "Hide secret").await;
    poll_until(UI_TIMEOUT, "the secret hidden", || async {
        (!browser.page_text().await.contains(&rotated)).then_some(())
    })
    .await;
    browser.click("button", "Reveal secret").await;
    poll_until(UI_TIMEOUT, "the rotated secret shown", || async {
        browser.page_text().await.contains(&rotated).then_some(())
    })
    .await;

    // Recover: a message failed while the receiver was down is sent again.
    failing.store(true, Ordering::SeqCst);
    let response = dev
        .request(&client, Method::POST, "/v1/events")
        .json(&json!({"event_type": "dataset.created", "dataset": "jane/flowers", "object": {"name": "flowers"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for_attempts(&browser, "the second failure", |rows| rows.len() == 4).await;
    failing.store(false, Ordering::SeqCst);
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    browser.fill("textbox", "Since", &since).await;
    browser.click("button", "Recover").await;
    browser
        .wait_for_text("status", "Recovery queued 1 failed message")
        .await;
    let rows = wait_for_attempts(&browser, "the recovered attempt", |rows| rows.len() == 5).await;
    assert!(rows[0].starts_with("succeeded · 204"), "{rows:?}");

    // More attempts at once than a page holds: each stays reachable, once, with Load more.
    let events: Vec<Value> = (0..25)
        .map(|i| json!({"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": format!("s{i}.png")}}))
        .collect();
    let response = dev
        .request(&client, Method::POST, "/v1/events/batch")
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    poll_until(DELIVERY_TIMEOUT, "all 30 attempts shown", || async {
        for more in browser.find_all(None, "button", "Load more").await {
            let _ = more.click().await;
        }
        let rows = attempt_rows(&browser).await;
        assert!(rows.len() <= 30, "{} rows: {rows:?}", rows.len());
        (rows.len() == 30).then_some(())
    })
    .await;

    // Disable, enable, edit.
    browser.click("button", "Disable").await;
    browser.get("button", "Enable").await;
    let (_, shown) = api(&dev, &client, Method::GET, &endpoint_path).await;
    assert_eq!(shown["disabled"], true);
    browser.click("button", "Enable").await;
    browser.get("button", "Disable").await;
    browser.click("button", "Edit").await;
    browser
        .fill("textbox", "Description", "Flowers to the CRM")
        .await;
    browser.click("button", "Save").await;
    browser.wait_for_text("status", "Endpoint saved").await;
    let (_, shown) = api(&dev, &client, Method::GET, &endpoint_path).await;
    assert_eq!(shown["description"], "Flowers to the CRM");
    assert_eq!(shown["disabled"], false);
    assert_eq!(shown["event_types"].as_array().unwrap().len(), 2);

    // More attempts than a page: Load more brings the rest.
    for _ in 0..20 {
        let (status, _) = api(
            &dev,
            &client,
            Method::POST,
            &format!("{endpoint_path}/test"),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    receiver.wait_for(25, DELIVERY_TIMEOUT).await;
    browser.select("Status", "succeeded").await;
    // 3 and 25 before, and these 20: two pages and a part.
    wait_for_attempts(&browser, "a page of attempts", |rows| rows.len() == 20).await;
    browser.click("button", "Load more").await;
    wait_for_attempts(&browser, "two pages of attempts", |rows| rows.len() == 40).await;
    browser.click("button", "Load more").await;
    wait_for_attempts(&browser, "every succeeded attempt", |rows| rows.len() == 48).await;
    assert!(
        browser
            .find_all(None, "button", "Load more")
            .await
            .is_empty()
    );

    // Delete, confirmed.
    browser.click("button", "Delete").await;
    let dialog = browser.get("dialog", "Delete this endpoint?").await;
    browser
        .get_within(Some(&dialog), "button", "Delete")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_text("heading", "Endpoints").await;
    poll_until(UI_TIMEOUT, "the empty list", || async {
        browser
            .page_text()
            .await
            .contains("No endpoints yet")
            .then_some(())
    })
    .await;
    let (status, _) = api(&dev, &client, Method::GET, &endpoint_path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    browser.quit().await;
}

/// Serves on `listener` a page of the platform's own site that frames `src` phone-wide.
fn serve_host_page(listener: tokio::net::TcpListener, src: &str) {
    let html = format!(
        "<!doctype html><title>Your account</title><h1>Your account</h1>\
         <iframe src=\"{src}\" title=\"Manage webhooks\" width=\"360\" height=\"720\"></iframe>"
    );
    let app = axum::Router::new().fallback(move || {
        let html = html.clone();
        async move { axum::response::Html(html) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

async fn origin(listener: &tokio::net::TcpListener) -> String {
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test]
async fn the_page_works_by_keyboard_in_a_narrow_iframe_of_an_allowed_site_only() {
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (allowed_origin, other_origin) = (origin(&allowed).await, origin(&elsewhere).await);
    let ancestors = format!("'self' {allowed_origin}");
    let dev = Dev::start_with_env(&[], &[("HOOKLINE_PORTAL_FRAME_ANCESTORS", &ancestors)]);
    let client = reqwest::Client::new();
    let long_url = "http://127.0.0.1:9/a/long/path/that/has/to/wrap/inside/a/narrow/frame";
    let response = dev
        .request(&client, Method::POST, "/v1/accounts/jane/endpoints")
        .json(&json!({"url": long_url, "description": "Orders to the CRM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = portal_url(&dev, &client, "jane").await;
    serve_host_page(allowed, &url);
    serve_host_page(elsewhere, &url);
    let browser = Browser::start(800, 900).await;
    let driver = &browser.driver;

    // A site not in HOOKLINE_PORTAL_FRAME_ANCESTORS: the browser does not show the page.
    browser.goto(&other_origin).await;
    driver.enter_frame(0).await.unwrap();
    let shown = poll_until(UI_TIMEOUT, "the frame's answer", || async {
        let href = driver.execute("return location.href", vec![]).await.ok()?;
        let href = href.json().as_str()?.to_string();
        (href != "about:blank").then_some(href)
    })
    .await;
    assert!(
        shown.starts_with("chrome-error:"),
        "the frame shows {shown}"
    );
    assert!(driver.find_all(By::Css("#app")).await.unwrap().is_empty());
    driver.enter_default_frame().await.unwrap();

    // The platform's site: the page, 360 pixels wide, without sideways scrolling.
    browser.goto(&allowed_origin).await;
    driver.enter_frame(0).await.unwrap();
    browser.get("button", long_url).await;
    // Rows shown as cards are still a table to assistive technology.
    browser.get("table", "Endpoints").await;
    let fits = driver
        .execute(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits.json(),
        &json!(true),
        "the page scrolls sideways at 360 px"
    );
    driver.enter_default_frame().await.unwrap();
    browser.screenshot("5-narrow-iframe").await;
    driver.enter_frame(0).await.unwrap();

    // By keyboard alone: open the form, type, submit with Enter.
    browser
        .get("button", "Add endpoint")
        .await
        .focus()
        .await
        .unwrap();
    driver
        .active_element()
        .await
        .unwrap()
        .send_keys(Key::Enter)
        .await
        .unwrap();
    let focused = driver.active_element().await.unwrap();
    assert_eq!(
        focused.id().await.unwrap().as_deref(),
        Some("f-url"),
        "the URL field has the focus"
    );
    focused
        .send_keys("http://127.0.0.1:9/second")
        .await
        .unwrap();
    focused.send_keys(Key::Tab).await.unwrap();
    let description = driver.active_element().await.unwrap();
    description.send_keys("Typed by keyboard").await.unwrap();
    description.send_keys(Key::Enter).await.unwrap();
    browser.get("button", "Send test event").await;
    let (_, listed) = api(&dev, &client, Method::GET, "/v1/accounts/jane/endpoints").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    // Delete asks first; Escape keeps the endpoint.
    browser.get("button", "Delete").await.focus().await.unwrap();
    driver
        .active_element()
        .await
        .unwrap()
        .send_keys(Key::Enter)
        .await
        .unwrap();
    let dialog = browser.get("dialog", "Delete this endpoint?").await;
    assert_eq!(
        driver.active_element().await.unwrap().text().await.unwrap(),
        "Cancel"
    );
    driver
        .active_element()
        .await
        .unwrap()
        .send_keys(Key::Escape)
        .await
        .unwrap();
    poll_until(UI_TIMEOUT, "the dialog closed", || async {
        (!dialog.is_displayed().await.unwrap_or(true)).then_some(())
    })
    .await;
    let (_, listed) = api(&dev, &client, Method::GET, "/v1/accounts/jane/endpoints").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    browser.quit().await;
}

#[tokio::test]
async fn a_link_shows_its_own_account_only_and_says_clearly_when_it_no_longer_works() {
    let emulator = Emulator::start().unwrap();
    let dev = Dev::start(&["--emulator", emulator.url()]);
    let client = reqwest::Client::new();
    let jane_url = "http://127.0.0.1:9/jane";
    let response = dev
        .request(&client, Method::POST, "/v1/accounts/jane/endpoints")
        .json(&json!({"url": jane_url, "description": "Jane's CRM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let jane_endpoint = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let browser = Browser::start(1000, 800).await;

    // Bob's link shows bob's account, which has nothing of jane's.
    let bob = portal_session(&dev, &client, "bob").await;
    browser.goto(bob["url"].as_str().unwrap()).await;
    browser.get("button", "Add endpoint").await;
    let page = browser.page_text().await;
    assert!(page.contains("No endpoints yet"), "{page}");
    assert!(
        !page.contains(jane_url) && !page.contains("Jane's CRM"),
        "{page}"
    );
    // Nor can its token reach jane's account by the API the page uses.
    let bob_token = bob["token"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/v1/accounts/jane/endpoints".to_string()),
        (
            Method::GET,
            format!("/v1/accounts/jane/endpoints/{jane_endpoint}"),
        ),
        (
            Method::DELETE,
            format!("/v1/accounts/jane/endpoints/{jane_endpoint}"),
        ),
        (Method::PATCH, "/v1/accounts/jane/settings".to_string()),
    ] {
        let response = client
            .request(method.clone(), dev.url(&path))
            .bearer_auth(bob_token)
            .json(&json!({"webhooks_enabled": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, settings) = api(&dev, &client, Method::GET, "/v1/accounts/jane/settings").await;
    assert_eq!(
        (status, &settings["webhooks_enabled"]),
        (StatusCode::OK, &json!(true))
    );

    // Jane's link, revoked while the page is open: the next action says so.
    browser.goto(&portal_url(&dev, &client, "jane").await).await;
    let link = browser.get("button", jane_url).await;
    assert!(browser.page_text().await.contains("Jane's CRM"));
    let response = dev
        .request(&client, Method::DELETE, "/v1/accounts/jane/portal-sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    link.click().await.unwrap();
    browser
        .wait_for_text("heading", "This link has expired")
        .await;
    assert!(!browser.page_text().await.contains("Jane's CRM"));
    browser.screenshot("6-expired").await;

    // A link past its expiry says the same from the start.
    let sdk = shared::aws::for_emulator(emulator.url()).await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        hookline_cli::local::TABLE,
        std::time::Duration::from_secs(86_400),
    );
    let expired = portal_token(&store, "jane", -time::Duration::seconds(1)).await;
    browser
        .goto(&format!("{}/portal#token={expired}", dev.url))
        .await;
    browser
        .wait_for_text("heading", "This link has expired")
        .await;
    let (status, _) = api(
        &dev,
        &client,
        Method::GET,
        &format!("/v1/accounts/jane/endpoints/{jane_endpoint}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    browser.quit().await;
}
