//! The PNG: the layout drawn into an RGB buffer, the glyphs rasterised by ab_glyph with their
//! coverage blended over whatever lies beneath.

use super::fonts;
use super::layout::{Layout, Rect, Rgb, Text, FRAME};

pub(super) struct Canvas {
    pub w: usize,
    pub h: usize,
    pub px: Vec<u8>,
}

impl Canvas {
    fn fill(&mut self, r: Rect, c: Rgb) {
        for y in r.y..(r.y + r.h).min(self.h) {
            for x in r.x..(r.x + r.w).min(self.w) {
                let i = (y * self.w + x) * 3;
                self.px[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, coverage: f32) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let i = (y as usize * self.w + x as usize) * 3;
        for (k, &target) in c.iter().enumerate() {
            let under = f32::from(self.px[i + k]);
            self.px[i + k] = (under + (f32::from(target) - under) * coverage).round().clamp(0.0, 255.0) as u8;
        }
    }

    fn text(&mut self, t: &Text) {
        let start = t.start();
        let (x, y) = (t.x as i64, t.y as i64);
        fonts::draw_text(&t.text, |tx, ty, coverage| {
            // Turned a quarter anticlockwise: the run goes up, the ascent to the left.
            let (px, py) = if t.vertical { (x + ty, start - 1 - tx) } else { (start + tx, y + ty) };
            self.blend(px, py, t.colour(), coverage);
        });
    }
}

/// Draws the heatmap: `values` row-major, `layout.rows`×`layout.cols`.
pub(super) fn draw(layout: &Layout, values: &[f64]) -> Canvas {
    let mut cv = Canvas { w: layout.width, h: layout.height, px: vec![255; layout.width * layout.height * 3] };
    if let Some(title) = &layout.title {
        cv.text(title);
    }
    cv.fill(layout.grid_frame, FRAME);
    for (i, row) in values.chunks(layout.cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            cv.fill(layout.cell(i, j), layout.fill(v));
        }
    }
    for t in layout.row_labels.iter().chain(&layout.col_labels) {
        cv.text(t);
    }

    // One ramp step per pixel row, the top row +max, the bottom row -max.
    cv.fill(layout.bar_frame, FRAME);
    let bar = layout.bar;
    let span = bar.h.saturating_sub(1).max(1) as f64;
    for y in 0..bar.h {
        cv.fill(Rect { y: bar.y + y, h: 1, ..bar }, layout.bar_colour(y as f64 / span));
    }
    for (mark, label) in &layout.ticks {
        cv.fill(*mark, FRAME);
        cv.text(label);
    }
    cv
}
