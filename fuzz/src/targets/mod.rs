//! The fuzz targets: a name, a harness, seeds, a size cap and a dictionary each.
//!
//! A harness takes any bytes and panics only on a bug. Structured harnesses (`*-structured`)
//! read their bytes through `arbitrary` as a description (a burst of frames toward the
//! configured VIPs, a tunnelled packet toward a configured service) and build valid-looking
//! packets from it, which raw byte mutation alone rarely reaches; raw harnesses take the bytes
//! as they are. Both kinds check invariants, not only "does not panic".

pub mod config;
pub mod hostagent;
pub mod pipeline;
pub mod wire;

/// One fuzz target.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The name on the command line and in `fuzz/regressions/<name>/`.
    pub name: &'static str,
    /// What it exercises, for `mux-fuzz list`.
    pub about: &'static str,
    /// The harness.
    pub run: fn(&[u8]),
    /// The seed inputs.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Inputs are cut to this length.
    pub max_len: usize,
    /// Tokens the mutator inserts.
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order `mux-fuzz run` runs them.
pub const TARGETS: &[Target] = &[
    pipeline::STRUCTURED,
    pipeline::RAW,
    hostagent::STRUCTURED,
    hostagent::DECAP,
    hostagent::SNAT,
    wire::ETHERNET,
    wire::ARP,
    wire::IPV4,
    wire::IPV6,
    wire::TCP,
    wire::UDP,
    wire::ICMPV4,
    wire::ICMPV6,
    config::MUX,
    config::HOSTAGENT,
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Tokens of the packet formats: EtherTypes, version/IHL bytes, protocol and next-header
/// numbers, the fuzz configs' VIP addresses and ports.
pub const PACKET_DICTIONARY: &[&[u8]] = &[
    &[0x08, 0x00],
    &[0x86, 0xdd],
    &[0x81, 0x00],
    &[0x88, 0xa8],
    &[0x08, 0x06],
    &[0x45],
    &[0x46],
    &[0x60],
    &[6],
    &[17],
    &[1],
    &[58],
    &[4],
    &[41],
    &[0],
    &[43],
    &[44],
    &[60],
    &[0x40, 0x00],
    &[0x20, 0x00],
    &[192, 0, 2, 10],
    &[192, 0, 2, 53],
    &[192, 0, 2, 20],
    &[10, 0, 11, 2],
    &[10, 0, 21, 2],
    &[0x20, 0x01, 0x0d, 0xb8],
    &[0xfd, 0x00],
    &[0, 80],
    &[0, 53],
    &[1, 187],
    &[0x1f, 0x90],
];
