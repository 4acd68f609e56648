//! The ng control protocol on a UDP socket: the sans-IO protocol ([`NgHandler`], [`bencode`]) is
//! `media_core::ng`, re-exported here; this module adds the server thread ([`serve`],
//! [`serve_allowed`]).

mod server;

pub use media_core::ng::*;
pub use server::{serve, serve_allowed, AllowList, NgServer};
