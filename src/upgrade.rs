//! Hot binary upgrade (`SIGUSR2`, as nginx) and inherited listening
//! sockets.
//!
//! On `SIGUSR2` the binary now at the path casfront started from runs as a
//! new process that inherits the listening sockets — systemd's
//! `LISTEN_FDS` protocol, each socket named in `LISTEN_FDNAMES` (`https`,
//! `http`, `admin`), so nothing waiting in an accept queue is lost. The two
//! meet on an abstract Unix socket of a random name, given to the new
//! process in `CASFRONT_UPGRADE` and accepted from that process's id only:
//! the old process sends what it carries ([`Handover`]: node modes, the
//! learned cookie table), the new one answers `ready` once it listens.
//! Then the old process tells systemd `MAINPID=` (the new one's) and
//! `READY=1` (`NotifyAccess=all`), stops accepting and drains. If the new one fails (its configuration, its start)
//! or says nothing within the wait, it is stopped and the old one keeps
//! serving.
//!
//! At start, [`Inherited`] takes the sockets handed over by a predecessor
//! or by a systemd `.socket` unit (`FileDescriptorName=https`, ...).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::generation::takeover::Handover;

/// Where a successor finds its predecessor.
const CHANNEL_VAR: &str = "CASFRONT_UPGRADE";

/// The listening sockets a process was handed, by name.
#[derive(Default)]
pub struct Inherited {
    sockets: HashMap<String, std::net::TcpListener>,
    /// The predecessor's channel, for a process started by an upgrade.
    channel: Option<String>,
}

/// Connections the kernel queues for a listener before casfront accepts
/// them (the kernel caps it at `net.core.somaxconn`, 4096 by default).
/// Rust's standard library asks for 128: a burst of thousands of clients
/// reconnecting at once (a failover, a restart) overflowed it, and each
/// client whose SYN was dropped waited a second or more to retry.
const BACKLOG: u32 = 4096;

impl Inherited {
    /// Takes what the environment hands over (and clears it, so that it
    /// reaches no process of ours): call it before any thread starts (the
    /// environment is not safe to change once they have). Sockets without
    /// a name are refused: casfront cannot tell which listener they are.
    pub fn from_env() -> std::io::Result<Inherited> {
        if std::env::var_os("LISTEN_FDS").is_none() && std::env::var_os(CHANNEL_VAR).is_none() {
            return Ok(Inherited::default());
        }
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        std::env::remove_var("LISTEN_FDNAMES");
        let channel = std::env::var(CHANNEL_VAR).ok();
        std::env::remove_var(CHANNEL_VAR);
        let mut sockets = HashMap::new();
        let names: Vec<&str> = names.split(':').collect();
        for i in 0..fds.len() {
            let Some(listener) = fds.take_tcp_listener(i)? else {
                continue;
            };
            match names.get(i) {
                Some(name) if !name.is_empty() => {
                    sockets.insert((*name).to_owned(), listener);
                }
                _ => {
                    return Err(std::io::Error::other(format!(
                        "inherited socket {i} has no name (LISTEN_FDNAMES: https, http or admin)"
                    )))
                }
            }
        }
        Ok(Inherited { sockets, channel })
    }

    /// The listener named `name` if it was handed over and listens on
    /// `addr` (port 0 in `addr`: any port), else a new one bound to `addr`.
    pub fn listener(&mut self, name: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let fits = |l: &std::net::TcpListener| {
            l.local_addr().is_ok_and(|at| {
                at.ip() == addr.ip() && (addr.port() == 0 || at.port() == addr.port())
            })
        };
        match self.sockets.remove(name) {
            Some(l) if fits(&l) => {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            }
            // Another address now: the old socket closes with its process.
            _ => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                socket.listen(BACKLOG)
            }
        }
    }

    /// The predecessor that started this process, if any: what it hands
    /// over, and the channel to tell it when this process serves.
    pub async fn predecessor(&mut self) -> std::io::Result<Option<Predecessor>> {
        let Some(name) = self.channel.take() else {
            return Ok(None);
        };
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
        stream.set_nonblocking(true)?;
        let mut stream = BufReader::new(UnixStream::from_std(stream)?);
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let handover = serde_json::from_str(&line).map_err(std::io::Error::other)?;
        Ok(Some(Predecessor { stream, handover }))
    }
}

