//! SVG plot of several runs over one day: power (kW) on top, SLA violation (SLATAH per interval,
//! %) below. Hand-written SVG, no dependencies.

use std::fmt::Write;

use crate::run::Report;

const W: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;
const COLOURS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// Draws `reports` (same day) into one SVG document.
pub fn svg(reports: &[Report]) -> String {
    let mut s = String::new();
    let height = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let day = reports.first().map_or("", |r| r.day.as_str());
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">Day {day}: power and SLA violation per 5-minute interval</text>"#
    );
    panel(&mut s, reports, TOP, "power (kW)", |p| p.power_kw);
    panel(&mut s, reports, TOP + PANEL_H + GAP, "SLATAH in interval (%)", |p| p.slatah * 100.0);
    for (i, r) in reports.iter().enumerate() {
        let y = TOP + 20.0 * i as f64 + 10.0;
        let x = W - RIGHT + 15.0;
        let c = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2"/>"#,
            x + 20.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, x + 25.0, y + 4.0, escape(&r.policy));
    }
    s.push_str("</svg>\n");
    s
}

fn panel(
    s: &mut String,
    reports: &[Report],
    top: f64,
    label: &str,
    value: impl Fn(&crate::run::Point) -> f64,
) {
    let plot_w = W - LEFT - RIGHT;
    let t_max = reports.iter().flat_map(|r| r.series.last()).map(|p| p.time).fold(1.0, f64::max);
    let v_max = nice(reports.iter().flat_map(|r| r.series.iter().map(&value)).fold(0.0, f64::max));
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
    );
    for k in 0..=4 {
        let v = v_max * k as f64 / 4.0;
        let y = top + PANEL_H - PANEL_H * k as f64 / 4.0;
        let _ =
            writeln!(s, r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##, LEFT + plot_w);
        let _ =
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 5.0, y + 4.0, fmt(v));
    }
    for hour in (0..=24).step_by(4) {
        let x = LEFT + plot_w * (hour as f64 * 3600.0) / t_max.max(86400.0);
        let _ =
            writeln!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{hour} h</text>"#, top + PANEL_H + 15.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">{label}</text>"#,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0
    );
    for (i, r) in reports.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut pts = String::new();
        for p in &r.series {
            let x = LEFT + plot_w * p.time / t_max.max(86400.0);
            let y = top + PANEL_H - PANEL_H * (value(p) / v_max).min(1.0);
            let _ = write!(pts, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{}"/>"#,
            pts.trim_end()
        );
    }
}

fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_rounds_up_to_a_readable_axis_maximum() {
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(0.42), 0.5);
        assert_eq!(nice(0.0), 1.0);
    }
}
