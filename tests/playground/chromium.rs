//! Debian's Chromium, headless, with the DevTools protocol on a port it picks itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Installs are not run twice at once.
static INSTALL: Mutex<()> = Mutex::new(());

/// The browser: `CHROMIUM_PATH`, or Debian's `chromium`, installed with apt-get when missing
/// and running as root (as scripts/test.sh does); otherwise the test fails saying so.
pub fn executable() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = std::env::var_os("CHROMIUM_PATH") {
        return PathBuf::from(path);
    }
    if let Some(found) = on_path() {
        return found;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = Path::new("/usr/bin/apt-get").exists();
    if root && apt {
        eprintln!("installing chromium with apt-get (the playground's browser test needs it)");
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "chromium"][..],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "apt-get {} failed: install chromium by hand (apt-get install chromium)",
                args.join(" ")
            );
        }
        if let Some(found) = on_path().or_else(|| {
            let debian = Path::new("/usr/bin/chromium");
            debian.exists().then(|| debian.to_path_buf())
        }) {
            return found;
        }
    }
    panic!(
        "Chromium is not installed, and the playground's browser test needs it. Install it \
         (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM_PATH to a Chrome or \
         Chromium binary; scripts/test.sh installs it when run as root."
    );
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// One browser at a time: two headless Chromiums starting together on a busy 2-core machine
/// were seen to take more than half a minute to open DevTools.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Chromium {
    child: Child,
    profile: tempfile::TempDir,
    pub port: u16,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    /// Starts a headless browser with its own empty profile and waits for its DevTools port.
    pub fn launch(width: u32, height: u32) -> Chromium {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let executable = executable();
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let log = std::fs::File::create(profile.path().join("stderr.log")).expect("a log file");
        let child = Command::new(&executable)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
        let mut browser = Chromium {
            child,
            profile,
            port: 0,
            _turn: turn,
        };
        browser.port = browser.devtools_port();
        browser
    }

    /// Chromium writes the port it chose into `DevToolsActivePort` in the profile.
    fn devtools_port(&mut self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Chromium exited ({status}) before it opened DevTools:\n{}",
                    self.log()
                );
            }
            if started.elapsed() > Duration::from_secs(90) {
                panic!(
                    "Chromium opened no DevTools port within 90 s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default()
    }

    /// The WebSocket of the first page (the `about:blank` tab it opened with).
    pub async fn page_socket_url(&self) -> String {
        crm_username::sources::install_crypto_provider();
        let started = Instant::now();
        loop {
            let targets: Option<serde_json::Value> = async {
                reqwest::get(format!("http://127.0.0.1:{}/json/list", self.port))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()
            }
            .await;
            let page = targets.as_ref().and_then(|t| {
                t.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")?
                    .get("webSocketDebuggerUrl")?
                    .as_str()
                    .map(str::to_owned)
            });
            if let Some(url) = page {
                return url;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Chromium listed no page within 30 s: {targets:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
