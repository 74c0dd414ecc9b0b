//! The SVG: the same layout as the PNG, as vector shapes. Cells are `<rect class="cell">` with
//! the PNG's colours (and a tooltip naming the token pair and value), labels are `<text>` at
//! the PNG's positions, the colour bar a gradient through the ramp's anchors, which is what the
//! PNG's rows sample.

use std::fmt::Write;

use super::fonts::EM_PX;
use super::layout::{clean, fmt_g, Anchor, Layout, Rect, Rgb, Text, FRAME, TEXT, WHITE};
use crate::output::markup::escape;

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn rect(out: &mut String, r: Rect, fill: Rgb, class: &str) {
    let _ = writeln!(
        out,
        r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
        r.x,
        r.y,
        r.w,
        r.h,
        hex(fill)
    );
}

fn text(out: &mut String, t: &Text, class: &str) {
    let anchor = match t.anchor {
        Anchor::Start => "start",
        Anchor::Middle => "middle",
        Anchor::End => "end",
    };
    let place = if t.vertical {
        format!(r#"transform="translate({} {}) rotate(-90)""#, t.x, t.y)
    } else {
        format!(r#"x="{}" y="{}""#, t.x, t.y)
    };
    // A prompt's label carries its own colour over the group's.
    let (class, fill) = match t.prompt {
        true => (format!("{class} prompt"), format!(r#" fill="{}""#, hex(t.colour()))),
        false => (class.to_string(), String::new()),
    };
    let _ = writeln!(out, r#"<text class="{class}" {place} text-anchor="{anchor}"{fill}>{}</text>"#, escape(&t.text));
}

/// The SVG document for `layout` and `values` (row-major); `tokens_a`, `tokens_b` name the cells
/// in their tooltips.
pub(super) fn render(layout: &Layout, tokens_a: &[String], tokens_b: &[String], values: &[f64]) -> String {
    let (w, h) = (layout.width, layout.height);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, sans-serif" font-size="{EM_PX}" xml:space="preserve">"#
    );
    if let Some(title) = &layout.title {
        let _ = writeln!(out, "<title>{}</title>", escape(&title.text));
    }
    // The gradient's ends sit on the centres of the bar's top and bottom pixel rows, which the
    // PNG paints +max and -max; the stops are the ramp's anchors.
    let bar = layout.bar;
    let _ = writeln!(
        out,
        r#"<defs><linearGradient id="ramp" gradientUnits="userSpaceOnUse" x1="0" y1="{}" x2="0" y2="{}">"#,
        bar.y as f64 + 0.5,
        (bar.y + bar.h) as f64 - 0.5
    );
    for k in 0..=10 {
        let t = f64::from(k) / 10.0;
        let _ = writeln!(out, r#"<stop offset="{t}" stop-color="{}"/>"#, hex(layout.bar_colour(t)));
    }
    out.push_str("</linearGradient></defs>\n");
    rect(&mut out, Rect { x: 0, y: 0, w, h }, WHITE, "background");
    let _ = writeln!(out, r#"<g fill="{}">"#, hex(TEXT));
    if let Some(title) = &layout.title {
        text(&mut out, title, "title");
    }
    out.push_str("</g>\n");

    rect(&mut out, layout.grid_frame, FRAME, "frame");
    out.push_str("<g shape-rendering=\"crispEdges\">\n");
    for (i, row) in values.chunks(layout.cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let r = layout.cell(i, j);
            let name = |tokens: &[String], k: usize| tokens.get(k).map(|t| escape(&clean(t))).unwrap_or_default();
            let _ = writeln!(
                out,
                r#"<rect class="cell" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} ↔ {}: {}</title></rect>"#,
                r.x,
                r.y,
                r.w,
                r.h,
                hex(layout.fill(v)),
                name(tokens_a, i),
                name(tokens_b, j),
                fmt_g(v)
            );
        }
    }
    out.push_str("</g>\n");
    let _ = writeln!(out, r#"<g fill="{}">"#, hex(TEXT));
    for t in &layout.row_labels {
        text(&mut out, t, "row-label");
    }
    for t in &layout.col_labels {
        text(&mut out, t, "col-label");
    }
    out.push_str("</g>\n");

    rect(&mut out, layout.bar_frame, FRAME, "frame");
    let fill = if layout.max_abs > 0.0 { "url(#ramp)".to_string() } else { hex(WHITE) };
    let _ = writeln!(
        out,
        r#"<rect class="colour-bar" x="{}" y="{}" width="{}" height="{}" fill="{fill}"/>"#,
        bar.x, bar.y, bar.w, bar.h
    );
    let _ = writeln!(out, r#"<g fill="{}">"#, hex(TEXT));
    for (mark, label) in &layout.ticks {
        rect(&mut out, *mark, FRAME, "tick");
        text(&mut out, label, "tick-label");
    }
    out.push_str("</g>\n</svg>\n");
    out
}
