//! Property-based fuzzing of the parsers that take outside input: the probe request decoder (with
//! request validation and the source access check behind it), the resolv.conf parser (bytes a pod
//! controls) and the `/proc/net` socket table parser.
//!
//! Each property runs 256 cases by default (a few seconds in CI). A longer run, e.g. a million
//! cases per property:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo nextest run -p netdiag-agent --release --test fuzz
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netdiag_agent::access::Access;
use netdiag_agent::dns::parse_resolv_conf;
use netdiag_agent::listeners::parse_table;
use netdiag_agent::server::decode_request;
use netdiag_proto::{ProbeSource, Transport};
use proptest::prelude::*;

/// JSON fragments a request is made of, including wrong types, huge numbers and odd strings.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop_oneof![
            Just("\"10.0.0.1\""),
            Just("\"::1\""),
            Just("\"/run/netns/x\""),
            Just("\"/proc/1/ns/net\""),
            Just("\"/run/netns/../../etc/shadow\""),
            Just("\"/run/netns/a\\u0000b\""),
            Just("\"tcp\""),
            Just("\"dns\""),
            Just("\"listeners\""),
            Just("\"interfaces\""),
            Just("\"netns\""),
            Just("\"pid\""),
            Just("\"podIP\""),
            Just("\"node\""),
        ]
        .prop_map(String::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("kind"),
            Just("path"),
            Just("pid"),
            Just("ip"),
            Just("port"),
            Just("name"),
            Just("timeoutMs"),
            Just("recordType"),
            Just("nameserver"),
            Just("source"),
            Just("probes"),
            Just("x"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key, inner), 0..6).prop_map(|kv| {
                let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A source object of a known kind with a path or pid made of hostile pieces.
fn source_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("proc".to_string()),
        Just("run".to_string()),
        Just("netns".to_string()),
        Just("ns".to_string()),
        Just("net".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just("\\u0000".to_string()),
        "[0-9]{1,7}",
        "[a-z]{1,300}",
    ];
    prop_oneof![
        (any::<bool>(), prop::collection::vec(piece, 0..8)).prop_map(|(absolute, pieces)| {
            let lead = if absolute { "/" } else { "" };
            format!("{{\"kind\":\"netns\",\"path\":\"{lead}{}\"}}", pieces.join("/"))
        }),
        any::<u32>().prop_map(|pid| format!("{{\"kind\":\"pid\",\"pid\":{pid}}}")),
    ]
}

/// Resolv.conf lines: the keywords glibc knows with plausible and hostile arguments.
fn resolv_conf_line() -> impl Strategy<Value = String> {
    let arg = prop_oneof![
        "[a-z0-9.-]{0,70}",
        "[0-9.:a-f%]{0,45}",
        Just("ndots:4294967296".to_string()),
        Just("ndots:-1".to_string()),
        Just("timeout:0".to_string()),
        "\\PC{0,30}",
    ];
    let keyword = prop_oneof![
        Just("nameserver"),
        Just("search"),
        Just("domain"),
        Just("options"),
        Just("sortlist"),
        Just("#"),
        Just(";"),
        Just(""),
    ];
    (keyword, prop::collection::vec(arg, 0..8)).prop_map(|(k, args)| format!("{k} {}", args.join(" ")))
}

/// A socket table line as the kernel prints it, with fields that may be mangled.
fn table_line() -> impl Strategy<Value = String> {
    let hex = |n: usize| {
        prop::collection::vec(any::<u8>(), n)
            .prop_map(|b| b.iter().map(|x| format!("{x:02X}")).collect::<String>())
    };
    let endpoint = prop_oneof![
        (hex(4), any::<u16>()).prop_map(|(a, p)| format!("{a}:{p:04X}")),
        (hex(16), any::<u16>()).prop_map(|(a, p)| format!("{a}:{p:04X}")),
        "[0-9A-F:]{0,40}",
    ];
    (any::<u16>(), endpoint, any::<u8>(), any::<u64>(), "\\PC{0,20}").prop_map(|(sl, local, st, inode, junk)| {
        format!("{sl:4}: {local} 00000000:0000 {st:02X} 00000000:00000000 00:00000000 00000000 0 0 {inode} {junk}")
    })
}

proptest! {
    #[test]
    fn any_bytes_decode_to_a_request_or_a_message(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = decode_request(&bytes) {
            let _ = request.validate();
            let _ = Access::permissive().check(&request.source);
        }
    }

    #[test]
    fn near_requests_decode_validate_and_pass_access_checks_without_panicking(
        source in prop_oneof![json_value(), source_value()],
        probes in json_value(),
    ) {
        let body = format!("{{\"source\":{source},\"probes\":[{{\"kind\":\"listeners\"}}],\"x\":{probes}}}");
        match decode_request(body.as_bytes()) {
            Ok(request) => {
                let valid = request.validate().is_ok();
                let access = Access::permissive().check(&request.source);
                // A netns path that passes is one the agent would try to open: inside the roots
                // (as the kernel resolves it: repeated slashes are one).
                if valid && access.is_ok() && let ProbeSource::Netns { path } = &request.source {
                    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
                    let inside = matches!(parts.as_slice(), ["proc", _, "ns", "net"] | ["run", "netns", _]);
                    prop_assert!(path.starts_with('/') && inside, "{path}");
                    prop_assert!(!path.contains('\0') && !parts.iter().any(|c| *c == ".." || *c == "."), "{path}");
                }
            }
            Err(err) => prop_assert!(err.to_string().starts_with("invalid probe request: ")),
        }
    }

    #[test]
    fn resolv_conf_parsing_keeps_glibcs_limits_whatever_the_pod_writes(lines in prop::collection::vec(resolv_conf_line(), 0..40)) {
        let text = lines.join("\n");
        if let Ok(conf) = parse_resolv_conf("/proc/1/root/etc/resolv.conf", text.as_bytes()) {
            prop_assert!(conf.nameservers.len() <= 3);
            prop_assert!(conf.ndots <= 15);
        }
    }

    #[test]
    fn resolv_conf_parsing_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_resolv_conf("/proc/1/root/etc/resolv.conf", &bytes);
    }

    #[test]
    fn socket_tables_parse_without_panicking_and_only_listening_sockets_come_out(
        lines in prop::collection::vec(table_line(), 0..30),
        udp in any::<bool>(),
    ) {
        let transport = if udp { Transport::Udp } else { Transport::Tcp };
        let text = format!("  sl  local_address rem_address   st\n{}", lines.join("\n"));
        let listening = lines.iter().filter(|l| {
            let st = l.split_whitespace().nth(3).unwrap_or_default();
            st == if udp { "07" } else { "0A" }
        }).count();
        let sockets = parse_table(&text, transport);
        prop_assert!(sockets.len() <= listening);
        prop_assert!(sockets.iter().all(|s| s.protocol == transport));
    }

    #[test]
    fn well_formed_ipv4_table_lines_give_back_their_address_and_port(ip in any::<[u8; 4]>(), port in any::<u16>(), inode in any::<u32>()) {
        let word = u32::from_ne_bytes(ip);
        let text = format!("header\n   0: {word:08X}:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 {inode} 1\n");
        let sockets = parse_table(&text, Transport::Tcp);
        prop_assert_eq!(sockets.len(), 1);
        prop_assert_eq!(sockets[0].local_ip, IpAddr::V4(Ipv4Addr::from(ip)));
        prop_assert_eq!(sockets[0].local_port, port);
        prop_assert_eq!(sockets[0].inode, u64::from(inode));
    }

    #[test]
    fn well_formed_ipv6_table_lines_give_back_their_address(ip in any::<[u8; 16]>(), port in any::<u16>()) {
        let words: String = ip.chunks(4).map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).collect();
        let text = format!("header\n   0: {words}:{port:04X} 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 7 1\n");
        let sockets = parse_table(&text, Transport::Tcp);
        prop_assert_eq!(sockets.len(), 1);
        prop_assert_eq!(sockets[0].local_ip, IpAddr::V6(Ipv6Addr::from(ip)));
    }
}
