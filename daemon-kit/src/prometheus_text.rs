//! Helpers for the daemons' `/metrics`: metric families encoded on demand.
//!
//! Both daemons build every metric at scrape time from the state they already publish (a
//! `prometheus-client` [`Collector`]), so nothing on a packet path knows about Prometheus and a
//! scrape costs one copy of the counters. This module owns the pieces both collectors use:
//! rendering a collector as text, and encoding a counter or gauge family from `(labels,
//! value)` series.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The labels of one series, in order.
pub type Labels = Vec<(String, String)>;

/// Renders `collector`'s metrics in the Prometheus text format (a comment says so if the
/// encoding failed, rather than an empty page).
pub fn render(collector: Box<dyn Collector>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(collector);
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.push_str("# encoding failed\n");
    }
    out
}

/// One label.
pub fn label(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// A counter family `name` (the encoder appends `_total`): one series per entry; a single
/// series without labels is encoded as a plain counter.
pub fn counter_family(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(labels, v)] = series
        && labels.is_empty()
    {
        return ConstCounter::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A gauge family `name`, encoded like [`counter_family`].
pub fn gauge_family(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(labels, v)] = series
        && labels.is_empty()
    {
        return ConstGauge::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// The metric families of a Prometheus text exposition (the names of its `# TYPE` lines:
/// counters without `_total`).
pub fn families(exposition: &str) -> Vec<&str> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The metric names starting with `prefix` that a rules file, dashboard or query text uses
/// (recording-rule names, which contain `:`, excluded), each as a family name (`_total`
/// removed), in order of appearance. Used to check that shipped monitoring files name
/// metrics that exist.
pub fn names_used(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if text[i + name.len()..].starts_with(':') {
            continue;
        }
        out.push(name.strip_suffix("_total").unwrap_or(&name).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            counter_family(&mut e, "t_plain", "A plain counter.", &[(vec![], 3)])?;
            gauge_family(
                &mut e,
                "t_gauge",
                "A labelled gauge.",
                &[(vec![label("k", "a")], -1), (vec![label("k", "b")], 2)],
            )
        }
    }

    #[test]
    fn names_used_skip_recording_rules_and_total() {
        let rules = "expr: sum(rate(mux_x_total[1m])) / mux:y:rate1m + mux_z\nrecord: mux:w_q";
        assert_eq!(names_used(rules, "mux_"), ["mux_x", "mux_z"]);
        assert_eq!(
            families("# TYPE a counter\na_total 1\n# TYPE b gauge\n"),
            ["a", "b"]
        );
    }

    #[test]
    fn families_render_as_prometheus_text() {
        let text = render(Box::new(Two));
        assert!(
            text.contains("# TYPE t_plain counter\nt_plain_total 3\n"),
            "{text}"
        );
        assert!(text.contains("t_gauge{k=\"a\"} -1\n"), "{text}");
        assert!(text.contains("t_gauge{k=\"b\"} 2\n"), "{text}");
    }
}
