//! Token-by-token attribution heatmaps as PNG images.
//!
//! Everything is rasterised by hand into an RGB buffer with the font8x8 bitmap
//! font, so rendering needs no font files or graphics stack. The picture is
//! read by a person, so the sizes below are chosen for legibility at ~40×40
//! tokens rather than for compactness.

use std::fmt;

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};

/// font8x8 glyphs are 8×8; doubling them is the smallest readable size.
const SCALE: usize = 2;
const GLYPH: usize = 8 * SCALE;
/// A few pixels more than a glyph so that neighbouring labels never touch.
const CELL: usize = 22;
const MARGIN: usize = 16;
const GAP: usize = 6;
const TITLE_GAP: usize = 12;
const MAX_LABEL_CHARS: usize = 16;
const MAX_TITLE_CHARS: usize = 100;
const BAR_GAP: usize = 24;
const BAR_W: usize = 20;
/// Keeps the three colour-bar labels apart even for a one-row matrix.
const BAR_MIN_H: usize = 5 * GLYPH;
const TICK: usize = 5;
/// Refuse absurd sizes instead of attempting multi-gigabyte allocations.
const MAX_SIDE: usize = 1 << 14;
const MAX_PIXELS: usize = 1 << 27;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const TEXT: Rgb = [30, 30, 30];
const FRAME: Rgb = [110, 110, 110];
/// Mid grey sits outside the diverging ramp, so missing values can't be mistaken for data.
const NON_FINITE: Rgb = [160, 160, 160];

/// ColorBrewer RdBu anchors walked outward from zero. The centre is pure white
/// (RdBu uses #f7f7f7) so that exact zeros vanish into the background.
const RED_ARM: [Rgb; 6] =
    [[255, 255, 255], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
const BLUE_ARM: [Rgb; 6] =
    [[255, 255, 255], [209, 229, 240], [146, 197, 222], [67, 147, 195], [33, 102, 172], [5, 48, 97]];

#[derive(Debug)]
pub enum HeatmapError {
    ShapeMismatch { rows: usize, cols: usize, len: usize },
    Empty,
    Encode(png::EncodingError),
}

impl fmt::Display for HeatmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShapeMismatch { rows, cols, len } => write!(
                f,
                "attribution matrix has {len} values, but {rows} tokens of text a \
                 × {cols} tokens of text b need {rows}×{cols}"
            ),
            Self::Empty => write!(f, "cannot draw a heatmap: one of the token lists is empty"),
            Self::Encode(e) => write!(f, "could not encode the heatmap as PNG: {e}"),
        }
    }
}

impl std::error::Error for HeatmapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeatmapError> for crate::error::Error {
    fn from(e: HeatmapError) -> Self {
        crate::error::Error::Heatmap(e.to_string())
    }
}

impl From<png::EncodingError> for HeatmapError {
    fn from(e: png::EncodingError) -> Self {
        Self::Encode(e)
    }
}

/// Renders `values` (row-major, `tokens_a.len()` rows × `tokens_b.len()` columns; row i = token i of text a,
/// column j = token j of text b) as a PNG heatmap and returns the encoded PNG bytes.
///
/// Images that would exceed 16384 px on a side (roughly 700 tokens) are refused
/// with `HeatmapError::Encode(png::EncodingError::LimitsExceeded)`.
pub fn heatmap_png(
    tokens_a: &[String],
    tokens_b: &[String],
    values: &[f64],
    title: &str,
) -> Result<Vec<u8>, HeatmapError> {
    let (rows, cols) = (tokens_a.len(), tokens_b.len());
    if rows == 0 || cols == 0 {
        return Err(HeatmapError::Empty);
    }
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(HeatmapError::ShapeMismatch { rows, cols, len: values.len() });
    }
    // Infinities would flatten every finite cell to white, so the scale only sees finite values.
    let max_abs = values.iter().filter(|v| v.is_finite()).fold(0.0_f64, |m, v| m.max(v.abs()));
    let layout = Layout::new(tokens_a, tokens_b, title, max_abs)?;
    let canvas = layout.draw(values, max_abs);

    let mut png_bytes = Vec::new();
    // Both sides are below MAX_SIDE, so the casts cannot truncate.
    let mut encoder = png::Encoder::new(&mut png_bytes, canvas.w as u32, canvas.h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&canvas.px)?;
    writer.finish()?;
    Ok(png_bytes)
}

