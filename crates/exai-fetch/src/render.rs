//! Rendering script-built pages in a local headless Chromium.
//!
//! Some documentation sites ship an empty shell and build the page in the browser; their
//! server HTML indexes as nothing. [`needs_rendering`] recognises such a shell and
//! [`Renderer::render`] runs Chromium (`--headless --dump-dom`) on it as a subprocess, because a
//! subprocess can be bounded absolutely: it runs in a process group of its own, and at the
//! deadline the whole group (Chromium forks renderer and utility helpers) is killed, so a page
//! that never finishes loading cannot hang a crawl or leave browsers behind. Its output is
//! capped, and its profile (and the crash reporter's files, via `HOME`) lives in a fresh
//! temporary directory removed afterwards; the crash reporter, which detaches from the group,
//! is found by that directory on its command line and killed too.
//!
//! Address policy: the page's host is resolved and checked before Chromium starts, and Chromium
//! is confined with `--host-resolver-rules` to that host pinned at the checked address; every
//! other name resolves to nothing and proxies are off. Residual risk: subresources on the page's
//! own host load (that host was allowed), and a page can still address IP literals directly
//! (the resolver rules map names, not literals), such as `fetch("http://10.0.0.1/")`; WebRTC is
//! limited to proxied UDP. Render only sites you would let a browser on this machine open.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, Uid};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use url::{Host, Url};

use crate::error::FetchError;
use crate::html::HtmlFacts;
use crate::policy::AllowList;

/// Below this many characters of main text, a page with scripts is taken for a script-built
/// shell. Real documentation pages have thousands; app shells have a title and a "loading…".
pub const MIN_MAIN_TEXT_CHARS: usize = 200;

/// Where the install hint for a missing Chromium comes from, also used in skip reasons.
pub const INSTALL_HINT: &str =
    "install Chromium (Debian: apt install chromium) or set EXAI_CHROMIUM";

/// When the crawler renders HTML pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenderMode {
    /// Render pages that [`needs_rendering`] picks, when Chromium is installed; report them as
    /// skipped ("needs rendering") when it is not.
    #[default]
    Auto,
    /// Render every HTML page (fails a page when Chromium is missing).
    Always,
    /// Never start a browser; index server HTML as it is.
    Never,
}

/// Whether server HTML looks like a script-built shell. All of:
/// - it has a `<script>` that could build the page;
/// - it is not a redirect stub (`<meta http-equiv="refresh">`; the crawler follows those);
/// - under [`MIN_MAIN_TEXT_CHARS`] characters of visible text outside script, style, nav,
///   header and footer;
/// - and either none of that text is in a paragraph, heading, list item, table cell or code
///   block (a "Loading…" div), or an app framework's mount point (`#root`, `#app`, `#__next`,
///   `#__nuxt`, `#___gatsby`) is empty.
///
/// A short page with real written content (a one-line reference entry, a section index with
/// its heading) is therefore taken as it is, not rendered and not skipped.
pub fn needs_rendering(html: &str) -> bool {
    let page = Url::parse("http://render.invalid/").ok();
    page.is_some_and(|url| shell_facts(&crate::html::analyse(html, &url)))
}

pub(crate) fn shell_facts(facts: &HtmlFacts) -> bool {
    facts.has_scripts
        && facts.refresh.is_none()
        && facts.main_text_chars < MIN_MAIN_TEXT_CHARS
        && (facts.content_text_chars == 0 || facts.empty_mount_point)
}

/// A located Chromium and the bounds of each render.
#[derive(Debug, Clone)]
pub struct Renderer {
    binary: PathBuf,
    deadline: Duration,
    max_output_bytes: usize,
    virtual_time_budget: Duration,
    temp_root: Option<PathBuf>,
}

