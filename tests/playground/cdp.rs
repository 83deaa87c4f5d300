//! A small Chrome DevTools Protocol client: commands over a page's WebSocket, each answer
//! matched to its command by id (events, which these tests do not enable, are skipped).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// No single command may take longer (a screenshot takes well under a second).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    pub async fn connect(ws_url: &str) -> Page {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the DevTools socket {ws_url}: {e}"));
        Page { socket, next_id: 0 }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(command.to_string().into()))
            .await
            .map_err(|e| format!("{method}: cannot send: {e}"))?;
        let answer = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let reply: Value = serde_json::from_str(text.as_str())
                            .map_err(|e| format!("{method}: not JSON: {e}"))?;
                        if reply["id"] != id {
                            continue;
                        }
                        if let Some(error) = reply.get("error") {
                            return Err(format!("{method} failed: {error}"));
                        }
                        return Ok(reply["result"].clone());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("{method}: socket error: {e}")),
                    None => return Err(format!("{method}: the browser closed the socket")),
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, answer)
            .await
            .map_err(|_| format!("{method}: no answer within {COMMAND_TIMEOUT:?}"))?
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("the page threw while evaluating {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// What a person reads on the page, for failure messages.
    pub async fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Evaluates `expression` every 100 ms until `accept` takes its value, for at most
    /// `timeout`; then fails with `what`, the last value and the page's text.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
        accept: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if let Some(accepted) = accept(&value) {
                return accepted;
            }
            if started.elapsed() > timeout {
                let text = self.text().await;
                panic!(
                    "waited {timeout:?} for {what}; last seen: {value}\n--- the page reads ---\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the focused element, as a keyboard would insert it.
    pub async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({"type": kind, "key": "Enter", "code": "Enter",
                                   "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
            if kind == "keyDown" {
                event["text"] = json!("\r");
            }
            self.call("Input.dispatchKeyEvent", event)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// A left click with the mouse at (x, y), in CSS pixels of the viewport.
    pub async fn click_at(&mut self, x: f64, y: f64) {
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// The viewport as PNG bytes.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("the screenshot is base64")
    }
}
