//! The playground of `serve --demo`: the real binary serves the page and its API only in demo
//! mode; what is typed goes through the signed Slack routes; and in headless Chromium a person
//! types a check, sees the `reserved_by_email` finding with its buttons, clicks re-check and
//! sees the reply replaced. A screenshot of that is checked and kept in the target directory.
//! Another person posts a ticket, opens its "…" menu, picks "Check CRM username" and sees the
//! answer in the ticket's thread. Follow-ups: "Re-check in 15 min", then "15 minutes pass"
//! instead of the wait, brings each re-check into the thread (or in place of an answer only
//! the person sees); Stop ends one, four re-checks end an unfixed one, and the demo's fix,
//! applied from the page, makes the next re-check clear.
#![cfg(feature = "demo")]

#[path = "../it/common/mod.rs"]
#[allow(dead_code)] // the playground uses a few of the integration tests' helpers
mod common;

mod cdp;
mod chromium;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use crm_username::slack::{SlackSettings, SlackWebApi, signature};
use crm_username::state::AppState;
use crm_username::store::Store;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

const QUERY: &str = "check email_a@example.com for email_b@example.com";
/// The buttons of that answer, in order, as `render::blocks` makes them.
const BUTTONS: [(&str, &str); 3] = [
    ("open_ae_user", "Open AE user"),
    ("recheck", "Re-check now"),
    ("share", "Share in channel"),
];
const VIEWPORT: (u32, u32) = (1100, 1000);
/// Generous for a busy 2-core machine; the page normally answers in well under a second.
const WAIT: Duration = Duration::from_secs(20);

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --demo` on a port of its own choosing; returns it and the URL it prints.
fn serve_demo() -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .args(["serve", "--demo"])
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the crm-username binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Playground: ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => {
            // Drained, so that the server never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            (running, url)
        }
        Err(_) => {
            let _ = running.0.kill();
            let mut log = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
            panic!("serve --demo printed no `Playground: <url>` within 30 s; its log:\n{log}");
        }
    }
}

fn http() -> reqwest::Client {
    crm_username::sources::install_crypto_provider();
    reqwest::Client::new()
}

async fn say(http: &reqwest::Client, base: &str, text: &str) {
    let response = http
        .post(format!("{base}playground/api/say"))
        .json(&json!({"text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{text:?} was not taken");
}

async fn click(http: &reqwest::Client, base: &str, message_id: u64, block: usize, element: Value) {
    let response = http
        .post(format!("{base}playground/api/click"))
        .json(&json!({"message_id": message_id, "block": block, "element": element}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the click was not taken");
}

/// Waits until the channel's messages satisfy `done`; returns them.
async fn messages_until(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let page: Value = http
            .get(format!("{base}playground/api/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        if done(&messages) {
            return messages;
        }
        assert!(
            started.elapsed() < WAIT,
            "waited {WAIT:?} for {what}; the channel holds {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn block_ids(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| b["block_id"].as_str().unwrap_or("-").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The Block Kit answer `check --format blocks` gives for `QUERY` on the demo org.
fn expected_blocks() -> Value {
    let query = crm_username::domain::Query::parse(QUERY.trim_start_matches("check ")).unwrap();
    let org = crm_username::domain::Org::new(crm_username::demo::snapshot(Utc::now()).unwrap());
    let diagnosis = crm_username::diagnose::diagnose(&query, &org, Utc::now()).unwrap();
    crm_username::render::blocks(&diagnosis)
}

#[test]
fn the_rendered_answer_has_exactly_the_buttons_the_browser_test_expects() {
    let blocks = expected_blocks();
    let buttons: Vec<(String, String)> = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().iter())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_owned(),
                e["text"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = BUTTONS
        .iter()
        .map(|(a, l)| (a.to_string(), l.to_string()))
        .collect();
    assert_eq!(buttons, expected);
}

#[tokio::test]
async fn without_demo_the_router_has_no_page_and_no_playground_api() {
    let settings = SlackSettings {
        signing_secrets: vec![SecretString::from("secret")],
        allowed_team_ids: vec![],
        admin_user_ids: vec![],
        web: SlackWebApi::new("http://127.0.0.1:9/api", None, vec![]),
    };
    let app = crm_username::server::router(AppState::new(Store::memory(), None, settings));
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/playground/api/messages"),
        ("POST", "/playground/api/say"),
        ("POST", "/playground/api/click"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_demo_answers_404_at_the_root() {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_crm-username"))
        .arg("serve")
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SLACK_SIGNING_SECRET", "not-the-demo")
        .env("REDIS_URL", common::redis_url())
        .env("REDIS_KEY_PREFIX", common::prefix("playground-off"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    let http = http();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(started.elapsed() < WAIT, "serve did not answer /healthz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["/", "/playground/api/messages"] {
        let status = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "GET {path} without --demo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_serves_the_page_while_its_slack_routes_still_refuse_unsigned_requests() {
    let (_running, base) = serve_demo();
    let http = http();
    let page = http.get(&base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the policy allows one script by nonce");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    assert!(!html.contains("{{NONCE}}") && !html.contains("src=\"http"));

    // The demo's own Slack routes are not opened up by the playground.
    let form = "team_id=T1&user_id=U1&command=%2Fcrm-username&text=check+alex";
    let unsigned = http
        .post(format!("{base}slack/commands"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let ts = Utc::now().timestamp().to_string();
    let forged = http
        .post(format!("{base}slack/commands"))
        .header(signature::TIMESTAMP_HEADER, &ts)
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign("a-guess", &ts, form.as_bytes()),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_and_clicks_reach_the_bot_as_slack_requests_and_replies_land_in_the_channel() {
    let (_running, base) = serve_demo();
    let http = http();

    // A slash command: the person's line, then the answer, exactly the blocks of `check`.
    say(&http, &base, QUERY).await;
    let messages = messages_until(&http, &base, "the answer", |m| m.len() == 2).await;
    assert_eq!(messages[0]["author"], "person");
    assert_eq!(
        messages[0]["text"],
        "/crm-username check email_a@example.com for email_b@example.com"
    );
    let answer = &messages[1];
    assert_eq!(
        (answer["author"].as_str(), answer["ephemeral"].as_bool()),
        (Some("bot"), Some(true))
    );
    assert_eq!(block_ids(answer), block_ids(&expected_blocks()));
    assert_eq!(answer["text"], expected_blocks()["text"]);
    let id = answer["id"].as_u64().unwrap();
    let footer = block_ids(answer)
        .iter()
        .position(|b| b == "footer")
        .unwrap();

    // Share in channel: a new message everyone sees, saying who shared it, without buttons.
    click(&http, &base, id, footer, json!(1)).await;
    let messages = messages_until(&http, &base, "the shared answer", |m| m.len() == 3).await;
    let shared = &messages[2];
    assert_eq!(shared["ephemeral"], false);
    assert_eq!(
        shared["blocks"][0]["elements"][0]["text"],
        "Shared by <@U0PLAYGROUND>"
    );
    assert!(!block_ids(shared).contains(&"footer".to_owned()));

    // Re-check: the same message replaced, once.
    click(&http, &base, id, footer, json!(0)).await;
    let messages = messages_until(&http, &base, "the re-checked answer", |m| {
        m.get(1).is_some_and(|a| a["revision"] == 1)
    })
    .await;
    assert_eq!(messages.len(), 3);
    assert_eq!(block_ids(&messages[1]), block_ids(&expected_blocks()));

    // A mention is answered in its thread through chat.postMessage; picking a candidate
    // (a section's accessory) replaces the ambiguous answer with that user's.
    say(&http, &base, "@crm-username check alex").await;
    let messages = messages_until(&http, &base, "the answer in the thread", |m| m.len() == 5).await;
    let (mention, reply) = (&messages[3], &messages[4]);
    assert_eq!(mention["text"], "<@U0CRMUSERNAME> check alex");
    assert_eq!(reply["thread_ts"], mention["ts"]);
    assert_eq!(
        reply["blocks"][0]["text"]["text"],
        "Several users match: alex"
    );
    let candidate = block_ids(reply)
        .iter()
        .position(|b| b == "candidate:0")
        .unwrap();
    click(
        &http,
        &base,
        reply["id"].as_u64().unwrap(),
        candidate,
        Value::Null,
    )
    .await;
    let messages = messages_until(&http, &base, "the picked candidate", |m| {
        m.get(4).is_some_and(|r| r["revision"] == 1)
    })
    .await;
    assert_eq!(
        messages[4]["blocks"][0]["text"]["text"],
        "Clear: 005Ak00000ALXK1IAP"
    );

    // Not a button: refused with a reason, nothing sent.
    let refused = http
        .post(format!("{base}playground/api/click"))
        .json(&json!({"message_id": id, "block": 0, "element": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error": "there is no button there"})
    );
}

/// The bot messages on the page: id, revision, "(edited)", block ids, the finding's text and
/// the buttons (action id, label without the external-link mark).
const BOT_MESSAGES_JS: &str = r#"JSON.stringify([...document.querySelectorAll('#messages .message[data-author="bot"]')].map(m => ({
  id: m.dataset.messageId,
  revision: m.dataset.revision,
  edited: m.querySelector(':scope > .body > .meta > .edited') !== null,
  blocks: [...m.querySelectorAll('.block')].map(b => b.dataset.blockId || b.dataset.blockType),
  header: (m.querySelector('.block-header') || {}).textContent || null,
  finding: (m.querySelector('[data-block-id="finding:reserved_by_email:0"] b') || {}).textContent || null,
  buttons: [...m.querySelectorAll('button.bk-button')].map(b => [b.dataset.actionId,
    [...b.childNodes].filter(n => !(n.classList && n.classList.contains('external'))).map(n => n.textContent).join('')]),
})))"#;

fn parse(value: &Value) -> Vec<Value> {
    value
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// Headless Chromium at `VIEWPORT` showing the playground at `base`, once the page has loaded
/// and heard from the server.
async fn open_page(base: &str) -> (chromium::Chromium, cdp::Page) {
    let browser = chromium::Chromium::launch(VIEWPORT.0, VIEWPORT.1);
    let mut page = cdp::Page::connect(&browser.page_socket_url().await).await;
    let (width, height) = VIEWPORT;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await
    .unwrap();
    page.call("Page.navigate", json!({"url": base}))
        .await
        .unwrap();
    page.wait_for(
        "the page to load",
        WAIT,
        "document.readyState === 'complete' && document.body.dataset.version !== undefined",
        |v| (v == &json!(true)).then_some(()),
    )
    .await;
    (browser, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_typed_check_shows_reserved_by_email_and_recheck_replaces_the_reply() {
    let (_running, base) = serve_demo();
    let (_browser, mut page) = open_page(&base).await;

    page.eval("document.getElementById('input').focus()").await;
    page.type_text(QUERY).await;
    page.press_enter().await;
    let first = page
        .wait_for("the reserved_by_email answer", WAIT, BOT_MESSAGES_JS, |v| {
            parse(v).into_iter().find(|m| !m["finding"].is_null())
        })
        .await;
    assert_eq!(
        first["header"],
        "Blocked: email_a@example.com for email_b@example.com"
    );
    assert_eq!(
        first["finding"],
        "Reserved for AE user email_a@example.com in Acme North America, whose email equals the username"
    );
    assert_eq!(first["buttons"], json!(BUTTONS));
    assert_eq!(
        first["blocks"],
        json!([
            "header",
            "summary",
            "context",
            "divider",
            "finding:reserved_by_email:0",
            "links:0",
            "footer"
        ])
    );
    assert_eq!(
        (first["revision"].as_str(), first["edited"].as_bool()),
        (Some("0"), Some(false))
    );
    // The composer was cleared once the bot took the text.
    assert_eq!(
        page.eval("document.getElementById('input').value").await,
        ""
    );

    // Click "Re-check now" with the mouse, where it is drawn.
    let id = first["id"].as_str().unwrap().to_owned();
    let center = page
        .eval(&format!(
            "(() => {{ const b = document.querySelector('.message[data-message-id=\"{id}\"] button[data-action-id=\"recheck\"]');
                b.scrollIntoView({{block: 'center'}}); const r = b.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ))
        .await;
    page.click_at(center[0].as_f64().unwrap(), center[1].as_f64().unwrap())
        .await;
    let updated = page
        .wait_for(
            "the re-checked answer to replace the first",
            WAIT,
            BOT_MESSAGES_JS,
            |v| {
                let bots = parse(v);
                bots.iter()
                    .find(|m| m["id"] == id && m["revision"] == "1")
                    .cloned()
                    .map(|m| (m, bots.len()))
            },
        )
        .await;
    let (updated, bot_messages) = updated;
    assert_eq!(
        bot_messages, 1,
        "re-check replaces the answer, it adds no message"
    );
    assert_eq!(updated["edited"], true);
    assert_eq!(updated["buttons"], first["buttons"]);
    assert_eq!(updated["blocks"], first["blocks"]);
    assert_eq!(updated["finding"], first["finding"]);

    // The screenshot: a PNG of the viewport, not blank, kept for people to look at.
    // No hover highlight or focus ring in the picture.
    page.eval("document.activeElement && document.activeElement.blur()")
        .await;
    page.call(
        "Input.dispatchMouseEvent",
        json!({"type": "mouseMoved", "x": 1, "y": 1}),
    )
    .await
    .unwrap();
    let png_bytes = page.screenshot().await;
    let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG decodes");
    assert_eq!((frame.width, frame.height), VIEWPORT);
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(channels).collect();
    assert!(
        colours.len() > 200,
        "the screenshot has only {} colours: blank?",
        colours.len()
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground.png");
    std::fs::write(&out, &png_bytes).unwrap();
    eprintln!("screenshot: {}", out.display());

    // Markup and Slack syntax in what is typed show as typed: no element, no link, no mention.
    let hostile =
        "@crm-username check <img src=x onerror=alert(1)> <!channel> <https://evil.example|bank>";
    page.eval("document.getElementById('input').focus()").await;
    page.type_text(hostile).await;
    page.press_enter().await;
    let shown = page
        .wait_for(
            "the hostile line to show",
            WAIT,
            r#"JSON.stringify([...document.querySelectorAll('#messages .message[data-author="person"] .text')].map(t => t.textContent))"#,
            |v| {
                parse(v)
                    .into_iter()
                    .find(|t| t.as_str().is_some_and(|t| t.contains("onerror")))
            },
        )
        .await;
    assert_eq!(
        shown,
        "@crm-username check <img src=x onerror=alert(1)> <!channel> <https://evil.example|bank>"
    );
    let injected = page
        .eval("document.querySelectorAll('#messages img, #messages a[href*=\"evil\"], #messages .mention:not(:first-child)').length")
        .await;
    assert_eq!(injected, 0);
}

#[tokio::test]
async fn an_audit_in_the_playground_shares_its_csv_in_the_channel_and_replaces_auditing_with_the_summary()
 {
    let (_running, base) = serve_demo();
    let http = http();
    say(&http, &base, "audit").await;
    let messages = messages_until(&http, &base, "the audit's file and summary", |m| {
        m.iter().any(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("mappings need attention"))
        })
    })
    .await;
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts[0], "/crm-username audit");
    // The file Slack would show: the comment, then the CSV's title and size.
    let file = texts
        .iter()
        .find(|t| t.contains(":page_facing_up: Audit of every business unit (CSV, "))
        .unwrap_or_else(|| panic!("no file in {texts:#?}"));
    assert!(file.contains(" rows ("), "{file}");
    // "Auditing…" was replaced by the summary, which says where the CSV is.
    let summary = messages
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("mappings need attention"))
        })
        .unwrap();
    assert_eq!(summary["revision"], 1);
    assert!(
        summary["blocks"]
            .to_string()
            .contains("is shared in this channel"),
        "{summary}"
    );
    assert!(
        !texts.iter().any(|t| t.starts_with("Auditing")),
        "{texts:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tickets_message_shortcut_is_answered_in_its_thread() {
    let (_running, base) = serve_demo();
    let http = http();
    say(
        &http,
        &base,
        "ticket: old.timer@acme.com and sam.sales@acme.com cannot be picked",
    )
    .await;
    let messages = messages_until(&http, &base, "the ticket", |m| m.len() == 1).await;
    let ticket = &messages[0];
    assert_eq!(
        (ticket["author"].as_str(), ticket["ephemeral"].as_bool()),
        (Some("person"), Some(false))
    );
    let response = http
        .post(format!("{base}playground/api/shortcut"))
        .json(&json!({"message_id": ticket["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let messages =
        messages_until(&http, &base, "the summary in the thread", |m| m.len() == 2).await;
    let summary = &messages[1];
    assert_eq!(summary["thread_ts"], ticket["ts"]);
    assert_eq!(summary["ephemeral"], false);
    assert_eq!(block_ids(summary), ["addresses", "address:0", "address:1"]);
    // No shortcut on what only one person sees.
    say(&http, &base, "check alex").await;
    let messages = messages_until(&http, &base, "the ephemeral answer", |m| m.len() == 4).await;
    let refused = http
        .post(format!("{base}playground/api/shortcut"))
        .json(&json!({"message_id": messages[3]["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_message_shortcut_on_a_ticket_shows_the_answer_in_its_thread() {
    let (_running, base) = serve_demo();
    let (_browser, mut page) = open_page(&base).await;
    page.eval("document.getElementById('input').focus()").await;
    page.type_text("ticket: old.timer@acme.com cannot be picked in the dropdown")
        .await;
    page.press_enter().await;
    let ticket = page
        .wait_for(
            "the ticket to show",
            WAIT,
            r#"(() => { const m = document.querySelector('#messages .message[data-author="person"]'); return m ? m.dataset.messageId : null; })()"#,
            |v| v.as_str().map(str::to_owned),
        )
        .await;

    // The "…" menu, then "Check CRM username", clicked with the mouse where they are drawn.
    let center_of = |selector: String| {
        format!(
            "(() => {{ const b = document.querySelector('{selector}'); if (!b) return null;
                b.scrollIntoView({{block: 'center'}}); const r = b.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        )
    };
    let message = format!(".message[data-message-id=\"{ticket}\"]");
    let more = page
        .wait_for(
            "the … button",
            WAIT,
            &center_of(format!("{message} > .more-actions")),
            |v| v.as_array().cloned(),
        )
        .await;
    page.click_at(more[0].as_f64().unwrap(), more[1].as_f64().unwrap())
        .await;
    let item = page
        .wait_for(
            "the shortcut menu",
            WAIT,
            &center_of(format!(
                "{message} > .shortcut-menu button[data-callback-id=\"check_crm_username\"]"
            )),
            |v| v.as_array().cloned(),
        )
        .await;
    assert_eq!(
        page.eval(&format!(
            "document.querySelector('{message} > .shortcut-menu button').textContent"
        ))
        .await,
        "Check CRM username"
    );
    page.click_at(item[0].as_f64().unwrap(), item[1].as_f64().unwrap())
        .await;

    // The answer arrives in the ticket's thread, for everyone, without "Share in channel".
    let reply = page
        .wait_for(
            "the answer in the ticket's thread",
            WAIT,
            &format!(
                r#"(() => {{ const r = document.querySelector('{message} .thread .message[data-author="bot"]');
                    if (!r) return null;
                    return JSON.stringify({{ header: (r.querySelector('.block-header') || {{}}).textContent || null,
                      ephemeral: r.dataset.ephemeral,
                      buttons: [...r.querySelectorAll('button.bk-button')].map(b => b.dataset.actionId) }}); }})()"#
            ),
            |v| {
                v.as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
            },
        )
        .await;
    assert_eq!(reply["header"], "Blocked: old.timer@acme.com");
    assert_eq!(reply["ephemeral"], "false");
    let buttons: Vec<&str> = reply["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(buttons.contains(&"recheck"), "{buttons:?}");
    assert!(!buttons.contains(&"share"), "{buttons:?}");

    // The picture of it, kept for people to look at (docs/shortcut.png is one).
    page.eval("document.activeElement && document.activeElement.blur()")
        .await;
    page.eval(&format!(
        "document.querySelector('{message}').scrollIntoView({{block: 'start'}})"
    ))
    .await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground-shortcut.png");
    std::fs::write(&out, page.screenshot().await).unwrap();
    eprintln!("screenshot: {}", out.display());
}

/// Where the button `action_id` is in `message`: its block and its place in that block.
fn button_at(message: &Value, action_id: &str) -> (usize, usize) {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find_map(|(b, block)| {
            block["elements"]
                .as_array()?
                .iter()
                .position(|e| e["action_id"] == action_id)
                .map(|e| (b, e))
        })
        .unwrap_or_else(|| panic!("no {action_id} button in {message:#}"))
}

fn action_ids(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["elements"].as_array())
                .flatten()
                .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// "15 minutes pass": how many follow-ups were re-checked.
async fn pass_time(http: &reqwest::Client, base: &str) -> u64 {
    let response = http
        .post(format!("{base}playground/api/pass-time"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["re_checked"]
        .as_u64()
        .unwrap()
}

const NORA: &str = "@crm-username check nora.north@acme.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_playground_stop_ends_a_follow_up_and_an_unfixed_one_gives_up_after_four_re_checks()
{
    let (_running, base) = serve_demo();
    let http = http();
    say(&http, &base, NORA).await;
    let messages = messages_until(&http, &base, "the answer in the thread", |m| m.len() == 2).await;
    let answer = messages[1].clone();
    let (block, element) = button_at(&answer, "follow_up");
    let answer_id = answer["id"].as_u64().unwrap();

    // Asked, re-checked once, then stopped: nothing more is re-checked.
    click(&http, &base, answer_id, block, json!(element)).await;
    let messages = messages_until(&http, &base, "the confirmation", |m| m.len() == 3).await;
    let confirmation = messages[2].clone();
    assert!(action_ids(&confirmation).contains(&"stop_follow_up".to_owned()));
    assert_eq!(pass_time(&http, &base).await, 1);
    messages_until(&http, &base, "re-check 1", |m| m.len() == 4).await;
    let (stop_block, stop) = button_at(&confirmation, "stop_follow_up");
    click(
        &http,
        &base,
        confirmation["id"].as_u64().unwrap(),
        stop_block,
        json!(stop),
    )
    .await;
    let messages = messages_until(&http, &base, "the stop", |m| m.len() == 5).await;
    assert_eq!(
        messages[4]["text"],
        ":octagonal_sign: <@U0PLAYGROUND> stopped the follow-up re-checks of nora.north@acme.com."
    );
    assert_eq!(messages[4]["thread_ts"], messages[0]["ts"]);
    assert_eq!(pass_time(&http, &base).await, 0);
    let messages = messages_until(&http, &base, "the note that none is pending", |m| {
        m.len() == 6
    })
    .await;
    assert_eq!(messages[5]["author"], "playground");

    // Asked again and never fixed: four re-checks, the last one says what to look at next
    // and offers no Stop; then there is nothing left to re-check.
    click(&http, &base, answer_id, block, json!(element)).await;
    messages_until(&http, &base, "the second confirmation", |m| m.len() == 7).await;
    for try_number in 1..=4 {
        assert_eq!(pass_time(&http, &base).await, 1, "re-check {try_number}");
        let messages =
            messages_until(&http, &base, "the re-check", |m| m.len() == 7 + try_number).await;
        let recheck = &messages[6 + try_number];
        let text = recheck["blocks"].to_string();
        assert!(
            text.contains(&format!("Follow-up re-check {try_number} of 4")),
            "{text}"
        );
        assert_eq!(recheck["thread_ts"], messages[0]["ts"]);
        assert_eq!(
            recheck["blocks"][1]["text"]["text"],
            "Blocked: nora.north@acme.com"
        );
        let stop = action_ids(recheck).contains(&"stop_follow_up".to_owned());
        assert_eq!(stop, try_number < 4, "Stop on re-check {try_number}");
        if try_number == 4 {
            assert!(text.contains("Still not clear after 4 re-checks"), "{text}");
            assert!(
                text.contains("Business Unit Setup > Assign Users"),
                "{text}"
            );
        }
    }
    assert_eq!(pass_time(&http, &base).await, 0);
}

/// The thread replies of the bot message whose thread holds the follow-up: per reply its
/// context line, its header, its follow-up line and its buttons.
const THREAD_JS: &str = r#"JSON.stringify([...document.querySelectorAll('#messages .thread .message[data-author="bot"]')].map(m => ({
  id: m.dataset.messageId,
  context: (m.querySelector('.block-context') || {}).textContent || null,
  header: (m.querySelector('.block-header') || {}).textContent || null,
  follow_up: (m.querySelector('[data-block-id="follow_up"]') || {}).textContent || null,
  buttons: [...m.querySelectorAll('button.bk-button')].map(b => [b.dataset.actionId, b.textContent]),
})))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_follow_up_re_checks_when_15_minutes_pass_and_turns_clear_once_the_fix_is_applied()
 {
    let (_running, base) = serve_demo();
    let (_browser, mut page) = open_page(&base).await;
    page.eval("document.getElementById('input').focus()").await;
    page.type_text(NORA).await;
    page.press_enter().await;

    // The answer in the thread carries "Re-check in 15 min".
    let answer = page
        .wait_for("the answer in the thread", WAIT, THREAD_JS, |v| {
            parse(v).into_iter().next()
        })
        .await;
    assert_eq!(answer["header"], "Blocked: nora.north@acme.com");
    assert!(
        answer["buttons"]
            .as_array()
            .unwrap()
            .contains(&json!(["follow_up", "Re-check in 15 min"])),
        "{answer}"
    );
    let center_of = |selector: &str| {
        format!(
            "(() => {{ const b = document.querySelector('{selector}'); if (!b) return null;
                b.scrollIntoView({{block: 'center'}}); const r = b.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        )
    };
    let click_on = async |page: &mut cdp::Page, what: &str, selector: &str| {
        let at = page
            .wait_for(what, WAIT, &center_of(selector), |v| v.as_array().cloned())
            .await;
        page.click_at(at[0].as_f64().unwrap(), at[1].as_f64().unwrap())
            .await;
    };
    let id = answer["id"].as_str().unwrap().to_owned();
    click_on(
        &mut page,
        "Re-check in 15 min",
        &format!(".message[data-message-id=\"{id}\"] button[data-action-id=\"follow_up\"]"),
    )
    .await;
    let confirmation = page
        .wait_for("the confirmation with Stop", WAIT, THREAD_JS, |v| {
            parse(v).into_iter().nth(1)
        })
        .await;
    assert_eq!(
        confirmation["follow_up"],
        "\u{23f0} @you asked for a follow-up: I will re-check nora.north@acme.com in 15 minutes and post the new verdict here, every 15 minutes until it is clear, 4 times at most."
    );
    assert_eq!(confirmation["buttons"], json!([["stop_follow_up", "Stop"]]));

    // 15 minutes pass: the first re-check arrives in the thread, still blocked.
    click_on(&mut page, "15 minutes pass", "#pass-time").await;
    let first = page
        .wait_for("re-check 1 in the thread", WAIT, THREAD_JS, |v| {
            parse(v).into_iter().nth(2)
        })
        .await;
    assert_eq!(
        first["context"],
        "\u{23f0} Follow-up re-check 1 of 4 of nora.north@acme.com, asked by @you"
    );
    assert_eq!(first["header"], "Blocked: nora.north@acme.com");
    assert_eq!(
        first["follow_up"],
        "\u{23f3} Not clear yet: I will re-check again in 15 minutes."
    );
    assert!(
        first["buttons"]
            .as_array()
            .unwrap()
            .contains(&json!(["stop_follow_up", "Stop"]))
    );

    // The fix, applied to the playground's demo org; then 15 more minutes: clear, and done.
    click_on(&mut page, "the fix", "#apply-fix").await;
    page.wait_for(
        "the fix to be applied",
        WAIT,
        "document.getElementById('apply-fix').disabled",
        |v| (v == &json!(true)).then_some(()),
    )
    .await;
    click_on(&mut page, "15 minutes pass", "#pass-time").await;
    let second = page
        .wait_for("re-check 2 in the thread", WAIT, THREAD_JS, |v| {
            parse(v).into_iter().nth(3)
        })
        .await;
    assert_eq!(
        second["context"],
        "\u{23f0} Follow-up re-check 2 of 4 of nora.north@acme.com, asked by @you"
    );
    assert_eq!(second["header"], "Clear: nora.north@acme.com");
    assert_eq!(
        second["follow_up"],
        "\u{2705} The verdict is clear: no more follow-ups."
    );
    assert!(
        !second["buttons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b[0] == "stop_follow_up"),
        "{second}"
    );

    page.eval("document.activeElement && document.activeElement.blur()")
        .await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground-follow-up.png");
    std::fs::write(&out, page.screenshot().await).unwrap();
    eprintln!("screenshot: {}", out.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_playground_a_follow_up_of_an_answer_only_you_see_replaces_that_answer() {
    let (_running, base) = serve_demo();
    let http = http();
    say(&http, &base, "check nora.north@acme.com").await;
    let messages = messages_until(&http, &base, "the answer", |m| m.len() == 2).await;
    let answer = messages[1].clone();
    assert_eq!(answer["ephemeral"], true);
    let (block, element) = button_at(&answer, "follow_up");
    click(
        &http,
        &base,
        answer["id"].as_u64().unwrap(),
        block,
        json!(element),
    )
    .await;
    let messages = messages_until(&http, &base, "the confirmation", |m| m.len() == 3).await;
    assert_eq!(messages[2]["ephemeral"], true);
    assert!(action_ids(&messages[2]).contains(&"stop_follow_up".to_owned()));

    assert_eq!(pass_time(&http, &base).await, 1);
    let messages = messages_until(&http, &base, "the answer replaced", |m| {
        m.get(1).is_some_and(|a| a["revision"] == 1)
    })
    .await;
    assert_eq!(messages.len(), 3, "replaced, not added");
    let text = messages[1]["blocks"].to_string();
    assert!(text.contains("Follow-up re-check 1 of 4"), "{text}");
    assert!(text.contains("Not clear yet"), "{text}");
}
