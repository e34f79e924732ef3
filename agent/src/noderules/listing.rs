//! The node's rule listings (`nft -j list table …`, `iptables-save`), each reused for as long as the
//! namespace's nftables ruleset is unchanged. Every commit to any nftables table, iptables-nft's
//! included, moves the ruleset's generation (`NFT_MSG_GETGEN`, per network namespace), so a
//! listing taken at a generation is the listing of every later moment with that generation. At
//! hundreds of endpoints a listing costs tens of milliseconds of CPU, on the CPUs the check's own
//! probes need; repeated checks during an incident usually find the rules unchanged.
//!
//! Only listings that come from nftables are reused: an `iptables-save` of the legacy backend
//! (its header does not say `nf_tables`) is read every time, as is everything when the generation
//! cannot be read.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Mutex;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use tokio::process::Command;

/// What a listing command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Listing {
    /// Why the command failed, on one line (its stderr's lines joined), naming the capability when
    /// the kernel refused: reading netfilter rules takes CAP_NET_ADMIN.
    pub fn failure(&self) -> String {
        let text = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let refused = ["Permission denied", "Operation not permitted", "you must be root"]
            .iter()
            .any(|w| text.contains(w));
        if refused {
            format!(
                "{text} (reading the node's netfilter rules needs CAP_NET_ADMIN in the agent's securityContext)"
            )
        } else {
            text
        }
    }

    /// An `iptables-save` of the nf_tables backend says so in its first line.
    pub fn is_of_nftables_backend(&self) -> bool {
        self.stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("(nf_tables)"))
    }
}

/// Listings by (namespace inode, command line): the generation they were taken at and what they
/// printed. An agent reads one node namespace, so this holds a few entries.
static LISTINGS: Mutex<BTreeMap<(u64, String), (u32, Listing)>> = Mutex::new(BTreeMap::new());

