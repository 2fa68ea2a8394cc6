//! casfront: a TLS front end for a CAS (Central Authentication Service)
//! cluster that routes each request to the node that issued its ticket.
//!
//! The layers, bottom to top (each imports only those below it; see
//! `docs/architecture.md`):
//! - [`routing`]: the pure routing core;
//! - [`config`]: the validated configuration and its diagnostics;
//! - [`metrics`], [`edge`] (connection caps, rate limits, PROXY protocol,
//!   target checks), [`client_cert`], [`tls`] (the listener's TLS),
//!   [`learned`] (the learned cookie table), [`upstream`] (per-node
//!   connection pools), [`health`] (node states and active checks),
//!   [`client`] (one client connection's facts);
//! - [`generation`] (everything derived from one configuration) and
//!   [`state`] (what lives as long as the process);
//! - [`pipeline`]: one request, step by step;
//! - [`current`]: the generation in force and its reload;
//! - [`server`] (the listeners), [`admin`] (status and maintenance API),
//!   [`access_log`], [`discovery`] (nodes from DNS);
//! - [`process`]: the process's life (start, signals, reload, shutdown),
//!   with [`upgrade`] (the hot binary upgrade, inherited sockets);
//! - on top, used by no module below: [`explain`], [`demo`], [`bench`].
// One exception, with its reason: `server::trim` (glibc's malloc_trim).
#![deny(unsafe_code)]

/// A line on stderr while serving (`process`, `discovery`). Unlike
/// `eprintln!`, a closed stderr (the pipe of a supervisor that went away)
/// does not panic the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod access_log;
pub mod admin;
pub mod bench;
pub mod client;
pub mod client_cert;
pub mod config;
pub mod current;
pub mod demo;
pub mod discovery;
pub mod edge;
pub mod explain;
pub mod generation;
pub mod health;
pub mod learned;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod process;
pub mod routing;
pub mod server;
pub mod state;
pub mod tls;
pub mod upgrade;
pub mod upstream;
