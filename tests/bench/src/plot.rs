//! plot.svg: one column per record size; the first row is throughput
//! (horizontal bars, log scale, whiskers from min to max), the other rows
//! are produce-to-consume latency percentiles at each offered load (log
//! scale, whiskers from min to max over the runs).

use crate::load::Load;
use crate::plan::Plan;
use crate::report::{si, sig3};
use crate::stats::{Case, Results, Spread, System, Workload};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

fn color(s: System) -> RGBColor {
    match s {
        System::StrataRf1 => RGBColor(31, 119, 180),
        System::StrataRf3 => RGBColor(23, 190, 207),
        System::NatsR1Default => RGBColor(255, 127, 14),
        System::NatsR1Always => RGBColor(214, 39, 40),
        System::NatsR3Default => RGBColor(44, 160, 44),
        System::NatsR3Always => RGBColor(148, 103, 189),
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

pub fn write(path: &Path, r: &Results, plan: &Plan) -> Result<()> {
    let loads = plan.loads();
    let (cols, rows) = (plan.sizes.len(), 1 + loads.len());
    let root = SVGBackend::new(path, (620 * cols as u32, 360 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for (i, &size) in plan.sizes.iter().enumerate() {
        throughput(&areas[i], r, size)?;
        for (j, &load) in loads.iter().enumerate() {
            latency(&areas[(j + 1) * cols + i], r, size, load)?;
        }
    }
    root.present()?;
    Ok(())
}

fn size_label(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn throughput(area: &Area<'_>, r: &Results, size: usize) -> Result<()> {
    let bars: Vec<(String, Spread, RGBColor)> = [
        (
            "Strata edge ack (a)",
            System::StrataRf1,
            "ack_rps",
            RGBColor(120, 175, 215),
        ),
        (
            "Strata committed RF=1 (b)",
            System::StrataRf1,
            "e2e_rps",
            color(System::StrataRf1),
        ),
        (
            "Strata committed RF=3 (b)",
            System::StrataRf3,
            "e2e_rps",
            color(System::StrataRf3),
        ),
        (
            "NATS R1",
            System::NatsR1Default,
            "ack_rps",
            color(System::NatsR1Default),
        ),
        (
            "NATS R1 sync always",
            System::NatsR1Always,
            "ack_rps",
            color(System::NatsR1Always),
        ),
        (
            "NATS R3",
            System::NatsR3Default,
            "ack_rps",
            color(System::NatsR3Default),
        ),
        (
            "NATS R3 sync always",
            System::NatsR3Always,
            "ack_rps",
            color(System::NatsR3Always),
        ),
    ]
    .into_iter()
    .filter_map(|(label, system, metric, c)| {
        let case = Case {
            system,
            workload: Workload::Throughput,
            size,
        };
        r.spread(case, metric).map(|s| (label.to_string(), s, c))
    })
    .collect();
    let caption = format!(
        "Throughput, {} records (records/s, median; whiskers min–max)",
        size_label(size)
    );
    if bars.is_empty() {
        return empty(area, &caption);
    }
    // Linear, so bar lengths compare like the ratios in the table; room on
    // the right for the label written after each bar.
    let lo = 0.0;
    let hi = bars.iter().map(|b| b.1.max).fold(0.0, f64::max) * 1.7;
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(8)
        .build_cartesian_2d(lo..hi, -0.6f64..(n as f64 - 0.4))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|x| si(*x))
        .draw()?;
    let y = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, s, c))| {
        Rectangle::new([(lo, y(i) - 0.35), (s.median, y(i) + 0.35)], c.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, s, _))| {
        ErrorBar::new_horizontal(y(i), s.min, s.median, s.max, BLACK.stroke_width(1), 8)
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (label, s, _))| {
        Text::new(
            format!("{label}: {}/s", si(s.median)),
            (s.max + hi * 0.02, y(i)),
            ("sans-serif", 14).into_font().color(&BLACK).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                ),
            ),
        )
    }))?;
    Ok(())
}

const PERCENTILES: [(&str, &str); 3] = [("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")];

fn latency(area: &Area<'_>, r: &Results, size: usize, load: Load) -> Result<()> {
    let series: Vec<(System, Vec<Spread>)> = System::ALL
        .into_iter()
        .filter_map(|system| {
            let case = Case {
                system,
                workload: Workload::Latency(load),
                size,
            };
            let v: Option<Vec<Spread>> =
                PERCENTILES.iter().map(|(_, m)| r.spread(case, m)).collect();
            v.map(|v| (system, v))
        })
        .collect();
    let caption = format!(
        "Produce-to-consume latency (ms), {} records, {}",
        size_label(size),
        match load {
            Load::Max => "unpaced (max)".to_string(),
            Load::Rate(_) => format!("offered {}", load.label()),
        }
    );
    if series.is_empty() {
        return empty(area, &caption);
    }
    let all = series.iter().flat_map(|(_, v)| v.iter());
    // Whole decades, one spare below for the legend.
    let min = all
        .clone()
        .map(|s| s.min)
        .fold(f64::MAX, f64::min)
        .max(0.001);
    let max = all.map(|s| s.max).fold(0.0, f64::max).max(min);
    let lo = 10f64.powf(min.log10().floor() - 1.0);
    let hi = 10f64.powf((max * 1.01).log10().ceil());
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d((0..2).into_segmented(), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => PERCENTILES
                .get(*i as usize)
                .map_or(String::new(), |p| p.0.to_string()),
            _ => String::new(),
        })
        .y_labels(8)
        .y_label_formatter(&|y| sig3(*y))
        .y_desc("ms")
        .draw()?;
    for (system, v) in &series {
        let c = color(*system);
        let pts = |s: &dyn Fn(&Spread) -> f64| -> Vec<(SegmentValue<i32>, f64)> {
            v.iter()
                .enumerate()
                .map(|(i, sp)| (SegmentValue::CenterOf(i as i32), s(sp)))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(pts(&|s| s.median), c.stroke_width(2)))?
            .label(system.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(
            pts(&|s| s.median)
                .into_iter()
                .map(|p| Circle::new(p, 3, c.filled())),
        )?;
        chart.draw_series(v.iter().enumerate().map(|(i, s)| {
            ErrorBar::new_vertical(
                SegmentValue::CenterOf(i as i32),
                s.min,
                s.median,
                s.max,
                c.stroke_width(1),
                8,
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn empty(area: &Area<'_>, caption: &str) -> Result<()> {
    let a = area.titled(caption, ("sans-serif", 18))?;
    let (w, h) = a.dim_in_pixel();
    a.draw(&Text::new(
        "no data (not run or not available)",
        (w as i32 / 2 - 120, h as i32 / 2),
        ("sans-serif", 14).into_font().color(&BLACK.mix(0.6)),
    ))?;
    Ok(())
}
