//! What the agent may do, discovered once at start-up from its effective capability set.

use netdiag_proto::Capabilities;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// Reads `/proc/self/status`; a process that cannot read it is assumed to have no capability.
pub fn discover() -> Capabilities {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| from_status(&s))
        .unwrap_or_default()
}

/// Reads the `CapEff:` line of a `/proc/<pid>/status` text.
pub fn from_status(status: &str) -> Capabilities {
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    Capabilities {
        setns: has(CAP_SYS_ADMIN),
        net_raw: has(CAP_NET_RAW),
        ptrace: has(CAP_SYS_PTRACE),
        net_admin: has(CAP_NET_ADMIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_set_bits_become_capabilities() {
        // SYS_ADMIN | NET_RAW, no SYS_PTRACE.
        let caps = from_status("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000202000\n");
        assert_eq!(
            caps,
            Capabilities {
                setns: true,
                net_raw: true,
                ptrace: false,
                net_admin: false,
            }
        );
        assert_eq!(from_status("Name:\tx\n"), Capabilities::default());
        assert!(from_status("CapEff:\t0000000000001000\n").net_admin);
    }
}
