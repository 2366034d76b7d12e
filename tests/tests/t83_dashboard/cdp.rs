//! Headless Chromium driven through the DevTools protocol over
//! `--remote-debugging-pipe`: Chromium reads commands on fd 3 and writes
//! answers and events on fd 4, each a JSON message ended by a NUL byte. No
//! websocket and no extra crate: std pipes, a reader thread, serde_json.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium to drive: `KEEL_CHROMIUM`, else the first of the usual
/// names on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    })
}

/// One headless browser with one page; killed when dropped.
pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    answers: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Chromium's stderr, for failures.
    log: PathBuf,
}

impl Browser {
    /// Starts `chromium` with a profile under `dir` and opens a blank page.
    pub fn start(chromium: &Path, dir: &Path) -> Result<Browser> {
        let (chrome_reads, commands) = std::io::pipe()?;
        let (answers_in, chrome_writes) = std::io::pipe()?;
        let (r, w) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let log = dir.join("chromium.log");
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--mute-audio",
            "--font-render-hinting=none",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
        // SAFETY: between fork and exec only async-signal-safe calls
        // (fcntl, dup2) on descriptors this process owns. The pipe ends are
        // first copied above 10 so that placing them on 3 and 4 cannot
        // overwrite one another; dup2 clears close-on-exec on the copies.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", chromium.display()))?;
        drop((chrome_reads, chrome_writes));
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut input = BufReader::new(answers_in);
            let mut buf = Vec::new();
            while input.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            commands,
            answers,
            next_id: 0,
            session: String::new(),
            log,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let id = target["targetId"].as_str().context("targetId")?.to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": id, "flatten": true}),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .context("sessionId")?
            .to_owned();
        b.page("Page.enable", json!({}))?;
        Ok(b)
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(0);
        self.commands.write_all(&bytes)?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    if let Some(e) = v.get("error") {
                        bail!("{method}: {e}");
                    }
                    return Ok(v["result"].clone());
                }
                Ok(_) => {} // an event or another session's answer
                Err(RecvTimeoutError::Timeout) => bail!("{method}: no answer in time"),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{method}: chromium closed its pipe; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    /// A browser-level command.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.send(method, params, false)
    }

    /// A command to the page.
    pub fn page(&mut self, method: &str, params: Value) -> Result<Value> {
        self.send(method, params, true)
    }

    /// Sets the viewport; `mobile` also emulates a phone's viewport rules.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) -> Result<()> {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )?;
        Ok(())
    }

    /// Loads `url`.
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        let r = self.page("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r.get("errorText") {
            bail!("navigating to {url}: {e}");
        }
        Ok(())
    }

    /// The value of a JavaScript expression in the page (awaited if a
    /// promise).
    pub fn eval(&mut self, expr: &str) -> Result<Value> {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expr}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `expr` is `true` in the page; the page may be navigating
    /// meanwhile (an evaluation that fails counts as not yet).
    pub fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.eval(expr) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => last = v,
                Err(e) => last = json!(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = self
            .eval("document.body ? document.body.innerText : ''")
            .unwrap_or_default();
        bail!("timed out waiting for {what} ({expr} was {last}); the page said:\n{body}")
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        self.capture(path, json!({"format": "png"}))
    }

    /// A PNG of the element `selector` (with a margin), wherever it is on
    /// the page.
    pub fn screenshot_of(&mut self, path: &Path, selector: &str) -> Result<()> {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }})()"
        ))?;
        let n = |i: usize| r[i].as_f64().unwrap_or_default();
        let m = 12.0;
        let clip = json!({"x": n(0) - m, "y": n(1) - m, "width": n(2) + 2.0 * m,
                          "height": n(3) + 2.0 * m, "scale": 1});
        self.capture(
            path,
            json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
        )
    }

    fn capture(&mut self, path: &Path, params: Value) -> Result<()> {
        let r = self.page("Page.captureScreenshot", params)?;
        let data = r["data"].as_str().context("screenshot data")?;
        std::fs::write(path, base64_decode(data)?)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as DevTools sends screenshots.
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {c:#x}"),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Ok(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8=").expect("b64"), b"hello");
    assert_eq!(base64_decode("aGk=").expect("b64"), b"hi");
    assert_eq!(base64_decode("YWJj").expect("b64"), b"abc");
}