/// Runs `program args` in the calling thread's namespace (`netns`, its inode), or reuses what it
/// printed at the current ruleset generation. `reusable` says whether a listing reflects nftables
/// state (and so is covered by the generation).
pub async fn list(
    netns: u64,
    program: &str,
    args: &[&str],
    reusable: fn(&Listing) -> bool,
) -> std::io::Result<Listing> {
    let key = (netns, format!("{program} {}", args.join(" ")));
    // Read before the listing: a change made meanwhile moves the generation past the one the
    // listing is kept under, so it is listed again next time, never reused stale.
    let generation = ruleset_generation().ok();
    if let Some(generation) = generation
        && let Some((at, listing)) = LISTINGS.lock().expect("listing cache lock").get(&key)
        && *at == generation
    {
        return Ok(listing.clone());
    }
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    let listing = Listing {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let mut cache = LISTINGS.lock().expect("listing cache lock");
    match generation {
        Some(generation) if reusable(&listing) => {
            cache.insert(key, (generation, listing.clone()));
        }
        _ => {
            cache.remove(&key);
        }
    }
    Ok(listing)
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// The attribute type bits (the top two are the nested and byte-order flags).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Why the nftables ruleset's generation is not known (listings are then read every time).
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("cannot {what} the nftables generation: {source}")]
    Netlink {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the nftables generation reply is too short")]
    TooShort,
    #[error("the kernel refused to tell the nftables generation: {0}")]
    Refused(#[source] std::io::Error),
    #[error("unexpected netlink message {0:#x} for the nftables generation")]
    Unexpected(u16),
    #[error("the nftables generation reply has no generation id")]
    NoId,
}

/// The generation of the calling thread's namespace's nftables ruleset.
pub fn ruleset_generation() -> Result<u32, GenerationError> {
    let failed = |what: &'static str| move |source| GenerationError::Netlink { what, source };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(failed("open a socket for"))?;
    socket.bind_auto().map_err(failed("bind a socket for"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(failed("connect a socket for"))?;
    socket.send(&generation_request(), 0).map_err(failed("ask"))?;
    let (reply, _) = socket.recv_from_full().map_err(failed("read"))?;
    parse_generation(&reply)
}

/// `NFT_MSG_GETGEN`: a netlink header and an `nfgenmsg` (family unspecified, version 0).
fn generation_request() -> [u8; 20] {
    let mut message = [0u8; 20];
    message[0..4].copy_from_slice(&20u32.to_ne_bytes());
    message[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    message[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message
}

/// The `NFTA_GEN_ID` of an `NFT_MSG_NEWGEN` reply, or why there is none.
pub fn parse_generation(reply: &[u8]) -> Result<u32, GenerationError> {
    let u16_at = |at: usize| reply.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| reply.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let (Some(len), Some(kind)) = (u32_at(0).map(u32::from_ne_bytes), u16_at(4)) else {
        return Err(GenerationError::TooShort);
    };
    if kind == NLMSG_ERROR {
        let errno = u32_at(16).map_or(0, i32::from_ne_bytes);
        let err = std::io::Error::from_raw_os_error(errno.saturating_neg());
        return Err(GenerationError::Refused(err));
    }
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(GenerationError::Unexpected(kind));
    }
    let end = usize::try_from(len).map_or(reply.len(), |l| l.min(reply.len()));
    // Attributes follow the 16-byte netlink header and the 4-byte nfgenmsg, each 4-byte aligned.
    let mut at = 20;
    while let (Some(attr_len), Some(attr_type)) = (u16_at(at), u16_at(at + 2)) {
        let attr_len = usize::from(attr_len);
        if attr_len < 4 || at + attr_len > end {
            break;
        }
        if attr_type & NLA_TYPE_MASK == NFTA_GEN_ID
            && attr_len >= 8
            && let Some(id) = u32_at(at + 4)
        {
            return Ok(u32::from_be_bytes(id));
        }
        at += attr_len.next_multiple_of(4);
    }
    Err(GenerationError::NoId)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NEWGEN reply: header, nfgenmsg, then NFTA_GEN_PROC_PID (2) before NFTA_GEN_ID (1).
    fn newgen(id: u32) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&((10u16 << 8) | 15).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_be_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(&id.to_be_bytes());
        m
    }

    #[test]
    fn the_generation_id_is_read_from_its_attribute_in_network_order() {
        assert_eq!(parse_generation(&newgen(0x0102_0304)).ok(), Some(0x0102_0304));
    }

    #[test]
    fn an_error_reply_or_a_reply_without_the_id_is_no_generation() {
        let mut error = vec![];
        error.extend_from_slice(&36u32.to_ne_bytes());
        error.extend_from_slice(&2u16.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        error.extend_from_slice(&(-95i32).to_ne_bytes());
        let refused = parse_generation(&error).unwrap_err();
        assert!(
            matches!(&refused, GenerationError::Refused(e) if e.raw_os_error() == Some(95)),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .starts_with("the kernel refused to tell the nftables generation: ")
        );
        let mut no_id = newgen(7);
        no_id.truncate(28);
        no_id[0..4].copy_from_slice(&28u32.to_ne_bytes());
        assert!(matches!(parse_generation(&no_id), Err(GenerationError::NoId)));
        assert!(matches!(
            parse_generation(&[1, 2]),
            Err(GenerationError::TooShort)
        ));
    }

    #[test]
    fn a_refused_listing_fails_on_one_line_naming_the_capability() {
        let refused = Listing {
            success: false,
            stdout: String::new(),
            stderr: "iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: \
                     Permission denied (you must be root)\n\n"
                .into(),
        };
        let why = refused.failure();
        assert!(!why.contains('\n'), "{why:?}");
        assert!(why.contains("CAP_NET_ADMIN"), "{why}");
        let other = Listing {
            stderr: "line one\nline two\n".into(),
            ..refused
        };
        assert_eq!(other.failure(), "line one; line two");
    }

    #[test]
    fn an_iptables_save_says_whether_it_comes_from_nftables() {
        let listing = |stdout: &str| Listing {
            success: true,
            stdout: stdout.into(),
            stderr: String::new(),
        };
        assert!(
            listing("# Generated by iptables-save v1.8.9 (nf_tables) on Mon\n*nat\n")
                .is_of_nftables_backend()
        );
        assert!(
            !listing("# Generated by iptables-save v1.8.9 (legacy) on Mon\n*nat\n").is_of_nftables_backend()
        );
        assert!(!listing("# Generated by iptables-save v1.6.1 on Mon\n*nat\n").is_of_nftables_backend());
    }
}
