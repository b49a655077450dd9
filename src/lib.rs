//! tokenwarden: a Kubernetes-compatible service-account token server.
//!
//! The binary's entry point is [`cli::run`]; every other module is internal. The
//! module table and the rules between modules are in `shared/STYLE.md`.

pub(crate) mod admission;
pub(crate) mod agent;
pub(crate) mod api;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod controllers;
pub(crate) mod diagnose;
pub(crate) mod pki;
pub(crate) mod rbac;
pub(crate) mod registry;
pub(crate) mod reload;
pub(crate) mod server;
pub(crate) mod store;
pub(crate) mod telemetry;
pub(crate) mod tokens;
pub(crate) mod wellknown;
