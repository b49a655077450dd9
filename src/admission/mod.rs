//! Admission: the mutations and checks a create goes through before the registry's own
//! defaulting and validation, as kube-apiserver's admission chain does. Today that is
//! the ServiceAccount plugin for pods ([`serviceaccount`]).
//!
//! Admission reads the registry (ServiceAccounts, Secrets, Namespaces) and never
//! writes it; it does not sign tokens and knows nothing of HTTP (its errors are
//! [`RegistryError`](crate::registry::RegistryError)s that `api` maps to a `Status`).

mod serviceaccount;

pub(crate) use serviceaccount::{AutomountMode, ServiceAccountAdmission};
