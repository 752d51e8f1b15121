//! The process's open-file limit against `--max-connections`. Many systems start
//! processes with a soft limit of 1024 descriptors, far below the default 10,000
//! connections; like Redis (`adjustOpenFilesLimit`), the daemon raises its soft limit as
//! far as the hard limit allows, and says so when that is not enough. Whatever the limit,
//! running out is survived (see the server's EMFILE handling); this only makes the
//! configured maximum reachable.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors the daemon needs besides its connections (listeners, the poller, the
/// signal pipe, the spare descriptor, stdio), with room to spare.
pub const RESERVED: u64 = 32;

/// How many descriptors numbered below `limit`, the soft open-file limit in force,
/// this process has open (Linux: the entries of `/proc/self/fd`), or `None` where that
/// cannot be read. Taken once the daemon holds all of its own (listeners, poller,
/// signal pipe, spare, and whatever it inherited), the rest of the limit is what its
/// connections can use.
pub fn open_below(limit: u64) -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    let fds = entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok());
    // The descriptor reading the directory is listed too; it was opened under the
    // limit, so it is among those counted.
    Some(count_below(fds, limit).saturating_sub(1))
}

/// How many of `fds` take room under `limit`. The limit caps descriptor numbers, not
/// their count: one inherited above it (a shell may pass such) takes none.
fn count_below(fds: impl Iterator<Item = u64>, limit: u64) -> u64 {
    fds.filter(|&fd| fd < limit).count() as u64
}

/// What [`raise_for`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit was already high enough.
    Enough,
    /// The soft limit was raised, and now suffices.
    Raised {
        /// The limit before.
        from: u64,
        /// The limit now.
        to: u64,
    },
    /// The hard limit keeps the soft limit below what the connections need.
    Short {
        /// The soft limit now (raised to the hard limit if it was below).
        limit: u64,
        /// What `max_connections` needs.
        wanted: u64,
    },
}

/// The soft limit to ask for, if any, given what is wanted and the current soft and
/// hard limits (`None`: unlimited).
fn target(wanted: u64, current: Option<u64>, maximum: Option<u64>) -> Option<u64> {
    let current = current.unwrap_or(u64::MAX);
    let target = wanted.min(maximum.unwrap_or(u64::MAX));
    (target > current).then_some(target)
}

/// Raises the soft open-file limit so that `max_connections` connections fit, as far
/// as the hard limit allows.
///
/// # Errors
/// If the kernel refuses the new soft limit.
pub fn raise_for(max_connections: usize) -> io::Result<FdLimit> {
    let wanted = (max_connections as u64).saturating_add(RESERVED);
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let from = current.unwrap_or(u64::MAX);
    let Some(to) = target(wanted, current, maximum) else {
        return Ok(if from >= wanted {
            FdLimit::Enough
        } else {
            FdLimit::Short {
                limit: from,
                wanted,
            }
        });
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(to),
            maximum,
        },
    )?;
    Ok(if to >= wanted {
        FdLimit::Raised { from, to }
    } else {
        FdLimit::Short { limit: to, wanted }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_only_as_far_as_needed_and_allowed() {
        assert_eq!(target(10_032, Some(1024), Some(524_288)), Some(10_032));
        assert_eq!(target(10_032, Some(1024), Some(4096)), Some(4096));
        assert_eq!(target(10_032, Some(1024), None), Some(10_032));
        assert_eq!(target(10_032, Some(20_000), Some(20_000)), None);
        assert_eq!(target(10_032, None, None), None, "unlimited already");
        assert_eq!(
            target(10_032, Some(64), Some(64)),
            None,
            "hard limit reached"
        );
    }

    #[test]
    fn descriptors_numbered_above_the_limit_take_no_room() {
        let fds = [0, 1, 2, 3, 7, 63, 64, 251];
        assert_eq!(count_below(fds.into_iter(), 64), 6);
        assert_eq!(count_below(fds.into_iter(), 1024), 8);
        assert!(
            open_below(u64::MAX).is_some(),
            "/proc/self/fd is readable on Linux"
        );
    }

    #[test]
    fn the_limit_of_this_process_suffices_for_a_few_connections() {
        // Raising towards what is already there changes nothing.
        assert_eq!(raise_for(0).ok(), Some(FdLimit::Enough));
    }
}
