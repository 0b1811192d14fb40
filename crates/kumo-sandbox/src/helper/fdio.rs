//! Descriptor and frame I/O for the helper: unbuffered reads and writes on
//! raw descriptors, retried on `EINTR`, a receive that takes a descriptor
//! sent along (`SCM_RIGHTS`), and `move_high`.
//!
//! Runs in the helper process only (its spec on fd 0, its control socket,
//! its own descriptors). Nothing here buffers: the spec's frame on fd 0 is
//! followed by bytes that belong to the runner, so no read may take more
//! than it was asked for.

use std::os::fd::OwnedFd;

/// One `recvmsg` into `buf`, taking at most one descriptor sent with it.
pub(super) fn recv_with_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Option<OwnedFd>), String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("reading the sandbox spec: {e}")),
        };
        let mut control = None;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| format!("reading the sandbox spec: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // this process; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if control.is_none() {
                        control = Some(owned);
                    }
                }
            }
        }
        return Ok((msg.bytes, control));
    }
}

pub(super) fn read_exact(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(fd, &mut buf[done..]) {
            Ok(0) => return Err("the host closed the channel in the middle of a frame".into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("reading a frame: {e}")),
        }
    }
    Ok(())
}

pub(super) fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("writing a frame: {e}")),
        }
    }
    Ok(())
}

/// A close-on-exec duplicate numbered 10 or more.
pub(super) fn move_high(fd: &OwnedFd) -> Result<OwnedFd, String> {
    let high = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| format!("dup: {e}"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) })
}
