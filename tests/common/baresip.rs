//! baresip, a real SIP phone (Debian's `baresip`), for the end-to-end tests: one process per
//! phone with its own config directory, killed on drop; driven through its ctrl_tcp module
//! (netstring-framed JSON commands, as its menu takes them).
// Only the test binaries with real phones use this.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::netns::{wait_tcp_listening, Net};
use super::process::{ProcGuard, SpawnGroup};

/// A running baresip.
pub struct Baresip {
    _child: ProcGuard,
    /// Its ctrl_tcp port, when it has one.
    ctrl: Option<u16>,
    /// Its console (`cons` module) port, when it has one.
    console: Option<u16>,
}

/// What baresip's console (the `cons` UI module, over TCP) printed since it was connected:
/// received instant messages (`sip:bob@host: "text"`), call prompts.
pub struct Console {
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Console {
    pub fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// What a phone is.
#[derive(Default)]
pub struct Phone<'a> {
    /// Its name (config directory, log file).
    pub name: &'a str,
    /// Its SIP port on 127.0.0.1.
    pub sip: u16,
    /// Its first RTP port (it takes ten).
    pub rtp: u16,
    /// The account line (`<sip:alice@...>;regint=0;answermode=auto`, ...).
    pub account: String,
    /// ctrl_tcp port (`None`: not driven).
    pub ctrl: Option<u16>,
    /// Tone of its audio source (Hz).
    pub tone: u32,
    /// Its codec and media modules (`g711`, `g722`, `srtp`, ...); empty: `g711` alone.
    pub modules: &'a [&'a str],
    /// Console port (the `cons` UI module, where received MESSAGEs are printed).
    pub console: Option<u16>,
    /// Its address book (`contacts` file lines; `;presence=p2p` makes it watch one).
    pub contacts: &'a str,
}

impl Baresip {
    pub fn start(net: &Net, p: &Phone<'_>) -> Baresip {
        let dir = net.dir.join(p.name);
        std::fs::create_dir_all(&dir).expect("baresip dir");
        let mut config = format!(
            "sip_listen 127.0.0.1:{}\nnet_interface 127.0.0.1\n\
             module_path /usr/lib/baresip/modules\n\
             {codecs}module ausine.so\nmodule aubridge.so\nmodule_app account.so\n\
             module_app menu.so\nmodule_app presence.so\naudio_source ausine,{}\n\
             audio_player aubridge,{}\naudio_alert aubridge,alert-{}\nausrc_srate 48000\n\
             ausrc_channels 2\nauplay_srate 48000\nauplay_channels 2\nrtp_ports {}-{}\n",
            p.sip,
            p.tone,
            p.name,
            p.name,
            p.rtp,
            p.rtp + 9,
            codecs = if p.modules.is_empty() {
                &["g711"][..]
            } else {
                p.modules
            }
            .iter()
            .map(|c| format!("module {c}.so\n"))
            .collect::<String>(),
        );
        if let Some(c) = p.ctrl {
            config += &format!("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{c}\n");
        }
        if let Some(c) = p.console {
            config += &format!("module cons.so\ncons_listen 127.0.0.1:{c}\n");
        }
        if !p.contacts.is_empty() {
            // The address book first: the presence module subscribes to its contacts at load.
            config = config.replace(
                "module_app presence.so\n",
                "module_app contact.so\nmodule_app presence.so\n",
            );
        }
        std::fs::write(dir.join("config"), config).expect("baresip config");
        std::fs::write(dir.join("accounts"), format!("{}\n", p.account)).expect("accounts");
        if !p.contacts.is_empty() {
            std::fs::write(dir.join("contacts"), format!("{}\n", p.contacts)).expect("contacts");
        }
        let child = spawn(&dir, &net.dir.join(format!("{}.log", p.name)));
        let b = Baresip {
            _child: child,
            ctrl: p.ctrl,
            console: p.console,
        };
        for port in [p.ctrl, p.console].into_iter().flatten() {
            wait_tcp_listening(port, Duration::from_secs(10));
        }
        b
    }

    /// Stop it as a user would (SIGTERM): it unregisters and withdraws its publication.
    pub fn stop(&self) {
        self._child.signal_group(libc::SIGTERM);
    }

    /// Connect to the console; what it prints from now on is collected (by a thread that
    /// ends with baresip).
    pub fn console(&self) -> Console {
        let port = self.console.expect("a baresip with a console");
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("console");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut t) = t.lock() {
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Console { text }
    }

    /// Run a menu command (`dial`, `transfer`, `hangup`, ...); what came back up to and with
    /// its response (read for 5 s at most).
    pub fn command(&self, command: &str, params: &str) -> String {
        let port = self.ctrl.expect("a baresip with ctrl_tcp");
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("ctrl_tcp");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let json = format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t\"}}");
        s.write_all(format!("{}:{json},", json.len()).as_bytes())
            .expect("send command");
        // Events (CALL_*) come on the same connection: read until the response.
        let mut got = String::new();
        let mut buf = vec![0u8; 8192];
        while !got.contains("\"response\":true") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => got += &String::from_utf8_lossy(&buf[..n]),
                _ => break,
            }
        }
        got
    }
}

fn spawn(dir: &Path, log: &Path) -> ProcGuard {
    let log = std::fs::File::create(log).expect("log");
    std::process::Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn_group()
        .expect("baresip is not installed: run scripts/install-deps.sh (Debian package baresip)")
}
