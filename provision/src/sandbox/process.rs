//! Child processes of the sandbox and the loopback addresses they live on.
//!
//! Every process the sandbox starts runs in its own process group, owned by a
//! [`ProcessGroup`] guard that kills the group and every descendant when it is dropped, so a
//! node that forks workers never leaves orphans behind. Descendants matter: PostgreSQL's
//! postmaster puts each child in a session of its own, so a signal to the postmaster's group
//! reaches the postmaster alone; [`signal_tree`] signals a process and all its descendants
//! (found through `/proc`), which is what "stop the node" or "kill the node" means. Programs that refuse to run as root
//! (PostgreSQL's server binaries) are started as an unprivileged user through [`RunAs`].
//! Availability Zone `k` (counted from zero) owns the loopback network `127.0.k+1.0/24`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The loopback address of host `host` in Availability Zone number `az_index`.
pub fn az_address(az_index: usize, host: u8) -> Ipv4Addr {
    let network = u8::try_from(az_index + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, 0, network, host)
}

/// A TCP port nobody listens on right now at `ip` (bind to port 0, read it back, release it).
pub fn free_port(ip: Ipv4Addr) -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// The user a child process runs as: `None` keeps the current user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
}

impl RunAs {
    /// The user to run `name`'s programs as: that user when we are root (the programs refuse
    /// root), nobody in particular (`None`) otherwise.
    pub fn unprivileged(name: &str) -> std::io::Result<Option<RunAs>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name(name).map_err(std::io::Error::from)? {
            Some(user) => Ok(Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("running as root, and there is no `{name}` user to run its programs as"),
            )),
        }
    }

    /// Gives `path` to this user (a no-op for `None`).
    pub fn chown(run_as: Option<RunAs>, path: &Path) -> std::io::Result<()> {
        match run_as {
            Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)),
            None => Ok(()),
        }
    }
}

/// Prepares a command to run in its own process group as `run_as`, in `dir`, with its output
/// appended to `log`.
pub fn command(
    program: &Path,
    run_as: Option<RunAs>,
    dir: &Path,
    log: &Path,
) -> std::io::Result<tokio::process::Command> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    Ok(cmd)
}

/// `root` and all its descendants, parents before children (from one scan of `/proc`).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid …"; comm may contain spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Sends `signal` to `root`'s process group and to every descendant of `root`; returns how
/// many processes were signalled.
pub fn signal_tree(root: u32, signal: Signal) -> usize {
    // Collect before signalling: once a killed parent is gone, its children are re-parented.
    let mut signalled = signal_each(&process_tree(root), signal);
    if let Ok(pgid) = i32::try_from(root) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
    if signal == Signal::SIGSTOP {
        // A child forked between the scan and the stop of its parent.
        signalled = signal_each(&process_tree(root), signal);
    }
    signalled
}

fn signal_each(pids: &[u32], signal: Signal) -> usize {
    pids.iter()
        .filter_map(|pid| i32::try_from(*pid).ok())
        .filter(|pid| nix::sys::signal::kill(Pid::from_raw(*pid), signal).is_ok())
        .count()
}

/// A child process leading its own process group; dropping it SIGKILLs the group.
#[derive(Debug)]
pub struct ProcessGroup {
    child: tokio::process::Child,
    pgid: i32,
}

impl ProcessGroup {
    /// Starts `cmd` (prepared by [`command`], so it leads a new process group).
    pub fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<ProcessGroup> {
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the child exited before its id was read"))?;
        let pgid = i32::try_from(pid).map_err(std::io::Error::other)?;
        Ok(ProcessGroup { child, pgid })
    }

    /// The process id of the group's leader, which is also the group id.
    pub fn pid(&self) -> u32 {
        self.pgid.unsigned_abs()
    }

    /// Sends `signal` to the group and to every descendant of its leader.
    pub fn signal(&self, signal: Signal) -> usize {
        signal_tree(self.pid(), signal)
    }

    /// The leader's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for the leader to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGKILLs the group and the leader's descendants and waits (at most `limit`) for the
    /// leader to be reaped.
    pub async fn kill(mut self, limit: Duration) {
        self.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(limit, self.child.wait()).await;
    }

    /// Asks the leader to stop with `signal` (waking the tree first, in case it is stopped),
    /// waits up to `limit`, then SIGKILLs what is left.
    pub async fn stop(mut self, signal: Signal, limit: Duration) {
        self.signal(Signal::SIGCONT);
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pgid), signal);
        let _ = tokio::time::timeout(limit, self.child.wait()).await;
        self.kill(limit).await;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        signal_tree(self.pid(), Signal::SIGKILL);
    }
}
