//! The `casfront` binary run as an operator runs it: from a configuration
//! file, with a systemd notification socket the test reads (`READY=1`,
//! `MAINPID=`), its stderr read line by line; signals sent to whichever
//! process serves now (an upgrade changes it). Every process it started is
//! killed when dropped. Included by the tests that run the binary
//! (`#[path]`), not by `support/mod.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::support::process::{line_channel, wait_line};

pub struct Casfront {
    pub config: PathBuf,
    notify_path: PathBuf,
    notify: UnixDatagram,
    /// The process that serves now.
    pub pid: u32,
    /// Every process seen serving (killed on drop if still there).
    pids: Vec<u32>,
    child: Option<std::process::Child>,
    pub stderr: Receiver<String>,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl Casfront {
    /// Starts `casfront run -c config` and waits until it serves.
    pub fn start(config: &Path) -> Casfront {
        let notify_path = config.with_extension("notify");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_casfront"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = line_channel(child.stderr.take().unwrap());
        let pid = child.id();
        let mut c = Casfront {
            config: config.to_owned(),
            notify_path,
            notify,
            pid,
            pids: vec![pid],
            child: Some(child),
            stderr,
            https: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
        };
        let admin = wait_line(&c.stderr, |l| {
            l.starts_with("casfront: admin API and status page on http://")
        });
        c.admin = admin.rsplit('/').next().unwrap().parse().unwrap();
        let serving = wait_line(&c.stderr, |l| l.starts_with("casfront: serving https on "));
        c.https = serving.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(c.next_ready(), None, "READY=1 from the process started");
        c
    }

    /// The next `READY=1` datagram's `MAINPID=` (a process started by an
    /// upgrade names itself; the first one does not).
    pub fn next_ready(&self) -> Option<u32> {
        loop {
            let mut buf = [0u8; 256];
            let n = self.notify.recv(&mut buf).expect("no READY=1 within 20 s");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.lines().any(|l| l == "READY=1") {
                let pid = text.lines().find_map(|l| l.strip_prefix("MAINPID="));
                return pid.map(|p| p.parse().unwrap());
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.pid);
    }

    /// `kill -USR2`, then waits for the new process's `READY=1`: its id.
    pub fn upgrade(&mut self) -> u32 {
        self.signal("USR2");
        let pid = self
            .next_ready()
            .expect("the new process names itself: MAINPID=");
        assert_ne!(pid, self.pid, "the upgrade started no new process");
        self.pid = pid;
        self.pids.push(pid);
        pid
    }

    /// Stops the serving process with `signal` and waits until it is gone.
    pub fn stop(mut self, signal: &str) {
        self.signal(signal);
        assert!(
            wait_gone(self.pid, Duration::from_secs(40)),
            "process {} still there",
            self.pid
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Whether process `pid` is gone (or a zombie) within `limit`.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

impl Drop for Casfront {
    fn drop(&mut self) {
        for pid in &self.pids {
            // Only ours: a pid gone may have been given to another process.
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("casfront"));
            if !ours {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.notify_path);
    }
}
