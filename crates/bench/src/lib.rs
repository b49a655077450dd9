//! `tokenwarden bench`, the load generator: a client that drives a running server over HTTPS
//! and prints figures. It must not depend on the server crate; the server's signing code
//! reaches it only through the crypto reference the binary hands in.
