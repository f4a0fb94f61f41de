//! The reports' SVG charts: panels stacked on one time axis (seconds), each with an axis of its
//! own unit, and an optional shaded, labelled window (a GameDay's fault, a load's run) drawn
//! across every panel. The GameDay and the load reports both draw through here.

use std::collections::BTreeMap;

use plotters::prelude::*;

/// A shaded span of the time axis, labelled at its edges in the first panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
    /// Labels drawn at `from` and, when given, at `to` (e.g. "inject 3 s", "restore 8 s").
    pub from_label: String,
    pub to_label: Option<String>,
}

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(u64, f64)>,
}

/// One panel of the chart.
#[derive(Debug, Clone, PartialEq)]
pub enum Panel {
    /// Instances per AZ, on an integer axis, one line per AZ (with a legend), plus any
    /// further integer lines (e.g. desired capacity).
    Capacity {
        caption: String,
        per_az: BTreeMap<String, Vec<(u64, u32)>>,
        extra: Vec<(String, Vec<(u64, u32)>)>,
    },
    /// Real-valued lines on an axis from 0 to `y_max` (`None`: fit the highest point, +10 %).
    Lines {
        caption: String,
        y_desc: String,
        y_max: Option<f64>,
        lines: Vec<Line>,
    },
}

/// The shade of a window and the colour of its edges and labels.
const SHADE: RGBColor = RGBColor(255, 140, 0);
const EDGE: RGBColor = RGBColor(200, 90, 0);

/// Draws `panels` stacked on the time axis `0..end` (described as `x_desc` under the last
/// panel), 960 px wide, under `title`.
pub fn svg(
    title: &str,
    x_desc: &str,
    end: u64,
    window: Option<&Window>,
    panels: &[Panel],
) -> Result<String, String> {
    let end = end.max(1);
    let mut svg = String::new();
    {
        let height = 40 + 240 * u32::try_from(panels.len().max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        let last = panels.len().saturating_sub(1);
        for (index, (panel, area)) in panels.iter().zip(areas.iter()).enumerate() {
            let x_label_area = if index == last { 34 } else { 22 };
            match panel {
                Panel::Capacity {
                    caption,
                    per_az,
                    extra,
                } => {
                    let top = per_az
                        .values()
                        .chain(extra.iter().map(|(_, p)| p))
                        .flat_map(|points| points.iter().map(|(_, v)| *v))
                        .max()
                        .unwrap_or(1)
                        .max(1)
                        + 1;
                    let mut chart = ChartBuilder::on(area)
                        .caption(caption, ("sans-serif", 16))
                        .margin(8)
                        .x_label_area_size(x_label_area)
                        .y_label_area_size(44)
                        .build_cartesian_2d(0u64..end, 0u32..top)
                        .map_err(|e| e.to_string())?;
                    let mut mesh = chart.configure_mesh();
                    mesh.y_desc("instances");
                    if index == last {
                        mesh.x_desc(x_desc);
                    }
                    mesh.draw().map_err(|e| e.to_string())?;
                    if let Some(w) = window {
                        chart
                            .draw_series([Rectangle::new(
                                [(w.from, 0), (w.to, top)],
                                SHADE.mix(0.15).filled(),
                            )])
                            .map_err(|e| e.to_string())?;
                        if index == 0 {
                            for (at, label) in
                                [(w.from, Some(&w.from_label)), (w.to, w.to_label.as_ref())]
                            {
                                let Some(label) = label else { continue };
                                chart
                                    .draw_series([PathElement::new(vec![(at, 0), (at, top)], EDGE)])
                                    .map_err(|e| e.to_string())?;
                                chart
                                    .draw_series([Text::new(
                                        label.clone(),
                                        (at, top),
                                        ("sans-serif", 13).into_font().color(&EDGE),
                                    )])
                                    .map_err(|e| e.to_string())?;
                            }
                        }
                    }
                    let lines = per_az
                        .iter()
                        .map(|(az, points)| (az, points, 2))
                        .chain(extra.iter().map(|(label, points)| (label, points, 1)));
                    for (i, (label, points, width)) in lines.enumerate() {
                        let color = Palette99::pick(i).to_rgba();
                        chart
                            .draw_series(LineSeries::new(
                                points.iter().copied(),
                                color.stroke_width(width),
                            ))
                            .map_err(|e| e.to_string())?
                            .label(label.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], color)
                            });
                    }
                    chart
                        .configure_series_labels()
                        .border_style(BLACK.mix(0.3))
                        .background_style(WHITE.mix(0.8))
                        .draw()
                        .map_err(|e| e.to_string())?;
                }
                Panel::Lines {
                    caption,
                    y_desc,
                    y_max,
                    lines,
                } => {
                    let top = y_max.unwrap_or_else(|| {
                        lines
                            .iter()
                            .flat_map(|l| l.points.iter().map(|(_, v)| *v))
                            .fold(1.0f64, f64::max)
                            * 1.1
                    });
                    let mut chart = ChartBuilder::on(area)
                        .caption(caption, ("sans-serif", 16))
                        .margin(8)
                        .x_label_area_size(x_label_area)
                        .y_label_area_size(44)
                        .build_cartesian_2d(0u64..end, 0f64..top)
                        .map_err(|e| e.to_string())?;
                    let mut mesh = chart.configure_mesh();
                    mesh.y_desc(y_desc.as_str());
                    if index == last {
                        mesh.x_desc(x_desc);
                    }
                    mesh.draw().map_err(|e| e.to_string())?;
                    if let Some(w) = window {
                        chart
                            .draw_series([Rectangle::new(
                                [(w.from, 0.0), (w.to, top)],
                                SHADE.mix(0.15).filled(),
                            )])
                            .map_err(|e| e.to_string())?;
                    }
                    for line in lines {
                        let color = line.color;
                        chart
                            .draw_series(LineSeries::new(
                                line.points.iter().copied(),
                                color.stroke_width(2),
                            ))
                            .map_err(|e| e.to_string())?
                            .label(line.label.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], color)
                            });
                    }
                    if lines.len() > 1 {
                        chart
                            .configure_series_labels()
                            .border_style(BLACK.mix(0.3))
                            .background_style(WHITE.mix(0.8))
                            .draw()
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