/// The process this one replaces.
pub struct Predecessor {
    stream: BufReader<UnixStream>,
    pub handover: Handover,
}

impl Predecessor {
    /// Tells it this process serves: it stops accepting and drains.
    pub async fn ready(mut self) -> std::io::Result<()> {
        self.stream.get_mut().write_all(b"ready\n").await
    }
}

/// What an upgrade needs: the binary, its arguments, the sockets.
pub struct Upgrader {
    exe: PathBuf,
    args: Vec<OsString>,
    sockets: Vec<(&'static str, OwnedFd)>,
}

impl Upgrader {
    /// Remembers the binary's path now (once replaced on disk, the running
    /// image no longer has one) and a handle on each listening socket.
    pub fn new(sockets: Vec<(&'static str, OwnedFd)>) -> std::io::Result<Upgrader> {
        Ok(Upgrader {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            sockets,
        })
    }

    /// Starts the successor, hands it `handover` and waits (at most
    /// `wait`) until it serves. Its process id, or why it failed (it is
    /// stopped then).
    pub async fn run(&self, handover: &Handover, wait: Duration) -> Result<u32, String> {
        let name = format!(
            "casfront-upgrade-{}-{:032x}",
            std::process::id(),
            rand::random::<u128>()
        );
        let listener = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| std::os::unix::net::UnixListener::bind_addr(&a))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(UnixListener::from_std)
            .map_err(|e| format!("upgrade channel: {e}"))?;
        let mut mappings = Vec::new();
        for (i, (_, fd)) in self.sockets.iter().enumerate() {
            let fd = fd.try_clone().map_err(|e| format!("socket handle: {e}"))?;
            mappings.push(FdMapping {
                parent_fd: fd,
                child_fd: 3 + i32::try_from(i).unwrap_or(0),
            });
        }
        let names: Vec<&str> = self.sockets.iter().map(|(n, _)| *n).collect();
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .env("LISTEN_FDS", self.sockets.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS_FIRST_FD")
            .env(CHANNEL_VAR, &name)
            .stdin(std::process::Stdio::null())
            // Stopped with this future: a SIGTERM during the upgrade stops
            // the new process too (a success lets it go, below).
            .kill_on_drop(true)
            .fd_mappings(mappings)
            .map_err(|e| e.to_string())?;
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let pid = child.id().unwrap_or(0);
        let talk = async {
            // The name can be read by anyone on the host (abstract
            // sockets are listed): another process that connects first is
            // turned away, not taken for the new one.
            let stream = loop {
                let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
                let peer = stream.peer_cred().map_err(|e| e.to_string())?;
                if peer.pid() == i32::try_from(pid).ok() {
                    break stream;
                }
            };
            let mut stream = BufReader::new(stream);
            let mut line = serde_json::to_string(handover).map_err(|e| e.to_string())?;
            line.push('\n');
            stream
                .get_mut()
                .write_all(line.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            stream
                .read_line(&mut answer)
                .await
                .map_err(|e| e.to_string())?;
            if answer.trim_end() == "ready" {
                Ok(())
            } else {
                Err("the new process closed the upgrade channel".to_owned())
            }
        };
        let failed = tokio::select! {
            talked = talk => match talked {
                Ok(()) => {
                    // It serves: systemd follows it from now on (the new
                    // process says nothing itself, so that a process this
                    // one gave up on is never taken for the main one).
                    crate::notify::notify(&format!("MAINPID={pid}\nREADY=1"));
                    // Not killed when the handle goes.
                    std::mem::forget(child);
                    return Ok(pid);
                }
                Err(e) => e,
            },
            status = child.wait() => match status {
                Ok(s) => format!("the new process (pid {pid}) exited ({s}) before it served"),
                Err(e) => format!("the new process (pid {pid}): {e}"),
            },
            () = tokio::time::sleep(wait) => {
                format!("the new process (pid {pid}) did not serve within {}s", wait.as_secs())
            }
        };
        let _ = child.kill().await;
        Err(failed)
    }
}
