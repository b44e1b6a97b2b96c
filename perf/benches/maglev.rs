//! `maglev`: time to build one VIP's Maglev table (M = 65 537) for 1, 100 and 1000 backends.
//! This runs on the control plane at every reload that touches a VIP, never per packet.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mux_packet::maglev::{self, MaglevBackend};

const TABLE_SIZE: u32 = 65_537;

fn ids(n: usize) -> Vec<[u8; 16]> {
    (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&[0xfd, 0x00]);
            id[12..].copy_from_slice(&(i as u32).to_be_bytes());
            id
        })
        .collect()
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for n in [1usize, 100, 1000] {
        let ids = ids(n);
        let backends: Vec<MaglevBackend<'_>> = ids
            .iter()
            .map(|id| MaglevBackend { id, weight: 100 })
            .collect();
        let table = maglev::build(&backends, TABLE_SIZE).expect("builds");
        assert_eq!(table.size(), TABLE_SIZE);
        group.bench_with_input(BenchmarkId::from_parameter(n), &backends, |b, backends| {
            b.iter(|| maglev::build(black_box(backends), TABLE_SIZE))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
