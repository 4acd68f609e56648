//! io_uring back end (in progress).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::core::{Cmd, Core};

pub(crate) fn probe() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring back end not built yet",
    ))
}

pub(crate) struct UringIo;

impl UringIo {
    pub fn new() -> io::Result<(UringIo, Arc<OwnedFd>)> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring back end not built yet",
        ))
    }
    pub fn run(self, _core: Core, _rx: Receiver<Cmd>) {}
}
