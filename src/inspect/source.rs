//! Where the TCP socket table is read from: the one interface of the socket readers
//! (`/proc/net/tcp{,6}` in [`super::proc_tcp`], netlink sock_diag in [`super::netlink`]), each
//! handing [`Socket`] records to the model's counter and keeping nothing.

use crate::error::Result;
use crate::model::records::Socket;

/// Where the TCP socket table comes from: `/proc/net/tcp{,6}` or netlink sock_diag.
pub(crate) trait SocketSource {
    /// Short name for reports (`proc`, `netlink`).
    fn name(&self) -> &'static str;

    /// Hands every TCP socket, IPv4 and IPv6, to `visit`. Lines or records that cannot be used are
    /// skipped and described in `warnings`; only a failure to read the table at all is an error.
    ///
    /// Contract: within each address family, listening sockets come before the connections, as the
    /// kernel lists them in `/proc/net/tcp` and in sock_diag dumps. [`crate::model::table::SocketCounter`] relies on it to
    /// keep the server side of inbound connections out of the destination buckets without storing
    /// sockets.
    fn scan(&mut self, visit: &mut dyn FnMut(Socket), warnings: &mut Vec<String>) -> Result<()>;
}
