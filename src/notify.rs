//! systemd readiness (`Type=notify` units): `READY=1` once casfront
//! listens, `RELOADING=1`/`READY=1` around a reload, `STOPPING=1` when it
//! shuts down, sent as datagrams to `$NOTIFY_SOCKET` (a path, or an
//! abstract socket written `@name`). Without the variable, nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`); false when there is no socket to
/// send to or the send failed (never fatal: readiness is advisory).
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
                .is_ok()
        }
        _ => socket.send_to(state.as_bytes(), &path).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    // The variable is process-wide: one test sets it, for both cases.
    #[test]
    fn sends_to_the_socket_named_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("casfront-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(super::notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!super::notify("STOPPING=1"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
