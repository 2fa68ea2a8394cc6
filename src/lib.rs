//! casfront: a TLS front end for a CAS (Central Authentication Service)
//! cluster that routes each request to the node that issued its ticket.
//!
//! Modules: [`config`] (the validated configuration and its diagnostics),
//! [`routing`] (the pure routing core), [`explain`] (what `casfront explain`
//! prints for one request), [`demo`] (CAS-like demo nodes), [`proxy`] (the
//! request path and upstream pools), [`health`] (node states and active
//! checks), [`edge`] (connection caps, rate limits, PROXY protocol, target
//! checks), [`server`] (TLS listener), [`admin`] (status and maintenance API).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod bench;
pub mod client_cert;
pub mod config;
pub mod demo;
pub mod edge;
pub mod explain;
pub mod health;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod routing;
pub mod server;