impl Renderer {
    /// The browser named by `EXAI_CHROMIUM`, else the first of `chromium`, `chromium-browser`,
    /// `google-chrome` on `PATH`; `None` when there is none.
    pub fn find() -> Option<Self> {
        if let Some(path) = std::env::var_os("EXAI_CHROMIUM").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return path.is_file().then(|| Self::new(path));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| {
                ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
            })
            .find(|candidate| candidate.is_file())
            .map(Self::new)
    }

    /// A renderer running `binary`, with a 30 s deadline, 8 MiB output cap and 5 s of
    /// virtual time for scripts.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            deadline: Duration::from_secs(30),
            max_output_bytes: 8 * 1024 * 1024,
            virtual_time_budget: Duration::from_secs(5),
            temp_root: None,
        }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The hard deadline of one render, after which the browser's process group is killed.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn with_max_output_bytes(mut self, max: usize) -> Self {
        self.max_output_bytes = max;
        self
    }

    /// How long Chromium lets scripts and timers run (virtual time) before dumping the DOM.
    pub fn with_virtual_time_budget(mut self, budget: Duration) -> Self {
        self.virtual_time_budget = budget;
        self
    }

    /// Where the per-render profile directories are created (default: the system temp dir).
    pub fn with_temp_root(mut self, root: PathBuf) -> Self {
        self.temp_root = Some(root);
        self
    }

    /// The DOM of `url` after its scripts ran, serialised as HTML.
    pub async fn render(&self, url: &Url, allow: &AllowList) -> Result<String, FetchError> {
        let error = |message: String| FetchError::Render {
            url: url.to_string(),
            message,
        };
        allow.check_url(url)?;
        let rules = resolver_rules(url, allow).await?;
        let profile = match &self.temp_root {
            Some(root) => tempfile::Builder::new()
                .prefix("exai-chromium-")
                .tempdir_in(root),
            None => tempfile::Builder::new().prefix("exai-chromium-").tempdir(),
        }
        .map_err(|e| error(format!("cannot create a browser profile directory: {e}")))?;
        let mut child = self
            .command(url, &rules, profile.path())
            .spawn()
            .map_err(|e| {
                error(format!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    self.binary.display()
                ))
            })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let mut guard = BrowserGuard {
            group,
            profile: profile.path(),
        };
        let outcome = tokio::time::timeout(self.deadline, self.collect(&mut child)).await;
        guard.kill_group();
        let _ = child.wait().await;
        drop(guard);
        drop(profile);
        match outcome {
            Err(_) => Err(error(format!(
                "no result within {}s; the browser was killed",
                self.deadline.as_secs_f64()
            ))),
            Ok(result) => result.map_err(error),
        }
    }

    fn command(&self, url: &Url, rules: &str, profile: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--mute-audio",
            "--no-proxy-server",
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--dump-dom",
        ]);
        // Chromium refuses to start as root with its sandbox; elsewhere the sandbox stays on.
        if Uid::effective().is_root() {
            cmd.arg("--no-sandbox");
        }
        cmd.arg(format!(
            "--virtual-time-budget={}",
            self.virtual_time_budget.as_millis()
        ))
        .arg(format!("--host-resolver-rules={rules}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url.as_str())
        // The crash reporter detaches into a session of its own; pointing its home at the
        // profile keeps its files there and lets `kill_stragglers` find it.
        .env("HOME", profile)
        .env("XDG_CONFIG_HOME", profile.join("config"))
        .env("XDG_CACHE_HOME", profile.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
        cmd
    }

    /// Reads stdout up to the cap and waits for the exit.
    async fn collect(&self, child: &mut Child) -> Result<String, String> {
        let mut stdout = child
            .stdout
            .take()
            .ok_or("the browser's output was not captured")?;
        let mut output = Vec::new();
        let cap = u64::try_from(self.max_output_bytes).unwrap_or(u64::MAX);
        (&mut stdout)
            .take(cap + 1)
            .read_to_end(&mut output)
            .await
            .map_err(|e| e.to_string())?;
        if output.len() > self.max_output_bytes {
            return Err(format!(
                "the rendered page is over the {}-byte cap",
                self.max_output_bytes
            ));
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the browser exited with {status}"));
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }
}

/// Ends a browser however its render ends, including when the render's future is dropped
/// (a cancelled crawl): the group first, then the processes that left it.
struct BrowserGuard<'a> {
    group: Option<Pid>,
    profile: &'a Path,
}

impl BrowserGuard<'_> {
    /// Chromium's helpers share its process group; end them all whatever happened.
    fn kill_group(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for BrowserGuard<'_> {
    fn drop(&mut self) {
        self.kill_group();
        kill_stragglers(self.profile);
    }
}

/// Kills processes outside the browser's process group that still name `profile` on their
/// command line (Chromium's crash reporter detaches with `setsid`). The profile directory is
/// unique to this render, so only processes it started match.
fn kill_stragglers(profile: &Path) {
    let marker = profile.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(marker.len()).any(|window| window == marker) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `--host-resolver-rules` confining Chromium to the page's host at its checked address.
async fn resolver_rules(url: &Url, allow: &AllowList) -> Result<String, FetchError> {
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        Some(Host::Domain(name)) => {
            let addrs = allow.resolve_checked(name, port).await?;
            let addr = addrs.first().ok_or_else(|| FetchError::Network {
                url: url.to_string(),
                message: format!("{name} resolves to no address"),
            })?;
            Ok(format!("MAP {name} {}, MAP * ~NOTFOUND", addr.ip()))
        }
        Some(Host::Ipv4(ip)) => Ok(format!("MAP * ~NOTFOUND, EXCLUDE {ip}")),
        Some(Host::Ipv6(ip)) => Ok(format!("MAP * ~NOTFOUND, EXCLUDE [{ip}]")),
        None => Err(FetchError::InvalidUrl(format!("{url} has no host"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_shell_with_scripts_needs_rendering() {
        let shell = r#"<html><head><title>Docs</title><script src="app.js"></script></head>
            <body><nav>Home · Guide · API</nav><div id="root">Loading…</div></body></html>"#;
        assert!(needs_rendering(shell));
    }

    #[test]
    fn real_content_or_no_scripts_does_not() {
        let para =
            "Ownership is a set of rules that govern how a Rust program manages memory. ".repeat(5);
        let with_text =
            format!("<html><body><main><p>{para}</p></main><script>hl()</script></body></html>");
        assert!(!needs_rendering(&with_text));
        // Short and static: nothing a browser would add.
        assert!(!needs_rendering(
            "<html><body><p>Moved to /new.</p></body></html>"
        ));
    }

    #[test]
    fn an_empty_mount_point_is_a_shell_even_with_a_heading() {
        let html = r#"<html><body><h1>API reference</h1><div id="__next"></div><script src="/_next/main.js"></script></body></html>"#;
        assert!(needs_rendering(html));
    }

    #[test]
    fn chrome_text_does_not_count_as_main_text() {
        let chrome = "Navigation item ".repeat(40);
        let html = format!(
            "<html><body><header>{chrome}</header><nav>{chrome}</nav><footer>{chrome}</footer><div id=app></div><script src=a.js></script></body></html>"
        );
        assert!(needs_rendering(&html));
    }

    #[tokio::test]
    async fn rules_pin_the_checked_host() {
        let allow = AllowList::new(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let rules = resolver_rules(&Url::parse("http://127.0.0.1:8080/").unwrap(), &allow)
            .await
            .unwrap();
        assert_eq!(rules, "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1");
        let rules = resolver_rules(&Url::parse("http://localhost:8080/").unwrap(), &allow)
            .await
            .unwrap();
        assert!(
            rules.starts_with("MAP localhost ") && rules.ends_with(", MAP * ~NOTFOUND"),
            "{rules}"
        );
        let refused = resolver_rules(
            &Url::parse("http://localhost/").unwrap(),
            &AllowList::default(),
        )
        .await;
        assert!(refused.is_err());
    }
}
