//! The demo: CAS-like nodes ([`node`]) that the integration tests and the
//! bench harness share.

pub mod node;