/// Maps a value onto the diverging ramp; `max_abs` is the symmetric half-range.
fn colour(v: f64, max_abs: f64) -> Rgb {
    if !v.is_finite() {
        return NON_FINITE;
    }
    if max_abs <= 0.0 {
        return WHITE;
    }
    let t = (v / max_abs).clamp(-1.0, 1.0);
    let arm = if t < 0.0 { &BLUE_ARM } else { &RED_ARM };
    let pos = t.abs() * (arm.len() - 1) as f64;
    let i = (pos.floor() as usize).min(arm.len() - 2);
    let f = pos - i as f64;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let (a, b) = (f64::from(arm[i][c]), f64::from(arm[i + 1][c]));
        *o = (a + (b - a) * f).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// Formats like C's `%.3g`, which is what researchers expect on a colour bar.
fn fmt_g(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_string();
    }
    // Rounding to 3 significant digits first decides the exponent (999.6 -> 1e+03).
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.unsigned_abs())
    } else {
        let decimals = (2 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn glyph(c: char) -> Option<[u8; 8]> {
    match c {
        ' '..='~' => BASIC_FONTS.get(c),
        '\u{a1}'..='\u{ff}' => LATIN_FONTS.get(c),
        _ => None,
    }
}

/// Replaces undrawable characters by '?' and shortens to `max` chars, marking the cut with '~'.
fn label(s: &str, max: usize) -> Vec<char> {
    let mut out: Vec<char> = s.chars().map(|c| if glyph(c).is_some() { c } else { '?' }).collect();
    if out.len() > max {
        out.truncate(max.saturating_sub(1));
        out.push('~');
    }
    out
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                let i = (yy * self.w + xx) * 3;
                self.px[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// Draws text left-to-right from (x, y), or, when `vertical`, rotated a
    /// quarter turn anticlockwise so it reads bottom-to-top starting at (x, y) = bottom-left.
    fn text(&mut self, x: usize, y: usize, chars: &[char], vertical: bool) {
        for (k, &c) in chars.iter().enumerate() {
            let bits = glyph(c).or_else(|| glyph('?')).unwrap_or([0; 8]);
            for (gy, row) in bits.iter().enumerate() {
                for gx in (0..8).filter(|gx| row & (1 << gx) != 0) {
                    let (px, py) = if vertical {
                        let top = (y + (7 - gx) * SCALE).checked_sub((k + 1) * GLYPH);
                        (Some(x + gy * SCALE), top)
                    } else {
                        (Some(x + k * GLYPH + gx * SCALE), Some(y + gy * SCALE))
                    };
                    if let (Some(px), Some(py)) = (px, py) {
                        self.fill(px, py, SCALE, SCALE, TEXT);
                    }
                }
            }
        }
    }
}

/// Pixel geometry, kept separate from drawing so tests can locate cells.
struct Layout {
    w: usize,
    h: usize,
    title: Vec<char>,
    row_labels: Vec<Vec<char>>,
    col_labels: Vec<Vec<char>>,
    grid_x: usize,
    grid_y: usize,
    bar_x: usize,
    bar_h: usize,
    ticks: [Vec<char>; 3],
}

impl Layout {
    fn new(a: &[String], b: &[String], title: &str, max_abs: f64) -> Result<Self, HeatmapError> {
        let too_big = Err(HeatmapError::Encode(png::EncodingError::LimitsExceeded));
        if a.len() > MAX_SIDE / CELL || b.len() > MAX_SIDE / CELL {
            return too_big;
        }
        let row_labels: Vec<_> = a.iter().map(|t| label(t, MAX_LABEL_CHARS)).collect();
        let col_labels: Vec<_> = b.iter().map(|t| label(t, MAX_LABEL_CHARS)).collect();
        let title = label(title.trim(), MAX_TITLE_CHARS);
        let widest = |ls: &[Vec<char>]| ls.iter().map(Vec::len).max().unwrap_or(0) * GLYPH;
        let ticks = [fmt_g(max_abs), "0".to_string(), fmt_g(-max_abs)].map(|s| label(&s, 12));

        let title_h = if title.is_empty() { 0 } else { GLYPH + TITLE_GAP };
        // At least half a glyph above the grid so the top colour-bar label fits.
        let col_label_h = widest(&col_labels).max(GLYPH / 2);
        let grid_x = MARGIN + widest(&row_labels) + GAP;
        let grid_y = MARGIN + title_h + col_label_h + GAP;
        let (grid_w, grid_h) = (b.len() * CELL, a.len() * CELL);
        let bar_x = grid_x + grid_w + BAR_GAP;
        let bar_h = grid_h.max(BAR_MIN_H);
        let w = (bar_x + BAR_W + TICK + GAP + widest(&ticks) + MARGIN).max(2 * MARGIN + title.len() * GLYPH);
        let h = grid_y + bar_h + GLYPH / 2 + MARGIN;
        if w > MAX_SIDE || h > MAX_SIDE || w * h > MAX_PIXELS {
            return too_big;
        }
        Ok(Self { w, h, title, row_labels, col_labels, grid_x, grid_y, bar_x, bar_h, ticks })
    }

    fn cell_origin(&self, i: usize, j: usize) -> (usize, usize) {
        (self.grid_x + j * CELL, self.grid_y + i * CELL)
    }

    fn draw(&self, values: &[f64], max_abs: f64) -> Canvas {
        let mut cv = Canvas { w: self.w, h: self.h, px: vec![255; self.w * self.h * 3] };
        let (rows, cols) = (self.row_labels.len(), self.col_labels.len());
        let (grid_w, grid_h) = (cols * CELL, rows * CELL);

        // Centred over the grid, where the eye is, unless it is wider than the grid.
        let title_w = self.title.len() * GLYPH;
        let title_x = (self.grid_x + grid_w / 2).saturating_sub(title_w / 2).max(MARGIN);
        let title_x = title_x.min(self.w.saturating_sub(MARGIN + title_w));
        cv.text(title_x, MARGIN, &self.title, false);

        // Thin frame so pale cells still show where the grid ends.
        cv.fill(self.grid_x - 1, self.grid_y - 1, grid_w + 2, grid_h + 2, FRAME);
        for (i, row) in values.chunks(cols).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (x, y) = self.cell_origin(i, j);
                cv.fill(x, y, CELL, CELL, colour(v, max_abs));
            }
        }

        let pad = (CELL - GLYPH) / 2;
        for (i, l) in self.row_labels.iter().enumerate() {
            let x = self.grid_x - GAP - l.len() * GLYPH;
            cv.text(x, self.grid_y + i * CELL + pad, l, false);
        }
        for (j, l) in self.col_labels.iter().enumerate() {
            cv.text(self.grid_x + j * CELL + pad, self.grid_y - GAP, l, true);
        }

        // Colour bar: top = +max, bottom = -max, one ramp step per pixel row.
        cv.fill(self.bar_x - 1, self.grid_y - 1, BAR_W + 2, self.bar_h + 2, FRAME);
        let span = self.bar_h.saturating_sub(1).max(1) as f64;
        for y in 0..self.bar_h {
            let t = 1.0 - 2.0 * y as f64 / span;
            let c = if max_abs > 0.0 { colour(t, 1.0) } else { WHITE };
            cv.fill(self.bar_x, self.grid_y + y, BAR_W, 1, c);
        }
        for (k, tick) in self.ticks.iter().enumerate() {
            if max_abs <= 0.0 && k != 1 {
                continue; // a zero range would print "0" three times
            }
            let y = self.grid_y + k * (self.bar_h - 1) / 2;
            cv.fill(self.bar_x + BAR_W, y, TICK, 1, FRAME);
            cv.text(self.bar_x + BAR_W + TICK + GAP, y - GLYPH / 2, tick, false);
        }
        cv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("valid png");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.line_size * info.height as usize);
        (info.width as usize, info.height as usize, buf)
    }

    /// Renders and returns the centre pixel of every cell, row-major.
    fn cell_centres(a: &[String], b: &[String], v: &[f64]) -> Vec<Rgb> {
        let (w, _, px) = decode(&heatmap_png(a, b, v, "t").expect("render"));
        let max_abs = v.iter().filter(|x| x.is_finite()).fold(0.0_f64, |m, x| m.max(x.abs()));
        let layout = Layout::new(a, b, "t", max_abs).expect("layout");
        let mut out = Vec::new();
        for i in 0..a.len() {
            for j in 0..b.len() {
                let (x, y) = layout.cell_origin(i, j);
                let k = ((y + CELL / 2) * w + x + CELL / 2) * 3;
                out.push([px[k], px[k + 1], px[k + 2]]);
            }
        }
        out
    }

    /// Darkness relative to white (Rec. 709 luma), 0 = white.
    fn intensity(c: Rgb) -> f64 {
        255.0 - (0.2126 * f64::from(c[0]) + 0.7152 * f64::from(c[1]) + 0.0722 * f64::from(c[2]))
    }

    #[test]
    fn dimensions_grow_with_token_count() {
        let dims = |r: usize, c: usize| {
            let png = heatmap_png(&toks("a", r), &toks("b", c), &vec![0.5; r * c], "t").expect("render");
            let (w, h, _) = decode(&png);
            (w, h)
        };
        let (w0, h0) = dims(3, 3);
        let (w1, h1) = dims(10, 3);
        let (w2, h2) = dims(3, 10);
        assert!(h1 >= h0 + 7 * 20, "7 extra rows must add height: {h0} -> {h1}");
        assert_eq!(w1, w0, "extra rows with equally long labels must not change width");
        assert!(w2 >= w0 + 7 * 20, "7 extra columns must add width: {w0} -> {w2}");
        assert_eq!(h2, h0);
    }

    #[test]
    fn extremes_are_red_and_blue_and_zero_is_white() {
        let v = [0.7, -3.0, 0.0, 2.0, 0.1, -0.2];
        let px = cell_centres(&toks("a", 2), &toks("b", 3), &v);
        let (red, blue, zero) = (px[3], px[1], px[2]);
        assert!(red[0] as i32 > red[2] as i32 + 60 && red[0] > red[1], "largest value not red: {red:?}");
        assert!(blue[2] as i32 > blue[0] as i32 + 60 && blue[2] > blue[1], "most negative not blue: {blue:?}");
        assert!(zero.iter().all(|&c| c >= 245), "zero cell not white: {zero:?}");
        // 0.7 < 2.0 on the same arm must be lighter.
        assert!(intensity(px[0]) + 20.0 < intensity(red));
    }

    #[test]
    fn colour_scale_is_symmetric_about_zero() {
        // The extremes are lopsided (4 vs -2); ±2 must still get mirrored shades.
        let v = [4.0, -2.0, 2.0, 0.0, -1.0, 1.0];
        let px = cell_centres(&toks("a", 2), &toks("b", 3), &v);
        for (pos, neg) in [(px[2], px[1]), (px[5], px[4])] {
            assert!(pos[0] > pos[2] && neg[2] > neg[0], "{pos:?} / {neg:?}");
            let (ip, in_) = (intensity(pos), intensity(neg));
            assert!(ip > 30.0 && (ip - in_).abs() < 20.0, "asymmetric: +{ip} vs -{in_}");
        }
        assert!(intensity(px[1]) > intensity(px[4]) + 30.0, "-2 must be darker than -1");
        assert!(intensity(px[0]) > intensity(px[2]) + 50.0, "+4 must be darker than +2");
    }

    #[test]
    fn all_zero_matrix_is_white_and_non_finite_is_grey() {
        let px = cell_centres(&toks("a", 1), &toks("b", 2), &[0.0, -0.0]);
        assert!(px.iter().all(|c| *c == WHITE), "{px:?}");
        let v = [f64::NAN, f64::INFINITY, 1.0, f64::NEG_INFINITY];
        let px = cell_centres(&toks("a", 2), &toks("b", 2), &v);
        for c in [px[0], px[1], px[3]] {
            assert!(c[0] == c[1] && c[1] == c[2] && c[0] < 220 && c[0] > 60, "not grey: {c:?}");
        }
        // The infinities must not swallow the scale: 1.0 is still the full-red extreme.
        assert_eq!(px[2], RED_ARM[5]);
    }

    #[test]
    fn shape_mismatch_and_empty_inputs_are_errors() {
        let err = heatmap_png(&toks("a", 2), &toks("b", 3), &[0.0; 5], "t").unwrap_err();
        assert!(matches!(err, HeatmapError::ShapeMismatch { rows: 2, cols: 3, len: 5 }), "{err:?}");
        assert!(err.to_string().contains('5') && err.to_string().contains("2×3"));
        let err = heatmap_png(&toks("a", 2), &toks("b", 3), &[0.0; 7], "t").unwrap_err();
        assert!(matches!(err, HeatmapError::ShapeMismatch { len: 7, .. }));
        assert!(matches!(heatmap_png(&[], &toks("b", 3), &[], "t"), Err(HeatmapError::Empty)));
        assert!(matches!(heatmap_png(&toks("a", 3), &[], &[], "t"), Err(HeatmapError::Empty)));
        let huge = toks("a", 20_000);
        let err = heatmap_png(&huge, &toks("b", 1), &vec![1.0; 20_000], "t").unwrap_err();
        assert!(matches!(err, HeatmapError::Encode(png::EncodingError::LimitsExceeded)), "{err:?}");
    }

    #[test]
    fn forty_by_forty_is_compact_and_cells_distinct() {
        let a: Vec<String> = (0..40).map(|i| format!("subword_token_{i:02}_long")).collect();
        // Alternating signs with growing magnitude: no two neighbours share a value.
        let v: Vec<f64> = (0..1600).map(|k| (k % 40 + 1) as f64 * (-1.0_f64).powi(k)).collect();
        let (w, h, _) = decode(&heatmap_png(&a, &a, &v, "40 x 40").expect("render"));
        assert!(w < 3000 && h < 3000, "{w}x{h}");
        assert!((20..=24).contains(&CELL) && CELL > GLYPH, "labels would overlap");
        let px = cell_centres(&a, &a, &v);
        assert!(px.windows(2).take(39).all(|p| p[0] != p[1]), "neighbouring cells share a colour");
    }

    #[test]
    fn labels_are_drawn_next_to_their_row_and_column() {
        let a = vec![String::new(), "xyz".to_string()];
        let b = vec!["ab".to_string(), String::new()];
        let (w, _, px) = decode(&heatmap_png(&a, &b, &[1.0, 0.0, 0.0, -1.0], "").expect("render"));
        let l = Layout::new(&a, &b, "", 1.0).expect("layout");
        let dark_in =
            |x0: usize, y0: usize, x1: usize, y1: usize| (y0..y1).any(|y| (x0..x1).any(|x| px[(y * w + x) * 3] < 100));
        let gy = l.grid_y;
        assert!(!dark_in(0, gy, l.grid_x - 1, gy + CELL), "empty row label drew something");
        assert!(dark_in(0, gy + CELL, l.grid_x - 1, gy + 2 * CELL), "row label missing");
        assert!(dark_in(l.grid_x, 0, l.grid_x + CELL, gy - 1), "column label missing");
        let second_col = dark_in(l.grid_x + CELL, 0, l.grid_x + 2 * CELL, gy - 1);
        assert!(!second_col, "empty column label drew something");
    }

    #[test]
    fn colour_bar_runs_from_red_through_white_to_blue() {
        let l = Layout::new(&toks("a", 8), &toks("b", 2), "t", 1.0).expect("layout");
        let png = heatmap_png(&toks("a", 8), &toks("b", 2), &[0.5; 16], "t").expect("render");
        let (w, _, px) = decode(&png);
        let at = |y: usize| {
            let k = (y * w + l.bar_x + BAR_W / 2) * 3;
            [px[k], px[k + 1], px[k + 2]]
        };
        let (top, mid, bottom) = (at(l.grid_y), at(l.grid_y + l.bar_h / 2), at(l.grid_y + l.bar_h - 1));
        assert!(top[0] > top[2] + 50 && bottom[2] > bottom[0] + 50, "{top:?} {bottom:?}");
        assert!(mid.iter().all(|&c| c > 235), "{mid:?}");
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let long = "x".repeat(500);
        let a: Vec<String> = ["", "日本語", "e\u{301}", "\n\t\0", &long, "🦀"].map(String::from).to_vec();
        let b: Vec<String> = ["", "Ġhello", "▁world"].map(String::from).to_vec();
        let v = [
            f64::MAX,
            f64::MIN,
            1e-310,
            f64::NAN,
            -0.0,
            1e308,
            f64::INFINITY,
            0.0,
            -1e-300,
            3.0,
            -3.0,
            1.0,
            7.0,
            8.0,
            9.0,
            1.0,
            2.0,
            3.0,
        ];
        let title = "title\nwith 🦀 and ".repeat(50);
        let (w, h, _) = decode(&heatmap_png(&a, &b, &v, &title).expect("render"));
        assert!(w > 0 && h > 0 && w < 3000);
        let one = [String::from("x")];
        assert!(heatmap_png(&one, &one, &[f64::NAN], "").is_ok());
    }

    #[test]
    fn labels_are_sanitised_and_truncated() {
        assert_eq!(label("playing", 16).iter().collect::<String>(), "playing");
        let long = label("abcdefghijklmnopqrstuvwxyz", 16);
        assert_eq!(long.iter().collect::<String>(), "abcdefghijklmno~");
        assert_eq!(label("日本é\n", 16).iter().collect::<String>(), "??é?");
    }

    #[test]
    fn numbers_format_like_printf_g() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-0.5, "-0.5"),
            (0.123456, "0.123"),
            (12.345, "12.3"),
            (999.6, "1e+03"),
            (1234.5, "1.23e+03"),
            (0.0001234, "0.000123"),
            (0.00001234, "1.23e-05"),
            (-2.5e-7, "-2.5e-07"),
            (99.96, "100"),
            (1e300, "1e+300"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_g(v), want, "formatting {v}");
        }
    }
}
