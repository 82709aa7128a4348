//! The two text formats of `/metrics`: OpenMetrics (what `prometheus-client` writes, and
//! what Prometheus asks for first) and the Prometheus text format 0.0.4 (what `promtool
//! check metrics`, `curl` and older scrapers read), chosen by the request's `Accept`.
//!
//! The two differ, for what this node exports, only in that OpenMetrics names a counter's
//! family without its `_total` suffix (the sample keeps it), may write `# UNIT` lines and ends
//! with `# EOF`. [`to_prometheus`] rewrites those; every other line is the same in both.

use std::collections::HashSet;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper that sent `accept` reads OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .any(|part| part.trim().starts_with("application/openmetrics-text"))
    })
}

/// OpenMetrics text as written by `prometheus-client`, in the Prometheus text format.
pub fn to_prometheus(openmetrics: &str) -> String {
    // TYPE follows HELP: the counters first, then the lines
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, ty)| *ty == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_and_eof_goes() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{k=\"x\"} 2\n\
                  # HELP a_level Level.\n# TYPE a_level gauge\n# UNIT a_level bytes\na_level 3\n# EOF\n";
        assert_eq!(
            to_prometheus(om),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total{k=\"x\"} 2\n\
             # HELP a_level Level.\n# TYPE a_level gauge\na_level 3\n"
        );
    }

    #[test]
    fn accept_picks_the_format() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
