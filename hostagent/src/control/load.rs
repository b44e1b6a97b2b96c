//! Per-backend load, measured: what each service's backend carries and how fast.
//!
//! The agent sees both directions of every connection of its backends (it delivers the
//! requests and rewrites the replies), so it is where load is measured best: the MUXes only see
//! the client → backend direction, and only the share that crossed them. For each service
//! (one backend) this module turns the data path's counters into a [`BackendLoad`]: active
//! connections (the connection table's last complete sweep), and per-second rates of new
//! connections, packets and bytes in each direction, over the last interval of at least
//! [`MIN_INTERVAL`] between two publications.
//!
//! It runs on the I/O thread's publish (between bursts, every ~100 ms) and only does
//! arithmetic once a second; readers (`/v1/backends`, `/v1/status`, `/metrics`) copy the last
//! result. Counters of a service keep their meaning across reloads (the data path carries them
//! under the same service), so a reload does not disturb a rate; a new service gets its first
//! rate one interval after it appears.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dataplane::{Counters, ServiceCounters, ServiceSpec};

/// The shortest interval a rate is computed over.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One backend's load. Rates are per second over the last interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BackendLoad {
    /// Connections the backend carries (last complete sweep of the connection table).
    pub active_connections: u64,
    /// Connections started per second.
    pub new_connections_per_s: f64,
    /// Packets delivered to the backend per second (client → backend).
    pub packets_in_per_s: f64,
    /// Reply packets rewritten per second (backend → client).
    pub packets_out_per_s: f64,
    /// Bytes delivered per second (inner IP packets).
    pub bytes_in_per_s: f64,
    /// Reply bytes per second.
    pub bytes_out_per_s: f64,
    /// Seconds the rates are measured over (0 before the first interval).
    pub interval_s: f64,
}

/// Rates from successive publications of the data path's counters.
#[derive(Debug, Default)]
pub struct LoadMeter {
    /// The counters and services at the start of the current interval.
    base: Option<(Instant, Vec<(ServiceSpec, ServiceCounters)>)>,
    /// The last result, per service in the order of `services`.
    loads: Vec<(ServiceSpec, BackendLoad)>,
}

impl LoadMeter {
    /// Takes a publication at `now`; computes new rates when the interval is long enough.
    pub fn observe(&mut self, now: Instant, counters: &Counters, services: &[ServiceSpec]) {
        let current = || -> Vec<(ServiceSpec, ServiceCounters)> {
            services
                .iter()
                .copied()
                .zip(counters.services.iter().copied())
                .collect()
        };
        let Some((since, base)) = &self.base else {
            self.base = Some((now, current()));
            self.loads = services
                .iter()
                .zip(counters.services.iter())
                .map(|(s, c)| {
                    let load = BackendLoad {
                        active_connections: c.active_connections,
                        ..BackendLoad::default()
                    };
                    (*s, load)
                })
                .collect();
            return;
        };
        let dt = now.saturating_duration_since(*since);
        if dt < MIN_INTERVAL {
            return;
        }
        let secs = dt.as_secs_f64();
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        self.loads = services
            .iter()
            .zip(counters.services.iter())
            .map(|(s, c)| {
                let load = match base.iter().find(|(b, _)| b == s) {
                    Some((_, b)) => BackendLoad {
                        active_connections: c.active_connections,
                        new_connections_per_s: rate(c.new_connections, b.new_connections),
                        packets_in_per_s: rate(c.delivered, b.delivered),
                        packets_out_per_s: rate(c.replies_rewritten, b.replies_rewritten),
                        bytes_in_per_s: rate(c.delivered_bytes, b.delivered_bytes),
                        bytes_out_per_s: rate(c.replies_rewritten_bytes, b.replies_rewritten_bytes),
                        interval_s: secs,
                    },
                    None => BackendLoad {
                        active_connections: c.active_connections,
                        ..BackendLoad::default()
                    },
                };
                (*s, load)
            })
            .collect();
        self.base = Some((now, current()));
    }

    /// The last load of the service `spec`, if it is known.
    pub fn load_of(&self, spec: &ServiceSpec) -> Option<BackendLoad> {
        self.loads.iter().find(|(s, _)| s == spec).map(|(_, l)| *l)
    }

    /// The last loads, per service.
    pub fn loads(&self) -> &[(ServiceSpec, BackendLoad)] {
        &self.loads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn spec(port: u16) -> ServiceSpec {
        ServiceSpec {
            vip: "192.0.2.10".parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            dip: "10.0.21.2".parse().unwrap(),
            backend_address: "10.0.21.2".parse().unwrap(),
            backend_port: 8080,
        }
    }

    #[test]
    fn rates_are_deltas_over_at_least_a_second_and_follow_services_across_reloads() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        let mut c = Counters::new(1);
        c.services[0].active_connections = 7;
        m.observe(t0, &c, &[spec(80)]);
        assert_eq!(m.load_of(&spec(80)).unwrap().active_connections, 7);
        assert_eq!(m.load_of(&spec(80)).unwrap().interval_s, 0.0);

        c.services[0].delivered = 200;
        c.services[0].delivered_bytes = 20_000;
        c.services[0].replies_rewritten = 100;
        c.services[0].replies_rewritten_bytes = 150_000;
        c.services[0].new_connections = 10;
        // Too soon: nothing computed.
        m.observe(t0 + Duration::from_millis(500), &c, &[spec(80)]);
        assert_eq!(m.load_of(&spec(80)).unwrap().packets_in_per_s, 0.0);
        m.observe(t0 + Duration::from_secs(2), &c, &[spec(80)]);
        let l = m.load_of(&spec(80)).unwrap();
        assert_eq!(l.packets_in_per_s, 100.0);
        assert_eq!(l.bytes_in_per_s, 10_000.0);
        assert_eq!(l.packets_out_per_s, 50.0);
        assert_eq!(l.bytes_out_per_s, 75_000.0);
        assert_eq!(l.new_connections_per_s, 5.0);
        assert_eq!(l.interval_s, 2.0);

        // A reload adds a service in front: the old one keeps its base, the new one starts.
        let mut c2 = Counters::new(2);
        c2.services[1] = c.services[0];
        c2.services[1].delivered += 300;
        m.observe(t0 + Duration::from_secs(5), &c2, &[spec(81), spec(80)]);
        assert_eq!(m.load_of(&spec(80)).unwrap().packets_in_per_s, 100.0);
        assert_eq!(m.load_of(&spec(81)).unwrap().packets_in_per_s, 0.0);
    }
}
